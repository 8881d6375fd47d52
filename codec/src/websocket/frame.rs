//! RFC 6455 section 5.2 frame headers: decoding (with every check gatekit makes, in a fixed order,
//! before any payload byte is read), minimal encoding, and payload masking.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! |     Extended payload length continued, if payload len == 127  |
//! + - - - - - - - - - - - - - - - +-------------------------------+
//! |                               | Masking-key, if MASK set to 1 |
//! +-------------------------------+-------------------------------+
//! | Masking-key (continued)       |          Payload Data         |
//! +-------------------------------- - - - - - - - - - - - - - - - +
//! ```
//!
//! A header is 2 to [`MAX_HEADER_LEN`] (14) bytes: 2, plus 2 or 8 for an extended length, plus 4
//! for a masking key.

use bytes::BufMut;
use std::fmt;

/// The longest frame header: 2 bytes, a 64-bit extended length and a 4-byte masking key.
pub const MAX_HEADER_LEN: usize = 14;

/// Which end of the connection is decoding (RFC 6455 section 5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The gate: every incoming frame (from a client) must be masked.
    Server,
    /// A client (the load harness, tests): every incoming frame (from the server) must be
    /// unmasked.
    Client,
}

/// A frame's opcode (RFC 6455 section 5.2). The reserved opcodes 3–7 and 0xB–0xF have no value
/// here: [`decode_header`] refuses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Opcode {
    /// 0x0: the next fragment of a fragmented Text or Binary message.
    Continuation,
    /// 0x1: a UTF-8 text message (or its first fragment).
    Text,
    /// 0x2: a binary message (or its first fragment).
    Binary,
    /// 0x8: the closing handshake; payload = [`parse_close_payload`](super::parse_close_payload).
    Close,
    /// 0x9: a ping; the peer answers with a Pong carrying the same payload.
    Ping,
    /// 0xA: a pong (an answer to a Ping, or an unsolicited heartbeat).
    Pong,
}

impl Opcode {
    /// Close, Ping and Pong (opcodes 0x8–0xA): at most 125 bytes of payload, never fragmented.
    pub fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }

    /// The opcode of the low 4 bits' value `value`; `None` for a reserved opcode or a value
    /// over 0xF.
    pub fn from_u8(value: u8) -> Option<Opcode> {
        Some(match value {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    /// The 4-bit wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }
}

impl fmt::Display for Opcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Opcode::Continuation => "Continuation",
            Opcode::Text => "Text",
            Opcode::Binary => "Binary",
            Opcode::Close => "Close",
            Opcode::Ping => "Ping",
            Opcode::Pong => "Pong",
        };
        write!(f, "{name} (0x{:x})", self.as_u8())
    }
}

/// A decoded (or to-be-encoded) frame header. The payload follows it on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameHeader {
    /// The FIN bit: this is the last (or only) fragment of a message. Always set on control
    /// frames.
    pub fin: bool,
    /// The opcode.
    pub opcode: Opcode,
    /// The masking key, present on every client-to-server frame (unmask the payload with
    /// [`apply_mask`]), absent on every server-to-client frame.
    pub mask: Option<[u8; 4]>,
    /// The payload length, in bytes. Must be below 2^63 to be encodable (RFC 6455: the most
    /// significant bit of the 64-bit length is 0).
    pub payload_len: u64,
}

impl FrameHeader {
    /// The header's length on the wire with the minimal length encoding (what [`encode`] writes):
    /// 2, 4 or 10 bytes, plus 4 with a mask.
    ///
    /// [`encode`]: FrameHeader::encode
    pub fn encoded_len(&self) -> usize {
        let len = match self.payload_len {
            0..=125 => 2,
            126..=0xFFFF => 4,
            _ => 10,
        };
        if self.mask.is_some() {
            len + 4
        } else {
            len
        }
    }

