//! `gatekit cluster`: the gate as deployed behind NATS, on loopback. It starts
//!
//! - a `nats-server` (Debian's) on a free loopback port;
//! - `backends` back-end processes (`gatekit backend --stdin-control`, [`crate::nats_echo`]),
//!   one queue group `echo`: each call goes to one of them;
//! - `gates` gate processes (`gatekit serve --json --stdin-control --control 127.0.0.1:0`), each
//!   with its own gate id and a configuration routing `echo` (and every other module) to NATS;
//!
//! then one `gatekit run --target <gate> --control <its control endpoint>` per gate, at once,
//! each with its share of the clients. Every echo call crosses NATS to a back-end process and
//! back, and each run checks its invariants (every request answered with its own body, in order,
//! pushes, Disconnects, counters) against its gate. At the end the gates are shut down
//! gracefully (standard input closed), then the back ends, and `nats-server` is killed.
//!
//! The result is PASS only if every run passed and every gate and back end exited 0. Everything
//! is bounded by one deadline (duration + 60 s); every child is killed if anything fails or
//! panics (its process guard's `Drop`).

use crate::nats_echo::BackendEvent;
use crate::scenario::{self, Dur, Scenario};
use crate::serve::{GateEvent, GateStatus};
use serde::Serialize;
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Time allowed past the runs' duration for everything: starting, settling, shutting down.
pub const SLACK: Duration = Duration::from_secs(60);

/// Options of `gatekit cluster`.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The `gatekit` executable started as back ends, gates and runs.
    pub exe: PathBuf,
    /// Clients in all, split over the gates.
    pub clients: usize,
    /// How long the clients send.
    pub duration: Dur,
    /// Gate processes.
    pub gates: usize,
    /// Back-end processes.
    pub backends: usize,
    /// The runs' scenario: a built-in name or a scenario TOML file. Its `[gate]` section becomes
    /// the gates' `[limits]`; its `[backend]` section is not used (the back ends only echo).
    pub scenario: String,
    /// Latency of each back end's answers.
    pub latency: Duration,
    /// Make every back end answer every Nth request wrongly (to show the cluster can fail).
    pub corrupt_every: Option<u64>,
}

/// One gate and the run against it.
#[derive(Debug, Clone, Serialize)]
pub struct GateRun {
    /// Its gate id.
    pub id: String,
    /// Where it listened.
    pub addr: SocketAddr,
    /// Its control endpoint.
    pub control: SocketAddr,
    /// Clients of the run against it.
    pub clients: usize,
    /// The run's exit code (`None`: killed at the deadline, or by a signal).
    pub run_exit: Option<i32>,
    /// The run's report, as it printed it.
    pub run_report: String,
    /// What the run printed on standard error.
    pub run_stderr: String,
    /// The run's report as JSON (`gatekit run --json`), if it wrote one.
    pub run_json: Option<serde_json::Value>,
    /// The gate's exit code after its graceful shutdown.
    pub gate_exit: Option<i32>,
    /// The gate's counts after its shutdown, if it reported them.
    pub gate_stopped: Option<GateStatus>,
}

/// One back-end process.
#[derive(Debug, Clone, Serialize)]
pub struct BackendRun {
    /// Its number, from 1.
    pub index: usize,
    /// Its exit code.
    pub exit: Option<i32>,
    /// Requests it answered.
    pub answered: Option<u64>,
    /// Of those, answered wrongly on purpose (`--corrupt-every`).
    pub corrupted: Option<u64>,
    /// Notifies it got.
    pub notifies: Option<u64>,
}

/// What `gatekit cluster` found.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterReport {
    /// The NATS server's URL.
    pub nats: String,
    /// The scenario of the runs.
    pub scenario: String,
    /// Clients in all.
    pub clients: usize,
    /// How long the clients sent.
    pub duration: Dur,
    /// Every gate.
    pub gates: Vec<GateRun>,
    /// Every back end.
    pub backends: Vec<BackendRun>,
    /// What went wrong besides failed runs (a process that exited non-zero, the deadline).
    pub problems: Vec<String>,
    /// Every run passed and every process exited 0.
    pub passed: bool,
}

impl ClusterReport {
    fn judge(&mut self) {
        for g in &self.gates {
            if g.run_exit != Some(0) {
                self.problems.push(format!(
                    "the run against {} exited {}",
                    g.id,
                    exit_text(g.run_exit)
                ));
            }
            if g.gate_exit != Some(0) {
                self.problems
                    .push(format!("gate {} exited {}", g.id, exit_text(g.gate_exit)));
            }
        }
        for b in &self.backends {
            if b.exit != Some(0) {
                self.problems
                    .push(format!("back end {} exited {}", b.index, exit_text(b.exit)));
            }
        }
        self.passed = self.problems.is_empty();
    }
}

