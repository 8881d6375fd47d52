//! The client side of the upgrade, for Rust clients of a gate (the load harness, tests, bots).

use super::WebSocketStream;
use crate::transport::TransportError;
use base64::Engine;
use bytes::BytesMut;
use gatekit_codec::websocket::{
    client_request, parse_upgrade_response, Role, UpgradeError, UpgradeLimits,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Upgrades `stream` to a WebSocket as a client: `GET path` on `host` offering `protocols`.
/// Gives the stream (frames it writes are masked and at most `max_message` bytes each) and the
/// subprotocol the server selected.
pub async fn connect<S>(
    mut stream: S,
    host: &str,
    path: &str,
    protocols: &[&str],
    max_message: u64,
) -> Result<(WebSocketStream<S>, Option<String>), TransportError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>());
    stream
        .write_all(&client_request(host, path, &key, protocols))
        .await?;
    stream.flush().await?;
    let limits = UpgradeLimits::default();
    let mut buf = BytesMut::new();
    let response = loop {
        match parse_upgrade_response(&buf, &limits, &key) {
            Ok(Some(r)) => break r,
            Ok(None) => {}
            Err(e) => {
                return Err(TransportError::Upgrade {
                    status: match &e {
                        UpgradeError::Refused { status, .. } => *status,
                        _ => 0,
                    },
                    reason: e.to_string(),
                })
            }
        }
        let room = (limits.max_header_bytes + 1).saturating_sub(buf.len());
        buf.reserve(room.min(4096));
        if (&mut stream).take(room as u64).read_buf(&mut buf).await? == 0 {
            return Err(TransportError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the server closed before answering the upgrade",
            )));
        }
    };
    let leftover = buf.split_off(response.header_len);
    Ok((
        WebSocketStream::new(stream, Role::Client, max_message, Some(leftover)),
        response.protocol,
    ))
}
