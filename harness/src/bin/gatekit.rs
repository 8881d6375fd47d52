//! `gatekit`: the harness command line.

use clap::{Parser, Subcommand};
use gatekit_harness::report::{Report, Thresholds};
use gatekit_harness::scenario::{self, Dur, Mode, Scenario};
use gatekit_harness::{sim, tcp};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "gatekit",
    version,
    about = "Load and verification harness for the gatekit gate"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a scenario and prints its report; exits 1 if an invariant or threshold fails.
    Run(RunArgs),
    /// Lists the built-in scenarios, or prints one as TOML.
    Scenarios {
        /// Print this scenario as a TOML file to start from.
        #[arg(long)]
        toml: Option<String>,
    },
    /// Round trips per second and latency of the gate, over each protocol asked for, next to a
    /// raw tokio echo server, in turn, medians over several runs, and their ratios.
    Rtt {
        /// The wire protocol the gate serves and its clients speak (repeatable, or comma-separated:
        /// each round runs the raw echo server, then the gate over each protocol, in this order).
        /// The raw echo server is the same baseline for all: LDC frames of the native payload.
        #[arg(long = "protocol", value_enum, value_delimiter = ',', default_values_t = [gatekit_harness::listen::WireProtocol::Native])]
        protocols: Vec<gatekit_harness::listen::WireProtocol>,
        /// The transports (repeatable, or comma-separated): each has its own baseline (tcp: tokio
        /// LDC echo; tls: the same over tokio-rustls; ws: a tungstenite echo; wss: that over
        /// tokio-rustls), run before the gate over each protocol on that transport.
        #[arg(long = "transport", value_enum, value_delimiter = ',', default_values_t = [gatekit_harness::listen::TransportKind::Tcp])]
        transports: Vec<gatekit_harness::listen::TransportKind>,
        /// Connections.
        #[arg(long, default_value_t = 1000)]
        clients: usize,
        /// Requests each connection keeps outstanding.
        #[arg(long, default_value_t = 4)]
        window: usize,
        /// Request body bytes.
        #[arg(long, default_value_t = 32)]
        body: usize,
        /// Measured time per run.
        #[arg(long, default_value = "5s")]
        seconds: Dur,
        /// Runs per server (medians are reported).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Fail (exit 1) if gatekit's rate, over any protocol, is below this fraction of the raw
        /// server's.
        #[arg(long)]
        min_rate_ratio: Option<f64>,
        /// Fail (exit 1) if gatekit's p99, over any protocol, is above this multiple of the raw
        /// server's.
        #[arg(long)]
        max_p99_ratio: Option<f64>,
        /// Also write the results as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Run each server in a child process (on by itself past 9,000 clients, where clients and
        /// server together would pass one process's open-file limit).
        #[arg(long)]
        server_process: bool,
        /// tokio `global_queue_interval` of both servers' runtimes (default: tokio's).
        #[arg(long)]
        global_queue_interval: Option<u32>,
        /// The runtime both servers run on, one thread each.
        #[arg(long, value_enum, default_value = "current-thread")]
        server_runtime: gatekit_harness::rtt::ServerRuntime,
        /// Open loop: offer this many round trips per second in total (at most --window
        /// outstanding per connection); latency is then compared at the same load.
        #[arg(long)]
        rate: Option<f64>,
    },
    /// One `rtt` server in its own process: prints `listening ADDR`, stops when stdin closes.
    #[command(hide = true)]
    RttServer {
        /// raw or gatekit.
        #[arg(long)]
        server: String,
        /// The gate's wire protocol (with --server gatekit).
        #[arg(long, value_enum, default_value = "native")]
        protocol: gatekit_harness::listen::WireProtocol,
        /// The transport it serves over.
        #[arg(long, value_enum, default_value = "tcp")]
        transport: gatekit_harness::listen::TransportKind,
        /// The PEM certificate of a tls or wss server.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// Its PEM private key.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// The runtime to run on.
        #[arg(long, value_enum, default_value = "current-thread")]
        server_runtime: gatekit_harness::rtt::ServerRuntime,
        /// tokio `global_queue_interval` of the runtime.
        #[arg(long)]
        global_queue_interval: Option<u32>,
    },
    /// Runs the built-in gate with fake back ends and prints live counts.
    Serve(ServeCommand),
    /// Opens many idle connections to a gate from this process, holds them (pinging) until standard
    /// input closes or --hold ends, then closes them; JSON lines on stdout. A worker of `scale`.
    Hold(HoldArgs),
    /// Connection scale across processes: gate processes (sharing a port) and worker processes;
    /// connect rate, gate memory per idle connection and Disconnects, medians over runs.
    Scale(ScaleArgs),
    /// A fake back end over NATS: answers every request on `<prefix>.rpc.<module>.>` (queue group
    /// `<module>`) with its body; `{"event":"ready"}` on stdout once subscribed.
    Backend(BackendArgs),
    /// A cluster on loopback: nats-server, back-end processes, gate processes whose echo goes
    /// over NATS, and one `gatekit run --target --control` per gate; PASS if every run passed and
    /// every process exited 0.
    Cluster(ClusterArgs),
}

