//! Heap per idle TLS connection, side by side in one process: gatekit's gate on a `native+tls`
//! listener, the same gate on `native+tcp` (for the layer's own cost), and the raw tokio-rustls
//! server (accept, handshake, then hold the stream reading, echoing what it reads). A counting
//! allocator measures the live heap before and after N idle connections. TLS clients allocate, so
//! they run in a child process (this binary re-executed with `--clients ADDR N tls|tcp`), which
//! holds its connections until its stdin closes; the heap counted is the server's alone. Each
//! client completes the TLS handshake (TLS 1.3, ECDSA P-256 certificate from rcgen), sends the
//! native HANDSHAKE and a PING, and reads the start of the reply.
//!
//! `cargo run --release -p gatekit-benches --bin tls_idle_heap -- [N] [runs]`

use bytes::{Bytes, BytesMut};
use gatekit_agent::transport::tls::provider;
use gatekit_agent::{Gate, NativeAgent, Tls};
use gatekit_codec::{Handshake, NativeCodec, Packet, PROTOCOL_VERSION};
use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatekit_benches::counting_alloc::{live_bytes, Counting};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The native HANDSHAKE and a PING, as one client sends them.
fn hello() -> Vec<u8> {
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
    hello.to_vec()
}

/// The child: `n` clients to `addr` (TLS with the certificate in `TLS_IDLE_CERT`, or plain TCP),
/// each sends [`hello`] and reads 2 bytes back; prints `ready`, holds them until stdin closes.
fn clients(addr: SocketAddr, n: usize, tls: bool) {
    let hello = hello();
    let client = tls.then(|| {
        let pem = std::env::var("TLS_IDLE_CERT").unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    });
    let mut held_tls = Vec::new();
    let mut held_tcp = Vec::new();
    for _ in 0..n {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut reply = [0u8; 2];
        match &client {
            Some(config) => {
                let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                let conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, s);
                tls.write_all(&hello).unwrap();
                tls.flush().unwrap();
                tls.read_exact(&mut reply).unwrap();
                held_tls.push(tls);
            }
            None => {
                s.write_all(&hello).unwrap();
                s.read_exact(&mut reply).unwrap();
                held_tcp.push(s);
            }
        }
    }
    println!("ready");
    std::io::stdout().flush().unwrap();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

/// `n` clients to `addr` in a child process, all connected and answered.
fn spawn_clients(addr: SocketAddr, n: usize, tls: bool, cert: &str) -> Child {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--clients",
            &addr.to_string(),
            &n.to_string(),
            if tls { "tls" } else { "tcp" },
        ])
        .env("TLS_IDLE_CERT", cert)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready", "the clients failed");
    child
}

fn close(mut child: Child) {
    drop(child.stdin.take());
    child.wait().unwrap();
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Heap per connection while `n` clients are held idle against `addr`; `settle(k)` waits until
/// the server holds `k` connections.
fn measure(n: usize, addr: SocketAddr, tls: bool, cert: &str, settle: impl Fn(usize)) -> isize {
    // Warm up: runtime, timer wheel, I/O driver, maps.
    let warm = spawn_clients(addr, n, tls, cert);
    settle(n);
    close(warm);
    settle(0);
    std::thread::sleep(Duration::from_millis(200));
    let before = live_bytes();
    let held = spawn_clients(addr, n, tls, cert);
    settle(n);
    std::thread::sleep(Duration::from_millis(200));
    let per = (live_bytes() - before) / n as isize;
    close(held);
    settle(0);
    per
}

/// The heap a rustls `ServerConnection` (the buffered one tokio-rustls keeps) owns after the
/// handshake and one exchange, counted as what its drop frees.
fn server_connection_heap(config: Arc<rustls::ServerConfig>, cert_pem: &str) -> isize {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(cert_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let client_config = Arc::new(
        rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut client = rustls::ClientConnection::new(client_config, name).unwrap();
    let mut server = Box::new(rustls::ServerConnection::new(config).unwrap());
    let pump = |client: &mut rustls::ClientConnection, server: &mut rustls::ServerConnection| {
        for _ in 0..10 {
            let mut wire = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut wire).unwrap();
            }
            server.read_tls(&mut &wire[..]).unwrap();
            server.process_new_packets().unwrap();
            let mut wire = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut wire).unwrap();
            }
            client.read_tls(&mut &wire[..]).unwrap();
            client.process_new_packets().unwrap();
        }
    };
    pump(&mut client, &mut server);
    client.writer().write_all(&hello()).unwrap();
    pump(&mut client, &mut server);
    let mut got = vec![0u8; hello().len()];
    server.reader().read_exact(&mut got).unwrap();
    server.writer().write_all(b"welcome").unwrap();
    pump(&mut client, &mut server);
    let before = live_bytes();
    drop(server);
    before - live_bytes()
}

