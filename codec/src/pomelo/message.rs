//! Messages: the body of a data package, as pomelo-protocol's `Message.encode` / `Message.decode`.
//!
//! ```text
//! +- flag -+- id: varint -+- route -------------------+- body (rest) -+
//! | 00     | 01           | 1c "connector.entry..."   | {"a":1}       |   request, id 1
//! | 01     | 01           | 00 01                     | {"a":1}       |   request, route code 1
//! | 02     |              | 03 "a.b"                  | ...           |   notify
//! | 04     | 01           |                           | {"code":200}  |   response
//! | 06/07  |              | u8 len + name / u16 code  | ...           |   push
//! +--------+--------------+---------------------------+---------------+
//! flag: bit 0 route compressed, bits 1-3 type (0 request, 1 notify, 2 response, 3 push),
//!       bit 4 gzip (body compressed by the peer; gatekit does not inflate), bits 5-7 reserved.
//! ```

use super::error::{Element, EncodeError, MessageError};
use super::parsers::{self, Fault, PResult};
use crate::native::{MessageId, Text};
use bytes::{BufMut, Bytes, BytesMut};
use std::fmt;

/// The longest route name: 255 bytes (its length is one byte on the wire).
pub const MAX_ROUTE_NAME_LEN: usize = 255;

/// A message's type: flag bits 1 to 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[repr(u8)]
pub enum MessageType {
    /// 0. Client → server, with an id and a route; answered by a response with the same id.
    Request = 0,
    /// 1. Client → server, with a route; no answer.
    Notify = 1,
    /// 2. Server → client, with the request's id; no route.
    Response = 2,
    /// 3. Server → client, with a route.
    Push = 3,
}

impl MessageType {
    /// The type for flag bits 1 to 3, if any.
    pub const fn from_u8(value: u8) -> Option<MessageType> {
        Some(match value {
            0 => MessageType::Request,
            1 => MessageType::Notify,
            2 => MessageType::Response,
            3 => MessageType::Push,
            _ => return None,
        })
    }

    /// The value in flag bits 1 to 3.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// Whether messages of this type carry an id (request, response).
    pub const fn has_id(self) -> bool {
        matches!(self, MessageType::Request | MessageType::Response)
    }

    /// Whether messages of this type carry a route (request, notify, push).
    pub const fn has_route(self) -> bool {
        !matches!(self, MessageType::Response)
    }

    /// The name used in docs/POMELO.md.
    pub const fn name(self) -> &'static str {
        match self {
            MessageType::Request => "request",
            MessageType::Notify => "notify",
            MessageType::Response => "response",
            MessageType::Push => "push",
        }
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A decoded flag byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flag {
    /// Bits 1 to 3.
    pub message_type: MessageType,
    /// Bit 0: the route is a u16 dictionary code (never set on a response).
    pub route_compressed: bool,
    /// Bit 4: the body is gzip-compressed (pomelo-protocol 0.1.6 carries the bit; gatekit does not
    /// inflate).
    pub gzip: bool,
}

impl Flag {
    /// The wire byte.
    pub const fn as_u8(self) -> u8 {
        (self.message_type.as_u8() << 1) | (self.route_compressed as u8) | ((self.gzip as u8) << 4)
    }
}

/// A route as carried by a request, notify or push: a name, or a dictionary code when the route is
/// compressed (see [`Dictionary`](super::Dictionary)).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MessageRoute {
    /// `server.handler.method` (or any text for a push), 1 to 255 bytes of UTF-8: a zero-copy
    /// slice of the package when decoded. [`MessageRoute::name`] checks the limits; the encoder
    /// refuses a longer or empty one.
    Name(Text),
    /// A dictionary code (flag bit 0 set).
    Code(u16),
}

impl MessageRoute {
    /// A route name, checked: 1 to 255 bytes.
    pub fn name(route: impl Into<Text>) -> Result<MessageRoute, EncodeError> {
        let text = route.into();
        check_route_name(&text)?;
        Ok(MessageRoute::Name(text))
    }

