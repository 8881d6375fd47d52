//! A real `redis-server` for tests: on a free loopback port, no persistence, killed on drop.
//!
//! Self-contained (std only) so any test can include it:
//! `#[path = "<...>/server/tests/support/redis_server.rs"] mod redis_server;`

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a start waits for the port to accept.
const READY_WITHIN: Duration = Duration::from_secs(5);

/// A running (or killed) `redis-server` on `127.0.0.1:<port>`.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    bin: PathBuf,
}

impl RedisServer {
    /// Starts `redis-server` on a free loopback port. Err (with why) if it is not installed or
    /// does not come up within 5 s.
    pub fn start() -> Result<RedisServer, String> {
        let bin = find_binary()?;
        let mut last = String::new();
        // A port found free may be taken before the server binds it: a few tries.
        for _ in 0..3 {
            let port = free_port()?;
            let mut server = RedisServer {
                child: None,
                port,
                bin: bin.clone(),
            };
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(why) => last = why,
            }
        }
        Err(last)
    }

    /// Starts `redis-server` on `port` (which must be free).
    pub fn start_on(port: u16) -> Result<RedisServer, String> {
        let mut server = RedisServer {
            child: None,
            port,
            bin: find_binary()?,
        };
        server.spawn()?;
        Ok(server)
    }

    /// `redis://127.0.0.1:<port>`.
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
        let child = Command::new(&self.bin)
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ])
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
                        "redis-server on port {} exited at start: {status}",
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
                    "redis-server did not accept on port {} within {READY_WITHIN:?}",
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `redis://127.0.0.1:<port>`.
pub fn url_on(port: u16) -> String {
    format!("redis://127.0.0.1:{port}")
}

/// A loopback port nothing listens on at the moment.
pub fn free_port() -> Result<u16, String> {
    let l =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("no free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// `$REDIS_SERVER`, else `redis-server` in PATH, else the usual places.
fn find_binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("REDIS_SERVER") {
        return Ok(PathBuf::from(p));
    }
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("redis-server"))
                .collect()
        })
        .unwrap_or_default();
    for d in ["/usr/bin", "/usr/sbin", "/usr/local/bin"] {
        candidates.push(PathBuf::from(d).join("redis-server"));
    }
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        "redis-server is not installed (not in PATH nor /usr/bin, /usr/sbin, /usr/local/bin)"
            .to_owned()
    })
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
pub fn start_for(test: &str) -> Option<RedisServer> {
    match RedisServer::start() {
        Ok(s) => Some(s),
        Err(why) => {
            peer_ready(test, Err(why));
            None
        }
    }
}
