//! [`NativeCodec`]: the varint framing plus packet decoding and encoding.

use super::decode::decode_packet;
use super::encode::encode_packet;
use super::packet::Packet;
use crate::error::{ConfigError, DecodeError, EncodeError};
use crate::framing::{FrameDecoder, Framing, Oversize, DEFAULT_MAX_FRAME_LENGTH};
use bytes::BytesMut;

/// Decodes and encodes native packets on a byte stream.
///
/// ```
/// use gatekit_codec::{NativeCodec, Packet, Request, Route};
/// use bytes::BytesMut;
///
/// let mut codec = NativeCodec::default();
/// let mut wire = BytesMut::new();
/// let req = Request::new(7.try_into().unwrap(), Route::from_static("chat/send"), &b"hi"[..]);
/// codec.encode(&req.clone().into(), &mut wire).unwrap();
///
/// let mut half = wire.split_to(5);
/// assert_eq!(codec.decode(&mut half).unwrap(), None); // incomplete: need more bytes
/// half.unsplit(wire);
/// match codec.decode(&mut half).unwrap() {
///     Some(Packet::Request(r)) => assert_eq!((r.id().get(), r.module(), r.func(), r.body()), (7, "chat", "send", &b"hi"[..])),
///     other => panic!("{other:?}"),
/// }
/// ```
#[derive(Debug, Clone)]
pub struct NativeCodec {
    frames: FrameDecoder,
}

impl Default for NativeCodec {
    /// 65,535-byte frames, oversized frames fatal.
    fn default() -> Self {
        NativeCodec::new(DEFAULT_MAX_FRAME_LENGTH, Oversize::Fail)
            .expect("default limits are valid")
    }
}

impl NativeCodec {
    /// A codec accepting frames of up to `max_frame_length` bytes (1 to 16 MiB) after the length
    /// prefix, failing or skipping larger ones as `oversize` says.
    pub fn new(max_frame_length: usize, oversize: Oversize) -> Result<Self, ConfigError> {
        let framing = Framing::builder()
            .length_field(crate::LengthField::Varint)
            .max_frame_length(max_frame_length)
            .oversize(oversize)
            .build()?;
        Ok(NativeCodec {
            frames: framing.decoder(),
        })
    }

    /// The maximum frame length.
    pub fn max_frame_length(&self) -> usize {
        self.frames.framing().max_frame_length()
    }

    /// Takes the next packet off the front of `src`.
    ///
    /// - `Ok(Some(packet))`: a packet; its text and bodies are zero-copy slices of `src`'s memory.
    /// - `Ok(None)`: no complete frame yet; call again when more bytes have arrived.
    /// - `Err(e)`, `!e.is_fatal()`: a bad packet in a well-framed frame (consumed), or an oversized
    ///   frame being skipped; call again for the next packet.
    /// - `Err(e)`, `e.is_fatal()`: the stream cannot be framed; every later call returns `e`.
    #[inline]
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
        match self.frames.decode(src)? {
            Some(frame) => Ok(Some(decode_packet(frame)?)),
            None => Ok(None),
        }
    }

    /// Like [`NativeCodec::decode`] when the stream has ended: a partial frame left over is
    /// [`FrameError::UnexpectedEof`](crate::FrameError::UnexpectedEof).
    pub fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
        match self.frames.decode_eof(src)? {
            Some(frame) => Ok(Some(decode_packet(frame)?)),
            None => Ok(None),
        }
    }

    /// Appends `packet` to `dst` as one frame, or refuses it (writing nothing) if it breaks a limit.
    #[inline]
    pub fn encode(&self, packet: &Packet, dst: &mut BytesMut) -> Result<(), EncodeError> {
        encode_packet(packet, self.max_frame_length(), dst)
    }

    /// Whether a fatal error has ended the decoder.
    pub fn is_failed(&self) -> bool {
        self.frames.is_failed()
    }

    /// Whether the decoder sits between frames (no partial frame parsed or being skipped).
    pub fn is_idle(&self) -> bool {
        self.frames.is_idle()
    }
}
