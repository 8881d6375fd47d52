//! TLS handshakes per second with 1,000 connections handshaking at once, side by side: the gate
//! on a `native+tls` listener (`Gate::serve_over` with `Tls`) and the raw tokio-rustls server
//! (an accept loop that completes the handshake and drops the stream), each in its own child
//! process on a current-thread runtime, loaded by the same client in this process. Runs
//! alternate between the two; medians and the ratio are printed. Each client connects, completes
//! the TLS handshake (TLS 1.3, ECDSA P-256 certificate from rcgen), reads until the server
//! closes, and starts over.
//!
//! `cargo run --release -p gatekit-benches --bin tls_handshakes -- [--connections 1000]
//! [--seconds 5] [--runs 3]`

use gatekit_agent::transport::tls::provider;
use gatekit_agent::{AgentConfig, Gate, NativeAgent, Tls};
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().ok().expect("a number"))
        .unwrap_or(default)
}

/// The child: serves TLS on 127.0.0.1:0 with the certificate on stdin, prints its address.
fn serve(kind: &str) {
    let mut pem = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut pem).unwrap();
    let (cert, key) = pem.split_once("-----SPLIT-----").unwrap();
    let config = Tls::from_pem(cert.as_bytes(), key.as_bytes(), &[]).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{}", listener.local_addr().unwrap());
        std::io::stdout().flush().unwrap();
        match kind {
            "gate" => {
                let gate = Gate::builder()
                    .config(AgentConfig::default())
                    .max_connections(100_000)
                    .build();
                drop(gate.serve_over(listener, Arc::new(Tls::new(config)), Arc::new(NativeAgent)));
                std::future::pending::<()>().await;
            }
            _ => {
                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                loop {
                    let Ok((s, _)) = listener.accept().await else {
                        continue;
                    };
                    let _ = s.set_nodelay(true);
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        let _ =
                            tokio::time::timeout(Duration::from_secs(10), acceptor.accept(s)).await;
                    });
                }
            }
        }
    });
}

/// Handshakes completed per second against `addr` by `connections` clients for `seconds`.
async fn load(
    addr: SocketAddr,
    roots: Arc<rustls::ClientConfig>,
    connections: usize,
    seconds: f64,
) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let connector = tokio_rustls::TlsConnector::from(roots);
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (done, connector) = (done.clone(), connector.clone());
            tokio::spawn(async move {
                let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                while Instant::now() < end {
                    let Ok(tcp) = TcpStream::connect(addr).await else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    let _ = tcp.set_nodelay(true);
                    let Ok(Ok(mut tls)) = tokio::time::timeout(
                        Duration::from_secs(10),
                        connector.connect(name.clone(), tcp),
                    )
                    .await
                    else {
                        continue;
                    };
                    if Instant::now() <= end {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    // Close from our side with a reset: the server sees the end before any protocol
                    // handshake, and no port is left in TIME_WAIT (thousands a second would use up
                    // the 28,000 ephemeral ports of one source address). The socket is
                    // non-blocking, so SO_LINGER 0 cannot block the thread.
                    #[allow(deprecated)]
                    let _ = tls.get_mut().0.set_linger(Some(Duration::ZERO));
                    drop(tls);
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    done.load(Ordering::Relaxed) as f64 / seconds
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--serve") {
        return serve(&args[2]);
    }
    let connections: usize = arg("--connections", 1000);
    let seconds: f64 = arg("--seconds", 5.0);
    let runs: usize = arg("--runs", 3);
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let pem = format!(
        "{}-----SPLIT-----{}",
        cert.cert.pem(),
        cert.signing_key.serialize_pem()
    );
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let client = Arc::new(
        rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for run in 0..runs {
        for (i, kind) in ["gate", "raw"].iter().enumerate() {
            let mut child = Command::new(&exe)
                .args(["--serve", kind])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(pem.as_bytes())
                .unwrap();
            let mut line = String::new();
            std::io::BufRead::read_line(
                &mut std::io::BufReader::new(child.stdout.take().unwrap()),
                &mut line,
            )
            .unwrap();
            let addr: SocketAddr = line.trim().parse().unwrap();
            let rate = rt.block_on(load(addr, client.clone(), connections, seconds));
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("run {} {kind:>4}: {rate:.0} handshakes/s", run + 1);
            rates[i].push(rate);
        }
    }
    let (gate, raw) = (median(rates[0].clone()), median(rates[1].clone()));
    println!(
        "TLS handshakes/s, {connections} connections, {seconds} s, median of {runs} runs: gate {gate:.0}, raw tokio-rustls {raw:.0}, ratio {:.2}",
        gate / raw
    );
}
