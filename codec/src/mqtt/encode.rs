//! Encoding a [`Packet`]: fixed header, remaining length, variable header and payload.

use super::codec::MqttLimits;
use super::error::{MqttEncodeError, MqttField};
use super::packet::{ConnAck, Delivery, Packet, PacketType, Protocol, Role};
use super::parsers::put_remaining_length;
use super::text::MAX_STRING_LEN;
use bytes::{BufMut, BytesMut};

/// The remaining length of `packet`: bytes after its fixed header.
pub fn remaining_len(packet: &Packet) -> usize {
    match packet {
        Packet::Connect(c) => {
            2 + c.protocol.name().len()
                + 1
                + 1
                + 2
                + 2
                + c.client_id.len()
                + c.will
                    .as_ref()
                    .map_or(0, |w| 2 + w.topic.len() + 2 + w.payload.len())
                + c.username.as_ref().map_or(0, |u| 2 + u.len())
                + c.password.as_ref().map_or(0, |p| 2 + p.len())
        }
        Packet::ConnAck(_) => 2,
        Packet::ConnAckV5(_) => 3,
        Packet::Publish(p) => {
            let id = match p.delivery {
                Delivery::AtMostOnce => 0,
                Delivery::AtLeastOnce { .. } => 2,
            };
            2 + p.topic.len() + id + p.payload.len()
        }
        Packet::PubAck(_) | Packet::UnsubAck(_) => 2,
        Packet::Subscribe(s) => {
            2 + s
                .subscriptions
                .iter()
                .map(|s| 2 + s.filter.len() + 1)
                .sum::<usize>()
        }
        Packet::SubAck(s) => 2 + s.return_codes.len(),
        Packet::Unsubscribe(u) => 2 + u.filters.iter().map(|f| 2 + f.len()).sum::<usize>(),
        Packet::PingReq | Packet::PingResp | Packet::Disconnect => 0,
    }
}

#[inline(always)]
fn check_len(
    packet: PacketType,
    field: MqttField,
    len: usize,
    max: usize,
) -> Result<(), MqttEncodeError> {
    if len > max {
        return Err(MqttEncodeError::TooLong {
            packet,
            field,
            len,
            max,
        });
    }
    Ok(())
}

fn check_count(
    packet: PacketType,
    field: MqttField,
    count: usize,
    max: usize,
) -> Result<(), MqttEncodeError> {
    if count == 0 {
        return Err(MqttEncodeError::NoEntries { packet, field });
    }
    if count > max {
        return Err(MqttEncodeError::TooManyEntries {
            packet,
            field,
            count,
            max,
        });
    }
    Ok(())
}

