//! Typed errors of the pomelo profile: each names the wire element, the value found, the limit it
//! broke and where (docs/POMELO.md, "Errors").
//!
//! - [`PackageError`]: the package stream (4-byte headers) could not be read, or a package was
//!   skipped. Offsets count bytes from the start of the stream. [`PackageError::is_fatal`] says
//!   whether the decoder can go on.
//! - [`MessageError`]: the body of a data package is not a valid message. Offsets count from the
//!   message's flag byte (offset 0). Always recoverable: the package was consumed whole.
//! - [`BodyError`]: the JSON body of a handshake or kick package is not what the protocol says.
//!   Recoverable for the stream, but a gate answers a bad client handshake with `{"code":500}`
//!   ([`BodyError::response_code`]) and closes.
//! - [`EncodeError`]: an encoder refused a package or message breaking a limit; nothing was written.
//! - [`RouteError`], [`DictError`], [`ConfigError`]: route mapping, the route dictionary, limits.

use super::package::PackageType;
use std::fmt;

/// The wire element a [`MessageError`] is about. Its `Display` is the name used in docs/POMELO.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Element {
    /// The message flag byte.
    Flag,
    /// The base-128 varint message id of a request or response.
    MessageId,
    /// The one-byte length before an uncompressed route.
    RouteLength,
    /// The UTF-8 route name.
    Route,
    /// The big-endian u16 route code of a compressed route.
    RouteCode,
}

impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Element::Flag => "flag",
            Element::MessageId => "message id",
            Element::RouteLength => "route length",
            Element::Route => "route",
            Element::RouteCode => "route code",
        })
    }
}

/// "70000", or "at least 65536 (from the first 1 of 3 length bytes)".
fn length_text(len: u32, length_bytes: u8) -> String {
    if length_bytes >= 3 {
        len.to_string()
    } else {
        format!("at least {len} (from the first {length_bytes} of 3 length bytes)")
    }
}

/// The package stream failed, or a package was skipped.
///
/// `offset` is the stream offset of the package's type byte. Fatal variants ([`is_fatal`]) are
/// returned again by every later call: the stream cannot be re-synchronised. After a recoverable
/// one the decoder skips the package's bytes as they arrive and decodes the next package.
///
/// [`is_fatal`]: PackageError::is_fatal
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PackageError {
    /// The type byte is not 1 to 5. Fatal (pinus closes the connection at once too).
    #[error("unknown package type 0x{value:02x} at stream offset {offset}: types are 1 (handshake) to 5 (kick)")]
    UnknownType {
        /// The byte found.
        value: u8,
        /// Stream offset of the byte.
        offset: u64,
    },
    /// The 3-byte body length is over the configured maximum. Refused as soon as the length bytes
    /// that have arrived prove it (the first one may be enough), before any of the body is
    /// buffered; `len` is what those bytes prove. Fatal.
    #[error("{package} package at stream offset {offset}: body length {} is over the maximum of {max} bytes (refused from the length prefix; nothing buffered)", length_text(*.len, *.length_bytes))]
    TooLarge {
        /// The package's type.
        package: PackageType,
        /// The body length, or (with fewer than 3 length bytes seen) the least it can be.
        len: u32,
        /// How many of the 3 length bytes `len` is computed from (missing ones counted as zero).
        length_bytes: u8,
        /// The configured maximum body length.
        max: usize,
        /// Stream offset of the package's type byte.
        offset: u64,
    },
    /// Like [`PackageError::TooLarge`], but the codec was told to skip such packages
    /// ([`Oversize::Skip`](crate::Oversize::Skip)): it discards the package's bytes as they arrive
    /// and then decodes the next package. Recoverable.
    #[error("{package} package at stream offset {offset}: body length {len} is over the maximum of {max} bytes; skipping the package")]
    TooLargeSkipped {
        /// The package's type.
        package: PackageType,
        /// The body length.
        len: u32,
        /// The configured maximum body length.
        max: usize,
        /// Stream offset of the package's type byte.
        offset: u64,
    },
    /// A handshake ack or heartbeat package, whose body must be empty, announces a body. The
    /// codec skips the package (its bytes are discarded as they arrive, never buffered) and goes
    /// on. Recoverable. (pinus ignores such a body and takes the package as an ack or heartbeat.)
    #[error("{package} package at stream offset {offset} has a {len}-byte body; its body must be empty (package skipped)")]
    UnexpectedBody {
        /// The package's type.
        package: PackageType,
        /// The announced body length.
        len: u32,
        /// Stream offset of the package's type byte.
        offset: u64,
    },
    /// The stream ended inside a package (returned by `decode_eof`). Fatal.
    #[error("stream ended inside a package at stream offset {offset}: {buffered} bytes buffered, the package needs {needed}")]
    UnexpectedEof {
        /// Bytes of the unfinished package that had arrived (0 while skipping one).
        buffered: usize,
        /// Bytes the package needs in all, header included (or still to skip); when the header
        /// itself was cut off, 4.
        needed: usize,
        /// Stream offset of the package's type byte.
        offset: u64,
    },
}

