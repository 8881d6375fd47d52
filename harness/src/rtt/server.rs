//! The servers of a round-trip run: the raw tokio echo server and the gatekit gate over one wire
//! protocol, each on a one-thread runtime of its own, in this process or in a child process
//! (`gatekit rtt-server`), over one transport.
//!
//! The baseline on each transport is the minimal echo server a Rust developer would write on the
//! libraries most Rust servers use:
//!
//! | transport | baseline |
//! |-----------|----------|
//! | tcp | tokio + tokio-util `LengthDelimitedCodec` |
//! | tls | the same over tokio-rustls (the gate's own rustls `ServerConfig`, ring) |
//! | ws  | tungstenite (the upgrade by `tokio_tungstenite::accept_async`), each binary message echoed |
//! | wss | the ws baseline over tokio-rustls |
//!
//! The WebSocket baseline echoes messages, not frames: the client's byte stream (LDC frames) comes
//! back as it went, so the client reads it unchanged. tungstenite is driven the way
//! tokio-tungstenite drives it (`AllowStd`: `Pending` is `WouldBlock`, with the task's waker),
//! directly, as the harness has no `futures` crate for tokio-tungstenite's `Stream`/`Sink`.

use super::{RttOptions, Server};
use crate::fake_backend::EchoBackend;
use crate::listen::{Listener, TransportKind, WireProtocol};
use crate::listener_transport::{TlsSource, TransportOptions};
use crate::scenario::{BackendProfile, Dur};
use bytes::BytesMut;
use gatekit_agent::{AgentConfig, Backends, Gate, Services, Tls};
use serde::Serialize;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::{self, protocol::Role, Message};
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

/// The runtime each server runs on, on one thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ServerRuntime {
    /// tokio's current-thread runtime: one FIFO run queue (thread-per-core servers).
    #[default]
    CurrentThread,
    /// tokio's multi-thread runtime with one worker: a local queue plus a global queue checked
    /// every `global_queue_interval` ticks, which starves some connections when saturated.
    MultiThread,
}

impl ServerRuntime {
    /// The `--server-runtime` value.
    pub fn flag(self) -> &'static str {
        match self {
            ServerRuntime::CurrentThread => "current-thread",
            ServerRuntime::MultiThread => "multi-thread",
        }
    }
}

/// The raw echo server over `transport`: `tls` is its rustls config for tls and wss.
async fn raw_echo_server(
    listener: TcpListener,
    transport: TransportKind,
    tls: Option<TlsAcceptor>,
) {
    loop {
        let Ok((s, _)) = listener.accept().await else {
            continue;
        };
        let _ = s.set_nodelay(true);
        let tls = tls.clone();
        tokio::spawn(async move {
            match (transport, tls) {
                (TransportKind::Tcp, _) => ldc_echo(s).await,
                (TransportKind::Ws, _) => ws_echo(s).await,
                (TransportKind::Tls, Some(acceptor)) => {
                    if let Ok(s) = acceptor.accept(s).await {
                        ldc_echo(s).await
                    }
                }
                (TransportKind::Wss, Some(acceptor)) => {
                    if let Ok(s) = acceptor.accept(s).await {
                        ws_echo(s).await
                    }
                }
                (_, None) => {}
            }
        });
    }
}

/// Echoes `LengthDelimitedCodec` frames: each read's whole frames, in one write.
async fn ldc_echo<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) {
    let mut codec = LengthDelimitedCodec::new();
    let mut input = BytesMut::with_capacity(4096);
    let mut output = BytesMut::new();
    loop {
        match s.read_buf(&mut input).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        while let Ok(Some(frame)) = codec.decode(&mut input) {
            if codec.encode(frame.freeze(), &mut output).is_err() {
                return;
            }
        }
        if !output.is_empty() {
            // The flush matters over TLS: tokio-rustls may keep records queued once the socket
            // is full.
            if s.write_all(&output).await.is_err() || s.flush().await.is_err() {
                return;
            }
        }
        output.clear();
    }
}

/// A `std::io` view of an async stream, for tungstenite, as tokio-tungstenite's own `AllowStd`:
/// `Pending` becomes `WouldBlock`, with the polling task's waker registered.
struct AllowStd<S> {
    inner: S,
    waker: Waker,
}

