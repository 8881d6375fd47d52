//! tokio-util `Decoder` / `Encoder` for [`MqttCodec`] (feature `tokio`).
//!
//! As for the native codec, packet errors (the decoder is still in sync) come out as items,
//! `Err` inside `Ok(Some(..))`, so the gate can send a refusal CONNACK before closing; fatal errors
//! and I/O errors end the stream.

use super::codec::MqttCodec;
use super::error::{MqttDecodeError, MqttEncodeError};
use super::packet::Packet;
use bytes::BytesMut;
use std::io;

/// An error that ends a framed MQTT stream: I/O, a fatal decode error, or an encoder refusal.
#[derive(Debug, thiserror::Error)]
pub enum MqttCodecError {
    /// The transport failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The stream cannot be decoded any more.
    #[error(transparent)]
    Decode(MqttDecodeError),
    /// A packet was refused by the encoder.
    #[error(transparent)]
    Encode(#[from] MqttEncodeError),
}

/// A decoded item: a packet, or a packet error after which the decoder is still in sync.
pub type MqttDecoded = Result<Packet, MqttDecodeError>;

fn split(
    result: Result<Option<Packet>, MqttDecodeError>,
) -> Result<Option<MqttDecoded>, MqttCodecError> {
    match result {
        Ok(Some(p)) => Ok(Some(Ok(p))),
        Ok(None) => Ok(None),
        Err(e) if e.is_fatal() => Err(MqttCodecError::Decode(e)),
        Err(e) => Ok(Some(Err(e))),
    }
}

impl tokio_util::codec::Decoder for MqttCodec {
    type Item = MqttDecoded;
    type Error = MqttCodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<MqttDecoded>, MqttCodecError> {
        split(MqttCodec::decode(self, src))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<MqttDecoded>, MqttCodecError> {
        split(MqttCodec::decode_eof(self, src))
    }
}

impl tokio_util::codec::Encoder<Packet> for MqttCodec {
    type Error = MqttCodecError;

    fn encode(&mut self, item: Packet, dst: &mut BytesMut) -> Result<(), MqttCodecError> {
        Ok(MqttCodec::encode(self, &item, dst)?)
    }
}

impl tokio_util::codec::Encoder<&Packet> for MqttCodec {
    type Error = MqttCodecError;

    fn encode(&mut self, item: &Packet, dst: &mut BytesMut) -> Result<(), MqttCodecError> {
        Ok(MqttCodec::encode(self, item, dst)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_util::codec::Decoder;

    #[test]
    fn packet_errors_are_items_fatal_errors_end() {
        let mut c = MqttCodec::server();
        let mut src = BytesMut::from(&b"\xd0\x00\xc0\x00\x30\xff\xff\xff\x7f"[..]);
        assert!(matches!(
            Decoder::decode(&mut c, &mut src),
            Ok(Some(Err(_)))
        ));
        assert!(matches!(
            Decoder::decode(&mut c, &mut src),
            Ok(Some(Ok(Packet::PingReq)))
        ));
        assert!(matches!(
            Decoder::decode(&mut c, &mut src),
            Err(MqttCodecError::Decode(_))
        ));
    }
}
