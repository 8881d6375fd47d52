//! Real clients against `gatekit serve` over every transport but plain TCP (peers_mqtt.rs and
//! peers_pomelo.rs cover that): the native protocol from Python over WebSocket (the
//! `websockets` package, PyPI, 15.x) on ws and wss and over TLS (Python's `ssl`) —
//! `peers/native/client.py` —, paho-mqtt over WebSocket on ws and wss and over TLS
//! (`peers/mqtt/client.py`), the pomelo client on pomelo-protocol over Node's WebSocket
//! (`peers/pomelo/client.js --ws`), and a TLS client with the wrong CA refused by its own
//! certificate check while the gate keeps serving.
//!
//! Each client prints one JSON line per step; each test checks them step by step. The
//! certificates are made here with rcgen (a self-signed one for `localhost` and 127.0.0.1, passed
//! to the clients as their CA) and written to temporary files. Each test skips, with a printed
//! reason, where its peer is missing, unless GATEKIT_REQUIRE_PEERS=1. Loopback only; every
//! client is killed after 30 s.

mod common;

use common::{finish, have_program, peer_ready, repo_root, Out, Serve, TempFile};
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The gate's certificate and key, and a CA that did not sign it.
struct Certs {
    cert: TempFile,
    key: TempFile,
    wrong_ca: TempFile,
}

fn certs() -> Certs {
    let names = || vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let gate = rcgen::generate_simple_self_signed(names()).expect("rcgen");
    let other = rcgen::generate_simple_self_signed(names()).expect("rcgen");
    Certs {
        cert: TempFile::with("cert.pem", &gate.cert.pem()),
        key: TempFile::with("key.pem", &gate.signing_key.serialize_pem()),
        wrong_ca: TempFile::with("wrong-ca.pem", &other.cert.pem()),
    }
}

/// A gate with the one listener `listen` (so `Serve::addr` is its address), pushing 5 times a
/// second, with `extra` arguments.
fn gate(listen: &str, certs: Option<&Certs>, extra: &[&str]) -> Serve {
    let mut args = vec!["--listen", listen, "--push-rate", "5"];
    if let Some(c) = certs {
        args.extend(["--tls-cert", c.cert.path(), "--tls-key", c.key.path()]);
    }
    args.extend_from_slice(extra);
    Serve::start(&args)
}

fn run(program: &str, args: &[&str]) -> Out {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
    finish(child, Duration::from_secs(30), program)
}

/// The client's JSON lines, and their `step` names.
fn steps(out: &Out) -> (Vec<Value>, Vec<String>) {
    let steps: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{out:?}")))
        .collect();
    let names = steps
        .iter()
        .map(|s| s["step"].as_str().expect("a step name").to_owned())
        .collect();
    (steps, names)
}

fn script(path: &str) -> String {
    repo_root()
        .join(path)
        .to_str()
        .expect("utf-8 path")
        .to_owned()
}

fn have_python_module(import: &str, install: &str) -> Result<(), String> {
    have_program("python3")?;
    let ok = Command::new("python3")
        .args(["-c", import])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| e.to_string())?;
    if ok.success() {
        Ok(())
    } else {
        Err(format!("the Python package is missing: {install}"))
    }
}

/// websockets 15 or later (client.py passes `proxy=None`, new in 15.0).
fn have_websockets() -> Result<(), String> {
    have_python_module(
        "import websockets, websockets.sync.client; \
         assert int(websockets.__version__.split('.')[0]) >= 15",
        "pip install 'websockets==15.*'",
    )
}

fn have_paho() -> Result<(), String> {
    have_python_module("import paho.mqtt.client", "pip install 'paho-mqtt==2.*'")
}

/// The node arguments that give it a global WebSocket: none from Node 22,
/// `--experimental-websocket` on Node 20 and 21.
fn node_websocket() -> Result<Vec<&'static str>, String> {
    have_program("node")?;
    let modules = repo_root().join("peers/pomelo/node_modules/pomelo-protocol");
    if !modules.exists() {
        return Err(format!(
            "{} is missing (run `npm ci` in peers/pomelo)",
            modules.display()
        ));
    }
    for flags in [vec![], vec!["--experimental-websocket"]] {
        let ok = Command::new("node")
            .args(&flags)
            .args([
                "-e",
                "process.exit(typeof WebSocket === 'function' ? 0 : 1)",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| e.to_string())?;
        if ok.success() {
            return Ok(flags);
        }
    }
    Err("this node has no global WebSocket (Node 20 or later is needed)".into())
}