#[derive(clap::Args)]
struct BackendArgs {
    /// The NATS server, e.g. nats://127.0.0.1:4222.
    #[arg(long)]
    nats: String,
    /// The module to serve.
    #[arg(long, default_value = "echo")]
    module: String,
    /// The first token of every subject (the gate's `[nats] prefix`).
    #[arg(long, default_value = "gatekit")]
    prefix: String,
    /// Time before each answer.
    #[arg(long, default_value = "0ms")]
    latency: Dur,
    /// Also stop when standard input closes.
    #[arg(long)]
    stdin_control: bool,
    /// Answer every Nth request with a wrong body (for tests that the cluster's checks fail).
    #[arg(long, hide = true)]
    corrupt_every: Option<u64>,
}

#[derive(clap::Args)]
struct ClusterArgs {
    /// Clients in all, split over the gates.
    #[arg(long, default_value_t = 200)]
    clients: usize,
    /// How long the clients send.
    #[arg(long, default_value = "5s")]
    duration: Dur,
    /// Gate processes (at least 2; the last is SIGKILLed by the directory phase).
    #[arg(long, default_value_t = 3)]
    gates: usize,
    /// Back-end processes (one NATS queue group).
    #[arg(long, default_value_t = 2)]
    backends: usize,
    /// The runs' scenario (built-in name or TOML file); its `[gate]` section sets the gates'
    /// limits.
    #[arg(long, default_value = "steady")]
    scenario: String,
    /// Time before each back-end answer.
    #[arg(long, default_value = "0ms")]
    latency: Dur,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Make the back ends answer every Nth request wrongly (to show the cluster can fail).
    #[arg(long, hide = true)]
    corrupt_every: Option<u64>,
    /// The gates' duplicate-login policy: kick, refuse or allow (allow fails the
    /// duplicate_login invariant, by design).
    #[arg(long, default_value = "kick")]
    duplicate_login: gatekit_agent::DuplicateLogin,
    /// The gates' `[store] grace`: a killed gate's users must be offline within it.
    #[arg(long, default_value = "4s")]
    grace: Dur,
    /// The gates' `[store] gate_ttl` (at most the grace).
    #[arg(long, default_value = "1s")]
    gate_ttl: Dur,
    /// Users connected for the directory's pushes, round-robin over the gates.
    #[arg(long, default_value_t = 30)]
    users: usize,
    /// `users.send` per user.
    #[arg(long, default_value_t = 5)]
    pushes: usize,
    /// Users logged in twice at once, on two gates.
    #[arg(long, default_value_t = 10)]
    pairs: usize,
    /// Require the killed gate's users offline within this instead of the grace (for tests that
    /// the check can fail).
    #[arg(long, hide = true)]
    offline_within: Option<Dur>,
    /// Also measure the directory for this long: users.send throughput and latency at a fixed
    /// concurrency, Redis commands per bind and at rest, Redis memory per online user.
    #[arg(long)]
    measure_push: Option<Dur>,
    /// `users.send` requests in flight at once while measuring.
    #[arg(long, default_value_t = 32)]
    push_concurrency: usize,
    /// Users connected at once to measure the cost of a bind.
    #[arg(long, default_value_t = 100)]
    bind_users: usize,
    /// Defects injected into every gate's own code (`gatekit serve --inject-fault`, e.g.
    /// `drop-push=4`; a build with the `fault-injection` feature), to show the checks fail.
    #[arg(long, hide = true)]
    gate_fault: Option<String>,
}