    /// Writes the header into `out` with the minimal length encoding (7-bit up to 125, 16-bit up
    /// to 65,535, 64-bit above) and the RSV bits clear; returns the bytes written
    /// (= [`encoded_len`](FrameHeader::encoded_len)). A `payload_len` of 2^63 or more is written
    /// as is, and refused by every decoder ([`FrameError::LengthOverflow`]).
    pub fn encode(&self, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
        out[0] = (u8::from(self.fin) << 7) | self.opcode.as_u8();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut at = match self.payload_len {
            len @ 0..=125 => {
                out[1] = mask_bit | len as u8;
                2
            }
            len @ 126..=0xFFFF => {
                out[1] = mask_bit | 126;
                out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
                4
            }
            len => {
                out[1] = mask_bit | 127;
                out[2..10].copy_from_slice(&len.to_be_bytes());
                10
            }
        };
        if let Some(mask) = self.mask {
            out[at..at + 4].copy_from_slice(&mask);
            at += 4;
        }
        at
    }

    /// Appends the header to `out`, as [`encode`](FrameHeader::encode) writes it.
    pub fn encode_to(&self, out: &mut impl BufMut) {
        let mut buf = [0; MAX_HEADER_LEN];
        let n = self.encode(&mut buf);
        out.put_slice(&buf[..n]);
    }
}

/// Why a frame header was refused. Every variant is fatal for the connection: the gate sends a
/// Close frame with [`close_code`](FrameError::close_code) and closes (RFC 6455 section 7.1.7,
/// "Fail the WebSocket Connection").
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// One of RSV1, RSV2, RSV3 is set; gatekit negotiates no extension, so all must be 0.
    #[error("frame header byte 0: reserved bits {bits:#05b} (RSV1..RSV3) are set; no extension was negotiated, so they must be 0")]
    ReservedBits {
        /// RSV1, RSV2, RSV3 as a 3-bit number (RSV1 = 0b100).
        bits: u8,
    },
    /// The opcode is one of the reserved 0x3–0x7 (data) or 0xB–0xF (control).
    #[error("frame header byte 0: opcode 0x{opcode:x} is reserved (known: 0x0-0x2, 0x8-0xA)")]
    ReservedOpcode {
        /// The 4-bit opcode.
        opcode: u8,
    },
    /// A control frame (Close, Ping, Pong) without FIN: control frames must not be fragmented.
    #[error("frame header byte 0: control frame {opcode} has FIN clear; control frames must not be fragmented")]
    FragmentedControl {
        /// The control frame's opcode.
        opcode: Opcode,
    },
    /// A control frame with a 16- or 64-bit extended length, i.e. a payload over
    /// [`MAX_CONTROL_PAYLOAD`](super::MAX_CONTROL_PAYLOAD) (125) bytes. Refused from the second
    /// byte alone.
    #[error("frame header byte 1: control frame {opcode} has payload length field {len} (an extended length); control payloads must be at most 125 bytes")]
    ControlTooLong {
        /// The control frame's opcode.
        opcode: Opcode,
        /// The 7-bit payload length field: 126 (a 16-bit length follows) or 127 (64-bit).
        len: u8,
    },
    /// A server received a frame without a masking key (every client frame must be masked).
    #[error("frame header byte 1: frame from a client is not masked; every client-to-server frame must be")]
    Unmasked,
    /// A client received a frame with a masking key (server frames must not be masked).
    #[error(
        "frame header byte 1: frame from a server is masked; server-to-client frames must not be"
    )]
    MaskedFromServer,
    /// The 64-bit extended length has its most significant bit set.
    #[error("frame header bytes 2-9: 64-bit payload length {len:#018x} has its most significant bit set")]
    LengthOverflow {
        /// The 64-bit length as read.
        len: u64,
    },
    /// The length is not in the minimal encoding: a 16-bit length under 126, or a 64-bit one
    /// under 65,536 (RFC 6455 section 5.2: the minimal number of bytes MUST be used).
    #[error("frame header: payload length {len} is sent as {}; the minimal encoding ({}) must be used", if *.len < 126 { "a 16-bit extended length" } else { "a 64-bit extended length" }, if *.len < 126 { "the 7-bit field" } else { "a 16-bit extended length" })]
    NonMinimalLength {
        /// The payload length.
        len: u64,
    },
    /// The payload is over the configured maximum; refused from the header, before any payload
    /// byte is read.
    #[error("frame header: payload length {len} is over the maximum of {max} bytes (refused from the header; nothing buffered)")]
    TooLong {
        /// The announced payload length.
        len: u64,
        /// The maximum payload length given to [`decode_header`].
        max: u64,
    },
}

