//! Heap per idle WebSocket connection, side by side in one process: gatekit's gate on a
//! `native+ws` listener (and on `native+tcp`, for the layer's own cost) (its own frame codec, unframing in place) and the minimal
//! tokio-tungstenite echo server (default `WebSocketConfig`, and with its read buffer cut to
//! 4 KiB), each holding N idle upgraded connections. A counting allocator measures the live heap
//! before and after; clients are blocking std sockets that hold no heap while idle, so the
//! difference is the server's. docs/ARCHITECTURE.md ("Transports") explains the choice this
//! measures.
//!
//! `cargo run --release -p gatekit-benches --bin ws_idle_heap -- [N] [runs]`

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use gatekit_agent::transport::websocket::message_size_for;
use gatekit_agent::{AgentConfig, Gate, NativeAgent, WebSocket, WebSocketConfig};
use gatekit_codec::websocket::{apply_mask, FrameHeader, Opcode};
use gatekit_codec::{Handshake, NativeCodec, Packet, PROTOCOL_VERSION};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatekit_benches::counting_alloc::{live_bytes, Counting};

#[global_allocator]
static GLOBAL: Counting = Counting;

const UPGRADE: &[u8] = b"GET /gate HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

/// A masked binary frame.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mask = [7, 1, 9, 3];
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

/// Upgrades, sends `first` in one binary message, and reads until `reply_len` bytes of frames
/// came back (the reply, unmasked, in one frame).
fn client(addr: SocketAddr, first: &[u8], reply_len: usize) -> TcpStream {
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
    s.write_all(&frame(first)).unwrap();
    let mut reply = vec![0u8; reply_len];
    s.read_exact(&mut reply).unwrap();
    s
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Heap per connection while `n` clients made by `connect` are held idle.
fn measure(n: usize, mut connect: impl FnMut() -> TcpStream, settle: impl Fn(usize)) -> isize {
    // Warm up: runtime, timer wheel, I/O driver, maps.
    let warm: Vec<_> = (0..n).map(|_| connect()).collect();
    settle(n);
    drop(warm);
    settle(0);
    std::thread::sleep(Duration::from_millis(200));
    let before = live_bytes();
    let held: Vec<_> = (0..n).map(|_| connect()).collect();
    settle(n);
    std::thread::sleep(Duration::from_millis(200));
    let per = (live_bytes() - before) / n as isize;
    drop(held);
    settle(0);
    per
}

fn median(mut v: Vec<isize>) -> isize {
    v.sort_unstable();
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(500, |a| a.parse().expect("N"));
    let runs: usize = args.next().map_or(3, |a| a.parse().expect("runs"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // gatekit: the gate on a native+ws listener; each client handshakes and pings.
    let gate = Gate::builder().build();
    let config = WebSocketConfig::for_frame_length(AgentConfig::default().max_frame_length);
    assert_eq!(
        config.max_message_size,
        message_size_for(AgentConfig::default().max_frame_length)
    );
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let gate_addr = listener.local_addr().unwrap();
    {
        let _guard = rt.enter();
        drop(gate.serve_over(
            listener,
            Arc::new(WebSocket::new(config)),
            Arc::new(NativeAgent),
        ));
    }
    let codec = NativeCodec::default();
    let mut hello = BytesMut::new();
    codec
        .encode(
            &Packet::Handshake(Handshake {
                version: PROTOCOL_VERSION,
                heartbeat_secs: 0,
                token: Bytes::new(),
            }),
            &mut hello,
        )
        .unwrap();
    codec.encode(&Packet::Ping, &mut hello).unwrap();
    // WELCOME (about 49 bytes with a 32-character session id) and PONG come back in one or two
    // frames; read the WELCOME's frame at least.
    let welcome_frame = {
        let s = client(gate_addr, &hello, 2);
        drop(s);
        wait_until("the probe to end", || gate.connection_count() == 0);
        2
    };
    let gatekit = |n| {
        median(
            (0..runs)
                .map(|_| {
                    measure(
                        n,
                        || client(gate_addr, &hello, welcome_frame),
                        |k| wait_until("gate sessions", || gate.session_count() == k),
                    )
                })
                .collect(),
        )
    };

    // tokio-tungstenite: echo each message, with a config.
    let tungstenite = |read_buffer: Option<usize>| {
        let live = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let l = live.clone();
        let accept = rt.spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    return;
                };
                let l = l.clone();
                tokio::spawn(async move {
                    let mut config =
                        tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default();
                    if let Some(size) = read_buffer {
                        config = config.read_buffer_size(size).write_buffer_size(0);
                    }
                    let Ok(mut ws) =
                        tokio_tungstenite::accept_async_with_config(s, Some(config)).await
                    else {
                        return;
                    };
                    l.fetch_add(1, Ordering::SeqCst);
                    while let Some(Ok(m)) = ws.next().await {
                        if m.is_binary() && ws.send(m).await.is_err() {
                            break;
                        }
                    }
                    l.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        let per = median(
            (0..runs)
                .map(|_| {
                    measure(
                        n,
                        || client(addr, b"ping", 2 + 4),
                        |k| {
                            wait_until("tungstenite connections", || {
                                live.load(Ordering::SeqCst) == k
                            })
                        },
                    )
                })
                .collect(),
        );
        accept.abort();
        per
    };

    // The same gate over plain TCP, for the layer's own cost.
    let (tcp_addr, _accept) = rt.block_on(gate.listen("127.0.0.1:0")).unwrap();
    let tcp_client = || {
        let mut s = TcpStream::connect(tcp_addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&hello).unwrap();
        let mut reply = [0u8; 2];
        s.read_exact(&mut reply).unwrap();
        s
    };
    let plain = median(
        (0..runs)
            .map(|_| {
                measure(n, tcp_client, |k| {
                    wait_until("gate sessions", || gate.session_count() == k)
                })
            })
            .collect(),
    );
    let ours = gatekit(n);
    let default = tungstenite(None);
    let small = tungstenite(Some(4096));
    println!("heap per idle WebSocket connection, {n} connections, median of {runs} runs:");
    println!("  gatekit gate, native+tcp           {plain:>7} B");
    println!("  gatekit gate, native+ws            {ours:>7} B");
    println!("  tokio-tungstenite echo, default    {default:>7} B");
    println!("  tokio-tungstenite echo, 4 KiB read {small:>7} B");
}
