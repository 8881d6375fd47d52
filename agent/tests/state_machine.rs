//! Deterministic tests of the `Connection` state machine through its public API, on a virtual clock
//! (a base `Instant` plus `Duration`s; nothing sleeps). One test per semantic, exact outcomes.

use bytes::{Bytes, BytesMut};
use gatekit_agent::StoreKind;
use gatekit_agent::{
    Action, AgentConfig, Call, CallResult, CloseReason, ConnInfo, Connection, PushError, Session,
};
use gatekit_codec::{
    Close, CloseCode, Handshake, MessageId, NativeCodec, Notify, Oversize, Packet, Push, Request,
    Response, Route, Status, Text, Topic, Welcome,
};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SID: &str = "sess-42";
const NETWORK: &str = "tcp";
const PEER: &str = "10.0.0.7:50000";
const READ_SIZE: usize = 4096;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

fn info() -> ConnInfo {
    ConnInfo {
        session_id: SID.into(),
        network: NETWORK.into(),
        peer: PEER.into(),
    }
}

fn hs(version: u8, heartbeat_secs: u16) -> Packet {
    Packet::Handshake(Handshake {
        version,
        heartbeat_secs,
        token: Bytes::from_static(b"tok"),
    })
}

fn req(id: u32, route: &str, body: &[u8]) -> Packet {
    Packet::Request(Request::new(
        MessageId::new(id).unwrap(),
        Route::try_from(route).unwrap(),
        Bytes::copy_from_slice(body),
    ))
}

fn notify(route: &str, body: &[u8]) -> Packet {
    Packet::Notify(Notify::new(
        Route::try_from(route).unwrap(),
        Bytes::copy_from_slice(body),
    ))
}

fn close_pkt(code: CloseCode, reason: &str) -> Packet {
    Packet::Close(Close {
        code,
        reason: Text::from(reason),
    })
}

fn resp(id: u32, status: Status, body: &[u8]) -> Packet {
    Packet::Response(Response {
        id: MessageId::new(id).unwrap(),
        status,
        body: Bytes::copy_from_slice(body),
    })
}

fn encode(pkts: &[Packet]) -> BytesMut {
    let codec = NativeCodec::default();
    let mut out = BytesMut::new();
    for p in pkts {
        codec.encode(p, &mut out).unwrap();
    }
    out
}

/// The error text the agent's decoder gives for `bytes` (decoded with a codec of the same limits).
fn decode_error_text(bytes: &[u8], max_frame: usize) -> String {
    let mut codec = NativeCodec::new(max_frame, Oversize::Fail).unwrap();
    let mut buf = BytesMut::from(bytes);
    loop {
        match codec.decode(&mut buf) {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("no error in {bytes:?}"),
            Err(e) => return e.to_string(),
        }
    }
}

/// A test client around one `Connection`: encodes client packets, feeds them, decodes what the agent
/// transmits, and records every action with the time it was yielded.
///
/// A packet counts as received by the client (and sent by the agent) once its bytes are reported
/// written with `handle_written`.
struct Client {
    conn: Connection,
    t0: Instant,
    now: Instant,
    decoder: NativeCodec,
    /// Chunks handed out by `poll_transmit`, not yet fully written: (bytes left, packets).
    transit: VecDeque<(usize, Vec<Packet>)>,
    /// Whether the client reads (reports every transmission written at once).
    auto_ack: bool,
    /// Packets written to the client, not yet taken.
    out: Vec<Packet>,
    /// Packets written to the client, in all.
    decoded_total: u64,
    /// Packets the client sent (fed completely).
    sent_total: u64,
    /// Actions not yet taken.
    actions: Vec<Action>,
    /// Every action with the time it was polled.
    log: Vec<(Instant, Action)>,
}

impl Client {
    fn new(config: AgentConfig) -> Self {
        let t0 = Instant::now();
        let max = config.max_frame_length;
        let conn = Connection::new(Arc::new(config), info(), t0);
        Client {
            conn,
            t0,
            now: t0,
            decoder: NativeCodec::new(max, Oversize::Fail).unwrap(),
            transit: VecDeque::new(),
            auto_ack: true,
            out: vec![],
            decoded_total: 0,
            sent_total: 0,
            actions: vec![],
            log: vec![],
        }
    }

    /// A client with the handshake done; its WELCOME and Connect are taken.
    fn open(config: AgentConfig) -> (Self, Arc<Session>) {
        let mut c = Client::new(config);
        let s = c.handshake();
        (c, s)
    }

    fn handshake(&mut self) -> Arc<Session> {
        self.send(&[hs(1, 0)]);
        let out = self.take_out();
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(matches!(out[0], Packet::Welcome(_)), "{out:?}");
        let actions = self.take_actions();
        match &actions[..] {
            [Action::Connect(s)] => s.clone(),
            other => panic!("expected one Connect, got {other:?}"),
        }
    }

    fn at(&self, d: Duration) -> Instant {
        self.t0 + d
    }

    fn set_time(&mut self, d: Duration) {
        let t = self.t0 + d;
        assert!(t >= self.now, "time must not go backwards");
        self.now = t;
    }

    fn unacked(&self) -> usize {
        self.transit.iter().map(|(n, _)| n).sum()
    }

    /// Drains output (decoding it) and actions.
    fn pump(&mut self) {
        while let Some(bytes) = self.conn.poll_transmit() {
            assert!(!bytes.is_empty());
            let mut chunk = BytesMut::from(&bytes[..]);
            let mut pkts = vec![];
            while let Some(p) = self
                .decoder
                .decode(&mut chunk)
                .expect("agent output decodes")
            {
                pkts.push(p);
            }
            assert!(chunk.is_empty(), "a chunk ends with a partial packet");
            self.transit.push_back((bytes.len(), pkts));
        }
        if self.auto_ack && !self.transit.is_empty() {
            self.ack();
            return;
        }
        while let Some(a) = self.conn.poll_action() {
            self.log.push((self.now, a.clone()));
            self.actions.push(a);
        }
        if self.conn.is_finished() {
            // The driver drops what was never written.
            self.transit.clear();
        }
        assert!(
            self.conn.buffered_bytes() <= self.conn.buffer_bound(READ_SIZE),
            "buffered {} > bound {}",
            self.conn.buffered_bytes(),
            self.conn.buffer_bound(READ_SIZE)
        );
        if self.conn.is_open() {
            assert!(self.conn.poll_timeout().is_some(), "open without a timer");
        }
    }

    /// Reports `n` transmitted bytes written.
    fn write(&mut self, mut n: usize) {
        assert!(n <= self.unacked());
        self.conn.handle_written(n);
        while n > 0 {
            let front = self.transit.front_mut().unwrap();
            let k = n.min(front.0);
            front.0 -= k;
            n -= k;
            if front.0 == 0 {
                let (_, pkts) = self.transit.pop_front().unwrap();
                self.decoded_total += pkts.len() as u64;
                self.out.extend(pkts);
            }
        }
        self.pump();
    }

    /// Reports every transmitted byte written.
    fn ack(&mut self) {
        let n = self.unacked();
        self.write(n);
    }

    fn feed(&mut self, bytes: &[u8]) {
        self.conn.handle_input(self.now, BytesMut::from(bytes));
        self.pump();
    }

    fn send(&mut self, pkts: &[Packet]) {
        self.sent_total += pkts.len() as u64;
        self.feed(&encode(pkts));
    }

    fn result(&mut self, call: &Call, result: CallResult) {
        self.conn.handle_call_result(self.now, call.id, result);
        self.pump();
    }

    /// Calls `handle_timeout` at `t0 + d` (a driver whose timer fired then).
    fn tick(&mut self, d: Duration) {
        self.set_time(d);
        self.conn.handle_timeout(self.now);
        self.check_timer_after_timeout();
        self.pump();
    }

    fn check_timer_after_timeout(&self) {
        if let Some(t) = self.conn.poll_timeout() {
            assert!(
                t > self.now,
                "poll_timeout {:?} not after handle_timeout(now)",
                t - self.t0
            );
        }
    }

