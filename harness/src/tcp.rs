//! `tcp` mode: the same simulated clients over real loopback sockets, against the gate started in
//! this process or an external one (`--target`, loopback only).
//!
//! Against the built-in gate, the harness sees both sides: the learner and store record every
//! session, the agents' counters are read through their handles, and the pushes are the harness's
//! own (alternately `Gate::broadcast_each` and `Gate::push` to each session, each push numbered,
//! each acceptance recorded). Against `--target`, it sees what a client sees, plus the gate's side
//! when the gate has a control endpoint (`gatekit serve --control`, [`crate::control`]).
//!
//! ## Transports
//!
//! Every run goes over one transport ([`TcpRun::transport`]): plain TCP, TLS, WebSocket or
//! WebSocket over TLS. The built-in gate then listens through the same layers `gatekit serve
//! --listen PROTOCOL+TRANSPORT://..` builds ([`crate::listener_transport::transport`]), with a
//! self-signed certificate the clients trust; against `--target`, the clients trust `--tls-ca`.
//! Each client does its transport handshake ([`ClientTransport::connect`]) before its protocol
//! handshake, within its connect timeout. The behaviours mean the same over every transport, on
//! the protocol's bytes inside it:
//!
//! - a **dribbling** client writes each byte on its own: over TLS one record per byte, over a
//!   WebSocket one binary frame per byte;
//! - a **slowloris** completes the transport handshake (TLS, upgrade) and never sends its
//!   protocol handshake; the gate's one handshake deadline covers both;
//! - **drop** and **drop mid-frame** drop the TCP socket with no TLS close_notify and no
//!   WebSocket Close (half a protocol frame in a whole WebSocket frame, for the latter);
//! - a **slow consumer** shrinks its TCP receive buffer and stops reading; over TLS the gate's
//!   TLS stream also keeps up to [`TLS_SEND_BUFFER`] bytes of records once the socket is
//!   full, which counts in what the gate may hold before it must close it (the WebSocket layer
//!   queues no payload);
//! - **garbage** goes inside well-formed TLS records and WebSocket frames: it is the protocol
//!   that must refuse it;
//! - a **graceful** client without a goodbye packet (pomelo) closes its side: TLS close_notify,
//!   or a WebSocket Close frame.

use crate::client::{push_body, Behavior, Ending, SimClient};
use crate::client_transport::{ClientStream, ClientTransport, ClientTransportOptions, TrustRoot};
use crate::fake_backend::EchoBackend;
use crate::listen::{Listener, TransportKind};
use crate::listener_transport::{TlsSource, TransportOptions};
use crate::recorder::{Recorder, SharedRecorder};
use crate::run::{ConnRecord, GateSide, RunData};
use crate::scenario::{Mode, Scenario};
use crate::sim::{agent_config, push_frame_len};
use gatekit_agent::{AgentConfig, AgentHandle, Backends, Gate, Services};
use gatekit_codec::Topic;
use hdrhistogram::Histogram;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

pub use crate::source_address::PER_SOURCE_ADDRESS;

/// Longest a run may take beyond its ramp-up and duration before clients are cut (later if a
/// client's answer deadlines are later).
pub const RUN_SLACK: Duration = Duration::from_secs(60);

/// Slack on answer deadlines and push delivery over real sockets (scheduling, not the gate's
/// timeouts: a lost answer still shows, this much later).
pub const TCP_ANSWER_SLACK: Duration = Duration::from_secs(2);

/// Receive buffer a slow consumer asks its socket for, so that what the sockets can hold for it
/// is known (the kernel doubles it).
pub const SLOW_CONSUMER_RECV_BUFFER: u32 = 16 * 1024;

/// TLS records the gate's TLS stream keeps unsent once its socket is full (one write's:
/// [`gatekit_agent::transport::tls::MAX_UNSENT`]). A TLS gate may hold this much more for a slow
/// consumer than its socket and write queue.
pub const TLS_SEND_BUFFER: u64 = gatekit_agent::transport::tls::MAX_UNSENT as u64;

/// Options of a `tcp` run beyond its scenario.
#[derive(Debug, Clone, Default)]
pub struct TcpRun {
    /// An external gate (loopback) instead of the built-in one.
    pub target: Option<SocketAddr>,
    /// The external gate's control endpoint (`gatekit serve --control`), for its side.
    pub control: Option<SocketAddr>,
    /// The transport under the protocol: the built-in gate listens over it, and every client
    /// connects over it.
    pub transport: TransportKind,
    /// The PEM certificate the external gate's certificate is checked against (tls and wss with
    /// `target`); the built-in gate's own self-signed one otherwise.
    pub tls_ca: Option<PathBuf>,
    /// The name the gate's certificate must carry (`None`: the target's IP address).
    pub tls_server_name: Option<String>,
    /// The WebSocket path (ws and wss; `None`: `/`). The built-in gate upgrades only this path.
    pub ws_path: Option<String>,
    /// Defects injected into the built-in gate's own code.
    #[cfg(feature = "fault-injection")]
    pub faults: gatekit_agent::Faults,
}