impl FrameError {
    /// The close code to send before closing: 1009 (message too big) for
    /// [`TooLong`](FrameError::TooLong), 1002 (protocol error) for every other variant.
    pub fn close_code(&self) -> u16 {
        match self {
            FrameError::TooLong { .. } => super::close_code::MESSAGE_TOO_BIG,
            _ => super::close_code::PROTOCOL_ERROR,
        }
    }
}

/// Decodes the frame header at the start of `input`, as `role` receives it, refusing a payload
/// over `max_payload` bytes.
///
/// Returns `Ok(None)` while `input` holds only part of the header (a header never needs more than
/// [`MAX_HEADER_LEN`] bytes), else `Ok(Some((header, header_len)))`: the payload starts at
/// `input[header_len..]`. The checks run in this order, each as soon as the bytes it needs are
/// there (so a bad first or second byte is refused before the rest of the header arrives):
///
/// 1. byte 0: RSV1–3 clear ([`FrameError::ReservedBits`]), the opcode known
///    ([`FrameError::ReservedOpcode`]), FIN set on a control frame
///    ([`FrameError::FragmentedControl`]);
/// 2. byte 1: a control frame's length within 125 ([`FrameError::ControlTooLong`]), the mask bit
///    as `role` requires ([`FrameError::Unmasked`], [`FrameError::MaskedFromServer`]);
/// 3. extended length: most significant bit of a 64-bit length clear
///    ([`FrameError::LengthOverflow`]), minimal encoding ([`FrameError::NonMinimalLength`]), at
///    most `max_payload` ([`FrameError::TooLong`]).
///
/// ```
/// use gatekit_codec::websocket::{decode_header, Opcode, Role};
///
/// // RFC 6455 section 5.7: a single-frame masked text message "Hello".
/// let wire = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
/// let (header, len) = decode_header(&wire, Role::Server, 1 << 20).unwrap().unwrap();
/// assert_eq!((header.opcode, header.payload_len, len), (Opcode::Text, 5, 6));
/// assert_eq!(decode_header(&wire[..5], Role::Server, 1 << 20), Ok(None));
/// ```
pub fn decode_header(
    input: &[u8],
    role: Role,
    max_payload: u64,
) -> Result<Option<(FrameHeader, usize)>, FrameError> {
    let Some(&b0) = input.first() else {
        return Ok(None);
    };
    let rsv = (b0 >> 4) & 0b111;
    if rsv != 0 {
        return Err(FrameError::ReservedBits { bits: rsv });
    }
    let opcode =
        Opcode::from_u8(b0 & 0x0F).ok_or(FrameError::ReservedOpcode { opcode: b0 & 0x0F })?;
    let fin = b0 & 0x80 != 0;
    if opcode.is_control() && !fin {
        return Err(FrameError::FragmentedControl { opcode });
    }
    let Some(&b1) = input.get(1) else {
        return Ok(None);
    };
    let len7 = b1 & 0x7F;
    if opcode.is_control() && len7 > 125 {
        return Err(FrameError::ControlTooLong { opcode, len: len7 });
    }
    let masked = b1 & 0x80 != 0;
    match (role, masked) {
        (Role::Server, false) => return Err(FrameError::Unmasked),
        (Role::Client, true) => return Err(FrameError::MaskedFromServer),
        _ => {}
    }
    let (payload_len, mut at) = match len7 {
        126 => {
            let Some(bytes) = input.get(2..4) else {
                return Ok(None);
            };
            let len = u64::from(u16::from_be_bytes([bytes[0], bytes[1]]));
            if len < 126 {
                return Err(FrameError::NonMinimalLength { len });
            }
            (len, 4)
        }
        127 => {
            let Some(bytes) = input.get(2..10) else {
                return Ok(None);
            };
            let mut be = [0; 8];
            be.copy_from_slice(bytes);
            let len = u64::from_be_bytes(be);
            if len >> 63 != 0 {
                return Err(FrameError::LengthOverflow { len });
            }
            if len <= 0xFFFF {
                return Err(FrameError::NonMinimalLength { len });
            }
            (len, 10)
        }
        len => (u64::from(len), 2),
    };
    if payload_len > max_payload {
        return Err(FrameError::TooLong {
            len: payload_len,
            max: max_payload,
        });
    }
    let mask = if masked {
        let Some(bytes) = input.get(at..at + 4) else {
            return Ok(None);
        };
        at += 4;
        Some([bytes[0], bytes[1], bytes[2], bytes[3]])
    } else {
        None
    };
    Ok(Some((
        FrameHeader {
            fin,
            opcode,
            mask,
            payload_len,
        },
        at,
    )))
}