fn backend(args: BackendArgs) -> Result<ExitCode, String> {
    let opts = gatekit_harness::nats_echo::BackendOptions {
        nats: args.nats,
        module: args.module,
        prefix: args.prefix,
        latency: args.latency.0,
        stdin_control: args.stdin_control,
        corrupt_every: args.corrupt_every,
    };
    runtime()?.block_on(gatekit_harness::nats_echo::run(opts, print_json_line))?;
    Ok(ExitCode::SUCCESS)
}

fn cluster(args: ClusterArgs) -> Result<ExitCode, String> {
    let opts = gatekit_harness::cluster::ClusterOptions {
        exe: std::env::current_exe().map_err(|e| format!("finding gatekit itself: {e}"))?,
        clients: args.clients,
        duration: args.duration,
        gates: args.gates,
        backends: args.backends,
        scenario: args.scenario,
        latency: args.latency.0,
        corrupt_every: args.corrupt_every,
        duplicate_login: args.duplicate_login,
        grace: args.grace,
        gate_ttl: args.gate_ttl,
        offline_within: args.offline_within,
        users: args.users,
        pushes_per_user: args.pushes,
        pairs: args.pairs,
        measure: args
            .measure_push
            .map(|d| gatekit_harness::cluster::measure::MeasureOptions {
                duration: d.0,
                concurrency: args.push_concurrency,
                bind_users: args.bind_users,
            }),
        gate_fault: args.gate_fault,
    };
    let report = gatekit_harness::cluster::run(&opts)?;
    println!("{report}");
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).expect("report serialises");
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[derive(clap::Args)]
struct ServeCommand {
    /// The server's own options (the same as `gatekit-server`'s).
    #[command(flatten)]
    server: gatekit_server::cli::ServeArgs,
    /// Address to listen on for the native protocol over TCP; ignored when --listen or the
    /// config file names listeners.
    #[arg(long)]
    addr: Option<SocketAddr>,
    /// Stop after this long (default: at SIGTERM or SIGINT).
    #[arg(long)]
    duration: Option<Dur>,
    /// Serve `echo` with the harness's fake back end shaped by this scenario (latency, errors,
    /// faults): a built-in name or a scenario TOML file (`gatekit scenarios --toml steady >
    /// my.toml`). Without --config, it is `steady` and the gate's timeouts come from it too;
    /// with --config and no --scenario, the file's `[backends]` hold as they are.
    #[arg(long)]
    scenario: Option<String>,
    /// How often to print counts.
    #[arg(long, default_value = "1s")]
    status_every: Dur,
    /// Print JSON lines on stdout instead of text on stderr.
    #[arg(long)]
    json: bool,
    /// Also stop when standard input closes.
    #[arg(long)]
    stdin_control: bool,
    /// tokio `global_queue_interval` of the gate's runtime (default: tokio's). A low value (2)
    /// keeps a saturated multi-thread gate fair to every connection (docs/ARCHITECTURE.md §5c).
    #[arg(long)]
    global_queue_interval: Option<u32>,
    /// The gate's runtime: multi-thread (one worker per core), or current-thread (one thread; run
    /// one process per core with --reuse-port).
    #[arg(long, value_enum, default_value = "multi-thread")]
    runtime: gatekit_harness::rtt::ServerRuntime,
    /// Keep a record of every session and serve it on this address (loopback), for `gatekit run
    /// --target .. --control ADDR`. Memory grows with every session: for test runs only.
    #[arg(long)]
    control: Option<SocketAddr>,
    /// Broadcast this many numbered pushes per second to every session.
    #[arg(long, default_value_t = 0.0)]
    push_rate: f64,
    /// Defects to inject into the gate's own code, e.g. `drop-response=7,skip-heartbeat=2` (needs
    /// a build with the `fault-injection` feature; for tests of the harness).
    #[arg(long)]
    inject_fault: Option<String>,
}

