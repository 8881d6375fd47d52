//! Raw bytes into the WebSocket upgrade parsers (`parse_http_request`, `parse_upgrade_request`,
//! `parse_upgrade_response`), with limits picked by the first two bytes: no panic, `Ok(None)`
//! only within the byte limit, limit errors naming the limits, the parsers agreeing with each
//! other, and an accepted request's answer accepted by the client side. See
//! `websocket_fuzz::upgrade` (the checks live in `codec/tests/websocket_fuzz.rs`, which
//! `cargo test` replays over `corpus/websocket/`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../codec/tests/websocket_fuzz.rs"]
mod websocket_fuzz;

fuzz_target!(|data: &[u8]| websocket_fuzz::upgrade(data));
