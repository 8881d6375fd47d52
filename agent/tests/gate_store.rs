//! The session store seen through the gate, on tokio's paused clock: what a bind restores, the
//! grace period after a disconnect, logout, and a slow or failing store that never holds a
//! connection's packets back (its failures counted).

mod common;

use bytes::Bytes;
use gatekit_agent::*;
use gatekit_codec::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::DuplexStream;

type Client = common::Client<DuplexStream>;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// `who/x` answers the session's user and settings.
fn who() -> Backends {
    Backends::new().with("who", |s: Arc<Session>, _f: String, _b: Bytes| async move {
        Ok::<_, BackendError>(Bytes::from(format!("{:?} {:?}", s.user_id, s.settings)))
    })
}

fn gate(store: Arc<dyn SessionStore>) -> Gate {
    Gate::builder()
        .services(Services {
            backends: who(),
            store,
            learner: Arc::new(NoLearner),
        })
        .build()
}

fn connect(gate: &Gate) -> Client {
    let (client, server) = tokio::io::duplex(64 * 1024);
    gate.accept(Box::new(server), "mem", "peer".into());
    Client::new(client)
}

async fn who_am_i(c: &mut Client, id: u32) -> String {
    let r = c.request(id, "who/x", b"").await;
    assert_eq!(r.status, Status::Ok);
    String::from_utf8(r.body.to_vec()).unwrap()
}

