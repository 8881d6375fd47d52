//! The golden vectors of `corpus/pomelo/golden/`, written by the real pomelo-protocol 0.1.6 and
//! pinus 1.7.4 (`peers/pomelo/golden.js`), replayed without Node: each `.bin` decodes to the fields
//! its `.json` describes, and gatekit's encoding of those fields gives the same bytes.

use bytes::{Bytes, BytesMut};
use gatekit_codec::pomelo::{
    ClientHandshake, Dictionary, HandshakeResponse, Kick, Message, MessageId, MessageKind,
    MessageRoute, Package, PackageType, PomeloCodec, ServerHandshake,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/pomelo/golden")
}

/// (name, bytes, description) of every golden vector, sorted by name.
fn goldens() -> Vec<(String, Vec<u8>, Value)> {
    let dir = golden_dir();
    let mut names = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        match ext {
            "bin" | "json" => *names.entry(name).or_insert(0) += 1,
            _ => panic!("unexpected file {} in {}", path.display(), dir.display()),
        }
    }
    names
        .into_iter()
        .map(|(name, count)| {
            assert_eq!(count, 2, "{name}: needs both .bin and .json");
            let bin = std::fs::read(dir.join(format!("{name}.bin"))).unwrap();
            let json = std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap();
            let desc: Value = serde_json::from_str(&json).unwrap();
            assert_eq!(desc["name"], name.as_str(), "{name}: name field");
            (name, bin, desc)
        })
        .collect()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn decode_one(name: &str, bin: &[u8]) -> Package {
    let mut codec = PomeloCodec::default();
    let mut wire = BytesMut::from(bin);
    let p = codec
        .decode_eof(&mut wire)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .unwrap_or_else(|| panic!("{name}: no package"));
    assert!(wire.is_empty(), "{name}: bytes left over");
    assert_eq!(codec.decode_eof(&mut wire), Ok(None));
    p
}

fn encode(p: &Package) -> Vec<u8> {
    let mut out = BytesMut::new();
    PomeloCodec::default().encode(p, &mut out).unwrap();
    out.to_vec()
}

/// The message the description's fields say, built by gatekit.
fn message_from(desc: &Value) -> Message {
    let id = || MessageId::new(desc["id"].as_u64().unwrap() as u32).unwrap();
    let route = || {
        if desc["compressRoute"].as_bool().unwrap() {
            MessageRoute::Code(desc["routeCode"].as_u64().unwrap() as u16)
        } else {
            MessageRoute::name(desc["route"].as_str().unwrap().to_owned()).unwrap()
        }
    };
    let body = Bytes::from(hex(desc["body_hex"].as_str().unwrap()));
    let m = match desc["type"].as_str().unwrap() {
        "request" => Message::request(id(), route(), body),
        "notify" => Message::notify(route(), body),
        "response" => Message::response(id(), body),
        "push" => Message::push(route(), body),
        other => panic!("message type {other}"),
    };
    m.with_gzip(desc["gzip"].as_bool().unwrap())
}

fn check_message(name: &str, bin: &[u8], body: Bytes, desc: &Value) {
    let decoded = Message::decode(body).unwrap_or_else(|e| panic!("{name}: {e}"));
    let want = message_from(desc);
    assert_eq!(decoded, want, "{name}: decoded fields");
    let mut out = BytesMut::new();
    PomeloCodec::default()
        .encode_message(&want, &mut out)
        .unwrap();
    assert_eq!(&out[..], bin, "{name}: gatekit's encoding differs");
    // The parts as the description names them.
    match &decoded.kind {
        MessageKind::Request { id, .. } | MessageKind::Response { id } => {
            assert_eq!(Some(u64::from(id.get())), desc["id"].as_u64(), "{name}")
        }
        _ => assert!(desc.get("id").is_none(), "{name}"),
    }
}

/// The dictionary pinus built, rebuilt by gatekit from the same inputs (handler routes given in
/// reverse, to show the sort is gatekit's own); its JSON and version must be pinus's.
fn dict_from(name: &str, desc: &Value) -> Arc<Dictionary> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    let mut handlers = strings(&desc["handlers"]);
    handlers.reverse();
    let d = Dictionary::new(handlers, strings(&desc["user"])).unwrap();
    assert_eq!(
        d.json(),
        desc["json"].as_str().unwrap(),
        "{name}: dict JSON"
    );
    assert_eq!(
        d.version(),
        desc["version"].as_str().unwrap(),
        "{name}: dictVersion"
    );
    Arc::new(d)
}

