//! The nom 8 parsers behind the decoders, one small named parser per wire element.
//!
//! Most users never touch this module: [`FrameDecoder`](crate::FrameDecoder) and
//! [`NativeCodec`](crate::NativeCodec) wrap these parsers and turn their [`Fault`]s into the crate's
//! typed errors. It is public for users who compose their own protocol from the same elements.
//!
//! Two families:
//!
//! - **Streaming** parsers for the frame header ([`varint`], [`length_field`]): they return
//!   `Err(nom::Err::Incomplete(_))` when the header has not fully arrived. Incomplete is never an error.
//! - **Complete** parsers for fields inside a frame that has fully arrived ([`message_id`], [`route`],
//!   ...): a missing byte there means the frame is truncated, reported as [`Fault::Short`].
//!
//! ```
//! use gatekit_codec::parsers::{route, message_id};
//! use nom::Parser;
//!
//! let input = b"\x00\x00\x00\x07\x09chat/send{}";
//! let (rest, (id, (r, _slash))) = (message_id, route).parse(&input[..]).unwrap();
//! assert_eq!((id.get(), r, rest), (7, "chat/send", &b"{}"[..]));
//! ```

use crate::native::{CloseCode, MessageId, Status};
use nom::error::{ErrorKind, ParseError};
use nom::number::streaming;
use nom::{Err, IResult, Needed, Parser};

/// Why a parser in this module failed. Field names and offsets are added by the caller, which knows
/// where in the frame it is (see [`PacketError`](crate::PacketError)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// A complete parser ran out of input: `needed` bytes were required.
    Short {
        /// Bytes the element needs.
        needed: usize,
    },
    /// A varint's continuation bit was set in all of its allowed bytes.
    VarintTooLong {
        /// The most bytes a varint may take.
        max_bytes: usize,
    },
    /// A varint was not minimally encoded.
    VarintNotMinimal {
        /// Bytes it took.
        bytes: usize,
        /// Its value.
        value: u32,
    },
    /// A message id was zero.
    ZeroId,
    /// A length-prefixed text had length zero.
    Empty,
    /// Text was not UTF-8; the first bad byte is `valid_up_to` bytes into the text.
    Utf8 {
        /// Length of the valid prefix.
        valid_up_to: usize,
    },
    /// An element was longer than its limit.
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A route was not `module/func`.
    NotRoute,
    /// A byte that should name a status or close code names none.
    Unknown(u8),
    /// A fixed-size packet had bytes after its end.
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

fn fail<T>(fault: Fault) -> Result<T, Err<Fault>> {
    Err(Err::Error(fault))
}

/// Takes exactly `n` bytes of a complete input, or fails with [`Fault::Short`].
#[inline]
pub fn take_exact(n: usize) -> impl Fn(&[u8]) -> PResult<'_, &[u8]> {
    move |input: &[u8]| {
        if input.len() < n {
            return fail(Fault::Short { needed: n });
        }
        let (head, tail) = input.split_at(n);
        Ok((tail, head))
    }
}

/// The most bytes a [`varint`] may take: 4, so the largest value is 2^28 − 1 (MQTT's remaining
/// length uses the same encoding and limit; mqant reads only 3 of them).
pub const VARINT_MAX_BYTES: usize = 4;

/// Streaming LEB128 varint: 7 bits per byte, least significant group first, high bit set on every
/// byte but the last, at most [`VARINT_MAX_BYTES`] bytes, minimal encoding only.
///
/// Returns `Incomplete` while the last byte has not arrived.
#[inline]
pub fn varint(input: &[u8]) -> PResult<'_, u32> {
    // Fast path: one byte, the common case for small frames.
    match input.first() {
        None => return Err(Err::Incomplete(Needed::new(1))),
        Some(&b) if b < 0x80 => return Ok((&input[1..], u32::from(b))),
        Some(_) => {}
    }
    let mut value: u32 = 0;
    for i in 0..VARINT_MAX_BYTES {
        let Some(&b) = input.get(i) else {
            return Err(Err::Incomplete(Needed::new(1)));
        };
        value |= u32::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if b == 0 {
                return fail(Fault::VarintNotMinimal {
                    bytes: i + 1,
                    value,
                });
            }
            return Ok((&input[i + 1..], value));
        }
    }
    fail(Fault::VarintTooLong {
        max_bytes: VARINT_MAX_BYTES,
    })
}

