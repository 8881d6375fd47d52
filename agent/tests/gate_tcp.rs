//! The gate over real loopback TCP (127.0.0.1 only): many clients, counters, learner events,
//! ordering, back-pressure, slow consumers, protocol errors, kick, broadcast, connection limits,
//! graceful shutdown and custom agent factories. Every test is bounded by `tokio::time::timeout`.

mod common;

use bytes::{Bytes, BytesMut};
use common::{req, Client, Ev, RecLearner};
use gatekit_agent::*;
use gatekit_codec::*;
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;

/// The wall-clock bound of every test.
const LIMIT: Duration = Duration::from_secs(20);

async fn bounded<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("test exceeded its time limit");
}

/// Polls `cond` until it holds (the caller's `bounded` turns a hang into a failure).
async fn until(mut cond: impl FnMut() -> bool) {
    while !cond() {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn ok(id: u32, body: impl Into<Bytes>) -> Response {
    Response {
        id: MessageId::new(id).unwrap(),
        status: Status::Ok,
        body: body.into(),
    }
}

// ----- gates -----

fn echo_backends() -> Backends {
    Backends::new()
        .with(
            "echo",
            |_s: Arc<Session>, _f: String, body: Bytes| async move { Ok::<_, BackendError>(body) },
        )
        .with(
            "slow",
            |_s: Arc<Session>, _f: String, body: Bytes| async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok::<_, BackendError>(body)
            },
        )
}

struct Fixture {
    gate: Gate,
    addr: SocketAddr,
    accept: JoinHandle<()>,
    learner: Arc<RecLearner>,
}

async fn start(builder: GateBuilder, backends: Backends) -> Fixture {
    let learner = Arc::new(RecLearner::default());
    let gate = builder
        .services(Services {
            backends,
            learner: learner.clone(),
            ..Default::default()
        })
        .build();
    let (addr, accept) = gate.listen("127.0.0.1:0").await.unwrap();
    assert!(addr.ip().is_loopback());
    Fixture {
        gate,
        addr,
        accept,
        learner,
    }
}

async fn start_default() -> Fixture {
    start(Gate::builder(), echo_backends()).await
}

impl Fixture {
    async fn client(&self) -> Client<TcpStream> {
        Client::connect(self.addr).await
    }

    async fn drained(&self) {
        until(|| self.gate.connection_count() == 0 && self.gate.session_count() == 0).await;
    }
}

// ----- many clients -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_clients_requests_counters_and_one_connect_disconnect_each() {
    const CLIENTS: usize = 300;
    const N: u32 = 10;
    bounded(async {
        let f = start_default().await;
        let test_start = SystemTime::now();
        let mut tasks = Vec::new();
        for c in 0..CLIENTS {
            let addr = f.addr;
            let gate = f.gate.clone();
            tasks.push(tokio::spawn(async move {
                let mut cl = Client::connect(addr).await;
                let sid = cl.handshake().await;
                let handle = gate.agent(&sid).expect("registered once WELCOME is out");
                assert!(!handle.is_closed());
                assert!(
                    handle.conn_time() >= test_start && handle.conn_time() <= SystemTime::now()
                );
                assert_eq!(handle.session().unwrap().session_id, sid);
                assert_eq!(handle.session().unwrap().network, "tcp");
                // N pipelined requests with scattered ids, a notify, and a ping.
                let ids: Vec<u32> = (0..N).map(|k| (c as u32) * 1000 + k * 7 + 1).collect();
                let mut burst: Vec<Packet> = ids
                    .iter()
                    .map(|&id| req(id, "echo/say", format!("c{c}-m{id}")))
                    .collect();
                burst.push(Packet::Notify(Notify::new(
                    Route::from_static("echo/note"),
                    Bytes::from_static(b"n"),
                )));
                burst.push(Packet::Ping);
                cl.send_all(&burst).await;
                for &id in &ids {
                    // In order: one call in flight per connection by default.
                    assert_eq!(cl.recv_response().await, ok(id, format!("c{c}-m{id}")));
                }
                assert_eq!(cl.recv().await, Some(Packet::Pong));
                let graceful = c % 2 == 0;
                if graceful {
                    cl.close().await;
                } else {
                    cl.io.shutdown().await.unwrap();
                }
                assert_eq!(cl.recv().await, None, "the gate must end the stream");
                // Exact counters: the Disconnect happened before the gate ended the stream.
                let sent_by_client = 1 + N as u64 + 2 + graceful as u64;
                assert_eq!(handle.received(), sent_by_client, "client {c}");
                // WELCOME, the answers, PONG, and the gate's CLOSE in reply to a graceful close.
                assert_eq!(
                    handle.sent(),
                    1 + N as u64 + 1 + graceful as u64,
                    "client {c}"
                );
                assert!(handle.is_closed());
                (sid, graceful)
            }));
        }
        let mut expected = BTreeMap::new();
        for t in tasks {
            let (sid, graceful) = t.await.unwrap();
            let reason = if graceful {
                CloseReason::ClientClosed
            } else {
                CloseReason::Eof
            };
            assert!(
                expected.insert(sid, reason).is_none(),
                "duplicate session id"
            );
        }
        assert_eq!(f.learner.lifecycles(), expected);
        assert_eq!(f.learner.connects(), CLIENTS);
        assert_eq!(f.learner.disconnects(), CLIENTS);
        f.drained().await;
        assert_eq!(f.gate.accepted_refused(), (CLIENTS as u64, 0));
    })
    .await;
}

