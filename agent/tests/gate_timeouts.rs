//! Time-driven behaviour of the gate, on tokio's paused clock: every test runs its connection through
//! `Gate::accept` over an in-memory `tokio::io::duplex` pipe, so virtual hours pass in milliseconds
//! and every deadline is hit exactly.
//!
//! Covered: handshake timeout, idle timeout, back-end timeout, back-end panics, back-end errors,
//! unknown modules, and storage heartbeat throttling over long virtual durations.

mod common;

use bytes::{Bytes, BytesMut};
use common::{req, Ev, RecLearner};
use gatekit_agent::*;
use gatekit_codec::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncWriteExt, DuplexStream};
use tokio::time::Instant;

const PIPE: usize = 64 * 1024;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

// ----- recording services -----

/// Records every storage heartbeat with its virtual time and the session's user id.
#[derive(Default)]
struct RecStore {
    beats: Mutex<Vec<(Instant, Option<String>)>>,
}

impl RecStore {
    fn beats(&self) -> Vec<(Instant, Option<String>)> {
        self.beats.lock().unwrap().clone()
    }
}

impl SessionStore for RecStore {
    fn heartbeat(&self, s: Arc<Session>) -> gatekit_agent::StoreFuture<()> {
        self.beats
            .lock()
            .unwrap()
            .push((Instant::now(), s.user_id.clone()));
        Box::pin(std::future::ready(Ok(())))
    }
}

type Client = common::Client<DuplexStream>;

fn resp(id: u32, status: Status, body: &'static [u8]) -> Response {
    Response {
        id: MessageId::new(id).unwrap(),
        status,
        body: Bytes::from_static(body),
    }
}

struct Fixture {
    gate: Gate,
    learner: Arc<RecLearner>,
    store: Arc<RecStore>,
}

fn fixture(config: AgentConfig, backends: Backends) -> Fixture {
    let learner = Arc::new(RecLearner::default());
    let store = Arc::new(RecStore::default());
    let gate = Gate::builder()
        .config(config)
        .services(Services {
            backends,
            store: store.clone(),
            learner: learner.clone(),
        })
        .build();
    Fixture {
        gate,
        learner,
        store,
    }
}

impl Fixture {
    fn connect(&self) -> Client {
        let (client, server) = tokio::io::duplex(PIPE);
        self.gate.accept(Box::new(server), "mem", "peer".into());
        Client::new(client)
    }

