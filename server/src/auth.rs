//! `[auth]`: the built-in authenticators — a static HMAC token check, and a call to a back end
//! over NATS (`auth/verify` by default) — behind the agent's [`Authenticator`] trait.
//!
//! Which part of a client's credentials is its token ([`token_of`]): the native handshake's token;
//! MQTT's password; pomelo's `user.token` (a JSON string).

use crate::nats::headers;
use crate::Dur;
use base64::Engine;
use bytes::Bytes;
use gatekit_agent::{AuthError, Authenticator, BoxFuture, Credentials, Identity};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How clients are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthKind {
    /// Every well-formed handshake is welcome.
    None,
    /// A token signed with a shared secret ([`HmacAuthenticator`]).
    Hmac,
    /// A back end decides, over NATS ([`NatsAuthenticator`]).
    Nats,
}

/// `[auth]` of the config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSection {
    /// `none`, `hmac` or `nats`.
    pub kind: AuthKind,
    /// `hmac`: the shared secret (prefer `secret_file`).
    pub secret: Option<String>,
    /// `hmac`: a file holding the shared secret (surrounding whitespace ignored).
    pub secret_file: Option<PathBuf>,
    /// `nats`: the `module/func` called with the credentials.
    pub call: String,
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            kind: AuthKind::None,
            secret: None,
            secret_file: None,
            call: "auth/verify".to_owned(),
        }
    }
}

/// The token in a client's credentials: the native token, MQTT's password (after the NUL that
/// ends the username), pomelo's `user.token`. `None` when there is none.
pub fn token_of(credentials: &Credentials) -> Option<Bytes> {
    let raw = &credentials.credentials;
    match credentials.protocol {
        "mqtt" => raw.iter().position(|&b| b == 0).map(|i| raw.slice(i + 1..)),
        "pomelo" => {
            let user: serde_json::Value = serde_json::from_slice(raw).ok()?;
            user.get("token")?
                .as_str()
                .map(|t| Bytes::copy_from_slice(t.as_bytes()))
        }
        _ => (!raw.is_empty()).then(|| raw.clone()),
    }
}

/// Checks tokens `<user>.<expires>.<signature>`: `expires` in Unix seconds, `signature` the
/// HMAC-SHA256 of `<user>.<expires>` under the shared secret, base64url without padding. A valid
/// token binds `<user>` to the session. Any service holding the secret mints them
/// ([`HmacAuthenticator::token`], docs/CLUSTER.md has it in Python).
pub struct HmacAuthenticator {
    key: ring::hmac::Key,
}

impl HmacAuthenticator {
    /// A checker with this secret.
    pub fn new(secret: &[u8]) -> Self {
        HmacAuthenticator {
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret),
        }
    }

    /// A token for `user` valid until `expires` (Unix seconds).
    pub fn token(&self, user: &str, expires: u64) -> String {
        let signed = format!("{user}.{expires}");
        let tag = ring::hmac::sign(&self.key, signed.as_bytes());
        format!(
            "{signed}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref())
        )
    }

    /// Checks `token` at `now` (Unix seconds): the user it names, or why it is refused.
    pub fn verify(&self, token: &[u8], now: u64) -> Result<String, String> {
        let token = std::str::from_utf8(token).map_err(|_| "the token is not UTF-8".to_owned())?;
        let mut parts = token.rsplitn(3, '.');
        let (Some(signature), Some(expires), Some(user)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err("the token is not <user>.<expires>.<signature>".to_owned());
        };
        let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| "the token's signature is not base64url".to_owned())?;
        let signed = &token[..user.len() + 1 + expires.len()];
        ring::hmac::verify(&self.key, signed.as_bytes(), &tag)
            .map_err(|_| "the token's signature does not match".to_owned())?;
        let expires: u64 = expires
            .parse()
            .map_err(|_| format!("the token's expiry {expires:?} is not a number of seconds"))?;
        if now >= expires {
            return Err(format!("the token expired at {expires} (now {now})"));
        }
        if user.is_empty() {
            return Err("the token names no user".to_owned());
        }
        Ok(user.to_owned())
    }
}

impl Authenticator for HmacAuthenticator {
    fn authenticate(&self, credentials: Credentials) -> BoxFuture<Result<Identity, AuthError>> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        let result = match token_of(&credentials) {
            None => Err(AuthError::Refused("no token".to_owned())),
            Some(token) => self
                .verify(&token, now)
                .map(|user| Identity {
                    user_id: Some(user),
                })
                .map_err(AuthError::Refused),
        };
        Box::pin(std::future::ready(result))
    }
}