impl PackageError {
    /// Whether decoding can go on: `false` for [`PackageError::TooLargeSkipped`] and
    /// [`PackageError::UnexpectedBody`], `true` for the others.
    pub fn is_fatal(&self) -> bool {
        !matches!(
            self,
            PackageError::TooLargeSkipped { .. } | PackageError::UnexpectedBody { .. }
        )
    }

    /// Stream offset of the package the error is about.
    pub fn offset(&self) -> u64 {
        match *self {
            PackageError::UnknownType { offset, .. }
            | PackageError::TooLarge { offset, .. }
            | PackageError::TooLargeSkipped { offset, .. }
            | PackageError::UnexpectedBody { offset, .. }
            | PackageError::UnexpectedEof { offset, .. } => offset,
        }
    }
}

/// A data package's body is not a valid message. Offsets count from the flag byte (offset 0).
///
/// Always recoverable: the package was delimited and consumed, the stream is in sync. (pinus never
/// refuses a message: pomelo-protocol's decoder reads past the end, or throws, or yields a
/// nonsense message, and pinus drops whatever it cannot route.)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// The message ends inside an element.
    #[error(
        "{element} at offset {offset} is truncated: needs {needed} bytes, message has {available} left"
    )]
    Truncated {
        /// The element that was cut off.
        element: Element,
        /// Where it starts.
        offset: usize,
        /// Bytes it needs (at least).
        needed: usize,
        /// Bytes left in the message.
        available: usize,
    },
    /// The flag byte sets one of the bits 5 to 7, which no pomelo version defines.
    #[error("flag 0x{flag:02x} at offset 0 sets reserved bits (mask 0xe0)")]
    ReservedFlagBits {
        /// The flag byte.
        flag: u8,
    },
    /// The message type (flag bits 1 to 3) is not 0 to 3.
    #[error("flag 0x{flag:02x} at offset 0: message type {value} is not request (0), notify (1), response (2) or push (3)")]
    UnknownType {
        /// The flag byte.
        flag: u8,
        /// The message type it carries.
        value: u8,
    },
    /// A response's flag has the route-compressed bit set; responses carry no route.
    #[error(
        "flag 0x{flag:02x} at offset 0: route-compressed bit set on a response, which has no route"
    )]
    CompressedResponse {
        /// The flag byte.
        flag: u8,
    },
    /// The message id varint has its continuation bit set in all of its allowed bytes.
    #[error("message id at offset {offset} does not end within {max_bytes} bytes")]
    IdTooLong {
        /// Where the id starts.
        offset: usize,
        /// The most bytes an id may take (5).
        max_bytes: usize,
    },
    /// The message id does not fit 32 bits.
    #[error("message id {value} at offset {offset} is over the maximum of {max}")]
    IdOverflow {
        /// The value the 5 bytes encode.
        value: u64,
        /// Where the id starts.
        offset: usize,
        /// The largest id, 4,294,967,295.
        max: u32,
    },
    /// The message id varint is not minimal (it ends with a zero group).
    #[error("message id at offset {offset} is not minimal: {value} in {bytes} bytes")]
    IdNotMinimal {
        /// Where the id starts.
        offset: usize,
        /// How many bytes it took.
        bytes: usize,
        /// The value.
        value: u32,
    },
    /// The message id is zero; ids are 1 to 4,294,967,295 (pinus takes id 0 for "no id").
    #[error("message id at offset {offset} is 0; ids are 1 to 4294967295")]
    ZeroId {
        /// Where the id is.
        offset: usize,
    },
    /// An uncompressed route has length 0.
    #[error("route at offset {offset} is empty (length byte 0)")]
    EmptyRoute {
        /// Where the route's length byte is.
        offset: usize,
    },
    /// A route is not UTF-8.
    #[error("route at offset {offset} is not UTF-8: invalid byte at offset {bad_at}")]
    RouteNotUtf8 {
        /// Where the route text starts (after its length byte).
        offset: usize,
        /// Offset of the first invalid byte.
        bad_at: usize,
    },
}

/// The kind of a JSON value, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JsonKind {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool,
    /// A number.
    Number,
    /// A string.
    String,
    /// An array.
    Array,
    /// An object.
    Object,
}

impl JsonKind {
    /// The kind of a parsed value.
    pub fn of(value: &serde_json::Value) -> JsonKind {
        match value {
            serde_json::Value::Null => JsonKind::Null,
            serde_json::Value::Bool(_) => JsonKind::Bool,
            serde_json::Value::Number(_) => JsonKind::Number,
            serde_json::Value::String(_) => JsonKind::String,
            serde_json::Value::Array(_) => JsonKind::Array,
            serde_json::Value::Object(_) => JsonKind::Object,
        }
    }
}

