//! Decoding one complete packet (fixed header included) into a [`Packet`].

use super::codec::MqttLimits;
use super::error::{MqttField, MqttPacketError};
use super::packet::{
    ConnAck, Connect, ConnectRefusal, Delivery, Packet, PacketType, Protocol, Publish, QoS, Role,
    SubAck, Subscribe, SubscribeReturnCode, Subscription, Unsubscribe, V5ConnAckReason, Will,
};
use super::parsers::{self, Fault, PResult};
use super::text::{MqttString, TopicFilter, TopicName, MAX_STRING_LEN};
use bytes::{Buf, Bytes};

/// Walks a packet with the named parsers, turning their faults into [`MqttPacketError`]s that name
/// the packet type, the field and its offset (from the packet's first byte).
struct Cursor<'a> {
    packet: &'a [u8],
    rest: &'a [u8],
    ty: PacketType,
}

impl<'a> Cursor<'a> {
    #[inline(always)]
    fn pos(&self) -> usize {
        self.packet.len() - self.rest.len()
    }

    #[inline(always)]
    fn step<T>(
        &mut self,
        field: MqttField,
        parser: impl Fn(&'a [u8]) -> PResult<'a, T>,
    ) -> Result<T, MqttPacketError> {
        match parser(self.rest) {
            Ok((rest, value)) => {
                self.rest = rest;
                Ok(value)
            }
            Err(nom::Err::Error(f) | nom::Err::Failure(f)) => Err(self.error(field, f)),
            Err(nom::Err::Incomplete(_)) => Err(self.error(field, Fault::Short { needed: 1 })),
        }
    }

    /// The bytes of a field parsed by `step`, as a zero-copy slice of the packet.
    #[inline(always)]
    fn slice(packet: &Bytes, sub: &[u8]) -> Bytes {
        if sub.is_empty() {
            Bytes::new()
        } else {
            packet.slice_ref(sub)
        }
    }

    #[cold]
    #[inline(never)]
    fn error(&self, field: MqttField, fault: Fault) -> MqttPacketError {
        let packet = self.ty;
        let offset = self.pos();
        let available = self.rest.len();
        // Text starts after its two-byte length.
        let text_at = offset + 2;
        match fault {
            Fault::Short { needed } => MqttPacketError::Truncated {
                packet,
                field,
                offset,
                needed,
                available,
            },
            Fault::TooLong { len, max } => MqttPacketError::TooLong {
                packet,
                field,
                offset,
                len,
                max,
            },
            Fault::Empty => MqttPacketError::EmptyTopic {
                packet,
                field,
                offset,
            },
            Fault::ZeroPacketId => MqttPacketError::ZeroPacketId { packet, offset },
            Fault::Utf8 { at } => MqttPacketError::InvalidUtf8 {
                packet,
                field,
                offset,
                at: text_at + at,
            },
            Fault::Nul { at } => MqttPacketError::NulCharacter {
                packet,
                field,
                offset,
                at: text_at + at,
            },
            Fault::Wildcard { at } => MqttPacketError::WildcardInTopic {
                packet,
                field,
                offset,
                at: text_at + at,
            },
            Fault::BadFilter { at } => {
                let len = self
                    .rest
                    .get(..2)
                    .map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])));
                let text = self.rest.get(2..2 + len).unwrap_or_default();
                MqttPacketError::InvalidTopicFilter {
                    packet,
                    filter: String::from_utf8_lossy(text).into_owned(),
                    offset,
                    at: text_at + at,
                }
            }
            Fault::QoS3 => MqttPacketError::InvalidQoS {
                packet,
                field,
                offset,
            },
            Fault::Reserved { value } => match parsers::connect_flags_rule(value) {
                Some(rule) if field == MqttField::ConnectFlags => {
                    MqttPacketError::InvalidConnectFlags {
                        flags: value,
                        offset,
                        rule,
                    }
                }
                _ => MqttPacketError::ReservedBits {
                    packet,
                    field,
                    value,
                    offset,
                },
            },
            Fault::Trailing { extra } => MqttPacketError::TrailingBytes {
                packet,
                offset,
                extra,
            },
            Fault::LengthTooLong
            | Fault::LengthNotMinimal { .. }
            | Fault::LengthOverMax { .. }
            | Fault::Nom(_) => MqttPacketError::Truncated {
                packet,
                field,
                offset,
                needed: available + 1,
                available,
            },
        }
    }
}

