//! Property test of the `Connection` state machine: random sequences of client bytes (valid packets
//! split at random points, garbage, oversized frames), time steps, back-end results, partial client
//! reads, kicks, pushes, bind/unbind, shutdown, EOF and I/O errors, on a virtual clock. After every
//! call into the connection the invariants of its module docs are checked against a small model that
//! decodes the fed byte stream with its own `NativeCodec`.

use bytes::{Bytes, BytesMut};
use gatekit_agent::connection::PACKET_OVERHEAD;
use gatekit_agent::{
    Action, AgentConfig, Call, CallId, CallResult, CloseReason, ConnInfo, Connection, PushError,
};
use gatekit_codec::{
    Close, CloseCode, Handshake, MessageId, NativeCodec, Notify, Oversize, Packet, Push, Request,
    Response, Route, Status, Text, Topic, Welcome,
};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config;
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SID: &str = "prop-session";
const ROUTES: [&str; 3] = ["chat/send", "room/join", "a/b"];

// ----- generated inputs -----

#[derive(Debug, Clone)]
enum CPkt {
    Hs { version: u8, heartbeat: u16 },
    Req { route: usize, body: Vec<u8> },
    Notify { route: usize, body: Vec<u8> },
    Ping,
    Pong,
    Close,
    Garbage(Vec<u8>),
    Oversize,
}

#[derive(Debug, Clone)]
enum GenResult {
    Ok(usize),
    NotFound,
    Failed(usize),
    Busy,
    Panicked,
}

impl GenResult {
    fn to_result(&self) -> CallResult {
        match self {
            GenResult::Ok(n) => CallResult::Ok(Bytes::from(vec![b'r'; *n])),
            GenResult::NotFound => CallResult::NotFound,
            GenResult::Failed(n) => CallResult::Failed(Bytes::from(vec![b'f'; *n])),
            GenResult::Busy => CallResult::Busy,
            GenResult::Panicked => CallResult::Panicked,
        }
    }
}

#[derive(Debug, Clone)]
enum Step {
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

#[derive(Debug, Clone)]
struct Params {
    max_in_flight: usize,
    max_write_queue: usize,
    heartbeat_ms: u64,
    max_frame: usize,
    max_chunk: usize,
    backend_timeout_s: u64,
    final_reads: bool,
}

fn params() -> impl Strategy<Value = Params> {
    (
        1usize..=4,
        32usize..=600,
        500u64..=20_000,
        64usize..=512,
        1usize..=64,
        1u64..=15,
        any::<bool>(),
    )
        .prop_map(
            |(max_in_flight, max_write_queue, heartbeat_ms, max_frame, max_chunk, bt, fr)| Params {
                max_in_flight,
                max_write_queue,
                heartbeat_ms,
                max_frame,
                max_chunk,
                backend_timeout_s: bt,
                final_reads: fr,
            },
        )
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..40)
}

/// A weighted union of the entries whose weight is not zero.
fn weighted<T: std::fmt::Debug + 'static>(
    entries: Vec<(u32, BoxedStrategy<T>)>,
) -> impl Strategy<Value = T> {
    prop::strategy::Union::new_weighted(entries.into_iter().filter(|(w, _)| *w > 0).collect())
}

/// Client packets. `calm` leaves out those that end the connection (CLOSE, garbage, oversized
/// frames, a second handshake) so that runs last long.
fn cpkt(calm: bool) -> impl Strategy<Value = CPkt> {
    let end = u32::from(!calm);
    weighted(vec![
        (
            end,
            (prop_oneof![4 => Just(1u8), 1 => any::<u8>()], any::<u16>())
                .prop_map(|(version, heartbeat)| CPkt::Hs { version, heartbeat })
                .boxed(),
        ),
        (
            30,
            (0..ROUTES.len(), body())
                .prop_map(|(route, body)| CPkt::Req { route, body })
                .boxed(),
        ),
        (
            15,
            (0..ROUTES.len(), body())
                .prop_map(|(route, body)| CPkt::Notify { route, body })
                .boxed(),
        ),
        (15, Just(CPkt::Ping).boxed()),
        (3, Just(CPkt::Pong).boxed()),
        (end, Just(CPkt::Close).boxed()),
        (
            end,
            prop::collection::vec(any::<u8>(), 1..12)
                .prop_map(CPkt::Garbage)
                .boxed(),
        ),
        (end, Just(CPkt::Oversize).boxed()),
    ])
}

fn gen_result() -> impl Strategy<Value = GenResult> {
    prop_oneof![
        4 => (0usize..600).prop_map(GenResult::Ok),
        1 => Just(GenResult::NotFound),
        1 => (0usize..40).prop_map(GenResult::Failed),
        1 => Just(GenResult::Busy),
        1 => Just(GenResult::Panicked),
    ]
}

