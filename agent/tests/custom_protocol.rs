//! A user's own protocol (`agent/examples/leaf_json`: Leaf-style 2-byte length + JSON) on the
//! real gate through `ProtocolAgent`: handshake, requests answered in order with their statuses,
//! notifies, pings, pushes, kicks, its own idle rule, its own errors — and the core's guarantees
//! (exactly one Connect and Disconnect with the right reason) without a line of core code.

mod common;
#[allow(dead_code)]
#[path = "../examples/leaf_json/protocol.rs"]
mod protocol;

use bytes::{Bytes, BytesMut};
use common::RecLearner;
use gatekit_agent::{
    AgentConfig, AgentFactory, BackendError, Backends, CloseReason, Gate, ProtocolAgent, Services,
};
use gatekit_codec::Topic;
use protocol::{write_frame, ClientMessage, GateMessage, LeafJson};
use serde_json::value::RawValue;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

struct Setup {
    gate: Gate,
    learner: Arc<RecLearner>,
    factory: Arc<dyn AgentFactory>,
}

fn setup(config: AgentConfig) -> Setup {
    let learner = Arc::new(RecLearner::default());
    let echo = |_s: Arc<gatekit_agent::Session>, func: String, body: Bytes| async move {
        match func.as_str() {
            "say" => Ok(body),
            "fail" => Err(BackendError::Failed(Bytes::from_static(b"no"))),
            "slow" => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok(body)
            }
            _ => Err(BackendError::NotFound),
        }
    };
    let gate = Gate::builder()
        .config(config)
        .services(Services {
            backends: Backends::new().with("echo", echo),
            learner: learner.clone(),
            ..Services::default()
        })
        .build();
    Setup {
        gate,
        learner,
        factory: Arc::new(ProtocolAgent::new(LeafJson::new)),
    }
}

impl Setup {
    fn connect(&self) -> DuplexStream {
        let (client, server) = tokio::io::duplex(64 * 1024);
        self.gate
            .accept_with(Box::new(server), "mem", "peer".into(), &self.factory);
        client
    }
}

async fn send(io: &mut DuplexStream, msg: &ClientMessage) {
    let mut out = BytesMut::new();
    write_frame(msg, &mut out).unwrap();
    io.write_all(&out).await.unwrap();
}

async fn recv(io: &mut DuplexStream) -> Option<GateMessage> {
    let mut len = [0u8; 2];
    io.read_exact(&mut len).await.ok()?;
    let mut frame = vec![0u8; u16::from_be_bytes(len) as usize];
    io.read_exact(&mut frame).await.ok()?;
    Some(serde_json::from_slice(&frame).expect("the gate sends valid messages"))
}

fn json(s: &str) -> Box<RawValue> {
    RawValue::from_string(s.to_owned()).unwrap()
}

async fn hello(io: &mut DuplexStream, heartbeat: Option<u16>) -> (String, u64) {
    send(
        io,
        &ClientMessage::Hello {
            token: "t".into(),
            heartbeat,
        },
    )
    .await;
    match recv(io).await {
        Some(GateMessage::Welcome { session, heartbeat }) => (session, heartbeat),
        other => panic!("expected welcome, got {other:?}"),
    }
}

fn request(id: u32, route: &str, body: &str) -> ClientMessage {
    ClientMessage::Request {
        id,
        route: route.into(),
        body: json(body),
    }
}

