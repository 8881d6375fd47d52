//! Helpers of the cluster tests: gates sharing a real redis-server and nats-server, clients that
//! log in with HMAC tokens, a back end's requests to `gatekit.users.*`, a learner that checks
//! Disconnect exactly once per Connect, and a TCP proxy that can cut a gate off from NATS.
//!
//! Included with `#[path = "support/cluster.rs"] mod cluster;` next to `native_client`,
//! `nats_server` and `redis_server`.

#![allow(dead_code)]

use super::native_client::Client;
use async_nats::HeaderMap;
use bytes::Bytes;
use gatekit_agent::{CloseReason, DuplicateLogin, Learner, Session};
use gatekit_codec::{Handshake, Packet, PROTOCOL_VERSION};
use gatekit_server::auth::AuthKind;
use gatekit_server::auth::HmacAuthenticator;
use gatekit_server::store::StoreKind;
use gatekit_server::{Dur, Running, Server, ServerConfig};
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const SECRET: &str = "cluster tests secret, 32 bytes..";
/// The most any one step may take.
pub const STEP: Duration = Duration::from_secs(10);
pub const GATE_TTL: Duration = Duration::from_millis(1000);
pub const GRACE: Duration = Duration::from_secs(5);

pub async fn bounded<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(STEP, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: not done within {STEP:?}"),
    }
}

/// A gate config: native on a free port, the Redis store, NATS, HMAC logins.
pub fn gate_config(id: &str, redis: &str, nats: &str, policy: DuplicateLogin) -> ServerConfig {
    let mut c = ServerConfig::default();
    c.gate.id = id.into();
    c.gate.listen = vec!["native+tcp://127.0.0.1:0".parse().unwrap()];
    c.gate.shutdown_grace = Dur(Duration::from_millis(300));
    c.nats.url = Some(nats.into());
    c.nats.connect_timeout = Dur(Duration::from_millis(1000));
    c.store.kind = StoreKind::Redis;
    c.store.url = Some(redis.into());
    c.store.gate_ttl = Dur(GATE_TTL);
    c.store.grace = Dur(GRACE);
    c.store.duplicate_login = policy;
    c.auth.kind = AuthKind::Hmac;
    c.auth.secret = Some(SECRET.into());
    c
}

/// Connect and Disconnect per session: each exactly once, checked by [`Lifecycle::check`].
#[derive(Default)]
pub struct Lifecycle {
    seen: Mutex<HashMap<String, (u32, u32)>>,
    order_broken: AtomicBool,
}

impl Learner for Lifecycle {
    fn connect(&self, session: &Session) {
        self.seen
            .lock()
            .unwrap()
            .entry(session.session_id.clone())
            .or_default()
            .0 += 1;
    }
    fn disconnect(&self, session: &Session, _reason: CloseReason) {
        let mut seen = self.seen.lock().unwrap();
        let e = seen.entry(session.session_id.clone()).or_default();
        if e.0 == 0 {
            self.order_broken.store(true, Ordering::Relaxed);
        }
        e.1 += 1;
    }
}

impl Lifecycle {
    /// Panics unless every session had one Connect and then one Disconnect; returns how many.
    pub fn check(&self, gate: &str) -> usize {
        assert!(
            !self.order_broken.load(Ordering::Relaxed),
            "{gate}: a Disconnect before its Connect"
        );
        let seen = self.seen.lock().unwrap();
        for (sid, (c, d)) in seen.iter() {
            assert_eq!(
                (*c, *d),
                (1, 1),
                "{gate}: session {sid}: connects, disconnects"
            );
        }
        seen.len()
    }
}

/// A started gate and its learner.
pub struct TestGate {
    pub running: Running,
    pub lifecycle: Arc<Lifecycle>,
    pub id: String,
}

