//! The chat back ends against docs/CLUSTER.md from the back end's side: this test is the gate.
//! It sends the calls a gate sends (NATS requests and notifies with the session headers) and
//! answers the gate RPC (a fake gate on `<prefix>.gate.*.*` that records every op), for the Rust
//! and the Python back end alike.

#[path = "../../../../server/tests/support/nats_server.rs"]
mod nats_server;
mod support;

use async_nats::HeaderMap;
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{bounded, Backend, Lang};

/// A non-default prefix: the back ends must take it from `--prefix`.
const PREFIX: &str = "gk";

/// One gate RPC the back end made.
#[derive(Debug, Clone)]
struct Op {
    gate: String,
    op: String,
    headers: BTreeMap<String, String>,
    payload: String,
}

impl Op {
    fn header(&self, k: &str) -> Option<&str> {
        self.headers.get(k).map(String::as_str)
    }
}

/// Answers `<prefix>.gate.<id>.<op>` for any gate id: `{"ok":true}`, or `no_such_session` for a
/// session in `gone`.
struct FakeGates {
    ops: Arc<Mutex<Vec<Op>>>,
    gone: Arc<Mutex<HashSet<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeGates {
    async fn start(nc: &async_nats::Client) -> FakeGates {
        let mut sub = nc
            .subscribe(format!("{PREFIX}.gate.*.*"))
            .await
            .expect("subscribe");
        gatekit_server::nats::round_trip(nc).await.unwrap();
        let ops = Arc::new(Mutex::new(Vec::new()));
        let gone = Arc::new(Mutex::new(HashSet::new()));
        let (o, g, nc) = (ops.clone(), gone.clone(), nc.clone());
        let task = tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                let mut parts = m.subject.as_str().rsplitn(3, '.');
                let op = parts.next().unwrap().to_owned();
                let gate = parts.next().unwrap().to_owned();
                let headers: BTreeMap<String, String> = m
                    .headers
                    .iter()
                    .flat_map(|h| h.iter())
                    .map(|(k, v)| (k.to_string(), v[0].as_str().to_owned()))
                    .collect();
                let session = headers.get("Gatekit-Session").cloned().unwrap_or_default();
                let answer = if g.lock().unwrap().contains(&session) {
                    json!({"ok": false, "error": "no_such_session", "message": format!("no session {session}")})
                } else {
                    json!({"ok": true})
                };
                o.lock().unwrap().push(Op {
                    gate,
                    op,
                    headers,
                    payload: String::from_utf8_lossy(&m.payload).into_owned(),
                });
                if let Some(reply) = m.reply {
                    nc.publish(reply, Bytes::from(answer.to_string()))
                        .await
                        .unwrap();
                }
            }
        });
        FakeGates { ops, gone, task }
    }

    /// Every op recorded since the last call.
    fn take(&self) -> Vec<Op> {
        std::mem::take(&mut *self.ops.lock().unwrap())
    }

    fn gone(&self, session: &str) {
        self.gone.lock().unwrap().insert(session.to_owned());
    }
}

impl Drop for FakeGates {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A session as the gate describes it in headers.
#[derive(Clone)]
struct Sess {
    gate: &'static str,
    id: &'static str,
    user: Option<&'static str>,
    settings: Option<&'static str>,
}

fn sess(gate: &'static str, id: &'static str) -> Sess {
    Sess {
        gate,
        id,
        user: None,
        settings: None,
    }
}

impl Sess {
    fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("Gatekit-Session", self.id);
        h.insert("Gatekit-Gate", self.gate);
        h.insert("Gatekit-Network", "tcp");
        h.insert("Gatekit-Peer", "127.0.0.1:50000");
        if let Some(u) = self.user {
            h.insert("Gatekit-User", u);
        }
        if let Some(s) = self.settings {
            h.insert("Gatekit-Settings", s);
        }
        h
    }
}

/// A request, as the gate sends it: the reply's `Gatekit-Status` (None when absent) and payload.
async fn call(
    nc: &async_nats::Client,
    s: &Sess,
    func: &str,
    body: &[u8],
) -> (Option<String>, String) {
    let m = bounded(
        &format!("the answer to chat.{func}"),
        nc.request_with_headers(
            format!("{PREFIX}.rpc.chat.{func}"),
            s.headers(),
            Bytes::copy_from_slice(body),
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("chat.{func}: {e}"));
    let status = m
        .headers
        .as_ref()
        .and_then(|h| h.get("Gatekit-Status"))
        .map(|v| v.as_str().to_owned());
    (status, String::from_utf8_lossy(&m.payload).into_owned())
}

/// A call that must succeed: its JSON answer.
async fn ok(nc: &async_nats::Client, s: &Sess, func: &str, body: &[u8]) -> Value {
    let (status, body) = call(nc, s, func, body).await;
    assert!(
        status.is_none() || status.as_deref() == Some("ok"),
        "chat.{func}: status {status:?}, body {body}"
    );
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("chat.{func}: {body:?} is not JSON: {e}"))
}

