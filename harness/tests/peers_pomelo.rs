//! A real pomelo client — one built on the NetEase reference encoder, pomelo-protocol 0.1.6
//! (`peers/pomelo/client.js`, run with Node) — against `gatekit serve --listen pomelo+tcp://`:
//! handshake, ack and the gate's first heartbeat, heartbeats, a request and its response, a
//! notify, a push, and the kick after two silent heartbeats. Skipped (with a printed reason) where
//! Node or `peers/pomelo/node_modules` is missing, unless GATEKIT_REQUIRE_PEERS=1.

mod common;

use common::{finish, have_program, peer_ready, repo_root, Serve};
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn the_reference_pomelo_client_talks_to_the_gate() {
    let client = repo_root().join("peers/pomelo/client.js");
    let modules = repo_root().join("peers/pomelo/node_modules/pomelo-protocol");
    let ready = have_program("node").and_then(|()| {
        if modules.exists() {
            Ok(())
        } else {
            Err(format!(
                "{} is missing (run `npm ci` in peers/pomelo)",
                modules.display()
            ))
        }
    });
    if !peer_ready("the_reference_pomelo_client_talks_to_the_gate", ready) {
        return;
    }
    let serve = Serve::start(&[
        "--listen",
        "pomelo+tcp://127.0.0.1:0",
        "--push-rate",
        "5",
        "--ping-interval",
        "1s",
    ]);
    let child = Command::new("node")
        .arg(&client)
        .arg(serve.addr.port().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node");
    let out = finish(child, Duration::from_secs(30), "node client.js");
    assert_eq!(out.code, Some(0), "{out:?}");
    let steps: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let names: Vec<&str> = steps.iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "handshake",
            "first_heartbeat",
            "response",
            "notify",
            "push",
            "kick",
            "closed"
        ],
        "{out:?}"
    );
    assert_eq!(steps[0]["code"], 200);
    assert_eq!(steps[0]["heartbeat"], 1);
    assert_eq!(steps[2]["id"], 1);
    assert_eq!(steps[2]["body"], serde_json::json!({"hello": "gatekit"}));
    assert_eq!(steps[4]["route"], "push/tick");
    assert_eq!(steps[5]["reason"], "idle timeout");
    assert_eq!(serve.stop(), Some(0));
}
