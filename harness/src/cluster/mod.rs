//! `gatekit cluster`: the gate as deployed behind NATS and Redis, on loopback. It starts
//!
//! - a `nats-server` and a `redis-server` (Debian's) on free loopback ports;
//! - the login service in this process ([`auth`]): the gates' `[auth] kind = "nats"` call;
//! - `backends` back-end processes (`gatekit backend --stdin-control`, [`crate::nats_echo`]),
//!   one queue group `echo`: each call goes to one of them;
//! - `gates` gate processes (`gatekit serve --json --stdin-control --control 127.0.0.1:0`), each
//!   with its own gate id and a configuration ([`config`]) routing `echo` (and every other
//!   module) to NATS, keeping sessions in Redis with short expiries;
//!
//! then one `gatekit run --target <gate> --control <its control endpoint>` per gate, at once,
//! each with its share of the clients. Every echo call crosses NATS to a back-end process and
//! back, and each run checks its invariants (every request answered with its own body, in order,
//! pushes, Disconnects, counters) against its gate. Then, the gates still up, the directory
//! phase ([`directory`]): authenticated users on every gate, pushes through the user directory
//! delivered exactly once ([`push_once`]), duplicate logins leaving one session
//! ([`duplicate_login`]), and the last gate SIGKILLed, its users offline within the grace
//! ([`gate_kill`]). At the end the other gates are shut down gracefully (standard input
//! closed), then the back ends, and the servers are killed.
//!
//! The result is PASS only if every run passed, every directory invariant held, and every gate
//! (but the one killed) and back end exited 0. Everything is bounded by one deadline (duration +
//! 60 s); every child is killed if anything fails or panics (the process fleet's `Drop`).

pub mod auth;
pub mod config;
pub mod directory;
pub mod duplicate_login;
pub mod gate_kill;
pub mod measure;
pub(crate) mod procs;
pub mod push_once;
pub mod report;
pub mod user_client;
pub mod users;

pub use config::{gate_config, GateSetup, StoreTimes};
pub use procs::{find_nats_server, find_redis_server};
pub use report::{BackendRun, ClusterReport, GateRun};

use crate::scenario::Dur;
use config::scenario_args;
use gatekit_agent::DuplicateLogin;
use procs::{read_all, start_nats, start_redis, Fleet, Inbox, Proc, Role, RunProc};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Time allowed past the runs' duration for everything: starting, settling, shutting down.
pub const SLACK: Duration = Duration::from_secs(60);

/// Options of `gatekit cluster`.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The `gatekit` executable started as back ends, gates and runs.
    pub exe: PathBuf,
    /// Clients in all, split over the gates.
    pub clients: usize,
    /// How long the clients send.
    pub duration: Dur,
    /// Gate processes (at least 2: the directory phase logs in on two and kills one).
    pub gates: usize,
    /// Back-end processes.
    pub backends: usize,
    /// The runs' scenario: a built-in name or a scenario TOML file. Its `[gate]` section becomes
    /// the gates' `[limits]`; its `[backend]` section is not used (the back ends only echo).
    pub scenario: String,
    /// Latency of each back end's answers.
    pub latency: Duration,
    /// Make every back end answer every Nth request wrongly (to show the cluster can fail).
    pub corrupt_every: Option<u64>,
    /// The gates' `[store] duplicate_login`.
    pub duplicate_login: DuplicateLogin,
    /// The gates' `[store] grace`.
    pub grace: Dur,
    /// The gates' `[store] gate_ttl`.
    pub gate_ttl: Dur,
    /// The killed gate's users must be offline within this (default: the grace; a test sets
    /// less, to show the check can fail).
    pub offline_within: Option<Dur>,
    /// Users of the push check, round-robin over the gates.
    pub users: usize,
    /// `users.send` per user.
    pub pushes_per_user: usize,
    /// Users logged in twice at once.
    pub pairs: usize,
    /// Measure the directory's costs (`--measure-push`).
    pub measure: Option<measure::MeasureOptions>,
    /// Defects injected into every gate's own code (`gatekit serve --inject-fault`, a build with
    /// the `fault-injection` feature), to show the checks can fail.
    pub gate_fault: Option<String>,
}

