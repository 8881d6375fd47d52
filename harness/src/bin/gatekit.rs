//! `gatekit`: the harness command line.

use clap::{Parser, Subcommand};
use gatekit_harness::report::{Report, Thresholds};
use gatekit_harness::scenario::{self, Dur, Mode, Scenario};
use gatekit_harness::{sim, tcp};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

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
    /// Round trips per second and latency of the gate next to a raw tokio echo server, in turn,
    /// medians over several runs, and their ratio.
    Rtt {
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
        /// Fail (exit 1) if gatekit's rate is below this fraction of the raw server's.
        #[arg(long)]
        min_rate_ratio: Option<f64>,
        /// Fail (exit 1) if gatekit's p99 is above this multiple of the raw server's.
        #[arg(long)]
        max_p99_ratio: Option<f64>,
        /// Also write the results as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Runs the built-in gate with fake back ends and prints live counts.
    Serve {
        /// Address to listen on (loopback).
        #[arg(long, default_value = "127.0.0.1:7000")]
        addr: SocketAddr,
        /// Stop after this long.
        #[arg(long, default_value = "10m")]
        duration: Dur,
        /// Fake back-end latency, errors and faults, from this scenario.
        #[arg(long, default_value = "steady")]
        scenario: String,
    },
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
    let data = match s.mode {
        Mode::Sim => {
            let pb = progress_bar(s.clients, "clients running (virtual time)");
            let base = Instant::now();
            let _ = base;
            let data = sim::run(&s, |_, live, total| {
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
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("tokio runtime: {e}"))?;
            let pb = progress_bar(s.clients, "clients finished");
            let pb2 = pb.clone();
            let data = rt.block_on(tcp::run(&s, args.target, move |done, _| {
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

fn serve(addr: SocketAddr, duration: Dur, scenario: &str) -> Result<ExitCode, String> {
    tcp::require_loopback(&addr)?;
    let s =
        scenario::builtin(scenario).ok_or_else(|| format!("no built-in scenario {scenario:?}"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let (gate, local, _recorder) = tcp::start_gate(&s, &addr.to_string()).await.map_err(|e| format!("{addr}: {e}"))?;
        println!("gatekit gate on {local} (fake back end module \"echo\"; stops after {duration})");
        let end = tokio::time::Instant::now() + duration.0;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(end) => break,
                _ = tokio::signal::ctrl_c() => break,
                _ = tick.tick() => {
                    let (accepted, refused) = gate.accepted_refused();
                    eprintln!("connections {} · sessions {} · accepted {accepted} · refused {refused}", gate.connection_count(), gate.session_count());
                }
            }
        }
        let r = gate.shutdown(Duration::from_secs(5)).await;
        println!("shut down: {} connections closed, {} aborted", r.connections, r.aborted);
        Ok(ExitCode::SUCCESS)
    })
}

fn rtt(
    opts: gatekit_harness::rtt::RttOptions,
    min_rate_ratio: Option<f64>,
    max_p99_ratio: Option<f64>,
    json: Option<PathBuf>,
) -> Result<ExitCode, String> {
    eprintln!(
        "rtt: {} connections × window {}, {}-byte bodies, {} per run, {} runs per server",
        opts.clients, opts.window, opts.body, opts.measure, opts.runs
    );
    let summary = gatekit_harness::rtt::run(&opts, |r| {
        eprintln!(
            "  {:<15} {:>10.0} round trips/s  p50 {:.3} ms  p99 {:.3} ms  failures {}",
            r.server.name(),
            r.rate,
            r.p50_ms,
            r.p99_ms,
            r.failures
        )
    });
    println!("{summary}");
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&summary).expect("summary serialises");
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let ok = min_rate_ratio.is_none_or(|m| summary.rate_ratio >= m)
        && max_p99_ratio.is_none_or(|m| summary.p99_ratio <= m);
    Ok(if ok {
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
        Command::Serve {
            addr,
            duration,
            scenario,
        } => serve(addr, duration, &scenario),
        Command::Rtt {
            clients,
            window,
            body,
            seconds,
            runs,
            min_rate_ratio,
            max_p99_ratio,
            json,
        } => rtt(
            gatekit_harness::rtt::RttOptions {
                clients,
                window,
                body,
                measure: seconds,
                runs,
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