/// Checks that an address is on loopback.
pub fn require_loopback(addr: &SocketAddr) -> Result<(), String> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(format!(
            "{addr} is not a loopback address: gatekit only loads 127.0.0.0/8 or ::1"
        ))
    }
}

/// Starts the built-in gate with fake back ends and a recorder, over plain TCP; returns it and
/// its address.
pub async fn start_gate(
    scenario: &Scenario,
    addr: &str,
) -> Result<(Gate, SocketAddr, Arc<SharedRecorder>), String> {
    let listener = Listener::tcp(
        scenario.protocol,
        addr.parse()
            .map_err(|e| format!("gate address {addr:?}: {e}"))?,
    );
    start_gate_with(
        agent_config(scenario),
        scenario,
        &listener,
        &TransportOptions::default(),
    )
    .await
}

/// Starts the built-in gate on `listener` (its protocol, transport and address) with `opts` for
/// its transport layers.
pub async fn start_gate_with(
    config: AgentConfig,
    scenario: &Scenario,
    listener: &Listener,
    opts: &TransportOptions,
) -> Result<(Gate, SocketAddr, Arc<SharedRecorder>), String> {
    let transport = crate::listener_transport::transport(listener, opts, &config)?;
    let recorder = Arc::new(SharedRecorder::default());
    let echo = EchoBackend::new(scenario.backend.clone(), scenario.seed);
    let services = Services {
        backends: Backends::new().with("echo", echo),
        store: recorder.clone(),
        learner: recorder.clone(),
    };
    let gate = Gate::builder().config(config).services(services).build();
    let bound = tokio::net::TcpListener::bind(listener.addr)
        .await
        .map_err(|e| format!("listening on {listener}: {e}"))?;
    let local = bound
        .local_addr()
        .map_err(|e| format!("listening on {listener}: {e}"))?;
    match transport {
        None => gate.serve_with(bound, listener.protocol.factory()),
        Some(t) => gate.serve_over(bound, t, listener.protocol.factory()),
    };
    Ok((gate, local, recorder))
}

/// Pushes accepted per session, by number, with when.
type PushLog = Mutex<HashMap<String, Vec<(u64, Instant)>>>;

struct Shared {
    scenario: Scenario,
    target: SocketAddr,
    transport: ClientTransport,
    gate: Option<Gate>,
    latency: Mutex<Histogram<u64>>,
    recorder: Option<Arc<SharedRecorder>>,
    pushes: PushLog,
    base: Instant,
    send_end: Instant,
    /// The receive buffer slow consumers got (bytes), once one has connected.
    slow_recv_buffer: Mutex<Option<u32>>,
}

/// Runs a scenario over TCP. With `target` None, starts the built-in gate on 127.0.0.1.
pub async fn run(
    scenario: &Scenario,
    target: Option<SocketAddr>,
    progress: impl Fn(usize, usize) + Send + 'static,
) -> Result<RunData, String> {
    let opts = TcpRun {
        target,
        ..TcpRun::default()
    };
    run_with(scenario, &opts, progress).await
}

