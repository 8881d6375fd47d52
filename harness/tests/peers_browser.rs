//! The browser client (clients/js/gatekit.js) in a real browser: headless Chromium (Debian
//! `chromium`) driven by playwright-core (`peers/browser/run.mjs`) loads the demo page that
//! `gatekit serve --demo` serves on its `native+ws` listener, connects over WebSocket, does a
//! request answered by the echo back end, receives a push, and closes with a reason. Skipped
//! (with a printed reason) where Node, Chromium or `peers/browser/node_modules` is missing, unless
//! GATEKIT_REQUIRE_PEERS=1.

mod common;

use common::{finish, have_program, peer_ready, repo_root, Serve};
use std::process::{Command, Stdio};
use std::time::Duration;

fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned())
}

#[test]
fn the_browser_client_talks_to_the_gate_from_chromium() {
    let script = repo_root().join("peers/browser/run.mjs");
    let modules = repo_root().join("peers/browser/node_modules/playwright-core");
    let ready = have_program("node").and_then(|()| {
        if !std::path::Path::new(&chromium()).exists() {
            return Err(format!(
                "{} is missing (apt-get install chromium)",
                chromium()
            ));
        }
        if !modules.exists() {
            return Err(format!(
                "{} is missing (run `npm ci` in peers/browser)",
                modules.display()
            ));
        }
        Ok(())
    });
    if !peer_ready("the_browser_client_talks_to_the_gate_from_chromium", ready) {
        return;
    }
    let serve = Serve::start(&[
        "--listen",
        "native+ws://127.0.0.1:0/gate",
        "--demo",
        "--push-rate",
        "5",
    ]);
    let page = format!("http://{}/", serve.addr);
    let ws = format!("ws://{}/gate", serve.addr);
    let child = Command::new("node")
        .arg(&script)
        .arg(&page)
        .arg(&ws)
        .env("CHROMIUM", chromium())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node");
    let out = finish(child, Duration::from_secs(180), "node run.mjs");
    assert_eq!(out.code, Some(0), "{out:?}");
    let last = out.stdout.lines().last().expect("a result line");
    let result: serde_json::Value =
        serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {last}"));
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["response"], "hello from chromium", "{result}");
    assert!(result["pushes"].as_u64().unwrap_or(0) >= 1, "{result}");
    assert_eq!(serve.stop(), Some(0));
}

/// The browser client's own tests (`node --test clients/js/test/`: the codec against every golden
/// and malformed frame of corpus/native, frames split at every byte, the client against a fake
/// gate: requests, pushes, heartbeat, close, reconnect).
#[test]
fn the_browser_clients_own_tests_pass_under_node() {
    if !peer_ready(
        "the_browser_clients_own_tests_pass_under_node",
        have_program("node"),
    ) {
        return;
    }
    let child = Command::new("node")
        .arg("--test")
        .arg(repo_root().join("clients/js/test/"))
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node");
    let out = finish(
        child,
        Duration::from_secs(120),
        "node --test clients/js/test/",
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("# fail 0"), "{}", out.stdout);
    assert!(
        !out.stdout.contains("# pass 0\n"),
        "no test ran: {}",
        out.stdout
    );
}
