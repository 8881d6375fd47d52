//! Generic length-prefix framing: the building block under the native protocol, usable for others.
//!
//! A frame is a header followed by a body. The header is `length_field_offset` arbitrary bytes, then
//! a length field; the length field's value plus `length_adjustment` is the number of bytes that
//! follow the length field. The decoder yields each frame with its first `num_skip` bytes removed
//! (by default the whole header, so it yields the body).
//!
//! These are the options of tokio-util's `LengthDelimitedCodec` and of Leaf's `MsgParser`, with two
//! additions: a LEB128 varint length field, and a mode that skips oversized frames and stays in sync.
//!
//! # Examples of configurations
//!
//! A 2-byte big-endian length, then the body (the default `LengthField::U32` shown with `U16`):
//!
//! ```text
//! +--- len: u16 ---+---- body ----+
//! | \x00 \x0B      | Hello world  |     decoded: "Hello world"
//! +----------------+--------------+
//! ```
//!
//! A varint length (as MQTT's remaining length), here 300 = `\xAC \x02`:
//!
//! ```text
//! +- len: varint -+----- body -----+
//! | \xAC \x02     | 300 bytes ...  |
//! +---------------+----------------+
//! ```
//!
//! A 1-byte tag before a little-endian u16 length that counts the whole frame (tag and length
//! included), keeping the header in the decoded frame: `length_field_offset(1)`,
//! `length_field(U16(Little))`, `length_adjustment(-3)`, `num_skip(0)`:
//!
//! ```text
//! +- tag -+- len: u16le -+- body -+
//! | \x07  | \x08 \x00    | hello  |     decoded: "\x07\x08\x00hello"
//! +-------+--------------+--------+
//! ```
//!
//! ```
//! use gatekit_codec::{Framing, LengthField, Endian};
//! use bytes::BytesMut;
//!
//! let framing = Framing::builder()
//!     .length_field(LengthField::U16(Endian::Big))
//!     .max_frame_length(1024)
//!     .build()
//!     .unwrap();
//! let mut wire = BytesMut::new();
//! framing.encode(&[], b"Hello world", &mut wire).unwrap();
//! assert_eq!(&wire[..2], b"\x00\x0b");
//!
//! let mut decoder = framing.decoder();
//! assert_eq!(&decoder.decode(&mut wire).unwrap().unwrap()[..], b"Hello world");
//! assert_eq!(decoder.decode(&mut wire).unwrap(), None); // need more bytes, not an error
//! ```

use crate::error::{ConfigError, EncodeError, FrameError};
use crate::parsers::{self, Fault, LengthField};
use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Frame length limit used when none is set: 65,535 bytes, mqant's `MaxPackSize`.
pub const DEFAULT_MAX_FRAME_LENGTH: usize = 65_535;

/// The hard cap on any configured frame length: 16 MiB.
pub const MAX_FRAME_LENGTH_CAP: usize = 16 * 1024 * 1024;

/// The largest `length_field_offset` accepted.
pub const MAX_LENGTH_FIELD_OFFSET: usize = 64;

/// What the decoder does with a frame whose length prefix exceeds the maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Oversize {
    /// Return [`FrameError::TooLarge`] and stop (fatal). The default.
    #[default]
    Fail,
    /// Return [`FrameError::TooLargeSkipped`] once, discard the frame's bytes as they arrive, and go
    /// on with the next frame.
    Skip,
}

/// A validated framing configuration. Build one with [`Framing::builder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framing {
    field: LengthField,
    offset: usize,
    adjustment: i64,
    num_skip: usize,
    max_frame_length: usize,
    oversize: Oversize,
}

/// Builder for [`Framing`]; every option has a default.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct FramingBuilder {
    field: LengthField,
    offset: usize,
    adjustment: i64,
    num_skip: Option<usize>,
    max_frame_length: usize,
    oversize: Oversize,
}

impl Default for FramingBuilder {
    fn default() -> Self {
        FramingBuilder {
            field: LengthField::U32(parsers::Endian::Big),
            offset: 0,
            adjustment: 0,
            num_skip: None,
            max_frame_length: DEFAULT_MAX_FRAME_LENGTH,
            oversize: Oversize::Fail,
        }
    }
}

