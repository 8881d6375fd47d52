//! `gatekit serve`: the built-in gate with the fake `echo` back end in a process of its own, for
//! loads from other processes (`gatekit hold`, `gatekit run --target`). Several `serve` processes
//! can share one port (`--reuse-port`, SO_REUSEPORT): the kernel spreads connections over them.
//!
//! With `--json`, it reports on stdout as JSON lines ([`GateEvent`]), so a driver such as
//! `gatekit scale` can follow it; the learner and session store only count (no per-session
//! records), so the process's memory is the gate's. With `--control ADDR` they keep a record per
//! session instead and serve it on ADDR for `gatekit run --target .. --control ADDR`
//! ([`crate::control`]); `--push-rate` makes the gate broadcast numbered pushes.

use crate::fake_backend::EchoBackend;
use crate::procfs;
use crate::scenario::Scenario;
use gatekit_agent::{CloseReason, Gate, Learner, Session, SessionStore, StoreFuture};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Pending connections the listening socket queues (the kernel caps it at `somaxconn`).
pub use gatekit_server::LISTEN_BACKLOG;

/// A learner and session store that only count.
#[derive(Debug, Default)]
pub struct Tally {
    connects: AtomicU64,
    disconnects: AtomicU64,
    heartbeats: AtomicU64,
}

impl Tally {
    /// Connect events so far.
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }

    /// Disconnect events so far.
    pub fn disconnects(&self) -> u64 {
        self.disconnects.load(Ordering::Relaxed)
    }

    /// Storage heartbeats so far.
    pub fn heartbeats(&self) -> u64 {
        self.heartbeats.load(Ordering::Relaxed)
    }
}

impl Learner for Tally {
    fn connect(&self, _session: &Session) {
        self.connects.fetch_add(1, Ordering::Relaxed);
    }

    fn disconnect(&self, _session: &Session, _reason: CloseReason) {
        self.disconnects.fetch_add(1, Ordering::Relaxed);
    }
}

impl Tally {
    /// Counts a storage heartbeat.
    pub(crate) fn count_heartbeat(&self) {
        self.heartbeats.fetch_add(1, Ordering::Relaxed);
    }
}

impl SessionStore for Tally {
    fn heartbeat(&self, _session: Arc<Session>) -> StoreFuture<()> {
        self.count_heartbeat();
        Box::pin(std::future::ready(Ok(())))
    }
}

/// One gate process's counts at a moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateStatus {
    /// Connections held, handshaking ones included.
    pub connections: usize,
    /// Sessions (handshaken connections).
    pub sessions: usize,
    /// Connections accepted since start.
    pub accepted: u64,
    /// Connections refused (`server full`, `shutdown`).
    pub refused: u64,
    /// Connect events the learner saw.
    pub connects: u64,
    /// Disconnect events the learner saw.
    pub disconnects: u64,
    /// Storage heartbeats.
    pub heartbeats: u64,
    /// Resident memory of the process, KiB.
    pub rss_kib: Option<u64>,
    /// Open file descriptors of the process.
    pub open_files: Option<usize>,
    /// Failed accepts so far.
    #[serde(default)]
    pub accept_errors: u64,
    /// Of those, the ones for want of file descriptors (EMFILE, ENFILE).
    #[serde(default)]
    pub out_of_files: u64,
    /// Session store operations that failed or timed out so far.
    #[serde(default)]
    pub store_errors: u64,
}

/// What `gatekit serve --json` prints, one JSON object per line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum GateEvent {
    /// The gate is accepting.
    Listening {
        /// The bound address (the real port when 0 was asked for).
        addr: SocketAddr,
        /// This process.
        pid: u32,
        /// The process's open-file limit (soft).
        open_file_limit: Option<u64>,
        /// The control endpoint's bound address, if there is one.
        #[serde(default)]
        control: Option<SocketAddr>,
        /// Every listener, with its bound address.
        #[serde(default)]
        listeners: Vec<crate::listen::Listener>,
        /// The metrics endpoint's bound address, if there is one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        metrics: Option<SocketAddr>,
    },
    /// Counts, every `--status-every`.
    Status(GateStatus),
    /// The gate shut down.
    Stopped {
        /// Counts after the shutdown.
        status: GateStatus,
        /// Connections open when the shutdown began.
        closed: usize,
        /// Of those, the ones aborted at the deadline.
        aborted: usize,
    },
}

