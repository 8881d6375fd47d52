//! The `ws` transport (RFC 6455, server side): the HTTP upgrade, then binary messages carried as
//! the protocol's byte stream ([`WebSocketStream`]).
//!
//! Why a frame codec of gatekit's own (`gatekit_codec::websocket`) rather than tokio-tungstenite:
//! docs/ARCHITECTURE.md, "Transports". In short: a WebSocket here is a byte stream, not a message
//! queue, so frames are unframed in place in the driver's per-thread read buffer and an idle
//! connection keeps about 200 bytes for the layer, where tungstenite keeps a read buffer per
//! connection.

mod client;
mod stream;

pub use client::connect;
pub use stream::{WebSocketClose, WebSocketStream};

use super::{Transport, TransportError};
use crate::gate::BoxStream;
use crate::services::BoxFuture;
use bytes::{Bytes, BytesMut};
use gatekit_codec::websocket::{
    error_response, parse_upgrade_request, upgrade_response, Role, UpgradeError, UpgradeLimits,
    UpgradeRequest,
};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A page served over plain HTTP on a WebSocket listener (a GET that is not an upgrade), for
/// example the browser demo of `gatekit serve --demo`.
#[derive(Debug, Clone)]
pub struct Page {
    /// Its path, e.g. `/` or `/gatekit.js`.
    pub path: String,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its body.
    pub body: Bytes,
}

/// Options of a WebSocket listener.
#[derive(Debug, Clone)]
pub struct WebSocketConfig {
    /// The only path upgraded (`/gate`); `None` upgrades any path. Others get HTTP 404.
    pub path: Option<String>,
    /// Subprotocols the server speaks (`Sec-WebSocket-Protocol`), in order of preference: the
    /// first the client offers is selected.
    pub protocols: Vec<String>,
    /// Whether a client must offer one of `protocols` (MQTT over WebSocket requires `mqtt`);
    /// if it offers none of them it gets HTTP 400.
    pub require_protocol: bool,
    /// Origins allowed to connect (the `Origin` header browsers send); `None` allows any, and a
    /// request without `Origin` (not from a browser) is always allowed. Others get HTTP 403.
    pub allowed_origins: Option<Vec<String>>,
    /// Largest message accepted, in bytes: a message announcing more is refused from its frame
    /// header, before its payload is read (close 1009).
    pub max_message_size: u64,
    /// Limits on the upgrade request (header bytes, header count).
    pub limits: UpgradeLimits,
    /// Pages served to plain GETs (anything else gets HTTP 426).
    pub pages: Vec<Page>,
}

impl WebSocketConfig {
    /// The options for a protocol whose largest frame is `max_frame_length` bytes: a message may
    /// hold one largest frame and its header ([`message_size_for`]).
    pub fn for_frame_length(max_frame_length: usize) -> Self {
        WebSocketConfig {
            path: None,
            protocols: Vec::new(),
            require_protocol: false,
            allowed_origins: None,
            max_message_size: message_size_for(max_frame_length),
            limits: UpgradeLimits::default(),
            pages: Vec::new(),
        }
    }
}

/// The largest WebSocket message for a protocol whose largest frame is `max_frame_length`: the
/// frame and room for its protocol header (at most 16 bytes in every built-in protocol).
pub fn message_size_for(max_frame_length: usize) -> u64 {
    max_frame_length as u64 + 16
}

/// The `ws` transport.
#[derive(Clone)]
pub struct WebSocket {
    config: Arc<WebSocketConfig>,
    name: String,
}

impl WebSocket {
    /// A WebSocket transport with `config`, named `ws`.
    pub fn new(config: WebSocketConfig) -> Self {
        WebSocket {
            config: Arc::new(config),
            name: "ws".to_owned(),
        }
    }

    /// The same transport with another name (`wss` when it runs over TLS).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The options.
    pub fn config(&self) -> &WebSocketConfig {
        &self.config
    }
}

impl Transport for WebSocket {
    fn name(&self) -> &str {
        &self.name
    }

    fn accept(&self, stream: BoxStream) -> BoxFuture<Result<BoxStream, TransportError>> {
        let config = self.config.clone();
        Box::pin(async move {
            let ws = accept(stream, &config).await?;
            Ok(Box::new(ws) as BoxStream)
        })
    }
}

