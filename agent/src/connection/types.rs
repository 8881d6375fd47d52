//! The values a connection yields and takes: close reasons, back-end calls and their results,
//! actions for the driver, counters shared with handles, and who the connection is with.

use crate::protocol::TooLarge;
use crate::session::Session;
use bytes::Bytes;
use gatekit_codec::Route;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Why a connection ended. Carried by [`Action::Disconnect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CloseReason {
    /// The client sent CLOSE.
    ClientClosed,
    /// The stream ended without a CLOSE.
    Eof,
    /// The transport failed (connection reset, broken pipe...).
    Reset,
    /// No packet for longer than the idle timeout.
    IdleTimeout,
    /// No handshake in time (no session, so no Disconnect).
    HandshakeTimeout,
    /// The handshake was refused (no session, so no Disconnect).
    Refused,
    /// The client broke the protocol.
    ProtocolError,
    /// Closed on purpose by the server.
    Kicked,
    /// The client did not read its output.
    SlowConsumer,
    /// The gate shut down.
    Shutdown,
    /// The agent failed internally (a panic in the driver or a custom agent).
    Internal,
}

impl CloseReason {
    /// Every reason.
    pub const ALL: [CloseReason; 11] = [
        CloseReason::ClientClosed,
        CloseReason::Eof,
        CloseReason::Reset,
        CloseReason::IdleTimeout,
        CloseReason::HandshakeTimeout,
        CloseReason::Refused,
        CloseReason::ProtocolError,
        CloseReason::Kicked,
        CloseReason::SlowConsumer,
        CloseReason::Shutdown,
        CloseReason::Internal,
    ];

    /// A short snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            CloseReason::ClientClosed => "client_closed",
            CloseReason::Eof => "eof",
            CloseReason::Reset => "reset",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::HandshakeTimeout => "handshake_timeout",
            CloseReason::Refused => "refused",
            CloseReason::ProtocolError => "protocol_error",
            CloseReason::Kicked => "kicked",
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Internal => "internal",
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Identifies a back-end call issued by [`Action::Call`]; hand it back with the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

/// A back-end call the driver must make.
#[derive(Debug, Clone)]
pub struct Call {
    /// Give this back to [`Connection::handle_call_result`](crate::Connection::handle_call_result).
    pub id: CallId,
    /// The session, as of the call.
    pub session: Arc<Session>,
    /// `module/func`.
    pub route: Route,
    /// The request body (zero-copy from the received bytes).
    pub body: Bytes,
    /// Whether the client waits for an answer (request) or not (notify).
    pub expects_reply: bool,
}

/// How a back-end call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallResult {
    /// The back end answered.
    Ok(Bytes),
    /// No back end for the module, or no such function.
    NotFound,
    /// The back end refused the request; the bytes say why.
    Failed(Bytes),
    /// The back end is overloaded.
    Busy,
    /// The back end panicked or crashed.
    Panicked,
}

/// Something the driver must do.
#[derive(Debug, Clone)]
pub enum Action {
    /// Tell the learner the session is connected (once, after the handshake).
    Connect(Arc<Session>),
    /// Call a back end and report with
    /// [`Connection::handle_call_result`](crate::Connection::handle_call_result).
    Call(Call),
    /// Call the session store's heartbeat for this (bound) session.
    StorageHeartbeat(Arc<Session>),
    /// Run a session store operation (bind, storage, disconnect of an unbound user, delete). The
    /// driver runs them in order, one at a time, and hands a bind's restored settings back with
    /// [`Connection::restore_settings`](crate::Connection::restore_settings).
    Store(crate::store::StoreOp),
    /// Tell the learner the session is gone (once, iff `Connect` was yielded, always after it).
    Disconnect(Arc<Session>, CloseReason),
    /// Check a hello's credentials and report with
    /// [`Connection::handle_auth_result`](crate::Connection::handle_auth_result) (only after
    /// [`Connection::require_authentication`](crate::Connection::require_authentication)).
    Authenticate(crate::auth::Credentials),
}

/// Exact packet counters, shared with handles on other tasks (atomics, single writer).
#[derive(Debug, Default)]
pub struct Counters {
    pub(crate) received: AtomicU64,
    pub(crate) sent: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) closed: AtomicBool,
    pub(crate) max_buffered: AtomicUsize,
}

impl Counters {
    /// Packets received from the client.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
    /// Packets sent to the client: fully handed to the transport (written), not merely queued.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
    /// Bytes of the protocol's stream received (above the transport: TLS records and WebSocket
    /// frames are not counted).
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in.load(Ordering::Relaxed)
    }
    /// Bytes of the protocol's stream written to the transport.
    pub fn bytes_out(&self) -> u64 {
        self.bytes_out.load(Ordering::Relaxed)
    }
    /// Whether the connection is closing or closed.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
    /// The most bytes the connection ever buffered at once (undecoded input plus unwritten output).
    pub fn max_buffered(&self) -> usize {
        self.max_buffered.load(Ordering::Relaxed)
    }
}

/// Why a push was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The connection is not open (handshaking, closing or closed).
    #[error("connection is not open")]
    NotOpen,
    /// The packet breaks a limit of the protocol.
    #[error("packet refused by the encoder: {0}")]
    TooLarge(#[from] TooLarge),
}

/// Who the connection is with, given by the driver (the state machine creates nothing random).
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The session id to use if the handshake succeeds.
    pub session_id: String,
    /// Transport name.
    pub network: String,
    /// Peer address.
    pub peer: String,
}
