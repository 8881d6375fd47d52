//! A simulated game client: a sans-I/O state machine like the agent's, driven by the sim engine on a
//! virtual clock or by a tokio task over a real socket. Each client has its own seeded randomness.

use crate::answer_deadline::AnswerDeadlines;
use crate::client_wire::{ClientPacket, ClientWire, Garbage, GateEvent};
use crate::scenario::{Mix, Scenario};
use bytes::{BufMut, Bytes, BytesMut};
use gatekit_codec::{CloseCode, Status};
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What a client does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Behavior {
    /// Requests at the rate, graceful CLOSE at the end.
    Normal,
    /// Requests in bursts.
    Burst,
    /// Drops the connection abruptly at a random time.
    Drop,
    /// Drops the connection in the middle of a frame.
    DropMidFrame,
    /// Stops reading after the handshake.
    SlowConsumer,
    /// Never finishes the handshake.
    Slowloris,
    /// Sends every byte on its own, slowly.
    Dribble,
    /// Sends random bytes after the handshake.
    GarbageBytes,
    /// Sends a length prefix far over the frame limit.
    GarbageOversize,
    /// Sends a request whose route is not `module/func`.
    GarbageRoute,
}

impl Behavior {
    /// Name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Behavior::Normal => "normal",
            Behavior::Burst => "burst",
            Behavior::Drop => "drop",
            Behavior::DropMidFrame => "drop_mid_frame",
            Behavior::SlowConsumer => "slow_consumer",
            Behavior::Slowloris => "slowloris",
            Behavior::Dribble => "dribble",
            Behavior::GarbageBytes => "garbage_bytes",
            Behavior::GarbageOversize => "garbage_oversize",
            Behavior::GarbageRoute => "garbage_route",
        }
    }

    /// Picks a behaviour from the mix.
    pub fn pick(mix: &Mix, rng: &mut StdRng) -> Behavior {
        let w = [
            (mix.normal, Behavior::Normal),
            (mix.burst, Behavior::Burst),
            (mix.drop, Behavior::Drop),
            (mix.drop_mid_frame, Behavior::DropMidFrame),
            (mix.slow_consumer, Behavior::SlowConsumer),
            (mix.slowloris, Behavior::Slowloris),
            (mix.dribble, Behavior::Dribble),
            (mix.garbage / 3.0, Behavior::GarbageBytes),
            (mix.garbage / 3.0, Behavior::GarbageOversize),
            (mix.garbage / 3.0, Behavior::GarbageRoute),
        ];
        let total: f64 = w.iter().map(|x| x.0).sum();
        let mut r = rng.random::<f64>() * total;
        for (weight, b) in w {
            if r < weight {
                return b;
            }
            r -= weight;
        }
        Behavior::Normal
    }
}

pub use crate::client_wire::ECHO_ROUTE;

/// Time between two bytes of a dribbling client (shorter for a packet that would otherwise take
/// longer than half the gate's idle timeout).
pub const DRIBBLE_STEP: Duration = Duration::from_millis(50);

/// Slack on answer deadlines in `sim` (the virtual clock is exact; this only orders a give-up after
/// an answer due at the same instant).
pub const SIM_ANSWER_SLACK: Duration = Duration::from_millis(1);

/// The first 8 bytes of every push body the harness sends: its number, big-endian; the rest is
/// filler. A body too short to carry one is read as [`UNKNOWN_PUSH`].
pub fn push_body(seq: u64, size: usize) -> Bytes {
    let mut b = BytesMut::with_capacity(size.max(8));
    b.put_u64(seq);
    b.resize(size.max(8), b'p');
    b.freeze()
}

/// The number read from a push body that does not carry one.
pub const UNKNOWN_PUSH: u64 = u64::MAX;

