//! An idle connection holds no buffers: after a handshake, PING/PONG or a request, once
//! everything is written, the state machine keeps no capacity and no reference to the bytes it
//! was fed.

use bytes::{Bytes, BytesMut};
use gatekit_agent::{Action, AgentConfig, CallResult, ConnInfo, Connection};
use gatekit_codec::{Handshake, MessageId, NativeCodec, Packet, Request, Route, PROTOCOL_VERSION};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn encode(p: &Packet) -> BytesMut {
    let mut out = BytesMut::new();
    NativeCodec::default().encode(p, &mut out).unwrap();
    out
}

/// Feeds `bytes` as one read, in a buffer of exactly their size as the driver does, and returns a
/// probe sharing the read's memory: it is unique again once the connection let go of that memory.
fn feed(conn: &mut Connection, now: Instant, bytes: BytesMut) -> Bytes {
    let mut chunk = BytesMut::from(&bytes[..]);
    assert_eq!(chunk.capacity(), chunk.len());
    let probe = chunk.split_to(0).freeze();
    conn.handle_input(now, chunk);
    probe
}

/// Writes everything the connection has to send; returns the packets.
fn flush(conn: &mut Connection) -> Vec<Packet> {
    let mut codec = NativeCodec::default();
    let mut packets = Vec::new();
    while let Some(out) = conn.poll_transmit() {
        conn.handle_written(out.len());
        let mut buf = BytesMut::from(&out[..]);
        while let Some(p) = codec.decode(&mut buf).unwrap() {
            packets.push(p);
        }
    }
    packets
}

fn open(now: Instant) -> Connection {
    let info = ConnInfo {
        session_id: "s-1".into(),
        network: "tcp".into(),
        peer: "127.0.0.1:9".into(),
    };
    let mut conn = Connection::new(Arc::new(AgentConfig::default()), info, now);
    let hs = Packet::Handshake(Handshake {
        version: PROTOCOL_VERSION,
        heartbeat_secs: 0,
        token: Bytes::from_static(b"token"),
    });
    let probe = feed(&mut conn, now, encode(&hs));
    assert!(matches!(conn.poll_action(), Some(Action::Connect(_))));
    assert!(conn.poll_action().is_none());
    assert!(matches!(flush(&mut conn)[..], [Packet::Welcome(_)]));
    assert!(
        probe.is_unique(),
        "the handshake's bytes are still referenced"
    );
    conn
}

#[test]
fn nothing_is_held_after_the_handshake() {
    let conn = open(Instant::now());
    assert!(conn.is_open());
    assert_eq!(conn.held_capacity(), 0);
}

#[test]
fn nothing_is_held_after_ping_pong() {
    let t = Instant::now();
    let mut conn = open(t);
    for i in 1..=3 {
        let now = t + Duration::from_secs(30 * i);
        let probe = feed(&mut conn, now, encode(&Packet::Ping));
        assert_eq!(flush(&mut conn), [Packet::Pong]);
        assert!(probe.is_unique(), "the PING's bytes are still referenced");
        assert_eq!(conn.held_capacity(), 0, "after PING/PONG {i}");
    }
    assert_eq!(conn.buffered_bytes(), 0);
}

#[test]
fn nothing_is_held_after_a_request_and_its_response() {
    let t = Instant::now();
    let mut conn = open(t);
    let req = Packet::Request(Request::new(
        MessageId::new(1).unwrap(),
        Route::try_from("echo/say").unwrap(),
        Bytes::from_static(b"hello"),
    ));
    // Half a frame, then the rest: a partial frame is kept, and only until it is complete.
    let mut bytes = encode(&req);
    let rest = BytesMut::from(&bytes[3..]); // its own memory, like a second read
    bytes.truncate(3);
    let first = feed(&mut conn, t, bytes);
    assert!(conn.held_capacity() > 0);
    let second = feed(&mut conn, t, rest);
    let Some(Action::Call(call)) = conn.poll_action() else {
        panic!("expected a call");
    };
    assert!(conn.poll_action().is_none());
    conn.handle_call_result(t, call.id, CallResult::Ok(call.body.clone()));
    drop(call);
    match &flush(&mut conn)[..] {
        [Packet::Response(r)] => assert_eq!(&r.body[..], b"hello"),
        other => panic!("expected a response, got {other:?}"),
    }
    assert!(first.is_unique(), "the first read is still referenced");
    assert!(second.is_unique(), "the second read is still referenced");
    assert_eq!(conn.held_capacity(), 0);
    assert_eq!(conn.in_flight(), 0);
}