/// How many bytes [`varint`] encoding of `value` takes (1 to 4), or `None` if it needs more.
#[inline]
pub const fn varint_len(value: u32) -> Option<usize> {
    match value {
        0..=0x7f => Some(1),
        0x80..=0x3fff => Some(2),
        0x4000..=0x1f_ffff => Some(3),
        0x20_0000..=0x0fff_ffff => Some(4),
        _ => None,
    }
}

/// Writes `value` as a minimal LEB128 varint. `value` must be below 2^28 (checked by the callers,
/// which report an [`EncodeError`](crate::EncodeError)).
#[inline]
pub fn put_varint(dst: &mut bytes::BytesMut, mut value: u32) {
    use bytes::BufMut;
    debug_assert!(value < 1 << 28);
    while value >= 0x80 {
        dst.put_u8((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    dst.put_u8(value as u8);
}

/// Byte order of a fixed-size length field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Endian {
    /// Most significant byte first (network order).
    Big,
    /// Least significant byte first.
    Little,
}

/// The type of a frame's length field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum LengthField {
    /// One byte.
    U8,
    /// Two bytes.
    U16(Endian),
    /// Four bytes.
    U32(Endian),
    /// A LEB128 varint of 1 to 4 bytes (see [`varint`]).
    Varint,
}

impl LengthField {
    /// Bytes the field takes at most.
    pub const fn max_len(self) -> usize {
        match self {
            LengthField::U8 => 1,
            LengthField::U16(_) => 2,
            LengthField::U32(_) | LengthField::Varint => 4,
        }
    }

    /// The largest value the field can carry.
    pub const fn max_value(self) -> u64 {
        match self {
            LengthField::U8 => u8::MAX as u64,
            LengthField::U16(_) => u16::MAX as u64,
            LengthField::U32(_) => u32::MAX as u64,
            LengthField::Varint => (1 << 28) - 1,
        }
    }
}

/// Streaming parser for a length field of the given type. Yields the value and how many bytes the
/// field took.
#[inline]
pub fn length_field(field: LengthField) -> impl Fn(&[u8]) -> PResult<'_, (u64, usize)> {
    move |input: &[u8]| {
        let (rest, value) = match field {
            LengthField::Varint => varint(input).map(|(r, v)| (r, u64::from(v)))?,
            LengthField::U8 => streaming::u8(input).map(|(r, v)| (r, u64::from(v)))?,
            LengthField::U16(Endian::Big) => {
                streaming::be_u16(input).map(|(r, v)| (r, u64::from(v)))?
            }
            LengthField::U16(Endian::Little) => {
                streaming::le_u16(input).map(|(r, v)| (r, u64::from(v)))?
            }
            LengthField::U32(Endian::Big) => {
                streaming::be_u32(input).map(|(r, v)| (r, u64::from(v)))?
            }
            LengthField::U32(Endian::Little) => {
                streaming::le_u32(input).map(|(r, v)| (r, u64::from(v)))?
            }
        };
        Ok((rest, (value, input.len() - rest.len())))
    }
}

/// Streaming parser that skips `n` header bytes before a length field.
#[inline]
pub fn header_offset(n: usize) -> impl Fn(&[u8]) -> PResult<'_, ()> {
    move |input: &[u8]| {
        if input.len() < n {
            return Err(Err::Incomplete(Needed::new(n - input.len())));
        }
        Ok((&input[n..], ()))
    }
}

/// The packet kind byte.
#[inline]
pub fn kind(input: &[u8]) -> PResult<'_, u8> {
    byte(input)
}

/// Takes `N` bytes of a complete input as an array.
#[inline(always)]
fn array<const N: usize>(input: &[u8]) -> PResult<'_, [u8; N]> {
    match input.split_first_chunk::<N>() {
        Some((head, rest)) => Ok((rest, *head)),
        None => fail(Fault::Short { needed: N }),
    }
}

/// A message id: 4 bytes, big endian, not zero.
#[inline]
pub fn message_id(input: &[u8]) -> PResult<'_, MessageId> {
    let (rest, raw) = array::<4>(input)?;
    match MessageId::new(u32::from_be_bytes(raw)) {
        Some(id) => Ok((rest, id)),
        None => fail(Fault::ZeroId),
    }
}

