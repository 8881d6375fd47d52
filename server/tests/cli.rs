//! The `gatekit-server` binary: `--print-config`, a bad configuration (exit 2, one line naming the
//! file and the key), JSON logs, and SIGTERM (exit 0, "shut down" logged).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn server() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gatekit-server"))
}

#[test]
fn print_config_prints_the_default_file() {
    let out = server().arg("--print-config").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text, gatekit_server::config::DEFAULT_TOML);
}

#[test]
fn a_bad_file_exits_2_with_one_line() {
    let path = std::env::temp_dir().join(format!("gatekit-server-cli-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        "[nats]\nurl = \"nats://127.0.0.1:1\"\nprefx = \"x\"\n",
    )
    .unwrap();
    let out = server().arg("--config").arg(&path).output().unwrap();
    let _ = std::fs::remove_file(&path);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(
        err.contains("line 3, column 1: unknown field `prefx`"),
        "{err}"
    );
}

#[test]
fn json_logs_and_sigterm() {
    let mut child = server()
        .args([
            "--listen",
            "native+tcp://127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().expect("a log line").unwrap();
    let event: serde_json::Value =
        serde_json::from_str(&first).unwrap_or_else(|e| panic!("{e}: {first:?}"));
    assert_eq!(event["message"], "listening", "{first}");
    assert!(event["listener"]
        .as_str()
        .unwrap()
        .starts_with("native+tcp://127.0.0.1:"));
    assert_eq!(event["level"], "INFO");
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let t0 = Instant::now();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    let messages: Vec<String> = rest
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["message"].to_string())
        .collect();
    assert!(
        messages.iter().any(|m| m.contains("SIGTERM")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("shut down")),
        "{messages:?}"
    );
}
