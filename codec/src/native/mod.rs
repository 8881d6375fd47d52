//! gatekit's native protocol: packets, and a stateful codec over the varint framing.
//!
//! The byte-level specification is `docs/PROTOCOL.md`; a test checks its hex examples against the
//! encoder.

mod codec;
mod decode;
mod encode;
mod packet;
mod text;

pub use codec::NativeCodec;
pub use decode::decode_packet;
pub use encode::{encode_packet, frame_len};
pub use packet::{
    kind, kind_name, Close, CloseCode, Handshake, MessageId, Notify, Packet, Push, Request,
    Response, Status, Welcome, MAX_REASON_LEN, MAX_SESSION_ID_LEN, MAX_TOKEN_LEN, PROTOCOL_VERSION,
};
pub use text::{Route, Text, TextError, Topic, MAX_ROUTE_LEN};
