//! The model of the connection core (agent/src/connection/mod.rs, from its module docs): what
//! each call into the connection must write and yield, and the checks run after every call.

use super::{push_seq, same_outs, Expect, Flight, In, Out, Params, Phase, Pkt, WireModel, H, SID};
use bytes::{Bytes, BytesMut};
use gatekit_agent::connection::PACKET_OVERHEAD;
use gatekit_agent::{
    Action, AgentConfig, CloseReason, ConnInfo, Connection, Counters, Protocol, Session,
};
use gatekit_codec::{CloseCode, Status};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

impl<M: WireModel> H<M> {
    pub(super) fn new(p: Params, cfg: AgentConfig) -> Self {
        let now = Instant::now();
        let info = ConnInfo {
            session_id: SID.into(),
            network: "tcp".into(),
            peer: "192.0.2.1:4000".into(),
        };
        let counters = Arc::new(Counters::default());
        let conn = Connection::with_protocol(
            M::protocol(&cfg),
            Arc::new(cfg.clone()),
            info,
            now,
            counters,
        );
        H {
            wire: M::new(&cfg),
            conn,
            t0: now,
            now,
            next_id: 1,
            next_push: 0,
            socket: VecDeque::new(),
            eof_pending: false,
            eof_done: false,
            transit: VecDeque::new(),
            written_packets: 0,
            phase: Phase::Handshake,
            reason: None,
            buf: BytesMut::new(),
            handshake_deadline: now + cfg.handshake_timeout,
            linger_deadline: now,
            peer_eof: false,
            goodbye: false,
            in_flight: vec![],
            issued: vec![],
            received: 0,
            connected: false,
            idle: cfg.idle_timeout,
            last_activity: now,
            bound: None,
            active: false,
            last_heartbeat: None,
            outstanding: BTreeSet::new(),
            lost: BTreeMap::new(),
            pushes: VecDeque::new(),
            connects: 0,
            disconnects: 0,
            bound_since: None,
            heartbeat_seen: None,
            cfg,
            p,
        }
    }

    pub(super) fn max_in_flight(&self) -> usize {
        self.cfg.max_in_flight.max(1)
    }

    /// What the connection counts against its write queue.
    pub(super) fn unacked(&self) -> usize {
        self.transit.iter().sum::<usize>() + PACKET_OVERHEAD * self.transit.len()
    }

    pub(super) fn reading(&self) -> bool {
        matches!(self.phase, Phase::Handshake | Phase::Open) && !self.goodbye
    }

    // ----- the model, step by step as the connection must go -----

    /// A packet queued: over the write queue's limit, the client is a slow consumer.
    pub(super) fn queue(&mut self, e: &mut Expect, (out, size): Pkt) {
        e.queued += size + PACKET_OVERHEAD;
        e.outs.push(out);
        if e.queued > self.cfg.max_write_queue {
            self.finish(e, CloseReason::SlowConsumer);
        }
    }

    /// The end: unwritten output is dropped, Disconnect is due if Connect was.
    pub(super) fn finish(&mut self, e: &mut Expect, reason: CloseReason) {
        if self.phase == Phase::Closed {
            return;
        }
        let reason = *self.reason.get_or_insert(reason);
        self.phase = Phase::Closed;
        self.abandon_calls(reason);
        for out in e.outs.drain(..) {
            match out {
                Out::Response { id, .. } => {
                    self.lost.insert(id, reason);
                }
                Out::Push { body, .. } => self.pushes.retain(|&s| s != push_seq(&body)),
                _ => {}
            }
        }
        e.queued = 0;
        self.transit.clear();
        self.buf.clear();
    }

    pub(super) fn abandon_calls(&mut self, reason: CloseReason) {
        for f in self.in_flight.drain(..) {
            if let Some(id) = f.reply {
                self.lost.insert(id, reason);
            }
        }
    }

    /// Starts closing: the protocol's closing packet for `close`, if any, then the end once the
    /// output is written (or the linger deadline passes).
    pub(super) fn close_with(
        &mut self,
        e: &mut Expect,
        reason: CloseReason,
        close: Option<(CloseCode, Option<&str>)>,
    ) {
        if matches!(self.phase, Phase::Closing | Phase::Closed) {
            return;
        }
        self.reason.get_or_insert(reason);
        self.abandon_calls(reason);
        self.buf.clear();
        if let Some(out) = close.and_then(|(code, text)| self.wire.close(code, text)) {
            e.outs.push(out);
            e.queued += 1;
        }
        self.phase = Phase::Closing;
        self.linger_deadline = self.now + self.cfg.close_linger;
        if e.queued == 0 {
            self.finish(e, reason);
        }
    }

