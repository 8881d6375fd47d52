//! `gatekit scale`: connection scale across processes. For each connection count it starts
//! `gatekit serve` gate processes (sharing one port with SO_REUSEPORT when there are several) and
//! `gatekit hold` worker processes (each with its own 127.0.0.x source addresses), lets every
//! connection handshake and sit idle, pinging, then closes them, and measures:
//!
//! - the connect rate (handshakes per second, all workers together);
//! - the gate processes' resident memory growth per held connection (RSS from `/proc`, after the
//!   hold, minus RSS before the first connection);
//! - that every connection got its Disconnect, and how long that took.
//!
//! Each count is run `runs` times; the table shows medians. The open-file limit is checked before
//! anything starts, and a process that hits it anyway stops the run with its message.
//!
//! With a transport other than tcp (`--transport tls|ws|wss`), the gates listen on
//! `native+TRANSPORT://` (tls and wss with the harness's self-signed certificate, written to a
//! temporary directory for `--tls-cert`/`--tls-key`) and the workers connect over it, trusting
//! that certificate (`--tls-ca`). Memory per connection then includes the transport's state.

use crate::client_transport::SelfSignedCert;
use crate::hold::{WorkerEvent, RESERVED_FILES};
use crate::listen::TransportKind;
use crate::procfs;
use crate::serve::{GateEvent, GateStatus};
use crate::source_address::{Sources, DEFAULT_PER_SOURCE};
use serde::Serialize;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The gate memory allowed per idle connection (issue 5's target, and the transports issue's
/// over ws), bytes.
pub const TARGET_BYTES_PER_CONNECTION: f64 = 4096.0;

/// The gate memory allowed per idle connection over tls and wss (the transports issue's target),
/// bytes.
pub const TARGET_BYTES_PER_TLS_CONNECTION: f64 = 8192.0;

/// The memory target per idle connection over `transport`, bytes.
pub fn target_bytes(transport: TransportKind) -> f64 {
    if transport.is_tls() {
        TARGET_BYTES_PER_TLS_CONNECTION
    } else {
        TARGET_BYTES_PER_CONNECTION
    }
}

/// Options of `gatekit scale`.
#[derive(Debug, Clone)]
pub struct ScaleOptions {
    /// The `gatekit` executable to start as gates and workers.
    pub exe: PathBuf,
    /// Connection counts to measure, in order.
    pub levels: Vec<usize>,
    /// Gate processes (sharing one port).
    pub gates: usize,
    /// Worker processes (0: as few as the open-file limit allows).
    pub workers: usize,
    /// Runs per count.
    pub runs: usize,
    /// How long every connection is held idle before memory is read.
    pub hold: Duration,
    /// Ping interval the clients ask for.
    pub ping: Duration,
    /// Connects and handshakes in flight per worker.
    pub concurrency: usize,
    /// Fail a count whose median gate memory per connection is above this, bytes.
    pub max_bytes_per_connection: Option<f64>,
    /// The transport under the native protocol.
    pub transport: TransportKind,
    /// With the cluster's user directory: a redis-server, every connection a logged-in user
    /// ([`crate::scale_directory`]).
    pub directory: bool,
    /// The gates' storage heartbeat interval with `directory`.
    pub heartbeat: Duration,
}

/// One run at one connection count.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleRun {
    /// Connections held.
    pub connections: usize,
    /// Seconds from the workers' start to the last WELCOME.
    pub connect_secs: f64,
    /// Handshakes per second.
    pub handshakes_per_sec: f64,
    /// Gate processes' RSS before the first connection, KiB (sum).
    pub rss_before_kib: u64,
    /// Gate processes' RSS with every connection held, KiB (sum).
    pub rss_held_kib: u64,
    /// RSS growth per connection, bytes.
    pub bytes_per_connection: f64,
    /// Connections per gate process when all were held.
    pub per_gate: Vec<usize>,
    /// Disconnects the gates' learners saw after the clients left.
    pub disconnects: u64,
    /// Seconds from the clients leaving to the last Disconnect.
    pub disconnect_secs: f64,
    /// PINGs sent and PONGs received while holding.
    pub pings: u64,
    /// PONGs received.
    pub pongs: u64,
    /// Connections the gates ended while held (should be 0).
    pub closed_by_gate: u64,
    /// With `--directory`: what the directory cost in Redis.
    pub directory: Option<crate::scale_directory::DirectoryUse>,
}

