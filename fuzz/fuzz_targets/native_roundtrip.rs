//! Arbitrary packet → encode → decode → the same packet, re-encoded to the same bytes. See
//! `gatekit_fuzz::native_roundtrip`.
#![no_main]

use gatekit_codec::Packet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|packet: Packet| gatekit_fuzz::native_roundtrip(&packet));
