//! Packages: the outer layer of the pomelo protocol, a type byte and a 3-byte big-endian body
//! length, then the body.
//!
//! ```text
//! +-- type: u8 --+-- body length: u24 BE --+------ body ------+
//! | 04           | 00 00 1c                | 28 bytes ...     |
//! +--------------+-------------------------+------------------+
//! ```

use bytes::{BufMut, Bytes, BytesMut};
use std::fmt;

/// Bytes of a package header: the type byte and the 3-byte body length.
pub const HEADER_LEN: usize = 4;

/// Body length limit used when none is set: 65,535 bytes, mqant's `MaxPackSize`.
pub const DEFAULT_MAX_BODY_LENGTH: usize = 65_535;

/// The largest body the 3-byte length can announce, and the cap on any configured maximum:
/// 16,777,215 bytes.
pub const MAX_BODY_LENGTH_CAP: usize = 0xff_ffff;

/// A package's type byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[repr(u8)]
pub enum PackageType {
    /// 1. Client → server: the handshake JSON; server → client: the handshake response JSON.
    Handshake = 1,
    /// 2. Client → server: the handshake is accepted (empty body).
    HandshakeAck = 2,
    /// 3. Either way: liveness (empty body).
    Heartbeat = 3,
    /// 4. Either way: one message (request, notify, response or push).
    Data = 4,
    /// 5. Server → client: `{"reason":".."}`, then the server closes.
    Kick = 5,
}

impl PackageType {
    /// Every type, in wire order.
    pub const ALL: [PackageType; 5] = [
        PackageType::Handshake,
        PackageType::HandshakeAck,
        PackageType::Heartbeat,
        PackageType::Data,
        PackageType::Kick,
    ];

    /// The type for a wire byte, if any.
    pub const fn from_u8(b: u8) -> Option<PackageType> {
        Some(match b {
            1 => PackageType::Handshake,
            2 => PackageType::HandshakeAck,
            3 => PackageType::Heartbeat,
            4 => PackageType::Data,
            5 => PackageType::Kick,
            _ => return None,
        })
    }

    /// The wire byte.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// Whether packages of this type carry a body: handshake ack and heartbeat do not.
    pub const fn has_body(self) -> bool {
        !matches!(self, PackageType::HandshakeAck | PackageType::Heartbeat)
    }

    /// The name used in docs/POMELO.md and in errors.
    pub const fn name(self) -> &'static str {
        match self {
            PackageType::Handshake => "handshake",
            PackageType::HandshakeAck => "handshake ack",
            PackageType::Heartbeat => "heartbeat",
            PackageType::Data => "data",
            PackageType::Kick => "kick",
        }
    }
}

impl fmt::Display for PackageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One package. Bodies are zero-copy slices of the decoded stream.
///
/// The JSON bodies are parsed on demand: [`ClientHandshake::parse`](super::ClientHandshake::parse)
/// and [`HandshakeResponse::parse`](super::HandshakeResponse::parse) for handshakes,
/// [`Kick::parse`](super::Kick::parse) for kicks; a data body is a
/// [`Message`](super::Message) ([`Message::decode`](super::Message::decode)).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Package {
    /// The handshake JSON, either way.
    Handshake(Bytes),
    /// Client → server: the handshake response was accepted.
    HandshakeAck,
    /// Either way: liveness.
    Heartbeat,
    /// One encoded message.
    Data(Bytes),
    /// Server → client: the kick JSON.
    Kick(Bytes),
}

impl Package {
    /// The package's type.
    pub fn package_type(&self) -> PackageType {
        match self {
            Package::Handshake(_) => PackageType::Handshake,
            Package::HandshakeAck => PackageType::HandshakeAck,
            Package::Heartbeat => PackageType::Heartbeat,
            Package::Data(_) => PackageType::Data,
            Package::Kick(_) => PackageType::Kick,
        }
    }

    /// The body (empty for an ack or a heartbeat).
    pub fn body(&self) -> &[u8] {
        match self {
            Package::Handshake(b) | Package::Data(b) | Package::Kick(b) => b,
            Package::HandshakeAck | Package::Heartbeat => &[],
        }
    }

    /// Bytes on the wire: header and body.
    pub fn wire_len(&self) -> usize {
        HEADER_LEN + self.body().len()
    }

    /// A package of type `package_type` with `body`; `None` for an ack or heartbeat with a
    /// non-empty body.
    pub fn from_parts(package_type: PackageType, body: Bytes) -> Option<Package> {
        Some(match package_type {
            PackageType::Handshake => Package::Handshake(body),
            PackageType::Data => Package::Data(body),
            PackageType::Kick => Package::Kick(body),
            PackageType::HandshakeAck if body.is_empty() => Package::HandshakeAck,
            PackageType::Heartbeat if body.is_empty() => Package::Heartbeat,
            _ => return None,
        })
    }
}

/// Writes a package header. `len` must be at most [`MAX_BODY_LENGTH_CAP`] (checked by the callers).
#[inline]
pub(crate) fn put_header(dst: &mut BytesMut, package_type: PackageType, len: usize) {
    debug_assert!(len <= MAX_BODY_LENGTH_CAP);
    let [_, a, b, c] = (len as u32).to_be_bytes();
    dst.put_slice(&[package_type.as_u8(), a, b, c]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_round_trip_and_names() {
        for t in PackageType::ALL {
            assert_eq!(PackageType::from_u8(t.as_u8()), Some(t));
        }
        for b in [0u8, 6, 0x7f, 0xff] {
            assert_eq!(PackageType::from_u8(b), None);
        }
        assert_eq!(PackageType::HandshakeAck.to_string(), "handshake ack");
        assert!(!PackageType::Heartbeat.has_body() && PackageType::Kick.has_body());
    }

    #[test]
    fn header_is_type_and_u24_be() {
        let mut b = BytesMut::new();
        put_header(&mut b, PackageType::Data, 0x01_02_03);
        assert_eq!(&b[..], [4, 1, 2, 3]);
        assert_eq!(Package::Data(Bytes::from_static(b"ab")).wire_len(), 6);
    }

    #[test]
    fn from_parts_refuses_control_bodies() {
        assert_eq!(
            Package::from_parts(PackageType::Heartbeat, Bytes::new()),
            Some(Package::Heartbeat)
        );
        assert_eq!(
            Package::from_parts(PackageType::HandshakeAck, Bytes::from_static(b"x")),
            None
        );
    }
}
