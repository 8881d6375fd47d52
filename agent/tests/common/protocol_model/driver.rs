//! The steps a property test generates, and the client and driver that run them against a
//! connection and its model, on a virtual clock.

use super::{CPkt, Phase, WireModel, H, PUSH_TOPIC};
use bytes::{Bytes, BytesMut};
use gatekit_agent::{AgentConfig, CallId, CallResult, CloseReason, PushError};
use gatekit_codec::{CloseCode, Status, Topic};
use proptest::sample::Index;
use std::time::{Duration, Instant};

/// What a back end answers.
#[derive(Debug, Clone)]
pub enum GenResult {
    Ok { len: usize, json: bool },
    NotFound,
    Failed(usize),
    Busy,
    Panicked,
}

impl GenResult {
    fn to_result(&self) -> CallResult {
        match *self {
            GenResult::Ok { len, json: false } => CallResult::Ok(Bytes::from(vec![b'r'; len])),
            GenResult::Ok { len, json: true } => {
                CallResult::Ok(Bytes::from(format!(r#"{{"r":"{}"}}"#, "r".repeat(len))))
            }
            GenResult::NotFound => CallResult::NotFound,
            GenResult::Failed(n) => CallResult::Failed(Bytes::from(vec![b'f'; n])),
            GenResult::Busy => CallResult::Busy,
            GenResult::Panicked => CallResult::Panicked,
        }
    }
}

/// The status and body a result is answered with (docs/ARCHITECTURE.md).
fn status_of(result: &CallResult) -> (Status, Bytes) {
    match result {
        CallResult::Ok(b) => (Status::Ok, b.clone()),
        CallResult::NotFound => (Status::NotFound, Bytes::new()),
        CallResult::Failed(b) => (Status::Failed, b.clone()),
        CallResult::Busy => (Status::Busy, Bytes::new()),
        CallResult::Panicked => (Status::InternalError, Bytes::new()),
    }
}

/// One step of a case.
#[derive(Debug, Clone)]
pub enum Step {
    Send {
        pkts: Vec<CPkt>,
        cuts: Vec<Index>,
    },
    Time {
        ms: u64,
        precise: bool,
    },
    Result {
        pick: Index,
        stale: bool,
        result: GenResult,
    },
    Read {
        percent: u8,
    },
    Kick,
    Push {
        len: usize,
    },
    Bind(u8),
    Unbind,
    Shutdown,
    Eof,
    IoError,
}

/// The options of a case.
#[derive(Debug, Clone)]
pub struct Params {
    pub max_in_flight: usize,
    pub max_write_queue: usize,
    pub max_frame: usize,
    pub max_chunk: usize,
    /// Storage heartbeat, back-end timeout, handshake timeout and close linger, in ms.
    pub times_ms: [u64; 4],
    /// Ping interval and idle timeout, in s.
    pub ping_idle_s: [u64; 2],
    pub final_reads: bool,
}

fn config(p: &Params) -> AgentConfig {
    let ms = Duration::from_millis;
    let [heartbeat, backend, handshake, linger] = p.times_ms;
    AgentConfig {
        heartbeat: ms(heartbeat),
        backend_timeout: ms(backend),
        handshake_timeout: ms(handshake),
        close_linger: ms(linger),
        ping_interval: Duration::from_secs(p.ping_idle_s[0]),
        idle_timeout: Duration::from_secs(p.ping_idle_s[1]),
        max_in_flight: p.max_in_flight,
        max_write_queue: p.max_write_queue,
        max_frame_length: p.max_frame,
        ..AgentConfig::default()
    }
}

/// A generated case: the options, a first step, the steps.
pub type Case = (Params, Option<Step>, Vec<Step>);

/// Runs one case, with `tweak` (the faults to inject) applied to its config; panics at the first
/// check that fails.
pub fn run<M: WireModel>((p, first, steps): Case, tweak: impl FnOnce(&mut AgentConfig)) {
    let mut cfg = config(&p);
    tweak(&mut cfg);
    let mut h = H::<M>::new(p, cfg);
    for s in first.iter().chain(&steps) {
        h.step(s);
    }
    h.end();
}

impl<M: WireModel> H<M> {
    // ----- operations -----

    fn input(&mut self, piece: BytesMut) {
        let data = piece.clone();
        let (mut e, outs, actions) = self.sut(|c, now| c.handle_input(now, data));
        if self.reading() {
            self.buf.extend_from_slice(&piece);
            self.consume(&mut e);
        }
        self.check("input", e, outs, actions);
    }

    fn eof(&mut self) {
        let (mut e, outs, actions) = self.sut(|c, now| c.handle_eof(now));
        if matches!(self.phase, Phase::Handshake | Phase::Open) {
            self.peer_eof = true;
            self.consume(&mut e);
        }
        self.check("eof", e, outs, actions);
    }

    fn io_error(&mut self) {
        let (mut e, outs, actions) = self.sut(|c, now| c.handle_io_error(now));
        self.finish(&mut e, CloseReason::Reset);
        self.check("io error", e, outs, actions);
    }

    fn written(&mut self, mut n: usize) {
        let (mut e, outs, actions) = self.sut(move |c, _| c.handle_written(n));
        while n > 0 {
            let front = self
                .transit
                .front_mut()
                .expect("wrote more than handed out");
            let k = n.min(*front);
            *front -= k;
            n -= k;
            if *front == 0 {
                self.transit.pop_front();
                self.written_packets += 1;
            }
        }
        if self.phase == Phase::Closing && self.transit.is_empty() {
            let reason = self.reason.expect("closing has a reason");
            self.finish(&mut e, reason);
        }
        self.check("written", e, outs, actions);
    }

    fn call_result(&mut self, id: CallId, result: CallResult) {
        let r = result.clone();
        let (mut e, outs, actions) = self.sut(|c, now| c.handle_call_result(now, id, r));
        if let Some(pos) = self.in_flight.iter().position(|f| f.id == id) {
            let done = self.in_flight.remove(pos);
            self.last_activity = self.last_activity.max(self.now);
            if let Some(reply) = done.reply {
                let (status, body) = status_of(&result);
                self.respond(&mut e, reply, status, &body);
            }
            self.consume(&mut e);
        }
        self.check("result", e, outs, actions);
    }

    fn timeout(&mut self) {
        let (mut e, outs, actions) = self.sut(|c, now| c.handle_timeout(now));
        let now = self.now;
        match self.phase {
            Phase::Handshake if now >= self.handshake_deadline => {
                let close = Some((CloseCode::HandshakeTimeout, Some("handshake timeout")));
                self.close_with(&mut e, CloseReason::HandshakeTimeout, close);
            }
            Phase::Closing if now >= self.linger_deadline => {
                let reason = self.reason.expect("closing has a reason");
                self.finish(&mut e, reason);
            }
            Phase::Open => {
                // Calls past their deadline answer `timeout`, in the order they were made.
                while let Some(pos) = self.in_flight.iter().position(|f| f.deadline <= now) {
                    let expired = self.in_flight.remove(pos);
                    self.last_activity = self.last_activity.max(now);
                    if let Some(reply) = expired.reply {
                        self.respond(&mut e, reply, Status::Timeout, &Bytes::new());
                    }
                }
                let idle = self.in_flight.is_empty() && now >= self.last_activity + self.idle;
                if self.phase == Phase::Open && idle {
                    let close = Some((CloseCode::IdleTimeout, Some("idle timeout")));
                    self.close_with(&mut e, CloseReason::IdleTimeout, close);
                } else if self.phase == Phase::Open {
                    self.maybe_heartbeat(&mut e);
                    self.consume(&mut e);
                }
            }
            _ => {}
        }
        if let Some(t) = self.conn.poll_timeout() {
            assert!(
                t > now,
                "{}: poll_timeout not after handle_timeout(now)",
                M::NAME
            );
        }
        self.check("timeout", e, outs, actions);
    }

    fn kick(&mut self, shutdown: bool) {
        let (mut e, outs, actions) = self.sut(|c, now| match shutdown {
            true => c.shutdown(now),
            false => c.kick(now, "kicked by the test"),
        });
        let (reason, close) = match shutdown {
            true => (
                CloseReason::Shutdown,
                (CloseCode::Shutdown, "gate shutting down"),
            ),
            false => (
                CloseReason::Kicked,
                (CloseCode::Kicked, "kicked by the test"),
            ),
        };
        self.close_with(&mut e, reason, Some((close.0, Some(close.1))));
        self.check(if shutdown { "shutdown" } else { "kick" }, e, outs, actions);
    }

    fn push(&mut self, len: usize) {
        let seq = self.next_push;
        self.next_push += 1;
        let body = Bytes::from(format!("{seq}:{}", "p".repeat(len)));
        let mut result = None;
        let b = body.clone();
        let (mut e, outs, actions) =
            self.sut(|c, _| result = Some(c.push(Topic::from_static(PUSH_TOPIC), b)));
        let result = result.unwrap();
        match (self.phase, self.wire.push(&body)) {
            (Phase::Open, Some(pkt)) => {
                assert_eq!(result, Ok(()), "{}: push", M::NAME);
                self.pushes.push_back(seq);
                self.queue(&mut e, pkt);
            }
            (Phase::Open, None) => {
                let too_large = matches!(result, Err(PushError::TooLarge(_)));
                assert!(
                    too_large,
                    "{}: a push over the frame limit: {result:?}",
                    M::NAME
                )
            }
            _ => assert_eq!(result, Err(PushError::NotOpen)),
        }
        // The ledger sees this push among the outputs checked next.
        self.check("push", e, outs, actions);
    }

    fn bind(&mut self, user: u8, unbind: bool) {
        let user = format!("user-{user}");
        let mut ok = false;
        let (mut e, outs, actions) = self.sut(|c, now| {
            ok = if unbind {
                c.unbind()
            } else {
                c.bind(now, user.clone())
            };
        });
        assert_eq!(ok, self.phase == Phase::Open, "{}: bind/unbind", M::NAME);
        // The store is told: the previous user's disconnect (unbind, or a bind to another user),
        // then the new user's bind; a bind of the same user again asks nothing.
        if ok && (unbind || self.bound.as_ref() != Some(&user)) {
            if let Some(previous) = self.bound.clone() {
                e.stores
                    .push((gatekit_agent::StoreKind::Disconnect, previous));
            }
            if !unbind {
                e.stores
                    .push((gatekit_agent::StoreKind::Bind, user.clone()));
            }
        }
        if ok && unbind {
            self.bound = None;
        } else if ok {
            // A re-bind does not restart the interval: heartbeats stay `heartbeat` apart.
            self.bound = Some(user);
            self.bound_since = Some((self.now, 0));
            self.active = true;
            self.maybe_heartbeat(&mut e);
        }
        self.check("bind", e, outs, actions);
    }

    // ----- the driver and the client -----

    /// Reads what the client wrote, as a driver does: only while the connection wants to read.
    fn deliver(&mut self) {
        while self.conn.wants_read() {
            if let Some(piece) = self.socket.pop_front() {
                self.input(piece);
            } else if self.eof_pending && !self.eof_done {
                self.eof_done = true;
                self.eof();
            } else {
                break;
            }
        }
    }

    fn set_now(&mut self, t: Instant) {
        assert!(t >= self.now, "time went backwards");
        self.now = t;
    }

    fn advance(&mut self, d: Duration, precise: bool) {
        let target = self.now + d;
        if precise {
            while let Some(t) = self.conn.poll_timeout().filter(|&t| t <= target) {
                self.set_now(t.max(self.now));
                self.timeout();
                self.deliver();
            }
            self.set_now(target);
        } else {
            self.set_now(target);
            self.timeout();
            self.deliver();
        }
    }

    fn client_send(&mut self, pkts: &[CPkt], cuts: &[Index]) {
        if self.eof_pending {
            return; // the client closed its side
        }
        let mut bytes = BytesMut::new();
        for p in pkts {
            let id = self.next_id;
            if matches!(p, CPkt::Request { .. }) {
                self.next_id += 1;
            }
            self.wire.encode(p, id, &mut bytes);
        }
        let mut cut_points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        cut_points.sort_unstable();
        let mut prev = 0;
        for c in cut_points.into_iter().chain([bytes.len()]) {
            for part in bytes[prev..c.max(prev)].chunks(self.p.max_chunk) {
                self.socket.push_back(BytesMut::from(part));
            }
            prev = c.max(prev);
        }
    }

    fn step(&mut self, step: &Step) {
        match step {
            Step::Send { pkts, cuts } => self.client_send(pkts, cuts),
            Step::Time { ms, precise } => self.advance(Duration::from_millis(*ms), *precise),
            Step::Result {
                pick,
                stale,
                result,
            } => {
                let id = match (*stale || self.in_flight.is_empty(), self.issued.is_empty()) {
                    (false, _) => self.in_flight[pick.index(self.in_flight.len())].id,
                    (true, false) => self.issued[pick.index(self.issued.len())],
                    (true, true) => return,
                };
                self.call_result(id, result.to_result());
            }
            Step::Read { percent } => {
                let n = self.transit.iter().sum::<usize>() * usize::from(*percent) / 100;
                self.written(n);
            }
            Step::Kick => self.kick(false),
            Step::Shutdown => self.kick(true),
            Step::Push { len } => self.push(*len),
            Step::Bind(u) => self.bind(*u, false),
            Step::Unbind => self.bind(0, true),
            Step::Eof => self.eof_pending = true,
            Step::IoError => self.io_error(),
        }
        self.deliver();
    }

    /// Drives the connection to its end: the client closes its side, timers fire.
    fn end(&mut self) {
        self.eof_pending = true;
        for _ in 0..100_000 {
            self.deliver();
            let unwritten = self.transit.iter().sum::<usize>();
            if self.p.final_reads && unwritten > 0 {
                self.written(unwritten);
            }
            if self.conn.is_finished() {
                break;
            }
            let t = self.conn.poll_timeout();
            let t = t.unwrap_or_else(|| panic!("not finished and no timer: {:?}", self.conn));
            self.set_now(t.max(self.now));
            self.timeout();
        }
        let what = M::NAME;
        assert!(
            self.conn.is_finished(),
            "{what}: never finished: {:?}",
            self.conn
        );
        assert_eq!(
            self.disconnects, self.connects,
            "{what}: Disconnect iff Connect"
        );
        assert!(self.conn.poll_action().is_none() && self.conn.poll_transmit().is_none());
        assert_eq!(self.conn.in_flight(), 0);
        let reason = self.reason.expect("ended with a reason");
        // Every request decoded was answered, or lost in a close that says why.
        for id in &self.outstanding {
            assert!(
                self.lost.contains_key(id),
                "{what}: request {id} never answered, yet no close lost it (ended {reason})"
            );
        }
    }
}