/// Checks everything the decoder (same role's peer, same limits) would refuse.
fn check(packet: &Packet, limits: &MqttLimits) -> Result<(), MqttEncodeError> {
    let ty = packet.packet_type();
    match packet {
        Packet::Connect(c) => {
            if c.client_id.is_empty() && (c.protocol == Protocol::V31 || !c.clean_session) {
                return Err(MqttEncodeError::EmptyClientId {
                    protocol: c.protocol,
                });
            }
            check_len(
                ty,
                MqttField::ClientId,
                c.client_id.len(),
                limits.max_client_id_len,
            )?;
            if let Some(w) = &c.will {
                check_len(
                    ty,
                    MqttField::WillTopic,
                    w.topic.len(),
                    limits.max_topic_len,
                )?;
                check_len(ty, MqttField::WillPayload, w.payload.len(), MAX_STRING_LEN)?;
            }
            if let Some(u) = &c.username {
                check_len(ty, MqttField::Username, u.len(), limits.max_username_len)?;
            }
            if let Some(p) = &c.password {
                if c.username.is_none() {
                    return Err(MqttEncodeError::PasswordWithoutUsername);
                }
                check_len(ty, MqttField::Password, p.len(), limits.max_password_len)?;
            }
        }
        Packet::Publish(p) => check_len(
            ty,
            MqttField::TopicName,
            p.topic.len(),
            limits.max_topic_len,
        )?,
        Packet::Subscribe(s) => {
            check_count(
                ty,
                MqttField::TopicFilter,
                s.subscriptions.len(),
                limits.max_filters,
            )?;
            for s in &s.subscriptions {
                check_len(
                    ty,
                    MqttField::TopicFilter,
                    s.filter.len(),
                    limits.max_topic_len,
                )?;
            }
        }
        Packet::SubAck(s) => check_count(
            ty,
            MqttField::ReturnCode,
            s.return_codes.len(),
            limits.max_filters,
        )?,
        Packet::Unsubscribe(u) => {
            check_count(
                ty,
                MqttField::TopicFilter,
                u.filters.len(),
                limits.max_filters,
            )?;
            for f in &u.filters {
                check_len(ty, MqttField::TopicFilter, f.len(), limits.max_topic_len)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[inline(always)]
fn put_string(dst: &mut BytesMut, s: &[u8]) {
    // Every string was checked to be at most 65,535 bytes.
    dst.put_u16(s.len() as u16);
    dst.put_slice(s);
}

/// Appends `packet` to `dst` as sent by `role`, or refuses it, writing nothing, if `role` does not
/// send its type, or it breaks a limit of `limits` (a field, a list's length, the maximum packet
/// size), or it is something the decoder refuses (an empty client id without clean session, a
/// password without a user name).
#[inline]
pub fn encode_packet(
    packet: &Packet,
    role: Role,
    limits: &MqttLimits,
    dst: &mut BytesMut,
) -> Result<(), MqttEncodeError> {
    // The hot path: PUBLISH, checked and written inline.
    if let Packet::Publish(p) = packet {
        let id = matches!(p.delivery, Delivery::AtLeastOnce { .. });
        let len = 2 + p.topic.len() + 2 * usize::from(id) + p.payload.len();
        if p.topic.len() > limits.max_topic_len {
            return Err(MqttEncodeError::TooLong {
                packet: PacketType::Publish,
                field: MqttField::TopicName,
                len: p.topic.len(),
                max: limits.max_topic_len,
            });
        }
        if len > limits.max_packet_size {
            return Err(MqttEncodeError::PacketTooLarge {
                packet: PacketType::Publish,
                len,
                max: limits.max_packet_size,
            });
        }
        let mut byte1 = 0x30 | u8::from(p.retain);
        dst.reserve(5 + len);
        match p.delivery {
            Delivery::AtMostOnce => {
                dst.put_u8(byte1);
                put_remaining_length(dst, len);
                put_string(dst, p.topic.as_bytes());
            }
            Delivery::AtLeastOnce { packet_id, dup } => {
                byte1 |= 0b0010 | (u8::from(dup) << 3);
                dst.put_u8(byte1);
                put_remaining_length(dst, len);
                put_string(dst, p.topic.as_bytes());
                dst.put_u16(packet_id.get());
            }
        }
        dst.put_slice(&p.payload);
        return Ok(());
    }
    let ty = packet.packet_type();
    if !role.sends(ty) {
        return Err(MqttEncodeError::WrongDirection { packet: ty, role });
    }
    check(packet, limits)?;
    let len = remaining_len(packet);
    if len > limits.max_packet_size {
        return Err(MqttEncodeError::PacketTooLarge {
            packet: ty,
            len,
            max: limits.max_packet_size,
        });
    }
    dst.reserve(5 + len);
    dst.put_u8(ty.as_u8() << 4 | ty.required_flags().unwrap_or(0));
    put_remaining_length(dst, len);
    match packet {
        Packet::Connect(c) => {
            put_string(dst, c.protocol.name().as_bytes());
            dst.put_u8(c.protocol.level());
            let mut flags = u8::from(c.clean_session) << 1;
            if let Some(w) = &c.will {
                flags |= 0b100 | (w.qos.as_u8() << 3) | (u8::from(w.retain) << 5);
            }
            flags |= u8::from(c.password.is_some()) << 6;
            flags |= u8::from(c.username.is_some()) << 7;
            dst.put_u8(flags);
            dst.put_u16(c.keep_alive);
            put_string(dst, c.client_id.as_bytes());
            if let Some(w) = &c.will {
                put_string(dst, w.topic.as_bytes());
                put_string(dst, &w.payload);
            }
            if let Some(u) = &c.username {
                put_string(dst, u.as_bytes());
            }
            if let Some(p) = &c.password {
                put_string(dst, p);
            }
        }
        Packet::ConnAck(a) => {
            let session_present = matches!(
                a,
                ConnAck::Accepted {
                    session_present: true
                }
            );
            dst.put_u8(u8::from(session_present));
            dst.put_u8(a.return_code());
        }
        Packet::ConnAckV5(reason) => {
            dst.put_u8(0);
            dst.put_u8(reason.as_u8());
            dst.put_u8(0);
        }
        Packet::PubAck(id) | Packet::UnsubAck(id) => dst.put_u16(id.get()),
        Packet::Subscribe(s) => {
            dst.put_u16(s.packet_id.get());
            for s in &s.subscriptions {
                put_string(dst, s.filter.as_bytes());
                dst.put_u8(s.qos.as_u8());
            }
        }
        Packet::SubAck(s) => {
            dst.put_u16(s.packet_id.get());
            for c in &s.return_codes {
                dst.put_u8(c.as_u8());
            }
        }
        Packet::Unsubscribe(u) => {
            dst.put_u16(u.packet_id.get());
            for f in &u.filters {
                put_string(dst, f.as_bytes());
            }
        }
        Packet::PingReq | Packet::PingResp | Packet::Disconnect => {}
        Packet::Publish(_) => unreachable!("encoded above"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::packet::*;
    use crate::mqtt::text::*;

    fn enc(p: impl Into<Packet>, role: Role) -> Result<Vec<u8>, MqttEncodeError> {
        let mut b = BytesMut::new();
        encode_packet(&p.into(), role, &MqttLimits::default(), &mut b)?;
        Ok(b.to_vec())
    }

    fn id(n: u16) -> PacketId {
        PacketId::new(n).unwrap()
    }

    #[test]
    fn fixed_packets() {
        assert_eq!(enc(Packet::PingResp, Role::Server).unwrap(), b"\xd0\x00");
        assert_eq!(enc(Packet::PingReq, Role::Client).unwrap(), b"\xc0\x00");
        assert_eq!(enc(Packet::Disconnect, Role::Client).unwrap(), b"\xe0\x00");
        assert_eq!(
            enc(Packet::PubAck(id(7)), Role::Server).unwrap(),
            b"\x40\x02\x00\x07"
        );
        assert_eq!(
            enc(Packet::UnsubAck(id(258)), Role::Server).unwrap(),
            b"\xb0\x02\x01\x02"
        );
        assert_eq!(
            enc(
                Packet::ConnAck(ConnAck::Accepted {
                    session_present: false
                }),
                Role::Server
            )
            .unwrap(),
            b"\x20\x02\x00\x00"
        );
        assert_eq!(
            enc(
                Packet::ConnAck(ConnAck::Refused(
                    ConnectRefusal::UnacceptableProtocolVersion
                )),
                Role::Server
            )
            .unwrap(),
            b"\x20\x02\x00\x01"
        );
        assert_eq!(
            enc(
                Packet::ConnAckV5(V5ConnAckReason::UnsupportedProtocolVersion),
                Role::Server
            )
            .unwrap(),
            b"\x20\x03\x00\x84\x00"
        );
    }

    #[test]
    fn publish_and_subscribe() {
        let p = Publish::qos1(id(1), TopicName::from_static("a/b"), &b"xy"[..]);
        assert_eq!(
            enc(p.clone(), Role::Client).unwrap(),
            b"\x32\x09\x00\x03a/b\x00\x01xy"
        );
        let mut r = p;
        r.retain = true;
        r.delivery = Delivery::AtLeastOnce {
            packet_id: id(1),
            dup: true,
        };
        assert_eq!(enc(r, Role::Server).unwrap()[0], 0x3b);
        let s = Subscribe {
            packet_id: id(2),
            subscriptions: vec![Subscription {
                filter: TopicFilter::from_static("a/#"),
                qos: QoS::AtLeastOnce,
            }],
        };
        assert_eq!(
            enc(s, Role::Client).unwrap(),
            b"\x82\x08\x00\x02\x00\x03a/#\x01"
        );
        let a = SubAck {
            packet_id: id(2),
            return_codes: vec![
                SubscribeReturnCode::Granted(QoS::AtLeastOnce),
                SubscribeReturnCode::Failure,
            ],
        };
        assert_eq!(enc(a, Role::Server).unwrap(), b"\x90\x04\x00\x02\x01\x80");
    }

    #[test]
    fn refusals_write_nothing() {
        let mut b = BytesMut::from(&b"keep"[..]);
        let limits = MqttLimits::default().with_max_packet_size(10);
        let big = Publish::qos0(TopicName::from_static("t"), vec![0; 8]);
        assert_eq!(
            encode_packet(&big.into(), Role::Server, &limits, &mut b),
            Err(MqttEncodeError::PacketTooLarge {
                packet: PacketType::Publish,
                len: 11,
                max: 10
            })
        );
        assert_eq!(
            encode_packet(&Packet::PingReq, Role::Server, &limits, &mut b),
            Err(MqttEncodeError::WrongDirection {
                packet: PacketType::PingReq,
                role: Role::Server
            })
        );
        let no_filters = Unsubscribe {
            packet_id: id(1),
            filters: vec![],
        };
        assert_eq!(
            encode_packet(&no_filters.into(), Role::Client, &limits, &mut b),
            Err(MqttEncodeError::NoEntries {
                packet: PacketType::Unsubscribe,
                field: MqttField::TopicFilter
            })
        );
        let mut c = Connect::new(MqttString::default(), 60);
        c.clean_session = false;
        assert_eq!(
            encode_packet(&c.clone().into(), Role::Client, &limits, &mut b),
            Err(MqttEncodeError::EmptyClientId {
                protocol: Protocol::V311
            })
        );
        c.clean_session = true;
        c.password = Some("pw".into());
        assert_eq!(
            encode_packet(&c.into(), Role::Client, &limits, &mut b),
            Err(MqttEncodeError::PasswordWithoutUsername)
        );
        assert_eq!(&b[..], b"keep");
    }

    #[test]
    fn remaining_len_matches_what_is_written() {
        let mut c = Connect::new(MqttString::from_static("cid"), 60);
        c.will = Some(Will {
            topic: TopicName::from_static("w"),
            payload: "bye".into(),
            qos: QoS::ExactlyOnce,
            retain: true,
        });
        c.username = Some(MqttString::from_static("u"));
        c.password = Some("p".into());
        let p: Packet = c.into();
        let mut b = BytesMut::new();
        encode_packet(&p, Role::Client, &MqttLimits::default(), &mut b).unwrap();
        assert_eq!(b.len(), 2 + remaining_len(&p));
        assert_eq!(b[9], 0b1111_0110);
    }
}
