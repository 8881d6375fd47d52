//! Raw bytes into the native decoder, whole and in chunks: no panic, no loop, bounded buffering,
//! the same packets and errors whichever way the bytes arrive. See `gatekit_fuzz::native_decode`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gatekit_fuzz::native_decode(data));