fn step(calm: bool) -> impl Strategy<Value = Step> {
    let end = u32::from(!calm);
    weighted(vec![
        (
            30,
            (
                prop::collection::vec(cpkt(calm), 1..5),
                prop::collection::vec(any::<Index>(), 0..4),
            )
                .prop_map(|(pkts, cuts)| Step::Send { pkts, cuts })
                .boxed(),
        ),
        (
            20,
            (
                prop_oneof![12 => 0u64..2_000, 6 => 0u64..20_000, 1 => 0u64..=120_000],
                any::<bool>(),
            )
                .prop_map(|(ms, precise)| Step::Time { ms, precise })
                .boxed(),
        ),
        (
            20,
            (any::<Index>(), prop::bool::weighted(0.15), gen_result())
                .prop_map(|(pick, stale, result)| Step::Result {
                    pick,
                    stale,
                    result,
                })
                .boxed(),
        ),
        (
            20,
            (0u8..=100)
                .prop_map(|percent| Step::Read { percent })
                .boxed(),
        ),
        (end, Just(Step::Kick).boxed()),
        (5, (0usize..200).prop_map(|len| Step::Push { len }).boxed()),
        (3, (0u8..3).prop_map(Step::Bind).boxed()),
        (2, Just(Step::Unbind).boxed()),
        (end, Just(Step::Shutdown).boxed()),
        (end, Just(Step::Eof).boxed()),
        (end, Just(Step::IoError).boxed()),
    ])
}

fn first_step() -> impl Strategy<Value = Option<Step>> {
    prop_oneof![
        8 => Just(Some(Step::Send {
            pkts: vec![CPkt::Hs { version: 1, heartbeat: 0 }],
            cuts: vec![],
        })),
        1 => (prop::collection::vec(cpkt(false), 1..4), prop::collection::vec(any::<Index>(), 0..3))
            .prop_map(|(pkts, cuts)| Some(Step::Send { pkts, cuts })),
        1 => Just(None),
    ]
}

fn case() -> impl Strategy<Value = (Params, Option<Step>, Vec<Step>)> {
    (params(), any::<bool>()).prop_flat_map(|(p, calm)| {
        (
            Just(p),
            first_step(),
            prop::collection::vec(step(calm), 0..200),
        )
    })
}

// ----- the harness -----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MPhase {
    Handshake,
    Open,
    Closed,
}

#[derive(Debug)]
enum MItem {
    Pkt(Packet),
    Bad,
}

#[derive(Debug)]
struct MCall {
    id: CallId,
    reply: Option<MessageId>,
    deadline: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Input,
    Result,
    Timeout,
    Eof,
    Io,
    Written,
    Kick,
    Shutdown,
    Push,
    Bind,
    Unbind,
}

struct Binding {
    user: String,
    since: Instant,
    count: u64,
}

struct H {
    p: Params,
    cfg: AgentConfig,
    conn: Connection,
    now: Instant,
    // ----- client side -----
    encoder: NativeCodec,
    next_id: u32,
    /// Bytes written by the client, not yet read by the driver.
    socket: VecDeque<BytesMut>,
    eof_pending: bool,
    eof_done: bool,
    /// Packets handed out by `poll_transmit`, in order: (bytes not yet written, 1).
    transit: VecDeque<(usize, u64)>,
    /// Packets whose bytes are all written: what `Counters::sent` must say.
    written_packets: u64,
    /// The agent has seen EOF.
    peer_eof: bool,
    /// The client sent CLOSE: nothing after it is read, and once nothing is in flight the agent
    /// answers with its own CLOSE and ends `client_closed`.
    goodbye: bool,
    out_decoder: NativeCodec,
    /// Ids of requests the client sent that have no response yet.
    outstanding: BTreeSet<u32>,
    // ----- model of the agent's decoding -----
    model_decoder: NativeCodec,
    model_buf: BytesMut,
    model_failed: bool,
    queue: VecDeque<MItem>,
    phase: MPhase,
    in_flight: Vec<MCall>,
    issued: Vec<CallId>,
    received: u64,
    expected_connects: usize,
    // ----- lifecycle -----
    connects: usize,
    disconnects: usize,
    bound: Option<Binding>,
    last_heartbeat: Option<Instant>,
    /// Store operations the next actions must hold (kind, user), in order.
    expected_stores: Vec<(gatekit_agent::StoreKind, String)>,
}

