//! `arbitrary::Arbitrary` for packages and messages (feature `arbitrary`), for the structured
//! fuzz target. Only values the encoder accepts are generated: routes of 1 to 255 bytes, bodies
//! within the default maximum (65,535 bytes).

use super::message::{Message, MessageKind, MessageRoute, MAX_ROUTE_NAME_LEN};
use super::package::{Package, DEFAULT_MAX_BODY_LENGTH};
use crate::native::{MessageId, Text};
use arbitrary::{Arbitrary, Result, Unstructured};
use bytes::Bytes;

fn body(u: &mut Unstructured<'_>, max: usize) -> Result<Bytes> {
    let v: Vec<u8> = u.arbitrary()?;
    Ok(Bytes::from(v[..v.len().min(max)].to_vec()))
}

fn route(u: &mut Unstructured<'_>) -> Result<MessageRoute> {
    if u.arbitrary()? {
        return Ok(MessageRoute::Code(u.arbitrary()?));
    }
    let mut s: String = u.arbitrary()?;
    while s.len() > MAX_ROUTE_NAME_LEN {
        s.pop();
    }
    if s.is_empty() {
        s.push('.');
    }
    Ok(MessageRoute::Name(Text::from(s)))
}

impl<'a> Arbitrary<'a> for MessageRoute {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        route(u)
    }
}

impl<'a> Arbitrary<'a> for Message {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let id = |u: &mut Unstructured<'a>| -> Result<MessageId> {
            Ok(MessageId::new(u.arbitrary::<u32>()?.max(1)).expect("nonzero"))
        };
        let kind = match u.int_in_range(0..=3u8)? {
            0 => MessageKind::Request {
                id: id(u)?,
                route: route(u)?,
            },
            1 => MessageKind::Notify { route: route(u)? },
            2 => MessageKind::Response { id: id(u)? },
            _ => MessageKind::Push { route: route(u)? },
        };
        Ok(Message {
            kind,
            gzip: u.arbitrary()?,
            // Leaves room for flag, id and route within a default-sized data package.
            body: body(u, DEFAULT_MAX_BODY_LENGTH - 300)?,
        })
    }
}

impl<'a> Arbitrary<'a> for Package {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match u.int_in_range(0..=4u8)? {
            0 => Package::Handshake(body(u, DEFAULT_MAX_BODY_LENGTH)?),
            1 => Package::HandshakeAck,
            2 => Package::Heartbeat,
            3 => Package::Data(body(u, DEFAULT_MAX_BODY_LENGTH)?),
            _ => Package::Kick(body(u, DEFAULT_MAX_BODY_LENGTH)?),
        })
    }
}