/// Runs a scenario over TCP with the given options.
pub async fn run_with(
    scenario: &Scenario,
    opts: &TcpRun,
    progress: impl Fn(usize, usize) + Send + 'static,
) -> Result<RunData, String> {
    let wall = Instant::now();
    #[allow(unused_mut)]
    let mut config = agent_config(scenario);
    #[cfg(feature = "fault-injection")]
    {
        config.faults = opts.faults.clone();
    }
    let max_frame_length = config.max_frame_length;
    let ws_path = opts
        .transport
        .is_websocket()
        .then(|| opts.ws_path.clone().unwrap_or_else(|| "/".to_owned()));
    let (gate, addr, recorder, trust) = match opts.target {
        Some(t) => {
            require_loopback(&t)?;
            if let Some(c) = opts.control {
                require_loopback(&c)?;
            }
            (None, t, None, opts.tls_ca.clone().map(TrustRoot::File))
        }
        None => {
            let (cert, key) = crate::listener_transport::self_signed();
            let listener = Listener {
                protocol: scenario.protocol,
                transport: opts.transport,
                addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                path: ws_path.clone(),
            };
            let layers = TransportOptions {
                tls: opts.transport.is_tls().then(|| TlsSource::Pem {
                    cert: cert.clone(),
                    key,
                }),
                ..TransportOptions::default()
            };
            let (g, a, r) = start_gate_with(config, scenario, &listener, &layers)
                .await
                .map_err(|e| format!("starting the gate: {e}"))?;
            (Some(g), a, Some(r), Some(TrustRoot::Pem(cert)))
        }
    };
    let transport = ClientTransport::new(
        &ClientTransportOptions {
            kind: opts.transport,
            protocol: scenario.protocol,
            trust,
            server_name: opts.tls_server_name.clone(),
            ws_path,
            max_frame_length,
        },
        addr,
    )
    .map_err(|e| e.to_string())?;
    let control_before = match opts.control.filter(|_| opts.target.is_some()) {
        Some(c) => Some(crate::control::fetch(c).await?),
        None => None,
    };
    let base = gatekit_agent::driver::now();
    let send_end = base + scenario.ramp_up.0 + scenario.duration.0;
    let shared = Arc::new(Shared {
        scenario: scenario.clone(),
        target: addr,
        transport,
        gate: gate.clone(),
        latency: Mutex::new(Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("bounds")),
        recorder: recorder.clone(),
        pushes: Mutex::default(),
        base,
        send_end,
        slow_recv_buffer: Mutex::new(None),
    });
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(scenario.clients);
    for i in 0..scenario.clients {
        let shared = shared.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let r = run_client(i, &shared).await;
            done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            r
        }));
    }
    let pusher = (scenario.push_rate > 0.0 && gate.is_some())
        .then(|| tokio::spawn(push_loop(shared.clone())));
    let total = scenario.clients;
    let reporter = {
        let done = done.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                progress(done.load(std::sync::atomic::Ordering::Relaxed), total);
            }
        })
    };
    let mut conns = Vec::with_capacity(scenario.clients);
    let mut connect_failures = 0;
    for t in tasks {
        match t.await {
            Ok(Ok(rec)) => conns.push(rec),
            Ok(Err(_)) => connect_failures += 1,
            Err(e) => return Err(format!("client task failed: {e}")),
        }
    }
    reporter.abort();
    if let Some(p) = pusher {
        p.abort();
        let _ = p.await;
    }
    if gate.is_some() {
        // Every push accepted for a session, now that nothing pushes any more.
        let mut log = std::mem::take(&mut *shared.pushes.lock().expect("push log"));
        for c in &mut conns {
            let accepted = c.client_session_id.as_ref().and_then(|sid| log.remove(sid));
            c.pushes_accepted = Some(accepted.unwrap_or_default());
        }
    }
    // Let the gate finish closing what the clients left (handshake timeouts, lingering closes).
    let mut sessions_left = 0;
    let mut refused = 0;
    let settle = scenario.gate.handshake_timeout.0 + Duration::from_secs(15);
    if let Some(g) = &gate {
        let deadline = Instant::now() + settle;
        while g.connection_count() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sessions_left = g.session_count();
        refused = g.accepted_refused().1;
        g.shutdown(Duration::from_secs(2)).await;
    }
    let finished = gatekit_agent::driver::now();
    let (recorder, gate_side) = match (recorder, control_before, opts.control) {
        (Some(r), _, _) => (
            std::mem::take(&mut *r.0.lock().expect("recorder lock")),
            GateSide::Recorded,
        ),
        (None, Some(before), Some(addr)) => {
            let after = crate::control::settle(addr, &before, settle).await?;
            sessions_left = after.sessions.saturating_sub(before.sessions);
            refused = after.refused.saturating_sub(before.refused);
            let rec = crate::control::apply(&before, &after, &mut conns);
            (rec, GateSide::Control(addr))
        }
        _ => (
            Recorder::default(),
            GateSide::Invisible(
                "the external gate's side is not visible (--target without --control; `gatekit serve --control ADDR` gives it)".into(),
            ),
        ),
    };
    // Close reasons come from the learner.
    for c in &mut conns {
        if let Some(sid) = &c.client_session_id {
            c.close_reason = recorder
                .sessions
                .get(sid)
                .and_then(|l| l.disconnects.first().map(|d| d.1));
        }
    }
    let latency = std::mem::replace(
        &mut *shared.latency.lock().expect("latency lock"),
        Histogram::new(1).expect("histogram"),
    );
    let slow_consumer_threshold = match (&gate, *shared.slow_recv_buffer.lock().expect("lock")) {
        (Some(_), Some(rcvbuf)) => crate::procfs::tcp_send_buffer_max().map(|wmem| {
            let tls = if opts.transport.is_tls() {
                TLS_SEND_BUFFER
            } else {
                0
            };
            wmem + u64::from(rcvbuf) + scenario.gate.max_write_queue as u64 + tls
        }),
        _ => None,
    };
    Ok(RunData {
        mode: Mode::Tcp,
        transport: (opts.transport != TransportKind::Tcp).then(|| opts.transport.name()),
        scenario: scenario.clone(),
        started: base,
        send_end,
        finished,
        wall: wall.elapsed(),
        conns,
        recorder,
        latency_us: latency,
        connect_failures,
        refused,
        sessions_left,
        events: 0,
        timing_tolerance: Duration::from_millis(250),
        answer_slack: TCP_ANSWER_SLACK,
        read_size: gatekit_agent::driver::READ_SIZE,
        gate_side,
        slow_consumer_threshold,
        push_frame_len: push_frame_len(scenario.body_size),
    })
}

