//! Authentication before WELCOME on the real gate (paused clock, in-memory pipes), native
//! protocol: an accepted token opens the session bound to its user; a refused one gets CLOSE
//! `unauthorized` with the authenticator's reason; an unavailable or panicking authenticator,
//! `internal error`; a slow one, `handshake timeout` at the handshake deadline. None of the refused
//! ones has a session, a Connect or a Disconnect; the learner hears why they ended.

mod common;

use bytes::Bytes;
use common::{test_authenticator, Client};
use gatekit_agent::{AgentConfig, Backends, CloseReason, Gate, Learner, Services, Session};
use gatekit_codec::*;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Ends {
    connects: Mutex<Vec<Option<String>>>,
    without_session: Mutex<Vec<CloseReason>>,
}

impl Learner for Ends {
    fn connect(&self, s: &Session) {
        self.connects.lock().unwrap().push(s.user_id.clone());
    }
    fn ended_without_session(&self, reason: CloseReason) {
        self.without_session.lock().unwrap().push(reason);
    }
}

fn gate(ends: Arc<Ends>) -> Gate {
    let echo = |s: Arc<Session>, _f: String, _b: Bytes| async move {
        Ok::<_, gatekit_agent::BackendError>(Bytes::from(s.user_id.clone().unwrap_or_default()))
    };
    Gate::builder()
        .config(AgentConfig {
            handshake_timeout: Duration::from_secs(5),
            ..AgentConfig::default()
        })
        .services(Services {
            backends: Backends::new().with("who", echo),
            learner: ends,
            ..Services::default()
        })
        .authenticator(test_authenticator())
        .build()
}

fn hello(token: &'static str) -> Packet {
    Packet::Handshake(Handshake {
        version: PROTOCOL_VERSION,
        heartbeat_secs: 0,
        token: Bytes::from_static(token.as_bytes()),
    })
}

fn connect(gate: &Gate) -> Client<tokio::io::DuplexStream> {
    let (client, server) = tokio::io::duplex(64 * 1024);
    gate.accept(Box::new(server), "mem", "peer".into());
    Client::new(client)
}

#[tokio::test(start_paused = true)]
async fn an_accepted_token_opens_the_session_bound_to_its_user() {
    let ends = Arc::new(Ends::default());
    let gate = gate(ends.clone());
    let mut c = connect(&gate);
    c.send(hello("good")).await;
    let sid = match c.recv().await {
        Some(Packet::Welcome(w)) => w.session_id.as_str().to_owned(),
        other => panic!("expected WELCOME, got {other:?}"),
    };
    // Bound as it opened: the first request already sees the user.
    let r = c.request(1, "who/am-i", "").await;
    assert_eq!((r.status, &r.body[..]), (Status::Ok, &b"u1"[..]));
    assert_eq!(
        gate.agent(&sid)
            .unwrap()
            .session()
            .unwrap()
            .user_id
            .as_deref(),
        Some("u1")
    );
    assert_eq!(*ends.connects.lock().unwrap(), vec![Some("u1".to_owned())]);
    c.close().await;
}

#[tokio::test(start_paused = true)]
async fn refusals_are_the_protocols_own_and_open_no_session() {
    let cases = [
        ("bad", CloseCode::Unauthorized, "bad token \"bad\""),
        (
            "down",
            CloseCode::InternalError,
            "authentication unavailable: the user service is down",
        ),
        (
            "panic",
            CloseCode::InternalError,
            "authentication unavailable: the authenticator panicked",
        ),
    ];
    for (token, code, reason) in cases {
        let ends = Arc::new(Ends::default());
        let gate = gate(ends.clone());
        let mut c = connect(&gate);
        c.send(hello(token)).await;
        assert_eq!(c.expect_close(code).await, reason, "{token}");
        assert!(ends.connects.lock().unwrap().is_empty(), "{token}");
        let ended = || ends.without_session.lock().unwrap().clone();
        for _ in 0..100 {
            if !ended().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(ended(), vec![CloseReason::Refused], "{token}");
        assert_eq!(gate.session_count(), 0);
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_authenticator_is_bounded_by_the_handshake_timeout() {
    let ends = Arc::new(Ends::default());
    let gate = gate(ends.clone());
    let mut c = connect(&gate);
    let t0 = tokio::time::Instant::now();
    c.send(hello("slow")).await;
    // Packets sent while the check runs are not read (nor answered) before it ends.
    c.send(common::req(1, "who/x", "")).await;
    assert_eq!(
        c.expect_close(CloseCode::HandshakeTimeout).await,
        "handshake timeout"
    );
    assert_eq!(t0.elapsed(), Duration::from_secs(5));
    assert!(ends.connects.lock().unwrap().is_empty());
    assert_eq!(
        *ends.without_session.lock().unwrap(),
        vec![CloseReason::HandshakeTimeout]
    );
}