/// Runs peers/native/client.py with `args` and checks every step of its conversation: the
/// transport opened (step `opened`, `ws_open` or `tls`, its fields checked by `check_open`),
/// WELCOME, the echo answered with `body`, a push, PONG, the gate's CLOSE answering the client's,
/// and the transport's end (step `ended`, `ws_closed` or `eof`, checked by `check_end`).
fn native_conversation(
    args: &[&str],
    body: &str,
    opened: &str,
    check_open: impl Fn(&Value),
    ended: &str,
    check_end: impl Fn(&Value),
) -> Vec<Value> {
    let client = script("peers/native/client.py");
    let mut all = vec![client.as_str()];
    all.extend_from_slice(args);
    all.extend(["--body", body]);
    let out = run("python3", &all);
    assert_eq!(out.code, Some(0), "{out:?}");
    let (steps, names) = steps(&out);
    assert_eq!(
        names,
        [opened, "welcome", "response", "push", "pong", "close", ended],
        "{out:?}"
    );
    check_open(&steps[0]);
    let w = &steps[1];
    assert_eq!(
        (&w["version"], &w["heartbeat"], &w["max_frame"]),
        (&json!(1), &json!(5), &json!(65535)),
        "WELCOME: {out:?}"
    );
    assert!(
        w["session"].as_str().is_some_and(|s| !s.is_empty()),
        "{out:?}"
    );
    assert_eq!(
        steps[2],
        json!({"step": "response", "id": 1, "status": 0, "body": body}),
        "{out:?}"
    );
    assert_eq!(steps[3]["topic"], "push/tick", "{out:?}");
    assert!(steps[3]["bytes"].as_u64().is_some_and(|n| n > 0), "{out:?}");
    assert_eq!(
        (&steps[5]["code"], &steps[5]["reason"]),
        (&json!(0), &json!("bye")),
        "the gate's CLOSE: normal \"bye\": {out:?}"
    );
    check_end(&steps[6]);
    steps
}

/// The WebSocket close handshake after the gate's CLOSE: the gate's Close frame came first, code
/// 1000, and the client answered it with 1000.
fn ws_closed_normally(s: &Value) {
    assert_eq!(
        (&s["code"], &s["sent_code"], &s["gate_first"]),
        (&json!(1000), &json!(1000), &json!(true)),
        "{s}"
    );
}

#[test]
fn python_websockets_speaks_native_over_ws() {
    if !peer_ready("python_websockets_speaks_native_over_ws", have_websockets()) {
        return;
    }
    let serve = gate("native+ws://127.0.0.1:0/gate", None, &[]);
    let url = format!("ws://{}/gate", serve.addr);
    // Offering `gatekit`, the gate selects it; offering none, it selects none.
    native_conversation(
        &["--url", &url],
        r#"{"over":"ws"}"#,
        "ws_open",
        |s| assert_eq!(s["subprotocol"], "gatekit", "{s}"),
        "ws_closed",
        ws_closed_normally,
    );
    native_conversation(
        &["--url", &url, "--no-subprotocol"],
        "plain bytes over ws",
        "ws_open",
        |s| assert_eq!(s["subprotocol"], Value::Null, "{s}"),
        "ws_closed",
        ws_closed_normally,
    );
    assert_eq!(serve.stop(), Some(0));
}

