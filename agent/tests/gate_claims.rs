//! Claims of docs/ARCHITECTURE.md §5 ("mqant's defects and what prevents them") shown at the gate
//! level over loopback TCP (127.0.0.1 only): a real `Gate` running `NativeAgent` through the
//! driver, not the state machine alone. The in-memory, paused-clock half is in
//! `gate_claims_paused.rs`. Every test is bounded by `tokio::time::timeout`.

mod common;

use bytes::{Bytes, BytesMut};
use common::{req, Client, Ev, Hold, RecLearner};
use gatekit_agent::*;
use gatekit_codec::*;
use std::collections::{BTreeMap, HashMap};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The wall-clock bound of every test.
const LIMIT: Duration = Duration::from_secs(10);

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

/// A gate on 127.0.0.1 whose listener (and so every accepted socket) has `recv_buffer` bytes of
/// receive buffer if given.
async fn tcp_gate(
    config: AgentConfig,
    backends: Backends,
    learner: Arc<dyn Learner>,
    recv_buffer: Option<u32>,
) -> (Gate, SocketAddr) {
    let gate = Gate::builder()
        .config(config)
        .services(Services {
            backends,
            learner,
            ..Default::default()
        })
        .build();
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1024).unwrap();
    let addr = listener.local_addr().unwrap();
    assert!(addr.ip().is_loopback());
    let _accept = gate.serve(listener);
    (gate, addr)
}

/// Makes dropping `stream` reset the connection (RST) instead of closing it (FIN).
fn reset_on_drop(stream: &TcpStream) {
    // SO_LINGER 0: close() aborts the connection. (Deprecated only for non-zero durations, which
    // block on drop; zero never blocks.)
    #[allow(deprecated)]
    stream.set_linger(Some(Duration::ZERO)).unwrap();
}

// ----- `reset`: a transport failure is told apart from a clean end -----

/// The client's connection is reset (RST) while the gate is waiting to read from it: the read fails
/// with ECONNRESET and the learner gets exactly one Disconnect, `reset` (not `eof`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_while_the_gate_reads_gives_one_disconnect_reset() {
    bounded(async {
        let learner = Arc::new(RecLearner::default());
        let hold = Hold::default();
        let (gate, addr) = tcp_gate(
            AgentConfig::default(),
            hold.backends(),
            learner.clone(),
            None,
        )
        .await;
        let mut c = Client::connect(addr).await;
        let sid = c.handshake().await;
        // A round trip: the gate has nothing left to write and waits to read.
        assert_eq!(c.request(1, "echo/x", "hi").await, ok(1, "hi"));
        let handle = gate.agent(&sid).unwrap();
        reset_on_drop(&c.io);
        drop(c);

        until(|| learner.disconnects() == 1).await;
        assert_eq!(
            learner.events(),
            vec![
                Ev::Connect(sid.clone()),
                Ev::Disconnect(sid.clone(), CloseReason::Reset)
            ]
        );
        until(|| gate.connection_count() == 0).await;
        assert!(handle.is_closed());
        assert_eq!(gate.session_count(), 0);
        // And no second Disconnect later.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(learner.disconnects(), 1);
        // The gate goes on.
        let mut d = Client::connect(addr).await;
        d.handshake().await;
        assert_eq!(d.request(2, "echo/y", "next").await, ok(2, "next"));
    })
    .await;
}

