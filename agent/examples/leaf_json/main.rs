//! A user's own protocol on the gate: Leaf-style frames of JSON (see `protocol.rs`), with the
//! same back ends, learner, exactly-once Disconnect, ordering and back-pressure as the native one.
//!
//! Run with `cargo run -p gatekit-agent --example leaf_json`: it starts a gate on 127.0.0.1 with an
//! `echo` back end, connects a client, says hello, sends a request, receives a push and leaves.

mod protocol;

use bytes::BytesMut;
use gatekit_agent::{Backends, Gate, ProtocolAgent, Services};
use gatekit_codec::Topic;
use protocol::{write_frame, ClientMessage, GateMessage, LeafJson};
use serde_json::value::RawValue;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn read_message(stream: &mut tokio::net::TcpStream) -> GateMessage {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await.expect("length");
    let mut frame = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut frame).await.expect("frame");
    serde_json::from_slice(&frame).expect("a gate message")
}

async fn send(stream: &mut tokio::net::TcpStream, msg: &ClientMessage) {
    let mut out = BytesMut::new();
    write_frame(msg, &mut out).expect("small");
    stream.write_all(&out).await.expect("write");
}

#[tokio::main]
async fn main() {
    let echo =
        |_s: Arc<gatekit_agent::Session>, _f: String, body: bytes::Bytes| async move { Ok(body) };
    let gate = Gate::builder()
        .services(Services {
            backends: Backends::new().with("echo", echo),
            ..Services::default()
        })
        .factory(ProtocolAgent::new(LeafJson::new))
        .build();
    let (addr, _) = gate.listen("127.0.0.1:0").await.expect("listen");
    let mut client = tokio::net::TcpStream::connect(addr).await.expect("connect");

    send(
        &mut client,
        &ClientMessage::Hello {
            token: "secret".into(),
            heartbeat: Some(10),
        },
    )
    .await;
    let GateMessage::Welcome { session, heartbeat } = read_message(&mut client).await else {
        panic!("expected welcome")
    };
    println!("welcome: session {session}, heartbeat {heartbeat} s");

    let body = RawValue::from_string(r#"{"hello":"world"}"#.into()).expect("json");
    send(
        &mut client,
        &ClientMessage::Request {
            id: 1,
            route: "echo/say".into(),
            body,
        },
    )
    .await;
    println!("{:?}", read_message(&mut client).await);

    gate.push(&session, Topic::from_static("room/7"), r#"{"news":1}"#)
        .expect("push");
    println!("{:?}", read_message(&mut client).await);

    send(&mut client, &ClientMessage::Bye {}).await;
    let mut rest = Vec::new();
    let _ = client.read_to_end(&mut rest).await;
    println!("closed; sessions left: {}", gate.session_count());
}