/// Asks until the answer is `want` (commands and store answers arrive between requests).
async fn until(c: &mut Client, want: &str) {
    for id in 1..=100 {
        if who_am_i(c, id).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never answered {want:?}; last {:?}", who_am_i(c, 101).await);
}

async fn drained(gate: &Gate) {
    while gate.connection_count() > 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn bounded<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(secs(600), f)
        .await
        .expect("test exceeded its virtual time limit");
}

#[tokio::test(start_paused = true)]
async fn a_reconnect_within_the_grace_gets_its_settings_back_and_its_own_keys_win() {
    bounded(async {
        let store = MemoryStore::new(secs(180), secs(60));
        let gate = gate(Arc::new(store.clone()));
        let mut first = connect(&gate);
        let sid = first.handshake().await;
        gate.bind_user(&sid, "alice").unwrap();
        gate.set(&sid, "room", "7").unwrap();
        gate.set(&sid, "level", "3").unwrap();
        until(&mut first, r#"Some("alice") {"level": "3", "room": "7"}"#).await;
        first.close().await;
        drained(&gate).await;
        let stored = store
            .query("alice")
            .await
            .unwrap()
            .expect("kept for the grace");
        assert_eq!(stored.location, None, "offline");

        tokio::time::sleep(secs(59)).await;
        let mut second = connect(&gate);
        let sid = second.handshake().await;
        gate.set(&sid, "room", "9").unwrap();
        gate.bind_user(&sid, "alice").unwrap();
        until(&mut second, r#"Some("alice") {"level": "3", "room": "9"}"#).await;
        let stored = store.query("alice").await.unwrap().unwrap();
        assert_eq!(stored.location.unwrap().session_id, sid);

        // Logout forgets the user: a later login starts empty.
        gate.logout(&sid).unwrap();
        until(&mut second, "None {\"level\": \"3\", \"room\": \"9\"}").await;
        assert_eq!(store.query("alice").await.unwrap(), None);
        second.close().await;
        drained(&gate).await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn after_the_grace_nothing_comes_back() {
    bounded(async {
        let store = MemoryStore::new(secs(180), secs(60));
        let gate = gate(Arc::new(store.clone()));
        let mut first = connect(&gate);
        let sid = first.handshake().await;
        gate.bind_user(&sid, "bob").unwrap();
        gate.set(&sid, "room", "7").unwrap();
        until(&mut first, r#"Some("bob") {"room": "7"}"#).await;
        first.close().await;
        drained(&gate).await;
        tokio::time::sleep(secs(61)).await;
        let mut second = connect(&gate);
        let sid = second.handshake().await;
        gate.bind_user(&sid, "bob").unwrap();
        until(&mut second, r#"Some("bob") {}"#).await;
        // The store answered (the bind found nothing), and said so once more: still nothing.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(who_am_i(&mut second, 200).await, r#"Some("bob") {}"#);
    })
    .await;
}

/// A store that never answers.
struct Stuck {
    started: AtomicUsize,
}

impl SessionStore for Stuck {
    fn bind(&self, _: Arc<Session>, _: DuplicateLogin) -> StoreFuture<Bound> {
        self.started.fetch_add(1, Ordering::Relaxed);
        Box::pin(std::future::pending())
    }
    fn storage(&self, _: Arc<Session>) -> StoreFuture<()> {
        self.started.fetch_add(1, Ordering::Relaxed);
        Box::pin(std::future::pending())
    }
    fn heartbeat(&self, _: Arc<Session>) -> StoreFuture<()> {
        self.started.fetch_add(1, Ordering::Relaxed);
        Box::pin(std::future::pending())
    }
    fn disconnect(&self, _: Arc<Session>) -> StoreFuture<()> {
        self.started.fetch_add(1, Ordering::Relaxed);
        Box::pin(std::future::pending())
    }
}

#[tokio::test(start_paused = true)]
async fn a_store_that_never_answers_holds_no_packet_back_and_each_wait_is_bounded() {
    bounded(async {
        let store = Arc::new(Stuck {
            started: AtomicUsize::new(0),
        });
        let gate = gate(store.clone());
        let timeout = gate.config().store_timeout;
        let mut c = connect(&gate);
        let sid = c.handshake().await;
        gate.bind_user(&sid, "carol").unwrap();
        gate.set(&sid, "room", "7").unwrap();
        let start = tokio::time::Instant::now();
        // Served at once, while the store's bind hangs.
        until(&mut c, r#"Some("carol") {"room": "7"}"#).await;
        assert!(start.elapsed() < timeout, "{:?}", start.elapsed());
        for i in 0..20 {
            let r = c.request(1000 + i, "who/x", b"").await;
            assert_eq!(r.status, Status::Ok);
        }
        // The bind times out, then the storage of the settings (one, for both writes) starts.
        tokio::time::sleep(timeout + Duration::from_millis(1)).await;
        assert_eq!(gate.store_errors(), 1);
        // The client leaves: its storage and disconnect each wait store_timeout at most, then
        // the connection is gone.
        c.close().await;
        let closed = tokio::time::Instant::now();
        drained(&gate).await;
        assert!(closed.elapsed() <= timeout * 3, "{:?}", closed.elapsed());
        // Bind, storage, heartbeat (the first, at bind), disconnect: each started once and
        // timed out.
        assert_eq!(store.started.load(Ordering::Relaxed), 4);
        assert_eq!(gate.store_errors(), 4);
    })
    .await;
}

/// A store that fails every operation at once.
struct Down;

impl SessionStore for Down {
    fn bind(&self, _: Arc<Session>, _: DuplicateLogin) -> StoreFuture<Bound> {
        Box::pin(std::future::ready(Err(StoreError::Unavailable(
            "down".into(),
        ))))
    }
    fn storage(&self, _: Arc<Session>) -> StoreFuture<()> {
        Box::pin(std::future::ready(Err(StoreError::Unavailable(
            "down".into(),
        ))))
    }
    fn disconnect(&self, _: Arc<Session>) -> StoreFuture<()> {
        Box::pin(std::future::ready(Err(StoreError::Unavailable(
            "down".into(),
        ))))
    }
    fn heartbeat(&self, _: Arc<Session>) -> StoreFuture<()> {
        panic!("a store may panic too")
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_store_is_counted_and_the_connection_goes_on() {
    bounded(async {
        let gate = gate(Arc::new(Down));
        let mut c = connect(&gate);
        let sid = c.handshake().await;
        gate.bind_user(&sid, "dave").unwrap();
        until(&mut c, r#"Some("dave") {}"#).await;
        gate.set(&sid, "k", "v").unwrap();
        until(&mut c, r#"Some("dave") {"k": "v"}"#).await;
        c.close().await;
        drained(&gate).await;
        // bind, heartbeat (panicked), storage, disconnect.
        assert_eq!(gate.store_errors(), 4);
    })
    .await;
}

fn gate_with(store: Arc<dyn SessionStore>, policy: DuplicateLogin) -> Gate {
    Gate::builder()
        .config(AgentConfig {
            duplicate_login: policy,
            ..AgentConfig::default()
        })
        .services(Services {
            backends: who(),
            store,
            learner: Arc::new(NoLearner),
        })
        .build()
}

/// The CLOSE the client reads next (other packets skipped).
async fn close_of(c: &mut Client) -> (CloseCode, String) {
    loop {
        match c.recv().await {
            Some(Packet::Close(close)) => return (close.code, close.reason.as_str().to_owned()),
            Some(_) => {}
            None => panic!("the stream ended without a CLOSE"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_second_login_of_a_user_kicks_the_first_by_default() {
    bounded(async {
        let store = MemoryStore::default();
        let gate = gate(Arc::new(store.clone()));
        let mut first = connect(&gate);
        let first_sid = first.handshake().await;
        gate.bind_user(&first_sid, "gus").unwrap();
        until(&mut first, r#"Some("gus") {}"#).await;
        let mut second = connect(&gate);
        let sid = second.handshake().await;
        gate.bind_user(&sid, "gus").unwrap();
        assert_eq!(
            close_of(&mut first).await,
            (CloseCode::Kicked, LOGGED_IN_ELSEWHERE.to_owned())
        );
        until(&mut second, r#"Some("gus") {}"#).await;
        drained_to(&gate, 1).await;
        // The kicked session's end does not take the user offline.
        let stored = store.query("gus").await.unwrap().unwrap();
        assert_eq!(stored.location.unwrap().session_id, sid);
        second.close().await;
        drained(&gate).await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn refuse_closes_the_new_login_and_allow_keeps_both() {
    bounded(async {
        let store = MemoryStore::default();
        let gate = gate_with(Arc::new(store.clone()), DuplicateLogin::Refuse);
        let mut first = connect(&gate);
        let first_sid = first.handshake().await;
        gate.bind_user(&first_sid, "hal").unwrap();
        until(&mut first, r#"Some("hal") {}"#).await;
        let mut second = connect(&gate);
        let sid = second.handshake().await;
        gate.bind_user(&sid, "hal").unwrap();
        assert_eq!(
            close_of(&mut second).await,
            (CloseCode::Kicked, ALREADY_ONLINE.to_owned())
        );
        drained_to(&gate, 1).await;
        let stored = store.query("hal").await.unwrap().unwrap();
        assert_eq!(
            stored.location.unwrap().session_id,
            first_sid,
            "the first stays"
        );
        until(&mut first, r#"Some("hal") {}"#).await;
        first.close().await;
        drained(&gate).await;

        let store = MemoryStore::default();
        let gate = gate_with(Arc::new(store.clone()), DuplicateLogin::Allow);
        let mut a = connect(&gate);
        let a_sid = a.handshake().await;
        gate.bind_user(&a_sid, "ida").unwrap();
        until(&mut a, r#"Some("ida") {}"#).await;
        let mut b = connect(&gate);
        let b_sid = b.handshake().await;
        gate.bind_user(&b_sid, "ida").unwrap();
        until(&mut b, r#"Some("ida") {}"#).await;
        tokio::time::sleep(secs(5)).await;
        until(&mut a, r#"Some("ida") {}"#).await;
        assert_eq!(gate.connection_count(), 2, "both stay");
        let stored = store.query("ida").await.unwrap().unwrap();
        assert_eq!(
            stored.location.unwrap().session_id,
            b_sid,
            "located at the newer"
        );
        a.close().await;
        b.close().await;
        drained(&gate).await;
    })
    .await;
}

async fn drained_to(gate: &Gate, n: usize) {
    while gate.connection_count() > n {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
