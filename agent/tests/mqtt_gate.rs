//! mqant's MQTT dialect on the real gate (paused clock, in-memory pipes): CONNECT and CONNACK, an
//! MQTT 5 client refused in a way it understands, requests on `module/HD_func/msgid` answered in
//! mqant's envelope on the same topic, QoS 1 acknowledged, SUBSCRIBE always answered, PINGREQ,
//! pushes, DISCONNECT, kicks, the 1.5 × keep-alive rule — with one Connect and one Disconnect of
//! the right reason.

mod common;

use bytes::{Bytes, BytesMut};
use common::RecLearner;
use gatekit_agent::{
    AgentConfig, AgentFactory, BackendError, Backends, CloseReason, Gate, Mqtt, ProtocolAgent,
    Services,
};
use gatekit_codec::mqtt::{
    ConnAck, Connect, MqttCodec, MqttString, Packet, PacketId, Publish, QoS, SubAck, Subscribe,
    SubscribeReturnCode, Subscription, TopicFilter, TopicName,
};
use gatekit_codec::Topic;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

struct Setup {
    gate: Gate,
    learner: Arc<RecLearner>,
    factory: Arc<dyn AgentFactory>,
}

fn setup() -> Setup {
    setup_with(None)
}

fn setup_with(auth: Option<Arc<dyn gatekit_agent::Authenticator>>) -> Setup {
    let learner = Arc::new(RecLearner::default());
    let echo = |_s: Arc<gatekit_agent::Session>, func: String, body: Bytes| async move {
        match func.as_str() {
            "HD_say" => Ok(body),
            "HD_fail" => Err(BackendError::Failed(Bytes::from_static(b"no"))),
            _ => Err(BackendError::NotFound),
        }
    };
    let gate = Gate::builder()
        .config(AgentConfig::default())
        .services(Services {
            backends: Backends::new().with("echo", echo),
            learner: learner.clone(),
            ..Services::default()
        });
    let gate = match auth {
        Some(a) => gate.authenticator(a),
        None => gate,
    }
    .build();
    Setup {
        gate,
        learner,
        factory: Arc::new(ProtocolAgent::new(Mqtt::new)),
    }
}

struct Client {
    io: DuplexStream,
    codec: MqttCodec,
    buf: BytesMut,
}

impl Setup {
    fn connect(&self) -> Client {
        let (client, server) = tokio::io::duplex(64 * 1024);
        self.gate
            .accept_with(Box::new(server), "mem", "peer".into(), &self.factory);
        Client {
            io: client,
            codec: MqttCodec::client(),
            buf: BytesMut::new(),
        }
    }

    fn only_session(&self) -> String {
        match &self.learner.events()[..] {
            [common::Ev::Connect(sid)] => sid.clone(),
            other => panic!("expected one Connect, got {other:?}"),
        }
    }
}

impl Client {
    async fn send(&mut self, p: Packet) {
        let mut out = BytesMut::new();
        self.codec.encode(&p, &mut out).unwrap();
        self.io.write_all(&out).await.unwrap();
    }

    async fn recv(&mut self) -> Option<Packet> {
        loop {
            if let Some(p) = self
                .codec
                .decode(&mut self.buf)
                .expect("the gate's output decodes")
            {
                return Some(p);
            }
            let mut chunk = [0u8; 4096];
            let n = self.io.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn open(&mut self, keep_alive: u16) {
        let mut c = Connect::new(MqttString::from_static("c1"), keep_alive);
        c.username = Some(MqttString::from_static("u"));
        c.password = Some(Bytes::from_static(b"p"));
        self.send(Packet::Connect(Box::new(c))).await;
        assert_eq!(
            self.recv().await,
            Some(Packet::ConnAck(ConnAck::Accepted {
                session_present: false
            }))
        );
    }

    async fn answer(&mut self) -> (String, serde_json::Value) {
        match self.recv().await {
            Some(Packet::Publish(p)) => {
                assert_eq!(p.qos(), QoS::AtMostOnce);
                (
                    p.topic.as_str().to_owned(),
                    serde_json::from_slice(&p.payload).expect("mqant's JSON envelope"),
                )
            }
            other => panic!("expected an answer PUBLISH, got {other:?}"),
        }
    }
}

fn topic(s: &'static str) -> TopicName {
    TopicName::from_static(s)
}

#[tokio::test(start_paused = true)]
async fn an_mqant_session_end_to_end() {
    let s = setup();
    let mut c = s.connect();
    c.open(0).await;
    let sid = s.only_session();
    // A request: answered on its own topic in mqant's envelope.
    c.send(Packet::Publish(Publish::qos0(
        topic("echo/HD_say/1"),
        r#"{"a":1}"#,
    )))
    .await;
    assert_eq!(
        c.answer().await,
        (
            "echo/HD_say/1".into(),
            serde_json::json!({"Trace": "", "Error": "", "Result": {"a": 1}})
        )
    );
    // QoS 1: PUBACK first, then the answer; an error status in `Error`.
    let id = PacketId::new(7).unwrap();
    c.send(Packet::Publish(Publish::qos1(
        id,
        topic("echo/HD_fail/2"),
        "x",
    )))
    .await;
    assert_eq!(c.recv().await, Some(Packet::PubAck(id)));
    assert_eq!(
        c.answer().await,
        (
            "echo/HD_fail/2".into(),
            serde_json::json!({"Trace": "", "Error": "failed: no", "Result": null})
        )
    );
    // SUBSCRIBE always gets SUBACK (mqant answers only QoS 2), granted at most QoS 1.
    let sub = PacketId::new(9).unwrap();
    c.send(Packet::Subscribe(Subscribe {
        packet_id: sub,
        subscriptions: vec![
            Subscription {
                filter: TopicFilter::from_static("room/#"),
                qos: QoS::AtMostOnce,
            },
            Subscription {
                filter: TopicFilter::from_static("news/+"),
                qos: QoS::ExactlyOnce,
            },
        ],
    }))
    .await;
    assert_eq!(
        c.recv().await,
        Some(Packet::SubAck(SubAck {
            packet_id: sub,
            return_codes: vec![
                SubscribeReturnCode::Granted(QoS::AtMostOnce),
                SubscribeReturnCode::Granted(QoS::AtLeastOnce)
            ],
        }))
    );
    // A notify (no msgid): no answer; PINGREQ: PINGRESP; a push on its topic.
    c.send(Packet::Publish(Publish::qos0(topic("echo/HD_say"), "n")))
        .await;
    c.send(Packet::PingReq).await;
    assert_eq!(c.recv().await, Some(Packet::PingResp));
    s.gate
        .push(&sid, Topic::from_static("room/7"), "hi")
        .unwrap();
    assert_eq!(
        c.recv().await,
        Some(Packet::Publish(Publish::qos0(topic("room/7"), "hi")))
    );
    // DISCONNECT: the gate closes; client_closed.
    c.send(Packet::Disconnect).await;
    assert_eq!(c.recv().await, None);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        s.learner.lifecycles().into_values().collect::<Vec<_>>(),
        [CloseReason::ClientClosed]
    );
}

#[tokio::test(start_paused = true)]
async fn an_mqtt5_client_gets_the_connack_it_understands() {
    let s = setup();
    let mut c = s.connect();
    // mosquitto_pub -V mqttv5's CONNECT (level 5, a Receive Maximum property).
    let v5: &[u8] = &[
        0x10, 0x13, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x02, 0x00, 0x3c, 0x03, 0x21, 0x00,
        0x14, 0x00, 0x02, b'c', b'5', 0x00,
    ];
    c.io.write_all(v5).await.unwrap();
    let mut got = Vec::new();
    c.io.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, [0x20, 0x03, 0x00, 0x84, 0x00]);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(s.learner.events(), [], "a refused CONNECT makes no session");
}

