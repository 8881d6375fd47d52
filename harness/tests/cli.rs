//! The `gatekit` command line, run as a process: listing and printing scenarios, sim and loopback
//! TCP runs, JSON output, thresholds and exit codes (0 pass, 1 fail, 2 usage or setup error).

use gatekit_harness::scenario::{self, Scenario};
use std::time::Duration;

mod common;

use common::{gatekit, temp_path, TempFile};

const QUICK: Duration = Duration::from_secs(60);

#[test]
fn scenarios_lists_every_builtin() {
    let out = gatekit(&["scenarios"], QUICK);
    assert_eq!(out.code, Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    let builtins = scenario::builtins();
    assert_eq!(lines.len(), builtins.len(), "{out:?}");
    for s in &builtins {
        let line = lines
            .iter()
            .find(|l| l.split_whitespace().next() == Some(s.name.as_str()))
            .unwrap_or_else(|| panic!("{} not listed: {out:?}", s.name));
        assert!(line.contains(&s.description), "{line}");
        assert!(line.contains(&format!("{} clients", s.clients)), "{line}");
    }
}

#[test]
fn scenario_toml_parses_back() {
    for name in ["steady", "churn", "heartbeat"] {
        let out = gatekit(&["scenarios", "--toml", name], QUICK);
        assert_eq!(out.code, Some(0), "{out:?}");
        let parsed = Scenario::from_toml(&out.stdout)
            .unwrap_or_else(|e| panic!("{name}: {e}\n{}", out.stdout));
        assert_eq!(Some(parsed), scenario::builtin(name), "{name}");
    }
    let out = gatekit(&["scenarios", "--toml", "no_such_scenario"], QUICK);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("no_such_scenario"), "{out:?}");
}

#[test]
fn sim_run_passes_and_writes_json() {
    let json = TempFile(temp_path("report.json"));
    let path = json.0.to_str().expect("utf-8 temp path");
    let out = gatekit(
        &[
            "run",
            "--scenario",
            "steady",
            "--mode",
            "sim",
            "--clients",
            "50",
            "--duration",
            "2s",
            "--json",
            path,
        ],
        QUICK,
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("scenario steady"), "{out:?}");
    assert!(out.stdout.contains("sim (virtual clock)"), "{out:?}");
    assert!(out.stdout.contains("50 clients"), "{out:?}");
    assert!(
        out.stdout.trim_end().ends_with("result        PASS"),
        "{out:?}"
    );
    assert!(!out.stdout.contains("VIOLATED"), "{out:?}");
    let text = std::fs::read_to_string(&json.0).expect("JSON report written");
    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON report parses");
    assert_eq!(v["scenario"], "steady");
    assert_eq!(v["mode"], "sim");
    assert_eq!(v["clients"], 50);
    assert_eq!(v["connections"]["welcomed"], 50);
    let invariants = v["invariants"].as_array().expect("invariants array");
    let names: Vec<&str> = invariants
        .iter()
        .map(|i| i["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        [
            "counters",
            "nothing_lost",
            "order",
            "pushes",
            "disconnect",
            "heartbeat",
            "memory"
        ]
    );
    for i in invariants {
        assert_eq!(i["violations"], 0, "{i}");
        // steady pushes nothing and binds no user: those two say so; the rest checked something.
        if matches!(i["name"].as_str(), Some("pushes" | "heartbeat")) {
            assert_eq!(i["status"], "not_checked", "{i}");
            assert_eq!(i["checked"], 0, "{i}");
            assert!(
                i["not_checked"]
                    .as_str()
                    .is_some_and(|w| w.contains("= 0") || w.contains("= false")),
                "{i}"
            );
        } else {
            assert_eq!(i["status"], "held", "{i}");
            assert!(i["checked"].as_u64().expect("checked") > 0, "{i}");
        }
    }
    assert_eq!(v["thresholds"], serde_json::json!([]));
}

#[test]
fn an_unreachable_threshold_exits_1() {
    for threshold in [["--max-p99", "0ms"], ["--min-rate", "1e12"]] {
        let mut args = vec![
            "run",
            "--scenario",
            "steady",
            "--mode",
            "sim",
            "--clients",
            "20",
            "--duration",
            "1s",
        ];
        args.extend(threshold);
        let out = gatekit(&args, QUICK);
        assert_eq!(out.code, Some(1), "{threshold:?}: {out:?}");
        assert!(out.stdout.contains("FAILED"), "{out:?}");
        assert!(
            out.stdout.trim_end().ends_with("result        FAIL"),
            "{out:?}"
        );
        // The invariants themselves held: only the threshold failed.
        assert!(!out.stdout.contains("VIOLATED"), "{out:?}");
    }
}

