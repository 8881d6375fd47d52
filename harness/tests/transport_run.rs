//! `gatekit run --transport tls|ws|wss`: the harness's clients over each transport, for each wire
//! protocol, against the built-in gate (listening through the same layers as `gatekit serve
//! --listen PROTOCOL+TRANSPORT://..`, with a self-signed certificate), with every invariant held;
//! every misbehaviour over a WebSocket over TLS; `--target` against a `gatekit serve` child over
//! ws, with its side from `--control`; and the refusals (sim mode, a missing `--tls-ca`, the
//! wrong transport against a listener).

mod common;

use common::{gatekit, Out, Serve, TempFile};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

/// The status word of invariant `name`'s line in a text report: "held", "VIOLATED" or "not".
fn status<'a>(out: &'a Out, name: &str) -> &'a str {
    let line = out
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with(name))
        .unwrap_or_else(|| panic!("no {name} line: {out:?}"));
    line.split_whitespace().nth(1).expect("status word")
}

/// The run passed, with every invariant in `held` held and the others not checked.
fn assert_passes_holding(out: &Out, held: &[&str]) {
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout.trim_end().ends_with("result        PASS"),
        "{out:?}"
    );
    assert!(!out.stdout.contains("VIOLATED"), "{out:?}");
    for name in held {
        assert_eq!(status(out, name), "held", "{name}: {out:?}");
    }
}

/// A run in which no client got in fails (exit 1): its connections never opened (a refused
/// upgrade), or the bytes that came back were not the protocol (plain TCP to a WebSocket port).
fn assert_fails_with_no_client_in(out: &Out) {
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stdout.trim_end().ends_with("result        FAIL"),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("never opened their connection")
            || out.stdout.contains("client decode errors"),
        "{out:?}"
    );
    assert!(!out.stdout.contains("welcomed 1"), "{out:?}");
}

const EVERY_INVARIANT: [&str; 7] = [
    "counters",
    "nothing_lost",
    "order",
    "pushes",
    "disconnect",
    "heartbeat",
    "memory",
];

/// The smoke scenario (requests, notifies, pings, pushes, users bound, graceful closes), short.
fn smoke(transport: &str, protocol: &str) -> Out {
    gatekit(
        &[
            "run",
            "--scenario",
            "smoke",
            "--transport",
            transport,
            "--protocol",
            protocol,
            "--clients",
            "20",
            "--duration",
            "1500ms",
        ],
        LIMIT,
    )
}

macro_rules! smoke_over {
    ($($name:ident: $transport:literal, $protocol:literal;)*) => {$(
        #[test]
        fn $name() {
            let out = smoke($transport, $protocol);
            assert_passes_holding(&out, &EVERY_INVARIANT);
            assert!(out.stdout.contains("welcomed 20"), "{out:?}");
        }
    )*};
}

smoke_over! {
    smoke_over_tls_native: "tls", "native";
    smoke_over_tls_mqtt: "tls", "mqtt";
    smoke_over_tls_pomelo: "tls", "pomelo";
    smoke_over_ws_native: "ws", "native";
    smoke_over_ws_mqtt: "ws", "mqtt";
    smoke_over_ws_pomelo: "ws", "pomelo";
    smoke_over_wss_native: "wss", "native";
    smoke_over_wss_mqtt: "wss", "mqtt";
    smoke_over_wss_pomelo: "wss", "pomelo";
}

/// Every misbehaviour at once — drops, drops mid-frame, slow consumers, slowloris, dribblers,
/// garbage — over the two transports with the most layers: each keeps its meaning (see
/// harness/src/tcp.rs) and every invariant holds.
const MISBEHAVING: &str = r#"
name = "transport-misbehaving"
mode = "tcp"
clients = 40
duration = "2s"
ramp_up = "200ms"
rate = 5.0
push_rate = 20.0
seed = 5

[mix]
normal = 0.3
drop = 0.1
drop_mid_frame = 0.1
slow_consumer = 0.1
slowloris = 0.1
dribble = 0.1
garbage = 0.2

[gate]
handshake_timeout = "1s"
"#;

/// Half the clients stop reading while 16 KiB pushes pour in, far past what the sockets, the
/// rustls buffer and the 64 KiB write queue hold: the gate must close them as slow consumers.
const SLOW_CONSUMERS: &str = r#"
name = "transport-slow-consumers"
mode = "tcp"
clients = 4
duration = "3s"
ramp_up = "100ms"
rate = 2.0
body_size = 16384
push_rate = 200.0
seed = 3

[mix]
normal = 0.5
slow_consumer = 0.5

[gate]
max_write_queue = 65536
"#;

#[test]
fn every_misbehaviour_keeps_its_meaning_over_tls_and_wss() {
    let file = TempFile::with("misbehaving.toml", MISBEHAVING);
    for transport in ["tls", "wss"] {
        let out = gatekit(
            &["run", "--file", file.path(), "--transport", transport],
            LIMIT,
        );
        assert_passes_holding(&out, &["counters", "nothing_lost", "disconnect", "memory"]);
        for behaviour in ["slowloris", "dribble", "slow_consumer", "garbage_"] {
            assert!(out.stdout.contains(behaviour), "{transport}: {out:?}");
        }
    }
}

