//! The nom 8 parsers behind [`MqttCodec`](super::MqttCodec), one small named parser per MQTT wire
//! element, for users who compose their own.
//!
//! - **Streaming** parsers for the fixed header ([`remaining_length`], [`fixed_header`]) return
//!   `Err(nom::Err::Incomplete(_))` while the header has not fully arrived, and refuse a remaining
//!   length over the maximum as soon as the bytes seen so far prove it too large.
//! - **Complete** parsers for the elements inside a packet that has fully arrived
//!   ([`packet_id`], [`string`], [`topic_name`], ...): a missing byte is [`Fault::Short`].
//!
//! Faults carry no field names or offsets: the decoder adds those, knowing where it is.
//!
//! ```
//! use gatekit_codec::mqtt::parsers::{fixed_header, packet_id, topic_name};
//! use nom::Parser;
//!
//! let wire = b"\x32\x09\x00\x03a/b\x00\x07hi";
//! let (body, header) = fixed_header(65_535)(&wire[..]).unwrap();
//! assert_eq!((header.byte1, header.remaining_len, header.header_len), (0x32, 9, 2));
//! let (payload, (topic, id)) = (topic_name(255), packet_id).parse(body).unwrap();
//! assert_eq!((topic, id.get(), payload), ("a/b", 7, &b"hi"[..]));
//! ```

use super::packet::{PacketId, QoS};
use nom::error::{ErrorKind, ParseError};
use nom::{Err, IResult, Needed};

/// Why a parser in this module failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// A complete parser ran out of input: the element needs `needed` bytes.
    Short {
        /// Bytes the element needs.
        needed: usize,
    },
    /// The remaining length has its continuation bit set in all 4 of its bytes.
    LengthTooLong,
    /// The remaining length is not minimally encoded (it ends with a zero byte).
    LengthNotMinimal {
        /// Bytes it took.
        bytes: usize,
        /// Its value.
        value: u32,
    },
    /// The remaining length is over the maximum packet size. With `exact: false`, the length has
    /// not fully arrived and `len` is the least it can be (the bytes seen, the next non-zero).
    LengthOverMax {
        /// The length, or its lower bound.
        len: u32,
        /// Whether `len` is the length itself.
        exact: bool,
        /// Length bytes read when refused.
        bytes: usize,
    },
    /// A packet id is zero.
    ZeroPacketId,
    /// Text is not UTF-8; `at` is the first bad byte, counted from the text's start.
    Utf8 {
        /// Offset in the text.
        at: usize,
    },
    /// Text contains U+0000 at `at` (counted from the text's start).
    Nul {
        /// Offset in the text.
        at: usize,
    },
    /// A topic is empty.
    Empty,
    /// A topic name has a wildcard at `at` (counted from the text's start).
    Wildcard {
        /// Offset in the text.
        at: usize,
    },
    /// A topic filter has a misplaced wildcard at `at` (counted from the text's start).
    BadFilter {
        /// Offset in the text.
        at: usize,
    },
    /// An element is longer than its limit.
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A QoS field holds 3.
    QoS3,
    /// Reserved bits are set in a byte (`value` is the whole byte).
    Reserved {
        /// The byte.
        value: u8,
    },
    /// A fixed-size element has bytes after its end.
    Trailing {
        /// How many.
        extra: usize,
    },
    /// Some other nom failure (not produced by the parsers of this module).
    Nom(ErrorKind),
}

impl<I: nom::Input> ParseError<I> for Fault {
    fn from_error_kind(input: I, kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::Eof => Fault::Short {
                needed: input.input_len() + 1,
            },
            other => Fault::Nom(other),
        }
    }

    fn append(_: I, _: ErrorKind, other: Self) -> Self {
        other
    }
}

/// The result type of every parser in this module.
pub type PResult<'a, T> = IResult<&'a [u8], T, Fault>;

#[inline(always)]
fn fail<T>(fault: Fault) -> Result<T, Err<Fault>> {
    Err(Err::Error(fault))
}

/// The largest remaining length MQTT can express: 268,435,455 (4 bytes of 7 bits).
pub const MAX_REMAINING_LENGTH: u32 = (1 << 28) - 1;