fn push_seq(body: &[u8]) -> u64 {
    match body.get(..8) {
        Some(b) => u64::from_be_bytes(b.try_into().expect("8 bytes")),
        None => UNKNOWN_PUSH,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Handshaking,
    Open,
    /// Sent CLOSE (or decided to drop); nothing more to send.
    Finished,
}

/// What a client counted.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClientStats {
    /// Complete packets sent.
    pub packets_sent: u64,
    /// Packets received.
    pub packets_received: u64,
    /// Requests sent.
    pub requests: u64,
    /// Notifies sent.
    pub notifies: u64,
    /// Pings sent.
    pub pings: u64,
    /// Responses by status name.
    pub responses: BTreeMap<&'static str, u64>,
    /// Pushes received.
    pub pushes: u64,
    /// Pongs received.
    pub pongs: u64,
    /// Responses to an id not in flight (unknown or duplicate).
    pub unexpected_responses: u64,
    /// Ok responses whose body is not the echo of the request.
    pub wrong_bodies: u64,
    /// Requests still unanswered when the connection ended.
    pub unanswered: u64,
    /// Responses that came after their answer deadline (plus slack).
    pub late_responses: u64,
    /// Responses whose id is lower than one already answered (request order broken).
    pub out_of_order: u64,
    /// For each unanswered request, when a correct gate had to have answered it (`None`: it was
    /// never fully sent).
    #[serde(skip)]
    pub unanswered_due: Vec<Option<Instant>>,
    /// The number of every push received, in arrival order (see [`push_body`]).
    #[serde(skip)]
    pub push_seqs: Vec<u64>,
    /// Bytes of garbage sent.
    pub garbage_bytes: u64,
    /// The CLOSE the gate sent, if any.
    #[serde(serialize_with = "close_code_name")]
    pub gate_close: Option<CloseCode>,
    /// Whether the handshake was answered with WELCOME.
    pub welcomed: bool,
    /// Whether the gate answered this client's CLOSE with its own.
    pub close_answered: bool,
    /// Closed with requests still outstanding after their answer deadlines had passed (it gave up
    /// waiting: a correct gate never makes a client do that).
    pub gave_up: bool,
    /// The client's own decode errors on the gate's output (should stay 0).
    pub decode_errors: u64,
}

fn close_code_name<S: serde::Serializer>(c: &Option<CloseCode>, s: S) -> Result<S::Ok, S::Error> {
    match c {
        Some(c) => s.serialize_some(c.name()),
        None => s.serialize_none(),
    }
}

/// How the client ends its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Still running.
    Running,
    /// Sent CLOSE; the transport may be closed once the output is flushed.
    Graceful,
    /// Close the transport now, without CLOSE.
    Abort,
}

#[derive(Debug, Clone, Copy)]
struct Outstanding {
    sent: Instant,
    /// When a correct gate has answered it at the latest (`None` until fully sent).
    due: Option<Instant>,
}

/// What a packet sent does to the answer deadlines.
#[derive(Debug, Clone, Copy)]
enum Sent {
    Hello,
    Request(u32),
    Notify,
    Other,
}

impl Sent {
    fn of(packet: &ClientPacket<'_>) -> Sent {
        match packet {
            ClientPacket::Request { id, .. } => Sent::Request(*id),
            ClientPacket::Notify { .. } => Sent::Notify,
            ClientPacket::Hello { .. } => Sent::Hello,
            _ => Sent::Other,
        }
    }
}

/// One simulated client.
pub struct SimClient {
    /// Index of the client in the run.
    pub index: u64,
    /// Its behaviour.
    pub behavior: Behavior,
    /// What it counted.
    pub stats: ClientStats,
    /// The session id from WELCOME.
    pub session_id: Option<String>,
    rng: StdRng,
    phase: Phase,
    ending: Ending,
    wire: Box<dyn ClientWire>,
    input: BytesMut,
    output: BytesMut,
    dribble: BytesMut,
    next_dribble: Instant,
    next_id: u32,
    outstanding: BTreeMap<u32, Outstanding>,
    deadlines: AnswerDeadlines,
    answer_slack: Duration,
    /// The highest request id answered so far.
    highest_answered: u32,
    /// When the connection ended for this client (it closed, dropped, or saw the gate close).
    ended_at: Option<Instant>,
    /// When the handshake's last byte left.
    hello_sent_at: Option<Instant>,
    handshake_timeout: Duration,
    started: Instant,
    end: Instant,
    drop_at: Option<Instant>,
    next_send: Instant,
    last_sent: Instant,
    interval: Option<Duration>,
    window: usize,
    burst_size: usize,
    notify_ratio: f64,
    body_size: usize,
    ping_interval: Duration,
    garbage_sent: bool,
    /// Past `end`, waiting for outstanding responses before closing.
    waiting_close: bool,
    /// A dribbling client has flushed its queue for its final CLOSE.
    behavior_flushed: bool,
    /// Bytes dribbled out so far.
    dribbled: u64,
    /// Time between two dribbled bytes: [`DRIBBLE_STEP`], or less when the queue is so long that
    /// the gate's idle timeout would pass before a packet is complete.
    dribble_step: Duration,
    idle_timeout: Duration,
    /// Where each dribbled packet ends, counted in `dribbled` bytes, and what it was.
    dribble_marks: std::collections::VecDeque<(u64, Sent)>,
    /// Times the client sent a packet (kept only when `track_activity`).
    pub activity: Vec<Instant>,
    track_activity: bool,
}

