//! The payload of a Close frame (RFC 6455 section 5.5.1): empty, or a big-endian u16 status
//! code followed by a UTF-8 reason; at most [`MAX_CONTROL_PAYLOAD`] bytes in all.

use bytes::BufMut;

/// The longest payload of a control frame (Close, Ping, Pong): 125 bytes.
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// The longest reason [`encode_close_payload`] writes: the control payload minus the 2-byte code.
const MAX_REASON: usize = MAX_CONTROL_PAYLOAD - 2;

/// The close codes gatekit sends (RFC 6455 section 7.4.1), and when.
pub mod close_code {
    /// 1000: the gate or the back end closed the session normally (a kick, a logout, the answer
    /// to the client's own Close).
    pub const NORMAL: u16 = 1000;
    /// 1001: the gate is shutting down or draining the listener.
    pub const GOING_AWAY: u16 = 1001;
    /// 1002: the client broke the framing rules ([`FrameError`](super::super::FrameError), a
    /// Close payload of one byte or with an invalid code, a Continuation with no message to
    /// continue, a new message inside a fragmented one).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// 1003: the client sent a kind of message the gate's protocol does not take (Text where the
    /// protocol is binary).
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// 1007: a Text message or a Close reason that is not UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// 1008: the session broke a policy of the gate (authentication refused, rate limit, an
    /// origin not allowed) and no more specific code fits.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// 1009: a frame or a reassembled message over the gate's maximum.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// 1011: the gate or the back end failed while handling the session.
    pub const INTERNAL_ERROR: u16 = 1011;
}

/// Whether a peer may send `code` in a Close frame: 1000–1003, 1007–1014 (assigned by RFC 6455
/// and the IANA registry) and 3000–4999 (libraries, frameworks and applications). 1004 (reserved),
/// 1005, 1006 and 1015 (only for reporting, never sent), the rest of 1016–2999, 0–999 and 5000
/// and up are invalid.
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Why a Close frame's payload was refused. The gate answers with a Close frame carrying
/// [`close_code`](CloseFrameError::close_code) and closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseFrameError {
    /// The payload is one byte: too short for the 2-byte code, and not empty.
    #[error("Close frame payload is 1 byte; it must be empty or start with a 2-byte status code")]
    OneByte,
    /// The status code is one a peer must not send ([`is_valid_close_code`]).
    #[error("Close frame status code {code} is not one a peer may send (valid: 1000-1003, 1007-1014, 3000-4999)")]
    InvalidCode {
        /// The code found.
        code: u16,
    },
    /// The reason is not UTF-8.
    #[error(
        "Close frame reason is not UTF-8 (the first {valid_up_to} bytes after the code are valid)"
    )]
    InvalidUtf8 {
        /// Length of the reason's valid UTF-8 prefix.
        valid_up_to: usize,
    },
}

impl CloseFrameError {
    /// The close code to answer with: 1007 (invalid payload) for
    /// [`InvalidUtf8`](CloseFrameError::InvalidUtf8), 1002 (protocol error) otherwise.
    pub fn close_code(&self) -> u16 {
        match self {
            CloseFrameError::InvalidUtf8 { .. } => close_code::INVALID_PAYLOAD,
            _ => close_code::PROTOCOL_ERROR,
        }
    }
}

/// Parses an (unmasked) Close payload: `Ok(None)` for an empty payload (no status code),
/// `Ok(Some((code, reason)))` otherwise. The payload's length (at most 125) was checked with the
/// frame header.
///
/// ```
/// use gatekit_codec::websocket::parse_close_payload;
///
/// assert_eq!(parse_close_payload(b"\x03\xe8bye"), Ok(Some((1000, "bye"))));
/// assert_eq!(parse_close_payload(b""), Ok(None));
/// ```
pub fn parse_close_payload(payload: &[u8]) -> Result<Option<(u16, &str)>, CloseFrameError> {
    match payload {
        [] => Ok(None),
        [_] => Err(CloseFrameError::OneByte),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_close_code(code) {
                return Err(CloseFrameError::InvalidCode { code });
            }
            let reason = std::str::from_utf8(reason).map_err(|e| CloseFrameError::InvalidUtf8 {
                valid_up_to: e.valid_up_to(),
            })?;
            Ok(Some((code, reason)))
        }
    }
}

