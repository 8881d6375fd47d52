//! Round-trip benchmark: the gatekit gate (echo back end) side by side with a minimal tokio server
//! that frames with tokio-util's `LengthDelimitedCodec` and echoes (no routing, no session, no
//! counters) — the limit a gate cannot beat. Each server runs on its own one-worker runtime, the
//! clients on a current-thread runtime (one FIFO run queue, so every client is served in turn and
//! the latencies are the server's, not the client scheduler's), so on a 2-core machine each side
//! has a core.

use crate::fake_backend::EchoBackend;
use crate::scenario::{BackendProfile, Dur};
use crate::source_address::{connect_from, source_for, Sources, DEFAULT_PER_SOURCE};
use bytes::{Bytes, BytesMut};
use gatekit_agent::{AgentConfig, Backends, Gate, Services};
use gatekit_codec::{Handshake, MessageId, NativeCodec, Packet, Request, Route, PROTOCOL_VERSION};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Server {
    /// tokio + LengthDelimitedCodec echo.
    RawEcho,
    /// The gatekit gate with an echo back end.
    Gatekit,
}

impl Server {
    /// The `--server` value of `gatekit rtt-server`.
    pub fn flag(self) -> &'static str {
        match self {
            Server::RawEcho => "raw",
            Server::Gatekit => "gatekit",
        }
    }

    /// Name in the table.
    pub fn name(self) -> &'static str {
        match self {
            Server::RawEcho => "tokio LDC echo",
            Server::Gatekit => "gatekit gate",
        }
    }
}

/// Options of a round-trip run.
#[derive(Debug, Clone)]
pub struct RttOptions {
    /// Connections.
    pub clients: usize,
    /// Requests each connection keeps outstanding.
    pub window: usize,
    /// Request body bytes.
    pub body: usize,
    /// Measured time per run (after a warm-up of a quarter of it).
    pub measure: Dur,
    /// Repetitions (the table shows medians).
    pub runs: usize,
    /// Run each server in a child process started from this executable (`gatekit rtt-server`),
    /// so that clients and server each have the process's open-file limit; `None`: in this
    /// process, on a runtime of its own.
    pub server_exe: Option<std::path::PathBuf>,
    /// The servers' runtime setting `global_queue_interval` (tokio's default: `None`). With one
    /// worker thread and tokio's default, some gate connections wait in the runtime's global queue
    /// for a long time (docs/PERFORMANCE.md); 2 shows the gate without that effect.
    pub global_queue_interval: Option<u32>,
    /// The runtime each server runs on (the same for both).
    pub server_runtime: ServerRuntime,
    /// Open loop: round trips per second offered in total, spread evenly over the connections,
    /// whatever the server's speed (latency from each request's intended send time, so a stalled
    /// server is not excused). `None`: closed loop, each connection keeps `window` requests
    /// outstanding. Latency comparisons mean most at the same offered rate.
    pub rate: Option<f64>,
}

