//! `arbitrary::Arbitrary` for packets (feature `arbitrary`), for the structured fuzz target.

use crate::native::*;
use arbitrary::{Arbitrary, Result, Unstructured};
use bytes::Bytes;

fn text(u: &mut Unstructured<'_>, min: usize, max: usize) -> Result<String> {
    let mut s: String = u.arbitrary()?;
    while s.len() > max {
        s.pop();
    }
    while s.len() < min {
        s.push('x');
    }
    Ok(s)
}

fn route(u: &mut Unstructured<'_>) -> Result<Route> {
    let module = text(u, 1, 120)?.replace('/', "_");
    let func = text(u, 1, 120)?.replace('/', "_");
    Ok(Route::try_from(format!("{module}/{func}").as_str()).expect("built valid"))
}

fn body(u: &mut Unstructured<'_>, max: usize) -> Result<Bytes> {
    let v: Vec<u8> = u.arbitrary()?;
    Ok(Bytes::from(v[..v.len().min(max)].to_vec()))
}

impl<'a> Arbitrary<'a> for Packet {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let id = |u: &mut Unstructured<'a>| -> Result<MessageId> {
            Ok(MessageId::new(u.arbitrary::<u32>()?.max(1)).expect("nonzero"))
        };
        Ok(match u.int_in_range(0..=8u8)? {
            0 => Packet::Handshake(Handshake {
                version: u.arbitrary()?,
                heartbeat_secs: u.arbitrary()?,
                token: body(u, MAX_TOKEN_LEN)?,
            }),
            1 => Packet::Welcome(Welcome {
                version: u.arbitrary()?,
                heartbeat_secs: u.arbitrary()?,
                max_frame_length: u.arbitrary()?,
                session_id: Text::from(text(u, 1, MAX_SESSION_ID_LEN)?),
            }),
            2 => Packet::Request(Request::new(id(u)?, route(u)?, body(u, 60_000)?)),
            3 => Packet::Response(Response {
                id: id(u)?,
                status: u.arbitrary()?,
                body: body(u, 60_000)?,
            }),
            4 => Packet::Notify(Notify::new(route(u)?, body(u, 60_000)?)),
            5 => Packet::Push(Push::new(
                Topic::try_from(text(u, 1, MAX_ROUTE_LEN)?.as_str()).expect("built valid"),
                body(u, 60_000)?,
            )),
            6 => Packet::Ping,
            7 => Packet::Pong,
            _ => Packet::Close(Close {
                code: u.arbitrary()?,
                reason: Text::from(text(u, 0, MAX_REASON_LEN)?),
            }),
        })
    }
}