/// XORs `data` with the masking key (RFC 6455 section 5.3), in place: masks and unmasks alike.
///
/// `offset` is how many bytes of the payload come before `data` (were already unmasked), so a
/// payload can be unmasked piece by piece as it arrives: the byte at payload position `i` is
/// XORed with `mask[i % 4]`. Processes 8 bytes at a time.
///
/// ```
/// use gatekit_codec::websocket::apply_mask;
///
/// let mask = [0x37, 0xfa, 0x21, 0x3d];
/// let mut payload = *b"\x7f\x9f\x4d\x51\x58";
/// apply_mask(mask, 0, &mut payload[..2]);
/// apply_mask(mask, 2, &mut payload[2..]);
/// assert_eq!(&payload, b"Hello");
/// ```
pub fn apply_mask(mask: [u8; 4], offset: usize, data: &mut [u8]) {
    let mut rotated = mask;
    rotated.rotate_left(offset % 4);
    let [a, b, c, d] = rotated;
    let word = u64::from_ne_bytes([a, b, c, d, a, b, c, d]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
    for (byte, m) in chunks
        .into_remainder()
        .iter_mut()
        .zip(rotated.iter().cycle())
    {
        *byte ^= m;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAX: u64 = u64::MAX;

    fn hex(bytes: &[u8]) -> String {
        bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn encoded(h: &FrameHeader) -> Vec<u8> {
        let mut buf = [0; MAX_HEADER_LEN];
        let n = h.encode(&mut buf);
        buf[..n].to_vec()
    }

    #[test]
    fn rfc_6455_examples() {
        // Section 5.7.
        let hello_unmasked = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let (h, n) = decode_header(&hello_unmasked, Role::Client, MAX)
            .unwrap()
            .unwrap();
        assert_eq!(
            (h.fin, h.opcode, h.mask, h.payload_len, n),
            (true, Opcode::Text, None, 5, 2)
        );
        let mut masked = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let (h, n) = decode_header(&masked, Role::Server, MAX).unwrap().unwrap();
        assert_eq!(h.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
        apply_mask(h.mask.unwrap(), 0, &mut masked[n..]);
        assert_eq!(&masked[n..], b"Hello");
        // Fragmented: "Hel" then "lo".
        let (h, _) = decode_header(&[0x01, 0x03], Role::Client, MAX)
            .unwrap()
            .unwrap();
        assert_eq!((h.fin, h.opcode), (false, Opcode::Text));
        let (h, _) = decode_header(&[0x80, 0x02], Role::Client, MAX)
            .unwrap()
            .unwrap();
        assert_eq!((h.fin, h.opcode), (true, Opcode::Continuation));
        // 256 bytes and 64 KiB binary, unmasked.
        let (h, n) = decode_header(&[0x82, 0x7E, 0x01, 0x00], Role::Client, MAX)
            .unwrap()
            .unwrap();
        assert_eq!((h.payload_len, n), (256, 4));
        let big = [0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00];
        let (h, n) = decode_header(&big, Role::Client, MAX).unwrap().unwrap();
        assert_eq!((h.payload_len, n), (65_536, 10));
    }

    #[test]
    fn each_refusal() {
        use FrameError::*;
        let cases: Vec<(&[u8], Role, u64, FrameError)> = vec![
            (&[0xC1], Role::Server, MAX, ReservedBits { bits: 0b100 }),
            (&[0x91], Role::Server, MAX, ReservedBits { bits: 0b001 }),
            (&[0x83], Role::Server, MAX, ReservedOpcode { opcode: 3 }),
            (&[0x8F], Role::Client, MAX, ReservedOpcode { opcode: 0xF }),
            (
                &[0x09],
                Role::Server,
                MAX,
                FragmentedControl {
                    opcode: Opcode::Ping,
                },
            ),
            (
                &[0x88, 0xFE],
                Role::Server,
                MAX,
                ControlTooLong {
                    opcode: Opcode::Close,
                    len: 126,
                },
            ),
            (&[0x82, 0x05], Role::Server, MAX, Unmasked),
            (&[0x82, 0x85], Role::Client, MAX, MaskedFromServer),
            (
                &[0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0],
                Role::Client,
                MAX,
                LengthOverflow {
                    len: 0x8000_0000_0000_0000,
                },
            ),
            (
                &[0x82, 0x7E, 0x00, 0x7D],
                Role::Client,
                MAX,
                NonMinimalLength { len: 125 },
            ),
            (
                &[0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF],
                Role::Client,
                MAX,
                NonMinimalLength { len: 65_535 },
            ),
            (
                &[0x82, 0x7E, 0x01, 0x00],
                Role::Client,
                255,
                TooLong { len: 256, max: 255 },
            ),
            // The masking key has not arrived, but the length is already too much.
            (
                &[0x82, 0xFE, 0x01, 0x00],
                Role::Server,
                255,
                TooLong { len: 256, max: 255 },
            ),
        ];
        for (input, role, max, want) in cases {
            assert_eq!(decode_header(input, role, max), Err(want), "{}", hex(input));
            assert_eq!(
                want.close_code(),
                if matches!(want, TooLong { .. }) {
                    1009
                } else {
                    1002
                }
            );
        }
    }

    #[test]
    fn error_messages() {
        let errors = [
            FrameError::ReservedBits { bits: 0b100 },
            FrameError::ReservedOpcode { opcode: 0xB },
            FrameError::FragmentedControl {
                opcode: Opcode::Close,
            },
            FrameError::ControlTooLong {
                opcode: Opcode::Ping,
                len: 127,
            },
            FrameError::Unmasked,
            FrameError::MaskedFromServer,
            FrameError::LengthOverflow { len: u64::MAX },
            FrameError::NonMinimalLength { len: 5 },
            FrameError::NonMinimalLength { len: 300 },
            FrameError::TooLong {
                len: 1 << 20,
                max: 65_536,
            },
        ];
        let text: Vec<String> = errors
            .iter()
            .map(|e| format!("{} -> {e}", e.close_code()))
            .collect();
        insta::assert_snapshot!(text.join("\n"));
    }

    #[test]
    fn encoded_headers() {
        let headers = [
            ("text 5 from server", true, Opcode::Text, None, 5),
            (
                "text 5 from client",
                true,
                Opcode::Text,
                Some([0x37, 0xfa, 0x21, 0x3d]),
                5,
            ),
            ("binary 125", true, Opcode::Binary, None, 125),
            ("binary 126", true, Opcode::Binary, None, 126),
            ("binary 65535", false, Opcode::Binary, None, 65_535),
            (
                "continuation 65536 masked",
                true,
                Opcode::Continuation,
                Some([1, 2, 3, 4]),
                65_536,
            ),
            ("close 2", true, Opcode::Close, None, 2),
            ("ping 0", true, Opcode::Ping, None, 0),
            ("pong max", true, Opcode::Pong, Some([0xff; 4]), 125),
            ("binary 2^63-1", true, Opcode::Binary, None, (1 << 63) - 1),
        ];
        let mut text = String::new();
        for (name, fin, opcode, mask, payload_len) in headers {
            let h = FrameHeader {
                fin,
                opcode,
                mask,
                payload_len,
            };
            let bytes = encoded(&h);
            assert_eq!(bytes.len(), h.encoded_len());
            let mut buf = Vec::new();
            h.encode_to(&mut buf);
            assert_eq!(buf, bytes);
            text += &format!("{name}: {}\n", hex(&bytes));
        }
        insta::assert_snapshot!(text);
    }

    #[test]
    fn opcode_values() {
        for v in 0..=255u8 {
            match Opcode::from_u8(v) {
                Some(op) => {
                    assert_eq!(op.as_u8(), v);
                    assert_eq!(op.is_control(), v >= 8);
                }
                None => assert!(!matches!(v, 0..=2 | 8..=10)),
            }
        }
    }

    #[test]
    fn mask_long_and_unaligned() {
        let mask = [0xde, 0xad, 0xbe, 0xef];
        let original: Vec<u8> = (0..100u8).collect();
        for offset in 0..8 {
            for start in 0..9 {
                let mut data = original[start..].to_vec();
                apply_mask(mask, offset, &mut data);
                for (i, b) in data.iter().enumerate() {
                    assert_eq!(*b, original[start + i] ^ mask[(offset + i) % 4]);
                }
            }
        }
    }

    fn opcode() -> impl Strategy<Value = Opcode> {
        prop_oneof![
            Just(Opcode::Continuation),
            Just(Opcode::Text),
            Just(Opcode::Binary),
            Just(Opcode::Close),
            Just(Opcode::Ping),
            Just(Opcode::Pong),
        ]
    }

    fn payload_len() -> impl Strategy<Value = u64> {
        prop_oneof![
            0..=125u64,
            126..=0xFFFFu64,
            0x1_0000..=(u64::MAX >> 1),
            Just(u64::MAX >> 1)
        ]
    }

    /// A valid header as `role` receives it.
    fn header() -> impl Strategy<Value = (FrameHeader, Role)> {
        (
            any::<bool>(),
            opcode(),
            any::<[u8; 4]>(),
            payload_len(),
            any::<bool>(),
        )
            .prop_map(|(fin, opcode, key, len, server)| {
                let control = opcode.is_control();
                let role = if server { Role::Server } else { Role::Client };
                let header = FrameHeader {
                    fin: fin || control,
                    opcode,
                    mask: server.then_some(key),
                    payload_len: if control { len % 126 } else { len },
                };
                (header, role)
            })
    }

    fn naive(mask: [u8; 4], offset: usize, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b ^= mask[(offset + i) % 4];
        }
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip((h, role) in header(), extra in proptest::collection::vec(any::<u8>(), 0..4)) {
            let mut wire = encoded(&h);
            let n = wire.len();
            prop_assert_eq!(n, h.encoded_len());
            wire.extend(extra);
            prop_assert_eq!(decode_header(&wire, role, u64::MAX), Ok(Some((h, n))));
            prop_assert_eq!(decode_header(&wire, role, h.payload_len), Ok(Some((h, n))));
            if h.payload_len > 0 {
                prop_assert_eq!(
                    decode_header(&wire, role, h.payload_len - 1),
                    Err(FrameError::TooLong { len: h.payload_len, max: h.payload_len - 1 })
                );
            }
            let other = if role == Role::Server { Role::Client } else { Role::Server };
            prop_assert!(matches!(
                decode_header(&wire, other, u64::MAX),
                Err(FrameError::Unmasked | FrameError::MaskedFromServer)
            ));
        }

        #[test]
        fn prefix_is_incomplete((h, role) in header()) {
            let wire = encoded(&h);
            for cut in 0..wire.len() {
                prop_assert_eq!(decode_header(&wire[..cut], role, u64::MAX), Ok(None), "cut {}", cut);
            }
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..16), server: bool, max: u64) {
            let role = if server { Role::Server } else { Role::Client };
            match decode_header(&bytes, role, max) {
                Ok(None) => prop_assert!(bytes.len() < MAX_HEADER_LEN),
                Ok(Some((h, n))) => {
                    // Every accepted header is minimal, so it re-encodes to its bytes.
                    prop_assert!(n <= MAX_HEADER_LEN && n <= bytes.len());
                    prop_assert!(h.payload_len <= max);
                    prop_assert_eq!(encoded(&h), &bytes[..n]);
                }
                Err(_) => {}
            }
        }

        #[test]
        fn mask_in_pieces(
            mask: [u8; 4],
            data in proptest::collection::vec(any::<u8>(), 0..200),
            cuts in proptest::collection::vec(0..200usize, 0..6),
            start in 0..8usize,
        ) {
            let mut whole = data.clone();
            apply_mask(mask, start, &mut whole);
            let mut reference = data.clone();
            naive(mask, start, &mut reference);
            prop_assert_eq!(&whole, &reference);

            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.push(0);
            cuts.push(data.len());
            cuts.sort_unstable();
            let mut pieces = data.clone();
            for w in cuts.windows(2) {
                apply_mask(mask, start + w[0], &mut pieces[w[0]..w[1]]);
            }
            prop_assert_eq!(&pieces, &whole);

            apply_mask(mask, start, &mut whole);
            prop_assert_eq!(whole, data);
        }
    }
}
