//! The pomelo protocol on the real gate (paused clock, in-memory pipes): handshake, ack and the
//! gate's first heartbeat, requests to `server.handler.method`, notifies, heartbeats echoed,
//! pushes, kicks, the two-heartbeat idle rule, and the strictness where pinus is lenient — with the
//! core's guarantees (one Connect, one Disconnect with the right reason).

mod common;

use bytes::{Bytes, BytesMut};
use common::RecLearner;
use gatekit_agent::{
    AgentConfig, AgentFactory, BackendError, Backends, CloseReason, Gate, Pomelo, ProtocolAgent,
    Services,
};
use gatekit_codec::pomelo::{
    ClientHandshake, Kick, Message, MessageKind, MessageRoute, Package, PomeloCodec,
    ServerHandshake,
};
use gatekit_codec::{MessageId, Oversize, Topic};
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
            "handler.say" => Ok(body),
            "handler.fail" => Err(BackendError::Failed(Bytes::from_static(b"no"))),
            _ => Err(BackendError::NotFound),
        }
    };
    let gate = Gate::builder()
        .config(AgentConfig {
            ping_interval: Duration::from_secs(3),
            ..AgentConfig::default()
        })
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
        factory: Arc::new(ProtocolAgent::new(Pomelo::new)),
    }
}

struct Client {
    io: DuplexStream,
    codec: PomeloCodec,
    buf: BytesMut,
}

impl Setup {
    fn connect(&self) -> Client {
        let (client, server) = tokio::io::duplex(64 * 1024);
        self.gate
            .accept_with(Box::new(server), "mem", "peer".into(), &self.factory);
        Client {
            io: client,
            codec: PomeloCodec::new(65_535, Oversize::Fail).unwrap(),
            buf: BytesMut::new(),
        }
    }
}

impl Client {
    async fn send(&mut self, p: &Package) {
        let mut out = BytesMut::new();
        self.codec.encode(p, &mut out).unwrap();
        self.io.write_all(&out).await.unwrap();
    }

    async fn send_message(&mut self, m: &Message) {
        let mut out = BytesMut::new();
        self.codec.encode_message(m, &mut out).unwrap();
        self.io.write_all(&out).await.unwrap();
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.unwrap();
    }