/// Streaming parser for the remaining length: 1 to 4 bytes, 7 bits each, least significant group
/// first, high bit set on every byte but the last; minimal encoding only.
///
/// Refuses a length over `max` from the bytes seen so far: after `k` bytes with the continuation
/// bit, the length is at least their value plus 128^k (the last byte is not zero), so with
/// `max` = 65,535 `ff ff ff` is refused before the 4th byte arrives. Read one byte at a time, the
/// outcome does not depend on how the bytes arrive.
#[inline]
pub fn remaining_length(max: usize) -> impl Fn(&[u8]) -> PResult<'_, u32> {
    move |input: &[u8]| {
        // Fast path: one byte, the common case for small packets.
        if let Some(&b) = input.first() {
            if b < 0x80 {
                if usize::from(b) > max {
                    return Err(Err::Failure(Fault::LengthOverMax {
                        len: u32::from(b),
                        exact: true,
                        bytes: 1,
                    }));
                }
                return Ok((&input[1..], u32::from(b)));
            }
        }
        let mut value: u32 = 0;
        for i in 0..4 {
            let Some(&b) = input.get(i) else {
                return Err(Err::Incomplete(Needed::new(1)));
            };
            value |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if b == 0 && i > 0 {
                    return Err(Err::Failure(Fault::LengthNotMinimal {
                        bytes: i + 1,
                        value,
                    }));
                }
                if value as usize > max {
                    return Err(Err::Failure(Fault::LengthOverMax {
                        len: value,
                        exact: true,
                        bytes: i + 1,
                    }));
                }
                return Ok((&input[i + 1..], value));
            }
            if i == 3 {
                return Err(Err::Failure(Fault::LengthTooLong));
            }
            let at_least = value + (1 << (7 * (i + 1)));
            if at_least as usize > max {
                return Err(Err::Failure(Fault::LengthOverMax {
                    len: at_least,
                    exact: false,
                    bytes: i + 1,
                }));
            }
        }
        unreachable!("the loop returns by its 4th byte")
    }
}

/// Bytes the remaining length `len` takes (1 to 4), or `None` above [`MAX_REMAINING_LENGTH`].
#[inline]
pub const fn remaining_length_len(len: usize) -> Option<usize> {
    match len {
        0..=0x7f => Some(1),
        0x80..=0x3fff => Some(2),
        0x4000..=0x1f_ffff => Some(3),
        0x20_0000..=0x0fff_ffff => Some(4),
        _ => None,
    }
}

/// Writes a remaining length (which must be at most [`MAX_REMAINING_LENGTH`]; the encoder checks).
#[inline]
pub fn put_remaining_length(dst: &mut bytes::BytesMut, mut len: usize) {
    use bytes::BufMut;
    debug_assert!(len <= MAX_REMAINING_LENGTH as usize);
    while len >= 0x80 {
        dst.put_u8((len as u8 & 0x7f) | 0x80);
        len >>= 7;
    }
    dst.put_u8(len as u8);
}

/// A parsed fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedHeader {
    /// The first byte: packet type (high nibble) and flags (low nibble).
    pub byte1: u8,
    /// The remaining length: bytes of the packet after the fixed header.
    pub remaining_len: u32,
    /// Bytes of the fixed header (2 to 5).
    pub header_len: usize,
}

/// Streaming parser for the fixed header: the type-and-flags byte and the remaining length (at
/// most `max`, see [`remaining_length`]).
#[inline]
pub fn fixed_header(max: usize) -> impl Fn(&[u8]) -> PResult<'_, FixedHeader> {
    move |input: &[u8]| {
        let Some((&byte1, rest)) = input.split_first() else {
            return Err(Err::Incomplete(Needed::new(2)));
        };
        let (body, remaining_len) = remaining_length(max)(rest)?;
        Ok((
            body,
            FixedHeader {
                byte1,
                remaining_len,
                header_len: input.len() - body.len(),
            },
        ))
    }
}

/// Takes `N` bytes of a complete input as an array.
#[inline(always)]
fn array<const N: usize>(input: &[u8]) -> PResult<'_, [u8; N]> {
    match input.split_first_chunk::<N>() {
        Some((head, rest)) => Ok((rest, *head)),
        None => fail(Fault::Short { needed: N }),
    }
}

/// One byte.
#[inline(always)]
pub fn byte(input: &[u8]) -> PResult<'_, u8> {
    array::<1>(input).map(|(rest, [b])| (rest, b))
}