    /// Waits (virtually) until the gate holds no connection.
    async fn drained(&self) {
        while self.gate.connection_count() > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

fn echo() -> Backends {
    Backends::new().with(
        "echo",
        |_s: Arc<Session>, _f: String, body: Bytes| async move { Ok::<_, BackendError>(body) },
    )
}

/// Bounds a paused-clock test in virtual time (a hang jumps straight to the deadline).
async fn bounded<F: std::future::Future<Output = ()>>(virtual_limit: Duration, f: F) {
    tokio::time::timeout(virtual_limit, f)
        .await
        .expect("test exceeded its virtual time limit");
}

// ----- handshake timeout -----

#[tokio::test(start_paused = true)]
async fn handshake_timeout_closes_silent_client_without_learner_events() {
    bounded(secs(60), async {
        let f = fixture(AgentConfig::default(), echo());
        let start = Instant::now();
        let mut silent = f.connect();
        // A second client that sends half a handshake frame: still not a handshake.
        let mut partial = f.connect();
        let mut out = BytesMut::new();
        NativeCodec::default()
            .encode(
                &Packet::Handshake(Handshake {
                    version: PROTOCOL_VERSION,
                    heartbeat_secs: 0,
                    token: Bytes::from_static(b"token"),
                }),
                &mut out,
            )
            .unwrap();
        partial.io.write_all(&out[..4]).await.unwrap();

        assert_eq!(f.gate.connection_count(), 2);
        assert_eq!(f.gate.session_count(), 0);

        let reason = silent.expect_close(CloseCode::HandshakeTimeout).await;
        assert_eq!(reason, "handshake timeout");
        let elapsed = start.elapsed();
        assert!(
            elapsed >= secs(10) && elapsed < secs(10) + Duration::from_millis(10),
            "closed after {elapsed:?}, expected 10 s"
        );
        partial.expect_close(CloseCode::HandshakeTimeout).await;
        assert!(start.elapsed() < secs(10) + Duration::from_millis(10));

        f.drained().await;
        assert_eq!(f.gate.session_count(), 0);
        assert!(
            f.learner.events().is_empty(),
            "no session, so no connect or disconnect: {:?}",
            f.learner.events()
        );
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn handshake_just_before_timeout_is_accepted() {
    bounded(secs(60), async {
        let f = fixture(AgentConfig::default(), echo());
        let mut c = f.connect();
        tokio::time::sleep(Duration::from_millis(9_990)).await;
        let sid = c.handshake().await;
        // Past the old handshake deadline, the session is alive and served.
        tokio::time::sleep(secs(5)).await;
        assert_eq!(
            c.request(1, "echo/x", b"ok").await,
            resp(1, Status::Ok, b"ok")
        );
        assert_eq!(f.learner.events(), vec![Ev::Connect(sid)]);
    })
    .await;
}

// ----- idle timeout -----

#[tokio::test(start_paused = true)]
async fn idle_timeout_closes_after_no_packet_for_idle_timeout() {
    bounded(secs(3600), async {
        let f = fixture(AgentConfig::default(), echo());
        let mut c = f.connect();
        let sid = c.handshake().await;
        // Pings every 60 s keep a connection alive well past the 90 s idle timeout.
        for _ in 0..5 {
            tokio::time::sleep(secs(60)).await;
            c.ping().await;
        }
        assert_eq!(f.gate.session_count(), 1);
        let last_packet = Instant::now();
        let reason = c.expect_close(CloseCode::IdleTimeout).await;
        assert_eq!(reason, "idle timeout");
        let silent_for = last_packet.elapsed();
        assert!(
            silent_for >= secs(90) && silent_for < secs(90) + Duration::from_millis(10),
            "closed after {silent_for:?} of silence, expected 90 s"
        );
        assert_eq!(
            f.learner.events(),
            vec![
                Ev::Connect(sid.clone()),
                Ev::Disconnect(sid, CloseReason::IdleTimeout)
            ]
        );
        f.drained().await;
        assert_eq!(f.gate.session_count(), 0);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_is_configurable_and_counts_requests_as_activity() {
    bounded(secs(3600), async {
        let config = AgentConfig {
            idle_timeout: secs(20),
            ..AgentConfig::default()
        };
        let f = fixture(config, echo());
        let mut c = f.connect();
        let sid = c.handshake().await;
        for i in 1..=10 {
            tokio::time::sleep(secs(15)).await;
            assert_eq!(c.request(i, "echo/x", b"x").await.status, Status::Ok);
        }
        let last = Instant::now();
        c.expect_close(CloseCode::IdleTimeout).await;
        assert!(last.elapsed() >= secs(20) && last.elapsed() < secs(21));
        assert_eq!(
            f.learner.events(),
            vec![
                Ev::Connect(sid.clone()),
                Ev::Disconnect(sid, CloseReason::IdleTimeout)
            ]
        );
    })
    .await;
}

// ----- back ends -----

fn slow_and_fast() -> Backends {
    echo().with(
        "slow",
        |_s: Arc<Session>, _f: String, _b: Bytes| async move {
            tokio::time::sleep(secs(60)).await;
            Ok::<_, BackendError>(Bytes::from_static(b"too late"))
        },
    )
}

#[tokio::test(start_paused = true)]
async fn backend_timeout_answers_timeout_and_connection_stays_usable() {
    bounded(secs(3600), async {
        let f = fixture(AgentConfig::default(), slow_and_fast());
        let mut c = f.connect();
        let sid = c.handshake().await;

        let start = Instant::now();
        let r = c.request(7, "slow/work", b"job").await;
        assert_eq!(r, resp(7, Status::Timeout, b""));
        let took = start.elapsed();
        assert!(
            took >= secs(10) && took < secs(10) + Duration::from_millis(10),
            "timeout answered after {took:?}, expected 10 s"
        );

        // The connection goes on: requests, pings, and no late answer for id 7.
        assert_eq!(
            c.request(8, "echo/x", b"still here").await,
            resp(8, Status::Ok, b"still here")
        );
        for _ in 0..3 {
            tokio::time::sleep(secs(30)).await;
            c.ping().await; // a stray RESPONSE 7 would show up here instead of PONG
        }
        assert_eq!(
            c.request(9, "echo/x", b"after").await,
            resp(9, Status::Ok, b"after")
        );
        // A second slow call also times out on its own clock.
        let start = Instant::now();
        assert_eq!(c.request(10, "slow/w", b"").await.status, Status::Timeout);
        assert!(start.elapsed() >= secs(10) && start.elapsed() < secs(11));

        assert_eq!(f.learner.events(), vec![Ev::Connect(sid)]);
        assert_eq!(f.gate.session_count(), 1);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn backend_timeout_does_not_count_as_idle() {
    // The idle timer does not run while a call is in flight: a 10 s back-end timeout with a 5 s idle
    // timeout still answers `timeout`, and the idle clock restarts from the answer.
    bounded(secs(3600), async {
        let config = AgentConfig {
            idle_timeout: secs(5),
            ..AgentConfig::default()
        };
        let f = fixture(config, slow_and_fast());
        let mut c = f.connect();
        let sid = c.handshake().await;
        assert_eq!(c.request(1, "slow/w", b"").await.status, Status::Timeout);
        let answered = Instant::now();
        c.expect_close(CloseCode::IdleTimeout).await;
        assert!(answered.elapsed() >= secs(5) && answered.elapsed() < secs(6));
        assert_eq!(
            f.learner.events(),
            vec![
                Ev::Connect(sid.clone()),
                Ev::Disconnect(sid, CloseReason::IdleTimeout)
            ]
        );
    })
    .await;
}

fn panicky() -> Backends {
    // One back end panics before returning its future, one panics inside it.
    fn boom_now(_s: Arc<Session>, _f: String, _b: Bytes) -> BoxFuture<Result<Bytes, BackendError>> {
        panic!("back end panicked before its future");
    }
    echo().with("boom", boom_now).with(
        "boomlater",
        |_s: Arc<Session>, _f: String, body: Bytes| async move {
            tokio::time::sleep(secs(1)).await;
            if body.is_empty() {
                panic!("back end panicked inside its future");
            }
            Ok::<_, BackendError>(body)
        },
    )
}

#[tokio::test(start_paused = true)]
async fn backend_panic_answers_internal_error_and_everything_keeps_working() {
    bounded(secs(600), async {
        let f = fixture(AgentConfig::default(), panicky());
        let mut c = f.connect();
        let sid = c.handshake().await;

        assert_eq!(
            c.request(1, "boom/x", b"").await,
            resp(1, Status::InternalError, b"")
        );
        assert_eq!(
            c.request(2, "echo/x", b"a").await,
            resp(2, Status::Ok, b"a")
        );
        assert_eq!(
            c.request(3, "boomlater/x", b"").await,
            resp(3, Status::InternalError, b"")
        );
        assert_eq!(
            c.request(4, "echo/x", b"b").await,
            resp(4, Status::Ok, b"b")
        );

        // The gate too: a new connection works, and the first one is still registered.
        let mut d = f.connect();
        let sid2 = d.handshake().await;
        assert_eq!(
            d.request(1, "boom/y", b"").await.status,
            Status::InternalError
        );
        assert_eq!(
            d.request(2, "echo/y", b"c").await,
            resp(2, Status::Ok, b"c")
        );
        assert_eq!(f.gate.session_count(), 2);
        assert!(f.gate.agent(&sid).is_some_and(|h| !h.is_closed()));
        assert_eq!(
            f.learner.events(),
            vec![Ev::Connect(sid.clone()), Ev::Connect(sid2.clone())]
        );

        // And both close normally afterwards (c with the close handshake: CLOSE, the gate's
        // CLOSE in reply, end of stream).
        c.close().await;
        assert_eq!(c.recv().await, None);
        d.io.shutdown().await.unwrap();
        assert_eq!(d.recv().await, None);
        f.drained().await;
        assert_eq!(
            f.learner.events(),
            vec![
                Ev::Connect(sid.clone()),
                Ev::Connect(sid2.clone()),
                Ev::Disconnect(sid, CloseReason::ClientClosed),
                Ev::Disconnect(sid2, CloseReason::Eof),
            ]
        );
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn backend_errors_map_to_statuses_and_connection_stays() {
    bounded(secs(600), async {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let backends = echo().with("err", move |_s: Arc<Session>, func: String, _b: Bytes| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                match func.as_str() {
                    "failed" => Err(BackendError::Failed(Bytes::from_static(b"no gold"))),
                    "busy" => Err(BackendError::Busy),
                    "missing" => Err(BackendError::NotFound),
                    _ => Ok(Bytes::from_static(b"fine")),
                }
            }
        });
        let f = fixture(AgentConfig::default(), backends);
        let mut c = f.connect();
        let sid = c.handshake().await;
        assert_eq!(
            c.request(1, "err/failed", b"").await,
            resp(1, Status::Failed, b"no gold")
        );
        assert_eq!(
            c.request(2, "err/busy", b"").await,
            resp(2, Status::Busy, b"")
        );
        assert_eq!(
            c.request(3, "err/missing", b"").await,
            resp(3, Status::NotFound, b"")
        );
        assert_eq!(
            c.request(4, "err/ok", b"").await,
            resp(4, Status::Ok, b"fine")
        );
        // A NOTIFY to a failing function gets no answer and changes nothing.
        c.send(Packet::Notify(Notify::new(
            Route::from_static("err/failed"),
            Bytes::new(),
        )))
        .await;
        c.ping().await;
        assert_eq!(calls.load(Ordering::SeqCst), 5);
        assert_eq!(
            c.request(5, "echo/x", b"z").await,
            resp(5, Status::Ok, b"z")
        );
        assert_eq!(f.learner.events(), vec![Ev::Connect(sid.clone())]);
        let h = f.gate.agent(&sid).expect("still registered");
        // handshake + 5 requests + notify + ping + request
        assert_eq!(h.received(), 1 + 4 + 1 + 1 + 1);
        assert!(!h.is_closed());
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn unknown_module_answers_not_found_and_connection_stays() {
    bounded(secs(600), async {
        let f = fixture(AgentConfig::default(), echo());
        let mut c = f.connect();
        let sid = c.handshake().await;
        assert_eq!(
            c.request(1, "nosuch/func", b"x").await,
            resp(1, Status::NotFound, b"")
        );
        // A notify to an unknown module is dropped silently.
        c.send(Packet::Notify(Notify::new(
            Route::from_static("nosuch/func"),
            Bytes::new(),
        )))
        .await;
        c.ping().await;
        assert_eq!(
            c.request(2, "echo/x", b"y").await,
            resp(2, Status::Ok, b"y")
        );
        // `type@id` falls back to the module type (mqant's pinned server id).
        assert_eq!(
            c.request(3, "echo@gate-7/x", b"pinned").await,
            resp(3, Status::Ok, b"pinned")
        );
        assert_eq!(
            c.request(4, "nosuch@1/x", b"").await,
            resp(4, Status::NotFound, b"")
        );
        assert_eq!(f.gate.session_count(), 1);
        assert_eq!(f.learner.events(), vec![Ev::Connect(sid)]);
    })
    .await;
}

// ----- storage heartbeats -----

#[tokio::test(start_paused = true)]
async fn storage_heartbeat_throttled_over_long_virtual_durations() {
    bounded(secs(6 * 3600), async {
        let heartbeat = secs(60);
        // Long silences are part of the test: a 20-minute heartbeat (idle after three of them)
        // and an hour's idle timeout.
        let config = AgentConfig {
            heartbeat,
            ping_interval: secs(1200),
            idle_timeout: secs(3600),
            ..AgentConfig::default()
        };
        let f = fixture(config, echo());
        let mut c = f.connect();
        let sid = c.handshake().await;

        // 1. Unbound: 5 minutes of activity, no storage heartbeat.
        for _ in 0..30 {
            tokio::time::sleep(secs(10)).await;
            c.ping().await;
        }
        assert!(f.store.beats().is_empty(), "unbound session got heartbeats");

        // 2. Bind: one heartbeat right away.
        f.gate.bind_user(&sid, "u1").unwrap();
        c.ping().await; // the bind command is applied before this PING is answered
        let bound_at = Instant::now();
        let beats = f.store.beats();
        assert_eq!(beats.len(), 1, "{beats:?}");
        assert_eq!(beats[0], (bound_at, Some("u1".into())));
        assert_eq!(
            f.gate
                .agent(&sid)
                .unwrap()
                .session()
                .unwrap()
                .user_id
                .as_deref(),
            Some("u1")
        );

        // 3. Two hours of a ping every 7 s (re-binding to u2 half-way): exactly one heartbeat per
        //    60 s interval, never closer than 60 s.
        let active_for = secs(2 * 3600);
        let mut rebound = false;
        while bound_at.elapsed() < active_for {
            tokio::time::sleep(secs(7)).await;
            c.ping().await;
            if !rebound && bound_at.elapsed() >= secs(3600) {
                f.gate.bind_user(&sid, "u2").unwrap();
                c.ping().await;
                rebound = true;
            }
        }
        let active_end = Instant::now();
        let beats = f.store.beats();
        for w in beats.windows(2) {
            let gap = w[1].0 - w[0].0;
            assert!(
                gap >= heartbeat,
                "heartbeats {gap:?} apart, less than the interval"
            );
            assert!(
                gap < heartbeat + secs(7),
                "an active interval of {gap:?} without heartbeat"
            );
        }
        let expected = (active_end - bound_at).as_secs() / 60 + 1;
        assert!(
            (beats.len() as u64).abs_diff(expected) <= 1,
            "{} heartbeats in {:?}, expected about {expected}",
            beats.len(),
            active_end - bound_at
        );
        let switch = beats
            .iter()
            .position(|b| b.1.as_deref() == Some("u2"))
            .expect("heartbeats after the re-bind carry the new user");
        assert!(beats[..switch].iter().all(|b| b.1.as_deref() == Some("u1")));
        assert!(beats[switch..].iter().all(|b| b.1.as_deref() == Some("u2")));

        // 4. Ten silent minutes: at most the one heartbeat owed for the last active interval.
        let before_silence = beats.len();
        let last_beat = beats.last().unwrap().0;
        tokio::time::sleep(secs(600)).await;
        let beats = f.store.beats();
        assert!(
            beats.len() - before_silence <= 1,
            "heartbeats while the client was silent: {:?}",
            &beats[before_silence..]
        );
        if let Some(owed) = beats.get(before_silence) {
            assert_eq!(owed.0, last_beat + heartbeat);
            assert!(owed.0 <= active_end + heartbeat);
        }

        // 5. Activity again: a heartbeat at once (the interval has long passed).
        c.ping().await;
        let resumed = Instant::now();
        let after = f.store.beats();
        assert_eq!(after.len(), beats.len() + 1);
        assert_eq!(after.last().unwrap().0, resumed);

        // 6. Unbound: activity no longer causes heartbeats.
        f.gate.unbind_user(&sid).unwrap();
        c.ping().await;
        let n = f.store.beats().len();
        for _ in 0..60 {
            tokio::time::sleep(secs(10)).await;
            c.ping().await;
        }
        assert_eq!(f.store.beats().len(), n, "heartbeats after unbind");
        assert_eq!(f.gate.agent(&sid).unwrap().session().unwrap().user_id, None);
        assert_eq!(f.learner.events(), vec![Ev::Connect(sid)]);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn storage_heartbeat_only_for_bound_sessions_of_this_gate() {
    bounded(secs(3600), async {
        let config = AgentConfig {
            heartbeat: secs(30),
            ..AgentConfig::default()
        };
        let f = fixture(config, echo());
        let mut bound = f.connect();
        let mut unbound = f.connect();
        let sid = bound.handshake().await;
        unbound.handshake().await;
        f.gate.bind_user(&sid, "player").unwrap();
        for _ in 0..20 {
            tokio::time::sleep(secs(10)).await;
            bound.ping().await;
            unbound.ping().await;
        }
        let beats = f.store.beats();
        // Bound at t=0, active throughout 200 s: heartbeats at 0, 30, ..., 180.
        assert_eq!(beats.len(), 7, "{beats:?}");
        assert!(beats.iter().all(|b| b.1.as_deref() == Some("player")));
        assert_eq!(
            f.gate.bind_user("no-such-session", "x"),
            Err(HandleError::NoSuchSession)
        );
    })
    .await;
}

// ----- half close -----

#[tokio::test(start_paused = true)]
async fn half_close_after_pipelined_requests_still_gets_every_answer() {
    // A client may shut down its sending side right after its last request: the requests already
    // received are handled, their answers flushed, and only then does the connection end (eof).
    bounded(secs(600), async {
        let backends = echo().with(
            "slow",
            |_s: Arc<Session>, _f: String, body: Bytes| async move {
                tokio::time::sleep(secs(5)).await;
                Ok::<_, BackendError>(body)
            },
        );
        let f = fixture(AgentConfig::default(), backends);
        let mut c = f.connect();
        let sid = c.handshake().await;
        let start = Instant::now();
        let mut out = BytesMut::new();
        for p in [
            req(1, "slow/a", b"one"),
            req(2, "slow/b", b"two"),
            Packet::Notify(Notify::new(Route::from_static("slow/n"), Bytes::new())),
            req(3, "echo/c", b"three"),
        ] {
            NativeCodec::default().encode(&p, &mut out).unwrap();
        }
        c.io.write_all(&out).await.unwrap();
        c.io.shutdown().await.unwrap();
        assert_eq!(
            c.recv().await,
            Some(Packet::Response(resp(1, Status::Ok, b"one")))
        );
        assert_eq!(
            c.recv().await,
            Some(Packet::Response(resp(2, Status::Ok, b"two")))
        );
        assert_eq!(
            c.recv().await,
            Some(Packet::Response(resp(3, Status::Ok, b"three")))
        );
        assert_eq!(c.recv().await, None);
        // One call at a time: 5 s + 5 s + 5 s (the notify) + echo.
        assert!(start.elapsed() >= secs(15) && start.elapsed() < secs(16));
        assert_eq!(
            f.learner.events(),
            vec![
                Ev::Connect(sid.clone()),
                Ev::Disconnect(sid, CloseReason::Eof)
            ]
        );
    })
    .await;
}
