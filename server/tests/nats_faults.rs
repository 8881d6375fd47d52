//! NATS failing under the gate: down at start-up, restarted under load, a back-end instance
//! killed with calls in flight. Every call must be answered, every connection must stay open.

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
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

const GATE_ID: &str = "gate-t";
const LIMIT: Duration = Duration::from_secs(5);
/// How long NATS reconnections are given (async-nats backs off up to 4 s between attempts).
const RECONNECT_WITHIN: Duration = Duration::from_secs(10);
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
    c.nats.connect_timeout = Dur(Duration::from_millis(500));
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

/// A test back end answering `chat.tag` with its tag and `chat.echo` with the body; or, when
/// `hold`, never answering (calls are counted). Dropping it kills it: its NATS connection goes.
struct Backend {
    task: JoinHandle<()>,
    received: Arc<AtomicUsize>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn backend(url: &str, tag: &'static str, hold: bool) -> Backend {
    let nc = bounded("back end connects", async_nats::connect(url))
        .await
        .expect("back end connects");
    let mut sub = nc
        .queue_subscribe("gatekit.rpc.chat.>", "chat".to_owned())
        .await
        .unwrap();
    settle(&nc).await;
    let received = Arc::new(AtomicUsize::new(0));
    let count = received.clone();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some(msg) = sub.next().await {
            count.fetch_add(1, Ordering::SeqCst);
            if hold {
                held.push(msg);
                continue;
            }
            let Some(reply) = msg.reply else { continue };
            let body = if msg.subject.ends_with(".tag") {
                Bytes::from(tag)
            } else {
                msg.payload
            };
            let _ = nc.publish_with_headers(reply, HeaderMap::new(), body).await;
        }
    });
    Backend { task, received }
}

macro_rules! nats_or_skip {
    ($test:expr, $start:expr) => {
        match $start {
            Ok(s) => s,
            Err(why) => {
                nats_server::peer_ready($test, Err(why));
                return;
            }
        }
    };
}