    /// A route name from a static string, without copying. Panics if it is empty or over 255 bytes
    /// (meant for constants).
    pub fn from_static(route: &'static str) -> MessageRoute {
        match MessageRoute::name(Text::from_static(route)) {
            Ok(r) => r,
            Err(e) => panic!("invalid static route: {e}"),
        }
    }

    /// Whether it is a code (the route is compressed).
    pub fn is_compressed(&self) -> bool {
        matches!(self, MessageRoute::Code(_))
    }

    /// The name, if it is one.
    pub fn as_name(&self) -> Option<&str> {
        match self {
            MessageRoute::Name(t) => Some(t.as_str()),
            MessageRoute::Code(_) => None,
        }
    }

    /// Bytes on the wire: length byte and text, or 2 for a code.
    pub fn wire_len(&self) -> usize {
        match self {
            MessageRoute::Name(t) => 1 + t.len(),
            MessageRoute::Code(_) => 2,
        }
    }
}

fn check_route_name(text: &Text) -> Result<(), EncodeError> {
    if text.is_empty() {
        return Err(EncodeError::EmptyRoute);
    }
    if text.len() > MAX_ROUTE_NAME_LEN {
        return Err(EncodeError::RouteTooLong {
            len: text.len(),
            max: MAX_ROUTE_NAME_LEN,
        });
    }
    Ok(())
}

/// What a message is, with the parts its type carries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// Client → server: call `route`; answered by a response with the same id.
    Request {
        /// The request id (1 to `u32::MAX`; pomelo's JavaScript peers only reach 2^31 − 1).
        id: MessageId,
        /// The route.
        route: MessageRoute,
    },
    /// Client → server: call `route`, no answer.
    Notify {
        /// The route.
        route: MessageRoute,
    },
    /// Server → client: the answer to request `id`.
    Response {
        /// The request's id.
        id: MessageId,
    },
    /// Server → client: a message on `route`.
    Push {
        /// The route.
        route: MessageRoute,
    },
}

/// One message. Decoded routes and bodies are zero-copy slices of the data package's body.
///
/// ```
/// use gatekit_codec::pomelo::{Message, MessageKind, MessageRoute};
/// use bytes::Bytes;
///
/// let wire = Bytes::from_static(b"\x00\x01\x03a.b{}");
/// let m = Message::decode(wire.clone()).unwrap();
/// assert_eq!(m.id().map(|id| id.get()), Some(1));
/// assert_eq!(m.route().and_then(MessageRoute::as_name), Some("a.b"));
/// assert_eq!(&m.body[..], b"{}");
/// assert_eq!(m.to_bytes().unwrap(), wire);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Message {
    /// Type, id and route.
    pub kind: MessageKind,
    /// Flag bit 4: the body is gzip-compressed. Carried as is; gatekit never inflates or deflates.
    pub gzip: bool,
    /// The body: the rest of the data package (JSON for pinus by default, or protobuf).
    pub body: Bytes,
}

impl Message {
    /// A request.
    pub fn request(id: MessageId, route: MessageRoute, body: impl Into<Bytes>) -> Message {
        Message::new(MessageKind::Request { id, route }, body)
    }

    /// A notify.
    pub fn notify(route: MessageRoute, body: impl Into<Bytes>) -> Message {
        Message::new(MessageKind::Notify { route }, body)
    }

    /// A response.
    pub fn response(id: MessageId, body: impl Into<Bytes>) -> Message {
        Message::new(MessageKind::Response { id }, body)
    }

    /// A push.
    pub fn push(route: MessageRoute, body: impl Into<Bytes>) -> Message {
        Message::new(MessageKind::Push { route }, body)
    }

    fn new(kind: MessageKind, body: impl Into<Bytes>) -> Message {
        Message {
            kind,
            gzip: false,
            body: body.into(),
        }
    }

    /// The same message with the gzip bit set or cleared.
    pub fn with_gzip(mut self, gzip: bool) -> Message {
        self.gzip = gzip;
        self
    }