/// A refusal: the HTTP status, what was wrong, and headers to add.
struct Refusal {
    status: u16,
    reason: String,
    headers: Vec<(&'static str, &'static str)>,
}

impl From<UpgradeError> for Refusal {
    fn from(e: UpgradeError) -> Self {
        Refusal {
            status: e.status(),
            reason: e.to_string(),
            headers: e.response_headers().to_vec(),
        }
    }
}

/// The server side of the upgrade on `stream`: reads the request (bounded by the header limits),
/// answers 101 and gives the WebSocket, or answers the error status and fails.
pub async fn accept<S>(
    mut stream: S,
    config: &WebSocketConfig,
) -> Result<WebSocketStream<S>, TransportError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut buf = BytesMut::new();
    let request = loop {
        match parse_upgrade_request(&buf, &config.limits) {
            Ok(Some(request)) => break request,
            Ok(None) => {}
            Err(UpgradeError::NotUpgrade { path }) => {
                let path = path_only(&path).to_owned();
                return Err(serve_page(&mut stream, config, path).await);
            }
            Err(e) => return Err(refuse(&mut stream, e.into()).await),
        }
        // Read no more than one byte past the limit: enough to tell it was exceeded.
        let room = (config.limits.max_header_bytes + 1).saturating_sub(buf.len());
        buf.reserve(room.min(4096));
        let n = (&mut stream).take(room as u64).read_buf(&mut buf).await?;
        if n == 0 {
            return Err(TransportError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "the peer closed after {} bytes of an unfinished upgrade request",
                    buf.len()
                ),
            )));
        }
    };
    let protocol = match check(&request, config) {
        Ok(p) => p,
        Err(refusal) => return Err(refuse(&mut stream, refusal).await),
    };
    stream
        .write_all(&upgrade_response(&request.key, protocol.as_deref()))
        .await?;
    stream.flush().await?;
    let leftover = buf.split_off(request.header_len);
    Ok(WebSocketStream::new(
        stream,
        Role::Server,
        config.max_message_size,
        Some(leftover),
    ))
}

/// The request's path without its query.
fn path_only(target: &str) -> &str {
    target.split(['?', '#']).next().unwrap_or(target)
}

/// Checks path, origin and subprotocol; gives the subprotocol selected.
fn check(request: &UpgradeRequest, config: &WebSocketConfig) -> Result<Option<String>, Refusal> {
    let path = path_only(&request.path);
    if let Some(want) = &config.path {
        if path != want {
            return Err(Refusal {
                status: 404,
                reason: format!(
                    "no WebSocket endpoint at {path:?} (this listener serves {want:?})"
                ),
                headers: Vec::new(),
            });
        }
    }
    if let (Some(allowed), Some(origin)) = (&config.allowed_origins, &request.origin) {
        if !allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
            return Err(Refusal {
                status: 403,
                reason: format!("origin {origin:?} is not allowed"),
                headers: Vec::new(),
            });
        }
    }
    let selected = config
        .protocols
        .iter()
        .find(|p| request.protocols.iter().any(|offered| offered == *p))
        .cloned();
    if selected.is_none() && config.require_protocol {
        let offered = if request.protocols.is_empty() {
            "none".to_owned()
        } else {
            format!("{:?}", request.protocols)
        };
        return Err(Refusal {
            status: 400,
            reason: format!(
                "Sec-WebSocket-Protocol must offer one of {:?}; the client offered {offered}",
                config.protocols
            ),
            headers: Vec::new(),
        });
    }
    Ok(selected)
}

async fn refuse<S: tokio::io::AsyncWrite + Unpin>(stream: &mut S, r: Refusal) -> TransportError {
    let _ = stream
        .write_all(&error_response(r.status, &r.reason, &r.headers))
        .await;
    let _ = stream.shutdown().await;
    TransportError::Upgrade {
        status: r.status,
        reason: r.reason,
    }
}

async fn serve_page<S: tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    config: &WebSocketConfig,
    path: String,
) -> TransportError {
    let Some(page) = config.pages.iter().find(|p| p.path == path) else {
        return refuse(
            stream,
            Refusal {
                status: 426,
                reason: format!("{path} is a WebSocket endpoint: upgrade the request"),
                headers: vec![("Upgrade", "websocket")],
            },
        )
        .await;
    };
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        page.content_type,
        page.body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(&page.body).await;
    let _ = stream.shutdown().await;
    TransportError::PageServed { path }
}