    pub(super) fn maybe_heartbeat(&mut self, e: &mut Expect) {
        let due = self
            .last_heartbeat
            .is_none_or(|t| self.now >= t + self.cfg.heartbeat);
        if self.phase == Phase::Open && self.active && self.bound.is_some() && due {
            self.last_heartbeat = Some(self.now);
            self.active = false;
            e.heartbeats += 1;
        }
    }

    /// Decodes while the connection reads, then ends it if the client is done.
    pub(super) fn consume(&mut self, e: &mut Expect) {
        while self.reading() && self.in_flight.len() < self.max_in_flight() {
            let Some((ev, own)) = self.wire.decode_in(&mut self.buf) else {
                break;
            };
            if let In::Bad(code) = ev {
                self.close_with(e, CloseReason::ProtocolError, Some((code, None)));
                break;
            }
            if let Some(pkt) = own {
                self.queue(e, pkt);
            }
            self.received += 1;
            self.last_activity = self.now;
            self.active = true;
            self.event(e, ev);
        }
        self.maybe_heartbeat(e);
        if self.peer_eof {
            match self.phase {
                Phase::Handshake => self.finish(e, CloseReason::Eof),
                Phase::Open if self.in_flight.is_empty() && self.goodbye => {
                    let bye = Some((CloseCode::Normal, Some("bye")));
                    self.close_with(e, CloseReason::ClientClosed, bye)
                }
                Phase::Open if self.in_flight.is_empty() => {
                    self.close_with(e, CloseReason::Eof, None)
                }
                _ => {}
            }
        }
    }

    pub(super) fn event(&mut self, e: &mut Expect, ev: In) {
        let error = Some((CloseCode::ProtocolError, None));
        match (self.phase, ev) {
            (Phase::Closing | Phase::Closed, _) => {}
            (_, In::Invalid) => self.close_with(e, CloseReason::ProtocolError, error),
            (
                Phase::Handshake,
                In::Hello {
                    refused: Some(code),
                    ..
                },
            ) => self.close_with(e, CloseReason::Refused, Some((code, None))),
            (Phase::Handshake, In::Hello { heartbeat, .. }) => {
                let (welcome, idle) = self.wire.welcome(heartbeat, &self.cfg);
                self.phase = Phase::Open;
                self.connected = true;
                self.idle = idle;
                self.queue(e, welcome);
            }
            (Phase::Handshake, _) => self.close_with(e, CloseReason::ProtocolError, error),
            (Phase::Open, In::Call { reply, route, body }) => {
                let c = e.calls.get(e.matched).unwrap_or_else(|| {
                    panic!("{}: expected a Call to {route} for {reply:?}", M::NAME)
                });
                e.matched += 1;
                assert_eq!(
                    (c.route.as_str(), &c.body, c.expects_reply),
                    (route.as_str(), &body, reply.is_some()),
                    "{}: the Call",
                    M::NAME
                );
                self.issued.push(c.id);
                let deadline = self.now + self.cfg.backend_timeout;
                self.in_flight.push(Flight {
                    id: c.id,
                    reply,
                    deadline,
                });
                self.outstanding.extend(reply);
            }
            (Phase::Open, In::Ping) => {
                let pong = self.wire.pong();
                self.queue(e, pong);
            }
            (Phase::Open, In::Activity) => {}
            (Phase::Open, In::Goodbye) => {
                // The client's last packet: what it sent before is answered, nothing after read.
                self.goodbye = true;
                self.peer_eof = true;
                self.buf.clear();
            }
            (Phase::Open, In::Hello { .. } | In::Bad(_)) => {
                self.close_with(e, CloseReason::ProtocolError, error)
            }
        }
    }

    /// Answers request `id`; one over the frame limit becomes `internal error`, and when not even
    /// that fits the connection closes `internal` (the answer is lost, and the close says why).
    pub(super) fn respond(&mut self, e: &mut Expect, id: u32, status: Status, body: &Bytes) {
        if self.phase != Phase::Open {
            return;
        }
        let too_large = Bytes::from_static(b"response too large");
        let answer = self
            .wire
            .response(id, status, body)
            .or_else(|| self.wire.response(id, Status::InternalError, &too_large));
        match answer {
            Some(pkt) => self.queue(e, pkt),
            None => {
                self.lost.insert(id, CloseReason::Internal);
                self.close_with(
                    e,
                    CloseReason::Internal,
                    Some((
                        CloseCode::InternalError,
                        Some("response too large for the frame limit"),
                    )),
                )
            }
        }
    }

