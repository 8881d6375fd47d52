//! Measures the user-space heap the gate holds per idle connection.
//!
//! ```text
//! cargo run --release -p gatekit-agent --example idle_heap -- --clients 5000
//! ```
//!
//! Gate mode (the default) runs a gate on 127.0.0.1 with a counting global allocator, warms it up
//! with throw-away connections, then starts this same program as a child process
//! (`--clients N --target ADDR`) that opens N connections, handshakes each, exchanges one PING/PONG
//! and holds them idle until its stdin closes. The gate's live heap is recorded before and after;
//! the difference divided by N is the cost of one idle connection. Finally the child's stdin is
//! closed and every session must get its Disconnect (exit code 1 otherwise).
//!
//! Options: `--clients N` (default 5000; up to about 19,000 with a 20,000 open-file limit),
//! `--warmup N` (default 100), `--idle-secs S` (default 1), `--ping-secs S` (client PING interval
//! while idle, default 0: only the PING after the handshake).

use bytes::{Bytes, BytesMut};
use gatekit_agent::{
    AgentContext, AgentFactory, BackendError, Backends, BoxFuture, BoxStream, CloseReason, Command,
    Connection, Gate, Learner, NativeAgent, Services, Session,
};
use gatekit_codec::{Handshake, NativeCodec, Packet, PROTOCOL_VERSION};
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ExitCode, Stdio};
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// ----- counting allocator -----

