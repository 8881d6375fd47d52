//! Raw bytes into the pomelo package decoder, whole and in chunks, and into the message decoder:
//! no panic, no loop, bounded buffering, the same packages and errors whichever way the bytes
//! arrive, and what decodes re-encodes to the same bytes. See `gatekit_fuzz::pomelo::pomelo_decode`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gatekit_fuzz::pomelo::pomelo_decode(data));