/// Asks a back end: a NATS request to `<prefix>.rpc.<module>.<func>` (`auth/verify` by default)
/// with the client's credentials as the payload, verbatim, and headers `Gatekit-Protocol`
/// (`native`, `mqtt`, `pomelo`), `Gatekit-Network`, `Gatekit-Peer`, `Gatekit-Gate`. Its answer:
/// status `ok` accepts, the payload (UTF-8, may be empty) being the user id to bind; `failed` or
/// `not_found` refuses, the payload saying why (sent to the client); `busy`, no responders, no
/// answer in time or no NATS connection: `internal error` (the check could not be made).
pub struct NatsAuthenticator {
    client: async_nats::Client,
    subject: String,
    gate_id: String,
    timeout: Duration,
}

/// The header naming the client's protocol on an authentication call.
pub const PROTOCOL_HEADER: &str = "Gatekit-Protocol";

impl NatsAuthenticator {
    /// Calls `subject` over `client` for gate `gate_id`, waiting at most `timeout`.
    pub fn new(client: async_nats::Client, subject: String, gate_id: &str, timeout: Dur) -> Self {
        NatsAuthenticator {
            client,
            subject,
            gate_id: gate_id.to_owned(),
            timeout: timeout.0,
        }
    }
}

impl Authenticator for NatsAuthenticator {
    fn authenticate(&self, credentials: Credentials) -> BoxFuture<Result<Identity, AuthError>> {
        let client = self.client.clone();
        let subject = self.subject.clone();
        let gate = self.gate_id.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            if client.connection_state() != async_nats::connection::State::Connected {
                return Err(AuthError::Unavailable("not connected to NATS".into()));
            }
            let mut h = async_nats::HeaderMap::new();
            h.insert(PROTOCOL_HEADER, credentials.protocol);
            h.insert(headers::GATE, gate.as_str());
            for (name, value) in [
                (headers::NETWORK, &credentials.network),
                (headers::PEER, &credentials.peer),
            ] {
                if value.chars().all(|c| !c.is_control()) {
                    h.insert(name, value.as_str());
                }
            }
            let request = client.request_with_headers(subject.clone(), h, credentials.credentials);
            let reply = match tokio::time::timeout(timeout, request).await {
                Err(_) => {
                    return Err(AuthError::Unavailable(format!(
                        "{subject} did not answer within {timeout:?}"
                    )))
                }
                Ok(Err(e)) => {
                    return Err(AuthError::Unavailable(match e.kind() {
                        async_nats::RequestErrorKind::NoResponders => {
                            format!("no back end serves {subject}")
                        }
                        _ => format!("{subject}: {e}"),
                    }))
                }
                Ok(Ok(m)) => m,
            };
            let status = reply
                .headers
                .as_ref()
                .and_then(|h| h.get(headers::STATUS))
                .map(|v| v.as_str().to_owned());
            let text = String::from_utf8_lossy(&reply.payload).into_owned();
            match status.as_deref() {
                None | Some(headers::status::OK) => {
                    if text.chars().any(char::is_control) {
                        return Err(AuthError::Unavailable(format!(
                            "{subject} answered a user id with control characters"
                        )));
                    }
                    Ok(Identity {
                        user_id: (!text.is_empty()).then_some(text),
                    })
                }
                Some(headers::status::FAILED | headers::status::NOT_FOUND) => {
                    Err(AuthError::Refused(if text.is_empty() {
                        "refused".to_owned()
                    } else {
                        text
                    }))
                }
                Some(headers::status::BUSY) => {
                    Err(AuthError::Unavailable(format!("{subject} is busy")))
                }
                Some(other) => Err(AuthError::Unavailable(format!(
                    "{subject} answered an unknown Gatekit-Status {other:?}"
                ))),
            }
        })
    }
}

/// Logs every refusal (info) and every failed check (warn), naming the client, around `inner`.
pub struct Logged<A>(pub A);

impl<A: Authenticator> Authenticator for Logged<A> {
    fn authenticate(&self, credentials: Credentials) -> BoxFuture<Result<Identity, AuthError>> {
        let (protocol, peer) = (credentials.protocol, credentials.peer.clone());
        let check = self.0.authenticate(credentials);
        Box::pin(async move {
            let result = check.await;
            match &result {
                Ok(_) => {}
                Err(AuthError::Refused(why)) => {
                    tracing::info!(protocol, %peer, %why, "client refused")
                }
                Err(AuthError::Unavailable(why)) => {
                    tracing::warn!(protocol, %peer, %why, "client refused: authentication unavailable")
                }
            }
            result
        })
    }
}

