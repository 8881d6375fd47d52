//! The servers of a round-trip run: the raw tokio echo server and the gatekit gate over one wire
//! protocol, each on a one-thread runtime of its own, in this process or in a child process
//! (`gatekit rtt-server`).

use super::{RttOptions, Server};
use crate::fake_backend::EchoBackend;
use crate::listen::WireProtocol;
use crate::scenario::{BackendProfile, Dur};
use bytes::BytesMut;
use gatekit_agent::{AgentConfig, Backends, Gate, Services};
use serde::Serialize;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
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

async fn raw_echo_server(listener: TcpListener) {
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            continue;
        };
        let _ = s.set_nodelay(true);
        tokio::spawn(async move {
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
                if !output.is_empty() && s.write_all(&output).await.is_err() {
                    return;
                }
                output.clear();
            }
        });
    }
}

/// A server started for one run, in this process or a child.
pub(super) enum Running {
    InProcess(ServerThread),
    Child(std::process::Child),
}

impl Running {
    pub(super) fn start(
        server: Server,
        opts: &RttOptions,
    ) -> Result<(Running, SocketAddr), String> {
        let Some(exe) = &opts.server_exe else {
            let (thread, addr) =
                start_server(server, opts.server_runtime, opts.global_queue_interval);
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

/// `gatekit rtt-server`: runs one server, prints `listening ADDR`, and stops when standard input
/// closes.
pub fn serve_child(server: Server, runtime: ServerRuntime, global_queue_interval: Option<u32>) {
    let (thread, addr) = start_server(server, runtime, global_queue_interval);
    println!("listening {addr}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let mut sink = Vec::new();
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    thread.stop();
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

/// The gate with an echo back end (no latency), serving `protocol` on a loopback port as
/// `gatekit serve --listen PROTOCOL+tcp://..` does. Returns the bound address.
async fn start_gate(protocol: WireProtocol) -> SocketAddr {
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
    let gate = Gate::builder()
        .config(config)
        .services(services)
        .max_connections(100_000)
        .build();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    // The accept task runs until the runtime stops.
    drop(gate.serve_with(listener, protocol.factory()));
    addr
}

fn start_server(
    server: Server,
    runtime: ServerRuntime,
    global_queue_interval: Option<u32>,
) -> (ServerThread, SocketAddr) {
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
    let rt = b.build().expect("server runtime");
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        rt.block_on(async move {
            let addr = match server {
                Server::RawEcho => {
                    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
                    let a = l.local_addr().expect("addr");
                    tokio::spawn(raw_echo_server(l));
                    a
                }
                Server::Gatekit(protocol) => start_gate(protocol).await,
            };
            let _ = addr_tx.send(addr);
            let _ = stopped.await;
        });
        rt.shutdown_timeout(Duration::from_secs(1));
    });
    let addr = addr_rx
        .recv()
        .expect("the server thread reports its address");
    (ServerThread { stop, thread }, addr)
}