fn median(mut v: Vec<isize>) -> isize {
    v.sort_unstable();
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--clients") {
        return clients(
            args[2].parse().unwrap(),
            args[3].parse().unwrap(),
            args[4] == "tls",
        );
    }
    let n: usize = args.get(1).map_or(500, |a| a.parse().expect("N"));
    let runs: usize = args.get(2).map_or(3, |a| a.parse().expect("runs"));
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

    // The gate on native+tls and on native+tcp.
    let gate = Gate::builder().max_connections(100_000).build();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let tls_addr = listener.local_addr().unwrap();
    {
        let _guard = rt.enter();
        drop(gate.serve_over(
            listener,
            Arc::new(Tls::new(config.clone())),
            Arc::new(NativeAgent),
        ));
    }
    let (tcp_addr, _accept) = rt.block_on(gate.listen("127.0.0.1:0")).unwrap();
    let sessions = |k| wait_until("gate sessions", || gate.session_count() == k);
    let gate_runs = |addr, tls| {
        median(
            (0..runs)
                .map(|_| measure(n, addr, tls, &cert_pem, sessions))
                .collect(),
        )
    };
    let plain = gate_runs(tcp_addr, false);
    let over_tls = gate_runs(tls_addr, true);

    // The raw tokio-rustls server: handshake, then read (and echo) until the end.
    let live = Arc::new(AtomicUsize::new(0));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let raw_addr = listener.local_addr().unwrap();
    let config_for_sizes = config.clone();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let l = live.clone();
    let accept = rt.spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            let (l, acceptor) = (l.clone(), acceptor.clone());
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let Ok(mut tls) = acceptor.accept(s).await else {
                    return;
                };
                l.fetch_add(1, Ordering::SeqCst);
                let mut buf = [0u8; 64];
                while let Ok(k @ 1..) = tls.read(&mut buf).await {
                    if tls.write_all(&buf[..k]).await.is_err() || tls.flush().await.is_err() {
                        break;
                    }
                }
                l.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    let raw = median(
        (0..runs)
            .map(|_| {
                measure(n, raw_addr, true, &cert_pem, |k| {
                    wait_until("raw connections", || live.load(Ordering::SeqCst) == k)
                })
            })
            .collect(),
    );
    accept.abort();

    println!("heap per idle connection, {n} connections, median of {runs} runs:");
    println!("  gatekit gate, native+tcp                 {plain:>7} B");
    println!("  gatekit gate, native+tls                 {over_tls:>7} B");
    println!(
        "  gatekit tls layer (tls - tcp)            {:>7} B",
        over_tls - plain
    );
    println!("  raw tokio-rustls server (idle, reading)  {raw:>7} B");
    println!(
        "  rustls::ServerConnection after handshake (own heap, incl. its Box) {:>5} B",
        server_connection_heap(config_for_sizes, &cert_pem)
    );
    println!("sizes of:");
    println!(
        "  rustls::ServerConnection                 {:>7} B",
        std::mem::size_of::<rustls::ServerConnection>()
    );
    println!(
        "  rustls::server::UnbufferedServerConnection {:>5} B",
        std::mem::size_of::<rustls::server::UnbufferedServerConnection>()
    );
    println!(
        "  tokio_rustls::server::TlsStream<TcpStream> {:>5} B",
        std::mem::size_of::<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>()
    );
}