fn exit_text(code: Option<i32>) -> String {
    code.map_or("without a code (killed)".to_owned(), |c| c.to_string())
}

impl fmt::Display for ClusterReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "gatekit cluster: {} clients, scenario {}, {} · {} gates · {} back ends (echo over NATS) · nats-server {}",
            self.clients,
            self.scenario,
            self.duration,
            self.gates.len(),
            self.backends.len(),
            self.nats
        )?;
        for g in &self.gates {
            writeln!(f)?;
            writeln!(
                f,
                "gate {} on {} (control {}): {} clients; run exit {}, gate exit {}",
                g.id,
                g.addr,
                g.control,
                g.clients,
                exit_text(g.run_exit),
                exit_text(g.gate_exit)
            )?;
            for line in g.run_report.lines() {
                writeln!(f, "    {line}")?;
            }
            if g.run_exit != Some(0) {
                for line in g.run_stderr.lines().filter(|l| !l.trim().is_empty()) {
                    writeln!(f, "    stderr: {line}")?;
                }
            }
        }
        writeln!(f)?;
        for b in &self.backends {
            let n = |v: Option<u64>| v.map_or("?".to_owned(), |v| v.to_string());
            writeln!(
                f,
                "back end {}: answered {}, corrupted {}, notifies {}; exit {}",
                b.index,
                n(b.answered),
                n(b.corrupted),
                n(b.notifies),
                exit_text(b.exit)
            )?;
        }
        for p in &self.problems {
            writeln!(f, "problem: {p}")?;
        }
        write!(
            f,
            "result        {}",
            if self.passed { "PASS" } else { "FAIL" }
        )
    }
}

/// `$NATS_SERVER`, else `nats-server` in PATH, else the usual places (Debian's is in /usr/sbin).
pub fn find_nats_server() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("NATS_SERVER") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!(
                "NATS_SERVER={}: no such file (nats-server is needed)",
                p.display()
            ))
        };
    }
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("nats-server"))
                .collect()
        })
        .unwrap_or_default();
    for d in ["/usr/sbin", "/usr/local/bin", "/usr/bin", "/opt/nats"] {
        candidates.push(PathBuf::from(d).join("nats-server"));
    }
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        "nats-server is not installed (not in PATH nor /usr/sbin; `apt-get install nats-server`, or set NATS_SERVER)"
            .to_owned()
    })
}

/// Where a line of a child's standard output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Gate,
    Backend,
}

enum Line {
    Gate(usize, GateEvent),
    Backend(usize, BackendEvent),
    Ended(Role, usize),
}

/// A gate or back-end process, stopped by closing its standard input.
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    exit: Option<Option<i32>>,
}

impl Proc {
    fn start(
        exe: &Path,
        args: &[String],
        role: Role,
        index: usize,
        tx: mpsc::Sender<Line>,
    ) -> Result<Proc, String> {
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", exe.display()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let msg = match role {
                    Role::Gate => serde_json::from_str(&line)
                        .ok()
                        .map(|e| Line::Gate(index, e)),
                    Role::Backend => serde_json::from_str(&line)
                        .ok()
                        .map(|e| Line::Backend(index, e)),
                };
                if let Some(m) = msg {
                    if tx.send(m).is_err() {
                        return;
                    }
                }
            }
            let _ = tx.send(Line::Ended(role, index));
        });
        Ok(Proc {
            child,
            stdin,
            exit: None,
        })
    }

    /// Closes standard input: the process's signal to finish.
    fn finish(&mut self) {
        self.stdin = None;
    }

    /// Waits until `until` for the process to exit; kills it then. Its exit code.
    fn wait(&mut self, until: Instant) -> Option<i32> {
        if let Some(e) = self.exit {
            return e;
        }
        let code = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break s.code(),
                Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break None;
                }
            }
        };
        self.exit = Some(code);
        code
    }

    fn kill(&mut self) {
        if self.exit.is_none() {
            self.stdin = None;
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.exit = Some(None);
        }
    }
}

/// A `gatekit run` child, its output read on threads.
struct RunProc {
    child: Child,
    stdout: Option<std::thread::JoinHandle<String>>,
    stderr: Option<std::thread::JoinHandle<String>>,
    exit: Option<Option<i32>>,
}