impl FramingBuilder {
    /// The length field's type. Default: `U32(Big)`.
    pub fn length_field(mut self, field: LengthField) -> Self {
        self.field = field;
        self
    }

    /// Bytes of header before the length field. Default 0, at most 64.
    pub fn length_field_offset(mut self, offset: usize) -> Self {
        self.offset = offset;
        self
    }

    /// Added to the length field's value to give the bytes that follow the length field. Default 0.
    /// Use it when the length counts the header too (a negative adjustment) or leaves out a trailer.
    pub fn length_adjustment(mut self, adjustment: i64) -> Self {
        self.adjustment = adjustment;
        self
    }

    /// Bytes removed from the start of each decoded frame. Default: the whole header (offset plus
    /// length field), so the decoder yields the body. At most the header's length.
    pub fn num_skip(mut self, num_skip: usize) -> Self {
        self.num_skip = Some(num_skip);
        self
    }

    /// The largest frame accepted, counted as the bytes after the length field. Default 65,535;
    /// from 1 to 16 MiB. A larger frame is refused from its length prefix alone.
    pub fn max_frame_length(mut self, max: usize) -> Self {
        self.max_frame_length = max;
        self
    }

    /// Skip oversized frames instead of failing (see [`Oversize`]).
    pub fn oversize(mut self, oversize: Oversize) -> Self {
        self.oversize = oversize;
        self
    }

    /// Checks the options.
    pub fn build(self) -> Result<Framing, ConfigError> {
        if self.max_frame_length == 0 || self.max_frame_length > MAX_FRAME_LENGTH_CAP {
            return Err(ConfigError::MaxFrameLength {
                value: self.max_frame_length,
                cap: MAX_FRAME_LENGTH_CAP,
            });
        }
        if self.offset > MAX_LENGTH_FIELD_OFFSET {
            return Err(ConfigError::Offset {
                value: self.offset,
                max: MAX_LENGTH_FIELD_OFFSET,
            });
        }
        // The varint's size varies, so only its smallest size can be skipped for sure.
        let min_header = self.offset
            + match self.field {
                LengthField::Varint => 1,
                f => f.max_len(),
            };
        let num_skip = self.num_skip.unwrap_or(usize::MAX);
        if num_skip != usize::MAX && num_skip > min_header {
            return Err(ConfigError::NumSkip {
                num_skip,
                header_len: min_header,
            });
        }
        Ok(Framing {
            field: self.field,
            offset: self.offset,
            adjustment: self.adjustment.clamp(-(1 << 32), 1 << 32),
            num_skip,
            max_frame_length: self.max_frame_length,
            oversize: self.oversize,
        })
    }
}

/// Where a parsed header says the frame ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    /// Bytes of header (offset plus length field).
    header_len: usize,
    /// Bytes after the length field (not yet checked against the maximum).
    body_len: u64,
}

impl Framing {
    /// A builder with the defaults: `U32(Big)` length, no offset, no adjustment, skip the header,
    /// 65,535-byte maximum, fail on oversize.
    pub fn builder() -> FramingBuilder {
        FramingBuilder::default()
    }

    /// A varint length field and nothing else: the framing of the native protocol.
    pub fn varint(max_frame_length: usize) -> Result<Framing, ConfigError> {
        Framing::builder()
            .length_field(LengthField::Varint)
            .max_frame_length(max_frame_length)
            .build()
    }

    /// The configured maximum frame length.
    pub fn max_frame_length(&self) -> usize {
        self.max_frame_length
    }

    /// The configured oversize policy.
    pub fn oversize(&self) -> Oversize {
        self.oversize
    }

    /// A new decoder with this configuration.
    pub fn decoder(&self) -> FrameDecoder {
        FrameDecoder {
            framing: self.clone(),
            state: State::Head,
        }
    }