fn varint(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn status_of(result: &CallResult) -> (Status, Bytes) {
    match result {
        CallResult::Ok(b) => (Status::Ok, b.clone()),
        CallResult::NotFound => (Status::NotFound, Bytes::new()),
        CallResult::Failed(b) => (Status::Failed, b.clone()),
        CallResult::Busy => (Status::Busy, Bytes::new()),
        CallResult::Panicked => (Status::InternalError, Bytes::new()),
    }
}

impl H {
    fn new(p: Params) -> H {
        let cfg = AgentConfig {
            heartbeat: Duration::from_millis(p.heartbeat_ms),
            backend_timeout: Duration::from_secs(p.backend_timeout_s),
            max_in_flight: p.max_in_flight,
            max_write_queue: p.max_write_queue,
            max_frame_length: p.max_frame,
            ..Default::default()
        };
        let now = Instant::now();
        let conn = Connection::new(
            Arc::new(cfg.clone()),
            ConnInfo {
                session_id: SID.into(),
                network: "tcp".into(),
                peer: "192.0.2.1:4000".into(),
            },
            now,
        );
        let codec = || NativeCodec::new(p.max_frame, Oversize::Fail).unwrap();
        H {
            cfg,
            conn,
            now,
            encoder: NativeCodec::new(1 << 20, Oversize::Fail).unwrap(),
            next_id: 1,
            socket: VecDeque::new(),
            eof_pending: false,
            eof_done: false,
            transit: VecDeque::new(),
            written_packets: 0,
            peer_eof: false,
            goodbye: false,
            out_decoder: codec(),
            outstanding: BTreeSet::new(),
            model_decoder: codec(),
            model_buf: BytesMut::new(),
            model_failed: false,
            queue: VecDeque::new(),
            phase: MPhase::Handshake,
            in_flight: vec![],
            issued: vec![],
            received: 0,
            expected_connects: 0,
            connects: 0,
            disconnects: 0,
            bound: None,
            last_heartbeat: None,
            expected_stores: Vec::new(),
            p,
        }
    }

    fn max_in_flight(&self) -> usize {
        self.cfg.max_in_flight.max(1)
    }

    /// What the agent counts against its write queue: unwritten bytes plus the bookkeeping
    /// charged per packet not fully written.
    fn unacked(&self) -> usize {
        self.transit.iter().map(|(n, _)| n).sum::<usize>() + PACKET_OVERHEAD * self.transit.len()
    }

    /// Bytes handed out and not yet written.
    fn unwritten_bytes(&self) -> usize {
        self.transit.iter().map(|(n, _)| n).sum()
    }

    /// After EOF the agent ends once everything received is handled and no call is in flight.
    fn eof_close(&mut self) -> Option<CloseReason> {
        if !self.peer_eof {
            return None;
        }
        match self.phase {
            MPhase::Handshake => {
                self.phase = MPhase::Closed;
                Some(CloseReason::Eof)
            }
            MPhase::Open if self.in_flight.is_empty() => {
                self.phase = MPhase::Closed;
                Some(if self.goodbye {
                    CloseReason::ClientClosed
                } else {
                    CloseReason::Eof
                })
            }
            _ => None,
        }
    }

    fn frame_size(&self, p: &Packet) -> Option<usize> {
        let mut b = BytesMut::new();
        self.out_decoder.encode(p, &mut b).ok().map(|_| b.len())
    }

    fn response_size(&self, id: MessageId, result: &CallResult) -> usize {
        let (status, body) = status_of(result);
        self.frame_size(&Packet::Response(Response { id, status, body }))
            .unwrap_or_else(|| {
                self.frame_size(&Packet::Response(Response {
                    id,
                    status: Status::InternalError,
                    body: Bytes::from_static(b"response too large"),
                }))
                .unwrap()
            })
    }

    fn welcome_size(&self) -> usize {
        self.frame_size(&Packet::Welcome(Welcome {
            version: 1,
            heartbeat_secs: 0,
            max_frame_length: self.cfg.max_frame_length as u32,
            session_id: Text::from(SID),
        }))
        .unwrap()
    }

    // ----- collecting what the agent did -----

    /// Polls every chunk and action; returns the packets transmitted and the actions.
    fn collect(&mut self) -> (Vec<Packet>, Vec<Action>) {
        let mut pkts = vec![];
        while let Some(bytes) = self.conn.poll_transmit() {
            assert!(!bytes.is_empty(), "empty chunk");
            let mut chunk = BytesMut::from(&bytes[..]);
            let mut sizes = vec![];
            let mut before = chunk.len();
            while let Some(p) = self
                .out_decoder
                .decode(&mut chunk)
                .expect("agent output decodes")
            {
                sizes.push(before - chunk.len());
                before = chunk.len();
                if let Packet::Response(r) = &p {
                    assert!(
                        self.outstanding.remove(&r.id.get()),
                        "RESPONSE {} answers no unanswered request: {r:?}",
                        r.id
                    );
                }
                pkts.push(p);
            }
            assert!(chunk.is_empty(), "a chunk ends inside a packet");
            self.transit.extend(sizes.into_iter().map(|n| (n, 1)));
        }
        let mut actions = vec![];
        while let Some(a) = self.conn.poll_action() {
            actions.push(a);
        }
        (pkts, actions)
    }

    // ----- the model -----

    fn feed_model(&mut self, bytes: &[u8]) {
        if self.model_failed {
            return;
        }
        self.model_buf.extend_from_slice(bytes);
        loop {
            match self.model_decoder.decode(&mut self.model_buf) {
                Ok(Some(p)) => self.queue.push_back(MItem::Pkt(p)),
                Ok(None) => break,
                Err(_) => {
                    self.queue.push_back(MItem::Bad);
                    self.model_failed = true;
                    break;
                }
            }
        }
    }

    /// Decodes queued packets as the agent must: while open (or handshaking) and below
    /// `max_in_flight`. Returns the close it predicts, if any.
    fn consume(
        &mut self,
        queued: &mut usize,
        calls: &[&Call],
        cursor: &mut usize,
    ) -> Option<CloseReason> {
        while matches!(self.phase, MPhase::Handshake | MPhase::Open)
            && self.in_flight.len() < self.max_in_flight()
        {
            let Some(item) = self.queue.pop_front() else {
                break;
            };
            let packet = match item {
                MItem::Bad => {
                    self.phase = MPhase::Closed;
                    return Some(CloseReason::ProtocolError);
                }
                MItem::Pkt(p) => p,
            };
            self.received += 1;
            let close = match (self.phase, packet) {
                (MPhase::Handshake, Packet::Handshake(h)) if h.version == 1 => {
                    self.expected_connects += 1;
                    self.phase = MPhase::Open;
                    *queued += self.welcome_size() + PACKET_OVERHEAD;
                    (*queued > self.cfg.max_write_queue).then_some(CloseReason::SlowConsumer)
                }
                (MPhase::Handshake, Packet::Handshake(_)) => Some(CloseReason::Refused),
                (MPhase::Handshake, _) => Some(CloseReason::ProtocolError),
                (MPhase::Open, Packet::Request(r)) => {
                    self.expect_call(calls, cursor, r.route(), r.body(), Some(r.id()));
                    None
                }
                (MPhase::Open, Packet::Notify(n)) => {
                    self.expect_call(calls, cursor, n.route(), n.body(), None);
                    None
                }
                (MPhase::Open, Packet::Ping) => {
                    *queued += 2 + PACKET_OVERHEAD;
                    (*queued > self.cfg.max_write_queue).then_some(CloseReason::SlowConsumer)
                }
                (MPhase::Open, Packet::Pong) => None,
                (MPhase::Open, Packet::Close(_)) => {
                    // The last packet: what follows is never read; the close comes once every
                    // call read before it is answered.
                    self.goodbye = true;
                    self.peer_eof = true;
                    self.queue.clear();
                    return self.eof_close();
                }
                (MPhase::Open, _) => Some(CloseReason::ProtocolError),
                (MPhase::Closed, _) => unreachable!(),
            };
            if close.is_some() {
                self.phase = MPhase::Closed;
                return close;
            }
        }
        None
    }

    fn expect_call(
        &mut self,
        calls: &[&Call],
        cursor: &mut usize,
        route: &str,
        body: &[u8],
        reply: Option<MessageId>,
    ) {
        let call = calls
            .get(*cursor)
            .unwrap_or_else(|| panic!("expected a Call for {route} (reply {reply:?}), got none"));
        *cursor += 1;
        assert_eq!(call.route.as_str(), route);
        assert_eq!(&call.body[..], body);
        assert_eq!(call.expects_reply, reply.is_some());
        self.issued.push(call.id);
        self.in_flight.push(MCall {
            id: call.id,
            reply,
            deadline: self.now + self.cfg.backend_timeout,
        });
    }

    /// Checks one call into the connection: the model's prediction, the actions, the invariants.
    fn post(
        &mut self,
        op: Op,
        was_closing: bool,
        actions: &[Action],
        cursor: usize,
        predicted: Option<CloseReason>,
    ) {
        let calls = actions
            .iter()
            .filter(|a| matches!(a, Action::Call(_)))
            .count();
        assert_eq!(
            cursor, calls,
            "{op:?}: Calls the model did not expect: {actions:?}"
        );
        match predicted {
            Some(r) => {
                assert!(self.conn.is_closing(), "{op:?}: expected a close ({r})");
                assert_eq!(self.conn.close_reason(), Some(r), "{op:?}");
            }
            None if self.conn.is_closing() && !was_closing => {
                let r = self.conn.close_reason();
                let allowed = match op {
                    Op::Timeout => matches!(
                        r,
                        Some(CloseReason::HandshakeTimeout | CloseReason::IdleTimeout)
                    ),
                    Op::Eof => r == Some(CloseReason::Eof),
                    Op::Io => r == Some(CloseReason::Reset),
                    _ => false,
                };
                assert!(allowed, "{op:?}: unexpected close {r:?}");
                if r == Some(CloseReason::IdleTimeout) {
                    assert!(self.in_flight.is_empty(), "idle with calls in flight");
                }
            }
            None => {}
        }
        if self.conn.is_closing() {
            self.phase = MPhase::Closed;
            self.in_flight.clear();
        }
        // Connect / Disconnect / heartbeats / store operations.
        let expected_stores = std::mem::take(&mut self.expected_stores);
        let mut stores = Vec::new();
        for a in actions {
            assert_eq!(
                self.disconnects, 0,
                "{op:?}: action after Disconnect: {a:?}"
            );
            match a {
                Action::Connect(s) => {
                    assert_eq!(self.connects, 0, "second Connect");
                    self.connects += 1;
                    assert_eq!(s.session_id, SID);
                    assert!(s.settings.is_empty() && s.user_id.is_none());
                }
                Action::Disconnect(s, r) => {
                    assert_eq!(self.connects, 1, "Disconnect without Connect");
                    assert_eq!(Some(*r), self.conn.close_reason());
                    assert_eq!(s.session_id, SID);
                    self.disconnects += 1;
                }
                Action::Call(c) => {
                    let user = self.bound.as_ref().map(|b| b.user.as_str());
                    assert_eq!(c.session.user_id.as_deref(), user, "Call session snapshot");
                }
                Action::Authenticate(_) => {
                    panic!("{:?}: authentication was never required", a)
                }
                Action::Store(store) => {
                    assert_eq!(store.session.session_id, SID);
                    stores.push((
                        store.kind,
                        store.session.user_id.clone().unwrap_or_default(),
                    ));
                }
                Action::StorageHeartbeat(s) => {
                    let hb = self.cfg.heartbeat;
                    let b = self
                        .bound
                        .as_mut()
                        .unwrap_or_else(|| panic!("heartbeat for an unbound session"));
                    assert_eq!(s.user_id.as_deref(), Some(b.user.as_str()));
                    if let Some(last) = self.last_heartbeat {
                        assert!(
                            self.now - last >= hb,
                            "heartbeats {:?} apart, interval {hb:?}",
                            self.now - last
                        );
                    }
                    b.count += 1;
                    let allowed = ((self.now - b.since).as_nanos() / hb.as_nanos()) as u64 + 1;
                    assert!(
                        b.count <= allowed,
                        "{} heartbeats since bind, at most {allowed}",
                        b.count
                    );
                    self.last_heartbeat = Some(self.now);
                }
            }
        }
        assert_eq!(self.connects, self.expected_connects, "{op:?}: Connect");
        assert_eq!(stores, expected_stores, "{op:?}: store operations");
        self.invariants();
    }

    fn invariants(&mut self) {
        if self.conn.is_finished() {
            // The driver drops what was never written.
            self.transit.clear();
            assert_eq!(
                self.disconnects, self.connects,
                "finished: Disconnect iff Connect"
            );
            assert_eq!(self.conn.poll_timeout(), None);
            assert_eq!(self.conn.buffered_bytes(), 0);
        }
        assert!(self.disconnects <= self.connects);
        assert_eq!(
            self.conn.counters().received(),
            self.received,
            "received counter"
        );
        assert_eq!(
            self.conn.counters().sent(),
            self.written_packets,
            "sent counter"
        );
        let bound = self.conn.buffer_bound(self.p.max_chunk);
        assert!(
            self.conn.buffered_bytes() <= bound,
            "buffered {} > {bound}",
            self.conn.buffered_bytes()
        );
        assert!(self.conn.max_buffered_bytes() <= bound);
        assert!(self.conn.in_flight() <= self.max_in_flight());
        assert_eq!(self.conn.in_flight(), self.in_flight.len(), "in flight");
        if self.conn.is_open() {
            assert!(self.conn.poll_timeout().is_some(), "open without a timer");
        }
        if matches!(self.phase, MPhase::Handshake | MPhase::Open)
            && self.in_flight.len() < self.max_in_flight()
        {
            assert!(
                self.queue.is_empty(),
                "packets left undecoded: {:?}",
                self.queue
            );
        }
        if self.conn.is_closing() {
            assert!(!self.conn.wants_read());
        }
    }

    // ----- operations -----

    fn input(&mut self, piece: BytesMut) {
        let was_closing = self.conn.is_closing();
        let mut queued = self.unacked();
        self.conn.handle_input(self.now, piece.clone());
        let (_, actions) = self.collect();
        let calls: Vec<&Call> = call_refs(&actions);
        let mut cursor = 0;
        let mut predicted = None;
        if !was_closing && !self.goodbye {
            self.feed_model(&piece);
            predicted = self.consume(&mut queued, &calls, &mut cursor);
        }
        self.post(Op::Input, was_closing, &actions, cursor, predicted);
    }

    fn eof(&mut self) {
        let was_closing = self.conn.is_closing();
        let mut queued = self.unacked();
        self.conn.handle_eof(self.now);
        let (_, actions) = self.collect();
        let calls = call_refs(&actions);
        let mut cursor = 0;
        let predicted = if was_closing {
            None
        } else {
            self.peer_eof = true;
            self.consume(&mut queued, &calls, &mut cursor)
                .or_else(|| self.eof_close())
        };
        self.post(Op::Eof, was_closing, &actions, cursor, predicted);
    }

    fn call_result(&mut self, id: CallId, result: CallResult) {
        let was_closing = self.conn.is_closing();
        let mut queued = self.unacked();
        self.conn.handle_call_result(self.now, id, result.clone());
        let (pkts, actions) = self.collect();
        let calls = call_refs(&actions);
        let mut cursor = 0;
        let mut predicted = None;
        if let Some(pos) = self.in_flight.iter().position(|c| c.id == id) {
            let done = self.in_flight.remove(pos);
            let mut expected = None;
            if let Some(reply) = done.reply {
                queued += self.response_size(reply, &result) + PACKET_OVERHEAD;
                if queued > self.cfg.max_write_queue {
                    self.phase = MPhase::Closed;
                    predicted = Some(CloseReason::SlowConsumer);
                } else {
                    expected = Some(reply);
                }
            }
            if predicted.is_none() {
                predicted = self.consume(&mut queued, &calls, &mut cursor);
            }
            if predicted.is_none() {
                predicted = self.eof_close();
            }
            // A close by `finish` (a slow consumer) drops unwritten output; a client's CLOSE is
            // answered after every response.
            let dropped = matches!(predicted, Some(CloseReason::SlowConsumer));
            if let (Some(reply), false) = (expected, dropped) {
                let (status, body) = status_of(&result);
                let sent = pkts.iter().find_map(|p| match p {
                    Packet::Response(r) if r.id == reply => Some(r),
                    _ => None,
                });
                let sent = sent
                    .unwrap_or_else(|| panic!("no RESPONSE {reply}: {pkts:?}, {:?}", self.conn));
                let fits = self
                    .frame_size(&Packet::Response(Response {
                        id: reply,
                        status,
                        body: body.clone(),
                    }))
                    .is_some();
                if fits {
                    assert_eq!((sent.status, &sent.body), (status, &body));
                } else {
                    assert_eq!(sent.status, Status::InternalError);
                }
            }
        } else {
            assert!(
                pkts.is_empty() && actions.is_empty(),
                "a late result did something"
            );
        }
        self.post(Op::Result, was_closing, &actions, cursor, predicted);
    }

    fn timeout(&mut self) {
        let was_closing = self.conn.is_closing();
        let was_open = self.conn.is_open();
        let mut queued = self.unacked();
        self.conn.handle_timeout(self.now);
        if let Some(t) = self.conn.poll_timeout() {
            assert!(t > self.now, "poll_timeout not after handle_timeout(now)");
        }
        let (pkts, actions) = self.collect();
        let calls = call_refs(&actions);
        let mut cursor = 0;
        let mut predicted = None;
        if was_open {
            let now = self.now;
            let (expired, kept): (Vec<MCall>, Vec<MCall>) = std::mem::take(&mut self.in_flight)
                .into_iter()
                .partition(|c| c.deadline <= now);
            self.in_flight = kept;
            let timeout_size = self
                .frame_size(&Packet::Response(Response {
                    id: MessageId::new(1).unwrap(),
                    status: Status::Timeout,
                    body: Bytes::new(),
                }))
                .unwrap();
            let mut answered = vec![];
            for e in &expired {
                if let Some(id) = e.reply {
                    queued += timeout_size + PACKET_OVERHEAD;
                    if queued > self.cfg.max_write_queue {
                        self.phase = MPhase::Closed;
                        predicted = Some(CloseReason::SlowConsumer);
                        break;
                    }
                    answered.push(id);
                }
            }
            if predicted.is_none() && !expired.is_empty() {
                predicted = self.consume(&mut queued, &calls, &mut cursor);
            }
            if predicted.is_none() {
                predicted = self.eof_close();
            }
            let dropped = matches!(predicted, Some(CloseReason::SlowConsumer));
            for id in answered.iter().filter(|_| !dropped) {
                assert!(
                    pkts.iter().any(|p| matches!(p, Packet::Response(r)
                        if r.id == *id && r.status == Status::Timeout)),
                    "no timeout RESPONSE {id}: {pkts:?}"
                );
            }
        }
        self.post(Op::Timeout, was_closing, &actions, cursor, predicted);
    }

    fn written(&mut self, mut n: usize) {
        let was_closing = self.conn.is_closing();
        self.conn.handle_written(n);
        while n > 0 {
            let front = self
                .transit
                .front_mut()
                .expect("wrote more than transmitted");
            let k = n.min(front.0);
            front.0 -= k;
            n -= k;
            if front.0 == 0 {
                self.written_packets += front.1;
                self.transit.pop_front();
            }
        }
        let (_, actions) = self.collect();
        self.post(Op::Written, was_closing, &actions, 0, None);
    }

    fn io_error(&mut self) {
        let was_closing = self.conn.is_closing();
        self.conn.handle_io_error(self.now);
        let (_, actions) = self.collect();
        self.post(Op::Io, was_closing, &actions, 0, None);
        assert!(self.conn.is_finished());
    }

    fn kick(&mut self, shutdown: bool) {
        let was_closing = self.conn.is_closing();
        let (op, reason) = if shutdown {
            self.conn.shutdown(self.now);
            (Op::Shutdown, CloseReason::Shutdown)
        } else {
            self.conn.kick(self.now, "kicked by the test");
            (Op::Kick, CloseReason::Kicked)
        };
        let (pkts, actions) = self.collect();
        if !was_closing {
            let code = if shutdown {
                CloseCode::Shutdown
            } else {
                CloseCode::Kicked
            };
            assert!(
                matches!(pkts.last(), Some(Packet::Close(c)) if c.code == code),
                "{pkts:?}"
            );
        } else {
            assert!(pkts.is_empty());
        }
        let predicted = (!was_closing).then_some(reason);
        self.post(op, was_closing, &actions, 0, predicted);
    }

    fn push(&mut self, len: usize) {
        let was_closing = self.conn.is_closing();
        let was_open = self.conn.is_open();
        let body = Bytes::from(vec![b'p'; len]);
        let packet = Packet::Push(Push::new(Topic::from_static("t"), body.clone()));
        let size = self.frame_size(&packet);
        let queued = self.unacked();
        let r = self.conn.push(Topic::from_static("t"), body);
        let (pkts, actions) = self.collect();
        let mut predicted = None;
        match (was_open, size) {
            (false, _) => assert_eq!(r, Err(PushError::NotOpen)),
            (true, None) => {
                assert!(matches!(r, Err(PushError::TooLarge(_))), "{r:?}");
                assert!(pkts.is_empty());
            }
            (true, Some(size)) => {
                assert_eq!(r, Ok(()));
                if queued + size + PACKET_OVERHEAD > self.cfg.max_write_queue {
                    predicted = Some(CloseReason::SlowConsumer);
                    assert!(pkts.is_empty());
                } else {
                    assert_eq!(pkts, vec![packet]);
                }
            }
        }
        self.post(Op::Push, was_closing, &actions, 0, predicted);
    }

    fn bind(&mut self, user: u8) {
        let was_closing = self.conn.is_closing();
        let was_open = self.conn.is_open();
        let user = format!("user-{user}");
        let ok = self.conn.bind(self.now, user.clone());
        assert_eq!(ok, was_open);
        let previous = self.bound.as_ref().map(|b| b.user.clone());
        if ok && previous.as_ref() != Some(&user) {
            use gatekit_agent::StoreKind;
            self.expected_stores
                .extend(previous.map(|p| (StoreKind::Disconnect, p)));
            self.expected_stores.push((StoreKind::Bind, user.clone()));
        }
        if ok {
            self.bound = Some(Binding {
                user,
                since: self.now,
                count: 0,
            });
        }
        let (pkts, actions) = self.collect();
        assert!(pkts.is_empty());
        self.post(Op::Bind, was_closing, &actions, 0, None);
    }

    fn unbind(&mut self) {
        let was_closing = self.conn.is_closing();
        let was_open = self.conn.is_open();
        let ok = self.conn.unbind();
        assert_eq!(ok, was_open);
        if ok {
            if let Some(b) = self.bound.take() {
                self.expected_stores
                    .push((gatekit_agent::StoreKind::Disconnect, b.user));
            }
        }
        let (pkts, actions) = self.collect();
        assert!(pkts.is_empty());
        self.post(Op::Unbind, was_closing, &actions, 0, None);
    }

    // ----- the driver -----

    /// Reads what the client wrote, as a driver does: only while the agent wants to read.
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
            for _ in 0..10_000 {
                match self.conn.poll_timeout() {
                    Some(t) if t <= target => {
                        self.set_now(t.max(self.now));
                        self.timeout();
                        self.deliver();
                    }
                    _ => break,
                }
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
            let packet = match p {
                CPkt::Hs { version, heartbeat } => Packet::Handshake(Handshake {
                    version: *version,
                    heartbeat_secs: *heartbeat,
                    token: Bytes::new(),
                }),
                CPkt::Req { route, body } => {
                    let id = self.next_id;
                    self.next_id += 1;
                    self.outstanding.insert(id);
                    Packet::Request(Request::new(
                        MessageId::new(id).unwrap(),
                        Route::from_static(ROUTES[*route]),
                        Bytes::copy_from_slice(body),
                    ))
                }
                CPkt::Notify { route, body } => Packet::Notify(Notify::new(
                    Route::from_static(ROUTES[*route]),
                    Bytes::copy_from_slice(body),
                )),
                CPkt::Ping => Packet::Ping,
                CPkt::Pong => Packet::Pong,
                CPkt::Close => Packet::Close(Close {
                    code: CloseCode::Normal,
                    reason: Text::from("bye"),
                }),
                CPkt::Garbage(g) => {
                    bytes.extend_from_slice(g);
                    continue;
                }
                CPkt::Oversize => {
                    let mut v = vec![];
                    varint(self.cfg.max_frame_length + 1, &mut v);
                    v.extend_from_slice(&[0x03, 0, 0]);
                    bytes.extend_from_slice(&v);
                    continue;
                }
            };
            self.encoder.encode(&packet, &mut bytes).unwrap();
        }
        let mut cut_points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        cut_points.sort_unstable();
        let mut pieces = vec![];
        let mut prev = 0;
        for c in cut_points.into_iter().chain([bytes.len()]) {
            if c > prev {
                pieces.push(bytes[prev..c].to_vec());
                prev = c;
            }
        }
        for piece in pieces {
            for part in piece.chunks(self.p.max_chunk) {
                self.socket.push_back(BytesMut::from(part));
            }
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
                let id = if *stale || self.in_flight.is_empty() {
                    if self.issued.is_empty() {
                        return;
                    }
                    self.issued[pick.index(self.issued.len())]
                } else {
                    self.in_flight[pick.index(self.in_flight.len())].id
                };
                self.call_result(id, result.to_result());
            }
            Step::Read { percent } => {
                let n = self.unwritten_bytes() * usize::from(*percent) / 100;
                self.written(n);
            }
            Step::Kick => self.kick(false),
            Step::Shutdown => self.kick(true),
            Step::Push { len } => self.push(*len),
            Step::Bind(u) => self.bind(*u),
            Step::Unbind => self.unbind(),
            Step::Eof => self.eof_pending = true,
            Step::IoError => self.io_error(),
        }
        self.deliver();
    }

    /// Drives the connection to its end: the client closes its side, timers fire.
    fn finish(&mut self) {
        self.eof_pending = true;
        for _ in 0..100_000 {
            self.deliver();
            if self.p.final_reads && self.unwritten_bytes() > 0 {
                let n = self.unwritten_bytes();
                self.written(n);
            }
            if self.conn.is_finished() {
                break;
            }
            let t = self
                .conn
                .poll_timeout()
                .unwrap_or_else(|| panic!("not finished and no timer: {:?}", self.conn));
            self.set_now(t.max(self.now));
            self.timeout();
        }
        assert!(self.conn.is_finished(), "never finished: {:?}", self.conn);
        assert!(self.conn.is_closing());
        assert_eq!(self.disconnects, self.connects);
        assert!(self.connects <= 1);
        assert_eq!(self.conn.in_flight(), 0);
        assert!(self.conn.counters().is_closed());
        assert_eq!(self.conn.counters().received(), self.received);
        assert_eq!(self.conn.counters().sent(), self.written_packets);
        assert!(self.conn.poll_action().is_none());
        assert!(self.conn.poll_transmit().is_none());
    }
}

fn call_refs(actions: &[Action]) -> Vec<&Call> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Call(c) => Some(c),
            _ => None,
        })
        .collect()
}

fn run(p: Params, first: Option<Step>, steps: Vec<Step>) {
    let mut h = H::new(p);
    if let Some(s) = &first {
        h.step(s);
    }
    for s in &steps {
        h.step(s);
    }
    h.finish();
}

proptest! {
    #![proptest_config(Config {
        // PROPTEST_CASES=n runs more.
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(256),
        failure_persistence: None,
        ..Config::default()
    })]

    #[test]
    fn connection_invariants_hold_for_any_sequence((p, first, steps) in case()) {
        run(p, first, steps);
    }
}
