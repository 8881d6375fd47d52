//! Round trips per second and their latency through gate → NATS → back end, side by side in one
//! run with the limit (the same number of clients making direct async-nats requests to the same
//! back end: no gate) and with the gate's in-process echo (no NATS). docs/PERFORMANCE.md, "Back
//! ends over NATS".
//!
//! `cargo run --release -p gatekit-benches --bin nats_rtt -- --clients 100 --seconds 3 --runs 3
//! [--body 64] [--json]`
//!
//! Processes, all on loopback:
//! - `nats-server -a 127.0.0.1 -p <free port>` (the Debian package's `/usr/sbin/nats-server`, or
//!   `$NATS_SERVER`, or `nats-server` in `PATH`);
//! - the back end: this binary again (`--backend <url>`), one async-nats connection subscribed to
//!   `gatekit.rpc.echo.>` in queue group `echo`, replying inline with each request's payload;
//! - the gate: this binary again (`--gate <url>`), `gatekit_server::Server` on a multi-thread
//!   runtime, `native+tcp://127.0.0.1:0`, default route NATS, module `local` the in-process echo;
//! - the clients, in this process (multi-thread runtime): N connections, closed loop, one request
//!   in flight each.
//!
//! Each round measures every mode once, for `--seconds` each after a short warm-up on fresh
//! connections; the order of the modes rotates from round to round:
//! - `gate+nats`: native clients → gate → NATS → back end (route `echo/x`);
//! - `direct`: N async-nats clients, `request("gatekit.rpc.echo.x", body)`;
//! - `gate+in-process`: native clients → gate → its in-process echo (route `local/x`).
//!
//! Every mode also reports the CPU time (user + system, `/proc/<pid>/stat`) nats-server, the back
//! end, the gate and the clients used over its window, per round trip. `--diagnose` adds three
//! modes without the gate, N tasks over one shared connection as in the gate: plain requests,
//! requests with the gate's session headers, and the gate's own `NatsBackend`.
//! `--gate-current-thread` runs the gate on a current-thread runtime.
//!
//! The children read their standard input and exit when it closes, so they end with this
//! process whatever happens to it; a watchdog ends the whole run if it overruns its time.

use bytes::Bytes;
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use gatekit_codec::{
    Handshake, MessageId, NativeCodec, Packet, Request, Route, Status, PROTOCOL_VERSION,
};
use hdrhistogram::Histogram;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// The subject the gate sends `echo/x` to, and the direct clients request.
const SUBJECT: &str = "gatekit.rpc.echo.x";
/// A request not answered within this counts as failed, and its client stops.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for a child to say it is ready, and for a round's connections to be made.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Target: gate+nats rate at least this fraction of direct.
const RATE_TARGET: f64 = 0.8;
/// Target: gate+nats p99 at most this multiple of direct.
const P99_TARGET: f64 = 1.5;

#[derive(Parser)]
#[command(about = "Round trips through gate → NATS → back end, next to direct async-nats requests")]
struct Args {
    /// Clients (connections) per mode, one request in flight each.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Measured seconds per mode per round.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Rounds (each measures every mode once).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Request body, bytes.
    #[arg(long, default_value_t = 64)]
    body: usize,
    /// Unmeasured seconds at the start of each mode's round.
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
    /// Print a JSON object on standard output (the table goes to standard error).
    #[arg(long)]
    json: bool,
    /// Also measure, without the gate, N tasks over one shared NATS connection: plain requests
    /// (`direct-1conn`), with the gate's session headers (`headers-1conn`), and through the gate's
    /// own `NatsBackend` (`NatsBackend-1conn`).
    #[arg(long)]
    diagnose: bool,
    /// Run the gate on a current-thread runtime (gatekit-server's own binary uses a
    /// multi-thread one, as does this by default).
    #[arg(long)]
    gate_current_thread: bool,
    /// Child mode: the echo back end on this NATS server.
    #[arg(long, hide = true)]
    backend: Option<String>,
    /// Child mode: the gate on this NATS server.
    #[arg(long, hide = true)]
    gate: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    GateNats,
    Direct,
    GateLocal,
    /// Diagnostic: N tasks making plain requests over one shared async-nats connection (the gate
    /// has one connection for all its sessions).
    Shared,
    /// Diagnostic: as `Shared`, with the session headers the gate sends (built per request by
    /// `gatekit_server::nats::headers::session_headers`, as the gate does).
    SharedHeaders,
    /// Diagnostic: N tasks calling the gate's own `NatsBackend::call_in` (session headers, its
    /// checks and timeouts) over one connection made by `gatekit_server::nats::connect`: the
    /// gate's NATS path without the gate's client side.
    SharedBackend,
}

