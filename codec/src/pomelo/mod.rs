//! The pomelo protocol, as NetEase pomelo, pinus, and their clients (and pitaya, nano) speak it:
//! the byte-level profile is docs/POMELO.md, whose hex examples a test checks against this code.
//!
//! Two layers, each decoded zero-copy:
//!
//! - **Packages** ([`Package`], [`PomeloCodec`]): a type byte (1 handshake, 2 handshake ack,
//!   3 heartbeat, 4 data, 5 kick), a 3-byte big-endian body length, the body. The codec keeps
//!   partial state between calls (`Ok(None)` = need more bytes), refuses a body over its maximum
//!   (default 65,535) from the length bytes alone, and an unknown type from its first byte.
//! - **Messages** ([`Message`]), the body of a data package: a flag byte (type request 0,
//!   notify 1, response 2, push 3 in bits 1–3; route compressed in bit 0; gzip in bit 4), a
//!   base-128 varint id (request, response), a route (request, notify, push: a length byte and
//!   UTF-8 name, or a u16 code of the [`Dictionary`] when compressed), and the body.
//!
//! The JSON bodies of handshake and kick packages: [`ClientHandshake`], [`HandshakeResponse`] /
//! [`ServerHandshake`] and [`Kick`]; the route dictionary and its `dictVersion` exactly as pinus
//! computes them: [`Dictionary`]; mapping `server.handler.method` to gatekit's module and
//! function: [`split_route`].
//!
//! ```
//! use gatekit_codec::pomelo::{Message, MessageRoute, Package, PomeloCodec};
//! use bytes::BytesMut;
//!
//! let mut codec = PomeloCodec::default();
//! let mut wire = BytesMut::new();
//! let req = Message::request(1.try_into().unwrap(), MessageRoute::from_static("echo.handler.say"), &b"{}"[..]);
//! codec.encode_message(&req, &mut wire).unwrap();
//! assert_eq!(&wire[..4], b"\x04\x00\x00\x15"); // data, 21 bytes
//!
//! let Some(Package::Data(body)) = codec.decode(&mut wire).unwrap() else { panic!() };
//! let msg = Message::decode(body).unwrap();
//! assert_eq!(msg, req);
//! let route = msg.route().and_then(MessageRoute::as_name).unwrap();
//! assert_eq!(gatekit_codec::pomelo::split_route(route).unwrap(), ("echo", "handler.say"));
//! ```

#[cfg(feature = "arbitrary")]
mod arbitrary_impl;
mod codec;
mod dict;
mod error;
mod handshake;
mod message;
mod package;
pub mod parsers;
mod route;

pub use codec::{encode_package, PomeloCodec};
#[cfg(feature = "tokio")]
pub use codec::{Decoded, PomeloCodecError};
pub use dict::{dict_version, is_array_index, js_cmp, js_string, Dictionary, MAX_DICT_ROUTES};
pub use error::{
    BodyError, ConfigError, DictError, Element, EncodeError, JsonFault, JsonKind, MessageError,
    PackageError, RouteError,
};
pub use handshake::{
    ClientHandshake, HandshakeResponse, Kick, ServerHandshake, CODE_OK, CODE_OLD_CLIENT,
    CODE_USE_ERROR,
};
pub use message::{Flag, Message, MessageKind, MessageRoute, MessageType, MAX_ROUTE_NAME_LEN};
pub use package::{Package, PackageType, DEFAULT_MAX_BODY_LENGTH, HEADER_LEN, MAX_BODY_LENGTH_CAP};
pub use route::{join_route, split_route};

/// The message id type: 1 to `u32::MAX` (the native protocol's).
pub use crate::native::MessageId;