/// Options of `gatekit serve`.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The server's configuration (listeners, limits, back ends, NATS, metrics): the product's
    /// own, [`gatekit_server::ServerConfig`]. Its `echo` module is the scenario's fake back end.
    pub config: gatekit_server::ServerConfig,
    /// Stop after this long (`None`: at SIGTERM or SIGINT).
    pub duration: Option<Duration>,
    /// The fake back end's behaviour (latency, errors, faults) and seed.
    pub scenario: Scenario,
    /// Serve `echo` with the scenario's fake back end (else the configuration's routing holds).
    pub fake_echo: bool,
    /// How often to report.
    pub status_every: Duration,
    /// Stop when standard input closes.
    pub stdin_control: bool,
    /// Serve per-session records on this address ([`crate::control`]).
    pub control: Option<SocketAddr>,
    /// Broadcast this many numbered pushes per second to every session.
    pub push_rate: f64,
    /// Defects injected into the gate's own code.
    #[cfg(feature = "fault-injection")]
    pub faults: gatekit_agent::Faults,
}

/// A listening socket on `addr`, sharing the port with other processes if `reuse_port`.
pub use gatekit_server::listener;

fn status(gate: &Gate, tally: &Tally) -> GateStatus {
    let (accepted, refused) = gate.accepted_refused();
    GateStatus {
        connections: gate.connection_count(),
        sessions: gate.session_count(),
        accepted,
        refused,
        connects: tally.connects(),
        disconnects: tally.disconnects(),
        heartbeats: tally.heartbeats(),
        rss_kib: procfs::rss_kib(None),
        open_files: procfs::open_files(None),
        accept_errors: gate.accept_errors().0,
        out_of_files: gate.accept_errors().1,
        store_errors: gate.store_errors(),
    }
}

/// Why `gatekit serve` could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The server could not start (configuration, listener, certificate, NATS): exit 2.
    #[error(transparent)]
    Start(#[from] gatekit_server::ServerError),
    /// An option of the harness's own is wrong: exit 2.
    #[error("{0}")]
    Options(String),
}

