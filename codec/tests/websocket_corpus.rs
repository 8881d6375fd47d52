//! `corpus/websocket/golden/` (see its README.md): real clients' upgrade requests and frames
//! (Chromium, python-websockets), the answers they accepted, and the examples of RFC 6455. Each
//! file is `<source>-<nn>-<c|s>-<kind>.bin`, `c` sent by the client, `s` by the server:
//!
//! - `upgrade`: a request `parse_upgrade_request` accepts, all of it the head;
//! - `response`: a `101` that `parse_upgrade_response` accepts for the key of the same source's
//!   request, byte for byte what `upgrade_response` writes;
//! - a frame kind (`text`, `binary`, `continuation`, `ping`, `pong`, `close`): exactly one whole
//!   frame of that opcode, decoded in the receiving role, whose header re-encodes to its bytes;
//!   its unmasked payload is UTF-8 for text, a valid Close payload for close.
//!
//! What each decodes to is snapshotted (`snapshots/websocket_corpus__golden.snap`), and any other
//! file in the folder fails the test. The fuzz checks replay the same files (`websocket_fuzz.rs`).

use gatekit_codec::websocket::{
    accept_key, apply_mask, decode_header, parse_close_payload, parse_upgrade_request,
    parse_upgrade_response, upgrade_response, Opcode, Role, UpgradeLimits,
};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

fn golden() -> BTreeMap<String, Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/websocket/golden");
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name == "README.md" {
            continue;
        }
        let stem = name
            .strip_suffix(".bin")
            .unwrap_or_else(|| panic!("{name}: not a .bin file"));
        files.insert(stem.to_owned(), std::fs::read(&path).unwrap());
    }
    files
}

/// (source, side, kind) of `<source>-<nn>-<c|s>-<kind>`.
fn parse_name(stem: &str) -> (&str, char, &str) {
    let parts: Vec<&str> = stem.rsplitn(4, '-').collect();
    let [kind, side, nn, source] = parts[..] else {
        panic!("{stem}: not <source>-<nn>-<c|s>-<kind>")
    };
    assert!(
        nn.len() == 2 && nn.bytes().all(|b| b.is_ascii_digit()),
        "{stem}"
    );
    let side = match side {
        "c" => 'c',
        "s" => 's',
        _ => panic!("{stem}: side must be c or s"),
    };
    (source, side, kind)
}

fn opcode_of(kind: &str) -> Option<Opcode> {
    Some(match kind {
        "continuation" => Opcode::Continuation,
        "text" => Opcode::Text,
        "binary" => Opcode::Binary,
        "close" => Opcode::Close,
        "ping" => Opcode::Ping,
        "pong" => Opcode::Pong,
        _ => return None,
    })
}

fn hex(bytes: &[u8]) -> String {
    let parts: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    parts.join(" ")
}

#[test]
fn golden_files_decode() {
    let files = golden();
    let limits = UpgradeLimits::default();
    let mut keys = BTreeMap::new();
    let mut out = String::new();
    // Requests first, so that each response is checked against its source's key.
    let mut ordered: Vec<_> = files.iter().collect();
    ordered.sort_by_key(|(stem, _)| parse_name(stem).2 != "upgrade");
    for (stem, bytes) in ordered {
        let (source, side, kind) = parse_name(stem);
        match kind {
            "upgrade" => {
                assert_eq!(side, 'c', "{stem}");
                let up = parse_upgrade_request(bytes, &limits)
                    .unwrap_or_else(|e| panic!("{stem}: {e}"))
                    .unwrap_or_else(|| panic!("{stem}: incomplete"));
                assert_eq!(up.header_len, bytes.len(), "{stem}");
                for cut in 0..bytes.len() {
                    assert_eq!(parse_upgrade_request(&bytes[..cut], &limits), Ok(None));
                }
                writeln!(
                    out,
                    "{stem}: path {:?} host {:?} origin {:?} protocols {:?} key {} accept {}",
                    up.path,
                    up.host,
                    up.origin,
                    up.protocols,
                    up.key,
                    accept_key(&up.key)
                )
                .unwrap();
                keys.insert(source.to_owned(), up);
            }
            "response" => {
                assert_eq!(side, 's', "{stem}");
                let up = &keys[source];
                let resp = parse_upgrade_response(bytes, &limits, &up.key)
                    .unwrap_or_else(|e| panic!("{stem}: {e}"))
                    .unwrap_or_else(|| panic!("{stem}: incomplete"));
                assert_eq!(resp.header_len, bytes.len(), "{stem}");
                let ours = upgrade_response(&up.key, resp.protocol.as_deref());
                assert_eq!(
                    &ours[..],
                    &bytes[..],
                    "{stem}: not what upgrade_response writes"
                );
                writeln!(out, "{stem}: 101, protocol {:?}", resp.protocol).unwrap();
            }
            kind => {
                let opcode = opcode_of(kind).unwrap_or_else(|| panic!("{stem}: unknown kind"));
                let role = if side == 'c' {
                    Role::Server
                } else {
                    Role::Client
                };
                let (header, len) = decode_header(bytes, role, 1 << 20)
                    .unwrap_or_else(|e| panic!("{stem}: {e}"))
                    .unwrap_or_else(|| panic!("{stem}: incomplete"));
                assert_eq!(header.opcode, opcode, "{stem}");
                assert_eq!(
                    len as u64 + header.payload_len,
                    bytes.len() as u64,
                    "{stem}"
                );
                let mut again = Vec::new();
                header.encode_to(&mut again);
                assert_eq!(again, &bytes[..len], "{stem}");
                let mut payload = bytes[len..].to_vec();
                if let Some(mask) = header.mask {
                    apply_mask(mask, 0, &mut payload);
                }
                let shown = match opcode {
                    Opcode::Close => format!("{:?}", parse_close_payload(&payload).unwrap()),
                    Opcode::Text => {
                        let text = std::str::from_utf8(&payload).expect("text is UTF-8");
                        if text.len() > 40 {
                            format!("{:?}... ({} bytes)", &text[..40], text.len())
                        } else {
                            format!("{text:?}")
                        }
                    }
                    _ if payload.len() > 16 => {
                        format!("{} ... ({} bytes)", hex(&payload[..16]), payload.len())
                    }
                    _ => hex(&payload),
                };
                writeln!(
                    out,
                    "{stem}: fin {} {:?} mask {:?} len {}: {shown}",
                    header.fin, header.opcode, header.mask, header.payload_len
                )
                .unwrap();
            }
        }
    }
    insta::assert_snapshot!("golden", out);
}
