//! tokio-util `Decoder` / `Encoder` implementations (feature `tokio`).
//!
//! tokio-util's `Framed` stops for good after any decoder error, so recoverable errors (a bad packet in
//! a well-framed frame, a skipped oversized frame) come out as items, `Err` inside `Ok(Some(..))`;
//! only fatal errors and I/O errors end the stream.

use crate::error::{DecodeError, EncodeError, FrameError};
use crate::framing::{FrameDecoder, Framing};
use crate::native::{NativeCodec, Packet};
use bytes::{Bytes, BytesMut};
use std::io;

/// An error that ends a framed stream: I/O, a fatal decode error, or an encoder refusal.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The transport failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The stream cannot be decoded any more.
    #[error(transparent)]
    Decode(DecodeError),
    /// A packet or frame was refused by the encoder.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// A decoded item: a packet, or a recoverable error after which decoding goes on.
pub type Decoded = Result<Packet, DecodeError>;

fn split(result: Result<Option<Packet>, DecodeError>) -> Result<Option<Decoded>, CodecError> {
    match result {
        Ok(Some(p)) => Ok(Some(Ok(p))),
        Ok(None) => Ok(None),
        Err(e) if e.is_fatal() => Err(CodecError::Decode(e)),
        Err(e) => Ok(Some(Err(e))),
    }
}

impl tokio_util::codec::Decoder for NativeCodec {
    type Item = Decoded;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Decoded>, CodecError> {
        split(NativeCodec::decode(self, src))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Decoded>, CodecError> {
        split(NativeCodec::decode_eof(self, src))
    }
}

impl tokio_util::codec::Encoder<Packet> for NativeCodec {
    type Error = CodecError;

    fn encode(&mut self, item: Packet, dst: &mut BytesMut) -> Result<(), CodecError> {
        Ok(NativeCodec::encode(self, &item, dst)?)
    }
}

impl tokio_util::codec::Encoder<&Packet> for NativeCodec {
    type Error = CodecError;

    fn encode(&mut self, item: &Packet, dst: &mut BytesMut) -> Result<(), CodecError> {
        Ok(NativeCodec::encode(self, item, dst)?)
    }
}

/// The generic framing as a tokio-util codec: items are frame bodies, or a recoverable
/// [`FrameError::TooLargeSkipped`].
#[derive(Debug, Clone)]
pub struct FrameCodec {
    decoder: FrameDecoder,
}

impl FrameCodec {
    /// A codec with this framing.
    pub fn new(framing: &Framing) -> Self {
        FrameCodec {
            decoder: framing.decoder(),
        }
    }
}

fn split_frame(
    result: Result<Option<Bytes>, FrameError>,
) -> Result<Option<Result<Bytes, FrameError>>, CodecError> {
    match result {
        Ok(Some(f)) => Ok(Some(Ok(f))),
        Ok(None) => Ok(None),
        Err(e) if e.is_fatal() => Err(CodecError::Decode(e.into())),
        Err(e) => Ok(Some(Err(e))),
    }
}

impl tokio_util::codec::Decoder for FrameCodec {
    type Item = Result<Bytes, FrameError>;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, CodecError> {
        split_frame(self.decoder.decode(src))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, CodecError> {
        split_frame(self.decoder.decode_eof(src))
    }
}

impl tokio_util::codec::Encoder<&[u8]> for FrameCodec {
    type Error = CodecError;

    /// Encodes a frame body; the framing's `length_field_offset` must be 0.
    fn encode(&mut self, item: &[u8], dst: &mut BytesMut) -> Result<(), CodecError> {
        Ok(self.decoder.framing().encode(&[], item, dst)?)
    }
}

impl tokio_util::codec::Encoder<Bytes> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), CodecError> {
        Ok(self.decoder.framing().encode(&[], &item, dst)?)
    }
}