/// The client's connection is reset while the gate is not reading (its one call is in flight) and
/// then has output to write (a push): the write fails (ECONNRESET / EPIPE) and the learner gets
/// exactly one Disconnect, `reset`, before the back end ever answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_while_the_gate_writes_gives_one_disconnect_reset() {
    bounded(async {
        let learner = Arc::new(RecLearner::default());
        let hold = Hold::default();
        let (gate, addr) = tcp_gate(
            AgentConfig::default(),
            hold.backends(),
            learner.clone(),
            None,
        )
        .await;
        let mut c = Client::connect(addr).await;
        let sid = c.handshake().await;
        let handle = gate.agent(&sid).unwrap();
        // With `max_in_flight` 1 and this call held, the gate does not read from the socket, so it
        // cannot learn of the reset by reading.
        c.send(req(1, "hold/x", "held")).await;
        until(|| hold.calls() == 1).await;
        reset_on_drop(&c.io);
        drop(c);
        // Give the RST time to arrive, then make the gate write. (Should a push still be written
        // before the RST lands, the closed peer answers it with an RST, and the next push fails.)
        tokio::time::sleep(Duration::from_millis(20)).await;
        let topic = Topic::from_static("t");
        let mut pushes = 0;
        while learner.disconnects() == 0 {
            match gate.push(&sid, topic.clone(), "after the reset") {
                Ok(()) => pushes += 1,
                Err(HandleError::NoSuchSession | HandleError::Closed) => {}
                Err(e) => panic!("push refused: {e}"),
            }
            assert!(
                pushes < 1000,
                "1000 pushes to a reset connection, no Disconnect"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            learner.events(),
            vec![
                Ev::Connect(sid.clone()),
                Ev::Disconnect(sid.clone(), CloseReason::Reset)
            ]
        );
        assert_eq!(hold.calls(), 1);
        assert!(handle.is_closed());
        assert_eq!(handle.sent(), 1, "only the WELCOME reached the client");
        until(|| gate.connection_count() == 0).await;
        // The abandoned call ends without a second Disconnect.
        hold.release_all();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(learner.disconnects(), 1);
        assert_eq!(gate.session_count(), 0);
    })
    .await;
}

// ----- back-pressure: a busy connection blocks its client, and drops nothing -----

fn body_for(id: u32) -> Bytes {
    let mut b = format!("req-{id}-").into_bytes();
    b.resize(1024, b'.');
    Bytes::from(b)
}

/// mqant drops the messages of a connection whose 20 handlers are busy. Here, with `max_in_flight`
/// 1 and that one call held, the gate stops reading: the kernel buffers fill and the client's
/// writes stop making progress after a bounded number of bytes, far fewer than it has to send.
/// Nothing is decoded meanwhile (the gate's `received` stays at 2) and the gate's buffers stay
/// within their bound. Once the back end answers, every request is answered, in order, with its own
/// body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_blocks_the_client_writes_and_drops_nothing() {
    const N: u32 = 2000; // about 2 MiB of requests
    const BUF: u32 = 8 * 1024;
    bounded(async {
        let learner = Arc::new(RecLearner::default());
        let hold = Hold::default();
        let config = AgentConfig {
            max_in_flight: 1,
            max_frame_length: 4096,
            ..AgentConfig::default()
        };
        let (gate, addr) =
            tcp_gate(config.clone(), hold.backends(), learner.clone(), Some(BUF)).await;
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_send_buffer_size(BUF).unwrap();
        // What the kernel made of the sizes asked for (Linux doubles them).
        let client_send_buffer = socket.send_buffer_size().unwrap() as usize;
        let gate_recv_buffer = {
            let probe = TcpSocket::new_v4().unwrap();
            probe.set_recv_buffer_size(BUF).unwrap();
            probe.recv_buffer_size().unwrap() as usize
        };
        let mut c = Client::new(socket.connect(addr).await.unwrap());
        c.codec = NativeCodec::new(config.max_frame_length, Oversize::Fail).unwrap();
        let sid = c.handshake().await;
        let handle = gate.agent(&sid).unwrap();
        let (rd, wr) = c.io.into_split();
        let mut rc = Client::new(rd);
        rc.codec = c.codec.clone();
        rc.buf = c.buf;

        let mut wire = BytesMut::new();
        for id in 1..=N {
            rc.codec
                .encode(&req(id, "hold/do", body_for(id)), &mut wire)
                .unwrap();
        }
        let wire = wire.freeze();

        // Write without blocking until the socket stays unwritable for 300 ms.
        let mut written = 0usize;
        loop {
            match wr.try_write(&wire[written..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if tokio::time::timeout(Duration::from_millis(300), wr.writable())
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
                Err(e) => panic!("write failed: {e}"),
            }
            assert!(
                written < wire.len(),
                "the client wrote all {} bytes: the gate never pushed back",
                wire.len()
            );
        }
        // Still blocked a while later: no progress at all.
        tokio::time::sleep(Duration::from_millis(200)).await;
        match wr.try_write(&wire[written..]) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            other => panic!("the blocked client could write again: {other:?}"),
        }
        // Bounded: the two kernel buffers (which count their bookkeeping too, so hold fewer bytes
        // of data than their size), and what the gate took in one read before its call started
        // (at most a read, and never more than a frame and a read).
        let bound =
            client_send_buffer + gate_recv_buffer + driver::READ_SIZE + config.max_frame_length + 4;
        assert!(
            written <= bound,
            "the client wrote {written} bytes before blocking, more than its send buffer \
             ({client_send_buffer}), the gate's receive buffer ({gate_recv_buffer}), a read and a \
             frame ({bound} in all)"
        );
        // One call, one request decoded, nothing dropped or answered, the connection up.
        assert_eq!(hold.calls(), 1);
        assert_eq!(handle.received(), 2, "HANDSHAKE and the first REQUEST only");
        assert_eq!(handle.sent(), 1, "WELCOME only");
        assert!(!handle.is_closed());
        let input_bound = config.max_frame_length + 4 + driver::READ_SIZE;
        assert!(
            handle.max_buffered() <= input_bound,
            "the blocked gate buffered {} bytes, more than a frame and a read ({input_bound})",
            handle.max_buffered()
        );

        // Released: every request is answered in order with its body, the rest of the bytes go.
        let reader = tokio::spawn(async move {
            for id in 1..=N {
                assert_eq!(rc.recv_response().await, ok(id, body_for(id)));
            }
            rc
        });
        hold.release_all();
        let mut wr = wr;
        wr.write_all(&wire[written..]).await.unwrap();
        let mut rc = reader.await.unwrap();
        assert_eq!(hold.calls(), N as usize);
        assert_eq!(handle.received(), 1 + N as u64);
        until(|| handle.sent() == 1 + N as u64).await;
        assert!(
            handle.max_buffered() <= config.buffer_bound(driver::READ_SIZE),
            "buffered {} bytes, bound {}",
            handle.max_buffered(),
            config.buffer_bound(driver::READ_SIZE)
        );
        wr.shutdown().await.unwrap();
        assert_eq!(rc.recv().await, None);
        until(|| learner.disconnects() == 1).await;
        assert_eq!(
            learner.events(),
            vec![
                Ev::Connect(sid.clone()),
                Ev::Disconnect(sid, CloseReason::Eof)
            ]
        );
    })
    .await;
}

