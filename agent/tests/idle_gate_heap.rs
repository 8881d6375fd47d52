//! The heap a gate holds per idle connection, measured with a counting allocator (this test is
//! alone in its binary so nothing else allocates meanwhile). Clients are blocking std sockets on
//! the test thread, which allocate nothing while they hold their connections, so the difference
//! is the gate's. `cargo run --release -p gatekit-agent --example idle_heap` measures the same on
//! thousands of connections with the clients in another process.

use bytes::{Bytes, BytesMut};
use gatekit_agent::{CloseReason, Gate, Learner, Services, Session};
use gatekit_codec::{Handshake, NativeCodec, Packet, PROTOCOL_VERSION};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod counting_alloc;

use counting_alloc::live_bytes;

#[global_allocator]
static GLOBAL: counting_alloc::Counting = counting_alloc::Counting;

/// Connections measured.
const N: usize = 200;

/// Bound checked per idle connection. The goal is at most 4 KiB; the gate holds about 1.7 KiB
/// (the connection's future with its state machine, the socket's registration, the tokio task,
/// the session, the handle), so this catches a buffer kept again (a read buffer alone is 4 KiB).
const BOUND: isize = 3 * 1024;

#[derive(Default)]
struct CountLearner {
    disconnects: AtomicUsize,
}

impl Learner for CountLearner {
    fn disconnect(&self, _: &Session, _: CloseReason) {
        self.disconnects.fetch_add(1, Ordering::SeqCst);
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn read_packet(s: &mut TcpStream, codec: &mut NativeCodec) -> Packet {
    let mut buf = BytesMut::new();
    loop {
        if let Some(p) = codec.decode(&mut buf).unwrap() {
            assert!(buf.is_empty(), "one packet expected");
            return p;
        }
        let mut chunk = [0u8; 256];
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "the gate closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A client that handshook and exchanged one PING/PONG.
fn client(addr: SocketAddr, handshake: &[u8], ping: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut codec = NativeCodec::default();
    s.write_all(handshake).unwrap();
    assert!(matches!(
        read_packet(&mut s, &mut codec),
        Packet::Welcome(_)
    ));
    s.write_all(ping).unwrap();
    assert_eq!(read_packet(&mut s, &mut codec), Packet::Pong);
    s
}

#[test]
fn an_idle_connection_costs_the_gate_less_than_the_bound() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let learner = Arc::new(CountLearner::default());
    let gate = Gate::builder()
        .services(Services {
            learner: learner.clone(),
            ..Services::default()
        })
        .build();
    let (addr, _accept) = rt.block_on(gate.listen("127.0.0.1:0")).unwrap();
    let codec = NativeCodec::default();
    let mut handshake = BytesMut::new();
    let hs = Packet::Handshake(Handshake {
        version: PROTOCOL_VERSION,
        heartbeat_secs: 0,
        token: Bytes::new(),
    });
    codec.encode(&hs, &mut handshake).unwrap();
    let mut ping = BytesMut::new();
    codec.encode(&Packet::Ping, &mut ping).unwrap();

    // Warm up (runtime, timer wheel, I/O driver, thread buffers, map capacity), then measure.
    let warm: Vec<_> = (0..N).map(|_| client(addr, &handshake, &ping)).collect();
    wait_until("warm-up sessions", || gate.session_count() == N);
    drop(warm);
    wait_until("warm-up disconnects", || gate.connection_count() == 0);
    std::thread::sleep(Duration::from_millis(100));
    let mut held = Vec::with_capacity(N);
    let before = live_bytes();
    for _ in 0..N {
        held.push(client(addr, &handshake, &ping));
    }
    wait_until("sessions", || gate.session_count() == N);
    std::thread::sleep(Duration::from_millis(100));
    let per_conn = (live_bytes() - before) / N as isize;
    eprintln!("gate heap per idle connection: {per_conn} bytes");
    assert!(
        per_conn <= BOUND,
        "an idle connection holds {per_conn} bytes of heap (bound {BOUND})"
    );

    drop(held);
    wait_until("disconnects", || {
        learner.disconnects.load(Ordering::SeqCst) == 2 * N
    });
    wait_until("connections to end", || gate.connection_count() == 0);
}
