//! The cluster's login service: it answers the gates' `[auth] kind = "nats"` call
//! (`<prefix>.rpc.auth.verify`, docs/CLUSTER.md "Authentication") from the cluster process.
//!
//! `[auth]` is one per gate, and the runs' clients (`gatekit run`) send the fixed tokens
//! `client-<index>` (the native token, MQTT's password, pomelo's `user.token`), which the built-in HMAC check refuses. So the gates ask this service, which
//! checks what the HMAC authenticator checks — [`HmacAuthenticator::verify`], the gate's own
//! code, under a secret made for this cluster — and binds the token's user; a token that is
//! exactly `client-<digits>` is welcomed without a user (as with `kind = "none"`, the runs'
//! sessions stay unbound); anything else is refused (`Gatekit-Status: failed`, the reason).

use futures_util::StreamExt;
use gatekit_server::auth::{token_of, HmacAuthenticator, PROTOCOL_HEADER};
use gatekit_server::nats::headers;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::task::JoinHandle;

/// How long the tokens minted for the directory's users are valid.
const TOKEN_LIFE_SECS: u64 = 3600;

/// What the login service answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AuthCounts {
    /// Signed tokens accepted: a user bound.
    pub verified: u64,
    /// The runs' `client-<index>` tokens, welcomed without a user.
    pub anonymous: u64,
    /// Tokens refused.
    pub refused: u64,
}

#[derive(Default)]
struct Counters {
    verified: AtomicU64,
    anonymous: AtomicU64,
    refused: AtomicU64,
}

/// The running login service; it stops when dropped.
pub struct AuthService {
    hmac: Arc<HmacAuthenticator>,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl Drop for AuthService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether `token` is a run's client token, `client-<digits>`.
pub fn is_run_token(token: &[u8]) -> bool {
    token
        .strip_prefix(b"client-")
        .is_some_and(|n| !n.is_empty() && n.iter().all(u8::is_ascii_digit))
}

/// The token in a verify call's credentials, as the gate's own authenticators take it
/// ([`gatekit_server::auth::token_of`]): native, the payload; MQTT, the password after the NUL;
/// pomelo, `user.token`. Empty when there is none.
fn token_in(msg: &async_nats::Message) -> bytes::Bytes {
    let protocol = match headers::get(msg.headers.as_ref(), PROTOCOL_HEADER) {
        Some("mqtt") => "mqtt",
        Some("pomelo") => "pomelo",
        _ => "native",
    };
    let credentials = gatekit_agent::Credentials {
        protocol,
        network: String::new(),
        peer: String::new(),
        credentials: msg.payload.clone(),
    };
    token_of(&credentials).unwrap_or_default()
}

impl AuthService {
    /// Subscribes to `<prefix>.rpc.auth.verify` (queue group `auth`) with a fresh random secret
    /// and returns once the NATS server has the subscription (a round trip).
    pub async fn start(client: async_nats::Client, prefix: &str) -> Result<AuthService, String> {
        let secret: String = (0..32)
            .map(|_| char::from(b"0123456789abcdef"[rand::random_range(0..16usize)]))
            .collect();
        let hmac = Arc::new(HmacAuthenticator::new(secret.as_bytes()));
        let subject = format!("{prefix}.rpc.auth.verify");
        let mut sub = client
            .queue_subscribe(subject.clone(), "auth".to_owned())
            .await
            .map_err(|e| format!("login service: subscribing to {subject}: {e}"))?;
        gatekit_server::nats::round_trip(&client)
            .await
            .map_err(|e| format!("login service: NATS round trip: {e}"))?;
        let counters = Arc::new(Counters::default());
        let (h, c) = (hmac.clone(), counters.clone());
        let task = tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                let token = token_in(&msg);
                let Some(reply) = msg.reply else { continue };
                let token = &token[..];
                let sent = if is_run_token(token) {
                    c.anonymous.fetch_add(1, Ordering::Relaxed);
                    client.publish(reply, bytes::Bytes::new()).await
                } else {
                    match h.verify(token, now_secs()) {
                        Ok(user) => {
                            c.verified.fetch_add(1, Ordering::Relaxed);
                            client.publish(reply, user.into()).await
                        }
                        Err(why) => {
                            c.refused.fetch_add(1, Ordering::Relaxed);
                            let mut hm = async_nats::HeaderMap::new();
                            hm.insert(headers::STATUS, headers::status::FAILED);
                            client.publish_with_headers(reply, hm, why.into()).await
                        }
                    }
                };
                if let Err(e) = sent {
                    eprintln!("cluster: login service: answer not sent: {e}");
                }
            }
        });
        Ok(AuthService {
            hmac,
            counters,
            task,
        })
    }

    /// A signed token for `user`, valid for an hour.
    pub fn token(&self, user: &str) -> String {
        self.hmac.token(user, now_secs() + TOKEN_LIFE_SECS)
    }

    /// What it answered so far.
    pub fn counts(&self) -> AuthCounts {
        AuthCounts {
            verified: self.counters.verified.load(Ordering::Relaxed),
            anonymous: self.counters.anonymous.load(Ordering::Relaxed),
            refused: self.counters.refused.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_client_and_digits_is_a_run_token() {
        assert!(is_run_token(b"client-0"));
        assert!(is_run_token(b"client-123"));
        assert!(!is_run_token(b"client-"));
        assert!(!is_run_token(b"client-1x"));
        assert!(!is_run_token(b"alice.1.sig"));
        assert!(!is_run_token(b""));
    }
}
