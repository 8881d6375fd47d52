//! Encoding a [`Packet`] as one frame.

use super::packet::{Packet, MAX_REASON_LEN, MAX_SESSION_ID_LEN, MAX_TOKEN_LEN};
use crate::error::{EncodeError, Field};
use crate::framing::MAX_FRAME_LENGTH_CAP;
use crate::parsers::put_varint;
use bytes::{BufMut, BytesMut};

/// Bytes of the frame after the length prefix (kind byte and payload).
pub fn frame_len(packet: &Packet) -> usize {
    1 + match packet {
        Packet::Handshake(h) => 1 + 2 + h.token.len(),
        Packet::Welcome(w) => 1 + 2 + 4 + w.session_id.len(),
        Packet::Request(r) => 4 + 1 + r.route().len() + r.body().len(),
        Packet::Response(r) => 4 + 1 + r.body.len(),
        Packet::Notify(n) => 1 + n.route().len() + n.body().len(),
        Packet::Push(p) => 1 + p.topic().len() + p.body().len(),
        Packet::Ping | Packet::Pong => 0,
        Packet::Close(c) => 1 + c.reason.len(),
    }
}

fn check(field: Field, len: usize, max: usize) -> Result<(), EncodeError> {
    if len > max {
        return Err(EncodeError::TooLong { field, len, max });
    }
    Ok(())
}

/// Appends `packet` to `dst` as one frame (varint length, kind, payload).
///
/// Refuses, writing nothing, a packet whose frame would exceed `max_frame_length` or whose fields
/// break their limits (token over 4,096 bytes, session id empty or over 64, reason over 255).
/// Routes and topics are checked when their [`Route`](super::Route)/[`Topic`](super::Topic) is built.
/// A `max_frame_length` above [`MAX_FRAME_LENGTH_CAP`] (16 MiB, the largest frame any gatekit
/// decoder accepts) counts as that cap, so the length prefix always fits its 4 bytes.
pub fn encode_packet(
    packet: &Packet,
    max_frame_length: usize,
    dst: &mut BytesMut,
) -> Result<(), EncodeError> {
    match packet {
        Packet::Handshake(h) => check(Field::Token, h.token.len(), MAX_TOKEN_LEN)?,
        Packet::Welcome(w) => {
            if w.session_id.is_empty() {
                return Err(EncodeError::EmptyField {
                    field: Field::SessionId,
                });
            }
            check(Field::SessionId, w.session_id.len(), MAX_SESSION_ID_LEN)?
        }
        Packet::Close(c) => check(Field::Reason, c.reason.len(), MAX_REASON_LEN)?,
        _ => {}
    }
    let max = max_frame_length.min(MAX_FRAME_LENGTH_CAP);
    let len = frame_len(packet);
    if len > max {
        return Err(EncodeError::FrameTooLarge { len, max });
    }
    // The limit is capped at 16 MiB, so the length always fits a 4-byte varint.
    dst.reserve(4 + len);
    put_varint(dst, len as u32);
    dst.put_u8(packet.kind());
    match packet {
        Packet::Handshake(h) => {
            dst.put_u8(h.version);
            dst.put_u16(h.heartbeat_secs);
            dst.put_slice(&h.token);
        }
        Packet::Welcome(w) => {
            dst.put_u8(w.version);
            dst.put_u16(w.heartbeat_secs);
            dst.put_u32(w.max_frame_length);
            dst.put_slice(w.session_id.as_bytes());
        }
        Packet::Request(r) => {
            dst.put_u32(r.id().get());
            dst.put_u8(r.route().len() as u8);
            dst.put_slice(r.route().as_bytes());
            dst.put_slice(r.body());
        }
        Packet::Response(r) => {
            dst.put_u32(r.id.get());
            dst.put_u8(r.status.as_u8());
            dst.put_slice(&r.body);
        }
        Packet::Notify(n) => {
            dst.put_u8(n.route().len() as u8);
            dst.put_slice(n.route().as_bytes());
            dst.put_slice(n.body());
        }
        Packet::Push(p) => {
            dst.put_u8(p.topic().len() as u8);
            dst.put_slice(p.topic().as_bytes());
            dst.put_slice(p.body());
        }
        Packet::Ping | Packet::Pong => {}
        Packet::Close(c) => {
            dst.put_u8(c.code.as_u8());
            dst.put_slice(c.reason.as_bytes());
        }
    }
    Ok(())
}
