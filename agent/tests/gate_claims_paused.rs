//! Claims of docs/ARCHITECTURE.md §5 ("mqant's defects and what prevents them") shown at the gate
//! level on tokio's paused clock: a real `Gate` running `NativeAgent` through the driver, each
//! connection handed to `Gate::accept` over an in-memory `tokio::io::duplex` pipe. Also the session
//! id generator itself. The loopback TCP half is in `gate_claims.rs`.

mod common;

use bytes::{Bytes, BytesMut};
use common::{req, Ev, Hold, RecLearner};
use gatekit_agent::handle::COMMAND_QUEUE;
use gatekit_agent::session::random_session_id;
use gatekit_agent::*;
use gatekit_codec::*;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, DuplexStream};

type Client = common::Client<DuplexStream>;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Bounds a paused-clock test in virtual time (a hang jumps straight to the deadline).
async fn bounded<F: std::future::Future<Output = ()>>(virtual_limit: Duration, f: F) {
    tokio::time::timeout(virtual_limit, f)
        .await
        .expect("test exceeded its virtual time limit");
}

async fn until(mut cond: impl FnMut() -> bool) {
    while !cond() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn resp(id: u32, status: Status, body: impl Into<Bytes>) -> Response {
    Response {
        id: MessageId::new(id).unwrap(),
        status,
        body: body.into(),
    }
}

struct Fixture {
    gate: Gate,
    learner: Arc<RecLearner>,
}

fn fixture(config: AgentConfig, backends: Backends) -> Fixture {
    let learner = Arc::new(RecLearner::default());
    let gate = Gate::builder()
        .config(config)
        .services(Services {
            backends,
            learner: learner.clone(),
            ..Default::default()
        })
        .build();
    Fixture { gate, learner }
}

impl Fixture {
    /// A client on a pipe of `pipe` bytes each way, decoding with the gate's frame limit.
    fn connect_with(&self, pipe: usize) -> Client {
        let (client, server) = tokio::io::duplex(pipe);
        self.gate.accept(Box::new(server), "mem", "peer".into());
        let mut c = Client::new(client);
        c.codec = NativeCodec::new(self.gate.config().max_frame_length, Oversize::Fail).unwrap();
        c
    }

    fn connect(&self) -> Client {
        self.connect_with(64 * 1024)
    }
}

// ----- a PING waits while calls are in flight -----

/// mqant panics when a PINGREQ arrives while its work queue is full. Here, with `max_in_flight` 1
/// and the one call held, a PING sent after the REQUEST is not even decoded: no PONG comes, the
/// connection stays up, and once the call is answered the client gets RESPONSE, then PONG.
#[tokio::test(start_paused = true)]
async fn ping_waits_behind_a_call_in_flight_then_pong_follows_the_response() {
    bounded(secs(600), async {
        let hold = Hold::default();
        let config = AgentConfig {
            max_in_flight: 1,
            ..AgentConfig::default()
        };
        let f = fixture(config, hold.backends());
        let mut c = f.connect();
        let sid = c.handshake().await;
        let handle = f.gate.agent(&sid).unwrap();

        c.send(req(1, "hold/a", "first")).await;
        until(|| hold.calls() == 1).await;
        c.send(Packet::Ping).await;
        // Five virtual seconds with the call in flight (the back-end timeout is 10 s): nothing.
        if let Ok(p) = tokio::time::timeout(secs(5), c.recv()).await {
            panic!("got {p:?} while the call was in flight");
        }
        assert_eq!(handle.received(), 2, "the PING must wait undecoded");
        assert!(!handle.is_closed());
        assert_eq!(f.learner.events(), vec![Ev::Connect(sid.clone())]);

        hold.release(1);
        assert_eq!(
            c.recv().await,
            Some(Packet::Response(resp(1, Status::Ok, "first")))
        );
        assert_eq!(c.recv().await, Some(Packet::Pong));
        assert_eq!(handle.received(), 3);

        // Pipelined behind another held call: REQUEST, PING, REQUEST come back in that order.
        c.send_all(&[
            req(2, "hold/b", "second"),
            Packet::Ping,
            req(3, "echo/c", "third"),
        ])
        .await;
        until(|| hold.calls() == 2).await;
        if let Ok(p) = tokio::time::timeout(secs(5), c.recv()).await {
            panic!("got {p:?} while the call was in flight");
        }
        hold.release(1);
        assert_eq!(
            c.recv().await,
            Some(Packet::Response(resp(2, Status::Ok, "second")))
        );
        assert_eq!(c.recv().await, Some(Packet::Pong));
        assert_eq!(
            c.recv().await,
            Some(Packet::Response(resp(3, Status::Ok, "third")))
        );
        c.ping().await;
        assert!(!handle.is_closed());
        assert_eq!(f.learner.events(), vec![Ev::Connect(sid)]);
    })
    .await;
}

// ----- the frame limit on output -----

/// `big/<n>` answers `n` bytes.
fn big() -> Backends {
    Backends::new()
        .with(
            "big",
            |_s: Arc<Session>, func: String, _b: Bytes| async move {
                let n: usize = func.parse().unwrap();
                Ok::<_, BackendError>(Bytes::from(vec![b'b'; n]))
            },
        )
        .with(
            "echo",
            |_s: Arc<Session>, _f: String, body: Bytes| async move { Ok::<_, BackendError>(body) },
        )
}

/// `max_frame_length` holds on output: an answer too large for a frame becomes RESPONSE `internal
/// error`, `response too large`, for that id, and the connection goes on; a push too large is
/// refused to its sender with `TooLarge` and nothing is sent. The client decodes with the gate's
/// limit, so a frame over it would fail the test. Input is held to the same configured limit.
#[tokio::test(start_paused = true)]
async fn frame_limit_holds_on_output_and_input() {
    const MAX: usize = 1024;
    bounded(secs(600), async {
        let config = AgentConfig {
            max_frame_length: MAX,
            ..AgentConfig::default()
        };
        let f = fixture(config, big());
        let mut c = f.connect();
        c.send(Packet::Handshake(Handshake {
            version: PROTOCOL_VERSION,
            heartbeat_secs: 0,
            token: Bytes::new(),
        }))
        .await;
        let sid = match c.recv().await {
            Some(Packet::Welcome(w)) => {
                assert_eq!(w.max_frame_length as usize, MAX);
                w.session_id.as_str().to_owned()
            }
            other => panic!("expected WELCOME, got {other:?}"),
        };
        let handle = f.gate.agent(&sid).unwrap();

        // A RESPONSE frame is 6 bytes plus the body: 1,018 bytes fit exactly, 1,019 do not.
        let fits = MAX - 6;
        let r = c.request(1, &format!("big/{fits}"), "").await;
        assert_eq!((r.status, r.body.len()), (Status::Ok, fits));
        for (id, n) in [(2, fits + 1), (3, 100_000)] {
            assert_eq!(
                c.request(id, &format!("big/{n}"), "").await,
                resp(id, Status::InternalError, &b"response too large"[..]),
                "{n} bytes"
            );
        }
        assert_eq!(
            c.request(4, "echo/x", "after").await,
            resp(4, Status::Ok, "after")
        );
        c.ping().await;

        // A PUSH frame is 2 bytes plus topic and body.
        let topic = Topic::from_static("t");
        let body_fits = MAX - 2 - topic.as_str().len();
        f.gate
            .push(&sid, topic.clone(), vec![b'p'; body_fits])
            .unwrap();
        match c.recv().await {
            Some(Packet::Push(p)) => assert_eq!(p.body().len(), body_fits),
            other => panic!("expected PUSH, got {other:?}"),
        }
        let too_large = Err(HandleError::TooLarge {
            len: MAX + 1,
            max: MAX,
        });
        assert_eq!(
            f.gate.push(&sid, topic.clone(), vec![b'p'; body_fits + 1]),
            too_large
        );
        assert_eq!(
            handle.push(topic.clone(), vec![b'p'; body_fits + 1]),
            too_large
        );
        // Nothing was sent for them: the next packet is the PONG.
        c.ping().await;
        // WELCOME, 4 RESPONSEs, PONG, PUSH, PONG.
        until(|| handle.sent() == 8).await;
        tokio::time::sleep(secs(1)).await;
        assert_eq!(handle.sent(), 8);
        assert!(!handle.is_closed());
        assert_eq!(f.learner.events(), vec![Ev::Connect(sid.clone())]);

        // Input: a REQUEST frame of exactly MAX bytes is served, one of MAX + 1 closes the
        // connection with CLOSE frame_too_large.
        let mut d = f.connect();
        let sid2 = d.handshake().await;
        let route_len = "echo/x".len();
        let body = vec![b'q'; MAX - 1 - 4 - 1 - route_len];
        assert_eq!(
            d.request(1, "echo/x", &body).await,
            resp(1, Status::Ok, body.clone())
        );
        let mut out = BytesMut::new();
        NativeCodec::default()
            .encode(&req(2, "echo/x", [&body[..], b"!"].concat()), &mut out)
            .unwrap();
        d.io.write_all(&out).await.unwrap();
        d.expect_close(CloseCode::FrameTooLarge).await;
        until(|| f.learner.disconnects() == 1).await;
        assert_eq!(
            f.learner.events(),
            vec![
                Ev::Connect(sid),
                Ev::Connect(sid2.clone()),
                Ev::Disconnect(sid2, CloseReason::ProtocolError)
            ]
        );
    })
    .await;
}

// ----- counters and the command queue -----

/// `sent` counts packets written to the transport, not queued: a client that does not read holds
/// them in the gate's queue, uncounted, until it reads.
#[tokio::test(start_paused = true)]
async fn sent_counts_packets_written_not_queued() {
    const PUSHES: usize = 10;
    bounded(secs(600), async {
        let f = fixture(AgentConfig::default(), Backends::new());
        // A 1 KiB pipe: a 10 KB PUSH cannot be written whole until the client reads.
        let mut c = f.connect_with(1024);
        let sid = c.handshake().await;
        let handle = f.gate.agent(&sid).unwrap();
        let topic = Topic::from_static("t");
        for i in 0..PUSHES {
            let mut body = format!("push-{i}-").into_bytes();
            body.resize(10_000, b'.');
            f.gate.push(&sid, topic.clone(), body).unwrap();
        }
        tokio::time::sleep(secs(1)).await;
        assert_eq!(handle.sent(), 1, "only the WELCOME is written");
        assert!(!handle.is_closed());
        for i in 0..PUSHES {
            match c.recv().await {
                Some(Packet::Push(p)) => {
                    assert!(p.body().starts_with(format!("push-{i}-").as_bytes()))
                }
                other => panic!("expected PUSH {i}, got {other:?}"),
            }
        }
        until(|| handle.sent() == 1 + PUSHES as u64).await;
        assert_eq!(handle.received(), 1);
    })
    .await;
}

/// Senders never block on a connection: a command queue full of commands the connection's task has
/// not taken yet answers `Full` at once (this test never yields between the calls, so on this
/// single-threaded runtime the connection cannot run), and the commands accepted are all applied, in
/// order.
#[tokio::test(start_paused = true)]
async fn full_command_queue_refuses_without_blocking_and_loses_nothing_accepted() {
    bounded(secs(600), async {
        let f = fixture(AgentConfig::default(), Backends::new());
        let mut c = f.connect();
        let sid = c.handshake().await;
        let handle = f.gate.agent(&sid).unwrap();
        let topic = Topic::from_static("t");
        for i in 0..COMMAND_QUEUE {
            f.gate.push(&sid, topic.clone(), i.to_string()).unwrap();
        }
        assert_eq!(
            f.gate.push(&sid, topic.clone(), "one too many"),
            Err(HandleError::Full)
        );
        assert_eq!(handle.kick("no room"), Err(HandleError::Full));
        assert_eq!(f.gate.bind_user(&sid, "u"), Err(HandleError::Full));
        for i in 0..COMMAND_QUEUE {
            match c.recv().await {
                Some(Packet::Push(p)) => assert_eq!(p.body(), i.to_string().as_bytes()),
                other => panic!("expected PUSH {i}, got {other:?}"),
            }
        }
        // The refused ones left no trace, and the queue has room again.
        c.ping().await;
        f.gate.push(&sid, topic, "again").unwrap();
        assert!(matches!(c.recv().await, Some(Packet::Push(p)) if p.body() == b"again"));
        assert!(!handle.is_closed());
        assert_eq!(handle.session().unwrap().user_id, None);
        assert_eq!(f.learner.events(), vec![Ev::Connect(sid)]);
    })
    .await;
}

// ----- session ids: 128 random bits -----

/// The smallest `t` such that P(|X - n/2| >= t) <= `alpha` for X ~ Binomial(n, 1/2) (`n` even),
/// summed from the distribution itself.
fn binomial_band(n: usize, alpha: f64) -> usize {
    let m = n / 2;
    // ln P(X = m) = ln C(n, m) - n ln 2, with C(n, m) = prod_{i=1..m} (n - m + i) / i.
    let mut ln_center = -(n as f64) * std::f64::consts::LN_2;
    for i in 1..=m {
        ln_center += ((n - m + i) as f64 / i as f64).ln();
    }
    // pmf[j] = P(X = m + j), from P(X = k + 1) = P(X = k) (n - k) / (k + 1).
    let mut pmf = Vec::with_capacity(n - m + 1);
    let mut p = ln_center.exp();
    for k in m..=n {
        pmf.push(p);
        p *= (n - k) as f64 / (k + 1) as f64;
    }
    // tail[j] = P(X >= m + j), summed from the smallest terms up.
    let mut tail = vec![0.0f64; pmf.len() + 1];
    for j in (0..pmf.len()).rev() {
        tail[j] = tail[j + 1] + pmf[j];
    }
    let total = 2.0 * tail[0] - pmf[0];
    assert!(
        (total - 1.0).abs() < 1e-9,
        "the distribution sums to {total}"
    );
    // By symmetry, P(|X - m| >= t) = 2 P(X >= m + t) for t >= 1.
    (1..pmf.len())
        .find(|&t| 2.0 * tail[t] <= alpha)
        .expect("alpha is reachable")
}

/// The bit positions whose count of ones over `ids` is at least `band` away from half, with
/// their counts.
fn biased_bits(ids: &[u128], band: usize) -> Vec<(u32, usize)> {
    let half = ids.len() / 2;
    (0..128u32)
        .map(|bit| (bit, ids.iter().filter(|&&v| v >> bit & 1 == 1).count()))
        .filter(|&(_, ones)| ones.abs_diff(half) >= band)
        .collect()
}

/// Session ids are 128 random bits as 32 lowercase hex digits (mqant's custom-agent page leaves a
/// placeholder). Over 20,000 ids, every one of the 128 bit positions must be set in a fraction of
/// the ids within a band around 1/2 computed from the binomial distribution so that a correct
/// generator fails with probability below 1e-9 (1e-9 / 128 per position, union bound): a position
/// fails when its count of ones is 485 or more away from 10,000 (a fraction outside 1/2 ± 2.4%, 6.9
/// standard deviations). A generator with one constant bit (0 or 20,000 ones at that position) or
/// a 64-bit generator zero-extended to 128 bits (0 ones in each of the top 64 positions; its ids
/// still print as 32 hex digits) is 10,000 away: the test runs the check on both to show it
/// fails them. All ids are distinct too.
#[test]
fn session_ids_are_128_random_bits_as_32_lowercase_hex_digits() {
    const N: usize = 20_000;
    let band = binomial_band(N, 1e-9 / 128.0);
    // 6.9 standard deviations (sqrt(N) / 2 = 70.7): 1/2 ± 2.4%.
    assert_eq!(band, 485);

    let mut ids = Vec::with_capacity(N);
    let mut seen = HashSet::with_capacity(N);
    for _ in 0..N {
        let id = random_session_id();
        assert_eq!(id.len(), 32, "{id:?}");
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "not lowercase hex: {id:?}"
        );
        let v = u128::from_str_radix(&id, 16).unwrap();
        assert_eq!(format!("{v:032x}"), id);
        assert!(seen.insert(v), "duplicate id {id}");
        ids.push(v);
    }
    let biased = biased_bits(&ids, band);
    assert!(
        biased.is_empty(),
        "bit positions (bit, ones of {N}) outside {} ± {band}: {biased:?}",
        N / 2
    );

    // The check catches the defects it is meant for.
    let one_constant_bit: Vec<u128> = ids.iter().map(|v| v | 1 << 77).collect();
    assert_eq!(biased_bits(&one_constant_bit, band), vec![(77, N)]);
    let zero_extended_64: Vec<u128> = ids.iter().map(|&v| v as u64 as u128).collect();
    let high: Vec<(u32, usize)> = (64..128).map(|bit| (bit, 0)).collect();
    assert_eq!(biased_bits(&zero_extended_64, band), high);
}