    /// The next package; `None` at the end of the stream.
    async fn recv(&mut self) -> Option<Package> {
        loop {
            if let Some(p) = self
                .codec
                .decode(&mut self.buf)
                .expect("the gate's output decodes")
            {
                return Some(p);
            }
            let mut chunk = [0u8; 4096];
            let n = self.io.read(&mut chunk).await.unwrap();
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn recv_message(&mut self) -> Message {
        match self.recv().await {
            Some(Package::Data(body)) => Message::decode(body).unwrap(),
            other => panic!("expected a data package, got {other:?}"),
        }
    }

    async fn recv_kick(&mut self) -> String {
        match self.recv().await {
            Some(Package::Kick(body)) => Kick::parse(&body).unwrap().reason,
            other => panic!("expected a kick, got {other:?}"),
        }
    }

    /// Handshake and ack; returns the heartbeat the gate chose.
    async fn open(&mut self) -> u32 {
        self.send(&ClientHandshake::new("js-tcp", "0.0.1").to_package())
            .await;
        let hs = match self.recv().await {
            Some(Package::Handshake(body)) => ServerHandshake::parse(&body).unwrap(),
            other => panic!("expected the handshake response, got {other:?}"),
        };
        assert_eq!(hs.code, 200);
        self.send(&Package::HandshakeAck).await;
        // The gate heartbeats right after the ack: the official client waits for it.
        assert_eq!(self.recv().await, Some(Package::Heartbeat));
        hs.heartbeat_secs.expect("a heartbeat interval")
    }
}

fn id(n: u32) -> MessageId {
    MessageId::new(n).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_pomelo_session_end_to_end() {
    let s = setup();
    let mut c = s.connect();
    assert_eq!(c.open().await, 3);
    let sid = match &s.learner.events()[..] {
        [common::Ev::Connect(sid)] => sid.clone(),
        other => panic!("expected one Connect, got {other:?}"),
    };
    // Requests in order, answered by id; errors as pomelo's {"code":500} with the status.
    c.send_message(&Message::request(
        id(1),
        MessageRoute::from_static("echo.handler.say"),
        r#"{"a":1}"#,
    ))
    .await;
    c.send_message(&Message::request(
        id(2),
        MessageRoute::from_static("echo.handler.fail"),
        "{}",
    ))
    .await;
    let r1 = c.recv_message().await;
    assert_eq!(r1.kind, MessageKind::Response { id: id(1) });
    assert_eq!(&r1.body[..], br#"{"a":1}"#);
    let r2 = c.recv_message().await;
    assert_eq!(r2.kind, MessageKind::Response { id: id(2) });
    let err: serde_json::Value = serde_json::from_slice(&r2.body).unwrap();
    assert_eq!(
        err,
        serde_json::json!({"code": 500, "status": "failed", "error": "no"})
    );
    // A notify: no answer. A heartbeat: echoed at once.
    c.send_message(&Message::notify(
        MessageRoute::from_static("echo.handler.say"),
        "{}",
    ))
    .await;
    c.send(&Package::Heartbeat).await;
    assert_eq!(c.recv().await, Some(Package::Heartbeat));
    // A push arrives on its topic as the route.
    s.gate
        .push(&sid, Topic::from_static("onChat"), r#"{"m":"hi"}"#)
        .unwrap();
    let push = c.recv_message().await;
    assert_eq!(
        push.kind,
        MessageKind::Push {
            route: MessageRoute::from_static("onChat")
        }
    );
    assert_eq!(&push.body[..], br#"{"m":"hi"}"#);
    // A kick: the kick package with the reason, then the end.
    s.gate.kick(&sid, "bye").unwrap();
    assert_eq!(c.recv_kick().await, "bye");
    assert_eq!(c.recv().await, None);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        s.learner.lifecycles().into_values().collect::<Vec<_>>(),
        [CloseReason::Kicked]
    );
}

#[tokio::test(start_paused = true)]
async fn two_silent_heartbeats_close_and_heartbeats_keep_it_open() {
    let s = setup();
    let mut quiet = s.connect();
    quiet.open().await;
    let t0 = tokio::time::Instant::now();
    assert_eq!(quiet.recv_kick().await, "idle timeout");
    assert_eq!(
        t0.elapsed(),
        Duration::from_secs(6),
        "2 × the 3 s heartbeat"
    );
    let mut alive = s.connect();
    alive.open().await;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        alive.send(&Package::Heartbeat).await;
        assert_eq!(alive.recv().await, Some(Package::Heartbeat));
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        s.learner.disconnects(),
        1,
        "the heartbeating client is still connected"
    );
}

#[tokio::test(start_paused = true)]
async fn strict_where_pinus_is_lenient() {
    let s = setup();
    // A bad handshake: {"code":500}, then the end; no session.
    let mut bad = s.connect();
    bad.send(&Package::Handshake(Bytes::from_static(b"{\"user\":{}}")))
        .await;
    match bad.recv().await {
        Some(Package::Handshake(body)) => {
            assert_eq!(ServerHandshake::parse(&body).unwrap().code, 500)
        }
        other => panic!("expected the refusal, got {other:?}"),
    }
    assert_eq!(bad.recv().await, None);
    // Data before the ack (pinus drops it silently): a kick saying so.
    let mut early = s.connect();
    early
        .send(&ClientHandshake::new("js-tcp", "0.0.1").to_package())
        .await;
    assert!(matches!(early.recv().await, Some(Package::Handshake(_))));
    early
        .send_message(&Message::request(
            id(1),
            MessageRoute::from_static("echo.handler.say"),
            "{}",
        ))
        .await;
    let reason = early.recv_kick().await;
    assert!(reason.contains("expected the handshake ack"), "{reason}");
    // A route without a dot (pinus drops it): a kick naming it.
    let mut noroute = s.connect();
    noroute.open().await;
    noroute
        .send_message(&Message::request(
            id(1),
            MessageRoute::from_static("nodots"),
            "{}",
        ))
        .await;
    let reason = noroute.recv_kick().await;
    assert!(reason.contains("nodots"), "{reason}");
    // An unknown package type: closed at once.
    let mut garbage = s.connect();
    garbage.open().await;
    garbage.send_raw(&[0x09, 0, 0, 0]).await;
    let reason = garbage.recv_kick().await;
    assert!(reason.contains("unknown package type"), "{reason}");
    tokio::time::sleep(Duration::from_millis(10)).await;
    let reasons: Vec<CloseReason> = s.learner.lifecycles().into_values().collect();
    assert_eq!(
        reasons,
        [CloseReason::ProtocolError; 3],
        "the refused handshake had no session"
    );
}

#[tokio::test(start_paused = true)]
async fn pomelo_user_data_reaches_the_authenticator_and_a_refusal_is_code_500() {
    let s = setup_with(Some(common::test_authenticator()));
    for (token, code) in [("good", 200), ("wrong", 500)] {
        let mut c = s.connect();
        let mut hs = ClientHandshake::new("js-tcp", "0.0.1");
        hs.user = Some(Bytes::from(format!("{{\"token\":\"{token}\"}}")));
        c.send(&hs.to_package()).await;
        let answer = match c.recv().await {
            Some(Package::Handshake(body)) => ServerHandshake::parse(&body).unwrap(),
            other => panic!("expected the handshake response, got {other:?}"),
        };
        assert_eq!(answer.code, code, "{token}");
        if code == 500 {
            assert_eq!(c.recv().await, None, "closed after the refusal");
        }
    }
    assert_eq!(s.learner.connects(), 1);
}