/// Why the authenticator of `[auth]` cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    /// `secret_file` cannot be read.
    #[error("auth.secret_file {path}: {source}")]
    SecretFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The secret (from the file) is too short.
    #[error("auth.secret_file {path}: the secret is shorter than 16 bytes: too easy to guess")]
    ShortSecret {
        /// The file.
        path: PathBuf,
    },
    /// `kind = "nats"` without a NATS connection.
    #[error("auth.kind = \"nats\" needs nats.url")]
    NoNats,
    /// `call` is not a valid subject.
    #[error("auth.call: {0}")]
    Call(String),
}

/// The authenticator `[auth]` asks for, if any (`nats`: the gate's NATS client), logged.
pub fn from_config(
    config: &crate::ServerConfig,
    nats: Option<&async_nats::Client>,
) -> Result<Option<std::sync::Arc<dyn Authenticator>>, AuthSetupError> {
    let auth = &config.auth;
    Ok(match auth.kind {
        AuthKind::None => None,
        AuthKind::Hmac => {
            let secret = match (&auth.secret, &auth.secret_file) {
                (Some(s), _) => s.clone(),
                (None, Some(path)) => {
                    let s = std::fs::read_to_string(path).map_err(|source| {
                        AuthSetupError::SecretFile {
                            path: path.clone(),
                            source,
                        }
                    })?;
                    let s = s.trim().to_owned();
                    if s.len() < 16 {
                        return Err(AuthSetupError::ShortSecret { path: path.clone() });
                    }
                    s
                }
                (None, None) => unreachable!("checked by ServerConfig::validate"),
            };
            Some(std::sync::Arc::new(Logged(HmacAuthenticator::new(
                secret.as_bytes(),
            ))))
        }
        AuthKind::Nats => {
            let client = nats.ok_or(AuthSetupError::NoNats)?;
            let subject = config.auth_subject().map_err(AuthSetupError::Call)?;
            Some(std::sync::Arc::new(Logged(NatsAuthenticator::new(
                client.clone(),
                subject,
                &config.gate.id,
                config.limits.handshake_timeout,
            ))))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(protocol: &'static str, raw: &'static [u8]) -> Credentials {
        Credentials {
            protocol,
            network: "tcp".into(),
            peer: "127.0.0.1:1".into(),
            credentials: Bytes::from_static(raw),
        }
    }

    #[test]
    fn the_token_is_where_each_protocol_carries_it() {
        assert_eq!(
            token_of(&creds("native", b"t1")).as_deref(),
            Some(&b"t1"[..])
        );
        assert_eq!(token_of(&creds("native", b"")), None);
        assert_eq!(
            token_of(&creds("mqtt", b"user\0t2")).as_deref(),
            Some(&b"t2"[..])
        );
        assert_eq!(token_of(&creds("mqtt", b"user")), None);
        assert_eq!(
            token_of(&creds("pomelo", br#"{"token":"t3","x":1}"#)).as_deref(),
            Some(&b"t3"[..])
        );
        assert_eq!(token_of(&creds("pomelo", br#"{"token":3}"#)), None);
        assert_eq!(token_of(&creds("pomelo", b"not json")), None);
    }

    #[test]
    fn hmac_tokens_verify_and_every_defect_is_named() {
        let a = HmacAuthenticator::new(b"s3cret");
        let t = a.token("alice", 1000);
        assert_eq!(a.verify(t.as_bytes(), 999), Ok("alice".to_owned()));
        // A user id may hold dots: the expiry and signature are the last two parts.
        let dotted = a.token("a.b", 1000);
        assert_eq!(a.verify(dotted.as_bytes(), 1), Ok("a.b".to_owned()));
        assert!(a
            .verify(t.as_bytes(), 1000)
            .unwrap_err()
            .contains("expired at 1000"));
        let other = HmacAuthenticator::new(b"other");
        assert!(other
            .verify(t.as_bytes(), 1)
            .unwrap_err()
            .contains("does not match"));
        let tampered = t.replacen("alice", "mallory", 1);
        assert!(a
            .verify(tampered.as_bytes(), 1)
            .unwrap_err()
            .contains("does not match"));
        assert!(a
            .verify(b"nodots", 1)
            .unwrap_err()
            .contains("<user>.<expires>.<signature>"));
        assert!(a.verify(b"a.1.!!", 1).unwrap_err().contains("base64url"));
        assert!(a
            .verify(&[0xff, b'.', b'1', b'.', b'x'], 1)
            .unwrap_err()
            .contains("UTF-8"));
        let empty_user = a.token("", 1000);
        assert!(a
            .verify(empty_user.as_bytes(), 1)
            .unwrap_err()
            .contains("no user"));
    }

    #[test]
    fn hmac_matches_a_known_vector() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let a = HmacAuthenticator::new(b"Jefe");
        let tag = ring::hmac::sign(&a.key, b"what do ya want for nothing?");
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
