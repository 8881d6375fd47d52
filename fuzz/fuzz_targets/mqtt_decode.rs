//! Raw bytes into the MQTT decoder, whole and in chunks, as a server or a client: no panic, no
//! loop, bounded buffering, the same packets and errors whichever way the bytes arrive, and every
//! packet re-encodes to its bytes. See `gatekit_fuzz::mqtt::mqtt_decode`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gatekit_fuzz::mqtt::mqtt_decode(data));
