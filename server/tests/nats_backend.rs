//! The gate's calls to back ends over a real nats-server (docs/CLUSTER.md §1): a native client
//! calls the in-process gate, test back ends (async-nats clients) answer.

#[path = "../../agent/tests/common/native_client.rs"]
mod native_client;
#[path = "support/nats_server.rs"]
mod nats_server;

use async_nats::HeaderMap;
use bytes::Bytes;
use futures_util::StreamExt;
use gatekit_codec::{Response, Status};
use gatekit_server::config::DefaultRoute;
use gatekit_server::{Dur, Running, Server, ServerConfig};
use native_client::Client;
use nats_server::NatsServer;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

const GATE_ID: &str = "gate-t";
/// Every wait of these tests is bounded by this.
const LIMIT: Duration = Duration::from_secs(5);
const BACKEND_TIMEOUT: Duration = Duration::from_millis(500);

async fn bounded<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(LIMIT, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: nothing within {LIMIT:?}"),
    }
}

/// Returns once nats-server has processed everything `nc` sent (its subscriptions are live).
async fn settle(nc: &async_nats::Client) {
    bounded("settle", gatekit_server::nats::round_trip(nc))
        .await
        .unwrap();
}

fn config(url: &str) -> ServerConfig {
    let mut c = ServerConfig::default();
    c.gate.id = GATE_ID.into();
    c.gate.listen = vec!["native+tcp://127.0.0.1:0".parse().unwrap()];
    c.gate.shutdown_grace = Dur(Duration::from_millis(200));
    c.nats.url = Some(url.into());
    c.backends.default = DefaultRoute::Nats;
    c.limits.backend_timeout = Dur(BACKEND_TIMEOUT);
    c
}

async fn start(c: ServerConfig) -> (Running, SocketAddr) {
    let running = bounded("gate start", Server::new(c).start())
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

async fn call(c: &mut Client<TcpStream>, id: u32, route: &str, body: &[u8]) -> Response {
    bounded(route, c.request(id, route, body)).await
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A test back end: subscribes `subject` in `queue` and answers by the call's function (the
/// subject's last token):
/// `echo` the body; `tag` its tag; `status` with `Gatekit-Status` = the body and body `why`;
/// `slow` after 2 s; `huge` 4096 bytes; `headers` the call's headers as JSON; `subject` the
/// subject.
struct Backend {
    task: JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn backend(url: &str, subject: &str, queue: &str, tag: &'static str) -> Backend {
    let nc = bounded("back end connects", async_nats::connect(url))
        .await
        .expect("back end connects");
    let mut sub = nc
        .queue_subscribe(subject.to_owned(), queue.to_owned())
        .await
        .unwrap();
    settle(&nc).await;
    let task = tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            let nc = nc.clone();
            tokio::spawn(async move { answer(nc, msg, tag).await });
        }
    });
    Backend { task }
}

async fn answer(nc: async_nats::Client, msg: async_nats::Message, tag: &str) {
    let Some(reply) = msg.reply.clone() else {
        return;
    };
    let func = msg.subject.rsplit('.').next().unwrap_or("").to_owned();
    let mut h = HeaderMap::new();
    let body: Bytes = match func.as_str() {
        "echo" => msg.payload.clone(),
        "tag" => Bytes::from(tag.to_owned()),
        "status" => {
            h.insert("Gatekit-Status", text(&msg.payload).as_str());
            Bytes::from_static(b"why")
        }
        "slow" => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            Bytes::from_static(b"late")
        }
        "huge" => Bytes::from(vec![b'x'; 4096]),
        "headers" => {
            let mut m = BTreeMap::new();
            if let Some(hs) = &msg.headers {
                for (k, v) in hs.iter() {
                    let k: &str = k.as_ref();
                    m.insert(k.to_owned(), v[0].as_str().to_owned());
                }
            }
            Bytes::from(serde_json::to_vec(&m).unwrap())
        }
        "subject" => Bytes::from(msg.subject.to_string()),
        _ => Bytes::from_static(b"?"),
    };
    let _ = nc.publish_with_headers(reply, h, body).await;
}