/// Pushes to every session at the scenario's rate: rounds alternate between one
/// `Gate::broadcast_each` and one `Gate::push` to each session, every push with its own number,
/// and every acceptance is recorded for the `pushes` invariant.
async fn push_loop(shared: Arc<Shared>) {
    let Some(gate) = &shared.gate else { return };
    let every = Duration::from_secs_f64(1.0 / shared.scenario.push_rate);
    let size = shared.scenario.body_size;
    let topic = Topic::from_static("push/tick");
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(1)));
    let per_tick = if every < Duration::from_millis(1) {
        (Duration::from_millis(1).as_secs_f64() / every.as_secs_f64()) as usize
    } else {
        1
    };
    let mut next = 0u64;
    let mut round = 0u64;
    let mut sessions: Vec<String> = Vec::new();
    while gatekit_agent::driver::now() < shared.send_end {
        tick.tick().await;
        for _ in 0..per_tick {
            round += 1;
            if round % 2 == 1 || sessions.is_empty() {
                next += 1;
                let seq = next;
                let mut accepted = Vec::new();
                sessions.clear();
                gate.broadcast_each(topic.clone(), push_body(seq, size), |sid, result| {
                    sessions.push(sid.to_owned());
                    if result.is_ok() {
                        accepted.push(sid.to_owned());
                    }
                });
                let t = gatekit_agent::driver::now();
                let mut log = shared.pushes.lock().expect("push log");
                for sid in accepted {
                    log.entry(sid).or_default().push((seq, t));
                }
            } else {
                for sid in &sessions {
                    next += 1;
                    if gate.push(sid, topic.clone(), push_body(next, size)).is_ok() {
                        let t = gatekit_agent::driver::now();
                        let mut log = shared.pushes.lock().expect("push log");
                        log.entry(sid.clone()).or_default().push((next, t));
                    }
                }
            }
        }
    }
}

fn source_address(i: usize) -> IpAddr {
    let block = (i / PER_SOURCE_ADDRESS) as u8;
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1u8.saturating_add(block)))
}

/// Connects client `i` over TCP, then through its transport, within 10 s.
async fn connect(shared: &Shared, i: usize, slow: bool) -> std::io::Result<ClientStream> {
    let src = source_address(i);
    let socket = if shared.target.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if shared.target.is_ipv4() && shared.scenario.clients > PER_SOURCE_ADDRESS {
        socket.bind(SocketAddr::new(src, 0))?;
    }
    if slow {
        socket.set_recv_buffer_size(SLOW_CONSUMER_RECV_BUFFER)?;
        let got = socket.recv_buffer_size()?;
        let mut known = shared.slow_recv_buffer.lock().expect("lock");
        *known = Some(known.map_or(got, |k| k.max(got)));
    }
    tokio::time::timeout(Duration::from_secs(10), async {
        let stream = socket.connect(shared.target).await?;
        stream.set_nodelay(true)?;
        shared.transport.connect(stream).await
    })
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))?
}