    /// Fires every timer due up to `t0 + d`, each at its own time, then sets the clock to `t0 + d`.
    fn run_until(&mut self, d: Duration) {
        let target = self.t0 + d;
        for _ in 0..100_000 {
            match self.conn.poll_timeout() {
                Some(t) if t <= target => {
                    self.now = t.max(self.now);
                    self.conn.handle_timeout(self.now);
                    self.check_timer_after_timeout();
                    self.pump();
                }
                _ => {
                    self.set_time(d);
                    return;
                }
            }
        }
        panic!("timers keep firing");
    }

    /// Packets handed to the driver and not yet written.
    fn unwritten(&self) -> Vec<Packet> {
        self.transit.iter().flat_map(|(_, p)| p.clone()).collect()
    }

    fn take_out(&mut self) -> Vec<Packet> {
        std::mem::take(&mut self.out)
    }

    fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    /// Takes the actions, which must all be calls.
    fn calls(&mut self) -> Vec<Call> {
        self.take_actions()
            .into_iter()
            .map(|a| match a {
                Action::Call(c) => c,
                other => panic!("expected only calls, got {other:?}"),
            })
            .collect()
    }

    fn one_call(&mut self) -> Call {
        let mut calls = self.calls();
        assert_eq!(calls.len(), 1, "{calls:?}");
        calls.pop().unwrap()
    }

    fn heartbeats(&self) -> Vec<Duration> {
        self.log
            .iter()
            .filter(|(_, a)| matches!(a, Action::StorageHeartbeat(_)))
            .map(|(t, _)| *t - self.t0)
            .collect()
    }

    fn connects(&self) -> usize {
        self.log
            .iter()
            .filter(|(_, a)| matches!(a, Action::Connect(_)))
            .count()
    }

    fn disconnects(&self) -> Vec<CloseReason> {
        self.log
            .iter()
            .filter_map(|(_, a)| match a {
                Action::Disconnect(_, r) => Some(*r),
                _ => None,
            })
            .collect()
    }

    /// The connection is over with `reason`: one Connect, then exactly one Disconnect with
    /// `reason` as the last action; nothing more happens whatever is fed afterwards.
    fn assert_disconnected(&mut self, reason: CloseReason) {
        assert!(self.conn.is_finished(), "not finished: {:?}", self.conn);
        assert_eq!(self.connects(), 1);
        assert_eq!(self.disconnects(), vec![reason]);
        let ci = self
            .log
            .iter()
            .position(|(_, a)| matches!(a, Action::Connect(_)))
            .unwrap();
        let di = self
            .log
            .iter()
            .position(|(_, a)| matches!(a, Action::Disconnect(..)))
            .unwrap();
        assert!(ci < di, "Disconnect before Connect");
        assert_eq!(di, self.log.len() - 1, "actions after Disconnect");
        if let (_, Action::Disconnect(s, _)) = &self.log[di] {
            assert_eq!(s.session_id, SID);
        }
        assert_eq!(self.conn.close_reason(), Some(reason));
        self.assert_inert();
    }

    /// A finished connection yields nothing more, whatever it is given.
    fn assert_inert(&mut self) {
        assert!(self.conn.is_finished());
        let before = self.log.len();
        self.take_out();
        let received = self.conn.counters().received();
        let sent = self.conn.counters().sent();
        self.feed(&encode(&[Packet::Ping, req(99, "late/req", b"")]));
        self.conn.handle_eof(self.now);
        self.conn.handle_io_error(self.now);
        let later = self.now + secs(3600);
        self.conn.handle_timeout(later);
        self.now = later;
        self.conn.kick(self.now, "late");
        self.conn.shutdown(self.now);
        assert!(!self.conn.bind(self.now, "late"));
        assert_eq!(
            self.conn.push(Topic::from_static("t"), Bytes::new()),
            Err(PushError::NotOpen)
        );
        self.pump();
        assert_eq!(self.log.len(), before, "actions after the end");
        assert!(self.out.is_empty(), "output after the end: {:?}", self.out);
        assert_eq!(self.conn.poll_timeout(), None);
        assert!(!self.conn.wants_read());
        assert_eq!(self.conn.in_flight(), 0);
        assert_eq!(self.conn.counters().received(), received);
        assert_eq!(self.conn.counters().sent(), sent);
        assert!(self.conn.counters().is_closed());
    }

    /// Nothing happened at all: no Connect, no Disconnect.
    fn assert_no_lifecycle(&self) {
        assert!(self.log.is_empty(), "actions: {:?}", self.log);
    }
}

// ----- 1. handshake -----

#[test]
fn handshake_sends_welcome_and_connects_once() {
    let mut c = Client::new(AgentConfig::default());
    assert!(!c.conn.is_open());
    assert!(c.conn.wants_read());
    assert!(c.conn.session().is_none());
    c.send(&[hs(1, 0)]);
    assert_eq!(
        c.take_out(),
        vec![Packet::Welcome(Welcome {
            version: 1,
            heartbeat_secs: 30,
            max_frame_length: 65_535,
            session_id: Text::from(SID),
        })]
    );
    let actions = c.take_actions();
    let session = match &actions[..] {
        [Action::Connect(s)] => s.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        *session,
        Session {
            session_id: SID.into(),
            network: NETWORK.into(),
            peer: PEER.into(),
            server_id: "gate-1".into(),
            user_id: None,
            settings: BTreeMap::new(),
        }
    );
    assert!(c.conn.is_open());
    assert_eq!(
        c.conn.session().map(|s| (**s).clone()),
        Some((*session).clone())
    );
    // Later traffic never connects again.
    c.send(&[Packet::Ping, req(1, "a/b", b"x"), notify("a/c", b"")]);
    let call = c.one_call();
    c.result(&call, CallResult::Ok(Bytes::new()));
    let call = c.one_call();
    c.result(&call, CallResult::Ok(Bytes::new()));
    c.run_until(secs(60));
    assert_eq!(c.connects(), 1);
    assert!(c.disconnects().is_empty());
}