#[tokio::test(start_paused = true)]
async fn keep_alive_kicks_and_bad_topics() {
    let s = setup();
    // Keep-alive 10 s: closed after 15 s without a packet (MQTT's 1.5 ×).
    let mut quiet = s.connect();
    quiet.open(10).await;
    let t0 = tokio::time::Instant::now();
    assert_eq!(quiet.recv().await, None);
    assert_eq!(t0.elapsed(), Duration::from_secs(15));
    // A kick: 3.1.1 has no server DISCONNECT, the socket just closes.
    let mut kicked = s.connect();
    kicked.open(0).await;
    let sid = match &s.learner.events()[..] {
        [_, _, common::Ev::Connect(sid)] => sid.clone(),
        other => panic!("{other:?}"),
    };
    s.gate.kick(&sid, "bye").unwrap();
    assert_eq!(kicked.recv().await, None);
    // A topic that is not module/HD_func, and QoS 2: closed as protocol errors.
    let mut bad = s.connect();
    bad.open(0).await;
    bad.send(Packet::Publish(Publish::qos0(topic("echo/say/1"), "x")))
        .await;
    assert_eq!(bad.recv().await, None);
    let mut qos2 = s.connect();
    qos2.open(0).await;
    qos2.io
        .write_all(&[0x34, 0x06, 0x00, 0x01, b'a', 0x00, 0x01, b'x'])
        .await
        .unwrap();
    let mut rest = Vec::new();
    qos2.io.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "{rest:02x?}");
    tokio::time::sleep(Duration::from_millis(10)).await;
    let reasons: Vec<CloseReason> = s.learner.lifecycles().into_values().collect();
    assert_eq!(reasons.len(), 4);
    for r in [
        CloseReason::IdleTimeout,
        CloseReason::Kicked,
        CloseReason::ProtocolError,
    ] {
        assert!(reasons.contains(&r), "{reasons:?}");
    }
    assert_eq!(
        reasons
            .iter()
            .filter(|r| **r == CloseReason::ProtocolError)
            .count(),
        2
    );
}

#[tokio::test(start_paused = true)]
async fn mqtt_credentials_reach_the_authenticator_and_a_refusal_is_connack_5() {
    let s = setup_with(Some(common::test_authenticator()));
    let mut good = s.connect();
    let mut c = Connect::new(MqttString::from_static("c1"), 0);
    c.username = Some(MqttString::from_static("u"));
    c.password = Some(Bytes::from_static(b"good"));
    good.send(Packet::Connect(Box::new(c))).await;
    assert_eq!(
        good.recv().await,
        Some(Packet::ConnAck(ConnAck::Accepted {
            session_present: false
        }))
    );
    let sid = s.only_session();
    assert_eq!(
        s.gate
            .agent(&sid)
            .unwrap()
            .session()
            .unwrap()
            .user_id
            .as_deref(),
        Some("u1")
    );
    let mut bad = s.connect();
    let mut c = Connect::new(MqttString::from_static("c2"), 0);
    c.username = Some(MqttString::from_static("u"));
    c.password = Some(Bytes::from_static(b"wrong"));
    bad.send(Packet::Connect(Box::new(c))).await;
    assert_eq!(
        bad.recv().await,
        Some(Packet::ConnAck(ConnAck::Refused(
            gatekit_codec::mqtt::ConnectRefusal::NotAuthorized
        )))
    );
    assert_eq!(bad.recv().await, None);
    assert_eq!(s.learner.connects(), 1);
}
