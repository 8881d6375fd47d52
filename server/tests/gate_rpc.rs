//! The gate RPC over a real nats-server (docs/CLUSTER.md §2): a back end (an async-nats client)
//! acts on the sessions of an in-process gate.

#[path = "../../agent/tests/common/native_client.rs"]
mod native_client;
#[path = "support/nats_server.rs"]
mod nats_server;

use async_nats::HeaderMap;
use bytes::Bytes;
use futures_util::StreamExt;
use gatekit_codec::{CloseCode, Packet};
use gatekit_server::config::DefaultRoute;
use gatekit_server::{Dur, Running, Server, ServerConfig};
use native_client::Client;
use nats_server::NatsServer;
use serde_json::{json, Value};
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

const GATE_ID: &str = "gate-t";
const LIMIT: Duration = Duration::from_secs(5);
const NO_SUCH: &str = "ffffffffffffffffffffffffffffffff";

async fn bounded<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(LIMIT, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: nothing within {LIMIT:?}"),
    }
}

fn config(url: &str, gate_id: &str) -> ServerConfig {
    let mut c = ServerConfig::default();
    c.gate.id = gate_id.into();
    c.gate.listen = vec!["native+tcp://127.0.0.1:0".parse().unwrap()];
    c.gate.shutdown_grace = Dur(Duration::from_millis(200));
    c.nats.url = Some(url.into());
    c.backends.default = DefaultRoute::Nats;
    c.limits.backend_timeout = Dur(Duration::from_millis(500));
    c.limits.max_frame_length = 1024;
    c
}

async fn start(url: &str, gate_id: &str) -> (Running, SocketAddr) {
    let running = bounded("gate start", Server::new(config(url, gate_id)).start())
        .await
        .expect("gate starts");
    let addr = running.listeners()[0].addr;
    (running, addr)
}

async fn client(addr: SocketAddr) -> (Client<TcpStream>, String) {
    let mut c = bounded("connect", Client::connect(addr)).await;
    let sid = bounded("handshake", c.handshake()).await;
    (c, sid)
}

/// One gate RPC op and its JSON answer.
async fn rpc(nc: &async_nats::Client, op: &str, headers: &[(&str, &str)], body: &[u8]) -> Value {
    rpc_to(nc, GATE_ID, op, headers, body).await
}

async fn rpc_to(
    nc: &async_nats::Client,
    gate: &str,
    op: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Value {
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        h.insert(*k, *v);
    }
    let m = bounded(
        op,
        nc.request_with_headers(
            format!("gatekit.gate.{gate}.{op}"),
            h,
            Bytes::copy_from_slice(body),
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("{op}: {e}"));
    serde_json::from_slice(&m.payload).unwrap_or_else(|e| panic!("{op}: {e}"))
}

fn ok() -> Value {
    json!({"ok": true})
}

#[track_caller]
fn assert_error(v: &Value, code: &str, message_has: &str) {
    assert_eq!(v["ok"], json!(false), "{v}");
    assert_eq!(v["error"], json!(code), "{v}");
    let m = v["message"].as_str().unwrap_or_default();
    assert!(
        m.contains(message_has),
        "{v}: message should name {message_has:?}"
    );
}

/// Waits (bounded) until `f` holds of the gate.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within {LIMIT:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn nats_client(url: &str) -> async_nats::Client {
    bounded("nats client", async_nats::connect(url))
        .await
        .expect("nats client")
}

macro_rules! nats_or_skip {
    ($test:expr) => {
        match NatsServer::start() {
            Ok(s) => s,
            Err(why) => {
                nats_server::peer_ready($test, Err(why));
                return;
            }
        }
    };
}

