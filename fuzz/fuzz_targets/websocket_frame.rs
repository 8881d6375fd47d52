//! Raw bytes into the WebSocket frame header decoder, in both roles, with a maximum payload picked
//! by the first byte: no panic; an accepted header re-encodes to its exact bytes and its prefixes
//! are incomplete; an error does not depend on the bytes after it; masking in pieces equals
//! masking whole; Close payloads re-encode. See `websocket_fuzz::frame` (the checks live in
//! `codec/tests/websocket_fuzz.rs`, which `cargo test` replays over `corpus/websocket/`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../codec/tests/websocket_fuzz.rs"]
mod websocket_fuzz;

fuzz_target!(|data: &[u8]| websocket_fuzz::frame(data));