fn read_all(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let mut bytes = Vec::new();
        let _ = r.read_to_end(&mut bytes);
        s.push_str(&String::from_utf8_lossy(&bytes));
        s
    })
}

/// Every child of a cluster: whatever happens (an error, a panic), what is still running is
/// killed when this is dropped, and the temporary directory removed.
struct Fleet {
    nats: Option<Child>,
    backends: Vec<Proc>,
    gates: Vec<Proc>,
    runs: Vec<RunProc>,
    dir: PathBuf,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for r in &mut self.runs {
            if r.exit.is_none() {
                let _ = r.child.kill();
                let _ = r.child.wait();
            }
        }
        for p in self.gates.iter_mut().chain(self.backends.iter_mut()) {
            p.kill();
        }
        if let Some(mut n) = self.nats.take() {
            let _ = n.kill();
            let _ = n.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The children's output lines, with what has been seen so far.
struct Inbox {
    rx: mpsc::Receiver<Line>,
    listening: Vec<Option<(SocketAddr, Option<SocketAddr>)>>,
    gate_stopped: Vec<Option<GateStatus>>,
    gate_ended: Vec<bool>,
    ready: Vec<bool>,
    backend_stopped: Vec<Option<(u64, u64, u64)>>,
    backend_ended: Vec<bool>,
}

impl Inbox {
    /// Takes in lines until `done` holds or `until` passes (false then).
    fn until(&mut self, until: Instant, mut done: impl FnMut(&Inbox) -> bool) -> bool {
        loop {
            if done(self) {
                return true;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            match self.rx.recv_timeout(left) {
                Ok(line) => self.take(line),
                Err(mpsc::RecvTimeoutError::Timeout) => return done(self),
                Err(mpsc::RecvTimeoutError::Disconnected) => return done(self),
            }
        }
    }

    fn take(&mut self, line: Line) {
        match line {
            Line::Gate(i, GateEvent::Listening { addr, control, .. }) => {
                self.listening[i] = Some((addr, control))
            }
            Line::Gate(i, GateEvent::Stopped { status, .. }) => self.gate_stopped[i] = Some(status),
            Line::Gate(_, GateEvent::Status(_)) => {}
            Line::Backend(i, BackendEvent::Ready) => self.ready[i] = true,
            Line::Backend(
                i,
                BackendEvent::Stopped {
                    answered,
                    corrupted,
                    notifies,
                },
            ) => self.backend_stopped[i] = Some((answered, corrupted, notifies)),
            Line::Ended(Role::Gate, i) => self.gate_ended[i] = true,
            Line::Ended(Role::Backend, i) => self.backend_ended[i] = true,
        }
    }
}

/// The scenario named (built in, or a TOML file) and the `gatekit run` arguments that select it.
fn scenario_args(name: &str) -> Result<(Scenario, Vec<String>), String> {
    if let Some(s) = scenario::builtin(name) {
        return Ok((s, vec!["--scenario".into(), name.into()]));
    }
    let path = Path::new(name);
    if !path.is_file() {
        return Err(format!(
            "--scenario {name:?}: no built-in scenario or file of that name; see `gatekit scenarios`"
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
    let s = Scenario::from_toml(&text).map_err(|e| format!("{name}: {e}"))?;
    Ok((s, vec!["--file".into(), name.into()]))
}

/// The gates' configuration file: loopback listener, `echo` and every other module over NATS,
/// the scenario's gate limits.
pub fn gate_config(nats_url: &str, s: &Scenario) -> String {
    let g = &s.gate;
    format!(
        r#"# Written by `gatekit cluster`.
[gate]
listen = ["{protocol}+tcp://127.0.0.1:0"]
shutdown_grace = "5s"

[limits]
heartbeat = "{heartbeat}"
idle_timeout = "{idle}"
handshake_timeout = "{handshake}"
backend_timeout = "{backend}"
max_in_flight = {in_flight}
max_write_queue = {write_queue}

[backends]
default = "nats"

[backends.modules]
echo = "nats"

[nats]
url = "{nats_url}"

[log]
level = "warn"
"#,
        protocol = s.protocol.name(),
        heartbeat = g.heartbeat,
        idle = g.idle_timeout,
        handshake = g.handshake_timeout,
        backend = g.backend_timeout,
        in_flight = g.max_in_flight,
        write_queue = g.max_write_queue,
    )
}

fn free_port() -> Result<u16, String> {
    let l =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("no free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// Starts `nats-server` on a free loopback port; its URL.
fn start_nats(bin: &Path, fleet: &mut Fleet) -> Result<String, String> {
    let mut last = String::new();
    // A port found free may be taken before the server binds it: a few tries.
    for _ in 0..3 {
        let port = free_port()?;
        let child = Command::new(bin)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        fleet.nats = Some(child);
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            let child = fleet.nats.as_mut().expect("just started");
            if let Ok(Some(status)) = child.try_wait() {
                fleet.nats = None;
                last = format!("nats-server on port {port} exited at start: {status}");
                break;
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(format!("nats://127.0.0.1:{port}"));
            }
            if Instant::now() >= until {
                let _ = child.kill();
                let _ = child.wait();
                fleet.nats = None;
                last = format!("nats-server did not accept on port {port} within 5 s");
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Err(last)
}

/// Runs the cluster and returns its report (`Err`: it could not be set up — nats-server missing,
/// a process that did not start; exit 2).
pub fn run(opts: &ClusterOptions) -> Result<ClusterReport, String> {
    if opts.gates == 0 || opts.backends == 0 {
        return Err("--gates and --backends must be at least 1".to_owned());
    }
    if opts.clients < opts.gates {
        return Err(format!(
            "--clients {} is fewer than --gates {}: every gate needs a client",
            opts.clients, opts.gates
        ));
    }
    let (scenario, scenario_args) = scenario_args(&opts.scenario)?;
    let nats_bin = find_nats_server()?;
    let start = Instant::now();
    let deadline = start + opts.duration.0 + scenario.ramp_up.0 + SLACK;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("gatekit-cluster-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut fleet = Fleet {
        nats: None,
        backends: Vec::new(),
        gates: Vec::new(),
        runs: Vec::new(),
        dir: dir.clone(),
    };
    let nats = start_nats(&nats_bin, &mut fleet)?;
    eprintln!("cluster: nats-server at {nats}");

    let (tx, rx) = mpsc::channel();
    let mut inbox = Inbox {
        rx,
        listening: vec![None; opts.gates],
        gate_stopped: vec![None; opts.gates],
        gate_ended: vec![false; opts.gates],
        ready: vec![false; opts.backends],
        backend_stopped: vec![None; opts.backends],
        backend_ended: vec![false; opts.backends],
    };

    // The back ends, ready (subscribed) before any gate takes a client.
    for i in 0..opts.backends {
        let mut args: Vec<String> = vec![
            "backend".into(),
            "--nats".into(),
            nats.clone(),
            "--module".into(),
            "echo".into(),
            "--latency".into(),
            Dur(opts.latency).to_string(),
            "--stdin-control".into(),
        ];
        if let Some(n) = opts.corrupt_every {
            args.extend(["--corrupt-every".into(), n.to_string()]);
        }
        let p = Proc::start(&opts.exe, &args, Role::Backend, i, tx.clone())?;
        fleet.backends.push(p);
    }
    let ready_by = deadline.min(Instant::now() + Duration::from_secs(20));
    if !inbox.until(ready_by, |s| {
        s.ready.iter().all(|&r| r) || s.backend_ended.iter().any(|&e| e)
    }) || !inbox.ready.iter().all(|&r| r)
    {
        return Err(format!(
            "the back ends did not all subscribe (ready: {:?})",
            inbox.ready
        ));
    }
    eprintln!("cluster: {} back ends subscribed", opts.backends);

    // The gates.
    let config = dir.join("gate.toml");
    std::fs::write(&config, gate_config(&nats, &scenario))
        .map_err(|e| format!("{}: {e}", config.display()))?;
    let ids: Vec<String> = (1..=opts.gates).map(|n| format!("gate-{n}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let args: Vec<String> = vec![
            "serve".into(),
            "--json".into(),
            "--stdin-control".into(),
            "--config".into(),
            config.display().to_string(),
            "--gate-id".into(),
            id.clone(),
            "--control".into(),
            "127.0.0.1:0".into(),
            "--push-rate".into(),
            "2".into(),
            "--status-every".into(),
            "1h".into(),
        ];
        let p = Proc::start(&opts.exe, &args, Role::Gate, i, tx.clone())?;
        fleet.gates.push(p);
    }
    drop(tx);
    let listening_by = deadline.min(Instant::now() + Duration::from_secs(20));
    inbox.until(listening_by, |s| {
        s.listening.iter().all(|l| l.is_some()) || s.gate_ended.iter().any(|&e| e)
    });
    let mut endpoints = Vec::new();
    for (i, l) in inbox.listening.iter().enumerate() {
        match l {
            Some((addr, Some(control))) => endpoints.push((*addr, *control)),
            Some((_, None)) => return Err(format!("{} has no control endpoint", ids[i])),
            None => return Err(format!("{} did not start listening", ids[i])),
        }
    }
    eprintln!(
        "cluster: gates listening on {:?}",
        endpoints.iter().map(|e| e.0).collect::<Vec<_>>()
    );

    // One run per gate, all at once.
    let mut shares = Vec::new();
    for (i, (addr, control)) in endpoints.iter().enumerate() {
        let clients = opts.clients / opts.gates + usize::from(i < opts.clients % opts.gates);
        shares.push(clients);
        let json = dir.join(format!("run-{}.json", i + 1));
        let mut args: Vec<String> = vec![
            "run".into(),
            "--target".into(),
            addr.to_string(),
            "--control".into(),
            control.to_string(),
            "--clients".into(),
            clients.to_string(),
            "--duration".into(),
            opts.duration.to_string(),
            "--json".into(),
            json.display().to_string(),
        ];
        args.extend(scenario_args.iter().cloned());
        let mut child = Command::new(&opts.exe)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", opts.exe.display()))?;
        let stdout = child.stdout.take().map(read_all);
        let stderr = child.stderr.take().map(read_all);
        fleet.runs.push(RunProc {
            child,
            stdout,
            stderr,
            exit: None,
        });
    }
    let mut problems = Vec::new();
    let mut reports = Vec::new();
    for (i, r) in fleet.runs.iter_mut().enumerate() {
        let code = loop {
            match r.child.try_wait() {
                Ok(Some(s)) => break s.code(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    problems.push(format!(
                        "the run against {} was killed at the deadline ({:?} after the start)",
                        ids[i],
                        deadline - start
                    ));
                    let _ = r.child.kill();
                    let _ = r.child.wait();
                    break None;
                }
            }
        };
        r.exit = Some(code);
        let out = r
            .stdout
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let err = r
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let json = std::fs::read_to_string(dir.join(format!("run-{}.json", i + 1)))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        reports.push((code, out, err, json));
    }

    // Graceful shutdown: the gates first (they answer the calls in flight through the back
    // ends), then the back ends.
    // Within the deadline, but always a few seconds for a graceful shutdown.
    let grace = |d: Duration| {
        (Instant::now() + d)
            .min(deadline)
            .max(Instant::now() + Duration::from_secs(5))
    };
    for g in &mut fleet.gates {
        g.finish();
    }
    let until = grace(Duration::from_secs(20));
    let gate_exits: Vec<Option<i32>> = fleet.gates.iter_mut().map(|g| g.wait(until)).collect();
    inbox.until(until, |s| s.gate_ended.iter().all(|&e| e));
    for b in &mut fleet.backends {
        b.finish();
    }
    let until = grace(Duration::from_secs(10));
    let backend_exits: Vec<Option<i32>> =
        fleet.backends.iter_mut().map(|b| b.wait(until)).collect();
    inbox.until(until, |s| s.backend_ended.iter().all(|&e| e));
    if let Some(mut n) = fleet.nats.take() {
        let _ = n.kill();
        let _ = n.wait();
    }

    let gates = ids
        .iter()
        .zip(endpoints)
        .zip(shares)
        .zip(reports)
        .enumerate()
        .map(
            |(i, (((id, (addr, control)), clients), (run_exit, out, err, json)))| GateRun {
                id: id.clone(),
                addr,
                control,
                clients,
                run_exit,
                run_report: out,
                run_stderr: err,
                run_json: json,
                gate_exit: gate_exits[i],
                gate_stopped: inbox.gate_stopped[i].clone(),
            },
        )
        .collect();
    let backends = backend_exits
        .iter()
        .enumerate()
        .map(|(i, &exit)| {
            let s = inbox.backend_stopped[i];
            BackendRun {
                index: i + 1,
                exit,
                answered: s.map(|s| s.0),
                corrupted: s.map(|s| s.1),
                notifies: s.map(|s| s.2),
            }
        })
        .collect();
    let mut report = ClusterReport {
        nats,
        scenario: opts.scenario.clone(),
        clients: opts.clients,
        duration: opts.duration,
        gates,
        backends,
        problems,
        passed: false,
    };
    report.judge();
    Ok(report)
}
