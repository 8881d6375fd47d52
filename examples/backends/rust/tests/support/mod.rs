//! The example back ends as child processes, for the tests: started, waited for (`ready`),
//! stopped with SIGTERM, killed on drop. Their standard error is kept and printed when the test
//! fails.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Longest wait for anything in these tests.
pub const WAIT: Duration = Duration::from_secs(10);

/// `fut`, or a panic naming `what` after [`WAIT`].
pub async fn bounded<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: nothing within {WAIT:?}"),
    }
}

/// Which implementation of the chat module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// examples/backends/rust (this crate's `chat-backend`).
    Rust,
    /// examples/backends/python/chat.py.
    Python,
}

impl Lang {
    /// Whether it can run here: Err says what is missing (for `peer_ready`).
    pub fn available(self) -> Result<(), String> {
        match self {
            Lang::Rust => Ok(()),
            Lang::Python => {
                let ok = std::process::Command::new("python3")
                    .args(["-c", "import nats"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false);
                if ok {
                    Ok(())
                } else {
                    Err("python3 with nats-py is not installed \
                         (pip install -r examples/backends/python/requirements.txt)"
                        .to_owned())
                }
            }
        }
    }

    fn command(self) -> Command {
        match self {
            Lang::Rust => Command::new(env!("CARGO_BIN_EXE_chat-backend")),
            Lang::Python => {
                let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../python/chat.py");
                let mut c = Command::new("python3");
                c.arg("-u").arg(script);
                c
            }
        }
    }
}

/// A running back end.
pub struct Backend {
    lang: Lang,
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Backend {
    /// Starts `lang`'s back end with `args` and waits for its `ready` line.
    pub async fn start(lang: Lang, args: &[&str]) -> Backend {
        let mut cmd = lang.command();
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("NATS_URL")
            .env_remove("GATEKIT_PREFIX")
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the {lang:?} back end: {e}"));
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let keep = stderr.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = err_lines.next_line().await {
                let mut s = keep.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let mut out_lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut backend = Backend {
            lang,
            child,
            stderr,
        };
        let ready = tokio::time::timeout(WAIT, async {
            loop {
                match out_lines.next_line().await {
                    Ok(Some(l)) if l.trim() == "ready" => return Ok(()),
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => return Err("its standard output ended"),
                }
            }
        })
        .await;
        let why = match ready {
            Ok(Ok(())) => None,
            Ok(Err(why)) => Some(why),
            Err(_) => Some("no \"ready\" within the wait"),
        };
        if let Some(why) = why {
            let stderr = backend.kill_for_stderr().await;
            panic!("the {lang:?} back end did not start: {why}; its standard error:\n{stderr}");
        }
        // Keep reading stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = out_lines.next_line().await {} });
        backend
    }

    /// Kills it, and returns what it wrote on standard error.
    async fn kill_for_stderr(&mut self) -> String {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        std::mem::take(&mut *self.stderr.lock().unwrap())
    }

    /// What it wrote on standard error so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// SIGTERM, and its exit status (it must exit within the wait).
    pub async fn terminate(mut self) -> ExitStatus {
        let pid = self.child.id().expect("the back end already exited");
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        match tokio::time::timeout(WAIT, self.child.wait()).await {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => panic!("waiting for the {:?} back end: {e}", self.lang),
            Err(_) => panic!(
                "the {:?} back end did not exit within {WAIT:?} of SIGTERM; its standard error:\n{}",
                self.lang,
                self.stderr()
            ),
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        if std::thread::panicking() {
            eprintln!(
                "--- standard error of the {:?} back end ---\n{}",
                self.lang,
                self.stderr.lock().unwrap()
            );
        }
    }
}