/// Decodes one complete packet: `packet` holds the fixed header (`header_len` bytes: type and
/// flags, remaining length) and exactly the remaining length's bytes after it, as
/// [`parsers::fixed_header`] delimits it. (A `packet` shorter than that is reported as truncated,
/// never a panic.)
///
/// `role` says which end decodes (a [`Role::Server`] accepts what clients send), `limits` the
/// field limits. Zero-copy: topics, payloads, client id, user name and password are slices of
/// `packet`; a PUBLISH is decoded without any heap allocation.
#[inline]
pub fn decode_packet(
    packet: Bytes,
    header_len: usize,
    role: Role,
    limits: &MqttLimits,
) -> Result<Packet, MqttPacketError> {
    if packet.is_empty() {
        return Err(MqttPacketError::Truncated {
            packet: PacketType::Reserved,
            field: MqttField::PacketType,
            offset: 0,
            needed: 2,
            available: 0,
        });
    }
    let header_len = header_len.clamp(1, packet.len());
    decode_framed(packet, header_len, role, limits)
}

/// [`decode_packet`] for a packet the codec framed: not empty, `header_len` within it.
#[inline(always)]
pub(crate) fn decode_framed(
    packet: Bytes,
    header_len: usize,
    role: Role,
    limits: &MqttLimits,
) -> Result<Packet, MqttPacketError> {
    let byte1 = packet[0];
    let ty = PacketType::from_byte1(byte1);
    // The common case first, and in a function of its own.
    if ty == PacketType::Publish {
        return decode_publish(packet, header_len, limits).map(Packet::Publish);
    }
    match ty {
        PacketType::Reserved | PacketType::Auth => {
            return Err(MqttPacketError::ReservedPacketType { packet: ty })
        }
        PacketType::PubRec | PacketType::PubRel | PacketType::PubComp => {
            return Err(MqttPacketError::UnsupportedPacketType { packet: ty })
        }
        _ => {}
    }
    if !role.receives(ty) {
        return Err(MqttPacketError::UnexpectedPacket { packet: ty, role });
    }
    let flags = byte1 & 0x0f;
    if let Some(expected) = ty.required_flags() {
        if flags != expected {
            return Err(MqttPacketError::InvalidFlags {
                packet: ty,
                flags,
                expected,
            });
        }
    }
    let mut c = Cursor {
        packet: &packet,
        rest: &packet[header_len..],
        ty,
    };
    let packet = match ty {
        PacketType::Connect => Packet::Connect(Box::new(decode_connect(&mut c, &packet, limits)?)),
        PacketType::ConnAck => decode_connack(&mut c)?,
        PacketType::PubAck => {
            let id = c.step(MqttField::PacketId, parsers::packet_id)?;
            c.step(MqttField::PacketId, parsers::end)?;
            Packet::PubAck(id)
        }
        PacketType::UnsubAck => {
            let id = c.step(MqttField::PacketId, parsers::packet_id)?;
            c.step(MqttField::PacketId, parsers::end)?;
            Packet::UnsubAck(id)
        }
        PacketType::Subscribe => Packet::Subscribe(decode_subscribe(&mut c, &packet, limits)?),
        PacketType::SubAck => Packet::SubAck(decode_suback(&mut c, limits)?),
        PacketType::Unsubscribe => {
            Packet::Unsubscribe(decode_unsubscribe(&mut c, &packet, limits)?)
        }
        PacketType::PingReq | PacketType::PingResp | PacketType::Disconnect => {
            c.step(MqttField::RemainingLength, parsers::end)?;
            match ty {
                PacketType::PingReq => Packet::PingReq,
                PacketType::PingResp => Packet::PingResp,
                _ => Packet::Disconnect,
            }
        }
        PacketType::Publish
        | PacketType::Reserved
        | PacketType::Auth
        | PacketType::PubRec
        | PacketType::PubRel
        | PacketType::PubComp => unreachable!("handled above"),
    };
    Ok(packet)
}

