//! Arbitrary framing configuration and bytes: no panic, no loop, frames within the limit, and
//! plain frames re-encode to themselves. See `gatekit_fuzz::framing`.
#![no_main]

use gatekit_codec::FramingBuilder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (FramingBuilder, &[u8])| {
    let (builder, data) = input;
    gatekit_fuzz::framing(builder, data);
});