impl TestGate {
    pub async fn start(config: ServerConfig) -> TestGate {
        let lifecycle = Arc::new(Lifecycle::default());
        let id = config.gate.id.clone();
        let running = bounded(
            "gate start",
            Server::new(config).learner(lifecycle.clone()).start(),
        )
        .await
        .expect("the gate starts");
        // Its directory and gate RPC are live on nats-server.
        if let Some(nc) = running.nats() {
            bounded("gate round trip", gatekit_server::nats::round_trip(nc))
                .await
                .unwrap();
        }
        TestGate {
            running,
            lifecycle,
            id,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.running.listeners()[0].addr
    }

    /// The settings of a session of this gate.
    pub fn settings(&self, sid: &str) -> Option<std::collections::BTreeMap<String, String>> {
        self.running
            .gate()
            .agent(sid)
            .and_then(|h| h.session())
            .map(|s| s.settings.clone())
    }

    /// Shuts down and checks Disconnect exactly once per Connect.
    pub async fn stop(self) -> usize {
        let id = self.id.clone();
        bounded("gate shutdown", self.running.shutdown()).await;
        self.lifecycle.check(&id)
    }
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn token(user: &str) -> String {
    HmacAuthenticator::new(SECRET.as_bytes()).token(user, now_secs() + 600)
}

/// Sends the handshake with `user`'s token; returns the client and the first packet.
pub async fn login_start(addr: SocketAddr, user: &str) -> Client<TcpStream> {
    let mut c = Client::connect(addr).await;
    c.send(Packet::Handshake(Handshake {
        version: PROTOCOL_VERSION,
        heartbeat_secs: 0,
        token: Bytes::from(token(user)),
    }))
    .await;
    c
}

/// Logs `user` in at `addr`; returns the client and its session id.
pub async fn login(addr: SocketAddr, user: &str) -> (Client<TcpStream>, String) {
    let mut c = bounded("login", login_start(addr, user)).await;
    match bounded("welcome", c.recv()).await {
        Some(Packet::Welcome(w)) => {
            let sid = w.session_id.as_str().to_owned();
            (c, sid)
        }
        other => panic!("{user}: expected WELCOME, got {other:?}"),
    }
}

/// A back end's request to `gatekit.users.<op>` for `user`; the JSON answer.
pub async fn user_op(
    nc: &async_nats::Client,
    op: &str,
    user: &str,
    extra: &[(&str, &str)],
    payload: &[u8],
) -> Value {
    let mut h = HeaderMap::new();
    h.insert("Gatekit-User", user);
    for (k, v) in extra {
        h.insert(*k, *v);
    }
    let reply = bounded(
        op,
        nc.request_with_headers(
            format!("gatekit.users.{op}"),
            h,
            Bytes::copy_from_slice(payload),
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("users.{op} {user}: {e}"));
    serde_json::from_slice(&reply.payload).expect("a JSON answer")
}

/// The next PUSH body the client gets (other packets are skipped); None if the stream ended.
pub async fn next_push(c: &mut Client<TcpStream>) -> Option<(String, Bytes)> {
    loop {
        match c.recv().await? {
            Packet::Push(p) => return Some((p.topic().to_owned(), p.body_bytes())),
            Packet::Close(close) => panic!("expected a PUSH, got CLOSE {close:?}"),
            _ => {}
        }
    }
}

/// The CLOSE the client gets next (skipping other packets): its code name and reason; None if
/// the stream ended without one.
pub async fn next_close(c: &mut Client<TcpStream>) -> Option<(String, String)> {
    loop {
        if let Packet::Close(close) = c.recv().await? {
            return Some((
                close.code.name().to_owned(),
                close.reason.as_str().to_owned(),
            ));
        }
    }
}

/// A TCP proxy to `target` that can be cut: then it forwards nothing more either way and keeps
/// the sockets open (a network partition: the peers see silence, not a close).
pub struct Partition {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Partition {
    pub async fn start(target: SocketAddr) -> Partition {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let c = cut.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = l.accept().await {
                let cut = c.clone();
                tokio::spawn(async move {
                    if cut.load(Ordering::Relaxed) {
                        // Cut: held open, nothing answered.
                        let _keep = &client;
                        std::future::pending::<()>().await;
                    }
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::spawn(pipe(cr, sw, cut.clone()));
                    pipe(sr, cw, cut).await;
                });
            }
        });
        Partition { addr, cut, task }
    }

    pub fn cut(&self) {
        self.cut.store(true, Ordering::Relaxed);
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    cut: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if cut.load(Ordering::Relaxed) {
            continue; // dropped on the floor
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Polls `f` every 50 ms until it is true or `within` passed; returns the time it took.
pub async fn until<F, Fut>(what: &str, within: Duration, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = std::time::Instant::now();
    loop {
        if f().await {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{what}: not true within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
