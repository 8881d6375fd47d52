//! `tcp` mode: the same simulated clients over real loopback sockets, against the gate started in
//! this process or an external one (`--target`, loopback only).

use crate::client::{Ending, SimClient};
use crate::fake_backend::EchoBackend;
use crate::recorder::{Recorder, SharedRecorder};
use crate::run::{ConnRecord, RunData};
use crate::scenario::{Mode, Scenario};
use crate::sim::agent_config;
use gatekit_agent::{AgentHandle, Backends, Gate, Services};
use gatekit_codec::Topic;
use hdrhistogram::Histogram;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

pub use crate::source_address::PER_SOURCE_ADDRESS;

/// Longest a run may take beyond its ramp-up and duration before clients are cut.
pub const RUN_SLACK: Duration = Duration::from_secs(60);

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

/// Starts the built-in gate with fake back ends and a recorder; returns it and its address.
pub async fn start_gate(
    scenario: &Scenario,
    addr: &str,
) -> std::io::Result<(Gate, SocketAddr, Arc<SharedRecorder>)> {
    let recorder = Arc::new(SharedRecorder::default());
    let echo = EchoBackend::new(scenario.backend.clone(), scenario.seed);
    let services = Services {
        backends: Backends::new().with("echo", echo),
        store: recorder.clone(),
        learner: recorder.clone(),
    };
    let gate = Gate::builder()
        .config(agent_config(scenario))
        .services(services)
        .build();
    let (local, _) = gate.listen(addr).await?;
    Ok((gate, local, recorder))
}

struct Shared {
    scenario: Scenario,
    target: SocketAddr,
    gate: Option<Gate>,
    latency: Mutex<Histogram<u64>>,
    recorder: Option<Arc<SharedRecorder>>,
    base: Instant,
    send_end: Instant,
}

/// Runs a scenario over TCP. With `target` None, starts the built-in gate on 127.0.0.1.
pub async fn run(
    scenario: &Scenario,
    target: Option<SocketAddr>,
    progress: impl Fn(usize, usize) + Send + 'static,
) -> Result<RunData, String> {
    let wall = Instant::now();
    let (gate, addr, recorder) = match target {
        Some(t) => {
            require_loopback(&t)?;
            (None, t, None)
        }
        None => {
            let (g, a, r) = start_gate(scenario, "127.0.0.1:0")
                .await
                .map_err(|e| format!("starting the gate: {e}"))?;
            (Some(g), a, Some(r))
        }
    };
    let base = gatekit_agent::driver::now();
    let send_end = base + scenario.ramp_up.0 + scenario.duration.0;
    let shared = Arc::new(Shared {
        scenario: scenario.clone(),
        target: addr,
        gate: gate.clone(),
        latency: Mutex::new(Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("bounds")),
        recorder: recorder.clone(),
        base,
        send_end,
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
    }
    // Let the gate finish closing what the clients left (handshake timeouts, lingering closes).
    let mut sessions_left = 0;
    let mut refused = 0;
    if let Some(g) = &gate {
        let deadline = Instant::now() + scenario.gate.handshake_timeout.0 + Duration::from_secs(15);
        while g.connection_count() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sessions_left = g.session_count();
        refused = g.accepted_refused().1;
        g.shutdown(Duration::from_secs(2)).await;
    }
    let finished = gatekit_agent::driver::now();
    let recorder = match recorder {
        Some(r) => std::mem::take(&mut *r.0.lock().expect("recorder lock")),
        None => Recorder::default(),
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
    Ok(RunData {
        mode: Mode::Tcp,
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
        read_size: gatekit_agent::driver::READ_SIZE,
    })
}

async fn push_loop(shared: Arc<Shared>) {
    let Some(gate) = &shared.gate else { return };
    let every = Duration::from_secs_f64(1.0 / shared.scenario.push_rate);
    let body = bytes::Bytes::from(vec![b'p'; shared.scenario.body_size]);
    let topic = Topic::from_static("push/tick");
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(1)));
    let per_tick = if every < Duration::from_millis(1) {
        (Duration::from_millis(1).as_secs_f64() / every.as_secs_f64()) as usize
    } else {
        1
    };
    while gatekit_agent::driver::now() < shared.send_end {
        tick.tick().await;
        for _ in 0..per_tick {
            gate.broadcast(topic.clone(), body.clone());
        }
    }
}

fn source_address(i: usize) -> IpAddr {
    let block = (i / PER_SOURCE_ADDRESS) as u8;
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1u8.saturating_add(block)))
}

async fn connect(shared: &Shared, i: usize) -> std::io::Result<TcpStream> {
    let src = source_address(i);
    let socket = if shared.target.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if shared.target.is_ipv4() && shared.scenario.clients > PER_SOURCE_ADDRESS {
        socket.bind(SocketAddr::new(src, 0))?;
    }
    let stream = tokio::time::timeout(Duration::from_secs(10), socket.connect(shared.target))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

async fn run_client(i: usize, shared: &Shared) -> std::io::Result<ConnRecord> {
    let s = &shared.scenario;
    let start = shared.base + s.ramp_up.0.mul_f64(i as f64 / s.clients as f64);
    tokio::time::sleep_until(tokio::time::Instant::from_std(start)).await;
    let mut stream = connect(shared, i).await?;
    let now = gatekit_agent::driver::now();
    let mut client = SimClient::new(i as u64, s, now, shared.send_end);
    let mut handle: Option<AgentHandle> = None;
    let mut bound_at = None;
    let mut buf = vec![0u8; 16 * 1024];
    let cut = tokio::time::Instant::from_std(shared.send_end + RUN_SLACK);
    let mut eof = false;
    loop {
        if let Some(out) = client.poll_transmit() {
            if stream.write_all(&out).await.is_err() {
                client.handle_closed();
            }
        }
        if client.ending() != Ending::Running {
            break;
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
        let timer = client
            .poll_timeout()
            .map(tokio::time::Instant::from_std)
            .unwrap_or(cut)
            .min(cut);
        tokio::select! {
            read = stream.read(&mut buf), if client.wants_read() => match read {
                Ok(0) | Err(_) => { eof = true; client.handle_closed(); }
                Ok(n) => {
                    let t = gatekit_agent::driver::now();
                    let mut h = shared.latency.lock().expect("latency lock");
                    client.handle_input(t, &buf[..n], &mut h);
                }
            },
            _ = tokio::time::sleep_until(timer) => {
                if tokio::time::Instant::now() >= cut {
                    client.handle_closed();
                } else {
                    client.handle_timeout(gatekit_agent::driver::now());
                }
            }
        }
    }
    match client.ending() {
        Ending::Graceful if !eof => {
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
        stats: client.finalize(),
        bound_at,
        closing_at: None,
    })
}