/// A big-endian u16 (heartbeat seconds).
#[inline]
pub fn be_u16(input: &[u8]) -> PResult<'_, u16> {
    array::<2>(input).map(|(rest, b)| (rest, u16::from_be_bytes(b)))
}

/// A big-endian u32 (max frame length).
#[inline]
pub fn be_u32(input: &[u8]) -> PResult<'_, u32> {
    array::<4>(input).map(|(rest, b)| (rest, u32::from_be_bytes(b)))
}

/// One byte.
#[inline]
pub fn byte(input: &[u8]) -> PResult<'_, u8> {
    array::<1>(input).map(|(rest, [b])| (rest, b))
}

/// A length byte (1 to 255) followed by that many bytes. Returns the bytes.
#[inline]
pub fn short_bytes(input: &[u8]) -> PResult<'_, &[u8]> {
    let (rest, len) = byte(input)?;
    if len == 0 {
        return fail(Fault::Empty);
    }
    let len = usize::from(len);
    if rest.len() < len {
        // Report the whole element (length byte included) as the thing that is short.
        return fail(Fault::Short { needed: len + 1 });
    }
    let (text, rest) = rest.split_at(len);
    Ok((rest, text))
}

/// Checks that bytes are UTF-8.
#[inline]
pub fn utf8(bytes: &[u8]) -> Result<&str, Fault> {
    // Routes and topics are short and nearly always ASCII: check that first, inline.
    if bytes.is_ascii() {
        // SAFETY: ASCII is UTF-8.
        return Ok(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    std::str::from_utf8(bytes).map_err(|e| Fault::Utf8 {
        valid_up_to: e.valid_up_to(),
    })
}

/// Checks that text is a route `module/func`: exactly one `/`, with non-empty text on both sides.
/// Returns the position of the `/`.
#[inline]
pub fn route_shape(text: &str) -> Result<usize, Fault> {
    let bytes = text.as_bytes();
    match bytes.iter().position(|&b| b == b'/') {
        Some(slash)
            if slash > 0 && slash + 1 < bytes.len() && !bytes[slash + 1..].contains(&b'/') =>
        {
            Ok(slash)
        }
        _ => Err(Fault::NotRoute),
    }
}

/// A route: a length byte (1 to 255) and that many bytes of UTF-8 text of the form `module/func`.
/// Returns the text and the position of its `/`.
#[inline]
pub fn route(input: &[u8]) -> PResult<'_, (&str, usize)> {
    let (rest, raw) = short_bytes(input)?;
    let text = utf8(raw).map_err(Err::Error)?;
    let slash = route_shape(text).map_err(Err::Error)?;
    Ok((rest, (text, slash)))
}

/// A push topic: a length byte (1 to 255) and that many bytes of UTF-8 text.
#[inline]
pub fn topic(input: &[u8]) -> PResult<'_, &str> {
    let (rest, raw) = short_bytes(input)?;
    let text = utf8(raw).map_err(Err::Error)?;
    Ok((rest, text))
}

/// A response status byte.
#[inline]
pub fn status(input: &[u8]) -> PResult<'_, Status> {
    let (rest, b) = byte(input)?;
    match Status::from_u8(b) {
        Some(s) => Ok((rest, s)),
        None => fail(Fault::Unknown(b)),
    }
}

/// A close code byte.
#[inline]
pub fn close_code(input: &[u8]) -> PResult<'_, CloseCode> {
    let (rest, b) = byte(input)?;
    match CloseCode::from_u8(b) {
        Some(c) => Ok((rest, c)),
        None => fail(Fault::Unknown(b)),
    }
}

/// The rest of the frame as UTF-8 text of at most `max` bytes.
#[inline]
pub fn text_rest(max: usize) -> impl Fn(&[u8]) -> PResult<'_, &str> {
    move |input: &[u8]| {
        if input.len() > max {
            return fail(Fault::TooLong {
                len: input.len(),
                max,
            });
        }
        let text = utf8(input).map_err(Err::Error)?;
        Ok((&input[input.len()..], text))
    }
}