/// Calls `route` until it answers ok (bounded by `within`).
async fn until_ok(
    c: &mut Client<TcpStream>,
    id: &mut u32,
    route: &str,
    within: Duration,
) -> Response {
    let deadline = Instant::now() + within;
    loop {
        *id += 1;
        let r = call(c, *id, route, b"again").await;
        if r.status == Status::Ok {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "{route} never answered ok within {within:?}: last {:?}",
            r.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn nats_down_at_start_up() {
    let port = nats_or_skip!("nats_down_at_start_up", nats_server::free_port());
    let url = nats_server::url_on(port);
    let started = Instant::now();
    let (gate, addr) = start(config(&url)).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "start waited {:?} for NATS",
        started.elapsed()
    );
    let (mut c, sid) = client(addr).await;
    // The in-process module answers; a NATS one answers busy at once.
    let r = call(&mut c, 1, "echo/x", b"local").await;
    assert_eq!((r.status, &r.body[..]), (Status::Ok, &b"local"[..]));
    let t = Instant::now();
    let r = call(&mut c, 2, "chat/echo", b"x").await;
    assert_eq!(r.status, Status::Busy);
    assert!(
        t.elapsed() < Duration::from_millis(300),
        "busy after {:?}",
        t.elapsed()
    );

    // NATS comes: the gate connects by itself, calls and the gate RPC work.
    let nats = nats_or_skip!("nats_down_at_start_up", NatsServer::start_on(port));
    let _b = backend(&nats.url(), "a", false).await;
    let mut id = 2;
    let r = until_ok(&mut c, &mut id, "chat/echo", RECONNECT_WITHIN).await;
    assert_eq!(&r.body[..], b"again");
    let nc = bounded("rpc client", async_nats::connect(nats.url()))
        .await
        .unwrap();
    let mut h = HeaderMap::new();
    h.insert("Gatekit-Session", sid.as_str());
    h.insert("Gatekit-User", "late");
    let m = bounded(
        "bind",
        nc.request_with_headers(format!("gatekit.gate.{GATE_ID}.bind"), h, Bytes::new()),
    )
    .await
    .expect("the gate RPC is served after the late connection");
    assert_eq!(&m.payload[..], br#"{"ok":true}"#);
    let r = call(&mut c, 100, "echo/x", b"still").await;
    assert_eq!(r.status, Status::Ok);
    drop(gate);
}

#[tokio::test]
async fn nats_restarted_under_load() {
    let mut nats = nats_or_skip!("nats_restarted_under_load", NatsServer::start());
    let _b = backend(&nats.url(), "a", false).await;
    let (_gate, addr) = start(config(&nats.url())).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut loads = Vec::new();
    for n in 0..4 {
        let (mut c, _) = client(addr).await;
        let stop = stop.clone();
        loads.push(tokio::spawn(async move {
            let mut answers: Vec<Status> = Vec::new();
            let mut id = 0u32;
            while !stop.load(Ordering::SeqCst) {
                id += 1;
                let body = format!("{n}-{id}");
                // Bounded: the back-end timeout and a margin. A hang fails the test.
                let r = match tokio::time::timeout(
                    BACKEND_TIMEOUT + Duration::from_secs(2),
                    c.request(id, "chat/echo", body.as_bytes()),
                )
                .await
                {
                    Ok(r) => r,
                    Err(_) => panic!("client {n}: call {id} never answered"),
                };
                if r.status == Status::Ok {
                    assert_eq!(&r.body[..], body.as_bytes(), "client {n}: a wrong answer");
                }
                answers.push(r.status);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (c, answers)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    nats.kill();
    tokio::time::sleep(Duration::from_millis(700)).await;
    nats.restart().expect("nats-server restarts");
    // Both the gate and the back end reconnect; calls succeed again.
    let (mut probe, _) = client(addr).await;
    let mut id = 0;
    until_ok(&mut probe, &mut id, "chat/echo", RECONNECT_WITHIN).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    for (n, load) in loads.into_iter().enumerate() {
        let (mut c, answers) = bounded("load task", load).await.expect("no panic");
        assert!(answers.contains(&Status::Ok), "client {n}: {answers:?}");
        for s in &answers {
            // In the gap: busy (not connected), timeout (lost in flight), or not found (the
            // gate is back before the back end has subscribed again).
            assert!(
                matches!(
                    s,
                    Status::Ok | Status::Busy | Status::Timeout | Status::NotFound
                ),
                "client {n}: {s:?} in {answers:?}"
            );
        }
        assert!(
            answers.iter().any(|s| *s != Status::Ok),
            "client {n}: no call fell in the gap? {answers:?}"
        );
        // The connection is open and works.
        let r = call(&mut c, 1_000_000, "chat/echo", b"after").await;
        assert_eq!(
            (r.status, &r.body[..]),
            (Status::Ok, &b"after"[..]),
            "client {n}"
        );
    }
}

#[tokio::test]
async fn a_back_end_killed_with_calls_in_flight() {
    let nats = nats_or_skip!(
        "a_back_end_killed_with_calls_in_flight",
        NatsServer::start()
    );
    let victim = backend(&nats.url(), "victim", true).await;
    let _survivor = backend(&nats.url(), "survivor", false).await;
    let (_gate, addr) = start(config(&nats.url())).await;
    const N: usize = 16;
    let mut clients = Vec::new();
    for _ in 0..N {
        clients.push(client(addr).await.0);
    }
    let t = Instant::now();
    let calls: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                let r = bounded("call", c.request(1, "chat/tag", b"")).await;
                (c, r, Instant::now())
            })
        })
        .collect();
    // Let every call reach an instance, then kill the one that holds its calls.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let held = victim.received.load(Ordering::SeqCst);
    drop(victim);
    let mut timeouts = 0;
    let mut clients = Vec::new();
    for call in calls {
        let (c, r, at) = bounded("call task", call).await.unwrap();
        match r.status {
            Status::Ok => assert_eq!(&r.body[..], b"survivor"),
            Status::Timeout => {
                timeouts += 1;
                assert!(
                    at - t < BACKEND_TIMEOUT + Duration::from_secs(1),
                    "timeout after {:?}",
                    at - t
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        clients.push(c);
    }
    assert_eq!(
        timeouts, held,
        "the victim's calls, and only those, time out"
    );
    // The next calls all go to the survivor.
    for (i, c) in clients.iter_mut().enumerate() {
        let r = call(c, 2, "chat/tag", b"").await;
        assert_eq!(
            (r.status, &r.body[..]),
            (Status::Ok, &b"survivor"[..]),
            "client {i}"
        );
    }
}
