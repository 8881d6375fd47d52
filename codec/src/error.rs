//! Typed errors: each says which wire element was wrong, with what value, against which limit, and where.
//!
//! Three layers, from the bottom up:
//!
//! - [`FrameError`]: the length-prefix framing could not delimit a frame (or, for
//!   [`FrameError::TooLargeSkipped`], delimited one too large and is skipping it).
//! - [`PacketError`]: a complete frame was delimited, but its contents are not a valid native packet.
//!   The decoder has consumed the frame and is still in sync with the stream.
//! - [`DecodeError`]: either of the above, as returned by [`NativeCodec`](crate::NativeCodec), with
//!   [`DecodeError::is_fatal`] telling whether decoding can go on.
//!
//! [`EncodeError`] is returned by encoders that refuse a packet or frame breaking a limit.

use std::fmt;

/// The wire element an error is about. Its `Display` is the name used in `docs/PROTOCOL.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Field {
    /// The frame's length prefix.
    Length,
    /// The packet kind byte.
    Kind,
    /// The protocol version (handshake, welcome).
    Version,
    /// The heartbeat interval in seconds (handshake, welcome).
    Heartbeat,
    /// The gate's maximum frame length (welcome).
    MaxFrameLength,
    /// The opaque authentication token (handshake).
    Token,
    /// The session id (welcome).
    SessionId,
    /// A request or response message id.
    MessageId,
    /// A `module/func` route.
    Route,
    /// A push topic.
    Topic,
    /// A response status code.
    Status,
    /// A close code.
    CloseCode,
    /// The human-readable reason text of a close.
    Reason,
    /// A message body.
    Body,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Length => "length prefix",
            Field::Kind => "packet kind",
            Field::Version => "version",
            Field::Heartbeat => "heartbeat",
            Field::MaxFrameLength => "max frame length",
            Field::Token => "token",
            Field::SessionId => "session id",
            Field::MessageId => "message id",
            Field::Route => "route",
            Field::Topic => "topic",
            Field::Status => "status",
            Field::CloseCode => "close code",
            Field::Reason => "reason",
            Field::Body => "body",
        })
    }
}

/// The length-prefix framing failed, or is skipping an oversized frame.
///
/// Every variant but [`FrameError::TooLargeSkipped`] is fatal: the stream cannot be re-synchronised and
/// the decoder returns the same error from then on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix announces a frame longer than the configured maximum. Fatal.
    #[error("frame length {len} exceeds the maximum of {max} bytes (from the length prefix; nothing buffered)")]
    TooLarge {
        /// The frame length the prefix announced (after the length adjustment).
        len: u64,
        /// The configured maximum frame length.
        max: usize,
    },
    /// Like [`FrameError::TooLarge`], but the decoder was told to skip such frames: it discards the
    /// frame's bytes as they arrive and then decodes the next frame. Recoverable.
    #[error("frame length {len} exceeds the maximum of {max} bytes; skipping the frame")]
    TooLargeSkipped {
        /// The frame length the prefix announced (after the length adjustment).
        len: u64,
        /// The configured maximum frame length.
        max: usize,
    },
    /// The first bytes of a varint length prefix already prove the frame longer than the maximum
    /// (a minimal varint's last byte is not zero, so `ff ff ff` means at least 4,194,303):
    /// refused before the prefix is complete. Fatal. Only when oversized frames fail (a skipping
    /// decoder needs the exact length).
    #[error("frame length of at least {at_least} (from the first {prefix_bytes} bytes of its length varint) exceeds the maximum of {max} bytes")]
    TooLargePrefix {
        /// The smallest frame length (after the length adjustment) the prefix can still announce.
        at_least: u64,
        /// The varint bytes seen.
        prefix_bytes: usize,
        /// The configured maximum frame length.
        max: usize,
    },
    /// A LEB128 varint length prefix had its continuation bit set in all of its allowed bytes.
    #[error("length varint does not end within {max_bytes} bytes")]
    VarintTooLong {
        /// The largest number of bytes a varint may take.
        max_bytes: usize,
    },
    /// A LEB128 varint length prefix was not minimally encoded (it ends with a zero group).
    #[error("length varint of {bytes} bytes is not minimal: value {value} fits in fewer bytes")]
    VarintNotMinimal {
        /// How many bytes the varint took.
        bytes: usize,
        /// The value it encoded.
        value: u32,
    },
    /// The length prefix plus the configured adjustment is negative.
    #[error("length prefix {value} with adjustment {adjustment} gives a negative frame length")]
    NegativeLength {
        /// The value of the length field.
        value: u64,
        /// The configured length adjustment.
        adjustment: i64,
    },
    /// The stream ended in the middle of a frame (returned by `decode_eof`). Fatal: the stream is
    /// over, and later calls return this error again.
    #[error("stream ended inside a frame: {buffered} bytes buffered, frame needs {needed}")]
    UnexpectedEof {
        /// Bytes of the unfinished frame that had arrived.
        buffered: usize,
        /// Bytes the frame needs in all (header included); when the header itself was cut off, the
        /// least it could need (one more byte than arrived).
        needed: usize,
    },
}

impl FrameError {
    /// Whether the decoder can go on after this error. Only [`FrameError::TooLargeSkipped`] is
    /// recoverable.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, FrameError::TooLargeSkipped { .. })
    }
}

