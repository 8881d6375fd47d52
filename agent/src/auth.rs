//! [`Authenticator`]: the check of a client's credentials before its session opens.
//!
//! The native handshake's token, MQTT's username and password, pomelo's handshake user data reach
//! the gate's authenticator (given with [`GateBuilder::authenticator`](crate::GateBuilder::authenticator))
//! before the WELCOME. The call is bounded by the handshake timeout (it counts from accept); a
//! refusal is the protocol's own (native CLOSE `unauthorized`, MQTT CONNACK 5, pomelo code 500),
//! and the connection ends `refused` with no session. An accepted identity can bind the
//! session's user id at once.

use crate::services::BoxFuture;
use bytes::Bytes;

/// What a client presented at its handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The protocol's name (`native`, `mqtt`, `pomelo`...).
    pub protocol: &'static str,
    /// The transport (`tcp`, `tls`, `ws`, `wss`).
    pub network: String,
    /// The client's address.
    pub peer: String,
    /// The credentials as the protocol carries them: the native token; MQTT's `username`, then
    /// one NUL byte and the `password` when there is one (`user\0pass`: NUL cannot appear in an
    /// MQTT string); pomelo's handshake `user` value as JSON, verbatim.
    pub credentials: Bytes,
}

/// Who an accepted client is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// Bind this user id to the session as it opens (as if the back end had called Bind).
    pub user_id: Option<String>,
}

/// Why a client is not let in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The credentials are wrong: the client gets the protocol's `unauthorized` with this text
    /// (the native CLOSE carries it; say what was wrong, not a secret).
    #[error("unauthorized: {0}")]
    Refused(String),
    /// The check could not be made (the service behind it is down): the client gets `internal
    /// error` (MQTT: CONNACK 3, server unavailable) with this text.
    #[error("authentication unavailable: {0}")]
    Unavailable(String),
}

/// Checks credentials (a trait object on the gate, shared by every connection).
///
/// A panic inside `authenticate` (or its future) refuses the client with `internal error`; a
/// call that outlives the handshake deadline is dropped and the client gets `handshake timeout`.
pub trait Authenticator: Send + Sync + 'static {
    /// Checks one client's credentials.
    fn authenticate(&self, credentials: Credentials) -> BoxFuture<Result<Identity, AuthError>>;
}

impl<F, Fut> Authenticator for F
where
    F: Fn(Credentials) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Identity, AuthError>> + Send + 'static,
{
    fn authenticate(&self, credentials: Credentials) -> BoxFuture<Result<Identity, AuthError>> {
        Box::pin(self(credentials))
    }
}