/// PUBLISH: topic name, packet id (QoS 1), payload. Accepted by both roles.
#[inline]
fn decode_publish(
    mut packet: Bytes,
    header_len: usize,
    limits: &MqttLimits,
) -> Result<Publish, MqttPacketError> {
    let byte1 = packet[0]; // checked by the caller
    let (dup, qos, retain) =
        parsers::publish_flags(byte1).map_err(|_| MqttPacketError::InvalidQoS {
            packet: PacketType::Publish,
            field: MqttField::Flags,
            offset: 0,
        })?;
    if dup && qos == QoS::AtMostOnce {
        return Err(MqttPacketError::DupWithQoS0);
    }
    let mut c = Cursor {
        packet: &packet,
        rest: &packet[header_len..],
        ty: PacketType::Publish,
    };
    let topic_at = c.pos() + 2;
    let topic_len = c
        .step(
            MqttField::TopicName,
            parsers::topic_name(limits.max_topic_len),
        )?
        .len();
    let delivery = match qos {
        QoS::AtMostOnce => Delivery::AtMostOnce,
        QoS::AtLeastOnce => Delivery::AtLeastOnce {
            packet_id: c.step(MqttField::PacketId, parsers::packet_id)?,
            dup,
        },
        QoS::ExactlyOnce => {
            let id = c.step(MqttField::PacketId, parsers::packet_id)?;
            return Err(MqttPacketError::QoS2Publish {
                packet_id: id.get(),
                topic: String::from_utf8_lossy(&packet[topic_at..topic_at + topic_len])
                    .into_owned(),
            });
        }
    };
    let payload_at = c.pos();
    let topic = TopicName::from_bytes_unchecked(packet.slice(topic_at..topic_at + topic_len));
    packet.advance(payload_at);
    Ok(Publish {
        delivery,
        retain,
        topic,
        payload: packet,
    })
}

/// CONNECT: protocol name and level, flags, keep alive; client id, will, user name, password.
fn decode_connect(
    c: &mut Cursor<'_>,
    packet: &Bytes,
    limits: &MqttLimits,
) -> Result<Connect, MqttPacketError> {
    let name_at = c.pos();
    let name = c.step(
        MqttField::ProtocolName,
        parsers::length_prefixed(MAX_STRING_LEN),
    )?;
    let name: &'static str = match name {
        b"MQTT" => "MQTT",
        b"MQIsdp" => "MQIsdp",
        other => {
            return Err(MqttPacketError::UnknownProtocol {
                name: String::from_utf8_lossy(other).into_owned(),
                offset: name_at,
            })
        }
    };
    let level_at = c.pos();
    let level = c.step(MqttField::ProtocolLevel, parsers::byte)?;
    let protocol = match (name, level) {
        ("MQTT", 4) => Protocol::V311,
        ("MQIsdp", 3) => Protocol::V31,
        _ => {
            // MQTT 5 (level 5) is recognised here, before its flags and properties are misread.
            return Err(MqttPacketError::UnsupportedProtocolLevel {
                name,
                level,
                offset: level_at,
            });
        }
    };
    let flags = c.step(MqttField::ConnectFlags, parsers::connect_flags)?;
    let keep_alive = c.step(MqttField::KeepAlive, parsers::be_u16)?;
    let id_at = c.pos();
    let client_id = c.step(
        MqttField::ClientId,
        parsers::string(limits.max_client_id_len),
    )?;
    if client_id.is_empty() && (protocol == Protocol::V31 || !flags.clean_session) {
        return Err(MqttPacketError::EmptyClientId {
            protocol,
            offset: id_at,
        });
    }
    let client_id = MqttString::from_bytes_unchecked(Cursor::slice(packet, client_id.as_bytes()));
    let will = match flags.will {
        Some((qos, retain)) => {
            let topic = c.step(
                MqttField::WillTopic,
                parsers::topic_name(limits.max_topic_len),
            )?;
            let topic = TopicName::from_bytes_unchecked(Cursor::slice(packet, topic.as_bytes()));
            let payload = c.step(MqttField::WillPayload, parsers::binary(MAX_STRING_LEN))?;
            Some(Will {
                topic,
                payload: Cursor::slice(packet, payload),
                qos,
                retain,
            })
        }
        None => None,
    };
    let username = if flags.username {
        let name = c.step(
            MqttField::Username,
            parsers::string(limits.max_username_len),
        )?;
        Some(MqttString::from_bytes_unchecked(Cursor::slice(
            packet,
            name.as_bytes(),
        )))
    } else {
        None
    };
    let password = if flags.password {
        let pw = c.step(
            MqttField::Password,
            parsers::binary(limits.max_password_len),
        )?;
        Some(Cursor::slice(packet, pw))
    } else {
        None
    };
    c.step(MqttField::Payload, parsers::end)?;
    Ok(Connect {
        protocol,
        clean_session: flags.clean_session,
        keep_alive,
        client_id,
        will,
        username,
        password,
    })
}

