//! The whole path of docs/CLUSTER.md: native clients → the real gate (in-process) → NATS → a
//! chat back end (a child process) → the gate RPC → the clients. The same scenario for the Rust
//! and the Python back end.

#[path = "../../../../agent/tests/common/native_client.rs"]
mod native_client;
#[path = "../../../../server/tests/support/nats_server.rs"]
mod nats_server;
mod support;

use gatekit_codec::{CloseCode, Packet, Status};
use gatekit_server::config::DefaultRoute;
use gatekit_server::Dur;
use gatekit_server::{Server, ServerConfig};
use native_client::{req, Client};
use serde_json::{json, Value};
use std::time::Duration;
use support::{bounded, Backend, Lang};
use tokio::net::TcpStream;

/// Requests `chat/join` "lobby" (a no-op for a member) until its status is `want`; the statuses
/// seen meanwhile. Bounded.
async fn join_until(c: &mut Client<TcpStream>, next_id: &mut u32, want: Status) -> Vec<Status> {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            *next_id += 1;
            let r = c.request(*next_id, "chat/join", b"lobby").await;
            if r.status == want {
                return;
            }
            seen.push(r.status);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(found.is_ok(), "no {want} within 30 s; seen {seen:?}");
    seen
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{:?} is not JSON: {e}", String::from_utf8_lossy(body)))
}

/// A request whose answer must be ok: its JSON body.
async fn ok(c: &mut Client<TcpStream>, id: u32, route: &str, body: &[u8]) -> Value {
    let r = bounded(
        &format!("the response to {route}"),
        c.request(id, route, body),
    )
    .await;
    assert_eq!(
        r.status,
        Status::Ok,
        "{route}: {}",
        String::from_utf8_lossy(&r.body)
    );
    json_of(&r.body)
}

/// The next packet, which must be a PUSH on `chat/message`: its JSON body.
async fn message(c: &mut Client<TcpStream>) -> Value {
    match bounded("a chat/message push", c.recv()).await {
        Some(Packet::Push(p)) => {
            assert_eq!(p.topic(), "chat/message");
            json_of(p.body())
        }
        other => panic!("expected PUSH chat/message, got {other:?}"),
    }
}

/// chat/send from `c`: the push to itself (it is a member of its room; the gate queues it before
/// the response), then the response's JSON.
async fn send(c: &mut Client<TcpStream>, id: u32, text: &str) -> (Value, Value) {
    c.send(req(id, "chat/send", text)).await;
    let own = message(c).await;
    let r = bounded("the response to chat/send", c.recv_response()).await;
    assert_eq!(r.id.get(), id);
    assert_eq!(
        r.status,
        Status::Ok,
        "chat/send: {}",
        String::from_utf8_lossy(&r.body)
    );
    (own, json_of(&r.body))
}