#[derive(clap::Args)]
struct HoldArgs {
    /// The gate (loopback), e.g. from `gatekit serve`.
    #[arg(long)]
    target: SocketAddr,
    /// Connections to open.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// First source address (127.0.0.x); the next ones are used every --per-source connections.
    #[arg(long)]
    source: Option<std::net::Ipv4Addr>,
    /// Connections per source address (a fuller port range makes connects slower).
    #[arg(long, default_value_t = gatekit_harness::source_address::DEFAULT_PER_SOURCE)]
    per_source: usize,
    /// Connects and handshakes in flight at once.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Ping interval to ask the gate for.
    #[arg(long, default_value = "5s")]
    ping: Dur,
    /// Time allowed for one connect and handshake.
    #[arg(long, default_value = "10s")]
    handshake_timeout: Dur,
    /// Hold this long, then leave (default: until standard input closes).
    #[arg(long)]
    hold: Option<Dur>,
    /// The transport under the native protocol (the gate's listener must serve it).
    #[arg(long, value_enum, default_value_t = gatekit_harness::listen::TransportKind::Tcp)]
    transport: gatekit_harness::listen::TransportKind,
    /// The PEM certificate the gate's is checked against (tls, wss).
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// The name the gate's certificate must carry (default: the target's IP address).
    #[arg(long)]
    tls_server_name: Option<String>,
    /// The WebSocket path (ws, wss).
    #[arg(long, default_value = "/")]
    ws_path: String,
    /// Log every connection in with an HMAC token of this secret (the gate's `[auth] hmac`),
    /// as user `<--user-prefix><index>`.
    #[arg(long)]
    hmac_secret: Option<String>,
    /// The user id prefix with --hmac-secret.
    #[arg(long, default_value = "user-")]
    user_prefix: String,
}

#[derive(clap::Args)]
struct ScaleArgs {
    /// Connection counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,19000")]
    connections: Vec<usize>,
    /// Gate processes sharing the port (SO_REUSEPORT).
    #[arg(long, default_value_t = 1)]
    gates: usize,
    /// Client worker processes (0: as few as the open-file limit allows).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Runs per count (medians are reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// How long every connection is held idle before the gate's memory is read.
    #[arg(long, default_value = "10s")]
    hold: Dur,
    /// Ping interval the clients ask for.
    #[arg(long, default_value = "2s")]
    ping: Dur,
    /// Connects and handshakes in flight per worker.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Fail (exit 1) if the gate's memory per idle connection (median) is above this many bytes
    /// (issue 5's target: 4096).
    #[arg(long)]
    max_bytes_per_connection: Option<f64>,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// The transport under the native protocol: the gates listen on native+TRANSPORT:// (tls
    /// and wss with a self-signed certificate) and the workers connect over it.
    #[arg(long, value_enum, default_value_t = gatekit_harness::listen::TransportKind::Tcp)]
    transport: gatekit_harness::listen::TransportKind,
    /// With the cluster's user directory: start a redis-server, keep every gate's sessions
    /// there and log every connection in as its own user; reports Redis memory per user and
    /// script calls per bind and per heartbeat.
    #[arg(long)]
    directory: bool,
    /// With --directory: the gates' storage heartbeat interval (each one a Redis script call
    /// per connection).
    #[arg(long, default_value = "2s")]
    heartbeat: Dur,
}

#[derive(clap::Args)]
struct RunArgs {
    /// A built-in scenario (see `gatekit scenarios`).
    #[arg(long, default_value = "smoke")]
    scenario: String,
    /// A scenario TOML file (overrides --scenario).
    #[arg(long)]
    file: Option<PathBuf>,
    /// sim (virtual clock, deterministic) or tcp (loopback sockets).
    #[arg(long)]
    mode: Option<Mode>,
    /// The wire protocol the clients speak (and the built-in gate serves).
    #[arg(long, value_enum)]
    protocol: Option<gatekit_harness::listen::WireProtocol>,
    /// Number of clients.
    #[arg(long)]
    clients: Option<usize>,
    /// How long clients send (e.g. 10s, 2m).
    #[arg(long)]
    duration: Option<Dur>,
    /// Messages per second per client.
    #[arg(long)]
    rate: Option<f64>,
    /// Storage heartbeat interval.
    #[arg(long)]
    heartbeat: Option<Dur>,
    /// Seed.
    #[arg(long)]
    seed: Option<u64>,
    /// An external gate (loopback only), e.g. 127.0.0.1:7000 from `gatekit serve`; tcp mode.
    #[arg(long)]
    target: Option<SocketAddr>,
    /// The transport under the protocol (tcp mode): the built-in gate listens over it with a
    /// self-signed certificate its clients trust, or the clients reach --target over it. sim mode
    /// has no transport and refuses any but tcp.
    #[arg(long, value_enum, default_value_t = gatekit_harness::listen::TransportKind::Tcp)]
    transport: gatekit_harness::listen::TransportKind,
    /// The PEM certificate (CA or the gate's own) that --target's certificate is checked against,
    /// for --transport tls or wss.
    #[arg(long, requires = "target")]
    tls_ca: Option<PathBuf>,
    /// The name --target's certificate must carry (default: the target's IP address).
    #[arg(long, requires = "target")]
    tls_server_name: Option<String>,
    /// The WebSocket path to upgrade, for --transport ws or wss (the built-in gate upgrades only
    /// this one).
    #[arg(long, default_value = "/")]
    ws_path: String,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Fail if p99 latency is above this (e.g. 20ms).
    #[arg(long)]
    max_p99: Option<Dur>,
    /// Fail if responses per second are below this.
    #[arg(long)]
    min_rate: Option<f64>,
    /// Fail if the fraction of requests without an ok response is above this.
    #[arg(long)]
    max_error_rate: Option<f64>,
    /// The external gate's control endpoint (`gatekit serve --control ADDR`): its side of the run
    /// (Disconnects, counters, buffers, pushes) is then checked too. The gate must serve no other
    /// clients during the run.
    #[arg(long, requires = "target")]
    control: Option<SocketAddr>,
    /// Defects to inject into the built-in gate's own code, e.g. `drop-response=7` (needs a build
    /// with the `fault-injection` feature; for tests of the harness).
    #[arg(long, conflicts_with = "target")]
    inject_fault: Option<String>,
}