/// CONNACK: remaining length 2 is 3.1.1 (acknowledge flags, return code); 3 or more is read as
/// MQTT 5 (acknowledge flags, reason code, properties length), of which only a bare refusal is
/// accepted.
fn decode_connack(c: &mut Cursor<'_>) -> Result<Packet, MqttPacketError> {
    let v5 = c.rest.len() >= 3;
    let flags_at = c.pos();
    let flags = c.step(MqttField::AckFlags, parsers::byte)?;
    if flags & 0xfe != 0 || (v5 && flags != 0) {
        return Err(MqttPacketError::ReservedBits {
            packet: PacketType::ConnAck,
            field: MqttField::AckFlags,
            value: flags,
            offset: flags_at,
        });
    }
    let code_at = c.pos();
    if v5 {
        let code = c.step(MqttField::ReasonCode, parsers::byte)?;
        let Some(reason) = V5ConnAckReason::from_u8(code) else {
            return Err(MqttPacketError::InvalidCode {
                packet: PacketType::ConnAck,
                field: MqttField::ReasonCode,
                value: code,
                offset: code_at,
            });
        };
        let props_at = c.pos();
        let props = c.step(MqttField::Properties, parsers::byte)?;
        if props != 0 {
            return Err(MqttPacketError::UnsupportedProperties {
                len: props,
                offset: props_at,
            });
        }
        c.step(MqttField::Properties, parsers::end)?;
        return Ok(Packet::ConnAckV5(reason));
    }
    let code = c.step(MqttField::ReturnCode, parsers::byte)?;
    c.step(MqttField::ReturnCode, parsers::end)?;
    let session_present = flags & 1 != 0;
    match (code, ConnectRefusal::from_u8(code)) {
        (0, _) => Ok(Packet::ConnAck(ConnAck::Accepted { session_present })),
        (_, Some(_)) if session_present => Err(MqttPacketError::SessionPresentOnRefusal { code }),
        (_, Some(r)) => Ok(Packet::ConnAck(ConnAck::Refused(r))),
        (_, None) => Err(MqttPacketError::InvalidCode {
            packet: PacketType::ConnAck,
            field: MqttField::ReturnCode,
            value: code,
            offset: code_at,
        }),
    }
}

/// Refuses a list entry over the limit.
#[inline]
fn check_count(
    c: &Cursor<'_>,
    count: usize,
    field: MqttField,
    max: usize,
) -> Result<(), MqttPacketError> {
    if count >= max {
        return Err(MqttPacketError::TooManyEntries {
            packet: c.ty,
            field,
            offset: c.pos(),
            max,
        });
    }
    Ok(())
}

/// SUBSCRIBE: packet id, then one or more (topic filter, options).
fn decode_subscribe(
    c: &mut Cursor<'_>,
    packet: &Bytes,
    limits: &MqttLimits,
) -> Result<Subscribe, MqttPacketError> {
    let packet_id = c.step(MqttField::PacketId, parsers::packet_id)?;
    let list_at = c.pos();
    let mut subscriptions = Vec::new();
    while !c.rest.is_empty() {
        check_count(
            c,
            subscriptions.len(),
            MqttField::TopicFilter,
            limits.max_filters,
        )?;
        let filter = c.step(
            MqttField::TopicFilter,
            parsers::topic_filter(limits.max_topic_len),
        )?;
        let filter = TopicFilter::from_bytes_unchecked(Cursor::slice(packet, filter.as_bytes()));
        let qos = c.step(
            MqttField::SubscriptionOptions,
            parsers::subscription_options,
        )?;
        subscriptions.push(Subscription { filter, qos });
    }
    if subscriptions.is_empty() {
        return Err(MqttPacketError::NoEntries {
            packet: PacketType::Subscribe,
            field: MqttField::TopicFilter,
            offset: list_at,
        });
    }
    Ok(Subscribe {
        packet_id,
        subscriptions,
    })
}

