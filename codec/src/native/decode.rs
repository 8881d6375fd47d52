//! Decoding one complete frame into a [`Packet`].

use super::packet::{
    kind, Close, Handshake, Notify, Packet, Push, Request, Response, Welcome, MAX_REASON_LEN,
    MAX_SESSION_ID_LEN, MAX_TOKEN_LEN,
};
use super::text::Text;
use crate::error::{Field, PacketError};
use crate::parsers::{self, Fault, PResult};
use bytes::{Buf, Bytes};

/// Walks a frame with the named parsers, turning their faults into [`PacketError`]s that carry the
/// field and its offset in the frame.
struct Cursor<'a> {
    frame: &'a [u8],
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    #[inline]
    fn new(frame: &'a [u8]) -> Self {
        Cursor { frame, rest: frame }
    }

    #[inline]
    fn pos(&self) -> usize {
        self.frame.len() - self.rest.len()
    }

    #[inline(always)]
    fn step<T>(
        &mut self,
        field: Field,
        parser: impl Fn(&'a [u8]) -> PResult<'a, T>,
    ) -> Result<T, PacketError> {
        match parser(self.rest) {
            Ok((rest, value)) => {
                self.rest = rest;
                Ok(value)
            }
            Err(nom::Err::Error(f) | nom::Err::Failure(f)) => Err(self.error(field, f)),
            Err(nom::Err::Incomplete(_)) => Err(self.error(field, Fault::Short { needed: 1 })),
        }
    }

    #[cold]
    fn error(&self, field: Field, fault: Fault) -> PacketError {
        let offset = self.pos();
        let available = self.rest.len();
        // Route and topic text starts after its one-byte length.
        let text_at = match field {
            Field::Route | Field::Topic => offset + 1,
            _ => offset,
        };
        match fault {
            Fault::Short { needed } => PacketError::Truncated {
                field,
                offset,
                needed,
                available,
            },
            Fault::ZeroId => PacketError::ZeroMessageId { offset },
            Fault::Empty => PacketError::EmptyField { field, offset },
            Fault::Utf8 { valid_up_to } => PacketError::InvalidUtf8 {
                field,
                offset,
                bad_at: text_at + valid_up_to,
            },
            Fault::TooLong { len, max } => PacketError::TooLong {
                field,
                offset,
                len,
                max,
            },
            Fault::NotRoute => {
                let len = self.rest.first().map_or(0, |&b| usize::from(b));
                let text = self.rest.get(1..1 + len).unwrap_or_default();
                PacketError::MalformedRoute {
                    route: String::from_utf8_lossy(text).into_owned(),
                    offset,
                }
            }
            Fault::Unknown(value) if field == Field::Status => {
                PacketError::UnknownStatus { value, offset }
            }
            Fault::Unknown(value) => PacketError::UnknownCloseCode { value, offset },
            Fault::Trailing { extra } => PacketError::TrailingBytes {
                kind: super::packet::kind_name(self.frame[0]).unwrap_or("?"),
                offset,
                extra,
            },
            Fault::VarintTooLong { .. } | Fault::VarintNotMinimal { .. } | Fault::Nom(_) => {
                PacketError::Truncated {
                    field,
                    offset,
                    needed: available + 1,
                    available,
                }
            }
        }
    }
}

/// Decodes one complete frame (the bytes after the length prefix: kind byte, then payload).
///
/// Zero-copy: text and bodies in the packet are slices of `frame`, and the common packets (request,
/// notify, push) hold a single reference to it.
#[inline]
pub fn decode_packet(mut frame: Bytes) -> Result<Packet, PacketError> {
    let mut c = Cursor::new(&frame);
    let Some(&k) = frame.first() else {
        return Err(PacketError::EmptyFrame);
    };
    c.rest = &c.rest[1..];
    match k {
        kind::REQUEST => {
            let id = c.step(Field::MessageId, parsers::message_id)?;
            let at = c.pos();
            let (route, slash) = c.step(Field::Route, parsers::route)?;
            let route_len = route.len();
            frame.advance(at + 1);
            Ok(Packet::Request(Request::from_frame(
                id, frame, route_len, slash,
            )))
        }
        kind::NOTIFY => {
            let at = c.pos();
            let (route, slash) = c.step(Field::Route, parsers::route)?;
            let route_len = route.len();
            frame.advance(at + 1);
            Ok(Packet::Notify(Notify::from_frame(frame, route_len, slash)))
        }
        kind::RESPONSE => {
            let id = c.step(Field::MessageId, parsers::message_id)?;
            let status = c.step(Field::Status, parsers::status)?;
            let at = c.pos();
            frame.advance(at);
            Ok(Packet::Response(Response {
                id,
                status,
                body: frame,
            }))
        }
        kind::PUSH => {
            let at = c.pos();
            let topic = c.step(Field::Topic, parsers::topic)?;
            let topic_len = topic.len();
            frame.advance(at + 1);
            Ok(Packet::Push(Push::from_frame(frame, topic_len)))
        }
        kind::PING | kind::PONG => {
            c.step(Field::Body, parsers::end)?;
            Ok(if k == kind::PING {
                Packet::Ping
            } else {
                Packet::Pong
            })
        }
        kind::HANDSHAKE => {
            let version = c.step(Field::Version, parsers::byte)?;
            let heartbeat_secs = c.step(Field::Heartbeat, parsers::be_u16)?;
            let at = c.pos();
            c.step(Field::Token, parsers::bytes_rest(MAX_TOKEN_LEN))?;
            frame.advance(at);
            Ok(Packet::Handshake(Handshake {
                version,
                heartbeat_secs,
                token: frame,
            }))
        }
        kind::WELCOME => {
            let version = c.step(Field::Version, parsers::byte)?;
            let heartbeat_secs = c.step(Field::Heartbeat, parsers::be_u16)?;
            let max_frame_length = c.step(Field::MaxFrameLength, parsers::be_u32)?;
            let at = c.pos();
            let id = c.step(Field::SessionId, parsers::text_rest(MAX_SESSION_ID_LEN))?;
            if id.is_empty() {
                return Err(PacketError::EmptyField {
                    field: Field::SessionId,
                    offset: at,
                });
            }
            frame.advance(at);
            Ok(Packet::Welcome(Welcome {
                version,
                heartbeat_secs,
                max_frame_length,
                session_id: Text::from_utf8_unchecked(frame),
            }))
        }
        kind::CLOSE => {
            let code = c.step(Field::CloseCode, parsers::close_code)?;
            let at = c.pos();
            c.step(Field::Reason, parsers::text_rest(MAX_REASON_LEN))?;
            frame.advance(at);
            Ok(Packet::Close(Close {
                code,
                reason: Text::from_utf8_unchecked(frame),
            }))
        }
        other => Err(PacketError::UnknownKind { kind: other }),
    }
}