/// A call that must be refused with `status`: its message.
async fn refused(
    nc: &async_nats::Client,
    s: &Sess,
    func: &str,
    body: &[u8],
    status: &str,
) -> String {
    let (got, body) = call(nc, s, func, body).await;
    assert_eq!(got.as_deref(), Some(status), "chat.{func}: body {body}");
    assert!(!body.is_empty(), "chat.{func}: {status} without a message");
    body
}

fn sends_to(ops: &[Op]) -> Vec<(String, String)> {
    let mut v: Vec<_> = ops
        .iter()
        .filter(|o| o.op == "send")
        .map(|o| {
            (
                o.gate.clone(),
                o.header("Gatekit-Session").unwrap().to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

async fn scenario(test: &str, lang: Lang) {
    if !nats_server::peer_ready(test, lang.available()) {
        return;
    }
    let Some(server) = nats_server::start_for(test) else {
        return;
    };
    let url = server.url();
    let nc = bounded("connect", async_nats::connect(url.as_str()))
        .await
        .unwrap();
    let gates = FakeGates::start(&nc).await;
    let backend = Backend::start(lang, &["--nats", &url, "--prefix", PREFIX]).await;

    let a = sess("g1", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    let b = sess("g2", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
    let c = sess("g2", "cccccccccccccccccccccccccccccccc");

    // join: the setting `room` is set on the session's own gate; the answer counts members.
    assert_eq!(
        ok(&nc, &a, "join", b"lobby").await,
        json!({"room": "lobby", "members": 1})
    );
    let ops = gates.take();
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert_eq!((ops[0].gate.as_str(), ops[0].op.as_str()), ("g1", "set"));
    assert_eq!(ops[0].header("Gatekit-Session"), Some(a.id));
    assert_eq!(ops[0].header("Gatekit-Key"), Some("room"));
    assert_eq!(ops[0].payload, "lobby");
    assert_eq!(
        ok(&nc, &b, "join", b"lobby").await,
        json!({"room": "lobby", "members": 2})
    );
    assert_eq!(gates.take()[0].gate, "g2");

    // send: to every member, on each member's gate, the sender included.
    assert_eq!(ok(&nc, &a, "send", b"hello").await, json!({"delivered": 2}));
    let ops = gates.take();
    assert_eq!(
        sends_to(&ops),
        vec![("g1".into(), a.id.into()), ("g2".into(), b.id.into())]
    );
    for o in &ops {
        assert_eq!(o.header("Gatekit-Topic"), Some("chat/message"));
        let v: Value = serde_json::from_str(&o.payload).unwrap();
        assert_eq!(v, json!({"from": a.id, "text": "hello"}));
    }

    // login: bind on the session's gate; later calls carry Gatekit-User, the sender's name.
    assert_eq!(ok(&nc, &a, "login", b"alice").await, json!({"ok": true}));
    let ops = gates.take();
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert_eq!((ops[0].gate.as_str(), ops[0].op.as_str()), ("g1", "bind"));
    assert_eq!(ops[0].header("Gatekit-Session"), Some(a.id));
    assert_eq!(ops[0].header("Gatekit-User"), Some("alice"));
    let alice = Sess {
        user: Some("alice"),
        ..a.clone()
    };
    ok(&nc, &alice, "send", "héllo ✓".as_bytes()).await;
    for o in gates.take() {
        let v: Value = serde_json::from_str(&o.payload).unwrap();
        assert_eq!(v, json!({"from": "alice", "text": "héllo ✓"}));
    }

    // kick: close on the target's gate, with a reason; the target leaves the room.
    ok(&nc, &c, "join", b"lobby").await;
    gates.take();
    assert_eq!(
        ok(&nc, &alice, "kick", c.id.as_bytes()).await,
        json!({"ok": true})
    );
    let ops = gates.take();
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert_eq!((ops[0].gate.as_str(), ops[0].op.as_str()), ("g2", "close"));
    assert_eq!(ops[0].header("Gatekit-Session"), Some(c.id));
    assert!(
        ops[0]
            .header("Gatekit-Reason")
            .is_some_and(|r| r.contains("alice")),
        "{ops:?}"
    );
    assert_eq!(ok(&nc, &a, "send", b"x").await, json!({"delivered": 2}));
    gates.take();
    refused(&nc, &a, "kick", c.id.as_bytes(), "failed").await;
    assert!(
        gates.take().is_empty(),
        "a kick of a non-member reached a gate"
    );

    // A member whose gate answers no_such_session is dropped: one try, then never again.
    gates.gone(b.id);
    assert_eq!(ok(&nc, &a, "send", b"1").await, json!({"delivered": 1}));
    assert_eq!(sends_to(&gates.take()).len(), 2);
    assert_eq!(ok(&nc, &a, "send", b"2").await, json!({"delivered": 1}));
    assert_eq!(
        sends_to(&gates.take()),
        vec![("g1".into(), a.id.into())],
        "the gone member was not dropped"
    );

    // A notify (no reply subject) is handled, unanswered.
    nc.publish_with_headers(
        format!("{PREFIX}.rpc.chat.send"),
        a.headers(),
        Bytes::from_static(b"notified"),
    )
    .await
    .unwrap();
    let pushed = bounded("the notify's send", async {
        loop {
            let ops = gates.take();
            if let Some(o) = ops.iter().find(|o| o.op == "send") {
                return o.clone();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(pushed.payload.contains("notified"), "{pushed:?}");

    // A session this process does not know but whose settings say room: taken back into it.
    let d = Sess {
        settings: Some(r#"{"room":"lobby"}"#),
        ..sess("g1", "dddddddddddddddddddddddddddddddd")
    };
    assert_eq!(ok(&nc, &d, "send", b"back").await, json!({"delivered": 2}));
    gates.take();

    // Refusals.
    let msg = refused(&nc, &a, "nope", b"", "not_found").await;
    assert!(msg.contains("nope"), "{msg}");
    refused(&nc, &a, "join", b"\xff\xfe", "failed").await;
    refused(&nc, &a, "join", b"   ", "failed").await;
    refused(&nc, &a, "join", "x".repeat(65).as_bytes(), "failed").await;
    refused(&nc, &a, "login", b"", "failed").await;
    refused(&nc, &a, "send", b"\xc3", "failed").await;
    let e = sess("g1", "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee");
    let msg = refused(&nc, &e, "send", b"hi", "failed").await;
    assert!(msg.contains("join"), "{msg}");
    // Without the session headers.
    let m = bounded(
        "an answer without headers",
        nc.request(
            format!("{PREFIX}.rpc.chat.join"),
            Bytes::from_static(b"lobby"),
        ),
    )
    .await
    .unwrap();
    let status = m.headers.as_ref().and_then(|h| h.get("Gatekit-Status"));
    assert_eq!(status.map(|v| v.as_str()), Some("failed"));
    // A refused gate RPC is the call's failure.
    gates.gone(e.id);
    refused(&nc, &e, "join", b"lobby", "failed").await;
    refused(&nc, &e, "login", b"eve", "failed").await;
    assert_eq!(
        gates.take().len(),
        2,
        "join and login each try their gate RPC"
    );

    // The queue group is `chat`: a second instance shares the calls, none is answered twice.
    let second = Backend::start(lang, &["--nats", &url, "--prefix", PREFIX, "--id", "7"]).await;
    let inbox = nc.new_inbox();
    let mut replies = nc.subscribe(inbox.clone()).await.unwrap();
    for _ in 0..20 {
        nc.publish_with_reply_and_headers(
            format!("{PREFIX}.rpc.chat.nope"),
            inbox.clone(),
            a.headers(),
            Bytes::new(),
        )
        .await
        .unwrap();
    }
    for i in 0..20 {
        bounded(&format!("reply {i} of 20"), replies.next()).await;
    }
    let extra = tokio::time::timeout(Duration::from_millis(300), replies.next()).await;
    assert!(extra.is_err(), "a call was answered twice: {extra:?}");
    // `--id 7`: calls pinned to chat@7 reach that instance (queue group chat@7).
    let m = bounded(
        "an answer to chat@7",
        nc.request_with_headers(
            format!("{PREFIX}.rpc.chat@7.login"),
            a.headers(),
            Bytes::from_static(b"pinned"),
        ),
    )
    .await
    .expect("the instance with --id 7 answers chat@7");
    assert!(m
        .headers
        .as_ref()
        .and_then(|h| h.get("Gatekit-Status"))
        .is_none());
    let ops = gates.take();
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert_eq!(ops[0].header("Gatekit-User"), Some("pinned"));
    drop(second);

    // SIGTERM: a clean exit.
    let status = backend.terminate().await;
    assert!(status.success(), "exit status after SIGTERM: {status}");
    drop(gates);
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_backend_keeps_the_contract() {
    scenario("rust_backend_keeps_the_contract", Lang::Rust).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_backend_keeps_the_contract() {
    scenario("python_backend_keeps_the_contract", Lang::Python).await;
}