#[tokio::test(start_paused = true)]
async fn a_session_on_a_custom_protocol() {
    let s = setup(AgentConfig::default());
    let mut io = s.connect();
    let (session, heartbeat) = hello(&mut io, Some(10)).await;
    assert_eq!(
        heartbeat, 10,
        "the client asked for less than the gate's 30 s"
    );
    assert_eq!(session.len(), 32);
    // Requests pipelined: answered in order, each with its status and body.
    for msg in [
        request(1, "echo/say", r#"{"a":1}"#),
        request(2, "echo/fail", "null"),
        request(3, "echo/nope", "null"),
        request(4, "nobody/say", "null"),
    ] {
        send(&mut io, &msg).await;
    }
    let mut answers = Vec::new();
    for _ in 0..4 {
        match recv(&mut io).await {
            Some(GateMessage::Response { id, status, body }) => {
                answers.push((id, status, body.get().to_owned()))
            }
            other => panic!("expected a response, got {other:?}"),
        }
    }
    assert_eq!(
        answers,
        [
            (1, "ok".into(), r#"{"a":1}"#.into()),
            (2, "failed".into(), r#""no""#.into()),
            (3, "not_found".into(), r#""""#.into()),
            (4, "not_found".into(), r#""""#.into()),
        ]
    );
    // A notify gets nothing; a ping gets a pong; a push from the gate arrives.
    send(
        &mut io,
        &ClientMessage::Notify {
            route: "echo/say".into(),
            body: json("1"),
        },
    )
    .await;
    send(&mut io, &ClientMessage::Ping {}).await;
    assert!(matches!(recv(&mut io).await, Some(GateMessage::Pong {})));
    s.gate
        .push(&session, Topic::from_static("room/7"), r#"[1,2]"#)
        .unwrap();
    match recv(&mut io).await {
        Some(GateMessage::Push { topic, body }) => {
            assert_eq!((topic.as_str(), body.get()), ("room/7", "[1,2]"))
        }
        other => panic!("expected the push, got {other:?}"),
    }
    // A graceful goodbye: the gate says goodbye back, then closes; one Connect, one Disconnect
    // `client_closed`.
    send(&mut io, &ClientMessage::Bye {}).await;
    match recv(&mut io).await {
        Some(GateMessage::Close { code, reason }) => {
            assert_eq!((code.as_str(), reason.as_str()), ("normal", "bye"))
        }
        other => panic!("expected the gate's goodbye, got {other:?}"),
    }
    assert!(
        recv(&mut io).await.is_none(),
        "the gate closes after its goodbye"
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        s.learner.lifecycles().into_values().collect::<Vec<_>>(),
        [CloseReason::ClientClosed]
    );
    assert_eq!(s.gate.session_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn its_own_idle_rule_and_the_gates_kick() {
    let s = setup(AgentConfig::default());
    // Three missed 5 s heartbeats close the connection (the protocol's rule, not the 90 s default).
    let mut idle = s.connect();
    hello(&mut idle, Some(5)).await;
    let t0 = tokio::time::Instant::now();
    match recv(&mut idle).await {
        Some(GateMessage::Close { code, reason }) => {
            assert_eq!(
                (code.as_str(), reason.as_str()),
                ("idle timeout", "idle timeout")
            )
        }
        other => panic!("expected a close, got {other:?}"),
    }
    assert_eq!(t0.elapsed(), Duration::from_secs(15));
    // A kick carries its reason in the protocol's own close message.
    let mut kicked = s.connect();
    let (session, _) = hello(&mut kicked, None).await;
    s.gate.kick(&session, "logged in elsewhere").unwrap();
    match recv(&mut kicked).await {
        Some(GateMessage::Close { code, reason }) => {
            assert_eq!(
                (code.as_str(), reason.as_str()),
                ("kicked", "logged in elsewhere")
            )
        }
        other => panic!("expected a close, got {other:?}"),
    }
    assert!(recv(&mut kicked).await.is_none());
    tokio::time::sleep(Duration::from_millis(10)).await;
    let reasons: Vec<CloseReason> = s.learner.lifecycles().into_values().collect();
    assert_eq!(reasons.len(), 2);
    assert!(reasons.contains(&CloseReason::IdleTimeout), "{reasons:?}");
    assert!(reasons.contains(&CloseReason::Kicked), "{reasons:?}");
}

#[tokio::test(start_paused = true)]
async fn bad_input_closes_with_the_protocols_own_error() {
    let s = setup(AgentConfig::default());
    // Not JSON of a message.
    let mut bad = s.connect();
    hello(&mut bad, None).await;
    let mut out = BytesMut::new();
    write_frame(&serde_json::json!({"shout": 1}), &mut out).unwrap();
    bad.write_all(&out).await.unwrap();
    match recv(&mut bad).await {
        Some(GateMessage::Close { code, reason }) => {
            assert_eq!(code, "protocol error");
            assert!(
                reason.starts_with("not a message: unknown variant `shout`"),
                "{reason}"
            );
        }
        other => panic!("expected a close, got {other:?}"),
    }
    // A route that is not module/func.
    let mut route = s.connect();
    hello(&mut route, None).await;
    send(&mut route, &request(1, "noslash", "1")).await;
    match recv(&mut route).await {
        Some(GateMessage::Close { code, reason }) => {
            assert_eq!(code, "protocol error");
            assert!(reason.contains("noslash"), "{reason}");
        }
        other => panic!("expected a close, got {other:?}"),
    }
    // A request before the hello: no session, no learner event.
    let mut early = s.connect();
    send(&mut early, &request(1, "echo/say", "1")).await;
    match recv(&mut early).await {
        Some(GateMessage::Close { code, reason }) => {
            assert_eq!(code, "protocol error");
            assert_eq!(reason, "expected handshake, got request");
        }
        other => panic!("expected a close, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        s.learner.lifecycles().into_values().collect::<Vec<_>>(),
        [CloseReason::ProtocolError, CloseReason::ProtocolError]
    );
}

#[tokio::test(start_paused = true)]
async fn one_call_at_a_time_and_back_pressure_hold_for_it_too() {
    let s = setup(AgentConfig::default());
    let mut io = s.connect();
    hello(&mut io, None).await;
    // A slow request, then a fast one: with one call in flight the fast one waits its turn.
    send(&mut io, &request(1, "echo/slow", "1")).await;
    send(&mut io, &request(2, "echo/say", "2")).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        if let Some(GateMessage::Response { id, .. }) = recv(&mut io).await {
            ids.push(id);
        }
    }
    assert_eq!(ids, [1, 2]);
}