const MODES: [Mode; 3] = [Mode::GateNats, Mode::Direct, Mode::GateLocal];
/// `--diagnose` adds these: the gate's NATS side without the gate.
const DIAGNOSTIC_MODES: [Mode; 3] = [Mode::Shared, Mode::SharedHeaders, Mode::SharedBackend];

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::GateNats => "gate+nats",
            Mode::Direct => "direct",
            Mode::GateLocal => "gate+in-process",
            Mode::Shared => "direct-1conn",
            Mode::SharedHeaders => "headers-1conn",
            Mode::SharedBackend => "NatsBackend-1conn",
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(url) = &args.backend {
        exit_with_stdin();
        return backend(url);
    }
    if let Some(url) = &args.gate {
        exit_with_stdin();
        return gate(url, args.gate_current_thread);
    }
    match measure(&args) {
        Ok(code) => code,
        Err(why) => {
            eprintln!("nats_rtt: {why}");
            ExitCode::from(2)
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A child ends when its parent's end of its standard input closes.
fn exit_with_stdin() {
    std::thread::spawn(|| {
        let mut buf = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
}

/// The child `--backend`: echoes every request on `gatekit.rpc.echo.>`, queue group `echo`.
fn backend(url: &str) -> ExitCode {
    runtime().block_on(async move {
        let client = match async_nats::connect(url).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("nats_rtt backend: cannot connect to {url}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let mut sub = client
            .queue_subscribe("gatekit.rpc.echo.>", "echo".to_owned())
            .await
            .expect("subscribe");
        // The subscription is live for the gate once a message to itself has come back (a
        // flush only empties the socket's buffer).
        gatekit_server::nats::round_trip(&client)
            .await
            .expect("round trip");
        println!("ready");
        let _ = std::io::stdout().flush();
        while let Some(m) = sub.next().await {
            if let Some(reply) = m.reply {
                if client.publish(reply, m.payload).await.is_err() {
                    break;
                }
            }
        }
        ExitCode::SUCCESS
    })
}

/// The child `--gate`: gatekit_server with NATS as the default route and `local` in-process;
/// prints its listener's address.
fn gate(url: &str, current_thread: bool) -> ExitCode {
    let rt = if current_thread {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
    } else {
        runtime()
    };
    rt.block_on(async move {
        let mut cfg = gatekit_server::ServerConfig::default();
        cfg.gate.listen = vec!["native+tcp://127.0.0.1:0".parse().expect("listener")];
        cfg.nats.url = Some(url.to_owned());
        cfg.backends.default = gatekit_server::config::DefaultRoute::Nats;
        cfg.backends.modules.clear();
        cfg.backends
            .modules
            .insert("local".into(), gatekit_server::config::ModuleRoute::Echo);
        let running = match gatekit_server::Server::new(cfg).start().await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("nats_rtt gate: cannot start: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!("{}", running.listeners()[0].addr);
        let _ = std::io::stdout().flush();
        std::future::pending::<()>().await;
        drop(running);
        ExitCode::SUCCESS
    })
}

/// The processes this one started; killed at the end, at an error, or by the watchdog.
#[derive(Default)]
struct Children(Vec<(&'static str, Child)>);

impl Children {
    fn kill_all(&mut self) {
        // The last started first: the gate, the back end, then nats-server.
        while let Some((_, mut child)) = self.0.pop() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// `$NATS_SERVER`, else `nats-server` in PATH, else the usual places.
fn find_nats_server() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("NATS_SERVER") {
        return Ok(PathBuf::from(p));
    }
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("nats-server"))
                .collect()
        })
        .unwrap_or_default();
    for d in ["/usr/sbin", "/usr/local/bin", "/usr/bin"] {
        candidates.push(PathBuf::from(d).join("nats-server"));
    }
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        "nats-server is not installed (not in $NATS_SERVER, PATH nor /usr/sbin): \
         apt-get install nats-server"
            .to_owned()
    })
}

/// Starts nats-server on a free loopback port; returns its URL once it accepts.
fn start_nats(children: &Arc<Mutex<Children>>) -> Result<String, String> {
    let bin = find_nats_server()?;
    let port = StdListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))?
        .port();
    let child = Command::new(&bin)
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    children.lock().unwrap().0.push(("nats-server", child));
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + Duration::from_secs(5);
    while StdStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if Instant::now() >= deadline {
            return Err(format!("nats-server did not accept on {addr} within 5 s"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(format!("nats://127.0.0.1:{port}"))
}

/// Starts this binary with `flag url`; returns the first line it prints.
fn start_child(
    children: &Arc<Mutex<Children>>,
    name: &'static str,
    args: &[&str],
) -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut child = Command::new(exe)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start the {name}: {e}"))?;
    let stdout = child.stdout.take().expect("piped stdout");
    children.lock().unwrap().0.push((name, child));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    match rx.recv_timeout(START_TIMEOUT) {
        Ok(line) if !line.trim().is_empty() => Ok(line.trim().to_owned()),
        Ok(_) => Err(format!("the {name} exited before it was ready")),
        Err(_) => Err(format!("the {name} was not ready within {START_TIMEOUT:?}")),
    }
}

/// What one mode's round measured.
struct Round {
    /// Completions within the measured window.
    done: u64,
    /// Requests answered with a status other than ok, or wrongly, or not at all.
    failures: u64,
    first_failure: Option<String>,
    /// Latency of the completions counted, µs.
    hist: Histogram<u64>,
    seconds: f64,
    /// CPU seconds of each of [`PROCS`] over the window.
    cpu: [f64; 4],
}

impl Round {
    fn new(seconds: f64) -> Round {
        Round {
            done: 0,
            failures: 0,
            first_failure: None,
            hist: Histogram::new_with_bounds(1, 60_000_000, 3).expect("bounds"),
            seconds,
            cpu: [f64::NAN; 4],
        }
    }

    fn fail(&mut self, why: impl FnOnce() -> String) {
        self.failures += 1;
        if self.first_failure.is_none() {
            self.first_failure = Some(why());
        }
    }

    fn merge(&mut self, other: Round) {
        self.done += other.done;
        self.failures += other.failures;
        if self.first_failure.is_none() {
            self.first_failure = other.first_failure;
        }
        self.hist.add(&other.hist).expect("same bounds");
    }

    fn rate(&self) -> f64 {
        self.done as f64 / self.seconds
    }

    /// CPU µs per round trip of process `i` of [`PROCS`].
    fn cpu_per_rt(&self, i: usize) -> f64 {
        self.cpu[i] * 1e6 / self.done.max(1) as f64
    }

    /// Cores busy over the window, all processes together.
    fn cores(&self) -> f64 {
        self.cpu.iter().sum::<f64>() / self.seconds
    }

    fn p(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64
    }
}

/// The measured window: completions between `t0` and `t1` count; clients stop at `t1`.
#[derive(Clone, Copy)]
struct Window {
    t0: Instant,
    t1: Instant,
}

impl Window {
    fn record(&self, round: &mut Round, start: Instant, end: Instant) {
        if end >= self.t0 && end <= self.t1 {
            round.done += 1;
            let us = end.duration_since(start).as_micros().max(1) as u64;
            round.hist.saturating_record(us);
        }
    }
}

type Native = Framed<TcpStream, NativeCodec>;

/// A native client's connection to the gate, handshake done.
async fn gate_connect(addr: SocketAddr) -> Result<Native, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect to the gate: {e}"))?;
    let _ = stream.set_nodelay(true);
    let mut io = Framed::new(stream, NativeCodec::default());
    io.send(Packet::Handshake(Handshake {
        version: PROTOCOL_VERSION,
        heartbeat_secs: 0,
        token: Bytes::new(),
    }))
    .await
    .map_err(|e| format!("handshake: {e:?}"))?;
    match io.next().await {
        Some(Ok(Ok(Packet::Welcome(_)))) => Ok(io),
        other => Err(format!("expected WELCOME, got {other:?}")),
    }
}

/// One native request and its answer.
async fn gate_request(io: &mut Native, packet: Packet) -> Result<gatekit_codec::Response, String> {
    io.send(packet).await.map_err(|e| format!("send: {e:?}"))?;
    loop {
        match io.next().await {
            Some(Ok(Ok(Packet::Response(r)))) => return Ok(r),
            Some(Ok(Ok(Packet::Ping))) => io
                .send(Packet::Pong)
                .await
                .map_err(|e| format!("pong: {e:?}"))?,
            Some(Ok(Ok(Packet::Push(_) | Packet::Pong))) => {}
            Some(Ok(Ok(other))) => return Err(format!("unexpected packet {other:?}")),
            Some(Ok(Err(e))) => return Err(format!("bad packet: {e}")),
            Some(Err(e)) => return Err(format!("decode: {e:?}")),
            None => return Err("the gate closed the connection".into()),
        }
    }
}

/// A native client's closed loop on `route` until the window ends.
async fn gate_loop(mut io: Native, route: Route, body: Bytes, w: Window, seconds: f64) -> Round {
    let mut round = Round::new(seconds);
    let mut id: u32 = 0;
    while Instant::now() < w.t1 {
        id = if id >= (1 << 31) - 1 { 1 } else { id + 1 };
        let packet = Packet::Request(Request::new(
            MessageId::new(id).expect("non-zero"),
            route.clone(),
            body.clone(),
        ));
        let start = Instant::now();
        match tokio::time::timeout(REQUEST_TIMEOUT, gate_request(&mut io, packet)).await {
            Err(_) => {
                round.fail(|| format!("no answer within {REQUEST_TIMEOUT:?}"));
                break;
            }
            Ok(Err(why)) => {
                round.fail(|| why);
                break;
            }
            Ok(Ok(r)) if r.id.get() != id => {
                round.fail(|| format!("answer to request {} for {id}", r.id.get()));
                break;
            }
            Ok(Ok(r)) if r.status != Status::Ok => {
                round.fail(|| {
                    format!(
                        "status {}: {}",
                        r.status,
                        String::from_utf8_lossy(&r.body[..r.body.len().min(200)])
                    )
                });
            }
            Ok(Ok(r)) if r.body != body => {
                round.fail(|| format!("a body of {} bytes came back wrong", r.body.len()));
            }
            Ok(Ok(_)) => w.record(&mut round, start, Instant::now()),
        }
    }
    round
}

/// A direct client's closed loop until the window ends.
async fn direct_loop(client: async_nats::Client, body: Bytes, w: Window, seconds: f64) -> Round {
    let mut round = Round::new(seconds);
    while Instant::now() < w.t1 {
        let start = Instant::now();
        match tokio::time::timeout(REQUEST_TIMEOUT, client.request(SUBJECT, body.clone())).await {
            Err(_) => {
                round.fail(|| format!("no reply within {REQUEST_TIMEOUT:?}"));
                break;
            }
            Ok(Err(e)) => round.fail(|| format!("request: {e}")),
            Ok(Ok(m)) if m.payload != body => {
                round.fail(|| format!("a payload of {} bytes came back wrong", m.payload.len()))
            }
            Ok(Ok(_)) => w.record(&mut round, start, Instant::now()),
        }
    }
    round
}

/// A plain request loop with the gate's session headers, until the window ends.
async fn headers_loop(
    client: async_nats::Client,
    session: gatekit_agent::Session,
    body: Bytes,
    w: Window,
    seconds: f64,
) -> Round {
    let mut round = Round::new(seconds);
    while Instant::now() < w.t1 {
        let start = Instant::now();
        let headers = gatekit_server::nats::headers::session_headers(&session).expect("headers");
        let call = client.request_with_headers(SUBJECT, headers, body.clone());
        match tokio::time::timeout(REQUEST_TIMEOUT, call).await {
            Err(_) => {
                round.fail(|| format!("no reply within {REQUEST_TIMEOUT:?}"));
                break;
            }
            Ok(Err(e)) => round.fail(|| format!("request: {e}")),
            Ok(Ok(m)) if m.payload != body => {
                round.fail(|| format!("a payload of {} bytes came back wrong", m.payload.len()))
            }
            Ok(Ok(_)) => w.record(&mut round, start, Instant::now()),
        }
    }
    round
}

/// A bench session like the gate's: 32 hex digits, tcp, a peer address, the gate's id.
fn bench_session(i: usize) -> gatekit_agent::Session {
    gatekit_agent::Session::new(format!("{i:032x}"), "tcp", "127.0.0.1:40000", "bench")
}

/// A closed loop of the gate's own NATS back end, for one session, until the window ends.
async fn backend_loop(
    backend: gatekit_server::nats::NatsBackend,
    session: Arc<gatekit_agent::Session>,
    body: Bytes,
    w: Window,
    seconds: f64,
) -> Round {
    use gatekit_agent::Backend;
    let mut round = Round::new(seconds);
    while Instant::now() < w.t1 {
        let start = Instant::now();
        let call = backend.call_in(session.clone(), "echo", "x", body.clone());
        match tokio::time::timeout(REQUEST_TIMEOUT, call).await {
            Err(_) => {
                round.fail(|| format!("no reply within {REQUEST_TIMEOUT:?}"));
                break;
            }
            Ok(Err(e)) => round.fail(|| format!("call: {e:?}")),
            Ok(Ok(b)) if b != body => {
                round.fail(|| format!("a payload of {} bytes came back wrong", b.len()))
            }
            Ok(Ok(_)) => w.record(&mut round, start, Instant::now()),
        }
    }
    round
}

/// Shared by every round.
struct Setup {
    gate: SocketAddr,
    nats: String,
    clients: usize,
    body: Bytes,
    warmup: Duration,
    seconds: f64,
    /// The processes whose CPU time is read over each window: nats-server, back end, gate, and
    /// this one (the clients).
    pids: [u32; 4],
}

/// The processes of [`Setup::pids`], as reported.
const PROCS: [&str; 4] = ["nats-server", "back end", "gate", "clients"];

/// CPU seconds (user + system) `pid` has used, from `/proc/<pid>/stat` (Linux; USER_HZ 100).
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // The fields after the command name (which is in parentheses and may hold spaces): state is
    // the first, utime the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| {
        f.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (tick(11) + tick(12)) / 100.0
}

fn cpu_all(pids: &[u32; 4]) -> [f64; 4] {
    pids.map(cpu_seconds)
}

/// CPU seconds each process of `pids` uses over the window `w` (read at its start and end).
fn sample_cpu(pids: [u32; 4], w: Window) -> tokio::task::JoinHandle<[f64; 4]> {
    tokio::spawn(async move {
        tokio::time::sleep_until(w.t0.into()).await;
        let a = cpu_all(&pids);
        tokio::time::sleep_until(w.t1.into()).await;
        let b = cpu_all(&pids);
        std::array::from_fn(|i| b[i] - a[i])
    })
}

/// One mode for one round: fresh connections, the warm-up, the measured window.
async fn round(mode: Mode, s: &Setup) -> Result<Round, String> {
    let seconds = s.seconds;
    let window = |now: Instant| {
        let t0 = now + s.warmup;
        Window {
            t0,
            t1: t0 + Duration::from_secs_f64(seconds),
        }
    };
    let (tasks, cpu): (Vec<tokio::task::JoinHandle<Round>>, _) = match mode {
        Mode::GateNats | Mode::GateLocal => {
            let route = Route::try_from(if mode == Mode::GateNats {
                "echo/x"
            } else {
                "local/x"
            })
            .expect("route");
            let connects: Vec<_> = (0..s.clients)
                .map(|_| tokio::spawn(gate_connect(s.gate)))
                .collect();
            let mut conns = Vec::with_capacity(s.clients);
            for c in connects {
                conns.push(
                    tokio::time::timeout(START_TIMEOUT, c)
                        .await
                        .map_err(|_| {
                            format!("{}: connecting took over {START_TIMEOUT:?}", mode.name())
                        })?
                        .expect("connect task")?,
                );
            }
            let w = window(Instant::now());
            let tasks = conns
                .into_iter()
                .map(|io| tokio::spawn(gate_loop(io, route.clone(), s.body.clone(), w, seconds)))
                .collect();
            (tasks, sample_cpu(s.pids, w))
        }
        Mode::Direct => {
            let connects: Vec<_> = (0..s.clients)
                .map(|_| {
                    let url = s.nats.clone();
                    tokio::spawn(async move {
                        async_nats::ConnectOptions::new()
                            .request_timeout(Some(REQUEST_TIMEOUT))
                            .connect(url.as_str())
                            .await
                    })
                })
                .collect();
            let mut conns = Vec::with_capacity(s.clients);
            for c in connects {
                conns.push(
                    tokio::time::timeout(START_TIMEOUT, c)
                        .await
                        .map_err(|_| format!("direct: connecting took over {START_TIMEOUT:?}"))?
                        .expect("connect task")
                        .map_err(|e| format!("direct: connect to NATS: {e}"))?,
                );
            }
            let w = window(Instant::now());
            let tasks = conns
                .into_iter()
                .map(|c| tokio::spawn(direct_loop(c, s.body.clone(), w, seconds)))
                .collect();
            (tasks, sample_cpu(s.pids, w))
        }
        Mode::Shared | Mode::SharedHeaders => {
            let client = tokio::time::timeout(
                START_TIMEOUT,
                async_nats::ConnectOptions::new()
                    .request_timeout(Some(REQUEST_TIMEOUT))
                    .connect(s.nats.as_str()),
            )
            .await
            .map_err(|_| format!("{}: connecting took over {START_TIMEOUT:?}", mode.name()))?
            .map_err(|e| format!("{}: connect to NATS: {e}", mode.name()))?;
            let w = window(Instant::now());
            let tasks = (0..s.clients)
                .map(|i| {
                    let (client, body) = (client.clone(), s.body.clone());
                    if mode == Mode::Shared {
                        tokio::spawn(direct_loop(client, body, w, seconds))
                    } else {
                        tokio::spawn(headers_loop(client, bench_session(i), body, w, seconds))
                    }
                })
                .collect();
            (tasks, sample_cpu(s.pids, w))
        }
        Mode::SharedBackend => {
            let config = gatekit_server::nats::NatsConfig {
                url: Some(s.nats.clone()),
                ..Default::default()
            };
            let client = gatekit_server::nats::connect(&config, "bench")
                .await
                .map_err(|e| format!("{}: {e}", mode.name()))?;
            let backend =
                gatekit_server::nats::NatsBackend::new(client, "gatekit", Duration::from_secs(10));
            let w = window(Instant::now());
            let tasks = (0..s.clients)
                .map(|i| {
                    let session = Arc::new(bench_session(i));
                    tokio::spawn(backend_loop(
                        backend.clone(),
                        session,
                        s.body.clone(),
                        w,
                        seconds,
                    ))
                })
                .collect();
            (tasks, sample_cpu(s.pids, w))
        }
    };
    let mut total = Round::new(seconds);
    // Every client stops at the end of the window, or one request timeout after it.
    let deadline = tokio::time::Instant::now()
        + s.warmup
        + Duration::from_secs_f64(seconds)
        + REQUEST_TIMEOUT
        + Duration::from_secs(2);
    for t in tasks {
        let abort = t.abort_handle();
        match tokio::time::timeout_at(deadline, t).await {
            Ok(Ok(r)) => total.merge(r),
            Ok(Err(e)) => total.fail(|| format!("a client task ended: {e}")),
            Err(_) => {
                abort.abort();
                total.fail(|| "a client did not stop in time".into());
            }
        }
    }
    total.cpu = cpu.await.unwrap_or([f64::NAN; 4]);
    Ok(total)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn measure(args: &Args) -> Result<ExitCode, String> {
    if args.clients == 0 || args.runs == 0 || args.seconds <= 0.0 || args.warmup < 0.0 {
        return Err("--clients, --runs and --seconds must be above 0".into());
    }
    let children = Arc::new(Mutex::new(Children::default()));
    // The whole run is bounded: the rounds, plus each mode's connects and stragglers, plus the
    // start.
    let budget = Duration::from_secs_f64(
        args.runs as f64
            * (MODES.len()
                + if args.diagnose {
                    DIAGNOSTIC_MODES.len()
                } else {
                    0
                }) as f64
            * (args.seconds + args.warmup + 20.0)
            + 60.0,
    );
    {
        let children = children.clone();
        std::thread::spawn(move || {
            std::thread::sleep(budget);
            eprintln!("nats_rtt: the run took over {budget:?}; stopping");
            if let Ok(mut c) = children.lock() {
                c.kill_all();
            }
            std::process::exit(3);
        });
    }
    let result = run(args, &children);
    children.lock().unwrap().kill_all();
    result
}

fn run(args: &Args, children: &Arc<Mutex<Children>>) -> Result<ExitCode, String> {
    let nats = start_nats(children)?;
    let ready = start_child(children, "back end", &["--backend", &nats])?;
    if ready != "ready" {
        return Err(format!("the back end said {ready:?}"));
    }
    let mut gate_args = vec!["--gate", &nats];
    if args.gate_current_thread {
        gate_args.push("--gate-current-thread");
    }
    let gate: SocketAddr = start_child(children, "gate", &gate_args)?
        .parse()
        .map_err(|e| format!("the gate's address: {e}"))?;
    let setup = Setup {
        gate,
        nats: nats.clone(),
        clients: args.clients,
        body: Bytes::from(
            (0..args.body)
                .map(|i| b'a' + (i % 26) as u8)
                .collect::<Vec<u8>>(),
        ),
        warmup: Duration::from_secs_f64(args.warmup),
        seconds: args.seconds,
        pids: {
            let c = children.lock().unwrap();
            let pid = |name: &str| {
                c.0.iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, ch)| ch.id())
                    .expect("started")
            };
            [
                pid("nats-server"),
                pid("back end"),
                pid("gate"),
                std::process::id(),
            ]
        },
    };
    let rt = runtime();
    let mut modes = MODES.to_vec();
    if args.diagnose {
        modes.extend(DIAGNOSTIC_MODES);
    }
    let mut rounds: Vec<Vec<Round>> = modes.iter().map(|_| Vec::new()).collect();
    eprintln!(
        "nats_rtt: nats-server at {nats}, gate at {gate}; {} clients, {}-byte bodies, {} rounds \
         of {} s per mode",
        args.clients, args.body, args.runs, args.seconds
    );
    for r in 0..args.runs {
        for k in 0..modes.len() {
            let i = (k + r) % modes.len();
            let mode = modes[i];
            let res = rt.block_on(round(mode, &setup))?;
            eprintln!(
                "  round {}: {:<18} {:>9.0} rt/s  p50 {:>7.0} µs  p99 {:>7.0} µs  failures {}  \
                 cores busy {:.2}",
                r + 1,
                mode.name(),
                res.rate(),
                res.p(0.5),
                res.p(0.99),
                res.failures,
                res.cores()
            );
            rounds[i].push(res);
        }
    }
    drop(rt);
    Ok(report(args, &modes, &rounds))
}

fn report(args: &Args, modes: &[Mode], rounds: &[Vec<Round>]) -> ExitCode {
    let idx = |m: Mode| modes.iter().position(|&x| x == m).expect("mode");
    let per =
        |m: Mode, f: &dyn Fn(&Round) -> f64| -> Vec<f64> { rounds[idx(m)].iter().map(f).collect() };
    let pairwise = |a: Mode, b: Mode, f: &dyn Fn(&Round, &Round) -> f64| -> Vec<f64> {
        rounds[idx(a)]
            .iter()
            .zip(&rounds[idx(b)])
            .map(|(x, y)| f(x, y))
            .collect()
    };
    let rate_ratios = pairwise(Mode::GateNats, Mode::Direct, &|x, y| x.rate() / y.rate());
    let p99_ratios = pairwise(Mode::GateNats, Mode::Direct, &|x, y| x.p(0.99) / y.p(0.99));
    let added_p50 = pairwise(Mode::GateNats, Mode::GateLocal, &|x, y| x.p(0.5) - y.p(0.5));
    let added_p99 = pairwise(Mode::GateNats, Mode::GateLocal, &|x, y| {
        x.p(0.99) - y.p(0.99)
    });
    let rate_ratio = median(rate_ratios.clone());
    let p99_ratio = median(p99_ratios.clone());
    let failures: u64 = rounds.iter().flatten().map(|r| r.failures).sum();

    let mut t = String::new();
    use std::fmt::Write as _;
    let _ = writeln!(
        t,
        "nats_rtt: {} clients, one request in flight each, {}-byte bodies; medians of {} rounds \
         of {} s per mode; gate on a {} runtime",
        args.clients,
        args.body,
        args.runs,
        args.seconds,
        gate_runtime(args)
    );
    let _ = writeln!(
        t,
        "{:<18} {:>10} {:>9} {:>9} {:>9}",
        "mode", "rt/s", "p50 ms", "p99 ms", "failures"
    );
    for &m in modes {
        let fails: u64 = rounds[idx(m)].iter().map(|r| r.failures).sum();
        let _ = writeln!(
            t,
            "{:<18} {:>10.0} {:>9.3} {:>9.3} {:>9}",
            m.name(),
            median(per(m, &|r| r.rate())),
            median(per(m, &|r| r.p(0.5))) / 1000.0,
            median(per(m, &|r| r.p(0.99))) / 1000.0,
            fails
        );
    }
    let _ = writeln!(
        t,
        "CPU µs per round trip over the window (user + system, /proc; medians over rounds):"
    );
    let _ = writeln!(
        t,
        "{:<18} {:>11} {:>9} {:>9} {:>9} {:>9} {:>11}",
        "mode", PROCS[0], PROCS[1], PROCS[2], PROCS[3], "total", "cores busy"
    );
    for &m in modes {
        let _ = write!(
            t,
            "{:<18} {:>11.1}",
            m.name(),
            median(per(m, &|r| r.cpu_per_rt(0)))
        );
        for i in 1..PROCS.len() {
            let _ = write!(t, " {:>9.1}", median(per(m, &|r| r.cpu_per_rt(i))));
        }
        let total = median(per(m, &|r| (0..PROCS.len()).map(|i| r.cpu_per_rt(i)).sum()));
        let _ = writeln!(
            t,
            " {:>9.1} {:>11.2}",
            total,
            median(per(m, &|r| r.cores()))
        );
    }
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    let _ = writeln!(
        t,
        "gate+nats / direct: rate {rate_ratio:.2}× (target ≥ {RATE_TARGET:.2}: {}), p99 \
         {p99_ratio:.2}× (target ≤ {P99_TARGET:.2}: {}); per round: rate {}, p99 {}",
        verdict(rate_ratio >= RATE_TARGET),
        verdict(p99_ratio <= P99_TARGET),
        list(&rate_ratios),
        list(&p99_ratios),
    );
    let _ = writeln!(
        t,
        "added by NATS over the in-process back end (gate+nats − gate+in-process): p50 {:+.0} µs, \
         p99 {:+.0} µs",
        median(added_p50.clone()),
        median(added_p99.clone())
    );
    if failures > 0 {
        let first = rounds
            .iter()
            .flatten()
            .find_map(|r| r.first_failure.clone())
            .unwrap_or_default();
        let _ = writeln!(t, "FAILURES: {failures} requests failed; first: {first}");
    }

    if args.json {
        eprint!("{t}");
        let by_mode: serde_json::Map<String, serde_json::Value> = modes
            .iter()
            .map(|&m| {
                let rs = &rounds[idx(m)];
                (
                    m.name().to_owned(),
                    serde_json::json!({
                        "rate": median(per(m, &|r| r.rate())),
                        "p50_us": median(per(m, &|r| r.p(0.5))),
                        "p99_us": median(per(m, &|r| r.p(0.99))),
                        "failures": rs.iter().map(|r| r.failures).sum::<u64>(),
                        "cpu_us_per_rt": PROCS.iter().enumerate().map(|(i, p)| {
                            ((*p).to_owned(), serde_json::json!(median(per(m, &|r| r.cpu_per_rt(i)))))
                        }).collect::<serde_json::Map<_, _>>(),
                        "cores_busy": median(per(m, &|r| r.cores())),
                        "rounds": rs.iter().map(|r| serde_json::json!({
                            "rate": r.rate(),
                            "p50_us": r.p(0.5),
                            "p99_us": r.p(0.99),
                            "done": r.done,
                            "failures": r.failures,
                        })).collect::<Vec<_>>(),
                    }),
                )
            })
            .collect();
        let json = serde_json::json!({
            "clients": args.clients,
            "seconds": args.seconds,
            "runs": args.runs,
            "body": args.body,
            "gate_runtime": gate_runtime(args),
            "modes": by_mode,
            "gate_nats_over_direct": {
                "rate": rate_ratio,
                "p99": p99_ratio,
                "rate_per_round": rate_ratios,
                "p99_per_round": p99_ratios,
                "rate_target": RATE_TARGET,
                "p99_target": P99_TARGET,
                "rate_met": rate_ratio >= RATE_TARGET,
                "p99_met": p99_ratio <= P99_TARGET,
            },
            "added_over_in_process_us": {
                "p50": median(added_p50),
                "p99": median(added_p99),
            },
            "failures": failures,
        });
        println!("{json}");
    } else {
        print!("{t}");
    }
    if failures > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn gate_runtime(args: &Args) -> &'static str {
    if args.gate_current_thread {
        "current-thread"
    } else {
        "multi-thread"
    }
}

fn list(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}