#[tokio::test]
async fn bind_unbind_set_remove_push() {
    let nats = nats_or_skip!("bind_unbind_set_remove_push");
    let (gate, addr) = start(&nats.url(), GATE_ID).await;
    let (_c, sid) = client(addr).await;
    let nc = nats_client(&nats.url()).await;
    let session = || gate.gate().agent(&sid).unwrap().session().unwrap();
    let s = sid.as_str();

    assert_eq!(
        rpc(
            &nc,
            "bind",
            &[("Gatekit-Session", s), ("Gatekit-User", "alice")],
            b""
        )
        .await,
        ok()
    );
    eventually("bound", || session().user_id.as_deref() == Some("alice")).await;
    assert_eq!(
        rpc(&nc, "unbind", &[("Gatekit-Session", s)], b"").await,
        ok()
    );
    eventually("unbound", || session().user_id.is_none()).await;
    let bind = [("Gatekit-Session", s), ("Gatekit-User", "bob")];
    assert_eq!(rpc(&nc, "bind", &bind, b"").await, ok());
    eventually("bound again", || {
        session().user_id.as_deref() == Some("bob")
    })
    .await;
    assert_eq!(
        rpc(&nc, "logout", &[("Gatekit-Session", s)], b"").await,
        ok()
    );
    eventually("logged out", || session().user_id.is_none()).await;

    assert_eq!(
        rpc(
            &nc,
            "set",
            &[("Gatekit-Session", s), ("Gatekit-Key", "room")],
            "lobby é".as_bytes()
        )
        .await,
        ok()
    );
    eventually("set", || {
        session().settings.get("room").map(String::as_str) == Some("lobby é")
    })
    .await;
    assert_eq!(
        rpc(
            &nc,
            "remove",
            &[("Gatekit-Session", s), ("Gatekit-Key", "room")],
            b""
        )
        .await,
        ok()
    );
    eventually("removed", || !session().settings.contains_key("room")).await;

    assert_eq!(
        rpc(
            &nc,
            "push",
            &[("Gatekit-Session", s)],
            br#"{"a":"1","b":"two"}"#
        )
        .await,
        ok()
    );
    eventually("pushed", || {
        let st = session().settings.clone();
        st.get("a").map(String::as_str) == Some("1")
            && st.get("b").map(String::as_str) == Some("two")
    })
    .await;
    assert_eq!(
        rpc(&nc, "push", &[("Gatekit-Session", s)], b"{}").await,
        ok()
    );
    for bad in [&b"[1]"[..], b"{\"a\":1}", b"not json", b""] {
        assert_error(
            &rpc(&nc, "push", &[("Gatekit-Session", s)], bad).await,
            "bad_request",
            "JSON object of strings",
        );
    }
}

#[tokio::test]
async fn send_reaches_the_client_as_a_push() {
    let nats = nats_or_skip!("send_reaches_the_client_as_a_push");
    let (_gate, addr) = start(&nats.url(), GATE_ID).await;
    let (mut c, sid) = client(addr).await;
    let nc = nats_client(&nats.url()).await;
    let v = rpc(
        &nc,
        "send",
        &[("Gatekit-Session", &sid), ("Gatekit-Topic", "chat.msg")],
        b"hi \x00there",
    )
    .await;
    assert_eq!(v, ok());
    match bounded("push", c.recv()).await {
        Some(Packet::Push(p)) => {
            assert_eq!(p.topic(), "chat.msg");
            assert_eq!(p.body(), b"hi \x00there");
        }
        other => panic!("expected PUSH, got {other:?}"),
    }
    // Over the frame limit (1024): too_large, nothing queued.
    let big = vec![b'x'; 2000];
    assert_error(
        &rpc(
            &nc,
            "send",
            &[("Gatekit-Session", &sid), ("Gatekit-Topic", "t")],
            &big,
        )
        .await,
        "too_large",
        "1024",
    );
    c.ping().await;
}