    /// The message's type.
    pub fn message_type(&self) -> MessageType {
        match self.kind {
            MessageKind::Request { .. } => MessageType::Request,
            MessageKind::Notify { .. } => MessageType::Notify,
            MessageKind::Response { .. } => MessageType::Response,
            MessageKind::Push { .. } => MessageType::Push,
        }
    }

    /// The id of a request or response.
    pub fn id(&self) -> Option<MessageId> {
        match self.kind {
            MessageKind::Request { id, .. } | MessageKind::Response { id } => Some(id),
            MessageKind::Notify { .. } | MessageKind::Push { .. } => None,
        }
    }

    /// The route of a request, notify or push.
    pub fn route(&self) -> Option<&MessageRoute> {
        match &self.kind {
            MessageKind::Request { route, .. }
            | MessageKind::Notify { route }
            | MessageKind::Push { route } => Some(route),
            MessageKind::Response { .. } => None,
        }
    }

    /// The flag byte.
    pub fn flag(&self) -> Flag {
        Flag {
            message_type: self.message_type(),
            route_compressed: self.route().is_some_and(MessageRoute::is_compressed),
            gzip: self.gzip,
        }
    }

    /// Bytes of the encoded message (the data package's body length).
    pub fn encoded_len(&self) -> usize {
        1 + self.id().map_or(0, |id| parsers::message_id_len(id.get()))
            + self.route().map_or(0, MessageRoute::wire_len)
            + self.body.len()
    }

    /// Checks the limits the encoder enforces (route name 1 to 255 bytes).
    pub fn check(&self) -> Result<(), EncodeError> {
        match self.route() {
            Some(MessageRoute::Name(t)) => check_route_name(t),
            _ => Ok(()),
        }
    }

    /// Appends the encoded message to `dst`, or refuses it (writing nothing) if its route name is
    /// empty or over 255 bytes.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        self.check()?;
        self.encode_unchecked(dst);
        Ok(())
    }

    /// The encoded message as `Bytes`.
    pub fn to_bytes(&self) -> Result<Bytes, EncodeError> {
        let mut b = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut b)?;
        Ok(b.freeze())
    }

    /// Writes the message; the caller has run [`Message::check`].
    #[inline]
    pub(crate) fn encode_unchecked(&self, dst: &mut BytesMut) {
        dst.reserve(self.encoded_len());
        dst.put_u8(self.flag().as_u8());
        if let Some(id) = self.id() {
            parsers::put_message_id(dst, id.get());
        }
        match self.route() {
            Some(MessageRoute::Name(t)) => {
                dst.put_u8(t.len() as u8);
                dst.put_slice(t.as_bytes());
            }
            Some(MessageRoute::Code(code)) => dst.put_u16(*code),
            None => {}
        }
        dst.put_slice(&self.body);
    }

    /// Decodes a data package's body. Zero-copy: the route name and body are slices of `bytes`.
    ///
    /// Strict where pomelo-protocol is not (docs/POMELO.md, "Where gatekit differs"): reserved
    /// flag bits, unknown message types, a compressed response, an id that is zero, not minimal,
    /// over 5 bytes or over 32 bits, an empty or non-UTF-8 route, and a message cut short are
    /// all refused. So a message that decodes re-encodes to exactly the same bytes.
    pub fn decode(bytes: Bytes) -> Result<Message, MessageError> {
        let mut c = Cursor {
            all: &bytes,
            rest: &bytes,
        };
        let flag = c.step(Element::Flag, parsers::flag)?;
        let id = if flag.message_type.has_id() {
            Some(c.step(Element::MessageId, parsers::message_id)?)
        } else {
            None
        };
        let route = if !flag.message_type.has_route() {
            None
        } else if flag.route_compressed {
            Some(MessageRoute::Code(
                c.step(Element::RouteCode, parsers::route_code)?,
            ))
        } else {
            let len = c.step(Element::RouteLength, parsers::route_length)?;
            let at = c.pos();
            c.step(Element::Route, parsers::route_text(len))?;
            let text = bytes.slice(at..at + usize::from(len));
            Some(MessageRoute::Name(Text::from_utf8_unchecked(text)))
        };
        let body = bytes.slice(c.pos()..);
        let kind = match (flag.message_type, id, route) {
            (MessageType::Request, Some(id), Some(route)) => MessageKind::Request { id, route },
            (MessageType::Notify, None, Some(route)) => MessageKind::Notify { route },
            (MessageType::Response, Some(id), None) => MessageKind::Response { id },
            (MessageType::Push, None, Some(route)) => MessageKind::Push { route },
            _ => unreachable!("id and route follow the message type"),
        };
        Ok(Message {
            kind,
            gzip: flag.gzip,
            body,
        })
    }
}

