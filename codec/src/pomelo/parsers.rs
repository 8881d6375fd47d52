//! nom 8 parsers for the pomelo wire elements, one per element (docs/POMELO.md).
//!
//! The package header parsers are streaming (`Err::Incomplete` until the bytes have arrived); the
//! message parsers work on a complete data body and report a short input as [`Fault::Short`].
//! Failures are [`Fault`]s; the codec and [`Message::decode`](super::Message::decode) turn them
//! into typed errors that carry the element and its offset.

use super::message::{Flag, MessageType};
use super::package::{PackageType, HEADER_LEN};
use crate::native::MessageId;
use bytes::{BufMut, BytesMut};
use nom::error::{ErrorKind, ParseError};
use nom::{Err, IResult, Needed};

/// Why a pomelo parser failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// A complete input ended early: the element needs at least `needed` bytes.
    Short {
        /// Bytes the element needs (at least).
        needed: usize,
    },
    /// A package type byte that is not 1 to 5.
    UnknownPackageType(u8),
    /// A flag byte with one of the reserved bits 5 to 7 set.
    ReservedFlagBits(u8),
    /// A flag byte whose message type (bits 1 to 3) is not 0 to 3.
    UnknownMessageType {
        /// The flag byte.
        flag: u8,
        /// Its message type.
        value: u8,
    },
    /// A response's flag byte with the route-compressed bit set.
    CompressedResponse(u8),
    /// A message id varint with the continuation bit set in all of its
    /// [`MESSAGE_ID_MAX_BYTES`] bytes.
    IdTooLong,
    /// A message id over `u32::MAX`.
    IdOverflow(u64),
    /// A message id varint that is not minimal.
    IdNotMinimal {
        /// Bytes it took.
        bytes: usize,
        /// Its value.
        value: u32,
    },
    /// A message id of zero.
    ZeroId,
    /// A route length byte of zero.
    EmptyRoute,
    /// Text that is not UTF-8; the first bad byte is `valid_up_to` bytes in.
    Utf8 {
        /// Length of the valid prefix.
        valid_up_to: usize,
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

fn fail<T>(fault: Fault) -> Result<T, Err<Fault>> {
    Err(Err::Error(fault))
}

// -------------------------------------------------------------------------------------------------
// Package header (streaming)
// -------------------------------------------------------------------------------------------------

/// Streaming: the package type byte, 1 to 5. An unknown type fails from this byte alone.
#[inline]
pub fn package_type(input: &[u8]) -> PResult<'_, PackageType> {
    match input.first() {
        None => Err(Err::Incomplete(Needed::new(1))),
        Some(&b) => match PackageType::from_u8(b) {
            Some(t) => Ok((&input[1..], t)),
            None => fail(Fault::UnknownPackageType(b)),
        },
    }
}

/// Streaming: the 3-byte big-endian body length.
#[inline]
pub fn body_length(input: &[u8]) -> PResult<'_, u32> {
    match input.split_first_chunk::<3>() {
        Some((&[a, b, c], rest)) => Ok((rest, u32::from_be_bytes([0, a, b, c]))),
        None => Err(Err::Incomplete(Needed::new(3 - input.len()))),
    }
}

/// Streaming: a whole package header, type and body length.
#[inline]
pub fn package_header(input: &[u8]) -> PResult<'_, (PackageType, u32)> {
    let (rest, t) = package_type(input)?;
    let (rest, len) = body_length(rest)?;
    Ok((rest, (t, len)))
}

/// The least body length that the first length bytes to have arrived (0 to 3 of them) can
/// announce: the missing low bytes counted as zero.
#[inline]
pub fn length_lower_bound(length_bytes: &[u8]) -> u32 {
    let mut be = [0u8; 4];
    for (i, &b) in length_bytes.iter().take(3).enumerate() {
        be[1 + i] = b;
    }
    u32::from_be_bytes(be)
}

/// The fewest length bytes of a partial header `head` (type byte first, up to [`HEADER_LEN`]
/// bytes) that prove the body longer than `max`, and what they prove; `None` if the bytes seen
/// do not prove it. Taking the fewest bytes makes the answer the same however the stream is cut.
#[inline]
pub fn proven_oversize(head: &[u8], max: usize) -> Option<(u32, u8)> {
    let seen = head.len().min(HEADER_LEN).saturating_sub(1);
    (1..=seen).find_map(|k| {
        let bound = length_lower_bound(&head[1..1 + k]);
        (bound as usize > max).then_some((bound, k as u8))
    })
}

// -------------------------------------------------------------------------------------------------
// Message (complete input)
// -------------------------------------------------------------------------------------------------

/// The most bytes a message id varint may take: 5, as pomelo-protocol's `MSG_ID_MAX_BYTES`
/// (4 × 7 bits are not enough for 32).
pub const MESSAGE_ID_MAX_BYTES: usize = 5;

