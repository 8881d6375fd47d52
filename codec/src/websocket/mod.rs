//! WebSocket (RFC 6455) as a transport under gatekit's protocols, sans-I/O: frame headers,
//! masking and Close payloads ([`decode_header`], [`FrameHeader`], [`apply_mask`],
//! [`parse_close_payload`]), and the HTTP/1.1 upgrade on both sides ([`parse_upgrade_request`],
//! [`upgrade_response`], [`error_response`]; [`client_request`], [`parse_upgrade_response`]).
//! docs/WEBSOCKET.md is the profile: what gatekit accepts and sends, and every refusal with its
//! HTTP status or close code.
//!
//! Nothing here reads or writes a socket or keeps state between calls: the transport feeds the
//! bytes it has and gets back `Ok(None)` ("need more"), a value and how many bytes it took, or a
//! typed error that names what was wrong and carries the HTTP status or close code to answer
//! with. Limits (header bytes and count, payload length) are checked before anything is
//! allocated or buffered.
//!
//! ```
//! use gatekit_codec::websocket::{
//!     accept_key, apply_mask, decode_header, parse_upgrade_request, upgrade_response, Opcode,
//!     Role, UpgradeLimits,
//! };
//!
//! let request = b"GET /ws HTTP/1.1\r\nHost: gate.example\r\nUpgrade: websocket\r\n\
//!     Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
//!     Sec-WebSocket-Version: 13\r\n\r\n";
//! let up = parse_upgrade_request(request, &UpgradeLimits::default()).unwrap().unwrap();
//! assert_eq!((up.path.as_str(), up.header_len), ("/ws", request.len()));
//! let response = upgrade_response(&up.key, None);
//! assert!(response.ends_with(b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"));
//!
//! let mut frame = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
//! let (header, n) = decode_header(&frame, Role::Server, 65_536).unwrap().unwrap();
//! assert_eq!(header.opcode, Opcode::Text);
//! apply_mask(header.mask.unwrap(), 0, &mut frame[n..]);
//! assert_eq!(&frame[n..], b"Hello");
//! ```

mod close;
mod frame;
mod handshake;

pub use close::{
    close_code, encode_close_payload, is_valid_close_code, parse_close_payload, CloseFrameError,
    MAX_CONTROL_PAYLOAD,
};
pub use frame::{apply_mask, decode_header, FrameError, FrameHeader, Opcode, Role, MAX_HEADER_LEN};
pub use handshake::{
    accept_key, client_key, client_request, error_response, parse_http_request,
    parse_upgrade_request, parse_upgrade_response, upgrade_response, HttpRequest, UpgradeError,
    UpgradeLimits, UpgradeRequest, UpgradeResponse,
};