/// The medians at one connection count.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleLevel {
    /// Connections.
    pub connections: usize,
    /// The transport.
    pub transport: TransportKind,
    /// Gate processes.
    pub gates: usize,
    /// Worker processes.
    pub workers: usize,
    /// Every run.
    pub runs: Vec<ScaleRun>,
    /// Median handshakes per second.
    pub handshakes_per_sec: f64,
    /// Median RSS growth per connection, bytes.
    pub bytes_per_connection: f64,
    /// Median seconds to every Disconnect.
    pub disconnect_secs: f64,
    /// Whether every run saw every Disconnect, no connection ended by the gate, and PONGs.
    pub all_disconnects: bool,
}

impl ScaleLevel {
    /// Whether every invariant held and the memory per connection is at most `max_bytes`.
    pub fn passed(&self, max_bytes: Option<f64>) -> bool {
        self.all_disconnects && max_bytes.is_none_or(|m| self.bytes_per_connection <= m)
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Workers needed for `connections` under this process's open-file limit (children inherit it).
pub fn workers_needed(connections: usize) -> usize {
    let per = per_process_capacity();
    connections.div_ceil(per).max(1)
}

fn per_process_capacity() -> usize {
    match procfs::open_file_limit() {
        Some((soft, _)) if soft < u64::MAX / 2 => {
            (soft.saturating_sub(RESERVED_FILES + 64) as usize).max(1)
        }
        _ => usize::MAX / 2,
    }
}

/// Checks the plan against the open-file limit before starting anything.
pub fn check_plan(connections: usize, gates: usize, workers: usize) -> Result<(), String> {
    let per = per_process_capacity();
    // SO_REUSEPORT spreads by hash, so allow some imbalance between gates.
    let per_gate = if gates > 1 {
        (connections as f64 / gates as f64 * 1.05).ceil() as usize
    } else {
        connections
    };
    if per_gate > per {
        return Err(format!(
            "{connections} connections over {gates} gate process(es) is about {per_gate} per process, but the open-file limit allows about {per} per process; use --gates {}",
            (connections as f64 * 1.05 / per as f64).ceil() as usize
        ));
    }
    if connections.div_ceil(workers) > per {
        return Err(format!(
            "{connections} connections over {workers} worker process(es) exceed the open-file limit of about {per} per process; use --workers {}",
            connections.div_ceil(per)
        ));
    }
    Ok(())
}

enum Msg {
    Gate(usize, GateEvent),
    Worker(usize, WorkerEvent),
    Ended(&'static str, usize),
}

struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Proc {
    fn start(
        exe: &PathBuf,
        args: &[String],
        kind: &'static str,
        index: usize,
        tx: mpsc::Sender<Msg>,
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
                let msg = match kind {
                    "gate" => serde_json::from_str(&line)
                        .ok()
                        .map(|e| Msg::Gate(index, e)),
                    _ => serde_json::from_str(&line)
                        .ok()
                        .map(|e| Msg::Worker(index, e)),
                };
                if std::env::var_os("GATEKIT_SCALE_DEBUG").is_some() && !line.contains("\"status\"")
                {
                    eprintln!("[{kind} {index}] {line}");
                }
                if let Some(m) = msg {
                    if tx.send(m).is_err() {
                        break;
                    }
                }
            }
            let _ = tx.send(Msg::Ended(kind, index));
        });
        Ok(Proc { child, stdin })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Closes standard input: the process's signal to finish.
    fn finish(&mut self) {
        self.stdin = None;
    }

    fn reap(&mut self, within: Duration) {
        self.finish();
        let end = Instant::now() + within;
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The processes of one run; whatever happens, they are stopped when this is dropped.
struct Fleet {
    gates: Vec<Proc>,
    workers: Vec<Proc>,
}

impl Fleet {
    /// Why a process's output ended early: its exit status, if it has one yet.
    fn ended(&mut self, kind: &str, index: usize) -> String {
        let procs = if kind == "gate" {
            &mut self.gates
        } else {
            &mut self.workers
        };
        let status = procs.get_mut(index).and_then(|p| {
            let end = Instant::now() + Duration::from_secs(2);
            loop {
                match p.child.try_wait() {
                    Ok(Some(s)) => return Some(s),
                    Ok(None) if Instant::now() < end => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => return None,
                }
            }
        });
        match status {
            Some(s) => format!("{kind} process {index} ended early ({s})"),
            None => format!("{kind} process {index} closed its output early"),
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for w in &mut self.workers {
            w.reap(Duration::from_secs(20));
        }
        for g in &mut self.gates {
            g.reap(Duration::from_secs(15));
        }
    }
}

struct Inbox {
    rx: mpsc::Receiver<Msg>,
    gate_status: Vec<GateStatus>,
}

impl Inbox {
    /// Waits for the next message, keeping gate statuses current.
    fn next(&mut self, until: Instant) -> Result<Msg, String> {
        let left = until.saturating_duration_since(Instant::now());
        match self.rx.recv_timeout(left) {
            Ok(Msg::Gate(i, GateEvent::Status(s))) => {
                self.gate_status[i] = s.clone();
                Ok(Msg::Gate(i, GateEvent::Status(s)))
            }
            Ok(Msg::Gate(
                i,
                GateEvent::Stopped {
                    status,
                    closed,
                    aborted,
                },
            )) => {
                self.gate_status[i] = status.clone();
                Ok(Msg::Gate(
                    i,
                    GateEvent::Stopped {
                        status,
                        closed,
                        aborted,
                    },
                ))
            }
            Ok(m) => Ok(m),
            Err(_) => Err("timed out waiting for the gate and worker processes".to_owned()),
        }
    }

    /// Reads every message for `d` (the gates report every 100 ms), so the statuses are fresh;
    /// a process that ended is an error.
    fn drain_for(&mut self, d: Duration, fleet: &mut Fleet) -> Result<(), String> {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if let Ok(Msg::Ended(kind, j)) = self.next(until) {
                return Err(fleet.ended(kind, j));
            }
        }
        Ok(())
    }

    /// Waits until `done` holds for the gates' latest statuses.
    fn wait_gates(
        &mut self,
        until: Instant,
        what: &str,
        done: impl Fn(&[GateStatus]) -> bool,
    ) -> Result<(), String> {
        while !done(&self.gate_status) {
            match self.next(until) {
                Ok(Msg::Ended("gate", i)) => return Err(format!("gate process {i} ended early")),
                Ok(_) => {}
                Err(_) => return Err(format!("timed out waiting for {what}")),
            }
        }
        Ok(())
    }
}

fn gate_rss(fleet: &Fleet) -> u64 {
    fleet
        .gates
        .iter()
        .map(|g| procfs::rss_kib(Some(g.pid())).unwrap_or(0))
        .sum()
}

/// Runs `connections` once; `cert` is the gates' certificate over tls and wss.
pub fn run_once(
    opts: &ScaleOptions,
    connections: usize,
    workers: usize,
    sources: &mut Sources,
    cert: Option<&SelfSignedCert>,
) -> Result<ScaleRun, String> {
    let cert_files = match (opts.transport.is_tls(), cert.and_then(|c| c.files.as_ref())) {
        (false, _) => None,
        (true, Some(files)) => Some(files),
        (true, None) => {
            return Err(format!(
                "scale over {} needs a certificate in files",
                opts.transport
            ))
        }
    };
    let (tx, rx) = mpsc::channel();
    let mut inbox = Inbox {
        rx,
        gate_status: vec![GateStatus::default(); opts.gates],
    };
    let mut fleet = Fleet {
        gates: Vec::new(),
        workers: Vec::new(),
    };
    // With the directory: Redis, and the gates' configuration naming it.
    let dir = std::env::temp_dir().join(format!("gatekit-scale-{}", std::process::id()));
    let mut redis = None;
    let mut config_file = None;
    if opts.directory {
        let r = crate::scale_directory::RedisProcess::start()?;
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        config_file = Some(crate::scale_directory::gate_config(
            &dir,
            &r.url,
            opts.heartbeat,
        )?);
        redis = Some(r);
    }
    let gate_args = |addr: &str, i: usize| -> Vec<String> {
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--json".into(),
            "--stdin-control".into(),
            "--reuse-port".into(),
            "--listen".into(),
            format!("native+{}://{addr}", opts.transport),
            "--duration".into(),
            "2h".into(),
            "--status-every".into(),
            "100ms".into(),
            "--max-connections".into(),
            "1000000".into(),
        ];
        if let Some((c, k)) = cert_files {
            args.extend([
                "--tls-cert".into(),
                c.display().to_string(),
                "--tls-key".into(),
                k.display().to_string(),
            ]);
        }
        if let Some(f) = &config_file {
            args.extend([
                "--config".into(),
                f.display().to_string(),
                "--gate-id".into(),
                format!("scale-gate-{i}"),
            ]);
        }
        args
    };
    // The first gate picks the port; the others share it.
    let mut port = 0;
    for i in 0..opts.gates {
        let addr = format!("127.0.0.1:{port}");
        fleet.gates.push(Proc::start(
            &opts.exe,
            &gate_args(&addr, i),
            "gate",
            i,
            tx.clone(),
        )?);
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            match inbox.next(until)? {
                Msg::Gate(j, GateEvent::Listening { addr, .. }) if j == i => {
                    port = addr.port();
                    break;
                }
                Msg::Ended(kind, j) => return Err(fleet.ended(kind, j)),
                _ => {}
            }
        }
    }
    // Let the gates settle, then read their memory before any connection.
    std::thread::sleep(Duration::from_millis(500));
    let rss_before_kib = gate_rss(&fleet);
    let redis_before = redis.as_mut().map(|r| r.info()).transpose()?;
    let target = format!("127.0.0.1:{port}");
    let started = Instant::now();
    for k in 0..workers {
        let n = connections / workers + usize::from(k < connections % workers);
        let source = sources.take(n.div_ceil(DEFAULT_PER_SOURCE));
        let mut args: Vec<String> = vec![
            "hold".into(),
            "--target".into(),
            target.clone(),
            "--connections".into(),
            n.to_string(),
            "--source".into(),
            source.to_string(),
            "--ping".into(),
            format!("{}s", opts.ping.as_secs().max(1)),
            "--concurrency".into(),
            opts.concurrency.to_string(),
            "--transport".into(),
            opts.transport.name().into(),
        ];
        if let Some((c, _)) = cert_files {
            args.extend(["--tls-ca".into(), c.display().to_string()]);
        }
        if opts.directory {
            args.extend([
                "--hmac-secret".into(),
                crate::scale_directory::SECRET.into(),
                "--user-prefix".into(),
                format!("w{k}-"),
            ]);
        }
        fleet
            .workers
            .push(Proc::start(&opts.exe, &args, "worker", k, tx.clone())?);
    }
    drop(tx);
    let until = started + Duration::from_secs(120) + Duration::from_millis(connections as u64);
    let mut connected = 0;
    while connected < workers {
        match inbox.next(until)? {
            Msg::Worker(_, WorkerEvent::Connected { .. }) => connected += 1,
            Msg::Worker(k, WorkerEvent::Failed { message, held }) => {
                return Err(format!("worker {k} (holding {held}): {message}"));
            }
            Msg::Ended(kind, j) => return Err(fleet.ended(kind, j)),
            _ => {}
        }
    }
    let connect_secs = started.elapsed().as_secs_f64();
    inbox.wait_gates(
        Instant::now() + Duration::from_secs(20),
        "every session to reach the gates",
        |s| s.iter().map(|g| g.sessions).sum::<usize>() >= connections,
    )?;
    let per_gate: Vec<usize> = inbox.gate_status.iter().map(|g| g.sessions).collect();
    // Every bind stored: one key per user (plus the gates' own keys).
    let mut directory = None;
    let mut hold_start = None;
    if let (Some(r), Some(before)) = (redis.as_mut(), redis_before.as_ref()) {
        let until = Instant::now() + Duration::from_secs(60);
        let bound = loop {
            // Fresh gate statuses next to each Redis reading.
            inbox.drain_for(Duration::from_millis(250), &mut fleet)?;
            let info = r.info()?;
            if info.keys >= (connections + opts.gates) as u64 {
                break info;
            }
            if Instant::now() > until {
                return Err(format!(
                    "only {} keys in Redis for {connections} users within 60 s",
                    info.keys
                ));
            }
        };
        let liveness = crate::scale_directory::liveness_calls(opts.gates, started.elapsed());
        let users = connections as u64;
        let heartbeats: u64 = inbox.gate_status.iter().map(|g| g.heartbeats).sum();
        let calls = (bound.script_calls() - before.script_calls()) as f64;
        directory = Some(crate::scale_directory::DirectoryUse {
            users,
            redis_bytes_per_user: bound.used_memory().saturating_sub(before.used_memory()) as f64
                / users as f64,
            commands_per_login: calls / users as f64,
            commands_per_bind: (calls - heartbeats as f64 - liveness) / users as f64,
            liveness_calls: liveness,
            store_errors_bound: inbox.gate_status.iter().map(|g| g.store_errors).sum(),
            ..Default::default()
        });
        hold_start = Some((bound, heartbeats, Instant::now()));
    }
    // Hold: every connection idle, pinging.
    let hold_end = Instant::now() + opts.hold;
    while Instant::now() < hold_end {
        match inbox.next(hold_end) {
            Ok(Msg::Ended(kind, j)) => return Err(fleet.ended(kind, j)),
            Ok(Msg::Worker(k, WorkerEvent::Failed { message, .. })) => {
                return Err(format!("worker {k}: {message}"));
            }
            _ => {}
        }
    }
    let rss_held_kib = gate_rss(&fleet);
    if let (Some(r), Some(d), Some((start, beats_before, at))) =
        (redis.as_mut(), directory.as_mut(), hold_start.as_ref())
    {
        inbox.drain_for(Duration::from_millis(250), &mut fleet)?;
        let end = r.info()?;
        let beats = inbox.gate_status.iter().map(|g| g.heartbeats).sum::<u64>() - beats_before;
        let liveness = crate::scale_directory::liveness_calls(opts.gates, at.elapsed());
        d.heartbeats = beats;
        d.store_errors_held = inbox.gate_status.iter().map(|g| g.store_errors).sum();
        d.liveness_calls += liveness;
        d.commands_per_heartbeat =
            (end.script_calls() - start.script_calls()) as f64 / beats.max(1) as f64;
    }
    // Leave.
    let left_at = Instant::now();
    for w in &mut fleet.workers {
        w.finish();
    }
    let (mut pings, mut pongs, mut closed_by_gate) = (0, 0, 0);
    let mut left = vec![false; workers];
    let until = Instant::now() + Duration::from_secs(60);
    while left.iter().any(|l| !l) {
        match inbox.next(until)? {
            Msg::Worker(
                k,
                WorkerEvent::Left {
                    pings: p,
                    pongs: q,
                    closed_by_gate: c,
                    ..
                },
            ) => {
                left[k] = true;
                pings += p;
                pongs += q;
                closed_by_gate += c;
            }
            Msg::Ended("worker", k) if !left[k] => return Err(fleet.ended("worker", k)),
            _ => {}
        }
    }
    let want = connections as u64;
    let waited = inbox.wait_gates(
        Instant::now() + Duration::from_secs(30),
        "every Disconnect",
        |s| s.iter().map(|g| g.disconnects).sum::<u64>() >= want,
    );
    let disconnect_secs = left_at.elapsed().as_secs_f64();
    let disconnects = inbox.gate_status.iter().map(|g| g.disconnects).sum();
    if let Err(e) = waited {
        eprintln!("scale: {e}: {disconnects} of {connections}");
    }
    drop(fleet);
    drop(redis);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(ScaleRun {
        connections,
        connect_secs,
        handshakes_per_sec: connections as f64 / connect_secs,
        rss_before_kib,
        rss_held_kib,
        bytes_per_connection: (rss_held_kib.saturating_sub(rss_before_kib) as f64 * 1024.0)
            / connections as f64,
        per_gate,
        disconnects,
        disconnect_secs,
        pings,
        pongs,
        closed_by_gate,
        directory,
    })
}

/// Runs every count `runs` times; `progress` sees each run as it ends.
pub fn run(
    opts: &ScaleOptions,
    mut progress: impl FnMut(&ScaleRun),
) -> Result<Vec<ScaleLevel>, String> {
    let mut levels = Vec::new();
    let mut sources = Sources::default();
    let cert = if opts.transport.is_tls() {
        Some(SelfSignedCert::new(true)?)
    } else {
        None
    };
    for &connections in &opts.levels {
        let workers = if opts.workers == 0 {
            workers_needed(connections)
        } else {
            opts.workers
        };
        check_plan(connections, opts.gates, workers)?;
        let mut runs = Vec::new();
        for _ in 0..opts.runs.max(1) {
            let r = run_once(opts, connections, workers, &mut sources, cert.as_ref())?;
            progress(&r);
            runs.push(r);
        }
        let all_disconnects = runs.iter().all(|r| {
            r.disconnects == r.connections as u64
                && r.closed_by_gate == 0
                && (opts.hold < opts.ping || r.pongs > 0)
        });
        levels.push(ScaleLevel {
            connections,
            transport: opts.transport,
            gates: opts.gates,
            workers,
            handshakes_per_sec: median(runs.iter().map(|r| r.handshakes_per_sec).collect()),
            bytes_per_connection: median(runs.iter().map(|r| r.bytes_per_connection).collect()),
            disconnect_secs: median(runs.iter().map(|r| r.disconnect_secs).collect()),
            all_disconnects,
            runs,
        });
    }
    Ok(levels)
}

/// The growth table; `max_bytes` is the memory threshold, if any.
pub fn table(levels: &[ScaleLevel], max_bytes: Option<f64>) -> String {
    let mut s = String::new();
    s.push_str(
        "connections  transport  gates  workers  runs  handshakes/s  gate RSS/conn  vs target  all Disconnects (s)  result\n",
    );
    for l in levels {
        let target = target_bytes(l.transport);
        s.push_str(&format!(
            "{:>11}  {:>9}  {:>5}  {:>7}  {:>4}  {:>12.0}  {:>9.0} B  {:>4.2}× {:<3}  {:>13} ({:.2})  {}\n",
            l.connections,
            l.transport.name(),
            l.gates,
            l.workers,
            l.runs.len(),
            l.handshakes_per_sec,
            l.bytes_per_connection,
            l.bytes_per_connection / target,
            format!("{}K", target as u64 / 1024),
            if l.all_disconnects { "yes" } else { "NO" },
            l.disconnect_secs,
            if l.passed(max_bytes) { "PASS" } else { "FAIL" }
        ));
    }
    s.push_str("(medians over the runs; RSS growth of the gate processes from before the first connection to every connection held idle)\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }

    #[test]
    fn plans_are_checked_against_the_file_limit() {
        let per = per_process_capacity();
        if per < usize::MAX / 4 {
            let err = check_plan(per * 3, 1, 3).unwrap_err();
            assert!(err.contains("--gates"), "{err}");
            let err = check_plan(per * 3, 4, 1).unwrap_err();
            assert!(err.contains("--workers 3"), "{err}");
            assert!(check_plan(per * 3, 4, 3).is_ok());
            assert_eq!(workers_needed(per * 3), 3);
            assert_eq!(workers_needed(1), 1);
        }
    }
}
