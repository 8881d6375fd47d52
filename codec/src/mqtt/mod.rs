//! MQTT 3.1.1, as mqant's clients speak it: gatekit's MQTT profile (`docs/MQTT.md`).
//!
//! [`MqttCodec`] is one end of a connection ([`Role::Server`] for the gate, [`Role::Client`] for
//! the harness): it decodes what the other end sends and encodes what its own end sends.
//!
//! - **Packets**: CONNECT, CONNACK, PUBLISH (QoS 0 and 1), PUBACK, SUBSCRIBE / SUBACK,
//!   UNSUBSCRIBE / UNSUBACK, PINGREQ / PINGRESP, DISCONNECT, and the MQTT 5 CONNACK that refuses a
//!   5.0 client (`20 03 00 84 00`). Everything else is refused with a typed error: a QoS 2 PUBLISH
//!   ([`MqttPacketError::QoS2Publish`], with its packet id and topic), PUBREC / PUBREL / PUBCOMP,
//!   the reserved types 0 and 15 (MQTT 5's AUTH), an MQTT 5 CONNECT
//!   ([`MqttPacketError::UnsupportedProtocolLevel`], with [`MqttDecodeError::connack_refusal`]
//!   giving the CONNACK to answer).
//! - **Framing**: the remaining length is read to all 4 bytes (mqant reads 3); a non-minimal
//!   encoding or a 5th continuation byte is refused, and so is a length over
//!   [`MqttLimits::max_packet_size`], from the length bytes seen so far, before any of the body is
//!   buffered.
//! - **Validation**: fixed-header flags per type as 3.1.1 §2.2.2 requires, UTF-8 without U+0000
//!   in every string, no wildcards in topic names, wildcards in filters placed validly, packet ids
//!   not zero, CONNECT flags' rules, every [`MqttLimits`] limit.
//! - **Zero-copy**: topics, payloads, client id, user name and password are `Bytes` slices of the
//!   input ([`MqttString`], [`TopicName`], [`TopicFilter`]). Decoding a PUBLISH allocates nothing.
//! - **Errors** name the packet type, field, value, limit and offset. [`MqttFrameError`]: the stream
//!   cannot be framed (fatal). [`MqttPacketError`]: the packet was framed and consumed but is
//!   invalid or refused; the decoder is in sync, but MQTT wants the connection closed.
//!
//! ```
//! use gatekit_codec::mqtt::{ConnAck, MqttCodec, Packet, Publish, QoS, TopicName};
//! use bytes::BytesMut;
//!
//! let mut gate = MqttCodec::server();
//! // A client's CONNECT (clean session, keep-alive 60, client id "c1") and a QoS 1 PUBLISH.
//! let mut wire = BytesMut::from(&b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x02c1\
//!     \x32\x13\x00\x0decho/HD_say/1\x00\x01hi"[..]);
//! let Some(Packet::Connect(c)) = gate.decode(&mut wire).unwrap() else { panic!() };
//! assert_eq!((c.client_id.as_str(), c.keep_alive), ("c1", 60));
//! let Some(Packet::Publish(p)) = gate.decode(&mut wire).unwrap() else { panic!() };
//! assert_eq!((p.topic.as_str(), p.qos(), &p.payload[..]), ("echo/HD_say/1", QoS::AtLeastOnce, &b"hi"[..]));
//!
//! let mut out = BytesMut::new();
//! gate.encode(&Packet::ConnAck(ConnAck::Accepted { session_present: false }), &mut out).unwrap();
//! gate.encode(&Packet::PubAck(p.packet_id().unwrap()), &mut out).unwrap();
//! assert_eq!(&out[..], b"\x20\x02\x00\x00\x40\x02\x00\x01");
//! ```

#[cfg(feature = "arbitrary")]
mod arbitrary_impl;
mod codec;
mod decode;
mod encode;
mod error;
mod packet;
pub mod parsers;
mod text;
#[cfg(feature = "tokio")]
mod tokio_codec;

pub use codec::{MqttCodec, MqttLimits, DEFAULT_MAX_PACKET_SIZE};
pub use decode::decode_packet;
pub use encode::{encode_packet, remaining_len};
pub use error::{
    MqttConfigError, MqttDecodeError, MqttEncodeError, MqttField, MqttFrameError, MqttPacketError,
};
pub use packet::{
    ConnAck, Connect, ConnectRefusal, Delivery, Packet, PacketId, PacketType, Protocol, Publish,
    QoS, Role, SubAck, Subscribe, SubscribeReturnCode, Subscription, Unsubscribe, V5ConnAckReason,
    Will,
};
pub use text::{MqttString, MqttTextError, TopicFilter, TopicName, MAX_STRING_LEN};
#[cfg(feature = "tokio")]
pub use tokio_codec::{MqttCodecError, MqttDecoded};
