//! `sim` mode: every client and every agent in one process, on a virtual clock, through the agent's
//! I/O-free state machine and in-memory byte pipes. Deterministic for a seed: the same seed gives the
//! same report.

use crate::client::{push_body, Ending, SimClient};
use crate::fake_backend::{sample, Outcome, INJECTED_ERROR};
use crate::listen::WireProtocol;
use crate::recorder::Recorder;
use crate::run::{ConnRecord, GateSide, RunData};
use crate::scenario::{Mode, Scenario};
use bytes::{Bytes, BytesMut};
use gatekit_agent::{
    Action, AgentConfig, CallId, CallResult, ConnInfo, Connection, Counters, Mqtt, Native, Pomelo,
    Protocol,
};
use gatekit_codec::Topic;
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes a TCP socket would buffer for a client that does not read (the kernel's send + receive
/// buffers), modelled in the pipes.
pub const SOCKET_BUFFER: usize = 128 * 1024;

/// Bytes read from a pipe at a time (the agent's `read_size`).
pub const READ_SIZE: usize = 4096;

/// After the send phase, how long the simulation may run on before it is cut, at least (every
/// connection normally ends long before: timeouts are at most tens of seconds).
pub const DRAIN_LIMIT: Duration = Duration::from_secs(600);

/// How long after the send phase the simulation may run: [`DRAIN_LIMIT`] plus the longest backlog a
/// client can build. The gate never drops a message: with slow or hanging back ends, a client that
/// sent faster than they answer is served, in order, long after it stopped sending (one message
/// per `backend_timeout` at worst, `max_in_flight` at a time). Virtual time is cheap.
pub fn drain_limit(s: &Scenario) -> Duration {
    let sending = (s.ramp_up.0 + s.duration.0).as_secs_f64();
    let messages = (s.rate * sending).ceil() + s.burst_size as f64 + 16.0;
    let per_message = (s.gate.backend_timeout.0 + s.backend.latency_max.0).as_secs_f64();
    let backlog = messages * per_message / s.gate.max_in_flight.max(1) as f64;
    DRAIN_LIMIT + Duration::from_secs_f64(backlog.min(1e7))
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Start(usize),
    Wake(usize, u64),
    BackendDone(usize, u64, u8),
    PushTick(usize),
}

struct Pair<P: Protocol> {
    client: SimClient,
    agent: Connection<P>,
    /// Client → agent bytes the agent has not read yet.
    c2a: BytesMut,
    /// Agent → client bytes written to the socket but not read by the client.
    a2c: BytesMut,
    /// A chunk from `poll_transmit` the socket could not take yet.
    pending_tx: Option<Bytes>,
    /// The generation of the one Wake event that is current; older ones in the heap are stale.
    generation: u64,
    /// When the current Wake event fires (`None`: none is queued).
    wake_at: Option<Instant>,
    closed: bool,
    bound_at: Option<Instant>,
    results: Vec<(CallId, Option<Bytes>)>,
    /// When the agent decoded packets from this client (heartbeat scenarios): activity as the
    /// gate sees it, which back-pressure may delay past the client's send.
    activity: Vec<Instant>,
    /// Pushes the agent accepted, by number, with when.
    pushes_accepted: Vec<(u64, Instant)>,
}

/// Deliberate defects, to show that the invariant checks fail when they should (tests only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sabotage {
    /// Swallow every n-th Disconnect before the learner sees it (mqant's forgotten DisConnect).
    pub drop_disconnects_every: Option<u64>,
    /// The learner counts every Connect twice.
    pub double_count_connects: bool,
    /// Report a storage heartbeat on every packet of a bound session, unthrottled.
    pub heartbeat_every_packet: bool,
    /// Let the write queue bound the invariant checks use be this many bytes instead of the real one.
    pub claimed_buffer_bound: Option<usize>,
    /// Defects injected into the agent's own code (`Connection`), not the harness's.
    #[cfg(feature = "fault-injection")]
    pub faults: gatekit_agent::Faults,
}

/// Runs a scenario in simulation.
pub fn run(scenario: &Scenario, progress: impl FnMut(Instant, usize, usize)) -> RunData {
    run_with(scenario, Sabotage::default(), progress)
}

/// Runs a scenario in simulation with deliberate defects (see [`Sabotage`]).
pub fn run_with(
    scenario: &Scenario,
    sabotage: Sabotage,
    progress: impl FnMut(Instant, usize, usize),
) -> RunData {
    match scenario.protocol {
        WireProtocol::Native => run_protocol(scenario, sabotage, progress, Native::new),
        WireProtocol::Mqtt => run_protocol(scenario, sabotage, progress, Mqtt::new),
        WireProtocol::Pomelo => run_protocol(scenario, sabotage, progress, Pomelo::new),
    }
}

