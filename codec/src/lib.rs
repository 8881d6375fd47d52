//! # gatekit-codec
//!
//! The framing codec of gatekit: a pure, I/O-free crate that turns bytes into packets and back, for
//! game-server gates.
//!
//! - [`NativeCodec`] speaks gatekit's native protocol (`docs/PROTOCOL.md`): handshake, request /
//!   response with message ids, notify, push, ping / pong, close with a reason.
//! - [`mqtt`] is MQTT 3.1.1 as mqant's clients speak it (`docs/MQTT.md`), [`pomelo`] the pomelo
//!   protocol of pomelo, pinus, pitaya and nano clients (`docs/POMELO.md`).
//! - [`websocket`] is RFC 6455 framing and the HTTP/1.1 upgrade, sans-I/O, for carrying any of
//!   them over WebSocket (`docs/WEBSOCKET.md`).
//! - [`Framing`] / [`FrameDecoder`] are the generic length-prefix framing underneath, configurable to
//!   define other protocols (1, 2 or 4-byte lengths in either byte order, or a LEB128 varint; header
//!   offset, length adjustment, bytes to skip, maximum frame length).
//! - [`parsers`] holds the nom 8 parsers, one per wire element, for composing your own.
//! - With the `tokio` feature, [`tokio_codec`] implements tokio-util's `Decoder` and `Encoder`.
//!
//! Contracts:
//!
//! - **Incomplete is not invalid.** `Ok(None)` means "need more bytes"; errors mean the input is bad.
//!   A stream that ends mid-frame is its own error, from `decode_eof`.
//! - **Zero-copy.** Decoded routes, topics and bodies are `Bytes` slices of the input buffer; decoding
//!   does no per-packet heap allocation.
//! - **Limits before allocation.** A frame over the maximum is refused from its length prefix alone;
//!   the decoder never buffers more than the header plus the maximum frame length.
//! - **Recoverable vs fatal.** A bad packet inside a well-framed frame, or an oversized frame the
//!   user chose to skip, is reported and decoding goes on; an unframeable stream is fatal
//!   ([`DecodeError::is_fatal`]).
//! - **No panics.** No input makes a decoder panic or loop (fuzzed).
//!
//! ```
//! use gatekit_codec::{NativeCodec, Packet, Request, Route};
//! use bytes::BytesMut;
//!
//! let mut codec = NativeCodec::default();
//! let mut wire = BytesMut::new();
//! let req = Request::new(1.try_into().unwrap(), Route::from_static("room/join"), &b"{\"room\":7}"[..]);
//! codec.encode(&Packet::Request(req), &mut wire).unwrap();
//! if let Some(Packet::Request(r)) = codec.decode(&mut wire).unwrap() {
//!     assert_eq!(r.module(), "room");
//! }
//! ```

#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

#[cfg(feature = "arbitrary")]
mod arbitrary_impl;
/// The README's example is compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

mod error;
pub mod framing;
pub mod mqtt;
pub mod native;
pub mod parsers;
pub mod pomelo;
#[cfg(feature = "tokio")]
pub mod tokio_codec;
pub mod websocket;

pub use error::{ConfigError, DecodeError, EncodeError, Field, FrameError, PacketError};
pub use framing::{
    FrameDecoder, Framing, FramingBuilder, Oversize, DEFAULT_MAX_FRAME_LENGTH, MAX_FRAME_LENGTH_CAP,
};
pub use native::{
    Close, CloseCode, Handshake, MessageId, NativeCodec, Notify, Packet, Push, Request, Response,
    Route, Status, Text, Topic, Welcome, PROTOCOL_VERSION,
};
pub use parsers::{Endian, LengthField};
