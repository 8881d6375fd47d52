//! The packets of the native protocol (`docs/PROTOCOL.md`).

use super::text::{Route, Text, Topic};
use bytes::Bytes;
use std::fmt;
use std::num::NonZeroU32;

/// A request's message id: 1 to 4,294,967,295 (zero is refused on the wire).
pub type MessageId = NonZeroU32;

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u8 = 1;

/// The longest handshake token: 4,096 bytes.
pub const MAX_TOKEN_LEN: usize = 4096;

/// The longest session id: 64 bytes.
pub const MAX_SESSION_ID_LEN: usize = 64;

/// The longest close reason text: 255 bytes.
pub const MAX_REASON_LEN: usize = 255;

/// Packet kind bytes.
pub mod kind {
    /// Client → gate: open a session.
    pub const HANDSHAKE: u8 = 0x01;
    /// Gate → client: session accepted.
    pub const WELCOME: u8 = 0x02;
    /// Client → gate: call `module/func`, expect a response.
    pub const REQUEST: u8 = 0x03;
    /// Gate → client: the answer to a request.
    pub const RESPONSE: u8 = 0x04;
    /// Client → gate: call `module/func`, no response.
    pub const NOTIFY: u8 = 0x05;
    /// Gate → client: a message on a topic.
    pub const PUSH: u8 = 0x06;
    /// Either way: are you there?
    pub const PING: u8 = 0x07;
    /// Either way: yes.
    pub const PONG: u8 = 0x08;
    /// Either way: closing, with a code and reason (also the gate's refusal of a handshake).
    pub const CLOSE: u8 = 0x09;
}

macro_rules! byte_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident = $val:literal => $text:literal,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
        #[repr(u8)]
        pub enum $name { $($(#[$vm])* $var = $val,)* }

        impl $name {
            /// Every value, in wire order.
            pub const ALL: &'static [$name] = &[$($name::$var,)*];

            /// The value for a wire byte, if any.
            pub const fn from_u8(b: u8) -> Option<$name> {
                match b { $($val => Some($name::$var),)* _ => None }
            }

            /// The wire byte.
            pub const fn as_u8(self) -> u8 { self as u8 }

            /// A short lowercase name.
            pub const fn name(self) -> &'static str {
                match self { $($name::$var => $text,)* }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

byte_enum! {
    /// A response's status.
    Status {
        /// The back end answered; the body is its result.
        Ok = 0 => "ok",
        /// No back end serves the route's module (or the function is unknown).
        NotFound = 1 => "not found",
        /// The back end did not answer in time.
        Timeout = 2 => "timeout",
        /// The gate or back end is overloaded; try later.
        Busy = 3 => "busy",
        /// The back end failed (it panicked or crashed); the body may say more.
        InternalError = 4 => "internal error",
        /// The back end refused the request with an error of its own; the body says which.
        Failed = 5 => "failed",
    }
}

byte_enum! {
    /// Why a connection is closing, or why a handshake is refused.
    CloseCode {
        /// A graceful close, nothing wrong.
        Normal = 0 => "normal",
        /// The peer is going away (client shutting down, app in background).
        GoingAway = 1 => "going away",
        /// The peer sent bytes that break the protocol.
        ProtocolError = 2 => "protocol error",
        /// No packet for longer than the idle timeout.
        IdleTimeout = 3 => "idle timeout",
        /// The client did not read fast enough and its write queue filled.
        SlowConsumer = 4 => "slow consumer",
        /// The server closed the session on purpose (kick).
        Kicked = 5 => "kicked",
        /// The gate is shutting down.
        Shutdown = 6 => "shutdown",
        /// A frame was over the maximum frame length.
        FrameTooLarge = 7 => "frame too large",
        /// The handshake did not finish in time.
        HandshakeTimeout = 8 => "handshake timeout",
        /// Refusal: the handshake asked for a protocol version the gate does not speak.
        UnsupportedVersion = 9 => "unsupported version",
        /// Refusal: the token was not accepted.
        Unauthorized = 10 => "unauthorized",
        /// Refusal: the gate holds its maximum number of connections.
        ServerFull = 11 => "server full",
        /// The gate failed internally.
        InternalError = 12 => "internal error",
    }
}

/// Client → gate, first packet: open a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// The protocol version the client speaks ([`PROTOCOL_VERSION`]).
    pub version: u8,
    /// The heartbeat interval the client wants, in seconds; 0 lets the gate choose.
    pub heartbeat_secs: u16,
    /// An opaque authentication token, at most [`MAX_TOKEN_LEN`] bytes.
    pub token: Bytes,
}

/// Gate → client: the handshake is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    /// The protocol version the gate will speak.
    pub version: u8,
    /// The heartbeat interval in seconds: ping at least this often.
    pub heartbeat_secs: u16,
    /// The largest frame the gate accepts (bytes after the length prefix).
    pub max_frame_length: u32,
    /// The session id, 1 to [`MAX_SESSION_ID_LEN`] bytes of UTF-8.
    pub session_id: Text,
}

/// Either way: closing, with a code and reason. Sent by the gate instead of [`Welcome`] to refuse a
/// handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// Why.
    pub code: CloseCode,
    /// A short human-readable reason, at most [`MAX_REASON_LEN`] bytes (may be empty).
    pub reason: Text,
}

/// Gate → client: the answer to the request with the same id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The request's id.
    pub id: MessageId,
    /// How it went.
    pub status: Status,
    /// The result (or error text).
    pub body: Bytes,
}