fn run_protocol<P: Protocol>(
    scenario: &Scenario,
    sabotage: Sabotage,
    mut progress: impl FnMut(Instant, usize, usize),
    make: fn(&AgentConfig) -> P,
) -> RunData {
    let wall = Instant::now();
    let base = Instant::now();
    #[allow(unused_mut)]
    let mut config = agent_config(scenario);
    #[cfg(feature = "fault-injection")]
    {
        config.faults = sabotage.faults.clone();
    }
    let config = Arc::new(config);
    let mut rng = StdRng::seed_from_u64(scenario.seed);
    let send_end = base + scenario.ramp_up.0 + scenario.duration.0;
    let drain = drain_limit(scenario);
    let mut pairs: Vec<Option<Pair<P>>> = (0..scenario.clients).map(|_| None).collect();
    let mut records: Vec<Option<ConnRecord>> = (0..scenario.clients).map(|_| None).collect();
    let mut heap: BinaryHeap<Reverse<(Instant, u64, Event)>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut push = |heap: &mut BinaryHeap<_>, t: Instant, e: Event| {
        seq += 1;
        heap.push(Reverse((t, seq, e)));
    };
    for i in 0..scenario.clients {
        let offset = scenario
            .ramp_up
            .0
            .mul_f64(i as f64 / scenario.clients as f64);
        push(&mut heap, base + offset, Event::Start(i));
    }
    let mut recorder = Recorder {
        double_count: sabotage.double_count_connects,
        ..Recorder::default()
    };
    let mut disconnects_seen = 0u64;
    let mut latency =
        Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds");
    let mut events = 0u64;
    let mut live = 0usize;
    let mut now = base;
    let mut last_end = base;
    let mut last_progress = base;
    let push_topic = Topic::from_static("push/tick");
    let mut next_push = 0u64;
    let push_every =
        (scenario.push_rate > 0.0).then(|| Duration::from_secs_f64(1.0 / scenario.push_rate));
    let mut session_rng = StdRng::seed_from_u64(scenario.seed ^ 0x5e55_1011);

    // A state machine that asks to be woken at the same instant forever would hang the run: cut it.
    let mut same_instant = 0u64;
    let same_instant_limit = 1_000_000 + 100 * scenario.clients as u64;
    while let Some(Reverse((t, _, event))) = heap.pop() {
        if t > send_end + drain {
            break;
        }
        if let Event::Wake(i, generation) = event {
            if pairs[i].as_ref().is_none_or(|p| p.generation != generation) {
                continue; // stale: the pair rescheduled or ended
            }
        }
        if t == now {
            same_instant += 1;
            if same_instant > same_instant_limit {
                eprintln!("sim: livelock: {same_instant} events at one instant; run cut");
                break;
            }
        } else {
            same_instant = 0;
        }
        now = t;
        events += 1;
        let i = match event {
            Event::Start(i) => {
                let client = SimClient::new(i as u64, scenario, now, send_end);
                let info = ConnInfo {
                    session_id: format!("{:032x}", session_rng.random::<u128>()),
                    network: "sim".into(),
                    peer: format!("sim-client-{i}"),
                };
                let agent = Connection::with_protocol(
                    make(&config),
                    config.clone(),
                    info,
                    now,
                    Arc::new(Counters::default()),
                );
                pairs[i] = Some(Pair {
                    client,
                    agent,
                    c2a: BytesMut::new(),
                    a2c: BytesMut::new(),
                    pending_tx: None,
                    generation: 0,
                    wake_at: None,
                    closed: false,
                    bound_at: None,
                    results: Vec::new(),
                    activity: Vec::new(),
                    pushes_accepted: Vec::new(),
                });
                live += 1;
                if let Some(every) = push_every {
                    push(&mut heap, now + every, Event::PushTick(i));
                }
                i
            }
            Event::Wake(i, _) => {
                let Some(p) = pairs[i].as_mut() else { continue };
                p.wake_at = None;
                p.client.handle_timeout(now);
                p.agent.handle_timeout(now);
                i
            }
            Event::BackendDone(i, call, kind) => {
                let Some(p) = pairs[i].as_mut() else { continue };
                let Some(pos) = p.results.iter().position(|(c, _)| c.0 == call) else {
                    continue;
                };
                let (id, body) = p.results.swap_remove(pos);
                let result = match kind {
                    0 => CallResult::Ok(body.unwrap_or_default()),
                    1 => CallResult::Failed(Bytes::from_static(INJECTED_ERROR)),
                    _ => CallResult::Panicked,
                };
                p.agent.handle_call_result(now, id, result);
                i
            }
            Event::PushTick(i) => {
                let Some(p) = pairs[i].as_mut() else { continue };
                if p.agent.is_open() {
                    next_push += 1;
                    let body = push_body(next_push, scenario.body_size);
                    if p.agent.push(push_topic.clone(), body).is_ok() {
                        p.pushes_accepted.push((next_push, now));
                    }
                }
                if let Some(every) = push_every {
                    if now < send_end && !p.agent.is_closing() {
                        push(&mut heap, now + every, Event::PushTick(i));
                    }
                }
                i
            }
        };
        let Some(p) = pairs[i].as_mut() else { continue };
        pump(
            p,
            now,
            &mut recorder,
            &mut latency,
            scenario,
            &mut rng,
            &mut |t, e| push(&mut heap, t, e),
            i,
            (&sabotage, &mut disconnects_seen),
        );
        if p.agent.is_finished() && (p.closed || p.client.ending() != Ending::Running) {
            let p = pairs[i].take().expect("present");
            records[i] = Some(record(p, &sabotage));
            live -= 1;
            last_end = now;
        } else {
            // One Wake per pair in the heap: queue a new one only when the deadline moved.
            let t = min_opt(p.client.poll_timeout(), p.agent.poll_timeout()).map(|t| t.max(now));
            if t != p.wake_at {
                p.generation += 1;
                p.wake_at = t;
                if let Some(t) = t {
                    let generation = p.generation;
                    push(&mut heap, t, Event::Wake(i, generation));
                }
            }
        }
        if now >= last_progress + Duration::from_secs(1) {
            last_progress = now;
            progress(now, live, scenario.clients);
        }
    }
    // Anything still running when the simulation was cut is recorded as it is (and shows up as
    // sessions left registered).
    let mut sessions_left = 0;
    for (i, p) in pairs.into_iter().enumerate() {
        if let Some(p) = p {
            if p.agent.is_open() {
                sessions_left += 1;
            }
            records[i] = Some(record(p, &sabotage));
        }
    }
    RunData {
        mode: Mode::Sim,
        transport: None,
        scenario: scenario.clone(),
        started: base,
        send_end,
        // When the last connection ended (stale timer events may come later), or where the run
        // was cut.
        finished: if sessions_left == 0 && live == 0 {
            last_end
        } else {
            now
        },
        wall: wall.elapsed(),
        conns: records.into_iter().flatten().collect(),
        recorder,
        latency_us: latency,
        connect_failures: 0,
        refused: 0,
        sessions_left,
        events,
        timing_tolerance: Duration::ZERO,
        answer_slack: crate::client::SIM_ANSWER_SLACK,
        read_size: READ_SIZE,
        gate_side: GateSide::Recorded,
        slow_consumer_threshold: Some((SOCKET_BUFFER + scenario.gate.max_write_queue) as u64),
        push_frame_len: push_frame_len(scenario.body_size),
    }
}