/// The faults of `--inject-fault`.
#[cfg(feature = "fault-injection")]
fn faults(text: &Option<String>) -> Result<gatekit_agent::Faults, String> {
    match text {
        Some(t) => t.parse().map_err(|e| format!("--inject-fault: {e}")),
        None => Ok(gatekit_agent::Faults::default()),
    }
}

/// Without the `fault-injection` feature, `--inject-fault` is refused.
#[cfg(not(feature = "fault-injection"))]
fn faults(text: &Option<String>) -> Result<(), String> {
    match text {
        Some(_) => Err("--inject-fault: this gatekit was built without the `fault-injection` feature (cargo build -p gatekit-harness --features fault-injection)".into()),
        None => Ok(()),
    }
}

fn scenario_for(args: &RunArgs) -> Result<Scenario, String> {
    let mut s = match &args.file {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            Scenario::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => scenario::builtin(&args.scenario).ok_or_else(|| {
            format!(
                "no built-in scenario {:?}; see `gatekit scenarios`",
                args.scenario
            )
        })?,
    };
    if let Some(m) = args.mode {
        s.mode = m;
    }
    if let Some(p) = args.protocol {
        s.protocol = p;
    }
    if args.target.is_some() {
        s.mode = Mode::Tcp;
    }
    if let Some(c) = args.clients {
        s.clients = c;
    }
    if let Some(d) = args.duration {
        s.duration = d;
    }
    if let Some(r) = args.rate {
        s.rate = r;
    }
    if let Some(h) = args.heartbeat {
        s.gate.heartbeat = h;
    }
    if let Some(seed) = args.seed {
        s.seed = seed;
    }
    s.validate()?;
    Ok(s)
}