#[tokio::test]
async fn close_kicks_the_client() {
    let nats = nats_or_skip!("close_kicks_the_client");
    let (gate, addr) = start(&nats.url(), GATE_ID).await;
    let nc = nats_client(&nats.url()).await;

    let (mut c, sid) = client(addr).await;
    assert_eq!(
        rpc(&nc, "is_connect", &[("Gatekit-Session", &sid)], b"").await,
        json!({"ok": true, "connected": true})
    );
    assert_eq!(
        rpc(
            &nc,
            "close",
            &[("Gatekit-Session", &sid), ("Gatekit-Reason", "cheating")],
            b""
        )
        .await,
        ok()
    );
    let reason = bounded("close", c.expect_close(CloseCode::Kicked)).await;
    assert_eq!(reason, "cheating");
    eventually("gone", || {
        gate.gate().agent(&sid).is_none_or(|a| a.is_closed())
    })
    .await;
    assert_eq!(
        rpc(&nc, "is_connect", &[("Gatekit-Session", &sid)], b"").await,
        json!({"ok": true, "connected": false})
    );

    // Without a reason: the default one.
    let (mut c, sid) = client(addr).await;
    assert_eq!(
        rpc(&nc, "close", &[("Gatekit-Session", &sid)], b"").await,
        ok()
    );
    let reason = bounded("close", c.expect_close(CloseCode::Kicked)).await;
    assert_eq!(reason, gatekit_server::nats::gate_rpc::DEFAULT_CLOSE_REASON);
}

#[tokio::test]
async fn broadcast_counts_deliveries() {
    let nats = nats_or_skip!("broadcast_counts_deliveries");
    let (_gate, addr) = start(&nats.url(), GATE_ID).await;
    let nc = nats_client(&nats.url()).await;
    let (mut a, _) = client(addr).await;
    let (mut b, _) = client(addr).await;
    let v = rpc(&nc, "broadcast", &[("Gatekit-Topic", "news")], b"all").await;
    assert_eq!(v, json!({"ok": true, "gate": GATE_ID, "delivered": 2}));
    for c in [&mut a, &mut b] {
        match bounded("push", c.recv()).await {
            Some(Packet::Push(p)) => assert_eq!((p.topic(), p.body()), ("news", &b"all"[..])),
            other => panic!("expected PUSH, got {other:?}"),
        }
    }
    assert_error(
        &rpc(&nc, "broadcast", &[], b"x").await,
        "bad_request",
        "Gatekit-Topic",
    );
}

#[tokio::test]
async fn gates_broadcast_reaches_every_gate() {
    let nats = nats_or_skip!("gates_broadcast_reaches_every_gate");
    let (_ga, addr_a) = start(&nats.url(), "gate-a").await;
    let (_gb, addr_b) = start(&nats.url(), "gate-b").await;
    let (mut a, _) = client(addr_a).await;
    let (mut b1, _) = client(addr_b).await;
    let (mut b2, _) = client(addr_b).await;
    let nc = nats_client(&nats.url()).await;
    let inbox = nc.new_inbox();
    let mut answers = nc.subscribe(inbox.clone()).await.unwrap();
    let mut h = HeaderMap::new();
    h.insert("Gatekit-Topic", "all");
    nc.publish_with_reply_and_headers(
        "gatekit.gates.broadcast",
        inbox,
        h,
        Bytes::from_static(b"hello"),
    )
    .await
    .unwrap();
    let mut delivered = Vec::new();
    for _ in 0..2 {
        let m = bounded("an answer", answers.next()).await.unwrap();
        let v: Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(v["ok"], json!(true), "{v}");
        delivered.push(v["delivered"].as_u64().unwrap());
    }
    delivered.sort_unstable();
    assert_eq!(delivered, [1, 2]);
    for c in [&mut a, &mut b1, &mut b2] {
        match bounded("push", c.recv()).await {
            Some(Packet::Push(p)) => assert_eq!((p.topic(), p.body()), ("all", &b"hello"[..])),
            other => panic!("expected PUSH, got {other:?}"),
        }
    }
    // Published without a reply subject: delivered all the same.
    let mut h = HeaderMap::new();
    h.insert("Gatekit-Topic", "quiet");
    nc.publish_with_headers("gatekit.gates.broadcast", h, Bytes::from_static(b"2"))
        .await
        .unwrap();
    match bounded("push", a.recv()).await {
        Some(Packet::Push(p)) => assert_eq!(p.topic(), "quiet"),
        other => panic!("expected PUSH, got {other:?}"),
    }
}

