//! Exact-outcome tests of the `Connection` state machine written from a mutation-testing run of
//! `agent/src/connection.rs` (docs/MUTATION.md): each one pins down a behaviour that no other
//! test checked precisely enough (names, exact buffer numbers, boundaries of timers and limits,
//! what happens while closing). Everything runs on a virtual clock: a base `Instant` plus
//! `Duration`s; nothing sleeps.

use bytes::{Bytes, BytesMut};
use gatekit_agent::{
    Action, AgentConfig, CallResult, CloseReason, ConnInfo, Connection, Counters, PushError,
    Session,
};
use gatekit_codec::{
    Close, CloseCode, Handshake, MessageId, NativeCodec, Notify, Oversize, Packet, Push, Request,
    Response, Route, Status, Text, Topic, Welcome,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SID: &str = "sess-m";

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

fn info() -> ConnInfo {
    ConnInfo {
        session_id: SID.into(),
        network: "tcp".into(),
        peer: "10.1.2.3:4567".into(),
    }
}

fn hs(heartbeat_secs: u16) -> Packet {
    Packet::Handshake(Handshake {
        version: 1,
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

fn notify(route: &str) -> Packet {
    Packet::Notify(Notify::new(Route::try_from(route).unwrap(), Bytes::new()))
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

fn welcome(heartbeat_secs: u16, max_frame_length: u32) -> Packet {
    Packet::Welcome(Welcome {
        version: 1,
        heartbeat_secs,
        max_frame_length,
        session_id: Text::from(SID),
    })
}

/// A client driving one `Connection` by hand: nothing is written or polled unless a test says so.
struct Peer {
    conn: Connection,
    t0: Instant,
    decoder: NativeCodec,
}

impl Peer {
    fn new(config: AgentConfig) -> Self {
        let t0 = Instant::now();
        let max = config.max_frame_length.clamp(1, 16 * 1024 * 1024);
        Peer {
            conn: Connection::new(Arc::new(config), info(), t0),
            t0,
            decoder: NativeCodec::new(max, Oversize::Fail).unwrap(),
        }
    }

    /// A connection whose handshake (at `t0`) is done: WELCOME written, Connect taken.
    fn open(config: AgentConfig) -> (Self, Arc<Session>) {
        let mut p = Peer::new(config);
        p.send(Duration::ZERO, &[hs(0)]);
        let out = p.flush();
        assert!(matches!(out[..], [Packet::Welcome(_)]), "{out:?}");
        let session = match &p.actions()[..] {
            [Action::Connect(s)] => s.clone(),
            other => panic!("expected one Connect, got {other:?}"),
        };
        (p, session)
    }

    fn at(&self, d: Duration) -> Instant {
        self.t0 + d
    }

    fn feed(&mut self, d: Duration, bytes: &[u8]) {
        self.conn.handle_input(self.t0 + d, BytesMut::from(bytes));
    }

    fn send(&mut self, d: Duration, pkts: &[Packet]) {
        self.feed(d, &encode(pkts));
    }

    fn tick(&mut self, d: Duration) {
        self.conn.handle_timeout(self.t0 + d);
    }

    fn decode(&mut self, bytes: &[u8]) -> Vec<Packet> {
        let mut buf = BytesMut::from(bytes);
        let mut pkts = vec![];
        while let Some(p) = self.decoder.decode(&mut buf).expect("agent output decodes") {
            pkts.push(p);
        }
        assert!(buf.is_empty(), "partial packet in the output");
        pkts
    }

    /// Takes the output without reporting it written.
    fn transmit(&mut self) -> (usize, Vec<Packet>) {
        let mut n = 0;
        let mut pkts = vec![];
        while let Some(b) = self.conn.poll_transmit() {
            assert!(!b.is_empty(), "poll_transmit handed out no bytes");
            n += b.len();
            pkts.extend(self.decode(&b));
        }
        (n, pkts)
    }

    /// Takes the output and reports all of it written.
    fn flush(&mut self) -> Vec<Packet> {
        let (n, pkts) = self.transmit();
        if n > 0 {
            self.conn.handle_written(n);
        }
        pkts
    }

    fn actions(&mut self) -> Vec<Action> {
        std::iter::from_fn(|| self.conn.poll_action()).collect()
    }

    fn disconnects(&mut self) -> Vec<CloseReason> {
        self.actions()
            .into_iter()
            .filter_map(|a| match a {
                Action::Disconnect(_, r) => Some(r),
                _ => None,
            })
            .collect()
    }
}

fn len_of(p: &Packet) -> usize {
    encode(std::slice::from_ref(p)).len()
}

// ----- names and formatting -----

#[test]
fn close_reason_names_are_snake_case_and_display_as_such() {
    let expected = [
        (CloseReason::ClientClosed, "client_closed"),
        (CloseReason::Eof, "eof"),
        (CloseReason::Reset, "reset"),
        (CloseReason::IdleTimeout, "idle_timeout"),
        (CloseReason::HandshakeTimeout, "handshake_timeout"),
        (CloseReason::Refused, "refused"),
        (CloseReason::ProtocolError, "protocol_error"),
        (CloseReason::Kicked, "kicked"),
        (CloseReason::SlowConsumer, "slow_consumer"),
        (CloseReason::Shutdown, "shutdown"),
        (CloseReason::Internal, "internal"),
    ];
    assert_eq!(CloseReason::ALL.len(), expected.len());
    for (reason, (listed, name)) in CloseReason::ALL.into_iter().zip(expected) {
        assert_eq!(reason, listed);
        assert_eq!(reason.name(), name);
        assert_eq!(reason.to_string(), name);
    }
}

#[test]
fn connection_debug_shows_phase_session_calls_and_buffer_sizes() {
    let mut p = Peer::new(AgentConfig::default());
    let hello = encode(&[hs(0)]);
    p.feed(Duration::ZERO, &hello[..3]);
    let text = format!("{:?}", p.conn);
    assert!(
        text.starts_with("Connection { protocol: \"native\", phase: Handshake { deadline: "),
        "{text}"
    );
    assert!(
        text.ends_with("session: None, in_flight: 0, input: 3, output: 0 }"),
        "{text}"
    );
    p.feed(Duration::ZERO, &hello[3..]);
    let welcome_len = len_of(&welcome(30, 65_535));
    let text = format!("{:?}", p.conn);
    assert!(
        text.starts_with("Connection { protocol: \"native\", phase: Open, session: Some("),
        "{text}"
    );
    assert!(text.contains(SID), "{text}");
    assert!(
        text.ends_with(&format!(
            "in_flight: 0, input: 0, output: {} }}",
            welcome_len + 16
        )),
        "{text}"
    );
}

// ----- refusal -----

#[test]
fn refuse_sends_a_close_named_after_its_code_then_ends_without_lifecycle() {
    let mut p = Peer::new(AgentConfig::default());
    let now = p.at(ms(250));
    p.conn.refuse(now, CloseCode::ServerFull);
    assert!(p.conn.is_closing());
    assert!(!p.conn.is_open());
    assert!(
        !p.conn.is_finished(),
        "finished before the CLOSE is written"
    );
    assert!(!p.conn.wants_read());
    assert_eq!(
        p.conn.push(Topic::from_static("t"), Bytes::new()),
        Err(PushError::NotOpen)
    );
    assert_eq!(p.conn.close_reason(), Some(CloseReason::Refused));
    assert_eq!(p.conn.closing_at(), Some(now));
    assert!(p.conn.counters().is_closed());
    assert_eq!(p.conn.poll_timeout(), Some(p.at(ms(2250))));
    assert_eq!(
        p.flush(),
        vec![close_pkt(CloseCode::ServerFull, "server full")]
    );
    assert!(p.conn.is_finished());
    assert_eq!(p.conn.counters().sent(), 1);
    assert_eq!(p.conn.counters().received(), 0);
    assert!(
        p.actions().is_empty(),
        "no session: no Connect, no Disconnect"
    );
    assert!(p.conn.session().is_none());
}

// ----- buffers -----

#[test]
fn max_buffered_is_the_most_input_plus_output_ever_held() {
    let counters = Arc::new(Counters::default());
    let t0 = Instant::now();
    let mut conn = Connection::with_counters(
        Arc::new(AgentConfig::default()),
        info(),
        t0,
        counters.clone(),
    );
    assert_eq!(conn.max_buffered_bytes(), 0);
    assert_eq!(counters.max_buffered(), 0);
    let hello = encode(&[hs(0)]);
    conn.handle_input(t0, BytesMut::from(&hello[..3]));
    assert_eq!(conn.buffered_bytes(), 3);
    assert_eq!(conn.max_buffered_bytes(), 3);
    assert_eq!(counters.max_buffered(), 3);
    conn.handle_input(t0, BytesMut::from(&hello[3..]));
    // The handshake is decoded (input 0), the WELCOME queued with its bookkeeping.
    let queued = len_of(&welcome(30, 65_535)) + 16;
    assert!(queued > hello.len());
    assert_eq!(conn.buffered_bytes(), queued);
    assert_eq!(conn.max_buffered_bytes(), queued);
    assert_eq!(counters.max_buffered(), queued);
    // Written: nothing buffered, the maximum stays.
    let out = conn.poll_transmit().unwrap();
    conn.handle_written(out.len());
    assert_eq!(conn.buffered_bytes(), 0);
    assert_eq!(conn.max_buffered_bytes(), queued);
    assert_eq!(counters.max_buffered(), queued);
    // A smaller peak does not lower it; a larger one raises it.
    conn.handle_input(t0, BytesMut::from(&encode(&[Packet::Ping])[..1]));
    assert_eq!(conn.buffered_bytes(), 1);
    assert_eq!(counters.max_buffered(), queued);
    let big = Bytes::from(vec![7u8; 1000]);
    let push = Packet::Push(Push::new(Topic::from_static("t"), big.clone()));
    conn.push(Topic::from_static("t"), big).unwrap();
    let peak = 1 + len_of(&push) + 16;
    assert_eq!(conn.buffered_bytes(), peak);
    assert_eq!(conn.max_buffered_bytes(), peak);
    assert_eq!(counters.max_buffered(), peak);
}

#[test]
fn input_received_while_closing_is_not_buffered() {
    let (mut p, _) = Peer::open(AgentConfig::default());
    p.conn.kick(p.at(secs(1)), "bye");
    let close_len = len_of(&close_pkt(CloseCode::Kicked, "bye"));
    assert_eq!(p.conn.buffered_bytes(), close_len + 16);
    let max = p.conn.max_buffered_bytes();
    p.send(secs(1), &[Packet::Ping, req(1, "a/b", b"ignored")]);
    assert_eq!(p.conn.buffered_bytes(), close_len + 16);
    assert_eq!(p.conn.max_buffered_bytes(), max);
    assert_eq!(p.conn.counters().received(), 1, "only the handshake");
    assert!(p.actions().is_empty());
    assert_eq!(p.flush(), vec![close_pkt(CloseCode::Kicked, "bye")]);
    assert_eq!(p.disconnects(), vec![CloseReason::Kicked]);
}

#[test]
fn bytes_reported_written_after_an_abrupt_end_change_nothing() {
    let (mut p, _) = Peer::open(AgentConfig::default());
    p.send(secs(1), &[Packet::Ping, Packet::Ping]);
    let (n, pkts) = p.transmit();
    assert_eq!(pkts, vec![Packet::Pong, Packet::Pong]);
    assert_eq!(p.conn.counters().sent(), 1, "only the WELCOME");
    // The transport fails while the driver writes the chunk; it then reports what it wrote.
    p.conn.handle_io_error(p.at(secs(1)));
    p.conn.handle_written(n);
    assert_eq!(
        p.conn.counters().sent(),
        1,
        "never-written PONGs are not sent"
    );
    assert_eq!(p.conn.buffered_bytes(), 0);
    assert_eq!(p.disconnects(), vec![CloseReason::Reset]);
    assert!(p.conn.is_finished());
}

#[test]
fn written_bytes_beyond_the_queue_are_clamped() {
    let (mut p, _) = Peer::open(AgentConfig::default());
    p.send(secs(1), &[Packet::Ping]);
    let (n, _) = p.transmit();
    p.conn.handle_written(n + 1000);
    assert_eq!(p.conn.counters().sent(), 2);
    assert_eq!(p.conn.buffered_bytes(), 0);
    // Later packets are still counted only once written.
    p.send(secs(2), &[Packet::Ping]);
    assert_eq!(p.conn.buffered_bytes(), len_of(&Packet::Pong) + 16);
    let (n, _) = p.transmit();
    assert_eq!(p.conn.counters().sent(), 2);
    p.conn.handle_written(n);
    assert_eq!(p.conn.counters().sent(), 3);
    assert_eq!(p.conn.buffered_bytes(), 0);
}

// ----- heartbeats -----

/// A read that ends in CLOSE is still served to its end (the close handshake): its PING is
/// answered and its activity gets the heartbeat it is due, then the gate says goodbye and the
/// Disconnect comes last; no heartbeat after it.
#[test]
fn a_read_ending_in_close_is_served_heartbeat_included_then_disconnects() {
    let (mut p, _) = Peer::open(AgentConfig::default());
    assert!(p.conn.bind(p.at(Duration::ZERO), "user-1"));
    match &p.actions()[..] {
        [Action::Store(bind), Action::StorageHeartbeat(s)] => {
            assert_eq!(bind.kind, gatekit_agent::StoreKind::Bind);
            assert_eq!(s.user_id.as_deref(), Some("user-1"))
        }
        other => panic!("{other:?}"),
    }
    // A heartbeat is due (61 s > 60 s) for the PING read with the CLOSE.
    p.send(
        secs(61),
        &[Packet::Ping, close_pkt(CloseCode::Normal, "bye")],
    );
    match &p.actions()[..] {
        [Action::StorageHeartbeat(s)] => assert_eq!(s.session_id, SID),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        p.flush(),
        [Packet::Pong, close_pkt(CloseCode::Normal, "bye")]
    );
    match &p.actions()[..] {
        [Action::Disconnect(s, CloseReason::ClientClosed)] => assert_eq!(s.session_id, SID),
        other => panic!("{other:?}"),
    }
    assert!(p.conn.is_finished());
    p.tick(secs(200));
    assert!(p.actions().is_empty(), "nothing after the Disconnect");
}

// ----- CLOSE reasons -----

fn kicked_reason(config: AgentConfig, reason: &str) -> String {
    let (mut p, _) = Peer::open(config);
    p.conn.kick(p.at(secs(1)), reason);
    match &p.flush()[..] {
        [Packet::Close(c)] => {
            assert_eq!(c.code, CloseCode::Kicked);
            assert_eq!(p.disconnects(), vec![CloseReason::Kicked]);
            c.reason.as_str().to_owned()
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn close_reason_text_is_cut_to_255_bytes() {
    let long = "k".repeat(300);
    assert_eq!(
        kicked_reason(AgentConfig::default(), &long),
        "k".repeat(255)
    );
    let exact = "e".repeat(255);
    assert_eq!(kicked_reason(AgentConfig::default(), &exact), exact);
}

#[test]
fn close_reason_text_is_cut_on_a_character_boundary() {
    // The cut runs on its own thread with a deadline: a search for the boundary that never ends
    // fails here instead of hanging the test binary.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // 'é' is two bytes: 255 falls inside the 128th one, so the cut is at 254.
        let accents = kicked_reason(AgentConfig::default(), &"é".repeat(200));
        // '€' is three bytes: 255 is a boundary (85 of them).
        let euros = kicked_reason(AgentConfig::default(), &"€".repeat(100));
        let _ = tx.send((accents, euros));
    });
    let (accents, euros) = match rx.recv_timeout(secs(10)) {
        Ok(cuts) => cuts,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("cutting a reason never ends"),
        Err(e) => panic!("the cutting thread failed (its panic is above): {e}"),
    };
    assert_eq!(accents, "é".repeat(127));
    assert_eq!(euros, "€".repeat(85));
}

#[test]
fn close_reason_text_fits_a_small_frame_limit() {
    let config = AgentConfig {
        max_frame_length: 40,
        ..Default::default()
    };
    // A CLOSE frame is kind and code (2 bytes) plus the reason: 38 bytes of reason fit.
    assert_eq!(kicked_reason(config, &"r".repeat(100)), "r".repeat(38));
}

// ----- reading -----

#[test]
fn reading_goes_on_up_to_a_frame_plus_its_prefix() {
    let config = AgentConfig {
        max_frame_length: 100,
        ..Default::default()
    };
    let (mut p, _) = Peer::open(config);
    // A REQUEST of exactly 100 bytes after its 1-byte length prefix.
    let mut body_len = 0;
    let frame = loop {
        let f = encode(&[req(1, "a/b", &vec![b'x'; body_len])]);
        if f.len() == 101 {
            break f;
        }
        assert!(f.len() < 101);
        body_len += 1;
    };
    p.feed(secs(1), &frame[..100]);
    assert_eq!(p.conn.buffered_bytes(), 100);
    assert!(p.conn.wants_read(), "a partial frame under the limit");
    p.feed(secs(1), &frame[100..]);
    assert_eq!(p.conn.buffered_bytes(), 0);
    assert_eq!(p.conn.in_flight(), 1);
    assert!(!p.conn.wants_read(), "the one call allowed is in flight");
}

#[test]
fn after_eof_nothing_more_is_read_while_calls_finish() {
    let (mut p, _) = Peer::open(AgentConfig {
        max_in_flight: 2,
        ..Default::default()
    });
    p.send(secs(1), &[req(1, "a/b", b"")]);
    let call = match &p.actions()[..] {
        [Action::Call(c)] => c.clone(),
        other => panic!("{other:?}"),
    };
    assert!(p.conn.wants_read(), "one of two slots is free");
    p.conn.handle_eof(p.at(secs(1)));
    assert!(!p.conn.wants_read(), "the stream ended");
    assert!(p.conn.is_open(), "the call in flight is still answered");
    p.conn.handle_call_result(
        p.at(secs(2)),
        call.id,
        CallResult::Ok(Bytes::from_static(b"r")),
    );
    assert_eq!(p.flush(), vec![resp(1, Status::Ok, b"r")]);
    assert_eq!(p.disconnects(), vec![CloseReason::Eof]);
    assert!(p.conn.is_finished());
}

// ----- write queue -----

#[test]
fn write_queue_limit_is_inclusive() {
    let queued = len_of(&welcome(30, 65_535)) + 16;
    let mut p = Peer::new(AgentConfig {
        max_write_queue: queued,
        ..Default::default()
    });
    p.send(Duration::ZERO, &[hs(0)]);
    assert!(p.conn.is_open(), "exactly at the limit");
    assert_eq!(p.conn.buffered_bytes(), queued);
    assert_eq!(p.flush(), vec![welcome(30, 65_535)]);

    let mut p = Peer::new(AgentConfig {
        max_write_queue: queued - 1,
        ..Default::default()
    });
    p.send(Duration::ZERO, &[hs(0)]);
    assert_eq!(p.conn.close_reason(), Some(CloseReason::SlowConsumer));
    assert_eq!(p.conn.poll_timeout(), None);
    assert!(
        p.flush().is_empty(),
        "nothing queued behind what is ignored"
    );
    match &p.actions()[..] {
        [Action::Connect(_), Action::Disconnect(_, CloseReason::SlowConsumer)] => {}
        other => panic!("{other:?}"),
    }
}

// ----- held capacity -----

#[test]
fn held_capacity_counts_the_bookkeeping_of_unwritten_packets() {
    let (mut p, _) = Peer::open(AgentConfig::default());
    assert_eq!(p.conn.held_capacity(), 0);
    p.send(secs(1), &[Packet::Ping]);
    // The PONG's bytes are handed to the driver, not yet written: only its end is held.
    let (n, _) = p.transmit();
    let held = p.conn.held_capacity();
    assert!(held >= 8, "{held}");
    assert_eq!(held % 8, 0, "{held}: whole u64 entries");
    p.conn.handle_written(n);
    assert_eq!(p.conn.held_capacity(), 0);
}

#[test]
fn held_capacity_counts_unwritten_output() {
    let (mut p, _) = Peer::open(AgentConfig::default());
    let body = Bytes::from(vec![1u8; 1000]);
    let push = Packet::Push(Push::new(Topic::from_static("t"), body.clone()));
    p.conn.push(Topic::from_static("t"), body).unwrap();
    let held = p.conn.held_capacity();
    assert!(held >= len_of(&push) + 8, "{held}");
    assert_eq!(p.flush(), vec![push]);
    assert_eq!(p.conn.held_capacity(), 0);
}

#[test]
fn held_capacity_counts_pending_actions() {
    let (mut p, _) = Peer::open(AgentConfig::default());
    assert!(p.conn.bind(p.at(secs(1)), "u"));
    let size = std::mem::size_of::<Action>();
    let held = p.conn.held_capacity();
    assert!(held >= size, "{held}");
    assert_eq!(held % size, 0, "{held}: whole actions of {size} bytes");
    // The store's bind, and the first heartbeat.
    assert_eq!(p.actions().len(), 2);
    assert_eq!(p.conn.held_capacity(), 0);
}

#[test]
fn held_capacity_counts_calls_in_flight() {
    let (mut p, _) = Peer::open(AgentConfig {
        max_in_flight: 5,
        ..Default::default()
    });
    let pkts: Vec<Packet> = (0..5).map(|_| notify("a/b")).collect();
    p.send(secs(1), &pkts);
    let calls: Vec<_> = p
        .actions()
        .into_iter()
        .map(|a| match a {
            Action::Call(c) => c,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(calls.len(), 5);
    assert_eq!(p.conn.in_flight(), 5);
    // Each call in flight holds at least its id and its deadline.
    let per_call = std::mem::size_of::<u64>() + std::mem::size_of::<Instant>();
    let held = p.conn.held_capacity();
    assert!(held >= 5 * per_call, "{held}");
    for c in calls {
        p.conn
            .handle_call_result(p.at(secs(2)), c.id, CallResult::Ok(Bytes::new()));
    }
    assert_eq!(p.conn.in_flight(), 0);
    assert!(p.actions().is_empty());
    assert!(p.flush().is_empty(), "notifies are not answered");
    assert_eq!(p.conn.held_capacity(), 0);
}

// ----- closing time -----

#[test]
fn closing_at_is_when_a_lingering_close_started() {
    let (mut p, _) = Peer::open(AgentConfig::default());
    assert_eq!(p.conn.closing_at(), None);
    p.conn.kick(p.at(secs(3)), "bye");
    assert_eq!(p.conn.closing_at(), Some(p.at(secs(3))));
    assert_eq!(p.flush(), vec![close_pkt(CloseCode::Kicked, "bye")]);
    assert_eq!(p.disconnects(), vec![CloseReason::Kicked]);
    assert_eq!(p.conn.closing_at(), Some(p.at(secs(3))));

    let (mut p, _) = Peer::open(AgentConfig::default());
    p.conn.handle_io_error(p.at(secs(3)));
    assert_eq!(p.conn.closing_at(), None, "a reset does not linger");
    assert_eq!(p.disconnects(), vec![CloseReason::Reset]);
}

// ----- session updates -----

#[test]
fn session_updates_apply_only_while_open() {
    let mut p = Peer::new(AgentConfig::default());
    let t = p.at(Duration::ZERO);
    assert!(!p.conn.bind(t, "u"));
    assert!(!p.conn.unbind());
    assert!(!p.conn.set_setting("k", "v"));
    assert!(!p.conn.remove_setting("k"));
    assert!(p.conn.session().is_none());

    let (mut p, _) = Peer::open(AgentConfig::default());
    assert!(p.conn.set_setting("k", "v"));
    assert!(p.conn.set_setting("k2", "v2"));
    assert!(p.conn.remove_setting("k"));
    assert!(p.conn.bind(t, "u"));
    let s = p.conn.session().unwrap().clone();
    assert_eq!(s.user_id.as_deref(), Some("u"));
    assert_eq!(
        s.settings.iter().collect::<Vec<_>>(),
        vec![(&"k2".to_owned(), &"v2".to_owned())]
    );
    assert!(p.conn.unbind());
    assert_eq!(p.conn.session().unwrap().user_id, None);

    p.conn.kick(p.at(secs(1)), "bye");
    assert!(!p.conn.bind(t, "u"));
    assert!(!p.conn.unbind());
    assert!(!p.conn.set_setting("k", "v"));
    assert!(!p.conn.remove_setting("k2"));
    assert_eq!(p.conn.session().unwrap().settings.len(), 1);
}

// ----- timers, each at its exact deadline -----

#[test]
fn handshake_times_out_exactly_at_its_deadline() {
    let mut p = Peer::new(AgentConfig::default());
    assert_eq!(p.conn.poll_timeout(), Some(p.at(secs(10))));
    p.tick(secs(10) - ms(1));
    assert!(!p.conn.is_closing());
    assert_eq!(p.conn.poll_timeout(), Some(p.at(secs(10))));
    assert_eq!(p.transmit().0, 0);
    p.tick(secs(10));
    assert!(p.conn.is_closing());
    assert_eq!(p.conn.close_reason(), Some(CloseReason::HandshakeTimeout));
    assert_eq!(p.conn.closing_at(), Some(p.at(secs(10))));
    assert_eq!(p.conn.poll_timeout(), Some(p.at(secs(12))), "linger");
    assert_eq!(
        p.flush(),
        vec![close_pkt(CloseCode::HandshakeTimeout, "handshake timeout")]
    );
    assert!(p.conn.is_finished());
    assert!(p.actions().is_empty());
}

#[test]
fn unwritten_close_is_abandoned_exactly_at_the_linger_deadline() {
    let (mut p, _) = Peer::open(AgentConfig::default());
    p.conn.shutdown(p.at(secs(4)));
    let (_, pkts) = p.transmit();
    assert_eq!(
        pkts,
        vec![close_pkt(CloseCode::Shutdown, "gate shutting down")]
    );
    assert_eq!(p.conn.poll_timeout(), Some(p.at(secs(6))));
    p.tick(secs(6) - ms(1));
    assert!(!p.conn.is_finished());
    assert!(p.actions().is_empty());
    p.tick(secs(6));
    assert_eq!(p.disconnects(), vec![CloseReason::Shutdown]);
    assert!(p.conn.is_finished());
    assert_eq!(p.conn.poll_timeout(), None);
}

#[test]
fn backend_call_times_out_exactly_at_its_deadline() {
    let (mut p, _) = Peer::open(AgentConfig::default());
    p.send(secs(1), &[req(5, "slow/op", b"")]);
    let call = match &p.actions()[..] {
        [Action::Call(c)] => c.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(p.conn.poll_timeout(), Some(p.at(secs(11))));
    p.tick(secs(11) - ms(1));
    assert_eq!(p.conn.in_flight(), 1);
    assert!(p.flush().is_empty());
    p.tick(secs(11));
    assert_eq!(p.conn.in_flight(), 0);
    assert_eq!(p.flush(), vec![resp(5, Status::Timeout, b"")]);
    // The answer counts as activity: idle from 11 s.
    assert_eq!(p.conn.poll_timeout(), Some(p.at(secs(101))));
    p.conn
        .handle_call_result(p.at(secs(12)), call.id, CallResult::Ok(Bytes::new()));
    assert!(p.flush().is_empty(), "the late result is dropped");
    assert!(p.conn.is_open());
}

#[test]
fn idle_timeout_fires_exactly_at_the_idle_deadline() {
    let (mut p, _) = Peer::open(AgentConfig::default());
    p.send(secs(30), &[Packet::Ping]);
    assert_eq!(p.flush(), vec![Packet::Pong]);
    assert_eq!(p.conn.poll_timeout(), Some(p.at(secs(120))));
    p.tick(secs(120) - ms(1));
    assert!(p.conn.is_open());
    p.tick(secs(120));
    assert_eq!(p.conn.close_reason(), Some(CloseReason::IdleTimeout));
    assert_eq!(
        p.flush(),
        vec![close_pkt(CloseCode::IdleTimeout, "idle timeout")]
    );
    assert_eq!(p.disconnects(), vec![CloseReason::IdleTimeout]);
}

#[test]
fn storage_heartbeat_timer_is_one_interval_after_the_last_heartbeat() {
    let (mut p, _) = Peer::open(AgentConfig::default());
    assert!(p.conn.bind(p.at(Duration::ZERO), "user-1"));
    assert!(matches!(
        p.actions()[..],
        [Action::Store(_), Action::StorageHeartbeat(_)]
    ));
    // Nothing happened since that heartbeat: only the idle timer.
    assert_eq!(p.conn.poll_timeout(), Some(p.at(secs(90))));
    p.send(secs(10), &[Packet::Ping]);
    assert_eq!(p.flush(), vec![Packet::Pong]);
    assert!(p.actions().is_empty(), "not due before 60 s");
    assert_eq!(p.conn.poll_timeout(), Some(p.at(secs(60))));
    p.tick(secs(60) - ms(1));
    assert!(p.actions().is_empty());
    p.tick(secs(60));
    match &p.actions()[..] {
        [Action::StorageHeartbeat(s)] => assert_eq!(s.user_id.as_deref(), Some("user-1")),
        other => panic!("{other:?}"),
    }
    assert_eq!(p.conn.poll_timeout(), Some(p.at(secs(100))), "idle again");
}

#[test]
fn config_and_buffer_bound_are_the_ones_given() {
    let config = AgentConfig {
        max_in_flight: 3,
        max_write_queue: 1000,
        max_frame_length: 500,
        server_id: "gate-x".into(),
        ..Default::default()
    };
    let p = Peer::new(config.clone());
    assert_eq!(p.conn.config(), &config);
    assert_eq!(p.conn.buffer_bound(4096), config.buffer_bound(4096));
    // One frame and its prefix, one read, the queue, the packet crossing it, a final CLOSE.
    assert_eq!(
        p.conn.buffer_bound(4096),
        (500 + 4 + 4096) + 1000 + (500 + 4 + 16) + (255 + 2 + 4 + 16)
    );
}
