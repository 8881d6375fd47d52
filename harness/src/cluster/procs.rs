//! The cluster's child processes: `nats-server` and `redis-server` on free loopback ports, gate
//! and back-end processes (stopped by closing their standard input, their JSON lines read on
//! threads), the `gatekit run` children, and the [`Fleet`] that kills whatever is left when it
//! is dropped.

use crate::nats_echo::BackendEvent;
use crate::serve::{GateEvent, GateStatus};
use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// `$NATS_SERVER`, else `nats-server` in PATH, else the usual places (Debian's is in /usr/sbin).
pub fn find_nats_server() -> Result<PathBuf, String> {
    find_binary(
        "nats-server",
        "NATS_SERVER",
        &["/usr/sbin", "/usr/local/bin", "/usr/bin", "/opt/nats"],
        "`apt-get install nats-server`, or set NATS_SERVER",
    )
}

/// Where a line of a child's standard output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Gate,
    Backend,
}

pub(super) enum Line {
    Gate(usize, GateEvent),
    Backend(usize, BackendEvent),
    Ended(Role, usize),
}

/// A gate or back-end process, stopped by closing its standard input.
pub(super) struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    exit: Option<Option<i32>>,
}

impl Proc {
    pub(super) fn start(
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
    pub(super) fn finish(&mut self) {
        self.stdin = None;
    }

    /// Waits until `until` for the process to exit; kills it then. Its exit code.
    pub(super) fn wait(&mut self, until: Instant) -> Option<i32> {
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

    /// SIGKILLs the process (before closing its standard input, which would start a graceful
    /// shutdown: a killed gate must not say goodbye) and reaps it.
    pub(super) fn kill(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            self.stdin = None;
            let _ = self.child.wait();
            self.exit = Some(None);
        }
    }
}

/// A `gatekit run` child, its output read on threads.
pub(super) struct RunProc {
    pub(super) child: Child,
    pub(super) stdout: Option<std::thread::JoinHandle<String>>,
    pub(super) stderr: Option<std::thread::JoinHandle<String>>,
    pub(super) exit: Option<Option<i32>>,
}

pub(super) fn read_all(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
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
pub(super) struct Fleet {
    pub(super) nats: Option<Child>,
    pub(super) redis: Option<Child>,
    pub(super) backends: Vec<Proc>,
    pub(super) gates: Vec<Proc>,
    pub(super) runs: Vec<RunProc>,
    pub(super) dir: PathBuf,
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
        for mut n in self.nats.take().into_iter().chain(self.redis.take()) {
            let _ = n.kill();
            let _ = n.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Where a gate listens: its first listener (the runs'), its control endpoint, and its native TCP
/// listener (the directory's), if any.
pub(super) type Listening = (SocketAddr, Option<SocketAddr>, Option<SocketAddr>);

/// The children's output lines, with what has been seen so far.
pub(super) struct Inbox {
    pub(super) rx: mpsc::Receiver<Line>,
    /// Per gate: its first listener's address, its control endpoint, its native TCP listener's
    /// address (the directory's clients connect there).
    pub(super) listening: Vec<Option<Listening>>,
    pub(super) gate_stopped: Vec<Option<GateStatus>>,
    pub(super) gate_ended: Vec<bool>,
    pub(super) ready: Vec<bool>,
    pub(super) backend_stopped: Vec<Option<(u64, u64, u64)>>,
    pub(super) backend_ended: Vec<bool>,
}

impl Inbox {
    /// Takes in lines until `done` holds or `until` passes (false then).
    pub(super) fn until(&mut self, until: Instant, mut done: impl FnMut(&Inbox) -> bool) -> bool {
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
            Line::Gate(
                i,
                GateEvent::Listening {
                    addr,
                    control,
                    listeners,
                    ..
                },
            ) => {
                let native = listeners
                    .iter()
                    .find(|l| {
                        l.protocol == crate::listen::WireProtocol::Native
                            && l.transport == crate::listen::TransportKind::Tcp
                    })
                    .map(|l| l.addr);
                self.listening[i] = Some((addr, control, native))
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

pub(super) fn free_port() -> Result<u16, String> {
    let l =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("no free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// Starts `nats-server` on a free loopback port; its URL.
pub(super) fn start_nats(bin: &Path, fleet: &mut Fleet) -> Result<String, String> {
    let child = start_listening(bin, "nats-server", |port| {
        vec![
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
        ]
    })?;
    let url = format!("nats://127.0.0.1:{}", child.1);
    fleet.nats = Some(child.0);
    Ok(url)
}

/// Starts `redis-server` on a free loopback port, without persistence; its URL.
pub(super) fn start_redis(bin: &Path, fleet: &mut Fleet) -> Result<String, String> {
    let child = start_listening(bin, "redis-server", redis_args)?;
    let url = format!("redis://127.0.0.1:{}", child.1);
    fleet.redis = Some(child.0);
    Ok(url)
}

/// The arguments of a `redis-server` on loopback `port`, without persistence, in the foreground.
pub(crate) fn redis_args(port: u16) -> Vec<String> {
    [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Starts `bin` with `args(port)` on a free loopback port and waits (5 s at most) until the port
/// accepts; the child and its port.
pub(crate) fn start_listening(
    bin: &Path,
    name: &str,
    args: impl Fn(u16) -> Vec<String>,
) -> Result<(Child, u16), String> {
    let mut last = String::new();
    // A port found free may be taken before the server binds it: a few tries.
    for _ in 0..3 {
        let port = free_port()?;
        let mut child = Command::new(bin)
            .args(args(port))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                last = format!("{name} on port {port} exited at start: {status}");
                break;
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok((child, port));
            }
            if Instant::now() >= until {
                let _ = child.kill();
                let _ = child.wait();
                last = format!("{name} did not accept on port {port} within 5 s");
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Err(last)
}

/// `$REDIS_SERVER`, else `redis-server` in PATH, else the usual places (Debian's is in /usr/bin).
pub fn find_redis_server() -> Result<PathBuf, String> {
    find_binary(
        "redis-server",
        "REDIS_SERVER",
        &["/usr/bin", "/usr/sbin", "/usr/local/bin"],
        "`apt-get install redis-server`, or set REDIS_SERVER",
    )
}

/// `$<env>` if set (it must exist), else `name` in PATH, else in `dirs`.
fn find_binary(name: &str, env: &str, dirs: &[&str], hint: &str) -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os(env) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!(
                "{env}={}: no such file ({name} is needed)",
                p.display()
            ))
        };
    }
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).collect())
        .unwrap_or_default();
    for d in dirs {
        candidates.push(PathBuf::from(d).join(name));
    }
    let dirs = dirs.join(", ");
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| format!("{name} is not installed (not in PATH nor {dirs}; {hint})"))
}