/// A complete frame was delimited but is not a valid native packet.
///
/// `offset` is the byte position inside the frame, counted from the kind byte (offset 0). The decoder
/// has consumed the whole frame, so these errors never desynchronise the stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PacketError {
    /// The frame has no bytes at all: a packet needs at least its kind byte.
    #[error("empty frame: a packet needs at least its kind byte")]
    EmptyFrame,
    /// The kind byte is not one of the kinds in `docs/PROTOCOL.md`.
    #[error("unknown packet kind 0x{kind:02x} at offset 0")]
    UnknownKind {
        /// The kind byte found.
        kind: u8,
    },
    /// The frame ends inside a fixed-size or length-prefixed field.
    #[error(
        "{field} at offset {offset} is truncated: needs {needed} bytes, frame has {available} left"
    )]
    Truncated {
        /// The field that was cut off.
        field: Field,
        /// Where the field starts.
        offset: usize,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in the frame.
        available: usize,
    },
    /// A field is longer than its limit.
    #[error("{field} at offset {offset} is {len} bytes, over the limit of {max}")]
    TooLong {
        /// The field.
        field: Field,
        /// Where the field starts.
        offset: usize,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A field that must not be empty is.
    #[error("{field} at offset {offset} is empty")]
    EmptyField {
        /// The field.
        field: Field,
        /// Where the field starts.
        offset: usize,
    },
    /// A text field is not valid UTF-8.
    #[error("{field} at offset {offset} is not UTF-8: invalid byte at {bad_at}")]
    InvalidUtf8 {
        /// The field.
        field: Field,
        /// Where the field starts.
        offset: usize,
        /// Offset (inside the frame) of the first invalid byte.
        bad_at: usize,
    },
    /// A route is not of the form `module/func` (exactly one `/`, both sides non-empty).
    #[error("route {route:?} at offset {offset} is not of the form module/func")]
    MalformedRoute {
        /// The route text.
        route: String,
        /// Where the route starts.
        offset: usize,
    },
    /// A message id is zero; ids are 1 to 4,294,967,295.
    #[error("message id at offset {offset} is 0; ids are 1 to 4294967295")]
    ZeroMessageId {
        /// Where the id starts.
        offset: usize,
    },
    /// A status byte is not a known status.
    #[error("unknown status {value} at offset {offset}")]
    UnknownStatus {
        /// The byte found.
        value: u8,
        /// Where it is.
        offset: usize,
    },
    /// A close code is not a known code.
    #[error("unknown close code {value} at offset {offset}")]
    UnknownCloseCode {
        /// The byte found.
        value: u8,
        /// Where it is.
        offset: usize,
    },
    /// A packet kind with a fixed size has bytes after its last field.
    #[error("{kind} packet has {extra} unexpected bytes after offset {offset}")]
    TrailingBytes {
        /// The packet kind's name.
        kind: &'static str,
        /// Where the unexpected bytes start.
        offset: usize,
        /// How many there are.
        extra: usize,
    },
}

/// An error from the native decoder: framing or packet contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The framing failed (see [`FrameError`]).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A frame was delimited but its packet is invalid (see [`PacketError`]).
    #[error(transparent)]
    Packet(#[from] PacketError),
}

impl DecodeError {
    /// Whether the stream is lost. A fatal error is returned again by every later call; after a
    /// recoverable one the decoder has consumed (or is skipping) the bad frame and decodes the next.
    pub fn is_fatal(&self) -> bool {
        match self {
            DecodeError::Frame(e) => e.is_fatal(),
            DecodeError::Packet(_) => false,
        }
    }
}

/// An encoder refused a packet or frame that breaks a limit. Nothing was written to the buffer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The frame would be longer than the maximum frame length.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    FrameTooLarge {
        /// The frame's length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// The length does not fit the configured length field.
    #[error("length {value} does not fit a {field_bytes}-byte length field")]
    LengthFieldOverflow {
        /// The value to write.
        value: u64,
        /// The length field's size.
        field_bytes: usize,
    },
    /// A field is longer than its limit.
    #[error("{field} is {len} bytes, over the limit of {max}")]
    TooLong {
        /// The field.
        field: Field,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A field that must not be empty is.
    #[error("{field} is empty")]
    EmptyField {
        /// The field.
        field: Field,
    },
    /// The bytes given for the header before the length field are not `length_field_offset` long.
    #[error("header before the length field is {len} bytes, the framing expects {expected}")]
    HeaderMismatch {
        /// Bytes given.
        len: usize,
        /// Bytes expected.
        expected: usize,
    },
    /// The frame is shorter than the length adjustment allows.
    #[error("frame of {len} bytes is too short for a length adjustment of {adjustment}")]
    NegativeLength {
        /// The frame's length.
        len: usize,
        /// The adjustment.
        adjustment: i64,
    },
}

/// A framing configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `max_frame_length` is above the hard cap of 16 MiB, or zero.
    #[error("max frame length {value} is outside 1..={cap}")]
    MaxFrameLength {
        /// The value asked for.
        value: usize,
        /// The hard cap.
        cap: usize,
    },
    /// `num_skip` is larger than the header (length field offset plus length field).
    #[error("num_skip {num_skip} is larger than the {header_len}-byte header")]
    NumSkip {
        /// The value asked for.
        num_skip: usize,
        /// The header's length.
        header_len: usize,
    },
    /// `length_field_offset` is above 64 bytes.
    #[error("length field offset {value} is above the limit of {max}")]
    Offset {
        /// The value asked for.
        value: usize,
        /// The limit.
        max: usize,
    },
}