/// SUBACK: packet id, then one or more return codes.
fn decode_suback(c: &mut Cursor<'_>, limits: &MqttLimits) -> Result<SubAck, MqttPacketError> {
    let packet_id = c.step(MqttField::PacketId, parsers::packet_id)?;
    let list_at = c.pos();
    let mut return_codes = Vec::with_capacity(c.rest.len().min(limits.max_filters));
    while !c.rest.is_empty() {
        check_count(
            c,
            return_codes.len(),
            MqttField::ReturnCode,
            limits.max_filters,
        )?;
        let at = c.pos();
        let b = c.step(MqttField::ReturnCode, parsers::byte)?;
        match SubscribeReturnCode::from_u8(b) {
            Some(code) => return_codes.push(code),
            None => {
                return Err(MqttPacketError::InvalidCode {
                    packet: PacketType::SubAck,
                    field: MqttField::ReturnCode,
                    value: b,
                    offset: at,
                })
            }
        }
    }
    if return_codes.is_empty() {
        return Err(MqttPacketError::NoEntries {
            packet: PacketType::SubAck,
            field: MqttField::ReturnCode,
            offset: list_at,
        });
    }
    Ok(SubAck {
        packet_id,
        return_codes,
    })
}

/// UNSUBSCRIBE: packet id, then one or more topic filters.
fn decode_unsubscribe(
    c: &mut Cursor<'_>,
    packet: &Bytes,
    limits: &MqttLimits,
) -> Result<Unsubscribe, MqttPacketError> {
    let packet_id = c.step(MqttField::PacketId, parsers::packet_id)?;
    let list_at = c.pos();
    let mut filters = Vec::new();
    while !c.rest.is_empty() {
        check_count(c, filters.len(), MqttField::TopicFilter, limits.max_filters)?;
        let filter = c.step(
            MqttField::TopicFilter,
            parsers::topic_filter(limits.max_topic_len),
        )?;
        filters.push(TopicFilter::from_bytes_unchecked(Cursor::slice(
            packet,
            filter.as_bytes(),
        )));
    }
    if filters.is_empty() {
        return Err(MqttPacketError::NoEntries {
            packet: PacketType::Unsubscribe,
            field: MqttField::TopicFilter,
            offset: list_at,
        });
    }
    Ok(Unsubscribe { packet_id, filters })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::parsers::fixed_header;

    fn server(wire: &[u8]) -> Result<Packet, MqttPacketError> {
        decode(wire, Role::Server)
    }

    fn client(wire: &[u8]) -> Result<Packet, MqttPacketError> {
        decode(wire, Role::Client)
    }

    fn decode(wire: &[u8], role: Role) -> Result<Packet, MqttPacketError> {
        let limits = MqttLimits::default();
        let (_, h) = fixed_header(limits.max_packet_size)(wire).expect("whole header");
        assert_eq!(
            h.header_len + h.remaining_len as usize,
            wire.len(),
            "whole packet"
        );
        decode_packet(Bytes::copy_from_slice(wire), h.header_len, role, &limits)
    }

    #[test]
    fn publish_qos0_and_qos1() {
        let Packet::Publish(p) = server(b"\x30\x07\x00\x03a/bhi").unwrap() else {
            panic!()
        };
        assert_eq!(
            (p.topic.as_str(), &p.payload[..], p.qos()),
            ("a/b", &b"hi"[..], QoS::AtMostOnce)
        );
        let Packet::Publish(p) = client(b"\x3b\x07\x00\x01t\x00\x05hi").unwrap() else {
            panic!()
        };
        assert_eq!(p.packet_id().unwrap().get(), 5);
        assert!(p.dup() && p.retain);
        assert_eq!(&p.payload[..], b"hi");
        // Empty payload.
        assert!(matches!(
            server(b"\x32\x05\x00\x01t\x00\x01"),
            Ok(Packet::Publish(_))
        ));
    }

    #[test]
    fn publish_refusals() {
        assert_eq!(
            server(b"\x34\x07\x00\x01t\x00\x09hi"),
            Err(MqttPacketError::QoS2Publish {
                packet_id: 9,
                topic: "t".into()
            })
        );
        assert_eq!(
            server(b"\x36\x03\x00\x01t"),
            Err(MqttPacketError::InvalidQoS {
                packet: PacketType::Publish,
                field: MqttField::Flags,
                offset: 0
            })
        );
        assert_eq!(
            server(b"\x38\x03\x00\x01t"),
            Err(MqttPacketError::DupWithQoS0)
        );
        assert_eq!(
            server(b"\x32\x05\x00\x01t\x00\x00"),
            Err(MqttPacketError::ZeroPacketId {
                packet: PacketType::Publish,
                offset: 5
            })
        );
        assert_eq!(
            server(b"\x30\x04\x00\x02a#"),
            Err(MqttPacketError::WildcardInTopic {
                packet: PacketType::Publish,
                field: MqttField::TopicName,
                offset: 2,
                at: 5
            })
        );
        assert_eq!(
            server(b"\x30\x02\x00\x00"),
            Err(MqttPacketError::EmptyTopic {
                packet: PacketType::Publish,
                field: MqttField::TopicName,
                offset: 2
            })
        );
        assert_eq!(
            server(b"\x30\x03\x00\x05a"),
            Err(MqttPacketError::Truncated {
                packet: PacketType::Publish,
                field: MqttField::TopicName,
                offset: 2,
                needed: 7,
                available: 3
            })
        );
    }

    #[test]
    fn types_flags_and_directions() {
        assert_eq!(
            server(b"\x00\x00"),
            Err(MqttPacketError::ReservedPacketType {
                packet: PacketType::Reserved
            })
        );
        assert_eq!(
            client(b"\xf0\x00"),
            Err(MqttPacketError::ReservedPacketType {
                packet: PacketType::Auth
            })
        );
        assert_eq!(
            server(b"\x62\x02\x00\x01"),
            Err(MqttPacketError::UnsupportedPacketType {
                packet: PacketType::PubRel
            })
        );
        assert_eq!(
            server(b"\x20\x02\x00\x00"),
            Err(MqttPacketError::UnexpectedPacket {
                packet: PacketType::ConnAck,
                role: Role::Server
            })
        );
        assert_eq!(
            client(b"\xc0\x00"),
            Err(MqttPacketError::UnexpectedPacket {
                packet: PacketType::PingReq,
                role: Role::Client
            })
        );
        assert_eq!(
            server(b"\x80\x06\x00\x01\x00\x01a\x00"),
            Err(MqttPacketError::InvalidFlags {
                packet: PacketType::Subscribe,
                flags: 0,
                expected: 2
            })
        );
        assert_eq!(
            server(b"\xc1\x00"),
            Err(MqttPacketError::InvalidFlags {
                packet: PacketType::PingReq,
                flags: 1,
                expected: 0
            })
        );
        assert_eq!(server(b"\xc0\x00"), Ok(Packet::PingReq));
        assert_eq!(server(b"\xe0\x00"), Ok(Packet::Disconnect));
        assert_eq!(client(b"\xd0\x00"), Ok(Packet::PingResp));
        assert_eq!(
            server(b"\xe0\x01\x00"),
            Err(MqttPacketError::TrailingBytes {
                packet: PacketType::Disconnect,
                offset: 2,
                extra: 1
            })
        );
    }

    const CONNECT_FULL: &[u8] = b"\x10\x28\x00\x04MQTT\x04\xee\x00\x3c\x00\x03cid\x00\x03w/t\x00\x04gone\x00\x04user\x00\x06secret";

    #[test]
    fn connect_with_everything() {
        let Packet::Connect(c) = server(CONNECT_FULL).unwrap() else {
            panic!()
        };
        assert_eq!(c.protocol, Protocol::V311);
        assert!(c.clean_session);
        assert_eq!(c.keep_alive, 60);
        assert_eq!(c.client_id, "cid");
        let will = c.will.as_ref().unwrap();
        assert_eq!(
            (will.topic.as_str(), &will.payload[..]),
            ("w/t", &b"gone"[..])
        );
        assert_eq!((will.qos, will.retain), (QoS::AtLeastOnce, true));
        assert_eq!(c.username.as_ref().unwrap(), "user");
        assert_eq!(&c.password.as_ref().unwrap()[..], b"secret");
    }

    #[test]
    fn connect_protocols() {
        let Packet::Connect(c) =
            server(b"\x10\x11\x00\x06MQIsdp\x03\x02\x00\x0a\x00\x03cid").unwrap()
        else {
            panic!()
        };
        assert_eq!(c.protocol, Protocol::V31);
        let v5 = server(b"\x10\x10\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x03cid").unwrap_err();
        assert!(v5.is_mqtt5_connect());
        assert_eq!(
            v5,
            MqttPacketError::UnsupportedProtocolLevel {
                name: "MQTT",
                level: 5,
                offset: 8
            }
        );
        assert_eq!(
            v5.connack_refusal(),
            Some(Packet::ConnAckV5(
                V5ConnAckReason::UnsupportedProtocolVersion
            ))
        );
        let v3 = server(b"\x10\x0f\x00\x04MQTT\x03\x02\x00\x3c\x00\x03cid").unwrap_err();
        assert_eq!(
            v3.connack_refusal(),
            Some(Packet::ConnAck(ConnAck::Refused(
                ConnectRefusal::UnacceptableProtocolVersion
            )))
        );
        let http = server(b"\x10\x0c\x00\x04HTTP\x04\x02\x00\x3c\x00\x00").unwrap_err();
        assert_eq!(
            http,
            MqttPacketError::UnknownProtocol {
                name: "HTTP".into(),
                offset: 2
            }
        );
        assert_eq!(http.connack_refusal(), None);
    }

    #[test]
    fn connect_client_id_rules() {
        // Empty with clean session: fine in 3.1.1.
        assert!(server(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00").is_ok());
        let e = server(b"\x10\x0c\x00\x04MQTT\x04\x00\x00\x3c\x00\x00").unwrap_err();
        assert_eq!(
            e,
            MqttPacketError::EmptyClientId {
                protocol: Protocol::V311,
                offset: 12
            }
        );
        assert!(matches!(
            e.connack_refusal(),
            Some(Packet::ConnAck(ConnAck::Refused(
                ConnectRefusal::IdentifierRejected
            )))
        ));
        let e = server(b"\x10\x0e\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x00").unwrap_err();
        assert!(matches!(
            e,
            MqttPacketError::EmptyClientId {
                protocol: Protocol::V31,
                ..
            }
        ));
    }

    #[test]
    fn connect_flag_rules() {
        let e = server(b"\x10\x0f\x00\x04MQTT\x04\x03\x00\x3c\x00\x03cid").unwrap_err();
        assert!(
            matches!(
                e,
                MqttPacketError::InvalidConnectFlags {
                    flags: 3,
                    offset: 9,
                    ..
                }
            ),
            "{e:?}"
        );
        let e = server(b"\x10\x0f\x00\x04MQTT\x04\x42\x00\x3c\x00\x03cid").unwrap_err();
        assert!(
            matches!(e, MqttPacketError::InvalidConnectFlags { flags: 0x42, .. }),
            "{e:?}"
        );
        let e = server(b"\x10\x0f\x00\x04MQTT\x04\x1e\x00\x3c\x00\x03cid").unwrap_err();
        assert_eq!(
            e,
            MqttPacketError::InvalidQoS {
                packet: PacketType::Connect,
                field: MqttField::ConnectFlags,
                offset: 9
            }
        );
        // User name flag but no user name.
        let e = server(b"\x10\x0f\x00\x04MQTT\x04\x82\x00\x3c\x00\x03cid").unwrap_err();
        assert!(
            matches!(
                e,
                MqttPacketError::Truncated {
                    field: MqttField::Username,
                    offset: 17,
                    ..
                }
            ),
            "{e:?}"
        );
        // Bytes after the last field.
        let e = server(b"\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x03cidX").unwrap_err();
        assert!(
            matches!(
                e,
                MqttPacketError::TrailingBytes {
                    offset: 17,
                    extra: 1,
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn connack_forms() {
        assert_eq!(
            client(b"\x20\x02\x01\x00"),
            Ok(Packet::ConnAck(ConnAck::Accepted {
                session_present: true
            }))
        );
        assert_eq!(
            client(b"\x20\x02\x00\x05"),
            Ok(Packet::ConnAck(ConnAck::Refused(
                ConnectRefusal::NotAuthorized
            )))
        );
        assert_eq!(
            client(b"\x20\x02\x01\x05"),
            Err(MqttPacketError::SessionPresentOnRefusal { code: 5 })
        );
        assert!(matches!(
            client(b"\x20\x02\x02\x00"),
            Err(MqttPacketError::ReservedBits {
                field: MqttField::AckFlags,
                value: 2,
                offset: 2,
                ..
            })
        ));
        assert!(matches!(
            client(b"\x20\x02\x00\x06"),
            Err(MqttPacketError::InvalidCode {
                value: 6,
                offset: 3,
                ..
            })
        ));
        assert_eq!(
            client(b"\x20\x03\x00\x84\x00"),
            Ok(Packet::ConnAckV5(
                V5ConnAckReason::UnsupportedProtocolVersion
            ))
        );
        assert_eq!(
            client(b"\x20\x05\x00\x84\x02\x11\x00"),
            Err(MqttPacketError::UnsupportedProperties { len: 2, offset: 4 })
        );
    }

    #[test]
    fn subscribe_and_friends() {
        let Packet::Subscribe(s) = server(b"\x82\x0c\x00\x01\x00\x03a/+\x01\x00\x01#\x02").unwrap()
        else {
            panic!()
        };
        assert_eq!(s.packet_id.get(), 1);
        assert_eq!(s.subscriptions.len(), 2);
        assert_eq!(
            (s.subscriptions[0].filter.as_str(), s.subscriptions[0].qos),
            ("a/+", QoS::AtLeastOnce)
        );
        assert_eq!(s.subscriptions[1].qos, QoS::ExactlyOnce);
        assert_eq!(
            server(b"\x82\x02\x00\x01"),
            Err(MqttPacketError::NoEntries {
                packet: PacketType::Subscribe,
                field: MqttField::TopicFilter,
                offset: 4
            })
        );
        assert!(matches!(
            server(b"\x82\x07\x00\x01\x00\x02a#\x00"),
            Err(MqttPacketError::InvalidTopicFilter {
                at: 7,
                offset: 4,
                ..
            })
        ));
        assert!(matches!(
            server(b"\x82\x06\x00\x01\x00\x01a\x04"),
            Err(MqttPacketError::ReservedBits {
                field: MqttField::SubscriptionOptions,
                value: 4,
                offset: 7,
                ..
            })
        ));
        let Packet::SubAck(a) = client(b"\x90\x04\x00\x07\x01\x80").unwrap() else {
            panic!()
        };
        assert_eq!(
            a.return_codes,
            [
                SubscribeReturnCode::Granted(QoS::AtLeastOnce),
                SubscribeReturnCode::Failure
            ]
        );
        assert!(matches!(
            client(b"\x90\x03\x00\x07\x03"),
            Err(MqttPacketError::InvalidCode {
                value: 3,
                offset: 4,
                ..
            })
        ));
        let Packet::Unsubscribe(u) = server(b"\xa2\x07\x00\x02\x00\x03a/b").unwrap() else {
            panic!()
        };
        assert_eq!(u.filters[0], "a/b");
        assert_eq!(
            client(b"\xb0\x02\x00\x02").unwrap(),
            Packet::UnsubAck(2.try_into().unwrap())
        );
        assert_eq!(
            server(b"\x40\x02\x00\x02").unwrap(),
            Packet::PubAck(2.try_into().unwrap())
        );
        assert!(matches!(
            server(b"\x40\x03\x00\x02\x00"),
            Err(MqttPacketError::TrailingBytes {
                offset: 4,
                extra: 1,
                ..
            })
        ));
    }

    #[test]
    fn too_many_filters() {
        let mut body = vec![0, 1];
        for _ in 0..33 {
            body.extend_from_slice(b"\x00\x01a\x00");
        }
        let mut wire = bytes::BytesMut::from(&[0x82][..]);
        parsers::put_remaining_length(&mut wire, body.len());
        wire.extend_from_slice(&body);
        assert_eq!(
            server(&wire),
            Err(MqttPacketError::TooManyEntries {
                packet: PacketType::Subscribe,
                field: MqttField::TopicFilter,
                offset: 5 + 32 * 4,
                max: 32
            })
        );
    }

    #[test]
    fn short_input_is_an_error_not_a_panic() {
        let limits = MqttLimits::default();
        assert!(decode_packet(Bytes::new(), 2, Role::Server, &limits).is_err());
        assert!(decode_packet(Bytes::from_static(b"\x30"), 2, Role::Server, &limits).is_err());
        assert!(decode_packet(Bytes::from_static(b"\xc0"), 9, Role::Server, &limits).is_ok());
    }

    #[test]
    fn decoded_text_is_zero_copy() {
        let wire = Bytes::copy_from_slice(CONNECT_FULL);
        let range = wire.as_ptr_range();
        let Packet::Connect(c) =
            decode_packet(wire.clone(), 2, Role::Server, &MqttLimits::default()).unwrap()
        else {
            panic!()
        };
        for p in [
            c.client_id.as_bytes().as_ptr(),
            c.username.as_ref().unwrap().as_bytes().as_ptr(),
            c.password.as_ref().unwrap().as_ptr(),
            c.will.as_ref().unwrap().payload.as_ptr(),
        ] {
            assert!(range.contains(&p));
        }
    }
}