// ----- Connect before Disconnect, even for a client that leaves at once -----

/// Records learner events with the peer address (the only thing a client that never reads its
/// WELCOME knows about its session), taking `connect_delay` inside `connect` to widen any window
/// in which a Disconnect could overtake its Connect.
struct PeerLearner {
    connect_delay: Duration,
    events: Mutex<Vec<(String, Ev)>>,
}

impl Learner for PeerLearner {
    fn connect(&self, s: &Session) {
        std::thread::sleep(self.connect_delay);
        let ev = Ev::Connect(s.session_id.clone());
        self.events.lock().unwrap().push((s.peer.clone(), ev));
    }
    fn disconnect(&self, s: &Session, reason: CloseReason) {
        let ev = Ev::Disconnect(s.session_id.clone(), reason);
        self.events.lock().unwrap().push((s.peer.clone(), ev));
    }
}

/// mqant runs `Connect` in a new goroutine and `DisConnect` synchronously, so a client leaving
/// right after its handshake can have its Disconnect seen first. Here 150 clients leave at once:
/// HANDSHAKE and CLOSE in one write (`client_closed`), HANDSHAKE then a half-close without reading
/// the WELCOME (`eof`), or HANDSHAKE then a reset (`reset`), with a learner whose `connect` is slow.
/// Every session gets Connect, then exactly one Disconnect with the reason of what its client did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_precedes_disconnect_even_when_the_client_leaves_at_once() {
    const CLIENTS: usize = 150;
    bounded(async {
        let learner = Arc::new(PeerLearner {
            connect_delay: Duration::from_millis(1),
            events: Mutex::default(),
        });
        let (gate, addr) = tcp_gate(
            AgentConfig::default(),
            Backends::new(),
            learner.clone(),
            None,
        )
        .await;
        let codec = NativeCodec::default();
        let encode = |packets: &[Packet]| {
            let mut out = BytesMut::new();
            for p in packets {
                codec.encode(p, &mut out).unwrap();
            }
            out.freeze()
        };
        let handshake = Packet::Handshake(Handshake {
            version: PROTOCOL_VERSION,
            heartbeat_secs: 0,
            token: Bytes::new(),
        });
        let bye = Packet::Close(Close {
            code: CloseCode::Normal,
            reason: Text::from("bye"),
        });
        let hs_and_close = encode(&[handshake.clone(), bye]);
        let hs_only = encode(&[handshake]);
        let mut tasks = Vec::new();
        for i in 0..CLIENTS {
            let (hs_and_close, hs_only) = (hs_and_close.clone(), hs_only.clone());
            tasks.push(tokio::spawn(async move {
                let mut s = TcpStream::connect(addr).await.unwrap();
                let peer = s.local_addr().unwrap().to_string();
                let reason = match i % 3 {
                    0 => {
                        s.write_all(&hs_and_close).await.unwrap();
                        CloseReason::ClientClosed
                    }
                    1 => {
                        s.write_all(&hs_only).await.unwrap();
                        s.shutdown().await.unwrap();
                        CloseReason::Eof
                    }
                    _ => {
                        s.write_all(&hs_only).await.unwrap();
                        reset_on_drop(&s);
                        drop(s);
                        return (peer, CloseReason::Reset);
                    }
                };
                // The gate ends the stream (after a WELCOME, or straight away for the CLOSE).
                let mut rest = Vec::new();
                let _ = s.read_to_end(&mut rest).await;
                (peer, reason)
            }));
        }
        let mut expected = HashMap::new();
        for t in tasks {
            let (peer, reason) = t.await.unwrap();
            expected.insert(peer, reason);
        }
        until(|| gate.connection_count() == 0).await;
        let events = learner.events.lock().unwrap().clone();
        let mut by_peer: BTreeMap<String, Vec<Ev>> = BTreeMap::new();
        for (peer, ev) in events {
            by_peer.entry(peer).or_default().push(ev);
        }
        assert_eq!(by_peer.len(), CLIENTS, "sessions: {by_peer:?}");
        for (peer, evs) in &by_peer {
            let Some(Ev::Connect(sid)) = evs.first() else {
                panic!("{peer}: first event is not Connect: {evs:?}")
            };
            let reason = expected[peer];
            assert_eq!(
                evs,
                &vec![
                    Ev::Connect(sid.clone()),
                    Ev::Disconnect(sid.clone(), reason)
                ],
                "{peer}"
            );
        }
        assert_eq!(gate.session_count(), 0);
    })
    .await;
}