#[test]
fn python_websockets_speaks_native_over_wss() {
    if !peer_ready(
        "python_websockets_speaks_native_over_wss",
        have_websockets(),
    ) {
        return;
    }
    let c = certs();
    let serve = gate("native+wss://127.0.0.1:0/gate", Some(&c), &[]);
    let url = format!("wss://{}/gate", serve.addr);
    for (max, version) in [("1.3", "TLSv1.3"), ("1.2", "TLSv1.2")] {
        native_conversation(
            &["--url", &url, "--tls-ca", c.cert.path(), "--tls-max", max],
            &format!(r#"{{"over":"wss","tls":"{max}"}}"#),
            "ws_open",
            |s| {
                // The client offers h2 and http/1.1, as browsers do: the gate picks http/1.1.
                assert_eq!(
                    (&s["subprotocol"], &s["tls"], &s["alpn"]),
                    (&json!("gatekit"), &json!(version), &json!("http/1.1")),
                    "{s}"
                );
            },
            "ws_closed",
            ws_closed_normally,
        );
    }
    assert_eq!(serve.stop(), Some(0));
}

#[test]
fn python_ssl_speaks_native_over_tls() {
    if !peer_ready(
        "python_ssl_speaks_native_over_tls",
        have_python_module("import ssl", "Python's ssl module"),
    ) {
        return;
    }
    let c = certs();
    let serve = gate("native+tls://127.0.0.1:0", Some(&c), &[]);
    let target = serve.addr.to_string();
    for (max, version) in [("1.3", "TLSv1.3"), ("1.2", "TLSv1.2")] {
        native_conversation(
            &[
                "--tcp",
                &target,
                "--tls-ca",
                c.cert.path(),
                "--tls-max",
                max,
            ],
            &format!("native over TLS {max}"),
            "tls",
            |s| {
                // No ALPN on native+tls: the client offered none, the gate selected none.
                assert_eq!(
                    (&s["version"], &s["alpn"]),
                    (&json!(version), &Value::Null),
                    "{s}"
                );
            },
            "eof",
            // The gate ends TLS with close_notify after its CLOSE.
            |s| assert_eq!(s["close_notify"], true, "{s}"),
        );
    }
    assert_eq!(serve.stop(), Some(0));
}

/// Runs peers/mqtt/client.py on `port` with `args` and checks its steps as
/// peers_mqtt.rs does over TCP.
fn paho_conversation(port: u16, args: &[&str]) {
    let client = script("peers/mqtt/client.py");
    let port = port.to_string();
    let mut all = vec![client.as_str(), port.as_str()];
    all.extend_from_slice(args);
    let out = run("python3", &all);
    assert_eq!(out.code, Some(0), "{out:?}");
    let (steps, names) = steps(&out);
    assert_eq!(
        names,
        [
            "connack",
            "suback",
            "answer",
            "puback",
            "answer",
            "notify",
            "push",
            "disconnected"
        ],
        "{out:?}"
    );
    assert_eq!(steps[0]["code"], "Success", "{out:?}");
    assert_eq!(steps[1]["codes"], json!([0, 1]), "{out:?}");
    assert_eq!(steps[2]["topic"], "echo/HD_say/1", "{out:?}");
    assert_eq!(
        steps[2]["envelope"],
        json!({"Trace": "", "Error": "", "Result": {"hello": 1}}),
        "{out:?}"
    );
    assert_eq!(steps[3]["msgid"], 2, "{out:?}");
    assert_eq!(steps[4]["topic"], "echo/HD_say/2", "{out:?}");
    assert_eq!(
        steps[4]["envelope"],
        json!({"Trace": "", "Error": "", "Result": {"hello": 2}}),
        "{out:?}"
    );
    assert_eq!(steps[6]["topic"], "push/tick", "{out:?}");
}

#[test]
fn paho_talks_mqtt_over_ws() {
    if !peer_ready("paho_talks_mqtt_over_ws", have_paho()) {
        return;
    }
    let serve = gate("mqtt+ws://127.0.0.1:0/mqtt", None, &[]);
    paho_conversation(
        serve.addr.port(),
        &["--transport", "websockets", "--path", "/mqtt"],
    );
    // Another path is refused at the upgrade (404), which paho reports as such.
    let out = run(
        "python3",
        &[
            &script("peers/mqtt/client.py"),
            &serve.addr.port().to_string(),
            "--transport",
            "websockets",
            "--path",
            "/elsewhere",
        ],
    );
    assert_eq!(out.code, Some(1), "{out:?}");
    let (steps, _) = steps(&out);
    assert!(
        steps[0]["why"]
            .as_str()
            .is_some_and(|w| w.contains("WebsocketConnectionError")),
        "{out:?}"
    );
    assert_eq!(serve.stop(), Some(0));
}

#[test]
fn paho_talks_mqtt_over_wss() {
    if !peer_ready("paho_talks_mqtt_over_wss", have_paho()) {
        return;
    }
    let c = certs();
    let serve = gate("mqtt+wss://127.0.0.1:0/mqtt", Some(&c), &[]);
    paho_conversation(
        serve.addr.port(),
        &[
            "--transport",
            "websockets",
            "--path",
            "/mqtt",
            "--tls-ca",
            c.cert.path(),
        ],
    );
    assert_eq!(serve.stop(), Some(0));
}

#[test]
fn paho_talks_mqtt_over_tls() {
    if !peer_ready("paho_talks_mqtt_over_tls", have_paho()) {
        return;
    }
    let c = certs();
    let serve = gate("mqtt+tls://127.0.0.1:0", Some(&c), &[]);
    paho_conversation(serve.addr.port(), &["--tls-ca", c.cert.path()]);
    assert_eq!(serve.stop(), Some(0));
}

#[test]
fn the_pomelo_client_talks_over_ws() {
    let flags = match node_websocket() {
        Ok(flags) => flags,
        Err(why) => {
            peer_ready("the_pomelo_client_talks_over_ws", Err(why));
            return;
        }
    };
    let serve = gate("pomelo+ws://127.0.0.1:0", None, &["--ping-interval", "1s"]);
    let client = script("peers/pomelo/client.js");
    let url = format!("ws://{}/", serve.addr);
    // Closing the WebSocket after the push; then waiting for the gate's kick.
    for kick in [false, true] {
        let mut args = flags.clone();
        args.extend([client.as_str(), "--ws", url.as_str()]);
        if kick {
            args.push("--kick");
        }
        let out = run("node", &args);
        assert_eq!(out.code, Some(0), "{out:?}");
        let (steps, names) = steps(&out);
        let mut want = vec![
            "ws_open",
            "handshake",
            "first_heartbeat",
            "response",
            "notify",
            "push",
        ];
        if kick {
            want.push("kick");
        }
        want.push("closed");
        assert_eq!(names, want, "{out:?}");
        // Pomelo's clients offer no subprotocol: none is selected.
        assert_eq!(steps[0]["protocol"], "", "{out:?}");
        assert_eq!(
            (&steps[1]["code"], &steps[1]["heartbeat"]),
            (&json!(200), &json!(1)),
            "{out:?}"
        );
        assert_eq!(
            steps[3],
            json!({"step": "response", "id": 1, "body": {"hello": "gatekit"}}),
            "{out:?}"
        );
        assert_eq!(steps[5]["route"], "push/tick", "{out:?}");
        if kick {
            assert_eq!(steps[6]["reason"], "idle timeout", "{out:?}");
        }
        // The close handshake completed with 1000, whoever started it.
        let closed = steps.last().unwrap();
        assert_eq!(
            (&closed["code"], &closed["clean"]),
            (&json!(1000), &json!(true)),
            "{out:?}"
        );
    }
    assert_eq!(serve.stop(), Some(0));
}

#[test]
fn a_tls_client_with_the_wrong_ca_fails_verification_and_the_gate_keeps_serving() {
    if !peer_ready(
        "a_tls_client_with_the_wrong_ca_fails_verification_and_the_gate_keeps_serving",
        have_python_module("import ssl", "Python's ssl module"),
    ) {
        return;
    }
    let c = certs();
    let serve = gate("native+tls://127.0.0.1:0", Some(&c), &[]);
    let client = script("peers/native/client.py");
    let target = serve.addr.to_string();
    // The wrong CA, then the right CA for another name: each client's own check refuses the
    // gate's certificate (OpenSSL: 18 self-signed certificate, 62 host name mismatch).
    for (extra, code) in [
        (vec!["--tls-ca", c.wrong_ca.path()], 18),
        (
            vec!["--tls-ca", c.cert.path(), "--server-name", "other.example"],
            62,
        ),
    ] {
        let mut args = vec![client.as_str(), "--tcp", target.as_str()];
        args.extend(extra);
        let out = run("python3", &args);
        assert_eq!(out.code, Some(3), "{out:?}");
        let (steps, names) = steps(&out);
        assert_eq!(names, ["tls_error"], "{out:?}");
        assert_eq!(
            (&steps[0]["reason"], &steps[0]["verify_code"]),
            (&json!("CERTIFICATE_VERIFY_FAILED"), &json!(code)),
            "{out:?}"
        );
    }
    // The gate still serves: a client with the right CA right after gets its whole conversation.
    native_conversation(
        &["--tcp", &target, "--tls-ca", c.cert.path()],
        "after the refused ones",
        "tls",
        |s| assert_eq!(s["version"], "TLSv1.3", "{s}"),
        "eof",
        |s| assert_eq!(s["close_notify"], true, "{s}"),
    );
    assert_eq!(serve.stop(), Some(0));
}

/// Runs `openssl s_client` with `args`, writes `input` to it and closes its standard input;
/// gives its exit code, its standard output as bytes and its standard error. Killed after 30 s.
fn s_client(args: &[&str], input: &[u8]) -> (Option<i32>, Vec<u8>, String) {
    use std::io::{Read, Write};
    let mut child = Command::new("openssl")
        .arg("s_client")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn openssl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write to s_client");
    let mut stdout = child.stdout.take().expect("stdout");
    let stdout = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let out = finish(child, Duration::from_secs(30), "openssl s_client");
    (out.code, stdout.join().expect("reader"), out.stderr)
}

#[test]
fn openssl_s_client_speaks_native_over_tls_and_gets_alpn_mqtt() {
    if !peer_ready(
        "openssl_s_client_speaks_native_over_tls_and_gets_alpn_mqtt",
        have_program("openssl"),
    ) {
        return;
    }
    let c = certs();
    let verify = ["-CAfile", c.cert.path(), "-verify_return_error"];
    let verify_ip = ["-verify_ip", "127.0.0.1"];

    // Native over TLS, the bytes of docs/PROTOCOL.md by hand: HANDSHAKE (version 1, heartbeat
    // 5 s, token "tok") and CLOSE normal "bye" in one write; -ign_eof keeps s_client reading
    // after its input ends, until the gate closes.
    let serve = gate("native+tls://127.0.0.1:0", Some(&c), &[]);
    let addr = serve.addr.to_string();
    let mut args = vec!["-connect", addr.as_str(), "-quiet", "-ign_eof"];
    args.extend(verify);
    args.extend(verify_ip);
    let input = b"\x07\x01\x01\x00\x05tok\x05\x09\x00bye";
    let (code, out, err) = s_client(&args, input);
    assert_eq!(code, Some(0), "{err}");
    // WELCOME: length, kind 2, version 1, heartbeat 5, max frame 65,535, a session id...
    assert!(out.len() > 9, "{out:02x?} {err}");
    let (len, welcome) = (out[0] as usize, &out[1..]);
    assert_eq!(
        &welcome[..8],
        b"\x02\x01\x00\x05\x00\x00\xff\xff",
        "{out:02x?}"
    );
    assert!(len > 8 && welcome.len() > len, "{out:02x?}");
    assert!(std::str::from_utf8(&welcome[8..len]).is_ok(), "{out:02x?}");
    // ...then the gate's CLOSE normal "bye" answering the client's, and the end of the stream.
    assert_eq!(&welcome[len..], b"\x05\x09\x00bye", "{out:02x?}");
    assert_eq!(serve.stop(), Some(0));

    // MQTT over TLS selects ALPN `mqtt`; a client offering only `h2` is refused with TLS's
    // no_application_protocol alert.
    let serve = gate("mqtt+tls://127.0.0.1:0", Some(&c), &[]);
    let addr = serve.addr.to_string();
    let mut args = vec!["-connect", addr.as_str(), "-alpn", "mqtt"];
    args.extend(verify);
    args.extend(verify_ip);
    let (code, out, err) = s_client(&args, b"");
    let out = String::from_utf8_lossy(&out);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("ALPN protocol: mqtt"), "{out}");
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
    let mut args = vec!["-connect", addr.as_str(), "-alpn", "h2"];
    args.extend(verify);
    let (code, out, err) = s_client(&args, b"");
    assert_ne!(code, Some(0), "{}", String::from_utf8_lossy(&out));
    assert!(err.contains("no application protocol"), "{err}");
    assert_eq!(serve.stop(), Some(0));
}