/// Runs the cluster and returns its report (`Err`: it could not be set up — nats-server missing,
/// a process that did not start; exit 2).
pub fn run(opts: &ClusterOptions) -> Result<ClusterReport, String> {
    if opts.gates < 2 || opts.backends == 0 {
        return Err(format!(
            "--gates {} --backends {}: the cluster needs at least 2 gates (duplicate logins on two, one killed while another survives) and 1 back end",
            opts.gates, opts.backends
        ));
    }
    if opts.users < opts.gates || opts.pairs == 0 || opts.pushes_per_user == 0 {
        return Err(format!(
            "--users {} (at least one per gate), --pairs {} and --pushes {} must be at least 1",
            opts.users, opts.pairs, opts.pushes_per_user
        ));
    }
    if opts.clients < opts.gates {
        return Err(format!(
            "--clients {} is fewer than --gates {}: every gate needs a client",
            opts.clients, opts.gates
        ));
    }
    let (scenario, scenario_args) = scenario_args(&opts.scenario)?;
    let store = StoreTimes::new(scenario.gate.heartbeat, opts.grace, opts.gate_ttl);
    store.check()?;
    let nats_bin = find_nats_server()?;
    let redis_bin = find_redis_server()?;
    let start = Instant::now();
    let deadline = start + opts.duration.0 + scenario.ramp_up.0 + SLACK;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("gatekit-cluster-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut fleet = Fleet {
        nats: None,
        redis: None,
        backends: Vec::new(),
        gates: Vec::new(),
        runs: Vec::new(),
        dir: dir.clone(),
    };
    let nats = start_nats(&nats_bin, &mut fleet)?;
    let redis = start_redis(&redis_bin, &mut fleet)?;
    eprintln!("cluster: nats-server at {nats}, redis-server at {redis}");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let client = rt.block_on(async {
        async_nats::ConnectOptions::new()
            .name("gatekit cluster")
            .connection_timeout(Duration::from_secs(5))
            .connect(nats.as_str())
            .await
            .map_err(|e| format!("connecting to NATS at {nats}: {e}"))
    })?;
    let auth = rt.block_on(auth::AuthService::start(client.clone(), users::PREFIX))?;

    let (tx, rx) = mpsc::channel();
    let mut inbox = Inbox {
        rx,
        listening: vec![None; opts.gates],
        gate_stopped: vec![None; opts.gates],
        gate_ended: vec![false; opts.gates],
        ready: vec![false; opts.backends],
        backend_stopped: vec![None; opts.backends],
        backend_ended: vec![false; opts.backends],
    };

    // The back ends, ready (subscribed) before any gate takes a client.
    for i in 0..opts.backends {
        let mut args: Vec<String> = vec![
            "backend".into(),
            "--nats".into(),
            nats.clone(),
            "--module".into(),
            "echo".into(),
            "--latency".into(),
            Dur(opts.latency).to_string(),
            "--stdin-control".into(),
        ];
        if let Some(n) = opts.corrupt_every {
            args.extend(["--corrupt-every".into(), n.to_string()]);
        }
        let p = Proc::start(&opts.exe, &args, Role::Backend, i, tx.clone())?;
        fleet.backends.push(p);
    }
    let ready_by = deadline.min(Instant::now() + Duration::from_secs(20));
    if !inbox.until(ready_by, |s| {
        s.ready.iter().all(|&r| r) || s.backend_ended.iter().any(|&e| e)
    }) || !inbox.ready.iter().all(|&r| r)
    {
        return Err(format!(
            "the back ends did not all subscribe (ready: {:?})",
            inbox.ready
        ));
    }
    eprintln!("cluster: {} back ends subscribed", opts.backends);

    // The gates.
    let config = dir.join("gate.toml");
    let setup = GateSetup {
        nats: &nats,
        redis: &redis,
        store,
        duplicate_login: opts.duplicate_login,
    };
    std::fs::write(&config, gate_config(&setup, &scenario))
        .map_err(|e| format!("{}: {e}", config.display()))?;
    let ids: Vec<String> = (1..=opts.gates).map(|n| format!("gate-{n}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--json".into(),
            "--stdin-control".into(),
            "--config".into(),
            config.display().to_string(),
            "--gate-id".into(),
            id.clone(),
            "--control".into(),
            "127.0.0.1:0".into(),
            "--push-rate".into(),
            "2".into(),
            "--status-every".into(),
            "1h".into(),
        ];
        if let Some(f) = &opts.gate_fault {
            args.extend(["--inject-fault".into(), f.clone()]);
        }
        let p = Proc::start(&opts.exe, &args, Role::Gate, i, tx.clone())?;
        fleet.gates.push(p);
    }
    drop(tx);
    let listening_by = deadline.min(Instant::now() + Duration::from_secs(20));
    inbox.until(listening_by, |s| {
        s.listening.iter().all(|l| l.is_some()) || s.gate_ended.iter().any(|&e| e)
    });
    let mut endpoints = Vec::new();
    let mut natives = Vec::new();
    for (i, l) in inbox.listening.iter().enumerate() {
        match l {
            Some((addr, Some(control), Some(native))) => {
                endpoints.push((*addr, *control));
                natives.push(*native);
            }
            Some((_, None, _)) => return Err(format!("{} has no control endpoint", ids[i])),
            Some((_, _, None)) => return Err(format!("{} has no native TCP listener", ids[i])),
            None => return Err(format!("{} did not start listening", ids[i])),
        }
    }
    eprintln!(
        "cluster: gates listening on {:?}",
        endpoints.iter().map(|e| e.0).collect::<Vec<_>>()
    );

    // One run per gate, all at once.
    let mut shares = Vec::new();
    for (i, (addr, control)) in endpoints.iter().enumerate() {
        let clients = opts.clients / opts.gates + usize::from(i < opts.clients % opts.gates);
        shares.push(clients);
        let json = dir.join(format!("run-{}.json", i + 1));
        let mut args: Vec<String> = vec![
            "run".into(),
            "--target".into(),
            addr.to_string(),
            "--control".into(),
            control.to_string(),
            "--clients".into(),
            clients.to_string(),
            "--duration".into(),
            opts.duration.to_string(),
            "--json".into(),
            json.display().to_string(),
        ];
        args.extend(scenario_args.iter().cloned());
        let mut child = Command::new(&opts.exe)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", opts.exe.display()))?;
        let stdout = child.stdout.take().map(read_all);
        let stderr = child.stderr.take().map(read_all);
        fleet.runs.push(RunProc {
            child,
            stdout,
            stderr,
            exit: None,
        });
    }
    let mut problems = Vec::new();
    let mut reports = Vec::new();
    for (i, r) in fleet.runs.iter_mut().enumerate() {
        let code = loop {
            match r.child.try_wait() {
                Ok(Some(s)) => break s.code(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    problems.push(format!(
                        "the run against {} was killed at the deadline ({:?} after the start)",
                        ids[i],
                        deadline - start
                    ));
                    let _ = r.child.kill();
                    let _ = r.child.wait();
                    break None;
                }
            }
        };
        r.exit = Some(code);
        let out = r
            .stdout
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let err = r
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let json = std::fs::read_to_string(dir.join(format!("run-{}.json", i + 1)))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        reports.push((code, out, err, json));
    }

    // The directory phase, the gates still up; it kills the last gate.
    let mut killed = vec![false; opts.gates];
    let directory = {
        let d = rt
            .block_on(users::Redis::connect(&redis))
            .map(|redis| directory::Directory {
                nats: client.clone(),
                redis,
                auth: &auth,
                gates: ids.iter().cloned().zip(natives.iter().copied()).collect(),
                opts: directory::DirectoryOptions {
                    users: opts.users,
                    pushes_per_user: opts.pushes_per_user,
                    pairs: opts.pairs,
                    policy: opts.duplicate_login,
                    store,
                    offline_within: opts.offline_within.unwrap_or(store.grace),
                    measure: opts.measure,
                },
            });
        match d {
            Ok(d) => {
                let gates = &mut fleet.gates;
                let killed = &mut killed;
                Some(rt.block_on(directory::run(&d, |i| {
                    eprintln!("cluster: SIGKILL {}", d.gate_id(i));
                    gates[i].kill();
                    killed[i] = true;
                })))
            }
            Err(e) => {
                problems.push(format!("the directory phase could not start: {e}"));
                None
            }
        }
    };

    // Graceful shutdown: the gates first (they answer the calls in flight through the back
    // ends), then the back ends.
    // Within the deadline, but always a few seconds for a graceful shutdown.
    let grace = |d: Duration| {
        (Instant::now() + d)
            .min(deadline)
            .max(Instant::now() + Duration::from_secs(5))
    };
    for g in &mut fleet.gates {
        g.finish();
    }
    let until = grace(Duration::from_secs(20));
    let gate_exits: Vec<Option<i32>> = fleet.gates.iter_mut().map(|g| g.wait(until)).collect();
    inbox.until(until, |s| s.gate_ended.iter().all(|&e| e));
    for b in &mut fleet.backends {
        b.finish();
    }
    let until = grace(Duration::from_secs(10));
    let backend_exits: Vec<Option<i32>> =
        fleet.backends.iter_mut().map(|b| b.wait(until)).collect();
    inbox.until(until, |s| s.backend_ended.iter().all(|&e| e));
    drop(auth);
    rt.shutdown_timeout(Duration::from_secs(1));
    for mut n in fleet.nats.take().into_iter().chain(fleet.redis.take()) {
        let _ = n.kill();
        let _ = n.wait();
    }

    let gates = ids
        .iter()
        .zip(endpoints)
        .zip(shares)
        .zip(reports)
        .enumerate()
        .map(
            |(i, (((id, (addr, control)), clients), (run_exit, out, err, json)))| GateRun {
                id: id.clone(),
                addr,
                control,
                clients,
                run_exit,
                run_report: out,
                run_stderr: err,
                run_json: json,
                gate_exit: gate_exits[i],
                gate_stopped: inbox.gate_stopped[i].clone(),
                killed: killed[i],
            },
        )
        .collect();
    let backends = backend_exits
        .iter()
        .enumerate()
        .map(|(i, &exit)| {
            let s = inbox.backend_stopped[i];
            BackendRun {
                index: i + 1,
                exit,
                answered: s.map(|s| s.0),
                corrupted: s.map(|s| s.1),
                notifies: s.map(|s| s.2),
            }
        })
        .collect();
    let mut report = ClusterReport {
        nats,
        scenario: opts.scenario.clone(),
        clients: opts.clients,
        duration: opts.duration,
        gates,
        backends,
        directory,
        problems,
        passed: false,
    };
    report.judge();
    Ok(report)
}