fn progress_bar(total: usize, what: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
    pb.set_style(
        ProgressStyle::with_template("{spinner} {elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .expect("template")
            .progress_chars("=> "),
    );
    pb.set_message(what.to_owned());
    pb
}

fn run(args: RunArgs) -> Result<ExitCode, String> {
    let s = scenario_for(&args)?;
    let thresholds = Thresholds {
        max_p99: args.max_p99,
        min_rate: args.min_rate,
        max_error_rate: args.max_error_rate,
    };
    #[cfg_attr(
        not(feature = "fault-injection"),
        allow(clippy::let_unit_value, unused_variables)
    )]
    let faults = faults(&args.inject_fault)?;
    let data = match s.mode {
        Mode::Sim if args.transport != gatekit_harness::listen::TransportKind::Tcp => {
            return Err(format!(
                "--transport {}: sim mode runs on a virtual clock with no sockets, so no transport; add --mode tcp",
                args.transport
            ));
        }
        Mode::Sim => {
            let pb = progress_bar(s.clients, "clients running (virtual time)");
            let sabotage = sim::Sabotage {
                #[cfg(feature = "fault-injection")]
                faults: faults.clone(),
                ..sim::Sabotage::default()
            };
            let data = sim::run_with(&s, sabotage, |_, live, total| {
                pb.set_position((total - live) as u64);
            });
            pb.finish_and_clear();
            eprintln!(
                "sim: {} events in {:.2} s of wall time ({:.0} events/s)",
                data.events,
                data.wall.as_secs_f64(),
                data.events as f64 / data.wall.as_secs_f64().max(1e-9)
            );
            data
        }
        Mode::Tcp => {
            let rt = runtime()?;
            let pb = progress_bar(s.clients, "clients finished");
            let pb2 = pb.clone();
            if !args.ws_path.starts_with('/') {
                return Err(format!(
                    "--ws-path {:?}: a WebSocket path starts with /",
                    args.ws_path
                ));
            }
            let opts = tcp::TcpRun {
                target: args.target,
                control: args.control,
                transport: args.transport,
                tls_ca: args.tls_ca,
                tls_server_name: args.tls_server_name,
                ws_path: Some(args.ws_path),
                #[cfg(feature = "fault-injection")]
                faults,
            };
            let data = rt.block_on(tcp::run_with(&s, &opts, move |done, _| {
                pb2.set_position(done as u64)
            }))?;
            pb.finish_and_clear();
            rt.shutdown_timeout(Duration::from_secs(1));
            data
        }
    };
    let report = Report::new(&data, &thresholds);
    println!("{report}");
    if let Some(path) = &args.json {
        std::fs::write(path, report.to_json()).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    runtime_with(gatekit_harness::rtt::ServerRuntime::MultiThread, None)
}

fn runtime_with(
    flavor: gatekit_harness::rtt::ServerRuntime,
    global_queue_interval: Option<u32>,
) -> Result<tokio::runtime::Runtime, String> {
    let mut b = match flavor {
        gatekit_harness::rtt::ServerRuntime::CurrentThread => {
            tokio::runtime::Builder::new_current_thread()
        }
        gatekit_harness::rtt::ServerRuntime::MultiThread => {
            tokio::runtime::Builder::new_multi_thread()
        }
    };
    b.enable_all();
    if let Some(n) = global_queue_interval {
        if n == 0 {
            return Err("--global-queue-interval must be at least 1".to_owned());
        }
        b.global_queue_interval(n);
    }
    b.build().map_err(|e| format!("tokio runtime: {e}"))
}

