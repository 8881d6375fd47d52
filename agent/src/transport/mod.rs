//! Transports: layers in front of the agent that turn an accepted byte stream into the byte stream
//! the protocol runs on — TLS, WebSocket, both (WSS), or a user's own (QUIC, KCP...).
//!
//! The agent never knows which transport carries it: a [`Transport`] takes the accepted stream and
//! gives back another [`BoxStream`], after its own handshake (the TLS handshake, the HTTP upgrade).
//! That handshake counts inside the connection's `handshake_timeout`: the gate bounds it by the
//! connection's one handshake deadline, and the protocol's handshake gets what is left.
//!
//! | transport | layers | [`Transport::name`] |
//! |-----------|--------|---------------------|
//! | `tcp` | none (the gate's [`Gate::serve_with`](crate::Gate::serve_with)) | `tcp` |
//! | `tls` | [`Tls`] | `tls` |
//! | `ws`  | [`WebSocket`] | `ws` |
//! | `wss` | [`Tls`] then [`WebSocket`] ([`Layered`]) | `wss` |

pub mod tls;
pub mod websocket;

use crate::gate::BoxStream;
use crate::services::BoxFuture;
use std::io;
use std::sync::Arc;

pub use tls::{Tls, TlsConfigError};
pub use websocket::{WebSocket, WebSocketConfig, WebSocketStream};

/// A layer in front of the agent: takes an accepted stream and gives back the stream the
/// protocol runs on, once the layer's own handshake is done.
pub trait Transport: Send + Sync + 'static {
    /// The name connections accepted through it carry as their network ([`ConnInfo`]'s
    /// `network`), as in listener specifications: `tls`, `ws`, `wss`.
    ///
    /// [`ConnInfo`]: crate::ConnInfo
    fn name(&self) -> &str;

    /// Runs the layer's handshake on `stream`. The gate drops the future at the connection's
    /// handshake deadline, so it need not bound itself in time; it must bound every buffer it
    /// keeps.
    fn accept(&self, stream: BoxStream) -> BoxFuture<Result<BoxStream, TransportError>>;
}

/// Why a transport's handshake failed. Each is counted by the gate
/// ([`Gate::transport_failures`](crate::Gate::transport_failures)) and logged at debug level.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The TLS handshake failed: not TLS (plain bytes on a TLS port), no shared version or cipher,
    /// or the peer went away.
    #[error("TLS handshake failed: {0}")]
    Tls(#[source] io::Error),
    /// The WebSocket upgrade was refused with an HTTP status (which was sent to the client).
    #[error("WebSocket upgrade refused with HTTP {status}: {reason}")]
    Upgrade {
        /// The HTTP status sent.
        status: u16,
        /// What was wrong with the request.
        reason: String,
    },
    /// A plain HTTP request for a page was answered (`--demo`); no connection follows.
    #[error("served the page {path}")]
    PageServed {
        /// The page's path.
        path: String,
    },
    /// The peer closed the connection, or the socket failed, during the handshake.
    #[error("connection lost during the transport handshake: {0}")]
    Io(#[from] io::Error),
}

/// Two layers, one after the other: `Layered::new("wss", tls, websocket)` is WebSocket over TLS.
pub struct Layered {
    name: String,
    outer: Arc<dyn Transport>,
    inner: Arc<dyn Transport>,
}

impl Layered {
    /// `outer` runs on the accepted stream, `inner` on what `outer` gives; connections carry
    /// `name` as their network.
    pub fn new(
        name: impl Into<String>,
        outer: Arc<dyn Transport>,
        inner: Arc<dyn Transport>,
    ) -> Self {
        Layered {
            name: name.into(),
            outer,
            inner,
        }
    }
}

impl Transport for Layered {
    fn name(&self) -> &str {
        &self.name
    }

    fn accept(&self, stream: BoxStream) -> BoxFuture<Result<BoxStream, TransportError>> {
        let outer = self.outer.accept(stream);
        let inner = self.inner.clone();
        Box::pin(async move {
            let stream = outer.await?;
            inner.accept(stream).await
        })
    }
}