/// The headers a call carried, as the `headers` function of a back end saw them.
async fn seen_headers(c: &mut Client<TcpStream>, id: u32) -> BTreeMap<String, String> {
    let r = call(c, id, "chat/headers", b"").await;
    assert_eq!(r.status, Status::Ok, "{}", text(&r.body));
    serde_json::from_slice(&r.body).unwrap()
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
async fn an_ok_reply_reaches_the_client() {
    let nats = nats_or_skip!("an_ok_reply_reaches_the_client");
    let _b = backend(&nats.url(), "gatekit.rpc.chat.>", "chat", "a").await;
    let (_gate, addr) = start(config(&nats.url())).await;
    let (mut c, _) = client(addr).await;
    let r = call(&mut c, 1, "chat/echo", b"hello \x00\xff bytes").await;
    assert_eq!(r.status, Status::Ok);
    assert_eq!(&r.body[..], b"hello \x00\xff bytes");
    // An empty body too.
    let r = call(&mut c, 2, "chat/echo", b"").await;
    assert_eq!((r.status, r.body.len()), (Status::Ok, 0));
}

#[tokio::test]
async fn each_status_header() {
    let nats = nats_or_skip!("each_status_header");
    let _b = backend(&nats.url(), "gatekit.rpc.chat.>", "chat", "a").await;
    let (_gate, addr) = start(config(&nats.url())).await;
    let (mut c, _) = client(addr).await;
    let cases: [(&str, Status, &[u8]); 6] = [
        ("ok", Status::Ok, b"why"),
        ("not_found", Status::NotFound, b""),
        ("failed", Status::Failed, b"why"),
        ("busy", Status::Busy, b""),
        ("teapot", Status::InternalError, b""),
        ("OK", Status::InternalError, b""),
    ];
    for (i, (value, status, body)) in cases.into_iter().enumerate() {
        let r = call(&mut c, i as u32 + 1, "chat/status", value.as_bytes()).await;
        assert_eq!(r.status, status, "Gatekit-Status: {value}");
        assert_eq!(&r.body[..], body, "Gatekit-Status: {value}");
    }
}

#[tokio::test]
async fn no_responders_is_not_found() {
    let nats = nats_or_skip!("no_responders_is_not_found");
    let (_gate, addr) = start(config(&nats.url())).await;
    let (mut c, _) = client(addr).await;
    let started = Instant::now();
    let r = call(&mut c, 1, "nobody/here", b"x").await;
    assert_eq!(r.status, Status::NotFound);
    assert!(
        started.elapsed() < BACKEND_TIMEOUT,
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_slow_back_end_times_out() {
    let nats = nats_or_skip!("a_slow_back_end_times_out");
    let _b = backend(&nats.url(), "gatekit.rpc.chat.>", "chat", "a").await;
    let (_gate, addr) = start(config(&nats.url())).await;
    let (mut c, _) = client(addr).await;
    let started = Instant::now();
    let r = call(&mut c, 1, "chat/slow", b"").await;
    let took = started.elapsed();
    assert_eq!(r.status, Status::Timeout);
    assert!(
        took >= BACKEND_TIMEOUT - Duration::from_millis(50)
            && took < BACKEND_TIMEOUT + Duration::from_secs(1),
        "answered after {took:?}"
    );
    // The connection goes on.
    let r = call(&mut c, 2, "chat/echo", b"next").await;
    assert_eq!((r.status, &r.body[..]), (Status::Ok, &b"next"[..]));
}

#[tokio::test]
async fn a_reply_over_the_frame_limit_is_an_internal_error() {
    let nats = nats_or_skip!("a_reply_over_the_frame_limit_is_an_internal_error");
    let _b = backend(&nats.url(), "gatekit.rpc.chat.>", "chat", "a").await;
    let mut cfg = config(&nats.url());
    cfg.limits.max_frame_length = 1024;
    let (_gate, addr) = start(cfg).await;
    let (mut c, _) = client(addr).await;
    let r = call(&mut c, 1, "chat/huge", b"").await;
    assert_eq!(r.status, Status::InternalError);
    assert_eq!(&r.body[..], b"response too large");
    let r = call(&mut c, 2, "chat/echo", b"small").await;
    assert_eq!(r.status, Status::Ok);
}

#[tokio::test]
async fn session_headers_arrive() {
    let nats = nats_or_skip!("session_headers_arrive");
    let _b = backend(&nats.url(), "gatekit.rpc.chat.>", "chat", "a").await;
    let (_gate, addr) = start(config(&nats.url())).await;
    let (mut c, sid) = client(addr).await;
    let local = c.io.local_addr().unwrap();
    let h = seen_headers(&mut c, 1).await;
    assert_eq!(h.get("Gatekit-Session"), Some(&sid));
    assert_eq!(sid.len(), 32);
    assert_eq!(h.get("Gatekit-Gate").map(String::as_str), Some(GATE_ID));
    assert_eq!(h.get("Gatekit-Network").map(String::as_str), Some("tcp"));
    assert_eq!(h.get("Gatekit-Peer"), Some(&local.to_string()));
    assert_eq!(h.get("Gatekit-User"), None);
    assert_eq!(h.get("Gatekit-Settings"), None);

    // Bind and set through the gate RPC: later calls carry them.
    let nc = bounded("rpc client", async_nats::connect(nats.url()))
        .await
        .unwrap();
    let mut rh = HeaderMap::new();
    rh.insert("Gatekit-Session", sid.as_str());
    rh.insert("Gatekit-User", "alice");
    let bind = bounded(
        "bind",
        nc.request_with_headers(format!("gatekit.gate.{GATE_ID}.bind"), rh, Bytes::new()),
    )
    .await
    .unwrap();
    assert_eq!(text(&bind.payload), r#"{"ok":true}"#);
    let mut rh = HeaderMap::new();
    rh.insert("Gatekit-Session", sid.as_str());
    rh.insert("Gatekit-Key", "room");
    let set = bounded(
        "set",
        nc.request_with_headers(
            format!("gatekit.gate.{GATE_ID}.set"),
            rh,
            Bytes::from_static(b"lobby \"1\""),
        ),
    )
    .await
    .unwrap();
    assert_eq!(text(&set.payload), r#"{"ok":true}"#);
    // "ok" means queued: the connection applies them in its own time.
    let deadline = Instant::now() + LIMIT;
    let mut id = 2;
    let h = loop {
        let h = seen_headers(&mut c, id).await;
        id += 1;
        if h.contains_key("Gatekit-User") && h.contains_key("Gatekit-Settings") {
            break h;
        }
        assert!(Instant::now() < deadline, "bind and set never seen: {h:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(h.get("Gatekit-User").map(String::as_str), Some("alice"));
    assert_eq!(
        h.get("Gatekit-Settings").map(String::as_str),
        Some(r#"{"room":"lobby \"1\""}"#)
    );
    assert_eq!(h.get("Gatekit-Session"), Some(&sid));
}

#[tokio::test]
async fn a_pinned_module_keeps_its_id_in_the_subject() {
    let nats = nats_or_skip!("a_pinned_module_keeps_its_id_in_the_subject");
    let _any = backend(&nats.url(), "gatekit.rpc.chat.>", "chat", "any").await;
    let _two = backend(&nats.url(), "gatekit.rpc.chat@2.>", "chat@2", "two").await;
    let (_gate, addr) = start(config(&nats.url())).await;
    let (mut c, _) = client(addr).await;
    let r = call(&mut c, 1, "chat@2/subject", b"").await;
    assert_eq!(
        (r.status, text(&r.body)),
        (Status::Ok, "gatekit.rpc.chat@2.subject".to_owned())
    );
    let r = call(&mut c, 2, "chat@2/tag", b"").await;
    assert_eq!(text(&r.body), "two");
    let r = call(&mut c, 3, "chat/tag", b"").await;
    assert_eq!(text(&r.body), "any");
    // An instance nobody runs: not found.
    let r = call(&mut c, 4, "chat@3/tag", b"").await;
    assert_eq!(r.status, Status::NotFound);
}

#[tokio::test]
async fn a_name_that_is_not_a_subject_token_fails_at_the_gate() {
    let nats = nats_or_skip!("a_name_that_is_not_a_subject_token_fails_at_the_gate");
    let _b = backend(&nats.url(), "gatekit.rpc.>", "all", "a").await;
    // Whatever reaches NATS is counted: nothing must.
    let watcher = bounded("watcher", async_nats::connect(nats.url()))
        .await
        .unwrap();
    let mut all = watcher.subscribe("gatekit.rpc.>").await.unwrap();
    settle(&watcher).await;
    let (_gate, addr) = start(config(&nats.url())).await;
    let (mut c, _) = client(addr).await;
    for (i, (route, name, found)) in [
        ("a.b/echo", "a.b", '.'),
        ("chat/a.b", "a.b", '.'),
        ("chat/x*", "x*", '*'),
        ("chat/>", ">", '>'),
        ("ch at/echo", "ch at", ' '),
    ]
    .into_iter()
    .enumerate()
    {
        let r = call(&mut c, i as u32 + 1, route, b"x").await;
        assert_eq!(r.status, Status::Failed, "{route}");
        let body = text(&r.body);
        assert!(
            body.contains(&format!("{name:?} is not a valid NATS subject token"))
                && body.contains(&format!("{found:?}")),
            "{route}: {body}"
        );
    }
    // A valid call afterwards is the first message NATS sees.
    let r = call(&mut c, 10, "chat/echo", b"ok").await;
    assert_eq!(r.status, Status::Ok);
    let first = bounded("first message", all.next()).await.unwrap();
    assert_eq!(first.subject.as_str(), "gatekit.rpc.chat.echo");
}

#[tokio::test]
async fn a_queue_group_spreads_calls_over_instances() {
    let nats = nats_or_skip!("a_queue_group_spreads_calls_over_instances");
    let _a = backend(&nats.url(), "gatekit.rpc.chat.>", "chat", "a").await;
    let _b = backend(&nats.url(), "gatekit.rpc.chat.>", "chat", "b").await;
    let (_gate, addr) = start(config(&nats.url())).await;
    let (mut c, _) = client(addr).await;
    let mut seen = BTreeMap::new();
    for id in 1..=60 {
        let r = call(&mut c, id, "chat/tag", b"").await;
        assert_eq!(r.status, Status::Ok);
        *seen.entry(text(&r.body)).or_insert(0) += 1;
    }
    // Each call went to exactly one instance, and both had some.
    assert_eq!(seen.values().sum::<i32>(), 60);
    assert_eq!(seen.len(), 2, "{seen:?}");
}

#[tokio::test]
async fn a_notify_reaches_the_back_end() {
    let nats = nats_or_skip!("a_notify_reaches_the_back_end");
    let (_gate, addr) = start(config(&nats.url())).await;
    let watcher = bounded("watcher", async_nats::connect(nats.url()))
        .await
        .unwrap();
    let mut sub = watcher
        .queue_subscribe("gatekit.rpc.chat.>", "chat".to_owned())
        .await
        .unwrap();
    settle(&watcher).await;
    let (mut c, sid) = client(addr).await;
    c.send(gatekit_codec::Packet::Notify(gatekit_codec::Notify::new(
        gatekit_codec::Route::try_from("chat/say").unwrap(),
        Bytes::from_static(b"hi"),
    )))
    .await;
    let m = bounded("notify", sub.next()).await.unwrap();
    assert_eq!(m.subject.as_str(), "gatekit.rpc.chat.say");
    assert_eq!(&m.payload[..], b"hi");
    let h = m.headers.unwrap();
    assert_eq!(
        h.get("Gatekit-Session").map(|v| v.as_str()),
        Some(sid.as_str())
    );
    // Published one-way: no reply subject, nothing waited for. The connection's next call goes
    // out at once (with max_in_flight 1 it would wait for an answer that never comes).
    assert!(
        m.reply.is_none(),
        "a notify with a reply subject: {:?}",
        m.reply
    );
    c.send(gatekit_codec::Packet::Request(gatekit_codec::Request::new(
        gatekit_codec::MessageId::new(7).unwrap(),
        gatekit_codec::Route::try_from("chat/next").unwrap(),
        Bytes::from_static(b"after"),
    )))
    .await;
    let next = bounded("the request after the notify", sub.next())
        .await
        .unwrap();
    assert_eq!(next.subject.as_str(), "gatekit.rpc.chat.next");
    watcher
        .publish(
            next.reply.expect("a request has a reply subject"),
            Bytes::from_static(b"answered"),
        )
        .await
        .unwrap();
    let r = c.recv_response().await;
    assert_eq!((r.id.get(), &r.body[..]), (7, &b"answered"[..]));
    c.ping().await;
}