impl fmt::Display for JsonKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JsonKind::Null => "null",
            JsonKind::Bool => "a boolean",
            JsonKind::Number => "a number",
            JsonKind::String => "a string",
            JsonKind::Array => "an array",
            JsonKind::Object => "an object",
        })
    }
}

/// What is wrong with a JSON body (see [`BodyError`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JsonFault {
    /// The body has no bytes.
    #[error("empty (a JSON object is required)")]
    Empty,
    /// The body is not UTF-8.
    #[error("not UTF-8: invalid byte at offset {offset}")]
    NotUtf8 {
        /// Offset of the first invalid byte in the body.
        offset: usize,
    },
    /// The body is not JSON.
    #[error("invalid JSON at line {line} column {column}: {reason}")]
    Syntax {
        /// Line of the error (from 1).
        line: usize,
        /// Column of the error (from 1; 0 at the very start).
        column: usize,
        /// serde_json's description.
        reason: String,
    },
    /// The body is JSON but not an object.
    #[error("not a JSON object: found {found}")]
    NotAnObject {
        /// What it is.
        found: JsonKind,
    },
    /// A key the protocol requires is missing (or `null`).
    #[error("missing `{field}`")]
    MissingField {
        /// The key, dotted from the top (`sys`, `code`).
        field: &'static str,
    },
    /// A known key has a value of the wrong type.
    #[error("`{field}` is {found}, expected {expected}")]
    WrongType {
        /// The key, dotted from the top (`sys.version`).
        field: &'static str,
        /// What the protocol wants there.
        expected: &'static str,
        /// What was found.
        found: JsonKind,
    },
    /// A number is outside the range the protocol gives it.
    #[error("`{field}` is {value}, outside {min}..={max}")]
    OutOfRange {
        /// The key.
        field: &'static str,
        /// The number, as written.
        value: String,
        /// The least allowed.
        min: u64,
        /// The most allowed.
        max: u64,
    },
}

/// The JSON body of a handshake or kick package is not what the protocol says.
///
/// A gate answers a client handshake that fails to parse with `{"code":500}`
/// ([`BodyError::response_code`]) and closes, as pinus does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{package} package body: {fault}")]
pub struct BodyError {
    /// Handshake or kick.
    pub package: PackageType,
    /// What is wrong.
    pub fault: JsonFault,
}

impl BodyError {
    /// The handshake response code a gate answers a bad client handshake with: 500, as pinus
    /// (`CODE_USE_ERROR`).
    pub fn response_code(&self) -> u16 {
        500
    }
}

/// An encoder refused a package or message. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The package body is longer than the codec's maximum body length.
    #[error("{package} package body of {len} bytes is over the maximum of {max} bytes")]
    BodyTooLarge {
        /// The package's type.
        package: PackageType,
        /// The body's length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// A route name is longer than 255 bytes (its length is one byte on the wire).
    #[error("route of {len} bytes is over the limit of {max} bytes")]
    RouteTooLong {
        /// Its length.
        len: usize,
        /// The limit, 255.
        max: usize,
    },
    /// A route name is empty.
    #[error("route is empty")]
    EmptyRoute,
}

/// A pomelo route cannot be mapped to a gatekit module and function.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// The route has no `.` (pinus drops such a message silently).
    #[error("route {route:?} has no '.': pomelo routes are server.handler.method")]
    NoDot {
        /// The route.
        route: String,
    },
    /// Nothing before the first `.`.
    #[error("route {route:?} has an empty server type before the first '.'")]
    EmptyServer {
        /// The route.
        route: String,
    },
    /// Nothing after the first `.`.
    #[error("route {route:?} has an empty handler after the first '.'")]
    EmptyHandler {
        /// The route.
        route: String,
    },
}

/// A route dictionary cannot be built, or a route code is not in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DictError {
    /// More routes than a u16 code can number (pomelo-protocol throws "route number is overflow").
    #[error("dictionary of {count} routes is over the limit of {max}")]
    TooManyRoutes {
        /// Routes given (handler and user routes, duplicates included: each takes a code).
        count: usize,
        /// The limit, 65,535.
        max: usize,
    },
    /// A compressed route's code is not in the dictionary (pinus logs and drops the message).
    #[error("route code {code} is not in the dictionary (codes 1 to {len})")]
    UnknownCode {
        /// The code.
        code: u16,
        /// The dictionary's number of codes.
        len: usize,
    },
}

/// A codec configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The maximum body length is 0 or over what the 3-byte length can carry.
    #[error("max body length {value} is outside 1..={cap}")]
    MaxBodyLength {
        /// The value asked for.
        value: usize,
        /// The cap, 16,777,215.
        cap: usize,
    },
}