/// The message flag byte: message type in bits 1 to 3, route-compressed bit 0, gzip bit 4;
/// refuses reserved bits 5 to 7, types 4 to 7, and a compressed response.
#[inline]
pub fn flag(input: &[u8]) -> PResult<'_, Flag> {
    let Some((&b, rest)) = input.split_first() else {
        return fail(Fault::Short { needed: 1 });
    };
    if b & 0xe0 != 0 {
        return fail(Fault::ReservedFlagBits(b));
    }
    let value = (b >> 1) & 0x07;
    let Some(message_type) = MessageType::from_u8(value) else {
        return fail(Fault::UnknownMessageType { flag: b, value });
    };
    let route_compressed = b & 0x01 != 0;
    if route_compressed && !message_type.has_route() {
        return fail(Fault::CompressedResponse(b));
    }
    Ok((
        rest,
        Flag {
            message_type,
            route_compressed,
            gzip: b & 0x10 != 0,
        },
    ))
}

/// A message id: base-128 varint, least significant group first, at most
/// [`MESSAGE_ID_MAX_BYTES`] bytes, minimal, 1 to `u32::MAX`.
#[inline]
pub fn message_id(input: &[u8]) -> PResult<'_, MessageId> {
    // Fast path: one byte, ids 1 to 127.
    if let Some(&b) = input.first() {
        if b < 0x80 {
            return match MessageId::new(u32::from(b)) {
                Some(id) => Ok((&input[1..], id)),
                None => fail(Fault::ZeroId),
            };
        }
    }
    let mut value: u64 = 0;
    for i in 0..MESSAGE_ID_MAX_BYTES {
        let Some(&b) = input.get(i) else {
            return fail(Fault::Short { needed: i + 1 });
        };
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if b == 0 {
                // i > 0 here (the one-byte case took the fast path), so value < 2^28.
                return fail(Fault::IdNotMinimal {
                    bytes: i + 1,
                    value: value as u32,
                });
            }
            let Ok(v) = u32::try_from(value) else {
                return fail(Fault::IdOverflow(value));
            };
            // v > 0: its last group is not zero.
            let id = MessageId::new(v).expect("a minimal varint of 2+ bytes is not zero");
            return Ok((&input[i + 1..], id));
        }
    }
    fail(Fault::IdTooLong)
}

/// How many bytes [`put_message_id`] writes for `id`: 1 to 5.
#[inline]
pub const fn message_id_len(id: u32) -> usize {
    match id {
        0..=0x7f => 1,
        0x80..=0x3fff => 2,
        0x4000..=0x1f_ffff => 3,
        0x20_0000..=0x0fff_ffff => 4,
        _ => 5,
    }
}

/// Writes a message id as a minimal base-128 varint (as pomelo-protocol's `encodeMsgId`).
#[inline]
pub fn put_message_id(dst: &mut BytesMut, mut id: u32) {
    while id >= 0x80 {
        dst.put_u8((id as u8 & 0x7f) | 0x80);
        id >>= 7;
    }
    dst.put_u8(id as u8);
}

/// The route length byte: 1 to 255.
#[inline]
pub fn route_length(input: &[u8]) -> PResult<'_, u8> {
    match input.split_first() {
        None => fail(Fault::Short { needed: 1 }),
        Some((0, _)) => fail(Fault::EmptyRoute),
        Some((&n, rest)) => Ok((rest, n)),
    }
}

/// `len` bytes of UTF-8 route text.
#[inline]
pub fn route_text(len: u8) -> impl Fn(&[u8]) -> PResult<'_, &str> {
    move |input: &[u8]| {
        let len = usize::from(len);
        if input.len() < len {
            return fail(Fault::Short { needed: len });
        }
        let (raw, rest) = input.split_at(len);
        match std::str::from_utf8(raw) {
            Ok(text) => Ok((rest, text)),
            Err(e) => fail(Fault::Utf8 {
                valid_up_to: e.valid_up_to(),
            }),
        }
    }
}

/// An uncompressed route: its length byte and text.
#[inline]
pub fn route_name(input: &[u8]) -> PResult<'_, &str> {
    let (rest, len) = route_length(input)?;
    route_text(len)(rest)
}

