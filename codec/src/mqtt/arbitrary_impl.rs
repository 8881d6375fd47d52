//! `arbitrary::Arbitrary` for MQTT packets (feature `arbitrary`), for the structured fuzz target.
//! Every packet built here is within [`MqttLimits::DEFAULT`](super::MqttLimits::DEFAULT), so the
//! encoder of the right role accepts it.

use super::packet::*;
use super::text::{MqttString, TopicFilter, TopicName};
use arbitrary::{Arbitrary, Result, Unstructured};
use bytes::Bytes;

/// A string of `min..=max` bytes without NUL and without the characters in `forbid`.
fn text(u: &mut Unstructured<'_>, min: usize, max: usize, forbid: &[char]) -> Result<String> {
    let raw: String = u.arbitrary()?;
    let mut s: String = raw
        .chars()
        .filter(|c| *c != '\0' && !forbid.contains(c))
        .collect();
    while s.len() > max {
        s.pop();
    }
    while s.len() < min {
        s.push('x');
    }
    Ok(s)
}

fn body(u: &mut Unstructured<'_>, max: usize) -> Result<Bytes> {
    let v: Vec<u8> = u.arbitrary()?;
    Ok(Bytes::from(v[..v.len().min(max)].to_vec()))
}

fn topic(u: &mut Unstructured<'_>) -> Result<TopicName> {
    let s = text(u, 1, 255, &['+', '#'])?;
    Ok(TopicName::try_from(s).expect("built valid"))
}

fn filter(u: &mut Unstructured<'_>) -> Result<TopicFilter> {
    let levels = u.int_in_range(1..=4usize)?;
    let mut parts = Vec::with_capacity(levels + 1);
    for _ in 0..levels {
        if u.ratio(1, 4)? {
            parts.push("+".to_owned());
        } else {
            parts.push(text(u, 0, 40, &['+', '#', '/'])?);
        }
    }
    if u.ratio(1, 3)? {
        parts.push("#".to_owned());
    }
    let mut s = parts.join("/");
    // Cutting at a character boundary keeps every wildcard whole and alone in its level.
    while s.len() > 255 {
        s.pop();
    }
    if s.is_empty() {
        s.push('#');
    }
    Ok(TopicFilter::try_from(s).expect("built valid"))
}

fn id(u: &mut Unstructured<'_>) -> Result<PacketId> {
    Ok(PacketId::new(u.arbitrary::<u16>()?.max(1)).expect("nonzero"))
}

fn mqtt_string(u: &mut Unstructured<'_>, max: usize) -> Result<MqttString> {
    Ok(MqttString::try_from(text(u, 0, max, &[])?).expect("built valid"))
}

impl<'a> Arbitrary<'a> for Packet {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match u.int_in_range(0..=11u8)? {
            0 => {
                let protocol: Protocol = u.arbitrary()?;
                let mut clean_session: bool = u.arbitrary()?;
                let mut client_id = mqtt_string(u, 256)?;
                if client_id.is_empty() {
                    if protocol == Protocol::V31 {
                        client_id = MqttString::from_static("c");
                    } else {
                        clean_session = true;
                    }
                }
                let will = if u.arbitrary()? {
                    Some(Will {
                        topic: topic(u)?,
                        payload: body(u, 1000)?,
                        qos: u.arbitrary()?,
                        retain: u.arbitrary()?,
                    })
                } else {
                    None
                };
                let username = if u.arbitrary()? {
                    Some(mqtt_string(u, 256)?)
                } else {
                    None
                };
                let password = if username.is_some() && u.arbitrary()? {
                    Some(body(u, 4096)?)
                } else {
                    None
                };
                Packet::from(Connect {
                    protocol,
                    clean_session,
                    keep_alive: u.arbitrary()?,
                    client_id,
                    will,
                    username,
                    password,
                })
            }
            1 => Packet::ConnAck(u.arbitrary()?),
            2 => Packet::ConnAckV5(u.arbitrary()?),
            3 | 4 => Packet::Publish(Publish {
                delivery: u.arbitrary()?,
                retain: u.arbitrary()?,
                topic: topic(u)?,
                payload: body(u, 60_000)?,
            }),
            5 => Packet::PubAck(id(u)?),
            6 => {
                let n = u.int_in_range(1..=32usize)?;
                let mut subscriptions = Vec::with_capacity(n);
                for _ in 0..n {
                    subscriptions.push(Subscription {
                        filter: filter(u)?,
                        qos: u.arbitrary()?,
                    });
                }
                Packet::Subscribe(Subscribe {
                    packet_id: id(u)?,
                    subscriptions,
                })
            }
            7 => {
                let n = u.int_in_range(1..=32usize)?;
                let mut return_codes = Vec::with_capacity(n);
                for _ in 0..n {
                    return_codes.push(u.arbitrary()?);
                }
                Packet::SubAck(SubAck {
                    packet_id: id(u)?,
                    return_codes,
                })
            }
            8 => {
                let n = u.int_in_range(1..=32usize)?;
                let mut filters = Vec::with_capacity(n);
                for _ in 0..n {
                    filters.push(filter(u)?);
                }
                Packet::Unsubscribe(Unsubscribe {
                    packet_id: id(u)?,
                    filters,
                })
            }
            9 => Packet::UnsubAck(id(u)?),
            10 => match u.int_in_range(0..=2u8)? {
                0 => Packet::PingReq,
                1 => Packet::PingResp,
                _ => Packet::Disconnect,
            },
            _ => Packet::PubAck(id(u)?),
        })
    }
}