/// Wraps the system allocator and counts live bytes and live allocations.
struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static LIVE_ALLOCS: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
            LIVE_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
            LIVE_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        LIVE_ALLOCS.fetch_sub(1, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[derive(Debug, Clone, Copy)]
struct HeapSample {
    bytes: isize,
    allocs: isize,
    rss_kib: Option<i64>,
}

fn sample() -> HeapSample {
    HeapSample {
        bytes: LIVE_BYTES.load(Ordering::Relaxed),
        allocs: LIVE_ALLOCS.load(Ordering::Relaxed),
        rss_kib: rss_kib(),
    }
}

/// VmRSS from /proc/self/status, in KiB.
fn rss_kib() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

// ----- options -----

#[derive(Debug)]
struct Options {
    clients: usize,
    warmup: usize,
    idle: Duration,
    ping: Option<Duration>,
    target: Option<SocketAddr>,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        clients: 5000,
        warmup: 100,
        idle: Duration::from_secs(1),
        ping: None,
        target: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--clients" => o.clients = value()?.parse().map_err(|e| format!("--clients: {e}"))?,
            "--warmup" => o.warmup = value()?.parse().map_err(|e| format!("--warmup: {e}"))?,
            "--idle-secs" => {
                o.idle = Duration::from_secs_f64(
                    value()?.parse().map_err(|e| format!("--idle-secs: {e}"))?,
                )
            }
            "--ping-secs" => {
                let s: f64 = value()?.parse().map_err(|e| format!("--ping-secs: {e}"))?;
                o.ping = (s > 0.0).then(|| Duration::from_secs_f64(s));
            }
            "--target" => {
                let t: SocketAddr = value()?.parse().map_err(|e| format!("--target: {e}"))?;
                if !t.ip().is_loopback() {
                    return Err(format!("{t} is not a loopback address"));
                }
                o.target = Some(t);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if o.clients == 0 || o.clients > 19_000 {
        return Err("--clients must be 1..=19000".into());
    }
    Ok(o)
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("idle_heap: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match opts.target {
        Some(target) => rt.block_on(client_main(target, opts.clients, opts.ping)),
        None => rt.block_on(gate_main(&opts)),
    }
}

// ----- gate side -----

#[derive(Default)]
struct CountLearner {
    connects: AtomicUsize,
    disconnects: AtomicUsize,
}

impl Learner for CountLearner {
    fn connect(&self, _: &Session) {
        self.connects.fetch_add(1, Ordering::Relaxed);
    }
    fn disconnect(&self, _: &Session, _: CloseReason) {
        self.disconnects.fetch_add(1, Ordering::Relaxed);
    }
}

/// The native agent, noting the size of the future it creates per connection.
struct Measured {
    future_size: Arc<AtomicUsize>,
}

impl AgentFactory for Measured {
    fn run(&self, stream: BoxStream, ctx: AgentContext) -> BoxFuture<()> {
        let fut = NativeAgent.run(stream, ctx);
        self.future_size
            .store(std::mem::size_of_val(&*fut), Ordering::Relaxed);
        fut
    }
}

async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while !done() {
        if Instant::now() > end {
            eprintln!("idle_heap: timed out waiting for {what}");
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// A child process holding `clients` connections to `addr`.
struct ClientProcess {
    child: Child,
}

impl ClientProcess {
    /// Starts the child and waits for its "ready" line.
    async fn start(
        addr: SocketAddr,
        clients: usize,
        ping: Option<Duration>,
    ) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut cmd = std::process::Command::new(exe);
        cmd.args([
            "--clients",
            &clients.to_string(),
            "--target",
            &addr.to_string(),
        ]);
        if let Some(p) = ping {
            cmd.args(["--ping-secs", &p.as_secs_f64().to_string()]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("spawn: {e}"))?;
        let stdout = child.stdout.take().expect("piped");
        let mut proc = ClientProcess { child };
        let line = tokio::time::timeout(
            Duration::from_secs(180),
            tokio::task::spawn_blocking(move || {
                let mut line = String::new();
                BufReader::new(stdout).read_line(&mut line).map(|_| line)
            }),
        )
        .await;
        match line {
            Ok(Ok(Ok(l))) if l.trim() == "ready" => Ok(proc),
            other => {
                proc.kill();
                Err(format!("client process not ready: {other:?}"))
            }
        }
    }

    /// Closes the child's stdin (it closes its sockets and exits) and waits for it.
    async fn finish(mut self) -> Result<(), String> {
        drop(self.child.stdin.take());
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => return Err(format!("client process: {status}")),
                Ok(None) if Instant::now() < end => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                _ => {
                    self.kill();
                    return Err("client process did not exit".into());
                }
            }
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn per_conn(delta: f64, n: usize) -> f64 {
    delta / n as f64
}

async fn gate_main(opts: &Options) -> ExitCode {
    println!("struct sizes (bytes):");
    println!(
        "  Connection {}  Command {}  Session {}  Gate {}",
        std::mem::size_of::<Connection>(),
        std::mem::size_of::<Command>(),
        std::mem::size_of::<Session>(),
        std::mem::size_of::<Gate>(),
    );
    let learner = Arc::new(CountLearner::default());
    let future_size = Arc::new(AtomicUsize::new(0));
    let gate =
        Gate::builder()
            .services(Services {
                // A module like a real gate's (idle clients never call it).
                backends:
                    Backends::new().with(
                        "echo",
                        |_: Arc<Session>, _: String, body: Bytes| async move {
                            Ok::<_, BackendError>(body)
                        },
                    ),
                learner: learner.clone(),
                ..Services::default()
            })
            .factory(Measured {
                future_size: future_size.clone(),
            })
            .max_connections(opts.clients + opts.warmup + 100)
            .build();
    let (addr, _accept) = match gate.listen("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("idle_heap: listen: {e}");
            return ExitCode::FAILURE;
        }
    };

    // Warm up: one-time allocations (runtime, timer wheel, I/O driver pages, thread-local
    // buffers, map capacity for the warm-up count) are not charged to the connections measured.
    if opts.warmup > 0 {
        let warm = match ClientProcess::start(addr, opts.warmup, None).await {
            Ok(p) => p,
            Err(e) => {
                eprintln!("idle_heap: warm-up: {e}");
                return ExitCode::FAILURE;
            }
        };
        let ok = wait_for("warm-up sessions", Duration::from_secs(30), || {
            gate.session_count() == opts.warmup
        })
        .await;
        if let Err(e) = warm.finish().await {
            eprintln!("idle_heap: warm-up: {e}");
            return ExitCode::FAILURE;
        }
        if !ok
            || !wait_for("warm-up disconnects", Duration::from_secs(30), || {
                gate.connection_count() == 0
            })
            .await
        {
            return ExitCode::FAILURE;
        }
        // Let the runtime settle (timer entries, deferred frees).
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let baseline_disconnects = learner.disconnects.load(Ordering::Relaxed);
    let before = sample();

    let n = opts.clients;
    let started = Instant::now();
    let clients = match ClientProcess::start(addr, n, opts.ping).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("idle_heap: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !wait_for("sessions", Duration::from_secs(60), || {
        gate.session_count() == n
    })
    .await
    {
        let _ = clients.finish().await;
        return ExitCode::FAILURE;
    }
    println!(
        "{n} connections handshaken in {:.2?}; idle for {:.1?}",
        started.elapsed(),
        opts.idle
    );
    tokio::time::sleep(opts.idle).await;
    let idle = sample();

    let bytes = idle.bytes - before.bytes;
    let allocs = idle.allocs - before.allocs;
    println!(
        "  future per connection (NativeAgent::run, boxed): {} bytes",
        future_size.load(Ordering::Relaxed)
    );
    println!(
        "heap: {} -> {} live bytes, {} -> {} live allocations",
        before.bytes, idle.bytes, before.allocs, idle.allocs
    );
    println!(
        "per idle connection: {:.1} bytes, {:.2} allocations",
        per_conn(bytes as f64, n),
        per_conn(allocs as f64, n)
    );
    if let (Some(a), Some(b)) = (before.rss_kib, idle.rss_kib) {
        println!(
            "RSS: {a} -> {b} KiB; per idle connection: {:.1} bytes",
            per_conn(((b - a) * 1024) as f64, n)
        );
    }
    let _ = std::io::stdout().flush();

    if let Err(e) = clients.finish().await {
        eprintln!("idle_heap: {e}");
    }
    let ok = wait_for("disconnects", Duration::from_secs(30), || {
        learner.disconnects.load(Ordering::Relaxed) - baseline_disconnects == n
    })
    .await;
    let got = learner.disconnects.load(Ordering::Relaxed) - baseline_disconnects;
    println!("disconnects: {got} of {n}");
    if !ok || got != n {
        return ExitCode::FAILURE;
    }
    let after = sample();
    println!(
        "after all disconnects: {} live bytes ({:+} vs before the clients), {} live allocations ({:+})",
        after.bytes,
        after.bytes - before.bytes,
        after.allocs,
        after.allocs - before.allocs
    );
    ExitCode::SUCCESS
}

// ----- client side -----

/// Connections opened at once.
const CONNECT_CONCURRENCY: usize = 128;

async fn client_main(target: SocketAddr, n: usize, ping: Option<Duration>) -> ExitCode {
    let sem = Arc::new(tokio::sync::Semaphore::new(CONNECT_CONCURRENCY));
    let mut opening = Vec::with_capacity(n);
    for _ in 0..n {
        let sem = sem.clone();
        opening.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.expect("semaphore open");
            tokio::time::timeout(Duration::from_secs(60), open(target)).await
        }));
    }
    let mut streams = Vec::with_capacity(n);
    for o in opening {
        match o.await {
            Ok(Ok(Ok(s))) => streams.push(s),
            Ok(Ok(Err(e))) => {
                eprintln!("idle_heap client: {e}");
                return ExitCode::FAILURE;
            }
            Ok(Err(_)) => {
                eprintln!("idle_heap client: connection timed out");
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("idle_heap client: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let holders: Vec<_> = streams
        .into_iter()
        .map(|(s, codec, buf)| tokio::spawn(hold(s, codec, buf, ping)))
        .collect();
    println!("ready");
    let _ = std::io::stdout().flush();
    // Hold until stdin closes.
    let _ = tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    })
    .await;
    for h in &holders {
        h.abort();
    }
    for h in holders {
        let _ = h.await;
    }
    ExitCode::SUCCESS
}

async fn write_packet(s: &mut TcpStream, codec: &NativeCodec, p: &Packet) -> std::io::Result<()> {
    let mut out = BytesMut::new();
    codec
        .encode(p, &mut out)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    s.write_all(&out).await
}

async fn read_packet(
    s: &mut TcpStream,
    codec: &mut NativeCodec,
    buf: &mut BytesMut,
) -> std::io::Result<Option<Packet>> {
    loop {
        if let Some(p) = codec
            .decode(buf)
            .map_err(|e| std::io::Error::other(e.to_string()))?
        {
            return Ok(Some(p));
        }
        if s.read_buf(buf).await? == 0 {
            return Ok(None);
        }
    }
}

/// Connects, handshakes, exchanges one PING/PONG.
async fn open(target: SocketAddr) -> std::io::Result<(TcpStream, NativeCodec, BytesMut)> {
    let mut s = TcpStream::connect(target).await?;
    let _ = s.set_nodelay(true);
    let mut codec = NativeCodec::default();
    let mut buf = BytesMut::new();
    let hs = Packet::Handshake(Handshake {
        version: PROTOCOL_VERSION,
        heartbeat_secs: 0,
        token: Bytes::new(),
    });
    write_packet(&mut s, &codec, &hs).await?;
    match read_packet(&mut s, &mut codec, &mut buf).await? {
        Some(Packet::Welcome(_)) => {}
        other => {
            return Err(std::io::Error::other(format!(
                "expected WELCOME, got {other:?}"
            )))
        }
    }
    write_packet(&mut s, &codec, &Packet::Ping).await?;
    match read_packet(&mut s, &mut codec, &mut buf).await? {
        Some(Packet::Pong) => {}
        other => {
            return Err(std::io::Error::other(format!(
                "expected PONG, got {other:?}"
            )))
        }
    }
    Ok((s, codec, buf))
}

/// Keeps a connection idle: answers PINGs, sends one every `ping` if asked, discards the rest.
async fn hold(mut s: TcpStream, mut codec: NativeCodec, mut buf: BytesMut, ping: Option<Duration>) {
    let mut tick = ping.map(tokio::time::interval);
    if let Some(t) = tick.as_mut() {
        t.tick().await; // the first tick is immediate
    }
    loop {
        tokio::select! {
            p = read_packet(&mut s, &mut codec, &mut buf) => match p {
                Ok(Some(Packet::Ping)) => {
                    if write_packet(&mut s, &codec, &Packet::Pong).await.is_err() {
                        return;
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return,
            },
            _ = async { tick.as_mut().expect("guarded").tick().await }, if tick.is_some() => {
                if write_packet(&mut s, &codec, &Packet::Ping).await.is_err() {
                    return;
                }
            }
        }
    }
}