#[test]
fn slow_consumers_are_closed_over_every_transport() {
    let file = TempFile::with("slow.toml", SLOW_CONSUMERS);
    for transport in ["tls", "ws", "wss"] {
        let out = gatekit(
            &["run", "--file", file.path(), "--transport", transport],
            LIMIT,
        );
        assert_passes_holding(&out, &["counters", "pushes", "disconnect", "memory"]);
        let closed = out
            .stdout
            .lines()
            .find(|l| l.starts_with("closed"))
            .expect("a closed line");
        assert!(closed.contains("slow_consumer"), "{transport}: {out:?}");
    }
}

#[test]
fn against_a_served_ws_listener_with_its_control_endpoint() {
    let serve = Serve::start(&[
        "--listen",
        "native+ws://127.0.0.1:0/gate",
        "--control",
        "127.0.0.1:0",
        "--push-rate",
        "20",
    ]);
    let target = serve.addr.to_string();
    let control = serve.control.expect("a control endpoint").to_string();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "--target",
            &target,
            "--control",
            &control,
            "--scenario",
            "smoke",
            "--clients",
            "20",
            "--duration",
            "1500ms",
        ];
        args.extend_from_slice(extra);
        gatekit(&args, LIMIT)
    };
    let out = run(&["--transport", "ws", "--ws-path", "/gate"]);
    assert_passes_holding(
        &out,
        &[
            "counters",
            "nothing_lost",
            "order",
            "pushes",
            "disconnect",
            "memory",
        ],
    );
    // No user is bound over the wire, as over TCP.
    assert_eq!(status(&out, "heartbeat"), "not", "{out:?}");
    // Plain TCP to a WebSocket listener, and the wrong path: no client gets in, and the run
    // fails.
    for wrong in [
        run(&["--transport", "tcp"]),
        run(&["--transport", "ws", "--ws-path", "/other"]),
    ] {
        assert_fails_with_no_client_in(&wrong);
    }
    assert_eq!(serve.stop(), Some(0));
}

#[test]
fn refusals_name_what_was_wrong() {
    let sim = gatekit(
        &[
            "run",
            "--scenario",
            "steady",
            "--transport",
            "ws",
            "--clients",
            "5",
        ],
        LIMIT,
    );
    assert_eq!(sim.code, Some(2), "{sim:?}");
    assert!(
        sim.stderr.contains("--transport ws: sim mode") && sim.stderr.contains("--mode tcp"),
        "{sim:?}"
    );
    let no_ca = gatekit(
        &[
            "run",
            "--target",
            "127.0.0.1:9",
            "--transport",
            "wss",
            "--clients",
            "1",
        ],
        LIMIT,
    );
    assert_eq!(no_ca.code, Some(2), "{no_ca:?}");
    assert!(no_ca.stderr.contains("needs --tls-ca FILE"), "{no_ca:?}");
    let bad_ca = TempFile::with("ca.pem", "not a certificate\n");
    let bad = gatekit(
        &[
            "run",
            "--target",
            "127.0.0.1:9",
            "--transport",
            "tls",
            "--tls-ca",
            bad_ca.path(),
            "--clients",
            "1",
        ],
        LIMIT,
    );
    assert_eq!(bad.code, Some(2), "{bad:?}");
    assert!(
        bad.stderr.contains(&format!("--tls-ca {}", bad_ca.path()))
            && bad.stderr.contains("no CERTIFICATE section"),
        "{bad:?}"
    );
}

#[test]
fn against_a_served_wss_listener_trusting_its_certificate() {
    let (cert, key) = gatekit_harness::listener_transport::self_signed();
    let cert = TempFile::with("cert.pem", &cert);
    let key = TempFile::with("key.pem", &key);
    let serve = Serve::start(&[
        "--listen",
        "native+wss://127.0.0.1:0/gate",
        "--tls-cert",
        cert.path(),
        "--tls-key",
        key.path(),
        "--control",
        "127.0.0.1:0",
    ]);
    let target = serve.addr.to_string();
    let control = serve.control.expect("a control endpoint").to_string();
    let out = gatekit(
        &[
            "run",
            "--target",
            &target,
            "--control",
            &control,
            "--transport",
            "wss",
            "--tls-ca",
            cert.path(),
            "--ws-path",
            "/gate",
            "--scenario",
            "smoke",
            "--clients",
            "10",
            "--duration",
            "1500ms",
        ],
        LIMIT,
    );
    assert_passes_holding(&out, &["counters", "nothing_lost", "disconnect", "memory"]);
    // A certificate for another name is refused: no client gets in.
    let wrong = gatekit(
        &[
            "run",
            "--target",
            &target,
            "--transport",
            "wss",
            "--tls-ca",
            cert.path(),
            "--tls-server-name",
            "gate.example",
            "--ws-path",
            "/gate",
            "--clients",
            "2",
            "--duration",
            "500ms",
        ],
        LIMIT,
    );
    assert_fails_with_no_client_in(&wrong);
    assert_eq!(serve.stop(), Some(0));
}