#[test]
fn an_unknown_scenario_exits_2() {
    let out = gatekit(
        &["run", "--scenario", "no_such_scenario", "--mode", "sim"],
        QUICK,
    );
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr
            .contains("no built-in scenario \"no_such_scenario\""),
        "{out:?}"
    );
    assert!(out.stderr.contains("gatekit scenarios"), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
}

#[test]
fn a_scenario_file_with_an_unknown_key_exits_2() {
    let file = TempFile(temp_path("bad.toml"));
    let mut text = String::from("clientz = 3\n");
    text.push_str(&scenario::builtin("steady").expect("steady").to_toml());
    std::fs::write(&file.0, text).expect("write scenario");
    let path = file.0.to_str().expect("utf-8 temp path");
    let out = gatekit(&["run", "--file", path, "--mode", "sim"], QUICK);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("clientz"), "{out:?}");
    assert!(out.stderr.contains(path), "names the file: {out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");

    // The same file without the bad key runs.
    let good = TempFile(temp_path("good.toml"));
    let mut s = scenario::builtin("steady").expect("steady");
    s.clients = 10;
    s.duration = "1s".parse().expect("duration");
    std::fs::write(&good.0, s.to_toml()).expect("write scenario");
    let path = good.0.to_str().expect("utf-8 temp path");
    let out = gatekit(&["run", "--file", path, "--mode", "sim"], QUICK);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("10 clients"), "{out:?}");
}

#[test]
fn a_non_loopback_target_is_refused() {
    // 10.1.2.3 is not routed here; a connection attempt would hang or fail later, not say this.
    let out = gatekit(
        &[
            "run",
            "--scenario",
            "steady",
            "--clients",
            "1",
            "--duration",
            "1s",
            "--target",
            "10.1.2.3:7000",
        ],
        QUICK,
    );
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("10.1.2.3:7000"), "{out:?}");
    assert!(out.stderr.contains("loopback"), "{out:?}");
    assert!(out.stdout.is_empty(), "no report: {out:?}");
    assert!(out.took < Duration::from_secs(10), "{out:?}");

    // `serve` is the deployable gate: it may listen anywhere, and an address it cannot bind is
    // one line naming the listener, exit 2.
    let out = gatekit(
        &["serve", "--addr", "10.1.2.3:7000", "--duration", "1s"],
        QUICK,
    );
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains("native+tcp://10.1.2.3:7000: "),
        "{out:?}"
    );
    assert!(!out.stderr.contains("panicked"), "{out:?}");
}

#[test]
fn a_small_tcp_run_passes() {
    let out = gatekit(
        &[
            "run",
            "--mode",
            "tcp",
            "--scenario",
            "steady",
            "--clients",
            "20",
            "--duration",
            "1s",
        ],
        Duration::from_secs(120),
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("tcp (loopback)"), "{out:?}");
    assert!(out.stdout.contains("20 clients"), "{out:?}");
    assert!(
        out.stdout.trim_end().ends_with("result        PASS"),
        "{out:?}"
    );
}

#[test]
fn serve_takes_a_scenario_file_and_its_own_timeouts() {
    use std::io::Read;
    let toml = scenario::builtin("steady").unwrap().to_toml();
    let file = TempFile::with("serve-scenario.toml", &toml);
    let serve = common::Serve::start(&["--scenario", file.path(), "--handshake-timeout", "300ms"]);
    // A client that never sends its handshake is refused after 300 ms, not the default 10 s.
    let mut s = std::net::TcpStream::connect(serve.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let t0 = std::time::Instant::now();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    // CLOSE `handshake timeout` (code 8).
    assert_eq!(&got[..3], &[got.len() as u8 - 1, 0x09, 0x08], "{got:02x?}");
    assert_eq!(serve.stop(), Some(0));
    // A bad file is refused at start-up, naming it.
    let out = gatekit(&["serve", "--scenario", "/nonexistent/gate.toml"], QUICK);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("/nonexistent/gate.toml"), "{out:?}");
}

