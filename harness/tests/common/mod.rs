//! Running `gatekit` as a process in tests: bounded in time, output captured; temporary files; a
//! `gatekit serve` held open while a test loads it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub const GATEKIT: &str = env!("CARGO_BIN_EXE_gatekit");

/// How a process ended, and what it printed.
pub struct Out {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

impl std::fmt::Debug for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?} after {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.took, self.stdout, self.stderr
        )
    }
}

/// Waits for `child` to exit within `limit` (killing it and failing otherwise).
pub fn finish(mut child: Child, limit: Duration, what: &str) -> Out {
    let start = Instant::now();
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} still running after {limit:?}: killed\n{}",
                err.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Out {
        code: status.code(),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        took: start.elapsed(),
    }
}

/// `gatekit <args>`.
pub fn command(args: &[&str]) -> Command {
    let mut c = Command::new(GATEKIT);
    c.args(args);
    c
}

/// Runs `command` to its end with standard input closed and output captured, within `limit`.
pub fn run(mut command: Command, limit: Duration, what: &str) -> Out {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    finish(child, limit, what)
}

/// Runs `gatekit <args>` to its end within `limit`.
pub fn gatekit(args: &[&str], limit: Duration) -> Out {
    run(command(args), limit, &format!("gatekit {args:?}"))
}

/// A path in the temp directory no other test or process uses.
pub fn temp_path(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    std::env::temp_dir().join(format!(
        "gatekit-test-{}-{nanos}-{name}",
        std::process::id()
    ))
}

/// Removes the file when dropped.
pub struct TempFile(pub PathBuf);

impl TempFile {
    /// A new temporary file holding `text`.
    pub fn with(name: &str, text: &str) -> TempFile {
        let f = TempFile(temp_path(name));
        std::fs::write(&f.0, text).expect("write temp file");
        f
    }

    /// Its path as text.
    pub fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A `gatekit serve --json --stdin-control` process on a free loopback port, stopped (standard
/// input closed, then killed if it lingers) when dropped or by [`Serve::stop`].
pub struct Serve {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    /// Where the gate listens.
    pub addr: SocketAddr,
    /// Its control endpoint, if it was asked for one.
    pub control: Option<SocketAddr>,
}

impl Serve {
    /// Starts `gatekit serve` with `extra` arguments and waits for it to listen.
    pub fn start(extra: &[&str]) -> Serve {
        let mut args = vec![
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--json",
            "--stdin-control",
            "--duration",
            "5m",
            "--status-every",
            "1h",
        ];
        args.extend_from_slice(extra);
        let mut child = command(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn gatekit serve");
        let stdin = child.stdin.take();
        let mut lines = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        lines.read_line(&mut line).expect("serve's first line");
        let event: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        assert_eq!(event["event"], "listening", "{line}");
        let addr = event["addr"].as_str().expect("addr").parse().expect("addr");
        let control = event["control"]
            .as_str()
            .map(|c| c.parse().expect("control"));
        // Keep reading its output so it never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            while lines.read_line(&mut sink).is_ok_and(|n| n > 0) {
                sink.clear();
            }
        });
        Serve {
            child: Some(child),
            stdin,
            addr,
            control,
        }
    }

    /// Stops the gate and returns its exit code.
    pub fn stop(mut self) -> Option<i32> {
        self.shut()
    }

    /// Sends the gate SIGTERM (standard input stays open) and returns its exit code.
    pub fn terminate(mut self) -> Option<i32> {
        let pid = self.child.as_ref()?.id();
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid}");
        let mut child = self.child.take()?;
        let start = Instant::now();
        loop {
            if let Some(s) = child.try_wait().expect("wait") {
                return s.code();
            }
            if start.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("gatekit serve did not stop within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn shut(&mut self) -> Option<i32> {
        drop(self.stdin.take());
        let mut child = self.child.take()?;
        let start = Instant::now();
        loop {
            if let Some(s) = child.try_wait().expect("wait") {
                return s.code();
            }
            if start.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("gatekit serve did not stop within 20 s of its stdin closing");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Whether a real peer a test needs is here: `ready` says so. If it is not, prints
/// `skipped: <test>: <why>` to stderr and returns false — or, with `GATEKIT_REQUIRE_PEERS=1` (as
/// `.ci/run` sets it after installing every peer), fails the test.
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

/// The repository's root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Whether `program` can be run (some print their usage and exit non-zero on `--help`: only
/// that it starts is checked).
pub fn have_program(program: &str) -> Result<(), String> {
    match Command::new(program)
        .arg("--help")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => Ok(()),
        Err(e) => Err(format!("`{program}` is not installed ({e})")),
    }
}