/// The rest of the frame as opaque bytes of at most `max` bytes.
#[inline]
pub fn bytes_rest(max: usize) -> impl Fn(&[u8]) -> PResult<'_, &[u8]> {
    move |input: &[u8]| {
        if input.len() > max {
            return fail(Fault::TooLong {
                len: input.len(),
                max,
            });
        }
        Ok((&input[input.len()..], input))
    }
}

/// Succeeds only on empty input (the end of a fixed-size packet).
#[inline]
pub fn end(input: &[u8]) -> PResult<'_, ()> {
    if input.is_empty() {
        Ok((input, ()))
    } else {
        fail(Fault::Trailing { extra: input.len() })
    }
}

/// Runs a parser and keeps it for use with `nom::Parser` combinators.
pub fn parser<'a, O>(
    f: impl Fn(&'a [u8]) -> PResult<'a, O>,
) -> impl Parser<&'a [u8], Output = O, Error = Fault> {
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_one_to_four_bytes() {
        assert_eq!(varint(&[0x00]), Ok((&[][..], 0)));
        assert_eq!(varint(&[0x7f, 9]), Ok((&[9][..], 127)));
        assert_eq!(varint(&[0x80, 0x01]), Ok((&[][..], 128)));
        assert_eq!(
            varint(&[0xff, 0xff, 0xff, 0x7f]),
            Ok((&[][..], (1 << 28) - 1))
        );
    }

    #[test]
    fn varint_incomplete_is_not_an_error() {
        assert!(matches!(varint(&[]), Err(Err::Incomplete(_))));
        assert!(matches!(varint(&[0x80]), Err(Err::Incomplete(_))));
        assert!(matches!(
            varint(&[0x80, 0x80, 0x80]),
            Err(Err::Incomplete(_))
        ));
    }

    #[test]
    fn varint_rejects_fifth_byte_and_overlong() {
        assert_eq!(
            varint(&[0x80, 0x80, 0x80, 0x80, 0x01]),
            Err(Err::Error(Fault::VarintTooLong { max_bytes: 4 }))
        );
        assert_eq!(
            varint(&[0x81, 0x00]),
            Err(Err::Error(Fault::VarintNotMinimal { bytes: 2, value: 1 }))
        );
    }

    #[test]
    fn varint_len_matches_put_varint() {
        for v in [
            0u32,
            1,
            127,
            128,
            16383,
            16384,
            (1 << 21) - 1,
            1 << 21,
            (1 << 28) - 1,
        ] {
            let mut b = bytes::BytesMut::new();
            put_varint(&mut b, v);
            assert_eq!(Some(b.len()), varint_len(v));
            assert_eq!(varint(&b), Ok((&[][..], v)));
        }
        assert_eq!(varint_len(1 << 28), None);
    }

    #[test]
    fn length_fields() {
        let p = length_field(LengthField::U16(Endian::Little));
        assert_eq!(p(&[0x34, 0x12, 0xaa]), Ok((&[0xaa][..], (0x1234, 2))));
        let p = length_field(LengthField::U32(Endian::Big));
        assert!(matches!(p(&[0, 0, 1]), Err(Err::Incomplete(_))));
        assert_eq!(p(&[0, 0, 1, 0]), Ok((&[][..], (256, 4))));
    }

    #[test]
    fn route_shapes() {
        assert_eq!(route_shape("chat/send"), Ok(4));
        for bad in ["chat", "/send", "chat/", "a/b/c", "/"] {
            assert_eq!(route_shape(bad), Err(Fault::NotRoute), "{bad}");
        }
        assert_eq!(route(b"\x03a/b!"), Ok((&b"!"[..], ("a/b", 1))));
        assert_eq!(route(b"\x00"), Err(Err::Error(Fault::Empty)));
        assert_eq!(
            route(b"\x05a/b"),
            Err(Err::Error(Fault::Short { needed: 6 }))
        );
        assert_eq!(
            route(b"\x03a/\xff"),
            Err(Err::Error(Fault::Utf8 { valid_up_to: 2 }))
        );
    }

    #[test]
    fn message_id_nonzero() {
        assert_eq!(message_id(&[0, 0, 0, 0]), Err(Err::Error(Fault::ZeroId)));
        assert_eq!(
            message_id(&[0, 0]),
            Err(Err::Error(Fault::Short { needed: 4 }))
        );
    }
}