impl SimClient {
    /// A client starting (connected) at `now`, sending until `end`.
    pub fn new(index: u64, scenario: &Scenario, now: Instant, end: Instant) -> Self {
        let mut rng =
            StdRng::seed_from_u64(scenario.seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let behavior = Behavior::pick(&scenario.mix, &mut rng);
        let interval = match behavior {
            Behavior::Burst if scenario.rate > 0.0 => Some(Duration::from_secs_f64(
                scenario.burst_size as f64 / scenario.rate,
            )),
            _ if scenario.rate > 0.0 => Some(Duration::from_secs_f64(1.0 / scenario.rate)),
            _ => None,
        };
        let first = interval.map_or(end, |i| now + i.mul_f64(rng.random::<f64>()));
        let drop_at = match behavior {
            Behavior::Drop | Behavior::DropMidFrame => {
                let span = end.saturating_duration_since(now);
                Some(now + span.mul_f64(rng.random::<f64>()))
            }
            _ => None,
        };
        let mut c = SimClient {
            index,
            behavior,
            stats: ClientStats::default(),
            session_id: None,
            rng,
            phase: Phase::Handshaking,
            ending: Ending::Running,
            wire: crate::client_wire::wire(scenario.protocol),
            input: BytesMut::new(),
            output: BytesMut::new(),
            dribble: BytesMut::new(),
            next_dribble: now,
            next_id: 1,
            outstanding: BTreeMap::new(),
            deadlines: AnswerDeadlines::new(
                scenario.gate.backend_timeout.0,
                scenario.gate.max_in_flight,
            ),
            answer_slack: SIM_ANSWER_SLACK,
            highest_answered: 0,
            ended_at: None,
            hello_sent_at: None,
            handshake_timeout: scenario.gate.handshake_timeout.0,
            started: now,
            end,
            drop_at,
            next_send: first,
            last_sent: now,
            interval,
            window: scenario.window.max(1),
            burst_size: scenario.burst_size.max(1),
            notify_ratio: scenario.notify_ratio,
            body_size: scenario.body_size.max(12),
            ping_interval: scenario.ping_interval.0,
            garbage_sent: false,
            waiting_close: false,
            behavior_flushed: false,
            dribbled: 0,
            dribble_step: DRIBBLE_STEP,
            idle_timeout: scenario.gate.idle_timeout.0,
            dribble_marks: std::collections::VecDeque::new(),
            activity: Vec::new(),
            track_activity: scenario.bind_users,
        };
        if behavior != Behavior::Slowloris {
            let token = format!("client-{index}");
            c.send(
                now,
                ClientPacket::Hello {
                    token: token.as_bytes(),
                },
            );
        }
        c
    }

    /// The body of request `id`: the client index, the id, then filler; the echo back end returns it.
    pub fn body_for(&self, id: u32) -> Bytes {
        let mut b = BytesMut::with_capacity(self.body_size);
        b.put_u64(self.index);
        b.put_u32(id);
        b.resize(self.body_size, b'.');
        b.freeze()
    }

    /// Slack allowed on answer deadlines (default [`SIM_ANSWER_SLACK`]; more over real sockets).
    pub fn set_answer_slack(&mut self, slack: Duration) {
        self.answer_slack = slack;
    }

    fn send(&mut self, now: Instant, packet: ClientPacket<'_>) {
        let sent = Sent::of(&packet);
        if matches!(packet, ClientPacket::Ack) && !self.wire.acks_welcome()
            || matches!(packet, ClientPacket::Goodbye) && !self.wire.has_goodbye()
        {
            return; // the protocol has no such packet
        }
        if self.behavior == Behavior::Dribble && !self.behavior_flushed {
            // The packet is sent (and counts as activity) when its last byte is dribbled out.
            let was_empty = self.dribble.is_empty();
            self.wire.encode(packet, &mut self.dribble);
            self.stats.packets_sent += 1;
            self.last_sent = now;
            self.dribble_marks
                .push_back((self.dribbled + self.dribble.len() as u64, sent));
            // A client may send slowly, but each packet must arrive within the idle timeout (half
            // of it, to spare): only complete packets are activity.
            // The pace only quickens while bytes are queued: slowing down for a packet queued
            // behind one half sent would stretch that one past the budget.
            let budget = self.idle_timeout / 2;
            let pace = if was_empty {
                DRIBBLE_STEP
            } else {
                self.dribble_step
            };
            self.dribble_step = pace.min(budget / self.dribble.len().max(1) as u32);
            return;
        }
        self.wire.encode(packet, &mut self.output);
        self.stats.packets_sent += 1;
        self.last_sent = now;
        self.fully_sent(now, sent);
    }

    /// A packet's last byte left the client at `now`.
    fn fully_sent(&mut self, now: Instant, sent: Sent) {
        if self.track_activity {
            self.activity.push(now);
        }
        match sent {
            Sent::Request(id) => {
                let due = self.deadlines.call(now, Some(id));
                if let Some(o) = self.outstanding.get_mut(&id) {
                    o.due = Some(due);
                }
            }
            Sent::Notify => {
                self.deadlines.call(now, None);
            }
            Sent::Hello => {
                self.deadlines.packet(now);
                self.hello_sent_at = Some(now);
            }
            Sent::Other => {
                self.deadlines.packet(now);
            }
        }
    }

    /// Notes every dribbled packet whose last byte is now out.
    fn note_dribbled(&mut self, now: Instant) {
        while let Some(&(end, sent)) = self.dribble_marks.front() {
            if end > self.dribbled {
                break;
            }
            self.dribble_marks.pop_front();
            self.fully_sent(now, sent);
        }
    }

    /// Whether a handshake fully sent may still be answered: the gate answers at once, but no later
    /// than its handshake timeout (and the slack).
    fn welcome_due(&self, now: Instant) -> bool {
        self.hello_sent_at
            .is_some_and(|t| now < t + self.handshake_timeout + self.answer_slack)
    }

    /// When the client stops waiting for its outstanding requests: once every one of them is
    /// past its answer deadline plus the slack (`None`: nothing outstanding, or one not yet
    /// fully sent).
    pub fn give_up_at(&self) -> Option<Instant> {
        let mut latest: Option<Instant> = None;
        for o in self.outstanding.values() {
            let due = o.due?;
            latest = Some(latest.map_or(due, |l| l.max(due)));
        }
        latest.map(|d| d + self.answer_slack)
    }

    /// When the connection ended for this client, once it has.
    pub fn ended_at(&self) -> Option<Instant> {
        self.ended_at
    }

    /// Whether the client's protocol has a goodbye packet (else it ends by closing its side).
    pub fn has_goodbye(&self) -> bool {
        self.wire.has_goodbye()
    }

    /// Whether the client reads everything the gate sends it (a slow consumer stops after
    /// WELCOME).
    pub fn reads_everything(&self) -> bool {
        self.behavior != Behavior::SlowConsumer
    }

    /// Bytes to write, if any.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        if self.output.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.output).freeze())
        }
    }

    /// Whether the client reads what the gate sends.
    pub fn wants_read(&self) -> bool {
        !(self.behavior == Behavior::SlowConsumer && self.stats.welcomed)
    }

    /// How the client is ending.
    pub fn ending(&self) -> Ending {
        self.ending
    }

    /// Requests in flight.
    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    /// Bytes received from the gate.
    pub fn handle_input(&mut self, now: Instant, data: &[u8], latency_us: &mut Histogram<u64>) {
        self.input.extend_from_slice(data);
        loop {
            let event = match self.wire.decode(&mut self.input) {
                Ok(Some(e)) => e,
                Ok(None) => break,
                Err((_, fatal)) => {
                    self.stats.decode_errors += 1;
                    if fatal {
                        self.input.clear();
                        break;
                    }
                    continue;
                }
            };
            self.stats.packets_received += 1;
            match event {
                GateEvent::Welcome { session_id } => {
                    self.stats.welcomed = true;
                    self.session_id = session_id;
                    if self.phase == Phase::Handshaking {
                        self.phase = Phase::Open;
                        self.send(now, ClientPacket::Ack);
                    }
                }
                GateEvent::Response { id, status, body } => {
                    match self.outstanding.remove(&id) {
                        None => self.stats.unexpected_responses += 1,
                        Some(o) => {
                            let us = now.saturating_duration_since(o.sent).as_micros() as u64;
                            let _ = latency_us.record(us.max(1));
                            if status == Status::Ok && body != self.body_for(id) {
                                self.stats.wrong_bodies += 1;
                            }
                            if o.due.is_some_and(|d| now > d + self.answer_slack) {
                                self.stats.late_responses += 1;
                            }
                            if id < self.highest_answered {
                                self.stats.out_of_order += 1;
                            }
                            self.deadlines.answered(id, now);
                            self.highest_answered = self.highest_answered.max(id);
                        }
                    }
                    *self.stats.responses.entry(status.name()).or_default() += 1;
                }
                GateEvent::Push { body } => {
                    self.stats.pushes += 1;
                    self.stats.push_seqs.push(push_seq(&body));
                }
                GateEvent::Pong => self.stats.pongs += 1,
                GateEvent::Ping => self.send(now, ClientPacket::Pong),
                GateEvent::Close { code }
                    if self.ending == Ending::Graceful && code == CloseCode::Normal =>
                {
                    // The gate's answer to our goodbye (the close handshake).
                    self.stats.close_answered = true;
                }
                GateEvent::Close { code } => {
                    self.stats.gate_close = Some(code);
                    self.finish(now, Ending::Abort);
                }
                GateEvent::Unexpected => self.stats.decode_errors += 1,
            }
        }
        if self.waiting_close {
            self.end_of_run(now);
        }
    }

    /// The transport ended (EOF or error) from the gate's side, seen at `now`.
    pub fn handle_closed(&mut self, now: Instant) {
        self.finish(now, Ending::Abort);
    }

    fn finish(&mut self, now: Instant, how: Ending) {
        if self.ending == Ending::Running {
            self.ending = how;
            self.phase = Phase::Finished;
            self.ended_at = Some(now);
        }
    }

    /// Final counts, once the connection is over (responses may still arrive after the client
    /// decided to end).
    pub fn finalize(&mut self) -> ClientStats {
        self.stats.unanswered = self.outstanding.len() as u64;
        self.stats.unanswered_due = self.outstanding.values().map(|o| o.due).collect();
        std::mem::take(&mut self.stats)
    }

    /// When the client next needs [`SimClient::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.ending != Ending::Running {
            return None;
        }
        let dribble = (!self.dribble.is_empty()).then_some(self.next_dribble);
        if self.waiting_close {
            // Past the end: the answer deadlines, the welcome and the dribble are left to wait
            // for, pinging meanwhile so the gate's idle timeout cannot end the wait.
            let ping = (self.phase == Phase::Open).then(|| self.last_sent + self.ping_interval);
            let welcome = (self.phase == Phase::Handshaking)
                .then_some(self.hello_sent_at)
                .flatten()
                .map(|t| t + self.handshake_timeout + self.answer_slack);
            return [dribble, self.give_up_at(), ping, welcome]
                .into_iter()
                .flatten()
                .min();
        }
        let mut t = self.end;
        if let Some(d) = dribble {
            t = t.min(d);
        }
        if let Some(d) = self.drop_at {
            t = t.min(d);
        }
        if self.phase == Phase::Open {
            if self.interval.is_some() {
                t = t.min(self.next_send);
            }
            t = t.min(self.last_sent + self.ping_interval);
            if matches!(
                self.behavior,
                Behavior::GarbageBytes | Behavior::GarbageOversize | Behavior::GarbageRoute
            ) && !self.garbage_sent
            {
                t = t.min(self.started);
            }
        }
        Some(t)
    }

    /// Does whatever is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.ending != Ending::Running {
            return;
        }
        if !self.dribble.is_empty() && now >= self.next_dribble {
            let b = self.dribble.split_to(1);
            self.output.extend_from_slice(&b);
            self.next_dribble = now + self.dribble_step;
            self.dribbled += 1;
            self.note_dribbled(now);
        }
        if let Some(d) = self.drop_at {
            if now >= d {
                if self.behavior == Behavior::DropMidFrame && self.phase == Phase::Open {
                    let mut frame = BytesMut::new();
                    let body = self.body_for(self.next_id);
                    let req = ClientPacket::Request {
                        id: self.next_id,
                        body: &body,
                    };
                    self.wire.encode(req, &mut frame);
                    let half = frame.len() / 2;
                    self.output.extend_from_slice(&frame[..half]);
                }
                self.finish(now, Ending::Abort);
                return;
            }
        }
        if now >= self.end {
            self.end_of_run(now);
            if self.ending == Ending::Running
                && self.phase == Phase::Open
                && now >= self.last_sent + self.ping_interval
            {
                self.stats.pings += 1;
                self.send(now, ClientPacket::Ping);
            }
            return;
        }
        if self.phase != Phase::Open {
            return;
        }
        match self.behavior {
            Behavior::GarbageBytes | Behavior::GarbageOversize | Behavior::GarbageRoute
                if !self.garbage_sent =>
            {
                self.garbage_sent = true;
                self.send_garbage();
                return;
            }
            _ => {}
        }
        if let Some(interval) = self.interval {
            if now >= self.next_send {
                let n = if self.behavior == Behavior::Burst {
                    self.burst_size
                } else {
                    1
                };
                for _ in 0..n {
                    // A dribbling client sends its next message once the previous one is out.
                    if self.outstanding.len() >= self.window
                        || (self.behavior == Behavior::Dribble && !self.dribble.is_empty())
                    {
                        break;
                    }
                    self.send_message(now);
                }
                while self.next_send <= now {
                    self.next_send += interval;
                }
            }
        }
        if now >= self.last_sent + self.ping_interval {
            self.stats.pings += 1;
            self.send(now, ClientPacket::Ping);
        }
    }

    /// At or past the end of the run: close gracefully once nothing is outstanding (or every
    /// outstanding answer is overdue: the client gives up, which the checks count as a loss);
    /// misbehaving clients just drop.
    fn end_of_run(&mut self, now: Instant) {
        if self.ending != Ending::Running {
            return;
        }
        let overdue = self.give_up_at().is_some_and(|g| now >= g);
        if matches!(self.behavior, Behavior::Slowloris | Behavior::SlowConsumer)
            || (self.phase == Phase::Handshaking
                && self.dribble.is_empty()
                && !self.welcome_due(now))
        {
            self.finish(now, Ending::Abort);
        } else if self.phase == Phase::Handshaking && self.dribble.is_empty() {
            // The handshake is out and the gate answers it at once: wait for the welcome.
            self.waiting_close = true;
        } else if (self.outstanding.is_empty() && self.dribble.is_empty()) || overdue {
            if self.phase == Phase::Open {
                self.stats.gave_up = !self.outstanding.is_empty() || !self.dribble.is_empty();
                // A dribbling client flushes what is left, so its CLOSE gets out.
                let rest = self.dribble.split();
                self.output.extend_from_slice(&rest);
                self.dribbled += rest.len() as u64;
                self.note_dribbled(now);
                self.behavior_flushed = true;
                // The protocol's goodbye, if it has one; else the client just closes its side.
                self.send(now, ClientPacket::Goodbye);
                self.finish(now, Ending::Graceful);
            } else {
                self.finish(now, Ending::Abort);
            }
        } else {
            self.waiting_close = true;
        }
    }

    fn send_message(&mut self, now: Instant) {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        if self.rng.random::<f64>() < self.notify_ratio {
            self.stats.notifies += 1;
            let body = self.body_for(id);
            self.send(now, ClientPacket::Notify { body: &body });
        } else {
            self.stats.requests += 1;
            self.outstanding.insert(
                id,
                Outstanding {
                    sent: now,
                    due: None,
                },
            );
            let body = self.body_for(id);
            self.send(now, ClientPacket::Request { id, body: &body });
        }
    }

    fn send_garbage(&mut self) {
        let kind = match self.behavior {
            Behavior::GarbageOversize => Garbage::Oversize,
            Behavior::GarbageRoute => Garbage::Route,
            _ => Garbage::Bytes,
        };
        let random: Vec<u8> = if kind == Garbage::Bytes {
            let n = self.rng.random_range(8..64);
            (0..n).map(|_| self.rng.random::<u8>()).collect()
        } else {
            Vec::new()
        };
        let bytes = self.wire.garbage(kind, &random);
        self.stats.garbage_bytes += bytes.len() as u64;
        self.output.extend_from_slice(&bytes);
    }
}