#[tokio::test]
async fn unknown_sessions() {
    let nats = nats_or_skip!("unknown_sessions");
    let (_gate, _addr) = start(&nats.url(), GATE_ID).await;
    let nc = nats_client(&nats.url()).await;
    let s = ("Gatekit-Session", NO_SUCH);
    for (op, headers, body) in [
        ("bind", vec![s, ("Gatekit-User", "u")], &b""[..]),
        ("unbind", vec![s], b""),
        ("logout", vec![s], b""),
        ("set", vec![s, ("Gatekit-Key", "k")], b"v"),
        ("remove", vec![s, ("Gatekit-Key", "k")], b""),
        ("push", vec![s], b"{\"k\":\"v\"}"),
        ("send", vec![s, ("Gatekit-Topic", "t")], b"x"),
        ("close", vec![s], b""),
    ] {
        let v = rpc(&nc, op, &headers, body).await;
        assert_error(&v, "no_such_session", NO_SUCH);
        assert!(
            v["message"].as_str().unwrap().contains(GATE_ID),
            "{op}: {v}"
        );
    }
    assert_eq!(
        rpc(&nc, "is_connect", &[s], b"").await,
        json!({"ok": true, "connected": false})
    );
}

#[tokio::test]
async fn bad_requests() {
    let nats = nats_or_skip!("bad_requests");
    let (_gate, addr) = start(&nats.url(), GATE_ID).await;
    let (mut c, sid) = client(addr).await;
    let nc = nats_client(&nats.url()).await;
    let s = ("Gatekit-Session", sid.as_str());
    let long_topic = "t".repeat(256);
    // (op, headers, payload, what the message names)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a [u8], &'a str);
    let cases: Vec<Case> = vec![
        ("bind", vec![("Gatekit-User", "u")], b"", "Gatekit-Session"),
        ("bind", vec![s], b"", "Gatekit-User"),
        ("bind", vec![s, ("Gatekit-User", "")], b"", "Gatekit-User"),
        ("unbind", vec![], b"", "Gatekit-Session"),
        ("logout", vec![], b"", "Gatekit-Session"),
        ("set", vec![s], b"v", "Gatekit-Key"),
        ("set", vec![s, ("Gatekit-Key", "k")], b"\xff\xfe", "UTF-8"),
        ("remove", vec![s], b"", "Gatekit-Key"),
        ("push", vec![], b"{}", "Gatekit-Session"),
        ("send", vec![s], b"x", "Gatekit-Topic"),
        (
            "send",
            vec![s, ("Gatekit-Topic", long_topic.as_str())],
            b"x",
            "Gatekit-Topic",
        ),
        ("close", vec![], b"", "Gatekit-Session"),
        ("is_connect", vec![], b"", "Gatekit-Session"),
        (
            "broadcast",
            vec![("Gatekit-Topic", long_topic.as_str())],
            b"x",
            "Gatekit-Topic",
        ),
        ("frobnicate", vec![s], b"", "frobnicate"),
    ];
    for (op, headers, body, names) in cases {
        let v = rpc(&nc, op, &headers, body).await;
        assert_error(&v, "bad_request", names);
    }
    // Nothing reached the client, which is still connected.
    c.ping().await;
    assert_eq!(
        rpc(&nc, "is_connect", &[s], b"").await,
        json!({"ok": true, "connected": true})
    );
}

#[tokio::test]
async fn the_gate_rpc_is_served_at_once() {
    // `Server::start` returns with the subscriptions confirmed: the first request is answered.
    let nats = nats_or_skip!("the_gate_rpc_is_served_at_once");
    let nc = nats_client(&nats.url()).await;
    let (_gate, _addr) = start(&nats.url(), GATE_ID).await;
    let v = rpc(&nc, "is_connect", &[("Gatekit-Session", NO_SUCH)], b"").await;
    assert_eq!(v, json!({"ok": true, "connected": false}));
}
