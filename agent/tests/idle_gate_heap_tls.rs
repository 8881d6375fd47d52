//! The heap a gate holds per idle TLS connection (a `native+tls` listener), measured with a
//! counting allocator as `idle_gate_heap.rs` does for TCP (alone in its binary). TLS clients
//! allocate, so they run in a child process: this test binary re-executed with
//! `GATEKIT_TLS_IDLE_CLIENTS` set, holding its connections until its stdin closes. The gate holds
//! about 5.6 KiB (1.7 KiB of it the TCP connection's own); tokio-rustls's stream held 9.6 KiB,
//! its 4 KiB read buffer for the connection's life, which is what this catches.
//! `cargo run --release -p gatekit-benches --bin tls_idle_heap` measures it beside the raw
//! tokio-rustls server.

use bytes::{Bytes, BytesMut};
use gatekit_agent::transport::tls::provider;
use gatekit_agent::{Gate, NativeAgent, Tls};
use gatekit_codec::{Handshake, NativeCodec, Packet, PROTOCOL_VERSION};
use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod counting_alloc;

use counting_alloc::live_bytes;

#[global_allocator]
static GLOBAL: counting_alloc::Counting = counting_alloc::Counting;

const N: usize = 200;
/// Heap per idle connection allowed: below tokio-rustls's 9.6 KiB, above the 5.6 KiB measured.
const BOUND: isize = 7 * 1024;
const CLIENTS: &str = "GATEKIT_TLS_IDLE_CLIENTS";
const CERT: &str = "GATEKIT_TLS_IDLE_CERT";

fn hello() -> Vec<u8> {
    let codec = NativeCodec::default();
    let mut hello = BytesMut::new();
    let hs = Packet::Handshake(Handshake {
        version: PROTOCOL_VERSION,
        heartbeat_secs: 0,
        token: Bytes::new(),
    });
    codec.encode(&hs, &mut hello).unwrap();
    codec.encode(&Packet::Ping, &mut hello).unwrap();
    hello.to_vec()
}

/// The child: `n` TLS clients to `addr`, each handshakes (TLS and native), pings and reads the
/// start of the reply; prints `ready` and holds them until stdin closes.
fn clients(addr: SocketAddr, n: usize) {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::env::var(CERT).unwrap();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = Arc::new(
        rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let hello = hello();
    let held: Vec<_> = (0..n)
        .map(|_| {
            let s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, s);
            tls.write_all(&hello).unwrap();
            tls.flush().unwrap();
            tls.read_exact(&mut [0u8; 2]).unwrap();
            tls
        })
        .collect();
    println!("ready");
    std::io::stdout().flush().unwrap();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(held);
}

/// The child and its output, read up to `ready` (kept open: the child's test harness still
/// writes to it).
type Clients = (Child, std::io::BufReader<std::process::ChildStdout>);

fn spawn_clients(addr: SocketAddr, cert: &str) -> Clients {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "an_idle_tls_connection_costs_the_gate_less_than_the_bound",
            "--nocapture",
        ])
        .env(CLIENTS, format!("{addr} {N}"))
        .env(CERT, cert)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while line.trim() != "ready" {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "the clients failed");
    }
    (child, out)
}

fn close((mut child, mut out): Clients) {
    drop(child.stdin.take());
    let _ = out.read_to_end(&mut Vec::new());
    assert!(child.wait().unwrap().success(), "the clients failed");
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn an_idle_tls_connection_costs_the_gate_less_than_the_bound() {
    if let Ok(spec) = std::env::var(CLIENTS) {
        let (addr, n) = spec.split_once(' ').unwrap();
        return clients(addr.parse().unwrap(), n.parse().unwrap());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_pem = cert.cert.pem();
    let config = Tls::from_pem(
        cert_pem.as_bytes(),
        cert.signing_key.serialize_pem().as_bytes(),
        &[],
    )
    .unwrap();
    let gate = Gate::builder().build();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    {
        let _runtime = rt.enter();
        drop(gate.serve_over(listener, Arc::new(Tls::new(config)), Arc::new(NativeAgent)));
    }

    // Warm up (runtime, timer wheel, I/O driver, thread buffers, map capacity), then measure.
    let warm = spawn_clients(addr, &cert_pem);
    wait_until("warm-up sessions", || gate.session_count() == N);
    close(warm);
    wait_until("warm-up disconnects", || gate.connection_count() == 0);
    std::thread::sleep(Duration::from_millis(100));
    let before = live_bytes();
    let held = spawn_clients(addr, &cert_pem);
    wait_until("sessions", || gate.session_count() == N);
    std::thread::sleep(Duration::from_millis(100));
    let per_conn = (live_bytes() - before) / N as isize;
    eprintln!("gate heap per idle TLS connection: {per_conn} bytes");
    close(held);
    wait_until("connections to end", || gate.connection_count() == 0);
    assert!(
        per_conn <= BOUND,
        "an idle TLS connection holds {per_conn} bytes of heap (bound {BOUND})"
    );
}