/// The length of one of the harness's push frames on the wire.
pub fn push_frame_len(body_size: usize) -> u64 {
    let mut wire = BytesMut::new();
    gatekit_codec::NativeCodec::default()
        .encode(
            &gatekit_codec::Packet::Push(gatekit_codec::Push::new(
                Topic::from_static("push/tick"),
                push_body(0, body_size),
            )),
            &mut wire,
        )
        .map_or(0, |_| wire.len() as u64)
}

/// The agent options a scenario asks for.
pub fn agent_config(s: &Scenario) -> AgentConfig {
    AgentConfig {
        heartbeat: s.gate.heartbeat.0,
        idle_timeout: s.gate.idle_timeout.0,
        handshake_timeout: s.gate.handshake_timeout.0,
        backend_timeout: s.gate.backend_timeout.0,
        max_in_flight: s.gate.max_in_flight,
        max_write_queue: s.gate.max_write_queue,
        ..AgentConfig::default()
    }
}

fn min_opt(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

fn record<P: Protocol>(mut p: Pair<P>, sabotage: &Sabotage) -> ConnRecord {
    let stats = p.client.finalize();
    ConnRecord {
        index: p.client.index,
        behavior: p.client.behavior,
        session_id: p.agent.session().map(|s| s.session_id.clone()),
        client_session_id: p.client.session_id.clone(),
        agent_received: Some(p.agent.counters().received()),
        agent_sent: Some(p.agent.counters().sent()),
        max_buffered: Some(p.agent.max_buffered_bytes()),
        buffer_bound: Some(
            sabotage
                .claimed_buffer_bound
                .unwrap_or_else(|| p.agent.buffer_bound(READ_SIZE)),
        ),
        close_reason: p.agent.close_reason(),
        activity: p.activity,
        closing_at: p.agent.closing_at(),
        client_ended_at: p.client.ended_at(),
        reads_everything: p.client.reads_everything(),
        graceful: p.client.ending() == Ending::Graceful,
        pushes_accepted: Some(p.pushes_accepted),
        stats,
        bound_at: p.bound_at,
    }
}

/// Moves bytes and actions between a client and its agent until neither has anything to do now.
#[allow(clippy::too_many_arguments)]
fn pump<P: Protocol>(
    p: &mut Pair<P>,
    now: Instant,
    recorder: &mut Recorder,
    latency: &mut Histogram<u64>,
    scenario: &Scenario,
    rng: &mut StdRng,
    schedule: &mut dyn FnMut(Instant, Event),
    i: usize,
    (sabotage, disconnects_seen): (&Sabotage, &mut u64),
) {
    let received_before = p.agent.counters().received();
    loop {
        let mut progressed = false;
        // Client → pipe.
        if !p.closed {
            if let Some(b) = p.client.poll_transmit() {
                p.c2a.extend_from_slice(&b);
                progressed = true;
            }
        }
        // Pipe → agent, one read at a time, while it wants to read.
        if !p.c2a.is_empty() && p.agent.wants_read() {
            let n = p.c2a.len().min(READ_SIZE);
            let chunk = p.c2a.split_to(n);
            p.agent.handle_input(now, chunk);
            progressed = true;
        } else if p.c2a.is_empty()
            && p.client.ending() != Ending::Running
            && !p.closed
            && p.agent.wants_read()
        {
            // The client has closed its side and everything it sent has been read.
            p.closed = true;
            p.agent.handle_eof(now);
            progressed = true;
        }
        // Agent actions.
        while let Some(action) = p.agent.poll_action() {
            progressed = true;
            match action {
                Action::Connect(s) => {
                    recorder.connect(&s, now);
                    if scenario.bind_users {
                        let user = format!("user-{i}");
                        if p.agent.bind(now, user) {
                            p.bound_at = Some(now);
                            recorder.bind(&s.session_id, now);
                        }
                    }
                }
                Action::Disconnect(s, reason) => {
                    *disconnects_seen += 1;
                    let swallow = sabotage
                        .drop_disconnects_every
                        .is_some_and(|n| *disconnects_seen % n.max(1) == 0);
                    if !swallow {
                        recorder.disconnect(&s, reason, now);
                    }
                }
                Action::StorageHeartbeat(s) => recorder.heartbeat(&s, now),
                // The simulated gate keeps no sessions between connections.
                Action::Store(_) => {}
                // The simulated gate has no authenticator (it never asks for one).
                Action::Authenticate(_) => {
                    unreachable!("the simulation never requires authentication")
                }
                Action::Call(call) => {
                    let (lat, outcome) = sample(&scenario.backend, rng);
                    let kind = match outcome {
                        Outcome::Echo => 0,
                        Outcome::Error => 1,
                        Outcome::Panic => 2,
                        Outcome::Hang => continue, // never answers; the agent times it out
                    };
                    p.results.push((call.id, Some(call.body)));
                    schedule(now + lat, Event::BackendDone(i, call.id.0, kind));
                }
            }
        }
        // Agent → socket.
        if p.pending_tx.is_none() {
            p.pending_tx = p.agent.poll_transmit();
        }
        if let Some(chunk) = p.pending_tx.as_mut() {
            let room = SOCKET_BUFFER.saturating_sub(p.a2c.len());
            let n = room.min(chunk.len());
            if n > 0 {
                p.a2c.extend_from_slice(&chunk[..n]);
                bytes::Buf::advance(chunk, n);
                if chunk.is_empty() {
                    p.pending_tx = None;
                }
                p.agent.handle_written(n);
                progressed = true;
            }
        }
        if sabotage.heartbeat_every_packet && progressed {
            if let Some(s) = p.agent.session().filter(|s| s.is_bound()) {
                recorder.heartbeat(s, now);
            }
        }
        // Socket → client.
        if !p.a2c.is_empty() && p.client.wants_read() {
            let data = p.a2c.split();
            p.client.handle_input(now, &data, latency);
            progressed = true;
        }
        if p.agent.is_finished() && p.a2c.is_empty() && p.client.ending() == Ending::Running {
            // The gate closed the connection: the client sees EOF.
            p.client.handle_closed(now);
            p.closed = true;
            progressed = true;
        }
        if !progressed {
            break;
        }
    }
    if scenario.bind_users && p.agent.counters().received() > received_before {
        p.activity.push(now);
    }
}
