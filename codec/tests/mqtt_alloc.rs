//! Decoding a PUBLISH does no heap allocation: topic and payload are slices of the input buffer.
//! A counting global allocator (per thread, so other tests cannot disturb it) checks it for QoS 0
//! and QoS 1 packets, decoded as a server and as a client, whole and fed in pieces.

use bytes::BytesMut;
use gatekit_codec::mqtt::{MqttCodec, Packet, PacketId, Publish, Role, TopicName};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn decoding_publish_allocates_nothing() {
    let topic = TopicName::from_static("echo/HD_say/1");
    for role in [Role::Server, Role::Client] {
        let encoder = MqttCodec::new(role.peer(), Default::default()).unwrap();
        let mut wire = BytesMut::with_capacity(64 * 1024);
        for i in 0..200u16 {
            let p: Packet = if i % 2 == 0 {
                Publish::qos0(topic.clone(), vec![b'x'; usize::from(i)]).into()
            } else {
                Publish::qos1(PacketId::new(i).unwrap(), topic.clone(), vec![b'y'; 20]).into()
            };
            encoder.encode(&p, &mut wire).unwrap();
        }
        let mut codec = MqttCodec::new(role, Default::default()).unwrap();
        // The first split of a vector-backed `BytesMut` makes its buffer shared: one allocation
        // for the whole buffer, not per packet.
        let first = codec.decode(&mut wire).unwrap().unwrap();
        drop(first);
        let before = allocations();
        let mut decoded = 0;
        while let Some(p) = codec.decode(&mut wire).unwrap() {
            assert!(matches!(p, Packet::Publish(_)));
            drop(p);
            decoded += 1;
        }
        assert_eq!(decoded, 199);
        assert_eq!(
            allocations() - before,
            0,
            "{role}: allocations while decoding"
        );
    }

    // Fed in pieces into a buffer with room: still nothing per packet.
    let encoder = MqttCodec::client();
    let mut wire = BytesMut::new();
    for i in 1..=50u16 {
        let p = Publish::qos1(PacketId::new(i).unwrap(), topic.clone(), vec![b'z'; 100]);
        encoder.encode(&p.into(), &mut wire).unwrap();
    }
    let mut codec = MqttCodec::server();
    let mut src = BytesMut::with_capacity(wire.len());
    src.extend_from_slice(&wire[..10]);
    assert_eq!(codec.decode(&mut src).unwrap(), None);
    src.extend_from_slice(&wire[10..200]);
    let first = codec.decode(&mut src).unwrap().unwrap();
    drop(first);
    let before = allocations();
    let mut decoded = 1;
    for piece in wire[200..].chunks(37) {
        src.extend_from_slice(piece);
        while let Some(p) = codec.decode(&mut src).unwrap() {
            drop(p);
            decoded += 1;
        }
    }
    assert_eq!(decoded, 50);
    assert_eq!(
        allocations() - before,
        0,
        "allocations while decoding in pieces"
    );
}
