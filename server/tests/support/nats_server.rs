//! A real `nats-server` for tests: on a free loopback port, no JetStream, killed on drop.
//!
//! Self-contained (std only) so any test can include it:
//! `#[path = "<...>/server/tests/support/nats_server.rs"] mod nats_server;`

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a start waits for the port to accept.
const READY_WITHIN: Duration = Duration::from_secs(5);

/// A running (or killed) `nats-server` on `127.0.0.1:<port>`.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    bin: PathBuf,
    /// A configuration file given with `-c`, if any.
    config: Option<PathBuf>,
}

impl NatsServer {
    /// Starts `nats-server` on a free loopback port. Err (with why) if it is not installed or
    /// does not come up within 5 s.
    pub fn start() -> Result<NatsServer, String> {
        Self::start_configured(None)
    }

    /// Starts `nats-server` on a free loopback port with `conf` (the text of a configuration
    /// file, e.g. `ping_interval: "500ms"`), written to a temporary file.
    pub fn start_with_config(conf: &str) -> Result<NatsServer, String> {
        let path = std::env::temp_dir().join(format!(
            "gatekit-nats-{}-{}.conf",
            std::process::id(),
            free_port()?
        ));
        std::fs::write(&path, conf).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::start_configured(Some(path))
    }

    fn start_configured(config: Option<PathBuf>) -> Result<NatsServer, String> {
        let bin = find_binary()?;
        let mut last = String::new();
        // A port found free may be taken before the server binds it: a few tries.
        for _ in 0..3 {
            let port = free_port()?;
            let mut server = NatsServer {
                child: None,
                port,
                bin: bin.clone(),
                config: config.clone(),
            };
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(why) => last = why,
            }
        }
        Err(last)
    }

    /// Starts `nats-server` on `port` (which must be free).
    pub fn start_on(port: u16) -> Result<NatsServer, String> {
        let mut server = NatsServer {
            child: None,
            port,
            bin: find_binary()?,
            config: None,
        };
        server.spawn()?;
        Ok(server)
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        url_on(self.port)
    }

    /// The port it listens on (kept across [`restart`](Self::restart)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILLs the server (no goodbye to its clients) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills it if running, then starts it again on the same port.
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        // The old listener may linger a moment: retry within the bound.
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            match self.spawn() {
                Ok(()) => return Ok(()),
                Err(why) if Instant::now() >= deadline => return Err(why),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    fn spawn(&mut self) -> Result<(), String> {
        let mut cmd = Command::new(&self.bin);
        if let Some(c) = &self.config {
            cmd.arg("-c").arg(c);
        }
        let child = cmd
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.bin.display()))?;
        self.child = Some(child);
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!(
                        "nats-server on port {} exited at start: {status}",
                        self.port
                    ));
                }
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(format!(
                    "nats-server did not accept on port {} within {READY_WITHIN:?}",
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        if let Some(c) = &self.config {
            let _ = std::fs::remove_file(c);
        }
    }
}

/// `nats://127.0.0.1:<port>`.
pub fn url_on(port: u16) -> String {
    format!("nats://127.0.0.1:{port}")
}

/// A loopback port nothing listens on at the moment.
pub fn free_port() -> Result<u16, String> {
    let l =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("no free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// `$NATS_SERVER`, else `nats-server` in PATH, else the usual places.
fn find_binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("NATS_SERVER") {
        return Ok(PathBuf::from(p));
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
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| "nats-server is not installed (not in PATH nor /usr/sbin)".to_owned())
}

/// Whether a test's peer is there: true if `ready` is Ok; else prints `skipped: <test>: <why>`
/// and returns false, or panics when `GATEKIT_REQUIRE_PEERS=1`.
pub fn peer_ready(test: &str, ready: Result<(), String>) -> bool {
    match ready {
        Ok(()) => true,
        Err(why) => {
            if std::env::var_os("GATEKIT_REQUIRE_PEERS").is_some_and(|v| v == "1") {
                panic!("{test}: a required peer is missing: {why}");
            }
            eprintln!("skipped: {test}: {why}");
            false
        }
    }
}

/// Starts a server for `test`, or None (printed `skipped`, see [`peer_ready`]).
pub fn start_for(test: &str) -> Option<NatsServer> {
    match NatsServer::start() {
        Ok(s) => Some(s),
        Err(why) => {
            peer_ready(test, Err(why));
            None
        }
    }
}