#[test]
fn welcome_heartbeat_never_above_ping_interval() {
    for (asked, config_ping, expected) in [
        (0u16, 30u64, 30u16),
        (5, 30, 5),
        (30, 30, 30),
        (31, 30, 30),
        (600, 30, 30),
        (0, 45, 45),
        (u16::MAX, 45, 45),
    ] {
        let mut c = Client::new(AgentConfig {
            ping_interval: secs(config_ping),
            max_frame_length: 4096,
            ..Default::default()
        });
        c.send(&[hs(1, asked)]);
        match &c.take_out()[..] {
            [Packet::Welcome(w)] => {
                assert_eq!(w.heartbeat_secs, expected, "asked {asked}");
                assert!(u64::from(w.heartbeat_secs) <= config_ping);
                assert_eq!(w.max_frame_length, 4096);
                assert_eq!(w.version, 1);
                assert_eq!(w.session_id.as_str(), SID);
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn handshake_timeout_closes_without_connect_or_disconnect() {
    let mut c = Client::new(AgentConfig::default());
    let hello = encode(&[hs(1, 0)]);
    // Half a handshake does not count.
    c.feed(&hello[..3]);
    assert_eq!(c.conn.poll_timeout(), Some(c.at(secs(10))));
    c.tick(secs(10) - ms(1));
    assert!(c.take_out().is_empty());
    assert!(!c.conn.is_closing());
    c.tick(secs(10));
    assert_eq!(
        c.take_out(),
        vec![close_pkt(CloseCode::HandshakeTimeout, "handshake timeout")]
    );
    assert!(c.conn.is_finished());
    assert_eq!(c.conn.close_reason(), Some(CloseReason::HandshakeTimeout));
    // The rest of the handshake, too late.
    c.feed(&hello[3..]);
    assert!(c.take_out().is_empty());
    c.assert_no_lifecycle();
    assert_eq!(c.conn.counters().received(), 0);
    assert_eq!(c.conn.counters().sent(), 1);
}

#[test]
fn handshake_timeout_waits_for_the_close_to_be_written_or_the_linger() {
    let mut c = Client::new(AgentConfig::default());
    c.auto_ack = false;
    c.tick(secs(10));
    assert_eq!(
        c.unwritten(),
        vec![close_pkt(CloseCode::HandshakeTimeout, "handshake timeout")]
    );
    assert!(c.conn.is_closing() && !c.conn.is_finished());
    assert_eq!(c.conn.poll_timeout(), Some(c.at(secs(12))));
    // Too late for a handshake.
    c.send(&[hs(1, 0)]);
    assert!(c.take_out().is_empty());
    c.tick(secs(12));
    assert!(c.conn.is_finished());
    c.assert_no_lifecycle();
}

#[test]
fn wrong_version_is_refused() {
    let mut c = Client::new(AgentConfig::default());
    c.send(&[hs(2, 0), req(1, "a/b", b"")]);
    let out = c.take_out();
    match &out[..] {
        [Packet::Close(cl)] => {
            assert_eq!(cl.code, CloseCode::UnsupportedVersion);
            assert!(cl.reason.as_str().contains('2'), "{:?}", cl.reason);
        }
        other => panic!("{other:?}"),
    }
    assert!(c.conn.is_finished());
    assert_eq!(c.conn.close_reason(), Some(CloseReason::Refused));
    assert_eq!(c.conn.counters().received(), 1);
    c.assert_no_lifecycle();
}

#[test]
fn first_packet_not_handshake_is_a_protocol_error() {
    for first in [
        Packet::Ping,
        req(1, "a/b", b""),
        notify("a/b", b""),
        close_pkt(CloseCode::Normal, ""),
    ] {
        let mut c = Client::new(AgentConfig::default());
        c.send(&[first.clone(), hs(1, 0)]);
        match &c.take_out()[..] {
            [Packet::Close(cl)] => {
                assert_eq!(cl.code, CloseCode::ProtocolError, "{first:?}");
                assert!(cl.reason.as_str().contains("HANDSHAKE"), "{:?}", cl.reason);
            }
            other => panic!("{first:?}: {other:?}"),
        }
        assert!(c.conn.is_finished());
        assert_eq!(c.conn.close_reason(), Some(CloseReason::ProtocolError));
        assert_eq!(c.conn.counters().received(), 1);
        c.assert_no_lifecycle();
    }
}

#[test]
fn no_session_no_disconnect_on_early_eof_or_reset() {
    let mut c = Client::new(AgentConfig::default());
    c.feed(&encode(&[hs(1, 0)])[..2]);
    c.conn.handle_eof(c.now);
    c.pump();
    assert!(c.conn.is_finished());
    assert_eq!(c.conn.close_reason(), Some(CloseReason::Eof));
    c.assert_no_lifecycle();

    let mut c = Client::new(AgentConfig::default());
    c.conn.handle_io_error(c.now);
    c.pump();
    assert!(c.conn.is_finished());
    assert_eq!(c.conn.close_reason(), Some(CloseReason::Reset));
    c.assert_no_lifecycle();
}

// ----- 2. Disconnect on every path -----

#[test]
fn disconnect_client_close() {
    let (mut c, _) = Client::open(AgentConfig::default());
    c.send(&[close_pkt(CloseCode::Normal, "bye")]);
    // The close handshake: the gate's CLOSE in reply, then the end.
    assert_eq!(c.take_out(), [close_pkt(CloseCode::Normal, "bye")]);
    c.assert_disconnected(CloseReason::ClientClosed);
}

/// The close handshake loses nothing: ten requests and a CLOSE in one write get ten answers, in
/// order, then the gate's CLOSE; bytes after the CLOSE are not read.
#[test]
fn a_close_behind_requests_is_answered_after_them() {
    for n in [1u32, 10] {
        let (mut c, _) = Client::open(AgentConfig::default());
        let mut pkts: Vec<Packet> = (1..=n).map(|id| req(id, "m/f", b"x")).collect();
        pkts.push(close_pkt(CloseCode::Normal, "bye"));
        pkts.push(Packet::Ping); // after the CLOSE: never read
        c.send(&pkts);
        let mut out = vec![];
        for id in 1..=n {
            // One call at a time: each is made once the previous one is answered.
            let call = c.one_call();
            assert!(!c.conn.is_closing(), "closing with request {id} unanswered");
            c.result(&call, CallResult::Ok(Bytes::from_static(b"y")));
            out.extend(c.take_out());
        }
        let mut expected: Vec<Packet> = (1..=n).map(|id| resp(id, Status::Ok, b"y")).collect();
        expected.push(close_pkt(CloseCode::Normal, "bye"));
        assert_eq!(out, expected, "{n} requests");
        c.assert_disconnected(CloseReason::ClientClosed);
        // The requests, the CLOSE; not the PING.
        assert_eq!(c.conn.counters().received(), 1 + u64::from(n) + 1);
    }
}

/// Once the CLOSE is read nothing more is, even bytes that arrive later while the gate still
/// answers what came before it. (With two calls allowed, the CLOSE is read while the request's
/// call runs.)
#[test]
fn bytes_after_the_close_are_never_read() {
    let (mut c, _) = Client::open(AgentConfig {
        max_in_flight: 2,
        ..AgentConfig::default()
    });
    c.send(&[req(1, "m/f", b"x"), close_pkt(CloseCode::Normal, "bye")]);
    let call = c.one_call();
    assert!(
        !c.conn.wants_read(),
        "the CLOSE was read: nothing more will be"
    );
    let received = c.conn.counters().received();
    let buffered = c.conn.buffered_bytes();
    c.send(&[Packet::Ping, req(2, "m/f", b"y")]);
    assert_eq!(c.conn.counters().received(), received);
    assert_eq!(c.conn.buffered_bytes(), buffered, "not even buffered");
    assert!(
        c.take_actions().is_empty(),
        "no call for the request after CLOSE"
    );
    c.result(&call, CallResult::Ok(Bytes::from_static(b"z")));
    assert_eq!(
        c.take_out(),
        [
            resp(1, Status::Ok, b"z"),
            close_pkt(CloseCode::Normal, "bye")
        ]
    );
    c.assert_disconnected(CloseReason::ClientClosed);
}

/// A call still running when the CLOSE arrives is answered when it ends (or times out), and
/// only then does the gate say goodbye.
#[test]
fn a_close_waits_for_the_call_in_flight_to_time_out() {
    let (mut c, _) = Client::open(AgentConfig::default());
    c.send(&[req(1, "m/f", b"x"), close_pkt(CloseCode::Normal, "bye")]);
    let _hung = c.one_call();
    assert!(c.take_out().is_empty());
    assert!(!c.conn.wants_read(), "nothing is read after the CLOSE");
    c.run_until(AgentConfig::default().backend_timeout);
    assert_eq!(
        c.take_out(),
        [
            resp(1, Status::Timeout, b""),
            close_pkt(CloseCode::Normal, "bye")
        ]
    );
    c.assert_disconnected(CloseReason::ClientClosed);
}

#[test]
fn disconnect_eof() {
    let (mut c, _) = Client::open(AgentConfig::default());
    c.conn.handle_eof(c.now);
    c.pump();
    c.assert_disconnected(CloseReason::Eof);
}

#[test]
fn disconnect_eof_in_the_middle_of_a_frame() {
    let (mut c, _) = Client::open(AgentConfig::default());
    let bytes = encode(&[req(1, "chat/send", b"hello world")]);
    c.feed(&bytes[..bytes.len() / 2]);
    assert!(c.take_actions().is_empty());
    c.conn.handle_eof(c.now);
    c.pump();
    assert!(
        !c.log.iter().any(|(_, a)| matches!(a, Action::Call(_))),
        "a truncated request must not be called"
    );
    assert_eq!(c.conn.counters().received(), 1);
    c.assert_disconnected(CloseReason::Eof);
}

#[test]
fn disconnect_io_error() {
    let (mut c, _) = Client::open(AgentConfig::default());
    c.send(&[req(1, "a/b", b"")]);
    let call = c.one_call();
    c.conn.handle_io_error(c.now);
    c.pump();
    // The late result is dropped.
    c.conn
        .handle_call_result(c.now, call.id, CallResult::Ok(Bytes::new()));
    c.pump();
    c.assert_disconnected(CloseReason::Reset);
}

#[test]
fn disconnect_idle_timeout() {
    let (mut c, _) = Client::open(AgentConfig::default());
    assert_eq!(c.conn.poll_timeout(), Some(c.at(secs(90))));
    c.tick(secs(90) - ms(1));
    assert!(c.conn.is_open());
    assert!(c.take_out().is_empty());
    c.tick(secs(90));
    assert_eq!(
        c.take_out(),
        vec![close_pkt(CloseCode::IdleTimeout, "idle timeout")]
    );
    c.assert_disconnected(CloseReason::IdleTimeout);
}

/// The idle timeout follows the heartbeat agreed in WELCOME: three heartbeats without a packet
/// (a client that asked for 5 s is closed after 15 s of silence), never later than
/// `idle_timeout`; a client asking for more than the gate's ping interval gets the interval.
#[test]
fn idle_timeout_is_three_agreed_heartbeats() {
    for (asked, config, agreed, idle) in [
        (5u16, AgentConfig::default(), 5u16, secs(15)),
        (0, AgentConfig::default(), 30, secs(90)),
        (u16::MAX, AgentConfig::default(), 30, secs(90)),
        (
            10,
            AgentConfig {
                idle_timeout: secs(20),
                ..AgentConfig::default()
            },
            10,
            secs(20),
        ),
    ] {
        let mut c = Client::new(config);
        c.send(&[hs(1, asked)]);
        match &c.take_out()[..] {
            [Packet::Welcome(w)] => assert_eq!(w.heartbeat_secs, agreed, "asked {asked}"),
            other => panic!("expected WELCOME, got {other:?}"),
        }
        c.take_actions();
        assert_eq!(c.conn.idle_timeout(), idle, "asked {asked}");
        assert_eq!(c.conn.poll_timeout(), Some(c.at(idle)), "asked {asked}");
        c.tick(idle - ms(1));
        assert!(c.conn.is_open(), "asked {asked}");
        c.tick(idle);
        assert_eq!(
            c.take_out(),
            vec![close_pkt(CloseCode::IdleTimeout, "idle timeout")]
        );
        c.assert_disconnected(CloseReason::IdleTimeout);
    }
}

#[test]
fn idle_timeout_counts_from_the_last_packet() {
    let (mut c, _) = Client::open(AgentConfig::default());
    c.run_until(secs(50));
    c.send(&[Packet::Ping]);
    assert_eq!(c.take_out(), vec![Packet::Pong]);
    assert_eq!(c.conn.poll_timeout(), Some(c.at(secs(140))));
    c.run_until(secs(140) - ms(1));
    assert!(c.conn.is_open());
    c.run_until(secs(140));
    assert_eq!(
        c.take_out(),
        vec![close_pkt(CloseCode::IdleTimeout, "idle timeout")]
    );
    c.assert_disconnected(CloseReason::IdleTimeout);
}

#[test]
fn disconnect_protocol_error_with_the_error_text() {
    let (mut c, _) = Client::open(AgentConfig::default());
    let bad = [0x01u8, 0xEE];
    c.feed(&bad);
    let text = decode_error_text(&bad, 65_535);
    assert!(!text.is_empty());
    assert_eq!(
        c.take_out(),
        vec![close_pkt(CloseCode::ProtocolError, &text)]
    );
    c.assert_disconnected(CloseReason::ProtocolError);
}

#[test]
fn disconnect_protocol_error_for_a_zero_message_id() {
    let (mut c, _) = Client::open(AgentConfig::default());
    // REQUEST with id 0, route "a/b".
    let bad = [0x09u8, 0x03, 0, 0, 0, 0, 0x03, b'a', b'/', b'b'];
    c.feed(&bad);
    let text = decode_error_text(&bad, 65_535);
    assert_eq!(
        c.take_out(),
        vec![close_pkt(CloseCode::ProtocolError, &text)]
    );
    assert!(!c.log.iter().any(|(_, a)| matches!(a, Action::Call(_))));
    c.assert_disconnected(CloseReason::ProtocolError);
}

#[test]
fn disconnect_oversize_frame() {
    let (mut c, _) = Client::open(AgentConfig::default());
    // Length 65,536 (one over the maximum): refused from the prefix alone.
    let prefix = [0x80u8, 0x80, 0x04];
    c.feed(&prefix);
    let text = decode_error_text(&prefix, 65_535);
    assert_eq!(
        c.take_out(),
        vec![close_pkt(CloseCode::FrameTooLarge, &text)]
    );
    c.assert_disconnected(CloseReason::ProtocolError);
}

#[test]
fn disconnect_client_sends_a_server_packet() {
    let (mut c, _) = Client::open(AgentConfig::default());
    c.send(&[resp(1, Status::Ok, b"")]);
    match &c.take_out()[..] {
        [Packet::Close(cl)] => assert_eq!(cl.code, CloseCode::ProtocolError),
        other => panic!("{other:?}"),
    }
    c.assert_disconnected(CloseReason::ProtocolError);
}

#[test]
fn disconnect_kick_after_the_close_is_written() {
    let (mut c, _) = Client::open(AgentConfig::default());
    c.auto_ack = false;
    c.conn.kick(c.now, "bye");
    c.pump();
    assert_eq!(c.unwritten(), vec![close_pkt(CloseCode::Kicked, "bye")]);
    assert!(c.conn.is_closing());
    assert!(!c.conn.is_finished());
    assert!(
        c.disconnects().is_empty(),
        "Disconnect before the CLOSE is written"
    );
    assert!(!c.conn.wants_read());
    // Pushes and packets while closing are refused / ignored.
    assert_eq!(
        c.conn.push(Topic::from_static("t"), Bytes::new()),
        Err(PushError::NotOpen)
    );
    c.send(&[Packet::Ping]);
    assert!(c.take_out().is_empty());
    c.ack();
    assert_eq!(c.take_out(), vec![close_pkt(CloseCode::Kicked, "bye")]);
    c.assert_disconnected(CloseReason::Kicked);
}

#[test]
fn disconnect_kick_at_the_linger_deadline_if_never_written() {
    let (mut c, _) = Client::open(AgentConfig::default());
    c.auto_ack = false;
    c.set_time(secs(5));
    c.conn.kick(c.now, "bye");
    c.pump();
    assert_eq!(c.unwritten(), vec![close_pkt(CloseCode::Kicked, "bye")]);
    assert_eq!(c.conn.poll_timeout(), Some(c.at(secs(7))));
    c.tick(secs(7) - ms(1));
    assert!(c.disconnects().is_empty());
    c.tick(secs(7));
    c.assert_disconnected(CloseReason::Kicked);
}

#[test]
fn disconnect_slow_consumer() {
    let (mut c, _) = Client::open(AgentConfig::default());
    c.auto_ack = false;
    let body = Bytes::from(vec![b'x'; 10_000]);
    let topic = Topic::from_static("room/7");
    let frame = encode(&[Packet::Push(Push::new(topic.clone(), body.clone()))]).len();
    let max = AgentConfig::default().max_write_queue;
    let overflow_at = max / frame + 1;
    for i in 1..=overflow_at {
        assert_eq!(c.conn.push(topic.clone(), body.clone()), Ok(()));
        c.pump();
        if i < overflow_at {
            assert!(
                c.conn.is_open(),
                "closed at push {i}, {} bytes queued",
                i * frame
            );
        }
    }
    assert_eq!(c.conn.close_reason(), Some(CloseReason::SlowConsumer));
    assert_eq!(
        c.conn.push(topic.clone(), body.clone()),
        Err(PushError::NotOpen)
    );
    c.assert_disconnected(CloseReason::SlowConsumer);
}

#[test]
fn disconnect_shutdown() {
    let (mut c, _) = Client::open(AgentConfig::default());
    c.send(&[req(1, "a/b", b"")]);
    let call = c.one_call();
    c.conn.shutdown(c.now);
    c.pump();
    assert_eq!(
        c.take_out(),
        vec![close_pkt(CloseCode::Shutdown, "gate shutting down")]
    );
    c.result(&call, CallResult::Ok(Bytes::new()));
    assert!(c.take_out().is_empty());
    c.assert_disconnected(CloseReason::Shutdown);
}

#[test]
fn drain_answers_the_calls_in_flight_then_closes_with_shutdown() {
    let (mut c, _) = Client::open(AgentConfig {
        max_in_flight: 2,
        ..AgentConfig::default()
    });
    c.send(&[req(1, "a/b", b""), req(2, "a/b", b"")]);
    let calls = c.calls();
    assert_eq!(calls.len(), 2);
    c.conn.drain(c.now);
    c.pump();
    // Nothing is closed while calls are in flight, and nothing more is read.
    assert!(c.take_out().is_empty());
    assert!(!c.conn.wants_read());
    c.send(&[req(3, "a/b", b"")]);
    assert!(c.calls().is_empty(), "a request read while draining");
    c.result(&calls[0], CallResult::Ok(Bytes::from_static(b"one")));
    assert_eq!(c.take_out(), vec![resp(1, Status::Ok, b"one")]);
    c.result(&calls[1], CallResult::Ok(Bytes::from_static(b"two")));
    assert_eq!(
        c.take_out(),
        vec![
            resp(2, Status::Ok, b"two"),
            close_pkt(CloseCode::Shutdown, "gate shutting down")
        ]
    );
    c.assert_disconnected(CloseReason::Shutdown);
}

#[test]
fn drain_times_out_a_call_that_does_not_answer_then_closes() {
    let (mut c, _) = Client::open(AgentConfig::default());
    c.send(&[req(1, "a/b", b"")]);
    let _call = c.one_call();
    c.conn.drain(c.now);
    c.pump();
    assert!(c.take_out().is_empty());
    c.tick(AgentConfig::default().backend_timeout);
    assert_eq!(
        c.take_out(),
        vec![
            resp(1, Status::Timeout, b""),
            close_pkt(CloseCode::Shutdown, "gate shutting down")
        ]
    );
    c.assert_disconnected(CloseReason::Shutdown);
}

#[test]
fn drain_with_nothing_in_flight_closes_at_once() {
    let (mut c, _) = Client::open(AgentConfig::default());
    c.conn.drain(c.now);
    c.pump();
    assert_eq!(
        c.take_out(),
        vec![close_pkt(CloseCode::Shutdown, "gate shutting down")]
    );
    c.assert_disconnected(CloseReason::Shutdown);
}

#[test]
fn first_close_reason_wins() {
    let (mut c, _) = Client::open(AgentConfig::default());
    c.auto_ack = false;
    c.conn.kick(c.now, "bye");
    c.conn.shutdown(c.now);
    c.send(&[close_pkt(CloseCode::Normal, "")]);
    assert_eq!(c.unwritten(), vec![close_pkt(CloseCode::Kicked, "bye")]);
    // EOF while closing: the peer may only have half-closed, so the CLOSE still drains (until the
    // linger deadline); the first reason stays.
    c.conn.handle_eof(c.now);
    c.pump();
    assert!(!c.conn.is_finished());
    assert_eq!(c.disconnects(), vec![]);
    c.tick(AgentConfig::default().close_linger);
    c.pump();
    assert!(c.take_out().is_empty());
    c.assert_disconnected(CloseReason::Kicked);
}

// ----- 3. counters -----

#[test]
fn counters_are_exact() {
    let (mut c, _) = Client::open(AgentConfig::default());
    c.send(&[Packet::Ping, Packet::Ping]);
    c.send(&[req(1, "a/b", b"1")]);
    let call = c.one_call();
    c.result(&call, CallResult::Ok(Bytes::from_static(b"r1")));
    c.send(&[notify("a/n", b"")]);
    let call = c.one_call();
    c.result(&call, CallResult::Ok(Bytes::new()));
    c.send(&[Packet::Pong]);
    // A ping queued behind a request in flight is counted once it is decoded.
    c.send(&[req(2, "a/b", b"2"), Packet::Ping]);
    assert_eq!(c.conn.counters().received(), c.sent_total - 1);
    let call = c.one_call();
    c.result(&call, CallResult::Busy);
    c.conn.push(Topic::from_static("t"), Bytes::new()).unwrap();
    c.pump();
    // Packets split across reads count once complete.
    let bytes = encode(&[Packet::Ping, req(3, "a/b", b"split")]);
    for b in bytes.chunks(1) {
        c.feed(b);
    }
    c.sent_total += 2;
    let call = c.one_call();
    c.result(&call, CallResult::Ok(Bytes::new()));

    assert_eq!(c.sent_total, 1 + 2 + 1 + 1 + 1 + 2 + 2);
    assert_eq!(c.conn.counters().received(), c.sent_total);
    // WELCOME, 2 PONG, RESPONSE, RESPONSE, PONG, PUSH, PONG, RESPONSE
    assert_eq!(c.decoded_total, 9);
    assert_eq!(c.conn.counters().sent(), c.decoded_total);
    assert!(!c.conn.counters().is_closed());

    c.conn.kick(c.now, "bye");
    c.pump();
    assert!(c.conn.counters().is_closed());
    assert_eq!(c.conn.counters().sent(), c.decoded_total);
    assert_eq!(c.decoded_total, 10);
    assert_eq!(c.conn.counters().received(), c.sent_total);
}

#[test]
fn counters_sent_skips_a_pong_dropped_when_close_follows_ping_in_one_read() {
    let (mut c, _) = Client::open(AgentConfig::default());
    c.send(&[Packet::Ping, close_pkt(CloseCode::Normal, "bye")]);
    c.assert_disconnected(CloseReason::ClientClosed);
    assert_eq!(c.conn.counters().received(), c.sent_total);
    assert_eq!(c.conn.counters().sent(), c.decoded_total);
}

#[test]
fn counters_sent_skips_what_a_slow_consumer_never_read() {
    let (mut c, _) = Client::open(AgentConfig {
        max_write_queue: 100,
        ..Default::default()
    });
    c.auto_ack = false;
    let body = Bytes::from(vec![b'x'; 40]);
    for _ in 0..3 {
        let _ = c.conn.push(Topic::from_static("t"), body.clone());
        c.pump();
    }
    c.assert_disconnected(CloseReason::SlowConsumer);
    assert_eq!(c.decoded_total, 1);
    assert_eq!(c.conn.counters().sent(), c.decoded_total);
}

#[test]
fn counters_sent_follows_partial_writes() {
    let (mut c, _) = Client::open(AgentConfig::default());
    c.auto_ack = false;
    c.send(&[Packet::Ping]);
    c.send(&[Packet::Ping]);
    assert_eq!(c.transit.len(), 2);
    assert_eq!(c.conn.counters().sent(), 1);
    c.write(1);
    assert_eq!(c.conn.counters().sent(), 1);
    c.write(1);
    assert_eq!(c.conn.counters().sent(), 2);
    c.write(2);
    assert_eq!(c.conn.counters().sent(), 3);
    assert_eq!(c.conn.counters().sent(), c.decoded_total);
}

/// `Counters::sent` documents "fully handed to the transport (written)", but a packet is only
/// counted once the whole `poll_transmit` chunk holding it is written: a PONG whose two bytes were
/// written is not counted while the next PONG of the same chunk is pending, and never if the
/// connection then resets.
#[test]
fn counters_sent_counts_a_packet_once_its_own_bytes_are_written() {
    let (mut c, _) = Client::open(AgentConfig::default());
    c.auto_ack = false;
    c.send(&[Packet::Ping, Packet::Ping]);
    assert_eq!(c.transit.len(), 1, "both PONGs in one chunk");
    assert_eq!(c.unacked(), 4);
    let before = c.conn.counters().sent();
    c.conn.handle_written(2); // the first PONG is fully written
    assert_eq!(
        c.conn.counters().sent(),
        before + 1,
        "a fully written PONG is not counted"
    );
    c.conn.handle_io_error(c.now);
    assert_eq!(c.conn.counters().sent(), before + 1);
}

// ----- 4. routing -----

#[test]
fn request_is_called_and_answered_with_the_same_id() {
    let (mut c, session) = Client::open(AgentConfig::default());
    c.send(&[req(7, "chat/send", b"hello")]);
    assert!(c.take_out().is_empty());
    let call = c.one_call();
    assert_eq!(call.route.as_str(), "chat/send");
    assert_eq!(call.route.module(), "chat");
    assert_eq!(call.route.func(), "send");
    assert_eq!(&call.body[..], b"hello");
    assert!(call.expects_reply);
    assert_eq!(call.session, session);
    assert_eq!(c.conn.in_flight(), 1);
    c.result(&call, CallResult::Ok(Bytes::from_static(b"world")));
    assert_eq!(c.take_out(), vec![resp(7, Status::Ok, b"world")]);
    assert_eq!(c.conn.in_flight(), 0);
    // A second result for the same call is ignored.
    c.result(&call, CallResult::Ok(Bytes::from_static(b"again")));
    assert!(c.take_out().is_empty());
    assert!(c.take_actions().is_empty());
}

#[test]
fn call_results_map_to_statuses() {
    let (mut c, _) = Client::open(AgentConfig::default());
    let cases = [
        (CallResult::NotFound, Status::NotFound, &b""[..]),
        (
            CallResult::Failed(Bytes::from_static(b"no money")),
            Status::Failed,
            &b"no money"[..],
        ),
        (CallResult::Busy, Status::Busy, &b""[..]),
        (CallResult::Panicked, Status::InternalError, &b""[..]),
        (
            CallResult::Ok(Bytes::from_static(b"ok")),
            Status::Ok,
            &b"ok"[..],
        ),
    ];
    for (i, (result, status, body)) in cases.into_iter().enumerate() {
        let id = 100 + i as u32;
        c.send(&[req(id, "m/f", b"")]);
        let call = c.one_call();
        c.result(&call, result);
        assert_eq!(c.take_out(), vec![resp(id, status, body)]);
        assert!(c.conn.is_open());
    }
}

#[test]
fn too_large_result_answers_internal_error() {
    let (mut c, _) = Client::open(AgentConfig::default());
    c.send(&[req(3, "m/f", b"")]);
    let call = c.one_call();
    c.result(&call, CallResult::Ok(Bytes::from(vec![0u8; 70_000])));
    assert_eq!(
        c.take_out(),
        vec![resp(3, Status::InternalError, b"response too large")]
    );
    assert!(c.conn.is_open());
}

#[test]
fn notify_is_called_without_reply() {
    let (mut c, session) = Client::open(AgentConfig::default());
    c.send(&[notify("chat/typing", b"x")]);
    let call = c.one_call();
    assert_eq!(call.route.as_str(), "chat/typing");
    assert_eq!(&call.body[..], b"x");
    assert!(!call.expects_reply);
    assert_eq!(call.session, session);
    c.result(&call, CallResult::Ok(Bytes::from_static(b"ignored")));
    assert!(c.take_out().is_empty());
    assert_eq!(c.conn.in_flight(), 0);
    // A notify that fails is not answered either.
    c.send(&[notify("chat/typing", b"y")]);
    let call = c.one_call();
    c.result(&call, CallResult::Panicked);
    assert!(c.take_out().is_empty());
    assert!(c.conn.is_open());
}

#[test]
fn backend_timeout_answers_timeout_and_drops_the_late_result() {
    let (mut c, _) = Client::open(AgentConfig::default());
    c.set_time(secs(5));
    c.send(&[req(9, "slow/op", b"")]);
    let call = c.one_call();
    assert_eq!(c.conn.poll_timeout(), Some(c.at(secs(15))));
    c.tick(secs(15) - ms(1));
    assert!(c.take_out().is_empty());
    assert_eq!(c.conn.in_flight(), 1);
    c.tick(secs(15));
    assert_eq!(c.take_out(), vec![resp(9, Status::Timeout, b"")]);
    assert_eq!(c.conn.in_flight(), 0);
    c.set_time(secs(16));
    c.result(&call, CallResult::Ok(Bytes::from_static(b"late")));
    assert!(c.take_out().is_empty());
    assert!(c.take_actions().is_empty());
    assert!(c.conn.is_open());
    assert_eq!(c.conn.counters().sent(), c.decoded_total);
}

#[test]
fn notify_timeout_sends_nothing_and_frees_the_slot() {
    let (mut c, _) = Client::open(AgentConfig::default());
    c.send(&[notify("slow/op", b""), req(2, "a/b", b"")]);
    let _ = c.one_call();
    c.tick(secs(10));
    assert!(c.take_out().is_empty());
    let call = c.one_call();
    assert!(call.expects_reply);
    c.result(&call, CallResult::Ok(Bytes::new()));
    assert_eq!(c.take_out(), vec![resp(2, Status::Ok, b"")]);
}

// ----- 5. order and back-pressure -----

#[test]
fn one_in_flight_keeps_order_and_stops_reading() {
    let (mut c, _) = Client::open(AgentConfig::default());
    assert_eq!(c.conn.config().max_in_flight, 1);
    c.send(&[
        req(1, "m/f", b"a"),
        req(2, "m/f", b"b"),
        req(3, "m/f", b"c"),
    ]);
    let mut responses = vec![];
    for (id, body) in [(1u32, b"a"), (2, b"b"), (3, b"c")] {
        let call = c.one_call();
        assert_eq!(&call.body[..], body);
        assert_eq!(c.conn.in_flight(), 1);
        assert!(!c.conn.wants_read(), "reading while a call is in flight");
        assert!(c.take_out().is_empty());
        c.result(&call, CallResult::Ok(Bytes::from(format!("r{id}"))));
        responses.extend(c.take_out());
    }
    assert!(c.conn.wants_read());
    assert_eq!(
        responses,
        vec![
            resp(1, Status::Ok, b"r1"),
            resp(2, Status::Ok, b"r2"),
            resp(3, Status::Ok, b"r3"),
        ]
    );
    assert_eq!(c.conn.counters().received(), c.sent_total);
}

#[test]
fn three_in_flight_answer_in_completion_order() {
    let (mut c, _) = Client::open(AgentConfig {
        max_in_flight: 3,
        ..Default::default()
    });
    c.send(&[
        req(1, "m/f", b"a"),
        req(2, "m/f", b"b"),
        req(3, "m/f", b"c"),
    ]);
    let calls = c.calls();
    assert_eq!(calls.len(), 3);
    assert_eq!(c.conn.in_flight(), 3);
    assert!(!c.conn.wants_read());
    for i in [2usize, 0, 1] {
        c.result(
            &calls[i],
            CallResult::Ok(Bytes::from(format!("r{}", i + 1))),
        );
        assert!(c.conn.wants_read());
    }
    assert_eq!(
        c.take_out(),
        vec![
            resp(3, Status::Ok, b"r3"),
            resp(1, Status::Ok, b"r1"),
            resp(2, Status::Ok, b"r2"),
        ]
    );
}

#[test]
fn no_request_is_ever_dropped() {
    for max_in_flight in 1..=4 {
        let (mut c, _) = Client::open(AgentConfig {
            max_in_flight,
            ..Default::default()
        });
        let mut pkts = vec![];
        for id in 1..=40u32 {
            pkts.push(req(id, "m/f", &id.to_be_bytes()));
            if id % 3 == 0 {
                pkts.push(notify("m/n", b""));
            }
        }
        let bytes = encode(&pkts);
        c.sent_total += pkts.len() as u64;
        let mut answered = vec![];
        let mut pending: Vec<Call> = vec![];
        let mut chunks = bytes.chunks(37);
        let mut step = 0u64;
        loop {
            assert!(step < 10_000, "stuck");
            if c.conn.wants_read() {
                if let Some(chunk) = chunks.next() {
                    c.feed(chunk);
                }
            }
            pending.extend(c.calls());
            assert!(pending.len() <= max_in_flight);
            assert_eq!(pending.len(), c.conn.in_flight());
            for p in c.take_out() {
                match p {
                    Packet::Response(r) => {
                        assert_eq!(r.status, Status::Ok);
                        assert_eq!(&r.body[..], &r.id.get().to_be_bytes());
                        answered.push(r.id.get());
                    }
                    other => panic!("{other:?}"),
                }
            }
            if pending.is_empty() {
                if c.conn.wants_read() && chunks.len() == 0 {
                    break;
                }
                step += 1;
                continue;
            }
            // Answer the newest (or oldest) call, echoing the body.
            step += 1;
            let call = if step % 2 == 0 {
                pending.pop().unwrap()
            } else {
                pending.remove(0)
            };
            let body = call.body.clone();
            c.result(&call, CallResult::Ok(body));
        }
        for p in c.take_out() {
            if let Packet::Response(r) = p {
                answered.push(r.id.get());
            }
        }
        let mut sorted = answered.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            (1..=40).collect::<Vec<_>>(),
            "in flight {max_in_flight}"
        );
        if max_in_flight == 1 {
            assert_eq!(answered, sorted, "order kept with one in flight");
        }
        assert_eq!(c.conn.counters().received(), c.sent_total);
        assert_eq!(c.conn.counters().sent(), c.decoded_total);
    }
}

// ----- 6. bounded buffers -----

/// A client floods requests (and pings) as fast as the agent lets it read, never reads what the
/// agent writes, and the back end never answers; `buffered_bytes` stays within the bound throughout.
fn flood(config: AgentConfig, max_steps: u64) -> Client {
    let (mut c, _) = Client::open(config);
    c.auto_ack = false;
    let bound = c.conn.buffer_bound(READ_SIZE);
    let mut pkts = vec![];
    for id in 1..=3000u32 {
        pkts.push(req(id, "m/f", &[b'x'; 500]));
        for _ in 0..20 {
            pkts.push(Packet::Ping);
        }
    }
    let flood = encode(&pkts);
    let mut offset = 0;
    let mut blocked_with_data = false;
    let mut step = 0u64;
    while !c.conn.is_closing() && step < max_steps {
        step += 1;
        if c.conn.wants_read() {
            if offset < flood.len() {
                let end = (offset + READ_SIZE).min(flood.len());
                c.feed(&flood[offset..end]);
                offset = end;
            }
        } else if offset < flood.len() {
            blocked_with_data = true;
        }
        let _ = c.take_actions(); // the back end never answers
        c.run_until(ms(100 * step));
        assert!(c.conn.buffered_bytes() <= bound);
        assert!(c.conn.max_buffered_bytes() <= bound);
    }
    assert!(blocked_with_data, "the flood was never held back");
    assert!(c.conn.max_buffered_bytes() <= bound);
    c
}

#[test]
fn buffers_stay_bounded_for_a_flooding_client_that_never_reads() {
    let c = flood(AgentConfig::default(), 3000);
    assert!(c.conn.is_open());
}

#[test]
fn flooding_client_that_never_reads_ends_as_slow_consumer_within_bounds() {
    let c = flood(
        AgentConfig {
            max_write_queue: 8 * 1024,
            backend_timeout: secs(1),
            ..Default::default()
        },
        20_000,
    );
    // The unread PONGs and timeout answers end it as a slow consumer.
    assert_eq!(c.conn.close_reason(), Some(CloseReason::SlowConsumer));
    assert_eq!(c.disconnects(), vec![CloseReason::SlowConsumer]);
}

// ----- 7. heartbeats -----

#[test]
fn ping_gets_pong() {
    let (mut c, _) = Client::open(AgentConfig::default());
    c.send(&[Packet::Ping]);
    assert_eq!(c.take_out(), vec![Packet::Pong]);
    c.send(&[Packet::Ping, Packet::Ping]);
    assert_eq!(c.take_out(), vec![Packet::Pong, Packet::Pong]);
    // A PONG from the client is just activity.
    c.send(&[Packet::Pong]);
    assert!(c.take_out().is_empty());
    assert!(c.take_actions().is_empty());
}

/// Pings every 10 s up to `until`, firing timers in between.
fn ping_every_10s(c: &mut Client, from: u64, until: u64) {
    let mut t = from;
    while t <= until {
        c.run_until(secs(t));
        c.send(&[Packet::Ping]);
        assert_eq!(c.take_out(), vec![Packet::Pong]);
        t += 10;
    }
}

#[test]
fn no_storage_heartbeat_without_bind() {
    let (mut c, _) = Client::open(AgentConfig::default());
    ping_every_10s(&mut c, 10, 600);
    assert!(c.heartbeats().is_empty());
    assert!(c.conn.is_open());
}

#[test]
fn storage_heartbeat_once_per_interval_while_active() {
    let (mut c, _) = Client::open(AgentConfig::default());
    assert!(c.conn.bind(c.now, "u1"));
    c.pump();
    assert_eq!(c.heartbeats(), vec![secs(0)], "heartbeat at bind");
    match c.log.last() {
        Some((_, Action::StorageHeartbeat(s))) => assert_eq!(s.user_id.as_deref(), Some("u1")),
        other => panic!("{other:?}"),
    }
    ping_every_10s(&mut c, 10, 600);
    let hb = c.heartbeats();
    assert_eq!(hb, (0..=10).map(|k| secs(60 * k)).collect::<Vec<_>>());
    assert_eq!(hb.len(), 11);
}

#[test]
fn storage_heartbeat_bounded_for_an_idle_bound_client() {
    let (mut c, _) = Client::open(AgentConfig {
        idle_timeout: secs(3600),
        ..Default::default()
    });
    assert!(c.conn.bind(c.now, "u1"));
    c.pump();
    for t in 1..=600 {
        c.run_until(secs(t));
        let n = c.heartbeats().len() as u64;
        assert!(n <= t / 60 + 1, "{n} heartbeats at {t} s");
    }
    assert!(!c.heartbeats().is_empty());
}

#[test]
fn storage_heartbeat_lower_bound_with_sparse_activity() {
    // One packet in each interval, at a random-looking offset: one heartbeat per interval at least.
    let (mut c, _) = Client::open(AgentConfig::default());
    assert!(c.conn.bind(c.now, "u1"));
    c.pump();
    let _ = c.take_actions();
    for k in 0..10u64 {
        let t = 60 * k + 7 + (k * 13) % 50;
        c.run_until(secs(t));
        let _ = c.take_actions();
        c.send(&[notify("m/n", b"")]);
        let call = c.one_call();
        c.result(&call, CallResult::Ok(Bytes::new()));
        let _ = c.take_actions();
    }
    c.run_until(secs(600));
    let hb = c.heartbeats();
    for k in 0..10u64 {
        let lo = secs(60 * k);
        let hi = secs(60 * (k + 2));
        assert!(
            hb.iter().any(|t| *t >= lo && *t <= hi),
            "no heartbeat within [{lo:?}, {hi:?}]: {hb:?}"
        );
    }
    for w in hb.windows(2) {
        assert!(w[1] - w[0] >= secs(60), "{hb:?}");
    }
}

#[test]
fn unbind_stops_storage_heartbeats() {
    let (mut c, _) = Client::open(AgentConfig::default());
    assert!(c.conn.bind(c.now, "u1"));
    c.pump();
    ping_every_10s(&mut c, 10, 120);
    c.run_until(secs(125));
    assert!(c.conn.unbind());
    ping_every_10s(&mut c, 130, 600);
    assert_eq!(c.heartbeats(), vec![secs(0), secs(60), secs(120)]);
    assert!(c.conn.bind(c.now, "u2"));
    c.pump();
    assert_eq!(c.heartbeats().last(), Some(&secs(600)));
}

#[test]
fn poll_timeout_is_always_set_while_open_and_never_in_the_past() {
    let (mut c, _) = Client::open(AgentConfig {
        heartbeat: secs(7),
        ..Default::default()
    });
    assert!(c.conn.bind(c.now, "u1"));
    c.pump();
    let mut pending: Vec<Call> = vec![];
    for t in 1..=400u64 {
        c.run_until(secs(t) + ms(t * 37 % 1000));
        assert!(c.conn.poll_timeout().is_some());
        match t % 11 {
            0 => c.send(&[Packet::Ping]),
            3 => c.send(&[req(t as u32, "m/f", b"")]),
            5 => {
                if let Some(call) = pending.pop() {
                    c.result(&call, CallResult::Ok(Bytes::new()));
                }
            }
            _ => {}
        }
        for a in c.take_actions() {
            if let Action::Call(call) = a {
                pending.push(call);
            }
        }
        assert!(c.conn.is_open());
        assert!(c.conn.poll_timeout().unwrap() > c.now);
    }
}

// ----- 8. push, settings, bind -----

/// What the store is asked for, in order, and what a bind's answer restores: the session's own
/// keys win, and an answer for a user no longer bound changes nothing.
#[test]
fn the_store_is_asked_in_order_and_restored_settings_lose_to_the_sessions_own() {
    let mut c = Client::new(AgentConfig::default());
    c.handshake();
    let store_ops = |c: &mut Client| -> Vec<(StoreKind, Option<String>)> {
        c.pump();
        c.take_actions()
            .into_iter()
            .filter_map(|a| match a {
                Action::Store(op) => Some((op.kind, op.session.user_id.clone())),
                _ => None,
            })
            .collect()
    };
    let alice = Some("alice".to_owned());
    // Unbound: settings are not stored.
    assert!(c.conn.set_setting("room", "7"));
    assert_eq!(store_ops(&mut c), vec![]);
    assert!(c.conn.bind(c.now, "alice"));
    assert_eq!(store_ops(&mut c), vec![(StoreKind::Bind, alice.clone())]);
    let restored = BTreeMap::from([
        ("room".to_owned(), "1".to_owned()),
        ("level".to_owned(), "3".to_owned()),
    ]);
    assert_eq!(c.conn.restore_settings("bob", restored.clone()), 0);
    assert_eq!(c.conn.restore_settings("alice", restored), 1);
    let settings = &c.conn.session().unwrap().settings;
    assert_eq!(settings["room"], "7", "the session's own key wins");
    assert_eq!(settings["level"], "3");
    assert!(c.conn.set_setting("k", "v"));
    assert!(c.conn.remove_setting("k"));
    assert_eq!(
        store_ops(&mut c),
        vec![
            (StoreKind::Storage, alice.clone()),
            (StoreKind::Storage, alice.clone())
        ]
    );
    // Binding alice again asks nothing; binding bob ends alice first.
    assert!(c.conn.bind(c.now, "alice"));
    assert_eq!(store_ops(&mut c), vec![]);
    assert!(c.conn.bind(c.now, "bob"));
    let bob = Some("bob".to_owned());
    assert_eq!(
        store_ops(&mut c),
        vec![
            (StoreKind::Disconnect, alice),
            (StoreKind::Bind, bob.clone())
        ]
    );
    assert!(c.conn.logout());
    assert_eq!(store_ops(&mut c), vec![(StoreKind::Delete, bob)]);
    assert_eq!(c.conn.session().unwrap().user_id, None);
    assert!(c.conn.unbind(), "unbinding an unbound session is fine");
    assert_eq!(store_ops(&mut c), vec![]);
}

#[test]
fn push_settings_and_bind_show_in_later_calls() {
    let mut c = Client::new(AgentConfig::default());
    assert_eq!(
        c.conn.push(Topic::from_static("t"), Bytes::new()),
        Err(PushError::NotOpen)
    );
    assert!(!c.conn.bind(c.now, "alice"));
    assert!(!c.conn.set_setting("k", "v"));
    let session = c.handshake();
    assert!(session.settings.is_empty());
    assert_eq!(session.user_id, None);

    c.conn
        .push(Topic::from_static("room/7"), Bytes::from_static(b"hi"))
        .unwrap();
    c.pump();
    assert_eq!(
        c.take_out(),
        vec![Packet::Push(Push::new(
            Topic::from_static("room/7"),
            Bytes::from_static(b"hi")
        ))]
    );

    assert!(c.conn.set_setting("room", "7"));
    c.send(&[req(1, "m/f", b"")]);
    let first = c.one_call();
    assert_eq!(
        first.session.settings,
        BTreeMap::from([("room".to_owned(), "7".to_owned())])
    );
    assert_eq!(first.session.user_id, None);
    c.result(&first, CallResult::Ok(Bytes::new()));

    assert!(c.conn.bind(c.now, "alice"));
    c.pump();
    let hb = c.take_actions();
    assert!(
        matches!(&hb[..], [Action::Store(b), Action::StorageHeartbeat(s)]
            if b.kind == StoreKind::Bind && s.user_id.as_deref() == Some("alice"))
    );
    c.send(&[notify("m/n", b"")]);
    let second = c.one_call();
    assert_eq!(second.session.user_id.as_deref(), Some("alice"));
    assert_eq!(
        second.session.settings.get("room").map(String::as_str),
        Some("7")
    );
    c.result(&second, CallResult::Ok(Bytes::new()));

    assert!(c.conn.remove_setting("room"));
    assert!(c.conn.unbind());
    c.pump();
    let kinds: Vec<_> = c
        .take_actions()
        .into_iter()
        .map(|a| match a {
            Action::Store(op) => op.kind,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(kinds, vec![StoreKind::Storage, StoreKind::Disconnect]);
    c.send(&[req(2, "m/f", b"")]);
    let third = c.one_call();
    assert!(third.session.settings.is_empty());
    assert_eq!(third.session.user_id, None);
    assert_eq!(third.session.session_id, SID);

    // Snapshots already handed out do not change.
    assert_eq!(
        first.session.settings.get("room").map(String::as_str),
        Some("7")
    );
    assert_eq!(first.session.user_id, None);
    assert_eq!(second.session.user_id.as_deref(), Some("alice"));
    assert!(session.settings.is_empty());
    assert_eq!(c.conn.session().unwrap().user_id, None);

    c.result(&third, CallResult::Ok(Bytes::new()));
    c.conn.kick(c.now, "bye");
    c.pump();
    assert!(!c.conn.set_setting("k", "v"));
    assert!(!c.conn.unbind());
    assert_eq!(
        c.conn.push(Topic::from_static("t"), Bytes::new()),
        Err(PushError::NotOpen)
    );
    // The Disconnect carries the last session.
    match c.log.last() {
        Some((_, Action::Disconnect(s, CloseReason::Kicked))) => {
            assert_eq!(s.user_id, None);
            assert!(s.settings.is_empty());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn push_too_large_is_refused_and_the_connection_stays_open() {
    let (mut c, _) = Client::open(AgentConfig {
        max_frame_length: 100,
        ..Default::default()
    });
    let r = c
        .conn
        .push(Topic::from_static("t"), Bytes::from(vec![0u8; 200]));
    assert!(matches!(r, Err(PushError::TooLarge(_))), "{r:?}");
    c.pump();
    assert!(c.take_out().is_empty());
    assert!(c.conn.is_open());
    assert_eq!(c.conn.counters().sent(), c.decoded_total);
}