/// Runs the gate server until the duration ends, SIGTERM or SIGINT, or (with `stdin_control`)
/// standard input closes; reports through `report`.
pub async fn serve(
    opts: ServeOptions,
    mut report: impl FnMut(&GateEvent),
) -> Result<(), ServeError> {
    if let Some(c) = &opts.control {
        crate::tcp::require_loopback(c).map_err(ServeError::Options)?;
    }
    if !(opts.push_rate.is_finite() && opts.push_rate >= 0.0) {
        return Err(ServeError::Options(format!(
            "--push-rate {}: must be a non-negative number of pushes per second",
            opts.push_rate
        )));
    }
    let plain = Arc::new(Tally::default());
    let control = opts
        .control
        .map(|_| Arc::new(crate::control::ControlRecorder::new()));
    let mut config = opts.config.clone();
    if opts.fake_echo {
        // The harness's `echo` is the scenario's fake back end (latency, errors, hangs, panics).
        config
            .backends
            .modules
            .insert("echo".to_owned(), gatekit_server::config::ModuleRoute::Rust);
    }
    let (store, learner): (Arc<dyn SessionStore>, Arc<dyn Learner>) = match &control {
        Some(c) => (c.clone(), c.clone()),
        None => (plain.clone(), plain.clone()),
    };
    let echo: Arc<dyn gatekit_agent::Backend> = Arc::new(EchoBackend::new(
        opts.scenario.backend.clone(),
        opts.scenario.seed,
    ));
    let extras = gatekit_server::Extras {
        backends: if opts.fake_echo {
            std::collections::HashMap::from([("echo".to_owned(), echo)])
        } else {
            std::collections::HashMap::new()
        },
        // The configured store (`[store]`) stays the gate's; the harness watches its heartbeats.
        store: None,
        wrap_store: Some(Arc::new(move |inner| {
            Arc::new(crate::recorded_store::RecordedStore::new(
                inner,
                store.clone(),
            )) as Arc<dyn SessionStore>
        })),
        learner: Some(learner),
        #[cfg(feature = "fault-injection")]
        faults: opts.faults.clone(),
    };
    let buffer_bound = config
        .agent_config()
        .buffer_bound(gatekit_agent::driver::READ_SIZE);
    let mut running = gatekit_server::Server::with_extras(config, extras)
        .start()
        .await?;
    let gate = running.gate().clone();
    let tally: &Tally = control.as_ref().map_or(&plain, |c| &c.tally);
    let bound = running.listeners().to_vec();
    let local = bound[0].addr;
    let mut control_addr = None;
    let control_task = match (&control, opts.control) {
        (Some(c), Some(addr)) => {
            c.set_gate(gate.clone());
            let l = TcpListener::bind(addr)
                .await
                .map_err(|e| ServeError::Options(format!("--control {addr}: {e}")))?;
            control_addr = Some(
                l.local_addr()
                    .map_err(|e| ServeError::Options(e.to_string()))?,
            );
            let (c, g) = (c.clone(), gate.clone());
            Some(crate::control::serve(l, move || {
                c.snapshot(status(&g, &c.tally), buffer_bound)
            }))
        }
        _ => None,
    };
    let pusher = (opts.push_rate > 0.0).then(|| {
        tokio::spawn(push_loop(
            gate.clone(),
            control.clone(),
            opts.push_rate,
            opts.scenario.body_size,
        ))
    });
    report(&GateEvent::Listening {
        addr: local,
        pid: std::process::id(),
        open_file_limit: procfs::open_file_limit().map(|l| l.0),
        control: control_addr,
        listeners: bound,
        metrics: running.metrics_addr(),
    });
    let end = async {
        match opts.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(end);
    let mut tick = tokio::time::interval(opts.status_every);
    // Whether the open-file limit was reported since connections last fell below it.
    let mut limit_reported = false;
    let mut reported_out_of_files = 0;
    let mut watch = tokio::time::interval(Duration::from_millis(100));
    let stdin = async {
        if opts.stdin_control {
            crate::stdin_control::closed().await
        } else {
            std::future::pending().await
        }
    };
    tokio::pin!(stdin);
    {
        // SIGTERM and SIGINT, caught since before the Listening line (the server installs them).
        let signalled = running.signalled();
        tokio::pin!(signalled);
        loop {
            tokio::select! {
                _ = &mut end => break,
                _ = &mut signalled => break,
                _ = &mut stdin => break,
                _ = tick.tick() => report(&GateEvent::Status(status(&gate, tally))),
                _ = watch.tick() => {
                    let out_of_files = gate.accept_errors().1;
                    if out_of_files > reported_out_of_files && !limit_reported {
                        eprintln!("gatekit serve: {}; new connections wait in the listen queue", procfs::out_of_files_message(gate.connection_count()));
                        limit_reported = true;
                    } else if out_of_files == reported_out_of_files {
                        limit_reported = false;
                    }
                    reported_out_of_files = out_of_files;
                }
            }
        }
    }
    if let Some(p) = pusher {
        p.abort();
    }
    let r = running.shutdown().await;
    if let Some(c) = control_task {
        c.abort();
    }
    report(&GateEvent::Stopped {
        status: status(&gate, tally),
        closed: r.connections,
        aborted: r.aborted,
    });
    Ok(())
}

/// Broadcasts numbered pushes ([`crate::client::push_body`]) at `rate` per second, noting each
/// acceptance in the control records.
async fn push_loop(
    gate: Gate,
    control: Option<Arc<crate::control::ControlRecorder>>,
    rate: f64,
    body_size: usize,
) {
    let topic = gatekit_codec::Topic::from_static("push/tick");
    let mut tick =
        tokio::time::interval(Duration::from_secs_f64(1.0 / rate).max(Duration::from_millis(1)));
    let mut seq = 0u64;
    loop {
        tick.tick().await;
        seq += 1;
        gate.broadcast_each(
            topic.clone(),
            crate::client::push_body(seq, body_size),
            |sid, result| {
                if let (Ok(()), Some(c)) = (result, &control) {
                    c.pushed(sid, seq);
                }
            },
        );
    }
}

/// The human-readable form of an event, for `gatekit serve` without `--json`.
pub fn describe(event: &GateEvent) -> String {
    match event {
        GateEvent::Listening {
            pid,
            control,
            listeners,
            metrics,
            ..
        } => {
            let mut control = control.map_or(String::new(), |c| format!("; control endpoint {c}"));
            if let Some(m) = metrics {
                control.push_str(&format!("; metrics http://{m}/metrics"));
            }
            let on: Vec<String> = listeners.iter().map(|l| l.to_string()).collect();
            format!(
                "gatekit gate on {} (pid {pid}{control})",
                on.join(", ")
            )
        }
        GateEvent::Status(s) => format!(
            "connections {} · sessions {} · accepted {} · refused {} · connects {} · disconnects {} · rss {} KiB",
            s.connections,
            s.sessions,
            s.accepted,
            s.refused,
            s.connects,
            s.disconnects,
            s.rss_kib.unwrap_or(0)
        ),
        GateEvent::Stopped {
            status,
            closed,
            aborted,
        } => format!(
            "shut down: {closed} connections closed, {aborted} aborted; {} connects, {} disconnects",
            status.connects, status.disconnects
        ),
    }
}
