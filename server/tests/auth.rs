//! `[auth]` on the real server: HMAC tokens checked before WELCOME (a valid one binds its user,
//! a forged, expired or missing one gets CLOSE `unauthorized` naming what was wrong), and the
//! `nats` kind asking a back end on `gatekit.rpc.auth.verify` over a real nats-server (accept with
//! a user id, refuse with its reason, `internal error` when no back end answers).

#[path = "../../agent/tests/common/native_client.rs"]
mod native_client;
#[path = "support/nats_server.rs"]
mod nats_server;

use bytes::Bytes;
use futures_util::StreamExt;
use gatekit_codec::{CloseCode, Handshake, Packet, PROTOCOL_VERSION};
use gatekit_server::auth::{AuthKind, HmacAuthenticator};
use gatekit_server::{Running, Server, ServerConfig};
use native_client::Client;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpStream;

const SECRET: &str = "a test secret of more than 16 bytes";

async fn start(config: ServerConfig) -> Running {
    let mut config = config;
    config.gate.listen = vec!["native+tcp://127.0.0.1:0".parse().unwrap()];
    Server::new(config)
        .start()
        .await
        .expect("the server starts")
}

async fn hello(running: &Running, token: &str) -> (Client<TcpStream>, Option<Packet>) {
    let mut c = Client::connect(running.listeners()[0].addr).await;
    c.send(Packet::Handshake(Handshake {
        version: PROTOCOL_VERSION,
        heartbeat_secs: 0,
        token: Bytes::copy_from_slice(token.as_bytes()),
    }))
    .await;
    let first = c.recv().await;
    (c, first)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn user_of(running: &Running, first: &Option<Packet>) -> Option<String> {
    let Some(Packet::Welcome(w)) = first else {
        panic!("expected WELCOME, got {first:?}")
    };
    running
        .gate()
        .agent(w.session_id.as_str())
        .and_then(|h| h.session())
        .and_then(|s| s.user_id.clone())
}

fn close_of(first: Option<Packet>) -> (CloseCode, String) {
    match first {
        Some(Packet::Close(c)) => (c.code, c.reason.as_str().to_owned()),
        other => panic!("expected CLOSE, got {other:?}"),
    }
}

#[tokio::test]
async fn hmac_tokens_open_bound_sessions_and_bad_ones_are_refused_by_name() {
    let mut config = ServerConfig::default();
    config.auth.kind = AuthKind::Hmac;
    config.auth.secret = Some(SECRET.into());
    let running = start(config).await;
    let minter = HmacAuthenticator::new(SECRET.as_bytes());
    let (_good, first) = hello(&running, &minter.token("alice", now() + 60)).await;
    assert_eq!(user_of(&running, &first).as_deref(), Some("alice"));
    let forged = HmacAuthenticator::new(b"not the gate's secret").token("alice", now() + 60);
    let expired = minter.token("alice", now() - 1);
    for (token, says) in [
        (forged.as_str(), "does not match"),
        (expired.as_str(), "expired at"),
        ("", "no token"),
        ("garbage", "<user>.<expires>.<signature>"),
    ] {
        let (mut c, first) = hello(&running, token).await;
        let (code, reason) = close_of(first);
        assert_eq!(code, CloseCode::Unauthorized, "{token:?}");
        assert!(reason.contains(says), "{token:?}: {reason}");
        assert_eq!(c.recv().await, None, "closed after the refusal");
    }
    assert_eq!(running.gate().session_count(), 1);
    running.shutdown().await;
}

#[tokio::test]
async fn a_nats_back_end_decides_and_its_absence_is_an_internal_error() {
    let nats = match nats_server::NatsServer::start() {
        Ok(n) => n,
        Err(why) => {
            nats_server::peer_ready("a_nats_back_end_decides", Err(why));
            return;
        }
    };
    let mut config = ServerConfig::default();
    config.nats.url = Some(nats.url());
    config.auth.kind = AuthKind::Nats;
    config.limits.handshake_timeout = gatekit_server::Dur::secs(3);
    let running = start(config).await;
    // Nobody answers auth/verify yet: the check cannot be made.
    for _ in 0..100 {
        if running.nats().unwrap().connection_state() == async_nats::connection::State::Connected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, first) = hello(&running, "tok-alice").await;
    let (code, reason) = close_of(first);
    assert_eq!(code, CloseCode::InternalError);
    assert!(
        reason.contains("no back end serves gatekit.rpc.auth.verify"),
        "{reason}"
    );
    // The back end: `tok-<user>` is user <user>, anything else refused.
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut sub = client
        .queue_subscribe("gatekit.rpc.auth.verify", "auth".into())
        .await
        .unwrap();
    // Live for the gate's connection too, not only written to the socket.
    gatekit_server::nats::round_trip(&client).await.unwrap();
    let responder = client.clone();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen_by_backend = seen.clone();
    let backend = tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            let headers = m.headers.clone().unwrap_or_default();
            seen_by_backend.lock().unwrap().push((
                headers.get("Gatekit-Protocol").map(|v| v.to_string()),
                headers.get("Gatekit-Gate").map(|v| v.to_string()),
            ));
            let token = String::from_utf8_lossy(&m.payload).into_owned();
            let mut h = async_nats::HeaderMap::new();
            let body = match token.strip_prefix("tok-") {
                Some(user) => user.to_owned(),
                None => {
                    h.insert("Gatekit-Status", "failed");
                    format!("unknown token {token:?}")
                }
            };
            let _ = responder
                .publish_with_headers(m.reply.unwrap(), h, body.into())
                .await;
        }
    });
    let (_alice, first) = hello(&running, "tok-alice").await;
    assert_eq!(user_of(&running, &first).as_deref(), Some("alice"));
    let (_, first) = hello(&running, "wrong").await;
    assert_eq!(
        close_of(first),
        (
            CloseCode::Unauthorized,
            "unknown token \"wrong\"".to_owned()
        )
    );
    assert_eq!(
        seen.lock().unwrap()[0],
        (Some("native".to_owned()), Some("gate-1".to_owned()))
    );
    backend.abort();
    running.shutdown().await;
}