/// A text field and a body, held as one slice of the decoded frame (so decoding takes one
/// reference count, not two, and the packet stays small) or as two separate buffers when built by
/// hand (boxed, so that the rare case does not make every packet larger).
#[derive(Clone)]
pub(crate) enum Parts {
    /// `buf` is the text immediately followed by the body.
    Joined { buf: Bytes, text_len: u8 },
    /// Built from parts: (text, body).
    Split(Box<(Bytes, Bytes)>),
}

impl Parts {
    #[inline]
    fn text(&self) -> &[u8] {
        match self {
            Parts::Joined { buf, text_len } => &buf[..*text_len as usize],
            Parts::Split(split) => &split.0,
        }
    }

    #[inline]
    fn body(&self) -> &[u8] {
        match self {
            Parts::Joined { buf, text_len } => &buf[*text_len as usize..],
            Parts::Split(split) => &split.1,
        }
    }

    fn text_bytes(&self) -> Bytes {
        match self {
            Parts::Joined { buf, text_len } => buf.slice(..*text_len as usize),
            Parts::Split(split) => split.0.clone(),
        }
    }

    fn body_bytes(&self) -> Bytes {
        match self {
            Parts::Joined { buf, text_len } => buf.slice(*text_len as usize..),
            Parts::Split(split) => split.1.clone(),
        }
    }

    fn into_body(self) -> Bytes {
        match self {
            Parts::Joined { mut buf, text_len } => {
                bytes::Buf::advance(&mut buf, text_len as usize);
                buf
            }
            Parts::Split(split) => split.1,
        }
    }
}

macro_rules! routed {
    ($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $field:ident : $ty:ty,)* }) => {
        $(#[$m])*
        #[derive(Clone)]
        pub struct $name {
            $($field: $ty,)*
            slash: u8,
            parts: Parts,
        }

        impl $name {
            /// Builds one from a route and a body.
            pub fn new($($field: $ty,)* route: Route, body: impl Into<Bytes>) -> Self {
                $name {
                    $($field,)*
                    slash: route.slash() as u8,
                    parts: Parts::Split(Box::new((route.as_bytes().clone(), body.into()))),
                }
            }

            pub(crate) fn from_frame($($field: $ty,)* buf: Bytes, route_len: usize, slash: usize) -> Self {
                $name { $($field,)* slash: slash as u8, parts: Parts::Joined { buf, text_len: route_len as u8 } }
            }

            $($(#[$fm])* pub fn $field(&self) -> $ty { self.$field })*

            /// The route, `module/func`.
            #[inline]
            pub fn route(&self) -> &str {
                // SAFETY: the route bytes were checked to be UTF-8 when decoded or built.
                unsafe { std::str::from_utf8_unchecked(self.parts.text()) }
            }

            /// The module part of the route.
            #[inline]
            pub fn module(&self) -> &str {
                &self.route()[..self.slash as usize]
            }

            /// The function part of the route.
            #[inline]
            pub fn func(&self) -> &str {
                &self.route()[self.slash as usize + 1..]
            }

            /// The route as a [`Route`] (a zero-copy slice of the frame; one reference count).
            pub fn route_value(&self) -> Route {
                Route::from_parts_unchecked(Text::from_utf8_unchecked(self.parts.text_bytes()), self.slash as usize)
            }

            /// The body.
            #[inline]
            pub fn body(&self) -> &[u8] {
                self.parts.body()
            }

            /// The body as `Bytes` (a zero-copy slice of the frame; one reference count).
            pub fn body_bytes(&self) -> Bytes {
                self.parts.body_bytes()
            }

            /// Takes the body out without another reference count.
            pub fn into_body(self) -> Bytes {
                self.parts.into_body()
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                $(self.$field == other.$field &&)* self.route() == other.route() && self.body() == other.body()
            }
        }

        impl Eq for $name {}

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    $(.field(stringify!($field), &self.$field))*
                    .field("route", &self.route())
                    .field("body", &Bytes::copy_from_slice(self.body()))
                    .finish()
            }
        }
    };
}

