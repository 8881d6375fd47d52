//! Arbitrary MQTT packet → encode → decode → the same packet, re-encoded to the same bytes. See
//! `gatekit_fuzz::mqtt::mqtt_roundtrip`.
#![no_main]

use gatekit_codec::mqtt::Packet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|packet: Packet| gatekit_fuzz::mqtt::mqtt_roundtrip(&packet));