async fn run_client(i: usize, shared: &Shared) -> std::io::Result<ConnRecord> {
    let s = &shared.scenario;
    let start = shared.base + s.ramp_up.0.mul_f64(i as f64 / s.clients as f64);
    tokio::time::sleep_until(tokio::time::Instant::from_std(start)).await;
    let now = gatekit_agent::driver::now();
    let mut client = SimClient::new(i as u64, s, now, shared.send_end);
    client.set_answer_slack(TCP_ANSWER_SLACK);
    let mut stream = connect(shared, i, client.behavior == Behavior::SlowConsumer).await?;
    let local = stream.tcp().local_addr()?.to_string();
    let mut handle: Option<AgentHandle> = None;
    let mut bound_at = None;
    let mut buf = vec![0u8; 16 * 1024];
    let mut eof = false;
    loop {
        if let Some(out) = client.poll_transmit() {
            // Flushed at once: a TLS or WebSocket layer must not hold a dribbled byte back.
            let written = async {
                stream.write_all(&out).await?;
                stream.flush().await
            };
            if written.await.is_err() {
                client.handle_closed(gatekit_agent::driver::now());
            }
        }
        if client.ending() != Ending::Running {
            break;
        }
        if handle.is_none() && client.stats.welcomed && client.session_id.is_none() {
            // A welcome without a session id (pomelo): the gate's learner knows it by our address.
            if let Some(r) = &shared.recorder {
                client.session_id =
                    r.0.lock()
                        .expect("recorder lock")
                        .peers
                        .get(&local)
                        .cloned();
            }
        }
        if handle.is_none() {
            if let (Some(sid), Some(gate)) = (&client.session_id, &shared.gate) {
                handle = gate.agent(sid);
                if s.bind_users {
                    let t = gatekit_agent::driver::now();
                    if gate.bind_user(sid, format!("user-{i}")).is_ok() {
                        bound_at = Some(t);
                        if let Some(r) = &shared.recorder {
                            r.0.lock().expect("recorder lock").bind(sid, t);
                        }
                    }
                }
            }
        }
        // Cut a client that runs far past the end, but never before its answers are due.
        let cut = (shared.send_end + RUN_SLACK).max(
            client
                .give_up_at()
                .map_or(shared.send_end, |g| g + Duration::from_secs(5)),
        );
        let cut = tokio::time::Instant::from_std(cut);
        let timer = client
            .poll_timeout()
            .map(tokio::time::Instant::from_std)
            .unwrap_or(cut)
            .min(cut);
        tokio::select! {
            read = stream.read(&mut buf), if client.wants_read() => match read {
                Ok(0) | Err(_) => { eof = true; client.handle_closed(gatekit_agent::driver::now()); }
                Ok(n) => {
                    let t = gatekit_agent::driver::now();
                    let mut h = shared.latency.lock().expect("latency lock");
                    client.handle_input(t, &buf[..n], &mut h);
                }
            },
            _ = tokio::time::sleep_until(timer) => {
                if tokio::time::Instant::now() >= cut {
                    client.handle_closed(gatekit_agent::driver::now());
                } else {
                    client.handle_timeout(gatekit_agent::driver::now());
                }
            }
        }
    }
    match client.ending() {
        Ending::Graceful if !eof => {
            if !client.has_goodbye() {
                // No goodbye packet in this protocol: closing our side is the goodbye.
                let _ = stream.shutdown().await;
            }
            // Read until the gate closes, so everything it sent is counted.
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let t = gatekit_agent::driver::now();
                            let mut h = shared.latency.lock().expect("latency lock");
                            client.handle_input(t, &buf[..n], &mut h);
                        }
                    }
                }
            })
            .await;
        }
        _ => {
            // Abrupt: drop the socket (a drop mid-frame has already written its half frame).
            drop(stream);
        }
    }
    // Give the agent a moment to see the end before its counters are read.
    if let Some(h) = &handle {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !h.is_closed() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // `is_closed` turns true when the agent starts closing, before its last packet (a CLOSE)
        // is written and counted; its Disconnect comes after. Read the counters once it has.
        if let (Some(sid), Some(r)) = (&client.session_id, &shared.recorder) {
            let disconnected = || {
                r.0.lock()
                    .expect("recorder lock")
                    .sessions
                    .get(sid)
                    .is_some_and(|l| !l.disconnects.is_empty())
            };
            while !disconnected() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    Ok(ConnRecord {
        index: i as u64,
        behavior: client.behavior,
        session_id: None,
        client_session_id: client.session_id.clone(),
        agent_received: handle.as_ref().map(|h| h.received()),
        agent_sent: handle.as_ref().map(|h| h.sent()),
        max_buffered: handle.as_ref().map(|h| h.max_buffered()),
        buffer_bound: handle
            .as_ref()
            .map(|_| agent_config(s).buffer_bound(gatekit_agent::driver::READ_SIZE)),
        close_reason: None,
        activity: std::mem::take(&mut client.activity),
        client_ended_at: client.ended_at(),
        reads_everything: client.reads_everything(),
        graceful: client.ending() == Ending::Graceful,
        // Filled in once the pusher has stopped (see `run_with`).
        pushes_accepted: None,
        stats: client.finalize(),
        bound_at,
        closing_at: None,
    })
}