/// A big-endian u16 (keep alive, lengths).
#[inline(always)]
pub fn be_u16(input: &[u8]) -> PResult<'_, u16> {
    array::<2>(input).map(|(rest, b)| (rest, u16::from_be_bytes(b)))
}

/// A packet identifier: big-endian u16, not zero.
#[inline(always)]
pub fn packet_id(input: &[u8]) -> PResult<'_, PacketId> {
    let (rest, raw) = be_u16(input)?;
    match PacketId::new(raw) {
        Some(id) => Ok((rest, id)),
        None => fail(Fault::ZeroPacketId),
    }
}

/// A length-prefixed element (u16 big-endian length, then that many bytes) of at most `max`
/// bytes: checked against `max` from the prefix, before the bytes are looked at.
#[inline(always)]
pub fn length_prefixed(max: usize) -> impl Fn(&[u8]) -> PResult<'_, &[u8]> {
    move |input: &[u8]| {
        let (rest, len) = be_u16(input)?;
        let len = usize::from(len);
        if len > max {
            return fail(Fault::TooLong { len, max });
        }
        if rest.len() < len {
            // The whole element (prefix included) is what is short.
            return fail(Fault::Short { needed: len + 2 });
        }
        let (bytes, rest) = rest.split_at(len);
        Ok((rest, bytes))
    }
}

/// Binary data (will payload, password): a length-prefixed element of at most `max` bytes.
#[inline]
pub fn binary(max: usize) -> impl Fn(&[u8]) -> PResult<'_, &[u8]> {
    length_prefixed(max)
}

/// Bytes that may sit in MQTT text without a closer look: not NUL, not a wildcard, ASCII.
const PLAIN: u8 = 0;
/// NUL or a non-ASCII byte: check the text properly.
const CHECK: u8 = 1;
/// `+` or `#`.
const WILD: u8 = 2;

static CLASS: [u8; 256] = {
    let mut t = [PLAIN; 256];
    t[0] = CHECK;
    let mut b = 0x80;
    while b < 256 {
        t[b] = CHECK;
        b += 1;
    }
    t[b'+' as usize] = WILD;
    t[b'#' as usize] = WILD;
    t
};

/// Whether every byte is plain (ASCII, not NUL, not a wildcard), eight bytes at a time.
#[inline(always)]
fn all_plain(bytes: &[u8]) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    // Non-zero iff some byte of `x` is zero (exact as a yes/no answer).
    #[inline(always)]
    fn has_zero(x: u64) -> u64 {
        x.wrapping_sub(LO) & !x & HI
    }
    #[inline(always)]
    fn plain(w: u64) -> bool {
        (w & HI) | has_zero(w) | has_zero(w ^ (LO * b'+' as u64)) | has_zero(w ^ (LO * b'#' as u64))
            == 0
    }
    let n = bytes.len();
    if n < 8 {
        return bytes.iter().all(|&b| CLASS[b as usize] == PLAIN);
    }
    let word = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
    let mut i = 0;
    while i + 8 < n {
        if !plain(word(i)) {
            return false;
        }
        i += 8;
    }
    // The last (possibly overlapping) word.
    plain(word(n - 8))
}