#[test]
fn a_tls_listener_without_a_usable_certificate_exits_2_naming_it() {
    let garbage = TempFile::with("not-a-cert.pem", "no PEM here\n");
    let missing = temp_path("missing-cert.pem");
    let missing = missing.to_str().unwrap();
    let cases: [(Vec<&str>, &str); 4] = [
        (
            vec!["--listen", "native+tls://127.0.0.1:0"],
            "needs --tls-cert and --tls-key",
        ),
        (
            vec![
                "--listen",
                "native+wss://127.0.0.1:0/gate",
                "--tls-cert",
                missing,
                "--tls-key",
                garbage.path(),
            ],
            "missing-cert.pem",
        ),
        (
            vec![
                "--listen",
                "mqtt+tls://127.0.0.1:0",
                "--tls-cert",
                garbage.path(),
                "--tls-key",
                garbage.path(),
            ],
            "no CERTIFICATE section found",
        ),
        (
            vec!["--listen", "native+tcp://127.0.0.1:0/gate"],
            "a path applies to ws and wss only",
        ),
    ];
    for (args, says) in cases {
        let mut all = vec!["serve", "--duration", "1s"];
        all.extend_from_slice(&args);
        let out = gatekit(&all, QUICK);
        assert_eq!(out.code, Some(2), "{args:?}: {out:?}");
        assert!(out.stderr.contains(says), "{args:?}: {out:?}");
        assert!(!out.stderr.contains("panicked"), "{args:?}: {out:?}");
    }
}

#[test]
fn serve_prints_its_default_config_and_runs_from_it() {
    let out = gatekit(&["serve", "--print-config"], QUICK);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("[limits]"), "{out:?}");
    assert!(
        out.stdout.contains("handshake_timeout = \"10s\""),
        "{out:?}"
    );
    // The printed file, edited as a user would, is what the gate runs.
    let edited = out
        .stdout
        .replace(
            "listen = [\"native+tcp://127.0.0.1:7000\"]",
            "listen = [\"native+tcp://127.0.0.1:0\"]",
        )
        .replace(
            "handshake_timeout = \"10s\"",
            "handshake_timeout = \"300ms\"",
        );
    let file = TempFile::with("printed-gate.toml", &edited);
    let serve = common::Serve::start(&["--config", file.path()]);
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(serve.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let t0 = std::time::Instant::now();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    // CLOSE `handshake timeout` after the file's 300 ms, not the default 10 s.
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    assert_eq!(&got[..3], &[got.len() as u8 - 1, 0x09, 0x08], "{got:02x?}");
    assert_eq!(serve.stop(), Some(0));
}

#[test]
fn a_bad_config_file_exits_2_naming_the_file_and_the_key() {
    let unknown = TempFile::with(
        "unknown-key.toml",
        "[limits]\nhandshake_timeout = \"5s\"\nmax_frame = 10\n",
    );
    let bad_value = TempFile::with("bad-value.toml", "[limits]\nmax_frame_length = 0\n");
    let no_nats = TempFile::with("no-nats.toml", "[backends.modules]\nchat = \"nats\"\n");
    let missing = temp_path("missing-gate.toml");
    let missing = missing.to_str().unwrap();
    let cases: [(Vec<&str>, Vec<&str>); 5] = [
        (
            vec!["--config", unknown.path()],
            vec![unknown.path(), "unknown field `max_frame`", "line 3"],
        ),
        (
            vec!["--config", bad_value.path()],
            vec![bad_value.path(), "limits.max_frame_length"],
        ),
        (
            vec!["--config", no_nats.path()],
            vec![no_nats.path(), "nats.url"],
        ),
        (vec!["--config", missing], vec![missing, "cannot read"]),
        // An override is checked too, and said to come from the command line.
        (
            vec!["--gate-id", "a.b"],
            vec!["command line", "gate.id", "\"a.b\""],
        ),
    ];
    for (args, says) in cases {
        let mut all = vec!["serve", "--duration", "1s"];
        all.extend_from_slice(&args);
        let out = gatekit(&all, QUICK);
        assert_eq!(out.code, Some(2), "{args:?}: {out:?}");
        for s in says {
            assert!(out.stderr.contains(s), "{args:?} should say {s:?}: {out:?}");
        }
        assert_eq!(out.stderr.lines().count(), 1, "one line: {out:?}");
        assert!(!out.stderr.contains("panicked"), "{args:?}: {out:?}");
    }
}

#[test]
fn sigterm_shuts_the_gate_down_gracefully_with_exit_0() {
    use std::io::{Read, Write};
    let serve = common::Serve::start(&[]);
    let mut s = std::net::TcpStream::connect(serve.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // HANDSHAKE (version 1, heartbeat 0, no token), then read the WELCOME.
    s.write_all(&[4, 0x01, 1, 0, 0]).unwrap();
    let mut welcome = [0u8; 64];
    let n = s.read(&mut welcome).unwrap();
    assert!(n > 2 && welcome[1] == 0x02, "{:02x?}", &welcome[..n]);
    assert_eq!(serve.terminate(), Some(0));
    // The client got CLOSE (kind 9) `shutdown` (code 6), then the end of the stream.
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert_eq!(&rest[1..], b"\x09\x06gate shutting down", "{rest:02x?}");
}
