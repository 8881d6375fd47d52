//! `gatekit rtt --protocol mqtt --protocol pomelo`: the gate served and driven over each protocol
//! next to the raw echo server, in this process and in child processes; every run answers every
//! request (no failures) and each gate row names its protocol.

use std::time::Duration;

mod common;

use common::{gatekit, temp_path, Out, TempFile};

/// A short run of the raw echo server and the gate over mqtt and pomelo, with `extra` arguments.
fn rtt(extra: &[&str], json: &TempFile) -> Out {
    let mut args = vec![
        "rtt",
        "--protocol",
        "mqtt",
        "--protocol",
        "pomelo",
        "--clients",
        "20",
        "--seconds",
        "1s",
        "--runs",
        "1",
        "--json",
        json.path(),
    ];
    args.extend_from_slice(extra);
    gatekit(&args, Duration::from_secs(90))
}

/// Every run has a rate and no failures, in the per-run lines, the table and the JSON.
fn check(out: &Out, json: &TempFile) {
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr.contains("gate over mqtt, pomelo;"),
        "the header names the protocols: {out:?}"
    );
    for server in [
        "tokio LDC echo",
        "gatekit gate (mqtt)",
        "gatekit gate (pomelo)",
    ] {
        let line = out
            .stderr
            .lines()
            .map(str::trim_start)
            .find(|l| l.starts_with(server))
            .unwrap_or_else(|| panic!("no {server} run: {out:?}"));
        let rate: f64 = line[server.len()..]
            .split_whitespace()
            .next()
            .and_then(|r| r.parse().ok())
            .unwrap_or_else(|| panic!("no rate in {line}"));
        assert!(rate > 0.0, "{line}");
        assert!(line.ends_with("failures 0"), "{line}");
        assert!(
            out.stdout
                .lines()
                .any(|l| l.starts_with(&format!("| {server} |"))),
            "no table row for {server}: {out:?}"
        );
    }
    assert!(
        !out.stdout.contains("(native)"),
        "native was not asked for: {out:?}"
    );
    for protocol in ["mqtt", "pomelo"] {
        assert!(
            out.stdout
                .contains(&format!("gatekit {protocol} / raw: rate")),
            "{out:?}"
        );
    }

    let text = std::fs::read_to_string(&json.0).expect("JSON written");
    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON parses");
    let runs = v["runs"].as_array().expect("runs");
    let servers: Vec<&serde_json::Value> = runs.iter().map(|r| &r["server"]).collect();
    assert_eq!(
        servers,
        [
            &serde_json::json!("raw_echo"),
            &serde_json::json!({"gatekit": "mqtt"}),
            &serde_json::json!({"gatekit": "pomelo"}),
        ],
        "{text}"
    );
    for r in runs {
        assert_eq!(r["failures"], 0, "{r}");
        assert!(r["rate"].as_f64().expect("rate") > 0.0, "{r}");
        assert!(r["p99_ms"].as_f64().expect("p99") > 0.0, "{r}");
    }
    let gates: Vec<&str> = v["gates"]
        .as_array()
        .expect("gates")
        .iter()
        .map(|g| g["protocol"].as_str().expect("protocol"))
        .collect();
    assert_eq!(gates, ["mqtt", "pomelo"], "{text}");
}

#[test]
fn rtt_drives_the_gate_over_mqtt_and_pomelo() {
    let json = TempFile(temp_path("rtt-protocols.json"));
    let out = rtt(&[], &json);
    check(&out, &json);
}

#[test]
fn rtt_server_processes_serve_the_protocol_asked_for() {
    // A child gate serving native would answer neither client: every connection would fail.
    let json = TempFile(temp_path("rtt-protocols-child.json"));
    let out = rtt(&["--server-process"], &json);
    check(&out, &json);
}