/// Walks a message with the parsers, turning their faults into [`MessageError`]s that carry the
/// element and its offset.
struct Cursor<'a> {
    all: &'a [u8],
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    #[inline]
    fn pos(&self) -> usize {
        self.all.len() - self.rest.len()
    }

    #[inline(always)]
    fn step<T>(
        &mut self,
        element: Element,
        parser: impl Fn(&'a [u8]) -> PResult<'a, T>,
    ) -> Result<T, MessageError> {
        match parser(self.rest) {
            Ok((rest, value)) => {
                self.rest = rest;
                Ok(value)
            }
            Err(nom::Err::Error(f) | nom::Err::Failure(f)) => Err(self.error(element, f)),
            Err(nom::Err::Incomplete(_)) => Err(self.error(element, Fault::Short { needed: 1 })),
        }
    }

    #[cold]
    fn error(&self, element: Element, fault: Fault) -> MessageError {
        let offset = self.pos();
        let available = self.rest.len();
        match fault {
            Fault::Short { needed } => MessageError::Truncated {
                element,
                offset,
                needed,
                available,
            },
            Fault::ReservedFlagBits(flag) => MessageError::ReservedFlagBits { flag },
            Fault::UnknownMessageType { flag, value } => MessageError::UnknownType { flag, value },
            Fault::CompressedResponse(flag) => MessageError::CompressedResponse { flag },
            Fault::IdTooLong => MessageError::IdTooLong {
                offset,
                max_bytes: parsers::MESSAGE_ID_MAX_BYTES,
            },
            Fault::IdOverflow(value) => MessageError::IdOverflow {
                value,
                offset,
                max: u32::MAX,
            },
            Fault::IdNotMinimal { bytes, value } => MessageError::IdNotMinimal {
                offset,
                bytes,
                value,
            },
            Fault::ZeroId => MessageError::ZeroId { offset },
            Fault::EmptyRoute => MessageError::EmptyRoute { offset },
            Fault::Utf8 { valid_up_to } => MessageError::RouteNotUtf8 {
                offset,
                bad_at: offset + valid_up_to,
            },
            // Not produced by the message parsers.
            Fault::UnknownPackageType(_) | Fault::Nom(_) => MessageError::Truncated {
                element,
                offset,
                needed: available + 1,
                available,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(v: u32) -> MessageId {
        MessageId::new(v).unwrap()
    }

    fn round_trip(m: &Message, wire: &[u8]) {
        assert_eq!(&m.to_bytes().unwrap()[..], wire, "{m:?}");
        assert_eq!(m.encoded_len(), wire.len());
        assert_eq!(
            &Message::decode(Bytes::copy_from_slice(wire)).unwrap(),
            m,
            "{wire:02x?}"
        );
    }

    #[test]
    fn each_type_as_peers_md_shows() {
        let route = MessageRoute::from_static("connector.entryHandler.entry");
        round_trip(
            &Message::request(id(1), route.clone(), &b"{\"a\":1}"[..]),
            b"\x00\x01\x1cconnector.entryHandler.entry{\"a\":1}",
        );
        round_trip(
            &Message::request(id(1), MessageRoute::Code(1), &b"{}"[..]),
            b"\x01\x01\x00\x01{}",
        );
        round_trip(
            &Message::notify(MessageRoute::from_static("a.b"), Bytes::new()),
            b"\x02\x03a.b",
        );
        round_trip(
            &Message::response(id(1), &b"{\"code\":200}"[..]),
            b"\x04\x01{\"code\":200}",
        );
        round_trip(
            &Message::push(MessageRoute::from_static("onChat"), &b"{}"[..]),
            b"\x06\x06onChat{}",
        );
        round_trip(
            &Message::push(MessageRoute::Code(0x0102), Bytes::new()),
            b"\x07\x01\x02",
        );
        round_trip(
            &Message::response(id(300), Bytes::new()).with_gzip(true),
            b"\x14\xac\x02",
        );
    }

    #[test]
    fn decode_is_zero_copy() {
        let wire = Bytes::from_static(b"\x06\x03a.bbody");
        let m = Message::decode(wire.clone()).unwrap();
        let MessageKind::Push {
            route: MessageRoute::Name(t),
        } = &m.kind
        else {
            panic!("{m:?}")
        };
        assert_eq!(t.as_bytes().as_ptr(), wire[2..].as_ptr());
        assert_eq!(m.body.as_ptr(), wire[5..].as_ptr());
    }

    #[test]
    fn refusals_name_element_and_offset() {
        let e = |w: &'static [u8]| Message::decode(Bytes::from_static(w)).unwrap_err();
        assert_eq!(
            e(b""),
            MessageError::Truncated {
                element: Element::Flag,
                offset: 0,
                needed: 1,
                available: 0
            }
        );
        assert_eq!(
            e(b"\x00\x80"),
            MessageError::Truncated {
                element: Element::MessageId,
                offset: 1,
                needed: 2,
                available: 1
            }
        );
        assert_eq!(
            e(b"\x00\x01"),
            MessageError::Truncated {
                element: Element::RouteLength,
                offset: 2,
                needed: 1,
                available: 0
            }
        );
        assert_eq!(
            e(b"\x02\x05a.b"),
            MessageError::Truncated {
                element: Element::Route,
                offset: 2,
                needed: 5,
                available: 3
            }
        );
        assert_eq!(
            e(b"\x03\x01"),
            MessageError::Truncated {
                element: Element::RouteCode,
                offset: 1,
                needed: 2,
                available: 1
            }
        );
        assert_eq!(e(b"\x02\x00"), MessageError::EmptyRoute { offset: 1 });
        assert_eq!(
            e(b"\x02\x03a.\xff"),
            MessageError::RouteNotUtf8 {
                offset: 2,
                bad_at: 4
            }
        );
        assert_eq!(e(b"\x04\x00"), MessageError::ZeroId { offset: 1 });
        assert_eq!(e(b"\x05\x01"), MessageError::CompressedResponse { flag: 5 });
        assert_eq!(e(b"\x0a"), MessageError::UnknownType { flag: 10, value: 5 });
        assert_eq!(e(b"\x22"), MessageError::ReservedFlagBits { flag: 0x22 });
        assert_eq!(
            e(b"\x04\x80\x80\x80\x80\x80"),
            MessageError::IdTooLong {
                offset: 1,
                max_bytes: 5
            }
        );
    }

    #[test]
    fn encoder_limits() {
        let long = Text::from("r".repeat(256));
        let m = Message::notify(MessageRoute::Name(long.clone()), Bytes::new());
        let mut out = BytesMut::new();
        assert_eq!(
            m.encode(&mut out),
            Err(EncodeError::RouteTooLong { len: 256, max: 255 })
        );
        assert_eq!(
            MessageRoute::name(long),
            Err(EncodeError::RouteTooLong { len: 256, max: 255 })
        );
        let empty = Message::push(MessageRoute::Name(Text::default()), Bytes::new());
        assert_eq!(empty.encode(&mut out), Err(EncodeError::EmptyRoute));
        assert!(out.is_empty());
        let max = MessageRoute::name("r".repeat(255)).unwrap();
        assert_eq!(Message::notify(max, Bytes::new()).encoded_len(), 257);
    }
}