    /// When the connection must next be given the time.
    pub(super) fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Handshake => Some(self.handshake_deadline),
            Phase::Closing => Some(self.linger_deadline),
            Phase::Closed => None,
            Phase::Open => {
                let calls = self.in_flight.iter().map(|f| f.deadline).min();
                let idle = self
                    .in_flight
                    .is_empty()
                    .then(|| self.last_activity + self.idle);
                let pending = self.active && self.bound.is_some();
                let heartbeat = self.last_heartbeat.filter(|_| pending);
                let heartbeat = heartbeat.map(|t| t + self.cfg.heartbeat);
                [calls, idle, heartbeat].into_iter().flatten().min()
            }
        }
    }

    // ----- checking one call into the connection -----

    /// Runs `f` on the connection and collects what it wrote and yielded.
    pub(super) fn sut(
        &mut self,
        f: impl FnOnce(&mut Connection<M::P>, Instant),
    ) -> (Expect, Vec<Out>, Vec<Action>) {
        let mut e = Expect {
            queued: self.unacked(),
            ..Expect::default()
        };
        f(&mut self.conn, self.now);
        let mut outs = vec![];
        while let Some(bytes) = self.conn.poll_transmit() {
            assert!(!bytes.is_empty(), "an empty chunk");
            let mut chunk = BytesMut::from(&bytes[..]);
            let mut before = chunk.len();
            while let Some(out) = self.wire.decode_out(&mut chunk) {
                self.transit.push_back(before - chunk.len());
                before = chunk.len();
                outs.push(out);
            }
            assert!(chunk.is_empty(), "a chunk ends inside a packet");
        }
        let actions: Vec<Action> = std::iter::from_fn(|| self.conn.poll_action()).collect();
        e.calls = actions
            .iter()
            .filter_map(|a| match a {
                Action::Call(c) => Some(c.clone()),
                _ => None,
            })
            .collect();
        (e, outs, actions)
    }

    pub(super) fn check(&mut self, op: &str, e: Expect, outs: Vec<Out>, actions: Vec<Action>) {
        let what = format!("{} {op} at {:?}", M::NAME, self.now - self.t0);
        assert!(
            same_outs(&e.outs, &outs),
            "{what}: the gate wrote {outs:?}, the model expects {:?}; {:?}",
            e.outs,
            self.conn
        );
        for out in &outs {
            match out {
                Out::Response { id, .. } => {
                    assert!(
                        self.outstanding.remove(id),
                        "{what}: response {id} answers no unanswered request"
                    );
                    if self.max_in_flight() == 1 {
                        let earlier: Vec<_> = self.outstanding.range(..id).collect();
                        assert!(
                            earlier.is_empty(),
                            "{what}: response {id} before {earlier:?}"
                        );
                    }
                }
                Out::Push { body, .. } => assert_eq!(
                    self.pushes.pop_front(),
                    Some(push_seq(body)),
                    "{what}: a push out of order, twice, or not accepted"
                ),
                _ => {}
            }
        }
        assert!(
            self.pushes.is_empty(),
            "{what}: pushes accepted and never written: {:?}",
            self.pushes
        );
        assert_eq!(
            e.matched,
            e.calls.len(),
            "{what}: Calls the model did not expect: {:?}",
            &e.calls[e.matched..]
        );
        assert_eq!(
            self.conn.close_reason(),
            self.reason,
            "{what}: close reason"
        );
        assert_eq!(
            self.conn.is_open(),
            self.phase == Phase::Open,
            "{what}: open"
        );
        assert_eq!(
            self.conn.is_closing(),
            matches!(self.phase, Phase::Closing | Phase::Closed),
            "{what}: closing"
        );
        let mut heartbeats = 0;
        let mut stores = Vec::new();
        for a in &actions {
            assert_eq!(
                self.disconnects, 0,
                "{what}: an action after Disconnect: {a:?}"
            );
            match a {
                Action::Connect(s) => {
                    assert_eq!(self.connects, 0, "{what}: a second Connect");
                    assert_eq!(s.session_id, SID);
                    self.connects += 1;
                }
                Action::Disconnect(s, r) => {
                    assert_eq!(self.connects, 1, "{what}: Disconnect without Connect");
                    assert_eq!((s.session_id.as_str(), Some(*r)), (SID, self.reason));
                    self.disconnects += 1;
                }
                Action::Call(c) => {
                    let user = c.session.user_id.as_deref();
                    assert_eq!(user, self.bound.as_deref(), "{what}: the Call's session");
                }
                Action::Authenticate(_) => {
                    panic!("{:?}: authentication was never required", a)
                }
                Action::StorageHeartbeat(s) => {
                    heartbeats += 1;
                    self.heartbeat_seen(&what, s);
                }
                Action::Store(op) => {
                    assert_eq!(op.session.session_id, SID, "{what}: the store op's session");
                    stores.push((op.kind, op.session.user_id.clone().unwrap_or_default()));
                }
            }
        }
        assert_eq!(
            self.connects,
            usize::from(self.connected),
            "{what}: Connect once, after a successful hello"
        );
        assert_eq!(
            self.disconnects,
            usize::from(self.connected && self.phase == Phase::Closed),
            "{what}: Disconnect once iff Connect, when the connection ends"
        );
        assert_eq!(heartbeats, e.heartbeats, "{what}: storage heartbeats");
        assert_eq!(stores, e.stores, "{what}: store operations");
        self.invariants(&what);
    }

    pub(super) fn heartbeat_seen(&mut self, what: &str, s: &Session) {
        let hb = self.cfg.heartbeat;
        assert_eq!(
            s.user_id, self.bound,
            "{what}: heartbeat for the bound user"
        );
        if let Some(last) = self.heartbeat_seen.replace(self.now) {
            let gap = self.now - last;
            assert!(
                gap >= hb,
                "{what}: heartbeats {gap:?} apart, interval {hb:?}"
            );
        }
        let (since, count) = self.bound_since.as_mut().expect("bound");
        *count += 1;
        let allowed = ((self.now - *since).as_nanos() / hb.as_nanos()) as u64 + 1;
        assert!(
            *count <= allowed,
            "{what}: {count} heartbeats since bind, at most {allowed}"
        );
    }

    pub(super) fn invariants(&mut self, what: &str) {
        let c = &self.conn;
        assert_eq!(
            c.counters().received(),
            self.received,
            "{what}: received counter"
        );
        assert_eq!(
            c.counters().sent(),
            self.written_packets,
            "{what}: sent counter"
        );
        assert_eq!(
            c.counters().is_closed(),
            c.is_closing(),
            "{what}: closed flag"
        );
        let max = self.max_in_flight();
        assert_eq!(
            c.in_flight(),
            self.in_flight.len(),
            "{what}: calls in flight"
        );
        assert!(
            c.in_flight() <= max,
            "{what}: more than {max} calls in flight"
        );
        if c.in_flight() == max {
            assert!(
                !c.wants_read(),
                "{what}: reading with {max} calls in flight"
            );
        }
        let wants_read = matches!(self.phase, Phase::Handshake | Phase::Open)
            && !self.peer_eof
            && self.in_flight.len() < max
            && self.buf.len() <= c.protocol().max_packet_len();
        assert_eq!(c.wants_read(), wants_read, "{what}: wants_read");
        assert_eq!(c.poll_timeout(), self.deadline(), "{what}: timer");
        if self.connected {
            assert_eq!(
                c.idle_timeout(),
                self.idle,
                "{what}: the protocol's idle timeout"
            );
        }
        assert_eq!(
            c.is_finished(),
            self.phase == Phase::Closed,
            "{what}: finished"
        );
        let unacked = self.unacked();
        let limit = match self.phase {
            Phase::Handshake | Phase::Open => self.cfg.max_write_queue,
            Phase::Closing => {
                self.cfg.max_write_queue + c.protocol().max_close_len() + PACKET_OVERHEAD
            }
            Phase::Closed => 0,
        };
        assert!(
            unacked <= limit,
            "{what}: {unacked} bytes unwritten, limit {limit}"
        );
        let bound = c.buffer_bound(self.p.max_chunk);
        assert!(c.buffered_bytes() <= bound && c.max_buffered_bytes() <= bound);
        if self.reading() {
            let buffered = self.buf.len() + unacked;
            assert_eq!(c.buffered_bytes(), buffered, "{what}: bytes buffered");
        }
    }
}