/// Appends a Close payload to `out`: `code` big-endian, then `reason` cut to at most 123 bytes
/// at a character boundary (so the payload fits in a control frame).
///
/// ```
/// use gatekit_codec::websocket::encode_close_payload;
///
/// let mut out = Vec::new();
/// encode_close_payload(1001, "restarting", &mut out);
/// assert_eq!(out, b"\x03\xe9restarting");
/// ```
pub fn encode_close_payload(code: u16, reason: &str, out: &mut impl BufMut) {
    let mut end = reason.len().min(MAX_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    out.put_u16(code);
    out.put_slice(&reason.as_bytes()[..end]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn valid_codes() {
        let valid: Vec<u16> = (0..=u16::MAX).filter(|c| is_valid_close_code(*c)).collect();
        assert_eq!(valid.len(), 4 + 8 + 2000);
        for code in [1004, 1005, 1006, 1015, 1016, 2999, 999, 0, 5000, u16::MAX] {
            assert!(!is_valid_close_code(code), "{code}");
        }
        for code in [
            close_code::NORMAL,
            close_code::GOING_AWAY,
            close_code::PROTOCOL_ERROR,
            close_code::UNSUPPORTED_DATA,
            close_code::INVALID_PAYLOAD,
            close_code::POLICY_VIOLATION,
            close_code::MESSAGE_TOO_BIG,
            close_code::INTERNAL_ERROR,
        ] {
            assert!(is_valid_close_code(code), "{code}");
        }
    }

    #[test]
    fn refusals() {
        assert_eq!(parse_close_payload(b"\x03"), Err(CloseFrameError::OneByte));
        assert_eq!(
            parse_close_payload(b"\x03\xed"),
            Err(CloseFrameError::InvalidCode { code: 1005 })
        );
        assert_eq!(
            parse_close_payload(b"\x03\xe8ok\xff"),
            Err(CloseFrameError::InvalidUtf8 { valid_up_to: 2 })
        );
        assert_eq!(CloseFrameError::OneByte.close_code(), 1002);
        assert_eq!(CloseFrameError::InvalidCode { code: 0 }.close_code(), 1002);
        assert_eq!(
            CloseFrameError::InvalidUtf8 { valid_up_to: 0 }.close_code(),
            1007
        );
        let text = [
            CloseFrameError::OneByte,
            CloseFrameError::InvalidCode { code: 1006 },
            CloseFrameError::InvalidUtf8 { valid_up_to: 3 },
        ]
        .map(|e| e.to_string())
        .join("\n");
        insta::assert_snapshot!(text);
    }

    #[test]
    fn encoded_payloads() {
        let cases = [
            (close_code::NORMAL, ""),
            (close_code::GOING_AWAY, "gate restarting"),
            (
                close_code::MESSAGE_TOO_BIG,
                "frame of 70000 bytes over 65536",
            ),
            // 61 two-byte characters = 122 bytes, then one more: cut before it.
            (close_code::POLICY_VIOLATION, &"é".repeat(62)),
        ];
        let mut text = String::new();
        for (code, reason) in cases {
            let mut out = Vec::new();
            encode_close_payload(code, reason, &mut out);
            assert!(out.len() <= MAX_CONTROL_PAYLOAD);
            let hex: Vec<String> = out.iter().map(|b| format!("{b:02x}")).collect();
            text += &format!(
                "{code} {reason:?}: {} bytes: {}\n",
                out.len(),
                hex.join(" ")
            );
        }
        insta::assert_snapshot!(text);
    }

    proptest! {
        #[test]
        fn encode_parse_round_trip(code in prop_oneof![1000..=1003u16, 1007..=1014u16, 3000..=4999u16], reason in ".{0,80}") {
            let mut out = Vec::new();
            encode_close_payload(code, &reason, &mut out);
            prop_assert!(out.len() <= MAX_CONTROL_PAYLOAD);
            let (c, r) = parse_close_payload(&out).unwrap().unwrap();
            prop_assert_eq!(c, code);
            prop_assert!(reason.starts_with(r));
            prop_assert!(r.len() == reason.len() || r.len() + 4 > MAX_REASON);
        }

        #[test]
        fn parse_never_panics(payload in proptest::collection::vec(any::<u8>(), 0..130)) {
            let _ = parse_close_payload(&payload);
        }
    }
}
