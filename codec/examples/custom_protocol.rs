//! Defining a small custom protocol with the generic framing.
//!
//! The protocol (as a Leaf/mqant game might use): a 2-byte little-endian length that counts the whole
//! frame, then a 2-byte little-endian message type, then a body. We keep the message type in the
//! decoded frame and parse it with one of the crate's nom-compatible parsers.
//!
//! ```text
//! +- len: u16le (whole frame) -+- type: u16le -+- body -+
//! | \x09 \x00                  | \x01 \x00     | hello  |
//! +----------------------------+---------------+--------+
//! ```
//!
//! Run with `cargo run -p gatekit-codec --example custom_protocol`.

use bytes::{Bytes, BytesMut};
use gatekit_codec::{Endian, FrameError, Framing, LengthField, Oversize};

/// One message of the custom protocol.
#[derive(Debug, PartialEq)]
struct Message {
    kind: u16,
    body: Bytes,
}

fn framing() -> Framing {
    Framing::builder()
        .length_field(LengthField::U16(Endian::Little))
        .length_adjustment(-2) // the length counts its own two bytes
        .max_frame_length(4096)
        .oversize(Oversize::Skip) // a too-large message is skipped, the stream stays usable
        .build()
        .expect("valid framing")
}

fn encode(msg: &Message, dst: &mut BytesMut) {
    let mut payload = Vec::with_capacity(2 + msg.body.len());
    payload.extend_from_slice(&msg.kind.to_le_bytes());
    payload.extend_from_slice(&msg.body);
    framing().encode(&[], &payload, dst).expect("within limits");
}

fn parse(mut frame: Bytes) -> Option<Message> {
    let (_, kind) =
        nom::number::complete::le_u16::<_, nom::error::Error<&[u8]>>(&frame[..]).ok()?;
    bytes::Buf::advance(&mut frame, 2);
    Some(Message { kind, body: frame })
}

fn main() {
    let mut wire = BytesMut::new();
    encode(
        &Message {
            kind: 1,
            body: Bytes::from_static(b"hello"),
        },
        &mut wire,
    );
    assert_eq!(&wire[..4], b"\x09\x00\x01\x00");
    // An oversized frame (claims 60,000 bytes) followed by a good one.
    wire.extend_from_slice(&60_000u16.to_le_bytes());
    wire.extend_from_slice(&[0; 100]);
    let mut decoder = framing().decoder();
    let mut rest = wire.split_off(wire.len() - 102);
    while let Some(frame) = decoder.decode(&mut wire).expect("valid stream") {
        println!("message: {:?}", parse(frame));
    }
    match decoder.decode(&mut rest) {
        Err(e @ FrameError::TooLargeSkipped { .. }) => println!("recoverable: {e}"),
        other => println!("unexpected: {other:?}"),
    }
    // The remaining 59,998 bytes would be discarded as they arrive, then decoding goes on.
    println!("decoder idle: {}", decoder.is_idle());
}