/// A built-in scenario by name, or a scenario file.
fn named_or_file(name: &str) -> Result<Scenario, String> {
    if let Some(s) = scenario::builtin(name) {
        return Ok(s);
    }
    let path = std::path::Path::new(name);
    if !path.exists() {
        return Err(format!(
            "no built-in scenario or file {name:?}; see `gatekit scenarios`"
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
    Scenario::from_toml(&text).map_err(|e| format!("{name}: {e}"))
}

fn serve(args: ServeCommand) -> Result<ExitCode, String> {
    if args.server.print_config {
        print!("{}", gatekit_server::config::DEFAULT_TOML);
        return Ok(ExitCode::SUCCESS);
    }
    let scenario = named_or_file(args.scenario.as_deref().unwrap_or("steady"))?;
    scenario.validate()?;
    let fake_echo = args.server.config.is_none() || args.scenario.is_some();
    let refuse = |e: &dyn std::fmt::Display| {
        eprintln!("gatekit serve: {e}");
        Ok(ExitCode::from(2))
    };
    let mut config = match args.server.base() {
        Ok(c) => c,
        Err(e) => return refuse(&e),
    };
    if args.server.config.is_none() {
        // Without a config file the scenario's gate settings are the limits (the options below
        // still win).
        let g = &scenario.gate;
        let l = &mut config.limits;
        l.heartbeat = g.heartbeat;
        l.idle_timeout = g.idle_timeout;
        l.handshake_timeout = g.handshake_timeout;
        l.backend_timeout = g.backend_timeout;
        l.max_in_flight = g.max_in_flight;
        l.max_write_queue = g.max_write_queue;
        if let Some(addr) = args.addr {
            config.gate.listen = vec![gatekit_harness::listen::Listener::tcp(
                gatekit_harness::listen::WireProtocol::Native,
                addr,
            )];
        }
    }
    if let Err(e) = args.server.apply(&mut config) {
        return refuse(&e);
    }
    if let Err(e) = gatekit_server::logging::init(&config.log) {
        return refuse(&e);
    }
    #[cfg(feature = "fault-injection")]
    let faults = faults(&args.inject_fault)?;
    #[cfg(not(feature = "fault-injection"))]
    faults(&args.inject_fault)?;
    let opts = gatekit_harness::serve::ServeOptions {
        config,
        duration: args.duration.map(|d| d.0),
        scenario,
        fake_echo,
        status_every: args.status_every.0.max(Duration::from_millis(10)),
        stdin_control: args.stdin_control,
        control: args.control,
        push_rate: args.push_rate,
        #[cfg(feature = "fault-injection")]
        faults,
    };
    let json = args.json;
    let served = runtime_with(args.runtime, args.global_queue_interval)?.block_on(
        gatekit_harness::serve::serve(opts, move |event| {
            if json {
                print_json_line(event);
            } else {
                eprintln!("{}", gatekit_harness::serve::describe(event));
            }
        }),
    );
    match served {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => refuse(&e),
    }
}

fn print_json_line(event: &impl serde::Serialize) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", serde_json::to_string(event).expect("serialises"));
    let _ = out.flush();
}

fn hold(args: HoldArgs) -> Result<ExitCode, String> {
    use gatekit_harness::client_transport::{ClientTransport, ClientTransportOptions, TrustRoot};
    let transport = ClientTransport::new(
        &ClientTransportOptions {
            kind: args.transport,
            protocol: gatekit_harness::listen::WireProtocol::Native,
            trust: args.tls_ca.map(TrustRoot::File),
            server_name: args.tls_server_name,
            ws_path: Some(args.ws_path),
            max_frame_length: gatekit_agent::AgentConfig::default().max_frame_length,
        },
        args.target,
    )
    .map_err(|e| e.to_string())?;
    let opts = gatekit_harness::hold::HoldOptions {
        target: args.target,
        connections: args.connections,
        source: args.source,
        per_source: args.per_source,
        concurrency: args.concurrency,
        ping: args.ping.0,
        handshake_timeout: args.handshake_timeout.0,
        hold: args.hold.map(|d| d.0),
        transport,
        login: args.hmac_secret.map(|s| (s, args.user_prefix)),
    };
    runtime()?.block_on(gatekit_harness::hold::hold(opts, print_json_line))?;
    Ok(ExitCode::SUCCESS)
}

fn scale(args: ScaleArgs) -> Result<ExitCode, String> {
    use gatekit_harness::scale;
    let opts = scale::ScaleOptions {
        exe: std::env::current_exe().map_err(|e| format!("finding gatekit itself: {e}"))?,
        levels: args.connections,
        gates: args.gates.max(1),
        workers: args.workers,
        runs: args.runs,
        hold: args.hold.0,
        ping: args.ping.0,
        concurrency: args.concurrency,
        max_bytes_per_connection: args.max_bytes_per_connection,
        transport: args.transport,
        directory: args.directory,
        heartbeat: args.heartbeat.0,
    };
    eprintln!(
        "scale: {:?} connections over {}, {} gate process(es), {} runs each, held {:?} (pinging every {:?})",
        opts.levels, opts.transport, opts.gates, opts.runs, opts.hold, opts.ping
    );
    let levels = scale::run(&opts, |r| {
        eprintln!(
            "  {:>6} connections: {:>7.0} handshakes/s · gate RSS {} → {} KiB ({:.0} B/conn) · per gate {:?} · {} Disconnects in {:.2} s · pongs {} · closed by gate {}",
            r.connections,
            r.handshakes_per_sec,
            r.rss_before_kib,
            r.rss_held_kib,
            r.bytes_per_connection,
            r.per_gate,
            r.disconnects,
            r.disconnect_secs,
            r.pongs,
            r.closed_by_gate
        );
        if let Some(d) = &r.directory {
            eprintln!(
                "          directory: {} users · Redis {:.0} B/user · script calls {:.3}/login, {:.3}/bind, {:.3}/heartbeat ({} heartbeats in the hold; liveness calls ≈ {:.0}) · store errors {} bound, {} held",
                d.users, d.redis_bytes_per_user, d.commands_per_login, d.commands_per_bind, d.commands_per_heartbeat, d.heartbeats, d.liveness_calls, d.store_errors_bound, d.store_errors_held
            );
        }
    })?;
    let max = opts.max_bytes_per_connection;
    print!("{}", scale::table(&levels, max));
    if let Some(path) = args.json {
        let text = serde_json::to_string_pretty(&levels).expect("levels serialise");
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(if levels.iter().all(|l| l.passed(max)) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn rtt(
    opts: gatekit_harness::rtt::RttOptions,
    min_rate_ratio: Option<f64>,
    max_p99_ratio: Option<f64>,
    json: Option<PathBuf>,
) -> Result<ExitCode, String> {
    if opts.global_queue_interval == Some(0) {
        return Err("--global-queue-interval must be at least 1".to_owned());
    }
    if opts.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        return Err("--rate must be a positive number of round trips per second".to_owned());
    }
    let protocols: Vec<&str> = opts.gate_protocols().iter().map(|p| p.name()).collect();
    let transports: Vec<&str> = opts.gate_transports().iter().map(|t| t.name()).collect();
    eprintln!(
        "rtt: gate over {}{}; {} connections × window {}, {}-byte bodies, {} per run, {} runs per server, {} server runtime{}",
        protocols.join(", "),
        if transports == ["tcp"] {
            String::new()
        } else {
            format!(" on {}", transports.join(", "))
        },
        opts.clients,
        opts.window,
        opts.body,
        opts.measure,
        opts.runs,
        opts.server_runtime.flag(),
        match opts.rate {
            Some(r) => format!(", open loop at {r:.0} round trips/s offered"),
            None => String::new(),
        }
    );
    let summary = gatekit_harness::rtt::run(&opts, |r| {
        eprintln!(
            "  {:<28} {:>10.0} round trips/s  p50 {:.3} ms  p99 {:.3} ms  skipped {}  failures {}{}",
            r.name(),
            r.rate,
            r.p50_ms,
            r.p99_ms,
            r.skipped,
            r.failures,
            r.first_failure
                .as_ref()
                .map_or(String::new(), |w| format!(" (first: {w})"))
        )
    })?;
    println!("{summary}");
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&summary).expect("summary serialises");
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(if summary.meets(min_rate_ratio, max_p99_ratio) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Scenarios { toml: Some(name) } => match scenario::builtin(&name) {
            Some(s) => {
                print!("{}", s.to_toml());
                Ok(ExitCode::SUCCESS)
            }
            None => Err(format!("no built-in scenario {name:?}")),
        },
        Command::Scenarios { toml: None } => {
            for s in scenario::builtins() {
                let mode = match s.mode {
                    Mode::Sim => "sim",
                    Mode::Tcp => "tcp",
                };
                println!(
                    "{:<15} {mode:<4} {:>6} clients  {}",
                    s.name, s.clients, s.description
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::RttServer {
            server,
            protocol,
            transport,
            tls_cert,
            tls_key,
            server_runtime,
            global_queue_interval: gqi,
        } => {
            use gatekit_harness::rtt::Server;
            let tls = tls_cert.zip(tls_key).map(|(cert, key)| {
                gatekit_harness::listener_transport::TlsSource::Files { cert, key }
            });
            match server.as_str() {
                "raw" => Ok(Server::RawEcho),
                "gatekit" => Ok(Server::Gatekit(protocol)),
                other => Err(format!("no rtt server {other:?}: raw or gatekit")),
            }
            .and_then(|server| {
                gatekit_harness::rtt::serve_child(server, transport, tls, server_runtime, gqi)
                    .map(|()| ExitCode::SUCCESS)
            })
        }
        Command::Serve(args) => serve(args),
        Command::Hold(args) => hold(args),
        Command::Scale(args) => scale(args),
        Command::Backend(args) => backend(args),
        Command::Cluster(args) => cluster(args),
        Command::Rtt {
            protocols,
            transports,
            clients,
            window,
            body,
            seconds,
            runs,
            min_rate_ratio,
            max_p99_ratio,
            json,
            server_process,
            global_queue_interval,
            server_runtime,
            rate,
        } => rtt(
            gatekit_harness::rtt::RttOptions {
                clients,
                window,
                body,
                measure: seconds,
                runs,
                server_exe: if server_process || clients > 9_000 {
                    match std::env::current_exe() {
                        Ok(exe) => Some(exe),
                        Err(e) => {
                            eprintln!("gatekit: finding gatekit itself: {e}");
                            return ExitCode::from(2);
                        }
                    }
                } else {
                    None
                },
                global_queue_interval,
                protocols,
                transports,
                server_runtime,
                rate,
            },
            min_rate_ratio,
            max_p99_ratio,
            json,
        ),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gatekit: {e}");
            ExitCode::from(2)
        }
    }
}