    /// Parses a header from the start of `input`: `Ok(None)` if it has not fully arrived.
    #[inline]
    fn parse_header(&self, input: &[u8]) -> Result<Option<Header>, FrameError> {
        let rest = match parsers::header_offset(self.offset)(input) {
            Ok((rest, ())) => rest,
            Err(_) => return Ok(None),
        };
        let parsed = parsers::length_field(self.field)(rest);
        // Fast path, every frame of a good stream: a complete length field whose frame is within
        // the maximum. The early refusal of a long varint prefix cannot apply to it: a complete
        // minimal varint is at least every lower bound its first bytes give (its last byte is
        // nonzero), so it would have passed `refuse_long_prefix` too. Any other case (incomplete,
        // malformed, negative or too large) takes the slow path, which checks in the same order as
        // always, so the errors are unchanged.
        if let Ok((_, (value, field_len))) = parsed {
            let adjusted = value as i64 + self.adjustment;
            if adjusted >= 0 && adjusted as u64 <= self.max_frame_length as u64 {
                return Ok(Some(Header {
                    header_len: self.offset + field_len,
                    body_len: adjusted as u64,
                }));
            }
        }
        self.parse_header_slow(rest, parsed)
    }

    /// [`Framing::parse_header`] for a length field that is incomplete, malformed, or gives a
    /// negative or oversized frame.
    #[cold]
    #[inline(never)]
    fn parse_header_slow(
        &self,
        rest: &[u8],
        parsed: parsers::PResult<'_, (u64, usize)>,
    ) -> Result<Option<Header>, FrameError> {
        if self.field == LengthField::Varint
            && self.oversize == Oversize::Fail
            && rest.first().is_some_and(|&b| b & 0x80 != 0)
        {
            self.refuse_long_prefix(rest)?;
        }
        let (value, field_len) = match parsed {
            Ok((_, v)) => v,
            Err(nom::Err::Incomplete(_)) => return Ok(None),
            Err(nom::Err::Error(f) | nom::Err::Failure(f)) => {
                return Err(match f {
                    Fault::VarintNotMinimal { bytes, value } => {
                        FrameError::VarintNotMinimal { bytes, value }
                    }
                    _ => FrameError::VarintTooLong {
                        max_bytes: parsers::VARINT_MAX_BYTES,
                    },
                })
            }
        };
        let adjusted = value as i64 + self.adjustment;
        if adjusted < 0 {
            return Err(FrameError::NegativeLength {
                value,
                adjustment: self.adjustment,
            });
        }
        Ok(Some(Header {
            header_len: self.offset + field_len,
            body_len: adjusted as u64,
        }))
    }

    /// Refuses a varint prefix whose first bytes already prove the frame too large, at the first
    /// byte that does (the same whether the bytes arrive together or one by one).
    #[cold]
    fn refuse_long_prefix(&self, varint: &[u8]) -> Result<(), FrameError> {
        let mut partial: u64 = 0;
        for (i, &b) in varint
            .iter()
            .take(parsers::VARINT_MAX_BYTES - 1)
            .enumerate()
        {
            if b & 0x80 == 0 {
                break;
            }
            partial |= u64::from(b & 0x7f) << (7 * i);
            // A minimal varint's next (last) byte is at least 1.
            let at_least = (partial + (1u64 << (7 * (i + 1)))) as i64 + self.adjustment;
            if at_least > self.max_frame_length as i64 {
                return Err(FrameError::TooLargePrefix {
                    at_least: at_least as u64,
                    prefix_bytes: i + 1,
                    max: self.max_frame_length,
                });
            }
        }
        Ok(())
    }

    /// Bytes of header the decoder removes from a frame whose header is `header_len` long.
    #[inline]
    fn skip_for(&self, header_len: usize) -> usize {
        if self.num_skip == usize::MAX {
            header_len
        } else {
            self.num_skip
        }
    }