fn check_server_handshake(name: &str, bin: &[u8], body: &Bytes, desc: &Value) {
    let parsed = ServerHandshake::parse(body).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut r = if parsed.code == 200 {
        HandshakeResponse::ok(parsed.heartbeat_secs)
    } else {
        HandshakeResponse::error(parsed.code)
    };
    if let Some(d) = desc.get("dict") {
        let dict = dict_from(name, d);
        if let Some(pairs) = &parsed.dict {
            // A route given twice leaves a gap in the codes the client sees (odd): no dictionary.
            let dense = pairs.len() == dict.len();
            let want = dense.then(|| (*dict).clone());
            assert_eq!(parsed.dictionary(), want, "{name}");
            assert_eq!(parsed.dict_version.as_deref(), Some(dict.version()));
            r = r.with_dict(dict);
        }
    }
    if parsed.use_dict && parsed.dict.is_none() {
        r = r.use_dict();
    }
    if let Some(user) = &parsed.user {
        r = r.with_user(user.clone()).unwrap();
    }
    assert_eq!(
        encode(&r.to_package()),
        bin,
        "{name}: gatekit's response differs:\n{}",
        r.to_json()
    );
}

#[test]
fn golden_vectors_decode_to_their_fields_and_reencode_to_their_bytes() {
    let all = goldens();
    assert!(all.len() >= 30, "only {} golden vectors", all.len());
    let mut types = std::collections::BTreeSet::new();
    for (name, bin, desc) in &all {
        let p = decode_one(name, bin);
        assert_eq!(
            u64::from(p.package_type().as_u8()),
            desc["type"].as_u64().unwrap(),
            "{name}: type"
        );
        assert_eq!(
            p.body().len() as u64,
            desc["body_len"].as_u64().unwrap(),
            "{name}: body length"
        );
        assert_eq!(encode(&p), *bin, "{name}: package re-encoding");
        types.insert(p.package_type());
        match &p {
            Package::Data(body) => check_message(name, bin, body.clone(), &desc["message"]),
            Package::Handshake(body) => {
                let json = desc["handshake"]["json"].as_str().unwrap();
                assert_eq!(&body[..], json.as_bytes(), "{name}");
                if name.starts_with("handshake_client") {
                    let h = ClientHandshake::parse(body).unwrap_or_else(|e| panic!("{name}: {e}"));
                    assert_eq!(h.to_json(), json, "{name}: gatekit's handshake differs");
                } else {
                    check_server_handshake(name, bin, body, desc);
                }
            }
            Package::Kick(body) => {
                let reason = desc["kick"]["reason"].as_str().unwrap();
                assert_eq!(Kick::parse(body).unwrap().reason, reason, "{name}");
                assert_eq!(encode(&Kick::new(reason).to_package()), *bin, "{name}");
            }
            Package::HandshakeAck | Package::Heartbeat => {}
        }
    }
    assert_eq!(types.len(), 5, "every package type has a vector");
}

#[test]
fn the_official_client_handshake_is_what_peers_md_shows() {
    let bin = std::fs::read(golden_dir().join("handshake_client_js_tcp.bin")).unwrap();
    assert_eq!(&bin[..4], b"\x01\x00\x00\x3e");
    assert_eq!(
        encode(&ClientHandshake::new("js-tcp", "0.0.1").to_package()),
        bin
    );
}

#[test]
fn gatekit_answers_as_pinus_does() {
    let read = |n: &str| Bytes::from(std::fs::read(golden_dir().join(format!("{n}.bin"))).unwrap());
    let body = |b: Bytes| match decode_one("", &b) {
        Package::Handshake(body) => body,
        other => panic!("{other:?}"),
    };
    let desc: Value = serde_json::from_str(
        &std::fs::read_to_string(golden_dir().join("handshake_server_dict.json")).unwrap(),
    )
    .unwrap();
    let dict = dict_from("handshake_server_dict", &desc["dict"]);
    // A client without a dictVersion gets the dictionary; one with the current version does not.
    let fresh = ClientHandshake::parse(&body(read("handshake_client_js_tcp"))).unwrap();
    let cached = ClientHandshake::parse(&body(read("handshake_client_cached_dict"))).unwrap();
    assert_eq!(cached.dict_version.as_deref(), Some(dict.version()));
    assert_eq!(cached.sys_extra.get("platform"), Some(&Value::from("web")));
    let answer = |c: &ClientHandshake| {
        Bytes::from(encode(
            &HandshakeResponse::accept(c, Some(3), Some(&dict)).to_package(),
        ))
    };
    assert_eq!(answer(&fresh), read("handshake_server_dict"));
    assert_eq!(answer(&cached), read("handshake_server_dict_cached"));
    assert_eq!(
        Bytes::from(encode(&HandshakeResponse::refused().to_package())),
        read("handshake_server_error_500")
    );
    assert_eq!(
        Bytes::from(encode(&HandshakeResponse::old_client().to_package())),
        read("handshake_server_old_client_501")
    );
    // pinus pushes a route of the dictionary by its code, others by name: gatekit's `compress`.
    let pushed = |n: &str| match decode_one(n, &read(n)) {
        Package::Data(b) => Message::decode(b).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        pushed("pinus_push_dict").route(),
        Some(&dict.compress("onChat"))
    );
    assert_eq!(
        pushed("pinus_push_plain").route(),
        Some(&dict.compress("onKick"))
    );
    assert_eq!(PackageType::Kick.as_u8(), 5);
}