async fn scenario(test: &str, lang: Lang) {
    if !nats_server::peer_ready(test, lang.available()) {
        return;
    }
    let Some(mut nats) = nats_server::start_for(test) else {
        return;
    };
    let url = nats.url();
    let mut cfg = ServerConfig::default();
    cfg.gate.listen = vec!["native+tcp://127.0.0.1:0".parse().unwrap()];
    cfg.nats.url = Some(url.clone());
    cfg.backends.default = DefaultRoute::Nats;
    cfg.limits.backend_timeout = Dur::secs(3);
    let running = bounded("the gate's start", Server::new(cfg).start())
        .await
        .expect("the gate starts");
    let addr = running.listeners()[0].addr;
    let backend = Backend::start(lang, &["--nats", &url]).await;

    let mut a = bounded("connect", Client::connect(addr)).await;
    let a_id = bounded("a's handshake", a.handshake()).await;
    let mut b = bounded("connect", Client::connect(addr)).await;
    let b_id = bounded("b's handshake", b.handshake()).await;

    // Both join the lobby.
    assert_eq!(
        ok(&mut a, 1, "chat/join", b"lobby").await,
        json!({"room": "lobby", "members": 1})
    );
    assert_eq!(
        ok(&mut b, 1, "chat/join", b"lobby").await,
        json!({"room": "lobby", "members": 2})
    );

    // a sends: both get the message, from a's session id while no user is bound.
    let (own, answer) = send(&mut a, 2, "hello").await;
    assert_eq!(answer, json!({"delivered": 2}));
    let expected = json!({"from": a_id, "text": "hello"});
    assert_eq!(own, expected);
    assert_eq!(message(&mut b).await, expected);

    // login binds the user: the gate puts it in Gatekit-User of a's later calls.
    assert_eq!(
        ok(&mut a, 3, "chat/login", b"alice").await,
        json!({"ok": true})
    );
    let (_, answer) = send(&mut a, 4, "I am alice").await;
    assert_eq!(answer, json!({"delivered": 2}));
    assert_eq!(
        message(&mut b).await,
        json!({"from": "alice", "text": "I am alice"})
    );

    // Unknown function: not found; a body the back end cannot use: failed, with its reason.
    let r = bounded("chat/nope", b.request(2, "chat/nope", b"")).await;
    assert_eq!(r.status, Status::NotFound);
    let r = bounded("chat/join", b.request(3, "chat/join", b"\xff")).await;
    assert_eq!(r.status, Status::Failed);
    assert!(
        String::from_utf8_lossy(&r.body).contains("UTF-8"),
        "{:?}",
        r.body
    );

    // a kicks b: b's connection is closed "kicked", with the back end's reason.
    assert_eq!(
        ok(&mut a, 5, "chat/kick", b_id.as_bytes()).await,
        json!({"ok": true})
    );
    let reason = bounded("b's CLOSE", b.expect_close(CloseCode::Kicked)).await;
    assert!(reason.contains("alice"), "close reason {reason:?}");
    let (_, answer) = send(&mut a, 6, "alone").await;
    assert_eq!(answer, json!({"delivered": 1}));

    // The back end restarts: its rooms are gone, but a's session setting `room` (set by join,
    // sent by the gate in Gatekit-Settings) takes a back into the lobby.
    let status = backend.terminate().await;
    assert!(status.success(), "exit status after SIGTERM: {status}");
    let r = bounded("chat/send with no back end", a.request(7, "chat/send", "x")).await;
    assert_eq!(r.status, Status::NotFound, "no responders: not found");
    let _backend = Backend::start(lang, &["--nats", &url]).await;
    let (own, answer) = send(&mut a, 8, "still here").await;
    assert_eq!(answer, json!({"delivered": 1}));
    assert_eq!(own, json!({"from": "alice", "text": "still here"}));

    // NATS goes down: the gate answers NATS modules busy at once, in-process ones still work.
    nats.kill();
    let mut id = 100;
    join_until(&mut a, &mut id, Status::Busy).await;
    let r = bounded("echo without NATS", a.request(99, "echo/say", b"hi")).await;
    assert_eq!(r.status, Status::Ok);
    // NATS is back: the gate and the back end reconnect by themselves; the back end's rooms
    // survived (only its connection went away).
    nats.restart().expect("nats-server restarts");
    let seen = join_until(&mut a, &mut id, Status::Ok).await;
    for s in &seen {
        assert!(
            matches!(s, Status::Busy | Status::NotFound | Status::Timeout),
            "while reconnecting: {s}"
        );
    }
    let (_, answer) = send(&mut a, 200, "after the outage").await;
    assert_eq!(answer, json!({"delivered": 1}));

    // The in-process echo module still answers beside NATS.
    let r = bounded("echo", a.request(9, "echo/say", b"hi")).await;
    assert_eq!((r.status, &r.body[..]), (Status::Ok, &b"hi"[..]));

    bounded("a's close", a.close()).await;
    bounded("the gate's shutdown", running.shutdown()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_backend_end_to_end() {
    scenario("rust_backend_end_to_end", Lang::Rust).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_backend_end_to_end() {
    scenario("python_backend_end_to_end", Lang::Python).await;
}