    /// Writes one frame: `head` (exactly `length_field_offset` bytes), the length field, `body`.
    /// Refuses, writing nothing, a body over the maximum or a length the field cannot carry.
    pub fn encode(&self, head: &[u8], body: &[u8], dst: &mut BytesMut) -> Result<(), EncodeError> {
        if head.len() != self.offset {
            return Err(EncodeError::HeaderMismatch {
                len: head.len(),
                expected: self.offset,
            });
        }
        if body.len() > self.max_frame_length {
            return Err(EncodeError::FrameTooLarge {
                len: body.len(),
                max: self.max_frame_length,
            });
        }
        let value = body.len() as i64 - self.adjustment;
        if value < 0 {
            return Err(EncodeError::NegativeLength {
                len: body.len(),
                adjustment: self.adjustment,
            });
        }
        let value = value as u64;
        if value > self.field.max_value() {
            return Err(EncodeError::LengthFieldOverflow {
                value,
                field_bytes: self.field.max_len(),
            });
        }
        dst.reserve(head.len() + self.field.max_len() + body.len());
        dst.put_slice(head);
        put_length(dst, self.field, value);
        dst.put_slice(body);
        Ok(())
    }
}

/// Writes a length field; `value` must fit (checked by the caller).
#[inline]
pub(crate) fn put_length(dst: &mut BytesMut, field: LengthField, value: u64) {
    use parsers::Endian::{Big, Little};
    match field {
        LengthField::U8 => dst.put_u8(value as u8),
        LengthField::U16(Big) => dst.put_u16(value as u16),
        LengthField::U16(Little) => dst.put_u16_le(value as u16),
        LengthField::U32(Big) => dst.put_u32(value as u32),
        LengthField::U32(Little) => dst.put_u32_le(value as u32),
        LengthField::Varint => parsers::put_varint(dst, value as u32),
    }
}

