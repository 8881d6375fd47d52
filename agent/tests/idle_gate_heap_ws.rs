//! The heap a gate holds per idle WebSocket connection (a `native+ws` listener), measured with a
//! counting allocator as `idle_gate_heap.rs` does for TCP (alone in its binary; clients are
//! blocking std sockets that upgrade by hand and allocate nothing while they hold their
//! connections). The target is 4 KiB; the gate holds about 2.4 KiB, so this catches the
//! WebSocket layer keeping a buffer (tungstenite's default read buffer alone is 128 KiB).
//! `cargo run --release -p gatekit-benches --bin ws_idle_heap` measures it beside
//! tokio-tungstenite.

use bytes::{Bytes, BytesMut};
use gatekit_agent::{
    AgentConfig, CloseReason, Gate, Learner, NativeAgent, Services, Session, WebSocket,
    WebSocketConfig,
};
use gatekit_codec::websocket::{apply_mask, FrameHeader, Opcode};
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

/// The bound per idle connection: the target for ws.
const BOUND: isize = 4 * 1024;

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

const UPGRADE: &[u8] = b"GET /gate HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

/// Reads one unmasked frame from the gate and decodes the native packet in it.
fn read_packet(s: &mut TcpStream, codec: &mut NativeCodec) -> Packet {
    let mut head = [0u8; 2];
    s.read_exact(&mut head).unwrap();
    assert_eq!(head[0], 0x82, "a final binary frame");
    assert!(head[1] < 126, "a short frame");
    let mut payload = vec![0u8; head[1] as usize];
    s.read_exact(&mut payload).unwrap();
    let mut buf = BytesMut::from(&payload[..]);
    let p = codec
        .decode(&mut buf)
        .unwrap()
        .expect("one whole packet per frame");
    assert!(buf.is_empty(), "one packet per frame");
    p
}

/// A masked binary frame holding `payload`.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mask = [3, 1, 4, 1];
    let mut out = BytesMut::new();
    FrameHeader {
        fin: true,
        opcode: Opcode::Binary,
        mask: Some(mask),
        payload_len: payload.len() as u64,
    }
    .encode_to(&mut out);
    let at = out.len();
    out.extend_from_slice(payload);
    apply_mask(mask, 0, &mut out[at..]);
    out.to_vec()
}

/// A client that upgraded, handshook and exchanged one PING/PONG.
fn client(addr: SocketAddr, handshake: &[u8], ping: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(UPGRADE).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "upgrade refused");
    let mut codec = NativeCodec::default();
    s.write_all(&frame(handshake)).unwrap();
    assert!(matches!(
        read_packet(&mut s, &mut codec),
        Packet::Welcome(_)
    ));
    s.write_all(&frame(ping)).unwrap();
    assert_eq!(read_packet(&mut s, &mut codec), Packet::Pong);
    s
}

#[test]
fn an_idle_websocket_connection_costs_the_gate_less_than_the_bound() {
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
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let ws = WebSocketConfig::for_frame_length(AgentConfig::default().max_frame_length);
    {
        let _runtime = rt.enter();
        drop(gate.serve_over(
            listener,
            Arc::new(WebSocket::new(ws)),
            Arc::new(NativeAgent),
        ));
    }
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
    eprintln!("gate heap per idle WebSocket connection: {per_conn} bytes");
    assert!(
        per_conn <= BOUND,
        "an idle WebSocket connection holds {per_conn} bytes of heap (bound {BOUND})"
    );

    drop(held);
    wait_until("disconnects", || {
        learner.disconnects.load(Ordering::SeqCst) == 2 * N
    });
    wait_until("connections to end", || gate.connection_count() == 0);
}