routed! {
    /// Client → gate: call `module/func` with a body; the gate answers with a [`Response`] carrying
    /// the same id.
    Request {
        /// The message id, echoed in the response.
        id: MessageId,
    }
}

routed! {
    /// Client → gate: call `module/func` with a body; no response.
    Notify {}
}

/// Gate → client: a message on a topic.
#[derive(Clone)]
pub struct Push {
    parts: Parts,
}

impl Push {
    /// Builds one from a topic and a body.
    pub fn new(topic: Topic, body: impl Into<Bytes>) -> Self {
        Push {
            parts: Parts::Split(Box::new((topic.as_bytes().clone(), body.into()))),
        }
    }

    pub(crate) fn from_frame(buf: Bytes, topic_len: usize) -> Self {
        Push {
            parts: Parts::Joined {
                buf,
                text_len: topic_len as u8,
            },
        }
    }

    /// The topic.
    #[inline]
    pub fn topic(&self) -> &str {
        // SAFETY: the topic bytes were checked to be UTF-8 when decoded or built.
        unsafe { std::str::from_utf8_unchecked(self.parts.text()) }
    }

    /// The topic as a [`Topic`] (a zero-copy slice; one reference count).
    pub fn topic_value(&self) -> Topic {
        Topic::from_text_unchecked(Text::from_utf8_unchecked(self.parts.text_bytes()))
    }

    /// The body.
    #[inline]
    pub fn body(&self) -> &[u8] {
        self.parts.body()
    }

    /// The body as `Bytes` (a zero-copy slice; one reference count).
    pub fn body_bytes(&self) -> Bytes {
        self.parts.body_bytes()
    }

    /// Takes the body out without another reference count.
    pub fn into_body(self) -> Bytes {
        self.parts.into_body()
    }
}

impl PartialEq for Push {
    fn eq(&self, other: &Self) -> bool {
        self.topic() == other.topic() && self.body() == other.body()
    }
}

impl Eq for Push {}

impl fmt::Debug for Push {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Push")
            .field("topic", &self.topic())
            .field("body", &Bytes::copy_from_slice(self.body()))
            .finish()
    }
}

/// A packet of the native protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// Client → gate: open a session.
    Handshake(Handshake),
    /// Gate → client: session accepted.
    Welcome(Welcome),
    /// Client → gate: a call expecting a response.
    Request(Request),
    /// Gate → client: the answer to a request.
    Response(Response),
    /// Client → gate: a call without response.
    Notify(Notify),
    /// Gate → client: a message on a topic.
    Push(Push),
    /// Either way: liveness probe.
    Ping,
    /// Either way: answer to a ping.
    Pong,
    /// Either way: closing (or the gate refusing a handshake).
    Close(Close),
}

impl Packet {
    /// The kind byte of this packet.
    pub fn kind(&self) -> u8 {
        match self {
            Packet::Handshake(_) => kind::HANDSHAKE,
            Packet::Welcome(_) => kind::WELCOME,
            Packet::Request(_) => kind::REQUEST,
            Packet::Response(_) => kind::RESPONSE,
            Packet::Notify(_) => kind::NOTIFY,
            Packet::Push(_) => kind::PUSH,
            Packet::Ping => kind::PING,
            Packet::Pong => kind::PONG,
            Packet::Close(_) => kind::CLOSE,
        }
    }

    /// The name of this packet's kind, as in `docs/PROTOCOL.md`.
    pub fn kind_name(&self) -> &'static str {
        kind_name(self.kind()).unwrap_or("?")
    }
}

/// The name of a kind byte, as in `docs/PROTOCOL.md`.
pub fn kind_name(kind: u8) -> Option<&'static str> {
    Some(match kind {
        kind::HANDSHAKE => "HANDSHAKE",
        kind::WELCOME => "WELCOME",
        kind::REQUEST => "REQUEST",
        kind::RESPONSE => "RESPONSE",
        kind::NOTIFY => "NOTIFY",
        kind::PUSH => "PUSH",
        kind::PING => "PING",
        kind::PONG => "PONG",
        kind::CLOSE => "CLOSE",
        _ => return None,
    })
}

macro_rules! packet_from {
    ($($var:ident),*) => {$(
        impl From<$var> for Packet {
            fn from(p: $var) -> Packet { Packet::$var(p) }
        }
    )*};
}
packet_from!(Handshake, Welcome, Request, Response, Notify, Push, Close);