/// Hints the CPU to fetch the first bytes of the frame after `at`, if they are in `src`.
#[inline(always)]
fn prefetch_next(src: &[u8], at: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        if let Some(next) = src.get(at) {
            // SAFETY: a prefetch reads nothing and cannot fault; the address is inside `src`.
            unsafe { _mm_prefetch::<_MM_HINT_T0>((next as *const u8).cast()) };
        }
        if let Some(next) = src.get(at + 32) {
            // SAFETY: as above.
            unsafe { _mm_prefetch::<_MM_HINT_T0>((next as *const u8).cast()) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (src, at);
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Waiting for a header. Nothing is remembered: a header is at most 68 bytes, so re-parsing it
    /// is constant work.
    Head,
    /// The header is parsed: the frame is `total` bytes from the buffer's start.
    Body { skip: usize, total: usize },
    /// Discarding an oversized frame: `remaining` bytes still to drop.
    Discard { remaining: u64 },
    /// A fatal error happened; it is returned from now on.
    Failed(FrameError),
}

/// A stateful frame decoder: feed it a growing buffer, take frames off its front.
///
/// It remembers a parsed header, so a frame dribbled in one byte at a time costs work linear in its
/// size. It never buffers or reserves more than the header plus the maximum frame length.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    framing: Framing,
    state: State,
}

impl FrameDecoder {
    /// The configuration.
    pub fn framing(&self) -> &Framing {
        &self.framing
    }

    /// Takes the next frame off the front of `src`.
    ///
    /// - `Ok(Some(frame))`: a frame, as a zero-copy slice of `src`'s memory.
    /// - `Ok(None)`: `src` holds no complete frame yet; call again when more bytes have arrived.
    /// - `Err(e)` with `!e.is_fatal()`: an oversized frame is being skipped; call again.
    /// - `Err(e)` with `e.is_fatal()`: the stream cannot be framed; every later call returns `e`.
    #[inline]
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        loop {
            match self.state {
                State::Head => {
                    let header = match self.framing.parse_header(src) {
                        Ok(Some(h)) => h,
                        Ok(None) => return Ok(None),
                        Err(e) => {
                            self.state = State::Failed(e.clone());
                            return Err(e);
                        }
                    };
                    let max = self.framing.max_frame_length;
                    if header.body_len > max as u64 {
                        let len = header.body_len;
                        let e = match self.framing.oversize {
                            Oversize::Fail => {
                                let e = FrameError::TooLarge { len, max };
                                self.state = State::Failed(e.clone());
                                e
                            }
                            Oversize::Skip => {
                                self.state = State::Discard {
                                    remaining: header.header_len as u64 + len,
                                };
                                FrameError::TooLargeSkipped { len, max }
                            }
                        };
                        return Err(e);
                    }
                    let total = header.header_len + header.body_len as usize;
                    let skip = self.framing.skip_for(header.header_len);
                    if src.len() >= total {
                        // The whole frame is here: take it without passing through `Body`.
                        prefetch_next(src, total);
                        let mut frame = src.split_to(total).freeze();
                        frame.advance(skip);
                        return Ok(Some(frame));
                    }
                    self.state = State::Body { skip, total };
                    // Bounded by the header plus the maximum frame length.
                    src.reserve(total - src.len());
                    return Ok(None);
                }
                State::Body { skip, total } => {
                    if src.len() < total {
                        return Ok(None);
                    }
                    self.state = State::Head;
                    let mut frame = src.split_to(total).freeze();
                    frame.advance(skip);
                    return Ok(Some(frame));
                }
                State::Discard { remaining } => {
                    let n = remaining.min(src.len() as u64);
                    src.advance(n as usize);
                    if n == remaining {
                        self.state = State::Head;
                    } else {
                        self.state = State::Discard {
                            remaining: remaining - n,
                        };
                        return Ok(None);
                    }
                }
                State::Failed(ref e) => return Err(e.clone()),
            }
        }
    }

    /// Like [`FrameDecoder::decode`], for when the stream has ended: a partial frame left in `src`
    /// is [`FrameError::UnexpectedEof`], not `Ok(None)`.
    pub fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        if let Some(frame) = self.decode(src)? {
            return Ok(Some(frame));
        }
        let e = match self.state {
            State::Head if src.is_empty() => return Ok(None),
            State::Head => FrameError::UnexpectedEof {
                buffered: src.len(),
                needed: src.len() + 1,
            },
            State::Body { total, .. } => FrameError::UnexpectedEof {
                buffered: src.len(),
                needed: total,
            },
            State::Discard { remaining } => FrameError::UnexpectedEof {
                buffered: 0,
                needed: usize::try_from(remaining).unwrap_or(usize::MAX),
            },
            State::Failed(ref e) => return Err(e.clone()),
        };
        self.state = State::Failed(e.clone());
        Err(e)
    }

    /// Whether a fatal error has ended this decoder.
    pub fn is_failed(&self) -> bool {
        matches!(self.state, State::Failed(_))
    }

    /// Whether the decoder is between frames (nothing partly parsed or being skipped).
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parsers::Endian;

    fn buf(b: &[u8]) -> BytesMut {
        BytesMut::from(b)
    }

    #[test]
    fn u16_frames_and_partial_input() {
        let f = Framing::builder()
            .length_field(LengthField::U16(Endian::Big))
            .build()
            .unwrap();
        let mut d = f.decoder();
        let mut src = buf(b"\x00\x03ab");
        assert_eq!(d.decode(&mut src), Ok(None));
        src.extend_from_slice(b"c\x00");
        assert_eq!(d.decode(&mut src).unwrap().unwrap(), &b"abc"[..]);
        assert_eq!(d.decode(&mut src), Ok(None));
        assert_eq!(
            d.decode_eof(&mut src),
            Err(FrameError::UnexpectedEof {
                buffered: 1,
                needed: 2
            })
        );
    }

    #[test]
    fn offset_adjustment_and_skip() {
        let f = Framing::builder()
            .length_field_offset(1)
            .length_field(LengthField::U16(Endian::Little))
            .length_adjustment(-3)
            .num_skip(0)
            .build()
            .unwrap();
        let mut d = f.decoder();
        let mut src = buf(b"\x07\x08\x00hello");
        assert_eq!(
            d.decode(&mut src).unwrap().unwrap(),
            &b"\x07\x08\x00hello"[..]
        );
        let mut out = BytesMut::new();
        f.encode(b"\x07", b"hello", &mut out).unwrap();
        assert_eq!(&out[..], b"\x07\x08\x00hello");
    }

    #[test]
    fn a_varint_prefix_that_proves_the_frame_too_large_is_refused_at_once() {
        // `ff ff ff`: at least 4,194,303 whatever comes next; refused at its third byte, fed
        // whole or one byte at a time, and nothing is buffered for it.
        let f = Framing::varint(65_535).unwrap();
        let expected = FrameError::TooLargePrefix {
            at_least: 4_194_303,
            prefix_bytes: 3,
            max: 65_535,
        };
        let mut whole = f.decoder();
        assert_eq!(
            whole.decode(&mut buf(b"\xff\xff\xff")),
            Err(expected.clone())
        );
        let mut bytewise = f.decoder();
        let mut src = BytesMut::new();
        for (i, b) in [0xffu8, 0xff].iter().enumerate() {
            src.extend_from_slice(&[*b]);
            assert_eq!(bytewise.decode(&mut src), Ok(None), "byte {i}");
        }
        src.extend_from_slice(&[0xff]);
        assert_eq!(bytewise.decode(&mut src), Err(expected.clone()));
        assert!(expected.is_fatal());
        // `ff ff 03` (65,535) is not refused early; `ff ff 04` (81,919) only once complete.
        assert_eq!(f.decoder().decode(&mut buf(b"\xff\xff")), Ok(None));
        assert_eq!(
            f.decoder().decode(&mut buf(b"\xff\xff\x04")),
            Err(FrameError::TooLarge {
                len: 81_919,
                max: 65_535
            })
        );
        // A skipping decoder needs the exact length: it waits for the whole varint.
        let skip = Framing::builder()
            .length_field(LengthField::Varint)
            .max_frame_length(65_535)
            .oversize(Oversize::Skip)
            .build()
            .unwrap();
        assert_eq!(skip.decoder().decode(&mut buf(b"\xff\xff\xff")), Ok(None));
    }

    /// The header parse as it was before its fast path: the early refusal first, then the length
    /// field. The fast path must give the same result on every input.
    fn parse_header_reference(f: &Framing, input: &[u8]) -> Result<Option<Header>, FrameError> {
        let rest = match parsers::header_offset(f.offset)(input) {
            Ok((rest, ())) => rest,
            Err(_) => return Ok(None),
        };
        if f.field == LengthField::Varint
            && f.oversize == Oversize::Fail
            && rest.first().is_some_and(|&b| b & 0x80 != 0)
        {
            f.refuse_long_prefix(rest)?;
        }
        let (value, field_len) = match parsers::length_field(f.field)(rest) {
            Ok((_, v)) => v,
            Err(nom::Err::Incomplete(_)) => return Ok(None),
            Err(nom::Err::Error(f) | nom::Err::Failure(f)) => {
                return Err(match f {
                    Fault::VarintNotMinimal { bytes, value } => {
                        FrameError::VarintNotMinimal { bytes, value }
                    }
                    _ => FrameError::VarintTooLong {
                        max_bytes: parsers::VARINT_MAX_BYTES,
                    },
                })
            }
        };
        let adjusted = value as i64 + f.adjustment;
        if adjusted < 0 {
            return Err(FrameError::NegativeLength {
                value,
                adjustment: f.adjustment,
            });
        }
        Ok(Some(Header {
            header_len: f.offset + field_len,
            body_len: adjusted as u64,
        }))
    }

    #[test]
    fn header_fast_path_gives_the_same_results_and_errors() {
        // Every input of up to 4 bytes (5 for a varint without adjustment) over bytes that hit
        // each varint branch, for limits at and around the varint's size steps, adjustments of
        // both signs, both oversize policies, a header offset, and each field type: 3.8 million.
        const BYTES: [u8; 9] = [0x00, 0x01, 0x03, 0x04, 0x40, 0x7f, 0x80, 0x81, 0xff];
        let inputs = |max_len: u32| {
            (0..=max_len).flat_map(|len| {
                (0..BYTES.len().pow(len)).map(move |mut n| {
                    (0..len)
                        .map(|_| {
                            let b = BYTES[n % BYTES.len()];
                            n /= BYTES.len();
                            b
                        })
                        .collect::<Vec<u8>>()
                })
            })
        };
        let varint_maxes = [
            1,
            3,
            127,
            128,
            129,
            16_383,
            16_384,
            65_535,
            (1 << 21) - 1,
            1 << 21,
        ];
        let mut configs = vec![];
        for (field, maxes) in [
            (LengthField::Varint, &varint_maxes[..]),
            (LengthField::U8, &[1, 128][..]),
            (LengthField::U16(Endian::Big), &[128, 65_535][..]),
            (LengthField::U32(Endian::Little), &[65_535, 1 << 21][..]),
        ] {
            for &max in maxes {
                for adjustment in [-130, 0, 200] {
                    for oversize in [Oversize::Fail, Oversize::Skip] {
                        for offset in [0, 1] {
                            let f = Framing::builder()
                                .length_field(field)
                                .length_field_offset(offset)
                                .length_adjustment(adjustment)
                                .num_skip(0)
                                .max_frame_length(max)
                                .oversize(oversize)
                                .build()
                                .unwrap();
                            let longest = if field == LengthField::Varint && adjustment == 0 {
                                5
                            } else {
                                4
                            };
                            configs.push((f, longest));
                        }
                    }
                }
            }
        }
        let mut checked = 0;
        for (f, longest) in &configs {
            for input in inputs(*longest) {
                assert_eq!(
                    f.parse_header(&input),
                    parse_header_reference(f, &input),
                    "{f:?} {input:02x?}"
                );
                checked += 1;
            }
        }
        assert_eq!(checked, 3_779_112);
    }

    #[test]
    fn oversize_fails_from_prefix_alone() {
        let f = Framing::varint(10).unwrap();
        let mut d = f.decoder();
        let mut src = buf(b"\x0b");
        let e = d.decode(&mut src).unwrap_err();
        assert_eq!(e, FrameError::TooLarge { len: 11, max: 10 });
        assert!(e.is_fatal());
        assert_eq!(d.decode(&mut buf(b"\x01a")), Err(e));
    }

    #[test]
    fn oversize_skip_stays_in_sync() {
        let f = Framing::builder()
            .length_field(LengthField::Varint)
            .max_frame_length(3)
            .oversize(Oversize::Skip)
            .build()
            .unwrap();
        let mut d = f.decoder();
        let mut src = buf(b"\x05abc");
        let e = d.decode(&mut src).unwrap_err();
        assert!(!e.is_fatal());
        assert_eq!(d.decode(&mut src), Ok(None));
        assert!(src.is_empty(), "skipped bytes are dropped as they arrive");
        src.extend_from_slice(b"de\x02xy");
        assert_eq!(d.decode(&mut src).unwrap().unwrap(), &b"xy"[..]);
    }

    #[test]
    fn negative_adjustment_is_fatal() {
        let f = Framing::builder()
            .length_field(LengthField::U8)
            .length_adjustment(-2)
            .build()
            .unwrap();
        let e = f.decoder().decode(&mut buf(b"\x01")).unwrap_err();
        assert!(matches!(e, FrameError::NegativeLength { .. }));
    }

    #[test]
    fn config_is_checked() {
        assert!(Framing::builder().max_frame_length(0).build().is_err());
        assert!(Framing::builder()
            .max_frame_length(MAX_FRAME_LENGTH_CAP + 1)
            .build()
            .is_err());
        assert!(Framing::builder().num_skip(5).build().is_err());
        assert!(Framing::builder().length_field_offset(65).build().is_err());
    }

    #[test]
    fn encode_refuses_over_limits() {
        let f = Framing::builder()
            .length_field(LengthField::U8)
            .max_frame_length(1000)
            .build()
            .unwrap();
        let mut out = BytesMut::new();
        assert_eq!(
            f.encode(&[], &[0; 256], &mut out),
            Err(EncodeError::LengthFieldOverflow {
                value: 256,
                field_bytes: 1
            })
        );
        assert_eq!(
            f.encode(&[], &[0; 1001], &mut out),
            Err(EncodeError::FrameTooLarge {
                len: 1001,
                max: 1000
            })
        );
        assert!(out.is_empty());
    }
}
