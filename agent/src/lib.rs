//! # gatekit-agent
//!
//! The connection agent and the gate, in the style of mqant's gate — without its defects.
//!
//! - [`Connection`]: one connection's life as a deterministic, I/O-free state machine (handshake,
//!   session, counters, routing to back ends, replies, heartbeats, close and disconnect). It is given
//!   the time and yields what to do; see its module docs for its guarantees.
//! - [`driver::run`]: a thin tokio driver running a `Connection` over any `AsyncRead + AsyncWrite`.
//! - [`transport`]: layers in front of the agent — TLS, WebSocket, WSS, a user's own — each a
//!   [`Transport`] turning the accepted stream into the stream the protocol runs on.
//! - [`Gate`]: accepts TCP connections (default 127.0.0.1), creates one agent per connection through a
//!   pluggable [`AgentFactory`] (mqant's `SetCreateAgent`), operates on sessions by id (push, kick,
//!   bind, broadcast, count), refuses connections past `max_connections`, and shuts down gracefully.
//! - Traits a user implements: [`Backend`] (a module's functions), [`SessionStore`] (mqant's
//!   `StorageHandler`, asynchronous: [`MemoryStore`] is the embedded one), [`Learner`] (mqant's `AgentLearner`).
//! - [`AgentHandle`]: a connection seen from any task — conn time, counters, closed flag, session,
//!   push, kick — with no lock on the counters.
//!
//! docs/ARCHITECTURE.md maps every mqant Agent/Gate method to its counterpart here, and every mqant
//! defect to what prevents it.

#![warn(missing_docs)]

pub mod auth;
mod calls;
mod command_queue;
pub mod config;
pub mod connection;
pub mod driver;
#[cfg(feature = "fault-injection")]
pub mod faults;
pub mod gate;
mod groups;
pub mod handle;
pub mod mqtt;
pub mod native;
pub mod pomelo;
pub mod protocol;
mod read_scratch;
pub mod registration;
pub mod remote_gates;
pub mod services;
pub mod session;
pub mod store;
pub mod transport;

pub use auth::{AuthError, Authenticator, Credentials, Identity};
pub use config::{AgentConfig, AgentConfigError};
pub use connection::{
    Action, Call, CallId, CallResult, CloseReason, ConnInfo, Connection, Counters, PushError,
};
#[cfg(feature = "fault-injection")]
pub use faults::Faults;
pub use gate::{
    AgentContext, AgentFactory, AgentStream, BoxStream, Gate, GateBuilder, NativeAgent,
    ProtocolAgent, ShutdownReport, Traffic,
};
pub use handle::{AgentHandle, Command, Commands, HandleError};
pub use mqtt::Mqtt;
pub use native::Native;
pub use pomelo::Pomelo;
pub use protocol::Protocol;
pub use registration::Registration;
pub use remote_gates::{NoRemoteGates, RemoteGates};
pub use services::{Backend, BackendError, Backends, BoxFuture, Learner, NoLearner, Services};
pub use session::Session;
pub use store::{
    Bound, DuplicateLogin, Location, MemoryStore, NoStore, SessionStore, StoreError, StoreFuture,
    StoreKind, StoreOp, StoredSession, ALREADY_ONLINE, LOGGED_IN_ELSEWHERE,
};
pub use transport::{Layered, Tls, Transport, TransportError, WebSocket, WebSocketConfig};