/// Checks MQTT text rules: UTF-8 and no U+0000. (A NUL byte is always U+0000 in UTF-8.) The first
/// offending byte is reported.
#[inline]
pub fn mqtt_utf8(bytes: &[u8]) -> Result<&str, Fault> {
    if bytes.iter().all(|&b| CLASS[b as usize] != CHECK) {
        // SAFETY: no byte is 0x80 or above, so it is ASCII, which is UTF-8.
        return Ok(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    mqtt_utf8_slow(bytes)
}

#[cold]
fn mqtt_utf8_slow(bytes: &[u8]) -> Result<&str, Fault> {
    let nul = bytes.iter().position(|&b| b == 0);
    match std::str::from_utf8(bytes) {
        Ok(s) => match nul {
            Some(at) => Err(Fault::Nul { at }),
            None => Ok(s),
        },
        Err(e) => match nul {
            Some(at) if at < e.valid_up_to() => Err(Fault::Nul { at }),
            _ => Err(Fault::Utf8 {
                at: e.valid_up_to(),
            }),
        },
    }
}

/// Checks the shape of a topic name: not empty, no `+` or `#`.
#[inline]
pub fn topic_name_shape(bytes: &[u8]) -> Result<(), Fault> {
    if bytes.is_empty() {
        return Err(Fault::Empty);
    }
    match bytes.iter().position(|&b| CLASS[b as usize] == WILD) {
        Some(at) => Err(Fault::Wildcard { at }),
        None => Ok(()),
    }
}

/// Checks the shape of a topic filter: not empty; `+` alone in its level; `#` alone in the last
/// level.
pub fn topic_filter_shape(bytes: &[u8]) -> Result<(), Fault> {
    if bytes.is_empty() {
        return Err(Fault::Empty);
    }
    let mut start = 0;
    let levels = bytes.split(|&b| b == b'/');
    let count = bytes.iter().filter(|&&b| b == b'/').count() + 1;
    for (i, level) in levels.enumerate() {
        if let Some(at) = level.iter().position(|&b| b == b'+' || b == b'#') {
            let ok = match level {
                b"+" => true,
                b"#" => i + 1 == count,
                _ => false,
            };
            if !ok {
                return Err(Fault::BadFilter { at: start + at });
            }
        }
        start += level.len() + 1;
    }
    Ok(())
}

/// An MQTT string of at most `max` bytes: length-prefixed UTF-8 without U+0000.
#[inline]
pub fn string(max: usize) -> impl Fn(&[u8]) -> PResult<'_, &str> {
    move |input: &[u8]| {
        let (rest, raw) = length_prefixed(max)(input)?;
        let text = mqtt_utf8(raw).map_err(Err::Error)?;
        Ok((rest, text))
    }
}

/// A topic name of at most `max` bytes: an MQTT string, not empty, without wildcards. The common
/// ASCII case is checked in one pass.
#[inline]
pub fn topic_name(max: usize) -> impl Fn(&[u8]) -> PResult<'_, &str> {
    move |input: &[u8]| {
        let (rest, raw) = length_prefixed(max)(input)?;
        if raw.is_empty() {
            return fail(Fault::Empty);
        }
        if all_plain(raw) {
            // SAFETY: every byte is ASCII.
            return Ok((rest, unsafe { std::str::from_utf8_unchecked(raw) }));
        }
        let text = mqtt_utf8(raw).map_err(Err::Error)?;
        topic_name_shape(raw).map_err(Err::Error)?;
        Ok((rest, text))
    }
}

/// A topic filter of at most `max` bytes: an MQTT string, not empty, wildcards placed validly.
#[inline]
pub fn topic_filter(max: usize) -> impl Fn(&[u8]) -> PResult<'_, &str> {
    move |input: &[u8]| {
        let (rest, raw) = length_prefixed(max)(input)?;
        let text = mqtt_utf8(raw).map_err(Err::Error)?;
        topic_filter_shape(raw).map_err(Err::Error)?;
        Ok((rest, text))
    }
}

/// A QoS in the low two bits of `bits` (0, 1 or 2; 3 is [`Fault::QoS3`]).
#[inline]
pub fn qos_bits(bits: u8) -> Result<QoS, Fault> {
    QoS::from_u8(bits & 0b11).ok_or(Fault::QoS3)
}

/// The PUBLISH fixed-header flags: (DUP, QoS, RETAIN).
#[inline]
pub fn publish_flags(byte1: u8) -> Result<(bool, QoS, bool), Fault> {
    let qos = qos_bits(byte1 >> 1)?;
    Ok((byte1 & 0b1000 != 0, qos, byte1 & 1 != 0))
}

/// A SUBSCRIBE's subscription options byte (3.1.1: the requested QoS; the upper 6 bits reserved).
#[inline]
pub fn subscription_options(input: &[u8]) -> PResult<'_, QoS> {
    let (rest, b) = byte(input)?;
    if b & 0b1111_1100 != 0 {
        return fail(Fault::Reserved { value: b });
    }
    let qos = qos_bits(b).map_err(Err::Error)?;
    Ok((rest, qos))
}

