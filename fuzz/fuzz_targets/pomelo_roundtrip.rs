//! Arbitrary pomelo package and message → encode → decode → the same, re-encoded to the same
//! bytes. See `gatekit_fuzz::pomelo::pomelo_roundtrip`.
#![no_main]

use gatekit_codec::pomelo::{Message, Package};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (Package, Message)| {
    let (package, message) = input;
    gatekit_fuzz::pomelo::pomelo_roundtrip(&package, &message);
});