impl<S: AsyncRead + AsyncWrite + Unpin> AllowStd<S> {
    fn poll<T>(
        &mut self,
        f: impl FnOnce(Pin<&mut S>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> io::Result<T> {
        let mut cx = Context::from_waker(&self.waker);
        match f(Pin::new(&mut self.inner), &mut cx) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Read for AllowStd<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut rb = ReadBuf::new(buf);
        self.poll(|s, cx| s.poll_read(cx, &mut rb))?;
        Ok(rb.filled().len())
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Write for AllowStd<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.poll(|s, cx| s.poll_write(cx, buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.poll(|s, cx| s.poll_flush(cx))
    }
}

fn would_block(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// The WebSocket echo: the upgrade by `tokio_tungstenite::accept_async`, then every binary
/// message read is written back, and what is queued is flushed once nothing more is to be read.
async fn ws_echo<S: AsyncRead + AsyncWrite + Unpin>(s: S) {
    let Ok(upgraded) = tokio_tungstenite::accept_async(s).await else {
        return;
    };
    // The client sends nothing before the upgrade's answer, so nothing read ahead is lost.
    let stream = AllowStd {
        inner: upgraded.into_inner(),
        waker: Waker::noop().clone(),
    };
    let mut ws = tungstenite::WebSocket::from_raw_socket(stream, Role::Server, None);
    std::future::poll_fn(|cx| {
        ws.get_mut().waker.clone_from(cx.waker());
        loop {
            match ws.read() {
                Ok(Message::Binary(b)) => match ws.write(Message::Binary(b)) {
                    Ok(()) => {}
                    Err(e) if would_block(&e) => {} // queued
                    Err(_) => return Poll::Ready(()),
                },
                Ok(Message::Close(_)) => return Poll::Ready(()),
                Ok(_) => {} // pings are answered by tungstenite; text is not this client's
                Err(e) if would_block(&e) => {
                    return match ws.flush() {
                        Ok(()) => Poll::Pending,
                        Err(e) if would_block(&e) => Poll::Pending,
                        Err(_) => Poll::Ready(()),
                    };
                }
                Err(_) => return Poll::Ready(()),
            }
        }
    })
    .await
}

/// The rustls config of a raw TLS server: the same as the gate's for `transport` (ALPN
/// `http/1.1` under WebSocket).
fn raw_tls(transport: TransportKind, source: &TlsSource) -> Result<TlsAcceptor, String> {
    let alpn: &[&str] = if transport.is_websocket() {
        &["http/1.1"]
    } else {
        &[]
    };
    let config = match source {
        TlsSource::Files { cert, key } => Tls::from_pem_files(cert, key, alpn),
        TlsSource::Pem { cert, key } => Tls::from_pem(cert.as_bytes(), key.as_bytes(), alpn),
    }
    .map_err(|e| e.to_string())?;
    Ok(TlsAcceptor::from(config))
}

/// A server started for one run, in this process or a child.
pub(super) enum Running {
    InProcess(ServerThread),
    Child(std::process::Child),
}

impl Running {
    pub(super) fn start(
        server: Server,
        transport: TransportKind,
        tls: Option<&crate::client_transport::SelfSignedCert>,
        opts: &RttOptions,
    ) -> Result<(Running, SocketAddr), String> {
        let Some(exe) = &opts.server_exe else {
            let source = tls.map(|c| TlsSource::Pem {
                cert: c.cert.clone(),
                key: c.key.clone(),
            });
            let (thread, addr) = start_server(
                server,
                transport,
                source,
                opts.server_runtime,
                opts.global_queue_interval,
            )?;
            return Ok((Running::InProcess(thread), addr));
        };
        let mut command = std::process::Command::new(exe);
        command.args([
            "rtt-server",
            "--server",
            server.flag(),
            "--server-runtime",
            opts.server_runtime.flag(),
        ]);
        if let Server::Gatekit(protocol) = server {
            command.args(["--protocol", protocol.name()]);
        }
        command.args(["--transport", transport.name()]);
        if let Some(files) = tls.and_then(|c| c.files.as_ref()) {
            command.arg("--tls-cert").arg(&files.0);
            command.arg("--tls-key").arg(&files.1);
        }
        if let Some(n) = opts.global_queue_interval {
            command.args(["--global-queue-interval", &n.to_string()]);
        }
        let mut child = command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", exe.display()))?;
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .map_err(|e| format!("reading the server's address: {e}"))?;
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("the server process said {line:?}, not its address"))?;
        Ok((Running::Child(child), addr))
    }

    pub(super) fn stop(self) {
        match self {
            Running::InProcess(thread) => thread.stop(),
            Running::Child(mut child) => {
                drop(child.stdin.take());
                let end = Instant::now() + Duration::from_secs(10);
                while Instant::now() < end {
                    if let Ok(Some(_)) = child.try_wait() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// `gatekit rtt-server`: runs one server over `transport` (with `tls` for tls and wss), prints
/// `listening ADDR`, and stops when standard input closes.
pub fn serve_child(
    server: Server,
    transport: TransportKind,
    tls: Option<TlsSource>,
    runtime: ServerRuntime,
    global_queue_interval: Option<u32>,
) -> Result<(), String> {
    let (thread, addr) = start_server(server, transport, tls, runtime, global_queue_interval)?;
    println!("listening {addr}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let mut sink = Vec::new();
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    thread.stop();
    Ok(())
}

/// A server running on a thread of its own until stopped.
pub(super) struct ServerThread {
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl ServerThread {
    fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// The gate with an echo back end (no latency), serving `protocol` over `transport` on a loopback
/// port as `gatekit serve --listen PROTOCOL+TRANSPORT://..` does. Returns the bound address.
async fn start_gate(
    protocol: WireProtocol,
    transport: TransportKind,
    tls: Option<TlsSource>,
) -> Result<SocketAddr, String> {
    let profile = BackendProfile {
        latency_min: Dur::millis(0),
        latency_max: Dur::millis(0),
        ..BackendProfile::default()
    };
    let services = Services {
        backends: Backends::new().with("echo", EchoBackend::new(profile, 1)),
        ..Services::default()
    };
    let config = AgentConfig {
        max_in_flight: 1024,
        ..AgentConfig::default()
    };
    let spec = Listener {
        protocol,
        transport,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        path: None,
    };
    let layers = TransportOptions {
        tls,
        ..TransportOptions::default()
    };
    let layers = crate::listener_transport::transport(&spec, &layers, &config)?;
    let gate = Gate::builder()
        .config(config)
        .services(services)
        .max_connections(100_000)
        .build();
    let listener = TcpListener::bind(spec.addr)
        .await
        .map_err(|e| format!("listening on {spec}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    // The accept task runs until the runtime stops.
    drop(match layers {
        None => gate.serve_with(listener, protocol.factory()),
        Some(t) => gate.serve_over(listener, t, protocol.factory()),
    });
    Ok(addr)
}

fn start_server(
    server: Server,
    transport: TransportKind,
    tls: Option<TlsSource>,
    runtime: ServerRuntime,
    global_queue_interval: Option<u32>,
) -> Result<(ServerThread, SocketAddr), String> {
    if transport.is_tls() && tls.is_none() {
        return Err(format!(
            "an rtt server over {transport} needs a certificate"
        ));
    }
    let raw_tls = match (&tls, server) {
        (Some(source), Server::RawEcho) if transport.is_tls() => Some(raw_tls(transport, source)?),
        _ => None,
    };
    let mut b = match runtime {
        ServerRuntime::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        ServerRuntime::MultiThread => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(1);
            b
        }
    };
    b.enable_all();
    if let Some(n) = global_queue_interval {
        b.global_queue_interval(n);
    }
    let rt = b.build().map_err(|e| format!("server runtime: {e}"))?;
    let (addr_tx, addr_rx) = std::sync::mpsc::channel::<Result<SocketAddr, String>>();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        rt.block_on(async move {
            let addr = match server {
                Server::RawEcho => match TcpListener::bind("127.0.0.1:0").await {
                    Ok(l) => {
                        let a = l.local_addr().map_err(|e| e.to_string());
                        tokio::spawn(raw_echo_server(l, transport, raw_tls));
                        a
                    }
                    Err(e) => Err(format!("listening on 127.0.0.1: {e}")),
                },
                Server::Gatekit(protocol) => start_gate(protocol, transport, tls).await,
            };
            let failed = addr.is_err();
            let _ = addr_tx.send(addr);
            if failed {
                return;
            }
            let _ = stopped.await;
        });
        rt.shutdown_timeout(Duration::from_secs(1));
    });
    let addr = addr_rx
        .recv()
        .map_err(|_| "the server thread ended before it listened".to_owned())??;
    Ok((ServerThread { stop, thread }, addr))
}