// ----- session ids of real connections -----

/// The WELCOMEs of 100 connections carry distinct 32-digit lowercase hex session ids, the ones the
/// learner and the gate know them by. Every one of the 128 bits is 1 in some id and 0 in another
/// (a constant bit, or a zero-extended 64-bit id, would fail; a correct generator fails with
/// probability 128 × 2^-99).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn welcome_session_ids_are_distinct_32_digit_hex() {
    const CLIENTS: usize = 100;
    bounded(async {
        let learner = Arc::new(RecLearner::default());
        let (gate, addr) = tcp_gate(
            AgentConfig::default(),
            Backends::new(),
            learner.clone(),
            None,
        )
        .await;
        let mut clients = Vec::new();
        let mut sids = Vec::new();
        let (mut any, mut all) = (0u128, u128::MAX);
        for _ in 0..CLIENTS {
            let mut c = Client::connect(addr).await;
            let sid = c.handshake().await;
            assert_eq!(sid.len(), 32, "{sid:?}");
            assert!(
                sid.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "not lowercase hex: {sid:?}"
            );
            let v = u128::from_str_radix(&sid, 16).unwrap();
            (any, all) = (any | v, all & v);
            assert_eq!(gate.agent(&sid).unwrap().session().unwrap().session_id, sid);
            sids.push(sid);
            clients.push(c);
        }
        assert_eq!(any, u128::MAX, "bits never set: {:032x}", !any);
        assert_eq!(all, 0, "bits always set: {all:032x}");
        let distinct: std::collections::HashSet<_> = sids.iter().collect();
        assert_eq!(distinct.len(), CLIENTS);
        let connected: Vec<Ev> = sids.iter().cloned().map(Ev::Connect).collect();
        assert_eq!(learner.events(), connected);
        assert_eq!(gate.session_count(), CLIENTS);
    })
    .await;
}