// ----- ordering -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_in_order_by_default() {
    bounded(async {
        let f = start_default().await;
        let mut c = f.client().await;
        c.handshake().await;
        let t = Instant::now();
        c.send_all(&[req(1, "slow/a", "first"), req(2, "echo/b", "second")])
            .await;
        assert_eq!(c.recv_response().await, ok(1, "first"));
        assert_eq!(c.recv_response().await, ok(2, "second"));
        assert!(t.elapsed() >= Duration::from_millis(300));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_in_flight_lets_a_fast_request_overtake_a_slow_one() {
    bounded(async {
        let config = AgentConfig {
            max_in_flight: 4,
            ..AgentConfig::default()
        };
        let f = start(Gate::builder().config(config), echo_backends()).await;
        let mut c = f.client().await;
        c.handshake().await;
        let t = Instant::now();
        c.send_all(&[req(1, "slow/a", "first"), req(2, "echo/b", "second")])
            .await;
        let overtaker = c.recv_response().await;
        assert_eq!(overtaker, ok(2, "second"));
        assert!(
            t.elapsed() < Duration::from_millis(300),
            "the fast answer waited for the slow one"
        );
        assert_eq!(c.recv_response().await, ok(1, "first"));
    })
    .await;
}

// ----- back-pressure -----

/// A back end that sleeps a little and records how many of its calls run at once.
fn counting_backend(cur: Arc<AtomicUsize>, max: Arc<AtomicUsize>, pause: Duration) -> Backends {
    Backends::new().with("work", move |_s: Arc<Session>, _f: String, body: Bytes| {
        let (cur, max) = (cur.clone(), max.clone());
        async move {
            let now = cur.fetch_add(1, Ordering::SeqCst) + 1;
            max.fetch_max(now, Ordering::SeqCst);
            if pause.is_zero() {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(pause).await;
            }
            cur.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, BackendError>(body)
        }
    })
}

fn body_for(id: u32) -> Bytes {
    let mut b = format!("req-{id}-").into_bytes();
    b.resize(1024, b'.');
    Bytes::from(b)
}

/// mqant answers the 21st concurrent message of a connection with "the work queue is full!" and
/// drops it; here a client pipelining 1,000 requests gets 1,000 answers, the gate reading from it
/// only as fast as the back end goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_1000_pipelined_requests_none_dropped() {
    const N: u32 = 1000;
    bounded(async {
        let (cur, max) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let config = AgentConfig {
            max_in_flight: 20,
            ..AgentConfig::default()
        };
        let f = start(
            Gate::builder().config(config.clone()),
            counting_backend(cur.clone(), max.clone(), Duration::from_millis(2)),
        )
        .await;
        let mut c = f.client().await;
        let sid = c.handshake().await;
        let handle = f.gate.agent(&sid).unwrap();
        let (rd, mut wr) = c.io.into_split();
        // About 1 MiB of requests: more than the socket buffers hold while the back end is slow.
        let writer = tokio::spawn(async move {
            let codec = NativeCodec::default();
            let mut out = BytesMut::new();
            for id in 1..=N {
                codec
                    .encode(&req(id, "work/do", body_for(id)), &mut out)
                    .unwrap();
            }
            wr.write_all(&out).await.unwrap();
            wr
        });
        let mut rc = Client::new(rd);
        rc.buf = c.buf;
        let mut seen = HashSet::new();
        for _ in 0..N {
            let r = rc.recv().await.expect("stream ended before all responses");
            let Packet::Response(r) = r else {
                panic!("expected RESPONSE, got {r:?}")
            };
            assert_eq!(r.status, Status::Ok, "id {}", r.id);
            assert_eq!(r.body, body_for(r.id.get()));
            assert!(seen.insert(r.id.get()), "id {} answered twice", r.id);
        }
        assert_eq!(seen, (1..=N).collect::<HashSet<_>>());
        let _wr = writer.await.unwrap();
        let peak = max.load(Ordering::SeqCst);
        assert!(peak <= 20, "{peak} calls in flight, limit 20");
        assert!(peak > 1, "max_in_flight 20 never ran calls concurrently");
        assert_eq!(handle.received(), 1 + N as u64);
        until(|| handle.sent() == 1 + N as u64).await;
        assert!(
            handle.max_buffered() <= config.buffer_bound(gatekit_agent::driver::READ_SIZE),
            "buffered {} bytes, bound {}",
            handle.max_buffered(),
            config.buffer_bound(gatekit_agent::driver::READ_SIZE)
        );
        assert_eq!(f.learner.events(), vec![Ev::Connect(sid)]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_1000_pipelined_requests_in_order_with_one_in_flight() {
    const N: u32 = 1000;
    bounded(async {
        let (cur, max) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let f = start(
            Gate::builder(),
            counting_backend(cur, max.clone(), Duration::ZERO),
        )
        .await;
        let mut c = f.client().await;
        c.handshake().await;
        let (rd, mut wr) = c.io.into_split();
        let writer = tokio::spawn(async move {
            let codec = NativeCodec::default();
            let mut out = BytesMut::new();
            for id in 1..=N {
                codec
                    .encode(&req(id, "work/do", body_for(id)), &mut out)
                    .unwrap();
            }
            wr.write_all(&out).await.unwrap();
            wr
        });
        let mut rc = Client::new(rd);
        rc.buf = c.buf;
        for id in 1..=N {
            assert_eq!(rc.recv_response().await, ok(id, body_for(id)));
        }
        let _wr = writer.await.unwrap();
        assert_eq!(max.load(Ordering::SeqCst), 1);
    })
    .await;
}

// ----- slow consumer -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_closed_and_other_clients_are_unaffected() {
    bounded(async {
        let f = start_default().await;
        // A: a client with a tiny receive buffer that stops reading after WELCOME.
        let sock = TcpSocket::new_v4().unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        let mut a = Client::new(sock.connect(f.addr).await.unwrap());
        let sid_a = a.handshake().await;
        let handle_a = f.gate.agent(&sid_a).unwrap();
        // B: a well-behaved client.
        let mut b = f.client().await;
        let sid_b = b.handshake().await;

        // B keeps doing round trips, each promptly, while A is flooded.
        let b_task = tokio::spawn(async move {
            for id in 1..=100u32 {
                let t = Instant::now();
                assert_eq!(b.request(id, "echo/x", "b").await, ok(id, "b"));
                assert!(t.elapsed() < Duration::from_secs(1), "B stalled");
            }
            b
        });

        let body = Bytes::from(vec![b'x'; 60_000]);
        let topic = Topic::from_static("flood");
        let mut pushed = 0usize;
        loop {
            match f.gate.push(&sid_a, topic.clone(), body.clone()) {
                Ok(()) => pushed += 1,
                Err(HandleError::Full) => tokio::time::sleep(Duration::from_millis(1)).await,
                Err(HandleError::NoSuchSession | HandleError::Closed) => break,
                Err(e @ HandleError::TooLarge { .. }) => panic!("a 60 kB push fits a frame: {e}"),
            }
            assert!(
                pushed < 20_000,
                "pushed {pushed} × 60 kB and A is still open"
            );
        }
        until(|| f.learner.disconnects() == 1).await;
        assert_eq!(
            f.learner.events(),
            vec![
                Ev::Connect(sid_a.clone()),
                Ev::Connect(sid_b.clone()),
                Ev::Disconnect(sid_a.clone(), CloseReason::SlowConsumer),
            ]
        );
        assert!(handle_a.is_closed());
        assert!(
            handle_a.max_buffered() <= f.gate.config().buffer_bound(driver::READ_SIZE),
            "A buffered {} bytes",
            handle_a.max_buffered()
        );
        // A's socket is closed by the gate: draining it reaches the end.
        let mut sink = vec![0u8; 64 * 1024];
        loop {
            match a.io.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }

        let mut b = b_task.await.unwrap();
        assert_eq!(f.gate.session_count(), 1);
        assert_eq!(f.gate.broadcast(Topic::from_static("after"), "hello"), 1);
        match b.recv().await {
            Some(Packet::Push(p)) => {
                assert_eq!((p.topic(), p.body()), ("after", &b"hello"[..]));
            }
            other => panic!("expected PUSH, got {other:?}"),
        }
        assert_eq!(b.request(500, "echo/x", "still").await, ok(500, "still"));
        assert_eq!(f.learner.events().len(), 3, "B was not disconnected");
    })
    .await;
}

// ----- protocol errors -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_close_with_protocol_error_without_affecting_others() {
    bounded(async {
        let f = start_default().await;
        let mut good = f.client().await;
        let good_sid = good.handshake().await;
        assert_eq!(good.request(1, "echo/x", "before").await, ok(1, "before"));

        // Before any handshake: unknown kind byte. No session, so no learner event.
        let mut pre = f.client().await;
        pre.io.write_all(&[0x01, 0x7f]).await.unwrap();
        pre.expect_close(CloseCode::ProtocolError).await;

        // (bytes after a successful handshake, expected close code)
        let cases: [(&[u8], CloseCode); 4] = [
            (&[0x01, 0x7f], CloseCode::ProtocolError), // unknown kind
            // A varint prefix whose first three bytes already mean at least 4 MiB: refused
            // as too large there, without waiting for the rest.
            (&[0xff, 0xff, 0xff, 0xff, 0xff], CloseCode::FrameTooLarge),
            (&[0x80, 0x80, 0x04], CloseCode::FrameTooLarge), // length 65,536
            (
                // a REQUEST with message id 0
                &[0x0a, 0x03, 0, 0, 0, 0, 0x03, b'a', b'/', b'b', b'!'],
                CloseCode::ProtocolError,
            ),
        ];
        let mut bad_sids = Vec::new();
        for (bytes, code) in cases {
            let mut c = f.client().await;
            let sid = c.handshake().await;
            c.io.write_all(bytes).await.unwrap();
            let reason = c.expect_close(code).await;
            assert!(
                !reason.is_empty(),
                "CLOSE without a reason for {bytes:02x?}"
            );
            bad_sids.push(sid);
        }
        // A client sending a gate-only packet.
        let mut c = f.client().await;
        let sid = c.handshake().await;
        c.send(Packet::Welcome(Welcome {
            version: 1,
            heartbeat_secs: 1,
            max_frame_length: 10,
            session_id: Text::from("me"),
        }))
        .await;
        c.expect_close(CloseCode::ProtocolError).await;
        bad_sids.push(sid);

        until(|| f.learner.disconnects() == bad_sids.len()).await;
        let mut expected = vec![Ev::Connect(good_sid.clone())];
        for s in &bad_sids {
            expected.push(Ev::Connect(s.clone()));
            expected.push(Ev::Disconnect(s.clone(), CloseReason::ProtocolError));
        }
        assert_eq!(f.learner.events(), expected);
        // The good client never noticed.
        assert_eq!(good.request(2, "echo/x", "after").await, ok(2, "after"));
        good.ping().await;
        assert_eq!(f.gate.session_count(), 1);
        assert!(!f.gate.agent(&good_sid).unwrap().is_closed());
    })
    .await;
}

// ----- kick, push, broadcast, count -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kick_by_session_id() {
    bounded(async {
        let f = start_default().await;
        let mut k = f.client().await;
        let sid = k.handshake().await;
        let mut other = f.client().await;
        let other_sid = other.handshake().await;
        let handle = f.gate.agent(&sid).unwrap();

        f.gate.kick(&sid, "cheating").unwrap();
        assert_eq!(k.expect_close(CloseCode::Kicked).await, "cheating");
        assert_eq!(
            f.learner.events(),
            vec![
                Ev::Connect(sid.clone()),
                Ev::Connect(other_sid.clone()),
                Ev::Disconnect(sid.clone(), CloseReason::Kicked),
            ]
        );
        assert!(handle.is_closed());
        assert!(f.gate.agent(&sid).is_none());
        assert_eq!(f.gate.kick(&sid, "again"), Err(HandleError::NoSuchSession));
        assert_eq!(
            f.gate.push(&sid, Topic::from_static("t"), "x"),
            Err(HandleError::NoSuchSession)
        );
        assert_eq!(
            f.gate.kick("not-a-session", "x"),
            Err(HandleError::NoSuchSession)
        );
        // A stale handle reports the connection closed once its task is gone.
        until(|| handle.kick("late") == Err(HandleError::Closed)).await;
        assert_eq!(
            other.request(1, "echo/x", "unaffected").await,
            ok(1, "unaffected")
        );
        assert_eq!(f.gate.session_count(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_broadcast_and_session_count() {
    const N: usize = 10;
    bounded(async {
        let f = start_default().await;
        assert_eq!(f.gate.session_count(), 0);
        assert_eq!(f.gate.broadcast(Topic::from_static("nobody"), "x"), 0);
        let mut clients = Vec::new();
        for _ in 0..N {
            let mut c = f.client().await;
            let sid = c.handshake().await;
            clients.push((sid, c));
        }
        // A client connected but not handshaken is a connection, not a session.
        let _lurker = f.client().await;
        until(|| f.gate.connection_count() == N + 1).await;
        assert_eq!(f.gate.session_count(), N);

        assert_eq!(f.gate.broadcast(Topic::from_static("news"), "all"), N);
        for (_, c) in &mut clients {
            match c.recv().await {
                Some(Packet::Push(p)) => assert_eq!((p.topic(), p.body()), ("news", &b"all"[..])),
                other => panic!("expected PUSH, got {other:?}"),
            }
        }
        // A push by session id reaches that session only.
        let target = clients[3].0.clone();
        f.gate
            .push(&target, Topic::from_static("dm"), "just you")
            .unwrap();
        for (sid, c) in &mut clients {
            if *sid == target {
                match c.recv().await {
                    Some(Packet::Push(p)) => {
                        assert_eq!((p.topic(), p.body()), ("dm", &b"just you"[..]))
                    }
                    other => panic!("expected PUSH, got {other:?}"),
                }
            } else {
                c.ping().await; // a stray PUSH would arrive instead of the PONG
            }
        }
        let handle = f.gate.agent(&target).unwrap();
        // WELCOME, broadcast, push, (no pong: the target did not ping)
        until(|| handle.sent() == 3).await;

        // One leaves: the count and the broadcast follow.
        let (gone, mut c) = clients.remove(0);
        c.close().await;
        assert_eq!(c.recv().await, None);
        until(|| f.gate.session_count() == N - 1).await;
        assert_eq!(f.gate.broadcast(Topic::from_static("news"), "again"), N - 1);
        for (_, c) in &mut clients {
            assert!(matches!(c.recv().await, Some(Packet::Push(_))));
        }
        assert_eq!(
            f.learner.events().last(),
            Some(&Ev::Disconnect(gone, CloseReason::ClientClosed))
        );
    })
    .await;
}

// ----- connection limit -----

/// Wraps the native agent and counts agents created.
struct CountingFactory(Arc<AtomicUsize>);

impl AgentFactory for CountingFactory {
    fn run(&self, stream: BoxStream, ctx: AgentContext) -> BoxFuture<()> {
        self.0.fetch_add(1, Ordering::SeqCst);
        NativeAgent.run(stream, ctx)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_refuses_the_next_one_with_server_full() {
    bounded(async {
        let agents = Arc::new(AtomicUsize::new(0));
        let f = start(
            Gate::builder()
                .max_connections(3)
                .factory(CountingFactory(agents.clone())),
            echo_backends(),
        )
        .await;
        let mut held = Vec::new();
        for _ in 0..3 {
            let mut c = f.client().await;
            c.handshake().await;
            held.push(c);
        }
        let mut fourth = f.client().await;
        assert_eq!(
            fourth.expect_close(CloseCode::ServerFull).await,
            "server full"
        );
        assert_eq!(
            agents.load(Ordering::SeqCst),
            3,
            "an agent for a refused connection"
        );
        assert_eq!(f.gate.accepted_refused(), (3, 1));
        assert_eq!(f.gate.connection_count(), 3);
        assert_eq!(f.gate.session_count(), 3);
        assert_eq!(f.learner.connects(), 3);
        assert_eq!(f.learner.disconnects(), 0);

        // The held ones still work; once one leaves, a new one gets in.
        assert_eq!(held[0].request(1, "echo/x", "y").await, ok(1, "y"));
        held[2].close().await;
        assert_eq!(held[2].recv().await, None);
        until(|| f.gate.connection_count() == 2).await;
        let mut fifth = f.client().await;
        fifth.handshake().await;
        assert_eq!(agents.load(Ordering::SeqCst), 4);
        assert_eq!(f.gate.accepted_refused(), (4, 1));
        assert_eq!(f.learner.connects(), 4);
        assert_eq!(f.learner.disconnects(), 1);
    })
    .await;
}

// ----- graceful shutdown -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_answers_calls_in_flight_and_closes_100_clients_with_one_disconnect_each()
{
    const N: usize = 100;
    bounded(async {
        let f = start_default().await;
        let mut readers = Vec::new();
        let mut sids = Vec::new();
        for i in 0..N {
            let mut c = f.client().await;
            let sid = c.handshake().await;
            let waiting = i % 10 == 0;
            if waiting {
                // A tenth of them wait on a slow back end when the shutdown comes: their answer
                // comes first, then the CLOSE (nothing in flight is lost).
                c.send(req(1, "slow/x", "pending")).await;
            }
            sids.push(sid);
            readers.push(tokio::spawn(async move {
                if waiting {
                    let r = c.recv_response().await;
                    assert_eq!(
                        (r.id.get(), r.status, &r.body[..]),
                        (1, Status::Ok, &b"pending"[..])
                    );
                }
                c.expect_close(CloseCode::Shutdown).await;
            }));
        }
        // And one connection still handshaking: it is closed too, with no learner event.
        let mut lurker = f.client().await;
        until(|| f.gate.connection_count() == N + 1).await;
        assert_eq!(f.gate.session_count(), N);
        let report = f.gate.shutdown(Duration::from_secs(5)).await;
        assert_eq!(
            report,
            ShutdownReport {
                connections: N + 1,
                aborted: 0
            }
        );
        for r in readers {
            r.await.unwrap();
        }
        lurker.expect_close(CloseCode::Shutdown).await;
        // A stream handed to the gate after the shutdown began is refused.
        let (late_client, late_server) = tokio::io::duplex(1024);
        f.gate.accept(Box::new(late_server), "mem", "late".into());
        Client::new(late_client)
            .expect_close(CloseCode::Shutdown)
            .await;
        assert_eq!(f.gate.session_count(), 0);
        assert_eq!(f.gate.connection_count(), 0);
        let lifecycles = f.learner.lifecycles();
        assert_eq!(lifecycles.len(), N);
        assert!(sids.iter().all(|s| lifecycles[s] == CloseReason::Shutdown));
        // The gate stops accepting: its accept task ends and the port is released.
        f.accept.await.unwrap();
        assert!(TcpStream::connect(f.addr).await.is_err());
        assert_eq!(f.gate.accepted_refused(), (N as u64 + 1, 1));
    })
    .await;
}

// ----- custom agent factories -----

/// A custom agent that ignores the protocol: it reads one byte saying what to do, registers a
/// session (or not), and then misbehaves.
struct Rogue;

impl AgentFactory for Rogue {
    fn run(&self, mut stream: BoxStream, mut ctx: AgentContext) -> BoxFuture<()> {
        Box::pin(async move {
            let mut mode = [0u8; 1];
            if stream.read_exact(&mut mode).await.is_err() {
                return;
            }
            let session = Arc::new(Session::new(
                ctx.info.session_id.clone(),
                ctx.info.network.clone(),
                ctx.info.peer.clone(),
                ctx.config.server_id.clone(),
            ));
            if mode[0] != b'n' {
                ctx.registration.connect(session.clone());
            }
            match mode[0] {
                b'p' => panic!("custom agent panicked after connect"),
                b'r' => {} // returns early, never calling disconnect
                b't' => {
                    // Connect twice, then return: still one Connect, one Disconnect.
                    ctx.registration.connect(session);
                }
                b'd' => {
                    // Disconnects properly, then panics: no second Disconnect.
                    ctx.registration.disconnect(CloseReason::ClientClosed);
                    panic!("custom agent panicked after disconnect");
                }
                b's' => {
                    // Stuck forever, ignoring the gate's commands.
                    let _ = stream.write_all(b"stuck").await;
                    std::future::pending::<()>().await;
                }
                _ => {} // 'n': never connects
            }
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_factory_panic_or_early_return_still_disconnects_exactly_once() {
    bounded(async {
        let f = start(Gate::builder().factory(Rogue), Backends::new()).await;
        let cases = [
            (b'p', Some(CloseReason::Internal)),
            (b'r', Some(CloseReason::Internal)),
            (b't', Some(CloseReason::Internal)),
            (b'd', Some(CloseReason::ClientClosed)),
            (b'n', None),
        ];
        for (mode, reason) in cases {
            let before = f.learner.events().len();
            let mut s = TcpStream::connect(f.addr).await.unwrap();
            s.write_all(&[mode]).await.unwrap();
            // The agent is gone: its stream ends.
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest).await;
            assert!(rest.is_empty());
            f.drained().await;
            let new = f.learner.events()[before..].to_vec();
            match reason {
                None => assert!(new.is_empty(), "mode {}: {new:?}", mode as char),
                Some(r) => {
                    let Some(Ev::Connect(sid)) = new.first().cloned() else {
                        panic!("mode {}: {new:?}", mode as char)
                    };
                    assert_eq!(
                        new,
                        vec![Ev::Connect(sid.clone()), Ev::Disconnect(sid, r)],
                        "mode {}",
                        mode as char
                    );
                }
            }
        }
        f.learner.lifecycles();
        assert_eq!(f.learner.connects(), 4);
        assert_eq!(f.gate.accepted_refused(), (5, 0));
        // The gate is fine after all that.
        assert_eq!(f.gate.connection_count(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_factory_stuck_agent_is_aborted_at_shutdown_with_one_disconnect() {
    bounded(async {
        let f = start(Gate::builder().factory(Rogue), Backends::new()).await;
        let mut s = TcpStream::connect(f.addr).await.unwrap();
        s.write_all(b"s").await.unwrap();
        let mut hello = [0u8; 5];
        s.read_exact(&mut hello).await.unwrap();
        assert_eq!(&hello, b"stuck");
        assert_eq!(f.gate.session_count(), 1);
        let Some(Ev::Connect(sid)) = f.learner.events().first().cloned() else {
            panic!("no Connect: {:?}", f.learner.events())
        };
        assert!(f.gate.agent(&sid).is_some());

        let t = Instant::now();
        let report = f.gate.shutdown(Duration::from_millis(300)).await;
        assert!(t.elapsed() >= Duration::from_millis(300));
        assert_eq!(
            report,
            ShutdownReport {
                connections: 1,
                aborted: 1
            }
        );
        assert_eq!(
            f.learner.events(),
            vec![
                Ev::Connect(sid.clone()),
                Ev::Disconnect(sid, CloseReason::Shutdown)
            ]
        );
        assert_eq!(f.gate.session_count(), 0);
        assert_eq!(f.gate.connection_count(), 0);
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
    })
    .await;
}