/// A compressed route: a big-endian u16 dictionary code.
#[inline]
pub fn route_code(input: &[u8]) -> PResult<'_, u16> {
    match input.split_first_chunk::<2>() {
        Some((b, rest)) => Ok((rest, u16::from_be_bytes(*b))),
        None => fail(Fault::Short { needed: 2 }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(v: u32) -> MessageId {
        MessageId::new(v).unwrap()
    }

    #[test]
    fn header_is_streaming() {
        assert!(matches!(package_header(&[]), Err(Err::Incomplete(_))));
        assert!(matches!(
            package_header(&[4, 0, 0]),
            Err(Err::Incomplete(_))
        ));
        assert_eq!(
            package_header(&[4, 0, 1, 2, 9]),
            Ok((&[9][..], (PackageType::Data, 0x0102)))
        );
        assert_eq!(
            package_header(&[6, 0]),
            Err(Err::Error(Fault::UnknownPackageType(6)))
        );
        assert_eq!(
            package_type(&[0]),
            Err(Err::Error(Fault::UnknownPackageType(0)))
        );
    }

    #[test]
    fn oversize_is_proven_by_the_fewest_bytes() {
        assert_eq!(length_lower_bound(&[]), 0);
        assert_eq!(length_lower_bound(&[1]), 0x01_0000);
        assert_eq!(length_lower_bound(&[0, 4]), 0x0400);
        // 65,535 max: the first length byte 0x01 proves 65,536.
        assert_eq!(
            proven_oversize(&[4, 1, 0xff, 0xff], 65_535),
            Some((65_536, 1))
        );
        assert_eq!(proven_oversize(&[4, 1], 65_535), Some((65_536, 1)));
        assert_eq!(proven_oversize(&[4, 0, 0xff, 0xff], 65_535), None);
        // 1,000 max: 0x00 0x04 proves 1,024 with two bytes; 0x00 0x03 0xe9 needs all three.
        assert_eq!(proven_oversize(&[4, 0, 4], 1000), Some((1024, 2)));
        assert_eq!(proven_oversize(&[4, 0, 3], 1000), None);
        assert_eq!(proven_oversize(&[4, 0, 3, 0xe9], 1000), Some((1001, 3)));
        assert_eq!(proven_oversize(&[4], 0), None);
    }

    #[test]
    fn flag_bits() {
        let f = |b: u8| flag(&[b]).map(|(_, f)| (f.message_type, f.route_compressed, f.gzip));
        assert_eq!(f(0x00), Ok((MessageType::Request, false, false)));
        assert_eq!(f(0x01), Ok((MessageType::Request, true, false)));
        assert_eq!(f(0x02), Ok((MessageType::Notify, false, false)));
        assert_eq!(f(0x04), Ok((MessageType::Response, false, false)));
        assert_eq!(f(0x07), Ok((MessageType::Push, true, false)));
        assert_eq!(f(0x14), Ok((MessageType::Response, false, true)));
        assert_eq!(f(0x05), Err(Err::Error(Fault::CompressedResponse(0x05))));
        assert_eq!(
            f(0x08),
            Err(Err::Error(Fault::UnknownMessageType {
                flag: 0x08,
                value: 4
            }))
        );
        for b in [0x20, 0x40, 0x80, 0xff] {
            assert_eq!(f(b), Err(Err::Error(Fault::ReservedFlagBits(b))));
        }
        assert_eq!(flag(&[]), Err(Err::Error(Fault::Short { needed: 1 })));
    }

    #[test]
    fn message_id_varint() {
        for (v, wire) in [
            (1u32, &[0x01][..]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (16_383, &[0xff, 0x7f]),
            (16_384, &[0x80, 0x80, 0x01]),
            ((1 << 28) - 1, &[0xff, 0xff, 0xff, 0x7f]),
            (1 << 28, &[0x80, 0x80, 0x80, 0x80, 0x01]),
            (u32::MAX, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        ] {
            let mut b = BytesMut::new();
            put_message_id(&mut b, v);
            assert_eq!(&b[..], wire, "{v}");
            assert_eq!(message_id_len(v), wire.len());
            assert_eq!(message_id(wire), Ok((&[][..], id(v))));
        }
    }

    #[test]
    fn message_id_refusals() {
        assert_eq!(message_id(&[0]), Err(Err::Error(Fault::ZeroId)));
        assert_eq!(
            message_id(&[0x80, 0x00]),
            Err(Err::Error(Fault::IdNotMinimal { bytes: 2, value: 0 }))
        );
        assert_eq!(
            message_id(&[0x81, 0x80, 0x00]),
            Err(Err::Error(Fault::IdNotMinimal { bytes: 3, value: 1 }))
        );
        assert_eq!(
            message_id(&[0x80, 0x80, 0x80, 0x80, 0x10]),
            Err(Err::Error(Fault::IdOverflow(1 << 32)))
        );
        assert_eq!(
            message_id(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01]),
            Err(Err::Error(Fault::IdTooLong))
        );
        assert_eq!(
            message_id(&[0x80, 0x80]),
            Err(Err::Error(Fault::Short { needed: 3 }))
        );
        assert_eq!(message_id(&[]), Err(Err::Error(Fault::Short { needed: 1 })));
    }

    #[test]
    fn routes() {
        assert_eq!(route_name(b"\x03a.b{}"), Ok((&b"{}"[..], "a.b")));
        assert_eq!(route_name(b"\x00"), Err(Err::Error(Fault::EmptyRoute)));
        assert_eq!(route_name(b""), Err(Err::Error(Fault::Short { needed: 1 })));
        assert_eq!(
            route_name(b"\x05a.b"),
            Err(Err::Error(Fault::Short { needed: 5 }))
        );
        assert_eq!(
            route_name(b"\x03a.\xff"),
            Err(Err::Error(Fault::Utf8 { valid_up_to: 2 }))
        );
        assert_eq!(route_code(&[0x01, 0x02, 9]), Ok((&[9][..], 0x0102)));
        assert_eq!(
            route_code(&[1]),
            Err(Err::Error(Fault::Short { needed: 2 }))
        );
    }
}