/// The CONNECT flags byte, decoded (its rules are checked by [`connect_flags`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectFlags {
    /// Bit 7: a user name follows.
    pub username: bool,
    /// Bit 6: a password follows.
    pub password: bool,
    /// Bit 2 with bits 4–3 and 5: a will follows, with this QoS and RETAIN.
    pub will: Option<(QoS, bool)>,
    /// Bit 1: clean session.
    pub clean_session: bool,
}

/// The CONNECT flags. Breaking a 3.1.1 rule is [`Fault::Reserved`] (the byte, for the caller to
/// explain with [`connect_flags_rule`]) or [`Fault::QoS3`] for a will QoS of 3.
#[inline]
pub fn connect_flags(input: &[u8]) -> PResult<'_, ConnectFlags> {
    let (rest, b) = byte(input)?;
    if connect_flags_rule(b).is_some() {
        return fail(Fault::Reserved { value: b });
    }
    let will = if b & 0b100 != 0 {
        Some((qos_bits(b >> 3).map_err(Err::Error)?, b & 0b10_0000 != 0))
    } else {
        None
    };
    Ok((
        rest,
        ConnectFlags {
            username: b & 0x80 != 0,
            password: b & 0x40 != 0,
            will,
            clean_session: b & 0b10 != 0,
        },
    ))
}

/// Which 3.1.1 rule a CONNECT flags byte breaks, if any (a will QoS of 3 is not checked here).
pub const fn connect_flags_rule(b: u8) -> Option<&'static str> {
    if b & 1 != 0 {
        Some("the reserved bit 0 is set [MQTT-3.1.2-3]")
    } else if b & 0b100 == 0 && b & 0b11_1000 != 0 {
        Some("will QoS or will retain is set without the will flag [MQTT-3.1.2-11]")
    } else if b & 0x80 == 0 && b & 0x40 != 0 {
        Some("the password flag is set without the user name flag [MQTT-3.1.2-22]")
    } else {
        None
    }
}