/// One run's result.
#[derive(Debug, Clone, Serialize)]
pub struct RttResult {
    /// Server.
    pub server: Server,
    /// Round trips per second during the measured window.
    pub rate: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Connections that failed.
    pub failures: u64,
    /// Open loop: sends skipped because `window` requests were already outstanding on the
    /// connection (the server fell behind the offered rate).
    pub skipped: u64,
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
enum Running {
    InProcess(ServerThread),
    Child(std::process::Child),
}

impl Running {
    fn start(server: Server, opts: &RttOptions) -> Result<(Running, SocketAddr), String> {
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

    fn stop(self) {
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

/// A server running on a thread of its own until stopped.
struct ServerThread {
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl ServerThread {
    fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
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
                Server::Gatekit => {
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
                    gate.listen("127.0.0.1:0").await.expect("bind").0
                }
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

struct Shared {
    /// Connections that got their first answer (accepted and served).
    started: AtomicU64,
    measuring: AtomicBool,
    stop: AtomicBool,
    done: AtomicU64,
    failures: AtomicU64,
    skipped: AtomicU64,
    hist: Mutex<Histogram<u64>>,
}

/// The bytes of one request frame for a server (the same payload for both).
fn request_frame(server: Server, id: u32, body: &Bytes) -> BytesMut {
    let req = Packet::Request(Request::new(
        MessageId::new(id.max(1)).expect("nonzero"),
        Route::from_static("echo/say"),
        body.clone(),
    ));
    let mut native = BytesMut::new();
    NativeCodec::default()
        .encode(&req, &mut native)
        .expect("fits");
    match server {
        Server::Gatekit => native,
        Server::RawEcho => {
            // LDC frames exactly the native payload (kind, id, route, body).
            let skip = gatekit_codec::parsers::varint_len(native.len() as u32).unwrap_or(1);
            let payload = native.split_off(skip).freeze();
            let mut out = BytesMut::new();
            LengthDelimitedCodec::new()
                .encode(payload, &mut out)
                .expect("fits");
            out
        }
    }
}

async fn client(
    index: usize,
    server: Server,
    addr: SocketAddr,
    source: Option<Ipv4Addr>,
    opts: RttOptions,
    shared: Arc<Shared>,
) {
    let Ok(mut s) = connect_from(addr, source).await else {
        shared.failures.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let body = Bytes::from(vec![b'x'; opts.body]);
    let mut native = NativeCodec::new(1 << 20, gatekit_codec::Oversize::Fail).expect("codec");
    let mut ldc = LengthDelimitedCodec::new();
    let mut input = BytesMut::with_capacity(8192);
    let mut out = BytesMut::new();
    if server == Server::Gatekit {
        let hs = Packet::Handshake(Handshake {
            version: PROTOCOL_VERSION,
            heartbeat_secs: 0,
            token: Bytes::new(),
        });
        NativeCodec::default().encode(&hs, &mut out).expect("fits");
    }
    // (id, sent at, sent while measuring): the gate may answer out of order (several calls in
    // flight), the raw echo server answers in order. Latency counts requests sent in the measured
    // window, so connects and accepts still queued at its start do not count.
    let mut sent: VecDeque<(u32, Instant, bool)> = VecDeque::new();
    let mut id = 0u32;
    // Open loop: one request every `interval`, this connection's first at its share of one
    // interval, so sends are spread evenly.
    let interval = opts
        .rate
        .map(|r| Duration::from_secs_f64(opts.clients as f64 / r.max(1e-3)));
    let mut next_send = interval.map(|iv| {
        tokio::time::Instant::now() + iv.mul_f64(index as f64 / opts.clients.max(1) as f64)
    });
    if interval.is_none() {
        for _ in 0..opts.window {
            id += 1;
            out.extend_from_slice(&request_frame(server, id, &body));
            sent.push_back((id, Instant::now(), false));
        }
    }
    let mut first = true;
    let mut local = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
    let mut done = 0u64;
    let mut skipped = 0u64;
    loop {
        if !out.is_empty() {
            if s.write_all(&out).await.is_err() {
                shared.failures.fetch_add(1, Ordering::Relaxed);
                break;
            }
            out.clear();
        }
        let read = match next_send {
            None => Some(s.read_buf(&mut input).await),
            Some(at) => tokio::select! {
                r = s.read_buf(&mut input) => Some(r),
                _ = tokio::time::sleep_until(at) => None,
            },
        };
        let Some(read) = read else {
            // An open-loop send is due.
            let (Some(at), Some(iv)) = (next_send, interval) else {
                unreachable!("only a due send gets here")
            };
            if shared.stop.load(Ordering::Relaxed) {
                next_send = None;
                if sent.is_empty() {
                    break;
                }
                continue;
            }
            next_send = Some(at + iv);
            let measuring = shared.measuring.load(Ordering::Relaxed);
            if sent.len() < opts.window.max(1) {
                id = id.wrapping_add(1).max(1);
                out.extend_from_slice(&request_frame(server, id, &body));
                sent.push_back((id, at.into_std(), measuring));
            } else if measuring {
                skipped += 1;
            }
            continue;
        };
        match read {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        loop {
            let answered = match server {
                Server::Gatekit => match native.decode(&mut input) {
                    Ok(Some(Packet::Response(r))) => Some(r.id.get()),
                    Ok(Some(_)) => continue,
                    _ => None,
                },
                Server::RawEcho => match ldc.decode(&mut input) {
                    Ok(Some(_)) => sent.front().map(|s| s.0),
                    _ => None,
                },
            };
            let Some(answered) = answered else { break };
            let Some((_, t0, in_window)) = sent
                .iter()
                .position(|s| s.0 == answered)
                .and_then(|i| sent.remove(i))
            else {
                continue;
            };
            if first {
                first = false;
                shared.started.fetch_add(1, Ordering::Relaxed);
            }
            let measuring = shared.measuring.load(Ordering::Relaxed);
            if in_window {
                let _ = local.record(t0.elapsed().as_micros().max(1) as u64);
            }
            if measuring {
                done += 1;
            }
            if interval.is_none() && !shared.stop.load(Ordering::Relaxed) {
                id = id.wrapping_add(1).max(1);
                out.extend_from_slice(&request_frame(server, id, &body));
                sent.push_back((id, Instant::now(), measuring));
            }
        }
        if shared.stop.load(Ordering::Relaxed) && sent.is_empty() {
            break;
        }
    }
    shared.done.fetch_add(done, Ordering::Relaxed);
    shared.skipped.fetch_add(skipped, Ordering::Relaxed);
    let _ = shared.hist.lock().expect("hist").add(&local);
}

/// Runs one server once, clients spread over source addresses from `first_source` on.
pub fn run_once(
    server: Server,
    opts: &RttOptions,
    first_source: Ipv4Addr,
) -> Result<RttResult, String> {
    let (running, addr) = Running::start(server, opts)?;
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let shared = Arc::new(Shared {
        started: AtomicU64::new(0),
        measuring: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        done: AtomicU64::new(0),
        failures: AtomicU64::new(0),
        skipped: AtomicU64::new(0),
        hist: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3).expect("bounds")),
    });
    let measure = opts.measure.0;
    let elapsed = client_rt.block_on(async {
        let tasks: Vec<_> = (0..opts.clients)
            .map(|i| {
                let source = source_for(first_source, i, DEFAULT_PER_SOURCE);
                tokio::spawn(client(
                    i,
                    server,
                    addr,
                    Some(source),
                    opts.clone(),
                    shared.clone(),
                ))
            })
            .collect();
        // Every connection answered once (or 60 s), then a warm-up of a quarter of the window.
        let all = opts.clients as u64;
        let deadline = Instant::now() + Duration::from_secs(60);
        while shared.started.load(Ordering::Relaxed) + shared.failures.load(Ordering::Relaxed) < all
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(measure / 4).await;
        shared.measuring.store(true, Ordering::Relaxed);
        let t = Instant::now();
        tokio::time::sleep(measure).await;
        shared.measuring.store(false, Ordering::Relaxed);
        let elapsed = t.elapsed();
        shared.stop.store(true, Ordering::Relaxed);
        for task in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        elapsed
    });
    client_rt.shutdown_timeout(Duration::from_secs(1));
    running.stop();
    let h = shared.hist.lock().expect("hist");
    let q = |x: f64| {
        if h.is_empty() {
            0.0
        } else {
            h.value_at_quantile(x) as f64 / 1000.0
        }
    };
    Ok(RttResult {
        server,
        rate: shared.done.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64(),
        p50_ms: q(0.5),
        p99_ms: q(0.99),
        failures: shared.failures.load(Ordering::Relaxed),
        skipped: shared.skipped.load(Ordering::Relaxed),
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        0.0
    } else {
        v[v.len() / 2]
    }
}

/// The summary of several runs of both servers.
#[derive(Debug, Clone, Serialize)]
pub struct RttSummary {
    /// Every run, in order (servers alternate).
    pub runs: Vec<RttResult>,
    /// Median rate, p50, p99 of the raw echo server.
    pub raw: (f64, f64, f64),
    /// Median rate, p50, p99 of the gate.
    pub gatekit: (f64, f64, f64),
    /// Median over runs of (gate rate / raw rate) for each run's back-to-back pair: the robust
    /// figure on a noisy machine, as a slow moment hits both sides of a pair.
    pub rate_ratio: f64,
    /// Gate rate / raw rate of the medians.
    pub median_rate_ratio: f64,
    /// Gate p99 / raw p99.
    pub p99_ratio: f64,
}

/// Runs both servers in turn, `opts.runs` times, and summarises. Every run's clients come from
/// fresh 127.0.0.x source addresses, so the TIME_WAIT pairs of one run never crowd the next.
pub fn run(opts: &RttOptions, mut each: impl FnMut(&RttResult)) -> Result<RttSummary, String> {
    let mut runs = Vec::new();
    let mut sources = Sources::default();
    for _ in 0..opts.runs.max(1) {
        for server in [Server::RawEcho, Server::Gatekit] {
            let first = sources.take(opts.clients.div_ceil(DEFAULT_PER_SOURCE));
            let r = run_once(server, opts, first)?;
            each(&r);
            runs.push(r);
        }
    }
    let med = |s: Server| {
        let of = |f: fn(&RttResult) -> f64| {
            median(runs.iter().filter(|r| r.server == s).map(f).collect())
        };
        (of(|r| r.rate), of(|r| r.p50_ms), of(|r| r.p99_ms))
    };
    let (raw, gatekit) = (med(Server::RawEcho), med(Server::Gatekit));
    let pair_ratios: Vec<f64> = runs
        .chunks(2)
        .filter(|p| p.len() == 2 && p[0].rate > 0.0)
        .map(|p| p[1].rate / p[0].rate)
        .collect();
    Ok(RttSummary {
        rate_ratio: if pair_ratios.is_empty() {
            0.0
        } else {
            median(pair_ratios)
        },
        median_rate_ratio: if raw.0 > 0.0 { gatekit.0 / raw.0 } else { 0.0 },
        p99_ratio: if raw.2 > 0.0 { gatekit.2 / raw.2 } else { 0.0 },
        runs,
        raw,
        gatekit,
    })
}

impl std::fmt::Display for RttSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "| server | round trips/s | p50 ms | p99 ms |")?;
        writeln!(f, "|---|---|---|---|")?;
        for (name, (rate, p50, p99)) in [
            (Server::RawEcho.name(), self.raw),
            (Server::Gatekit.name(), self.gatekit),
        ] {
            writeln!(f, "| {name} | {rate:.0} | {p50:.3} | {p99:.3} |")?;
        }
        write!(
            f,
            "gatekit / raw: rate {:.2}× (median of per-run pairs; of medians {:.2}×; target ≥ 0.80), p99 {:.2}× (target ≤ 1.50)",
            self.rate_ratio, self.median_rate_ratio, self.p99_ratio
        )
    }
}