/// Succeeds only on empty input (the end of a packet).
#[inline(always)]
pub fn end(input: &[u8]) -> PResult<'_, ()> {
    if input.is_empty() {
        Ok((input, ()))
    } else {
        fail(Fault::Trailing { extra: input.len() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rl(input: &[u8], max: usize) -> PResult<'_, u32> {
        remaining_length(max)(input)
    }

    #[test]
    fn remaining_length_one_to_four_bytes() {
        let max = MAX_REMAINING_LENGTH as usize;
        assert_eq!(rl(&[0x00], max), Ok((&[][..], 0)));
        assert_eq!(rl(&[0x7f, 9], max), Ok((&[9][..], 127)));
        assert_eq!(rl(&[0x80, 0x01], max), Ok((&[][..], 128)));
        assert_eq!(rl(&[0xff, 0x7f], max), Ok((&[][..], 16_383)));
        assert_eq!(rl(&[0x80, 0x80, 0x01], max), Ok((&[][..], 16_384)));
        assert_eq!(rl(&[0xff, 0xff, 0x03], max), Ok((&[][..], 65_535)));
        assert_eq!(rl(&[0x80, 0x80, 0x80, 0x01], max), Ok((&[][..], 2_097_152)));
        assert_eq!(
            rl(&[0xff, 0xff, 0xff, 0x7f], max),
            Ok((&[][..], MAX_REMAINING_LENGTH))
        );
    }

    #[test]
    fn remaining_length_incomplete_is_not_an_error() {
        let max = MAX_REMAINING_LENGTH as usize;
        assert!(matches!(rl(&[], max), Err(Err::Incomplete(_))));
        assert!(matches!(rl(&[0x80], max), Err(Err::Incomplete(_))));
        assert!(matches!(
            rl(&[0xff, 0xff, 0xff], max),
            Err(Err::Incomplete(_))
        ));
    }

    #[test]
    fn remaining_length_refuses_fifth_byte_and_non_minimal() {
        let max = MAX_REMAINING_LENGTH as usize;
        assert_eq!(
            rl(&[0x80, 0x80, 0x80, 0x80, 0x01], max),
            Err(Err::Failure(Fault::LengthTooLong))
        );
        // Refused at the 4th byte: the 5th is never needed.
        assert_eq!(
            rl(&[0xff, 0xff, 0xff, 0xff], max),
            Err(Err::Failure(Fault::LengthTooLong))
        );
        assert_eq!(
            rl(&[0x81, 0x00], max),
            Err(Err::Failure(Fault::LengthNotMinimal { bytes: 2, value: 1 }))
        );
        assert_eq!(
            rl(&[0x80, 0x80, 0x00], max),
            Err(Err::Failure(Fault::LengthNotMinimal { bytes: 3, value: 0 }))
        );
        // One zero byte is the minimal encoding of 0.
        assert_eq!(rl(&[0x00], max), Ok((&[][..], 0)));
    }

    #[test]
    fn remaining_length_over_max_is_refused_from_the_prefix_seen() {
        let max = 65_535;
        assert_eq!(rl(&[0xff, 0xff, 0x03], max), Ok((&[][..], 65_535)));
        assert_eq!(
            rl(&[0x80, 0x80, 0x04], max),
            Err(Err::Failure(Fault::LengthOverMax {
                len: 65_536,
                exact: true,
                bytes: 3
            }))
        );
        // `ff ff ff` is at least 2,097,151 + 2^21: refused without a 4th byte.
        assert_eq!(
            rl(&[0xff, 0xff, 0xff], max),
            Err(Err::Failure(Fault::LengthOverMax {
                len: 4_194_303,
                exact: false,
                bytes: 3
            }))
        );
        // `ff ff` could still be 32,767 + 2^14·k ≤ 65,535: wait.
        assert!(matches!(rl(&[0xff, 0xff], max), Err(Err::Incomplete(_))));
        // With a tiny maximum, the first byte decides.
        assert_eq!(
            rl(&[0x80], 100),
            Err(Err::Failure(Fault::LengthOverMax {
                len: 128,
                exact: false,
                bytes: 1
            }))
        );
        assert_eq!(
            rl(&[101], 100),
            Err(Err::Failure(Fault::LengthOverMax {
                len: 101,
                exact: true,
                bytes: 1
            }))
        );
    }

    #[test]
    fn remaining_length_len_matches_put() {
        for v in [
            0usize,
            127,
            128,
            16_383,
            16_384,
            2_097_151,
            2_097_152,
            268_435_455,
        ] {
            let mut b = bytes::BytesMut::new();
            put_remaining_length(&mut b, v);
            assert_eq!(Some(b.len()), remaining_length_len(v));
            assert_eq!(
                rl(&b, MAX_REMAINING_LENGTH as usize),
                Ok((&[][..], v as u32))
            );
        }
        assert_eq!(remaining_length_len(268_435_456), None);
    }

    #[test]
    fn fixed_headers() {
        let p = fixed_header(65_535);
        assert!(matches!(p(&[]), Err(Err::Incomplete(_))));
        assert!(matches!(p(&[0x30]), Err(Err::Incomplete(_))));
        assert_eq!(
            p(&[0xc0, 0x00, 0xaa]),
            Ok((
                &[0xaa][..],
                FixedHeader {
                    byte1: 0xc0,
                    remaining_len: 0,
                    header_len: 2
                }
            ))
        );
    }

    #[test]
    fn packet_ids_are_not_zero() {
        assert_eq!(packet_id(&[0, 0]), Err(Err::Error(Fault::ZeroPacketId)));
        assert_eq!(packet_id(&[0]), Err(Err::Error(Fault::Short { needed: 2 })));
        assert_eq!(packet_id(&[1, 2, 3]).unwrap().1.get(), 0x0102);
    }

    #[test]
    fn strings() {
        let s = string(10);
        assert_eq!(s(b"\x00\x02hi!"), Ok((&b"!"[..], "hi")));
        assert_eq!(s(b"\x00\x00"), Ok((&b""[..], "")));
        assert_eq!(
            s(b"\x00\x03hi"),
            Err(Err::Error(Fault::Short { needed: 5 }))
        );
        assert_eq!(
            s(b"\x00\x0bhello world"),
            Err(Err::Error(Fault::TooLong { len: 11, max: 10 }))
        );
        assert_eq!(s(b"\x00\x02h\0"), Err(Err::Error(Fault::Nul { at: 1 })));
        assert_eq!(s(b"\x00\x02\xc3("), Err(Err::Error(Fault::Utf8 { at: 0 })));
        assert_eq!(
            s(b"\x00\x03\xc3\xa9\0"),
            Err(Err::Error(Fault::Nul { at: 2 }))
        );
        assert_eq!(s(b"\x00\x01"), Err(Err::Error(Fault::Short { needed: 3 })));
        assert_eq!(s(b"\x00"), Err(Err::Error(Fault::Short { needed: 2 })));
    }

    #[test]
    fn nul_or_bad_utf8_whichever_comes_first() {
        assert_eq!(mqtt_utf8(b"a\0\xff"), Err(Fault::Nul { at: 1 }));
        assert_eq!(mqtt_utf8(b"a\xff\0"), Err(Fault::Utf8 { at: 1 }));
        assert_eq!(mqtt_utf8("é+#".as_bytes()), Ok("é+#"));
    }

    #[test]
    fn topic_names_and_filters() {
        let t = topic_name(255);
        assert_eq!(t(b"\x00\x03a/b"), Ok((&b""[..], "a/b")));
        assert_eq!(t(b"\x00\x00"), Err(Err::Error(Fault::Empty)));
        assert_eq!(
            t(b"\x00\x03a/+"),
            Err(Err::Error(Fault::Wildcard { at: 2 }))
        );
        assert_eq!(
            t("\x00\x03é#".as_bytes()),
            Err(Err::Error(Fault::Wildcard { at: 2 }))
        );
        assert_eq!(t(b"\x00\x02\0#"), Err(Err::Error(Fault::Nul { at: 0 })));
        let f = topic_filter(255);
        assert_eq!(f(b"\x00\x03a/#"), Ok((&b""[..], "a/#")));
        assert_eq!(
            f(b"\x00\x03a#/"),
            Err(Err::Error(Fault::BadFilter { at: 1 }))
        );
        assert_eq!(f(b"\x00\x00"), Err(Err::Error(Fault::Empty)));
    }

    #[test]
    fn option_and_flag_bytes() {
        assert_eq!(subscription_options(&[1]), Ok((&[][..], QoS::AtLeastOnce)));
        assert_eq!(subscription_options(&[3]), Err(Err::Error(Fault::QoS3)));
        assert_eq!(
            subscription_options(&[0x04]),
            Err(Err::Error(Fault::Reserved { value: 4 }))
        );
        assert_eq!(publish_flags(0x3b), Ok((true, QoS::AtLeastOnce, true)));
        assert_eq!(publish_flags(0x36), Err(Fault::QoS3));
        let (_, f) = connect_flags(&[0b1110_1110]).unwrap();
        assert_eq!(
            f,
            ConnectFlags {
                username: true,
                password: true,
                will: Some((QoS::AtLeastOnce, true)),
                clean_session: true
            }
        );
        assert_eq!(connect_flags(&[0x02]).unwrap().1.will, None);
        for bad in [0x01, 0x08, 0x20, 0x40] {
            assert_eq!(
                connect_flags(&[bad]),
                Err(Err::Error(Fault::Reserved { value: bad })),
                "{bad:#04x}"
            );
            assert!(connect_flags_rule(bad).is_some());
        }
        assert_eq!(connect_flags(&[0b0001_1100]), Err(Err::Error(Fault::QoS3)));
    }

    #[test]
    fn plain_words_match_the_byte_table() {
        let mut text: Vec<u8> = (0..40).map(|i| b'a' + (i % 26) as u8).collect();
        for len in 0..text.len() {
            assert!(all_plain(&text[..len]), "{len}");
        }
        for bad in [0u8, b'+', b'#', 0x80, 0xff, 0xc3] {
            for at in 0..text.len() {
                let keep = text[at];
                text[at] = bad;
                for len in 0..=text.len() {
                    let want = text[..len].iter().all(|&b| CLASS[b as usize] == PLAIN);
                    assert_eq!(all_plain(&text[..len]), want, "{bad:#x} at {at}, len {len}");
                }
                text[at] = keep;
            }
        }
        // Bytes next to the special ones (`*`, `,`, `"`, `$`, 0x7f, 0x01) are plain.
        assert!(all_plain(b"*,\"$\x7f\x01*,\"$\x7f\x01"));
    }

    #[test]
    fn end_of_packet() {
        assert_eq!(end(&[]), Ok((&[][..], ())));
        assert_eq!(end(&[1, 2]), Err(Err::Error(Fault::Trailing { extra: 2 })));
    }
}
