//! Differential test against the live pomelo-protocol 0.1.6, both ways (`peers/pomelo/diff.js`):
//!
//! - gatekit encodes random messages and packages; pomelo-protocol decodes them to the same fields;
//! - pomelo-protocol encodes random messages; gatekit decodes them to the same fields and its own
//!   encoding of those fields is the same bytes;
//! - random route lists: gatekit's dictionary JSON, codes and `dictVersion` are those of pinus's
//!   numbering under V8 and Node's md5.
//!
//! Needs `node` and `peers/pomelo/node_modules` (`cd peers/pomelo && npm ci`). Without them it
//! prints a `skipped: ...` line on stderr and passes, unless `GATEKIT_REQUIRE_PEERS=1` (CI), which
//! turns the skip into a failure. The cases come from a fixed seed (`GATEKIT_DIFF_SEED` changes it)
//! and the run is bounded (a minute at most; a few seconds in practice).

use bytes::{Bytes, BytesMut};
use gatekit_codec::pomelo::{
    Dictionary, Message, MessageId, MessageKind, MessageRoute, Package, PomeloCodec,
};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(60);

fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../peers/pomelo")
}

/// `Ok(())` if the peer can run, else why not.
fn peer_available() -> Result<(), String> {
    let dir = peers_dir();
    match Command::new("node").arg("--version").output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => return Err(format!("`node --version` failed: {}", o.status)),
        Err(e) => return Err(format!("no `node` on PATH ({e})")),
    }
    let lib = dir.join("node_modules/pomelo-protocol/package.json");
    if !lib.exists() {
        return Err(format!(
            "{} is missing (run `npm ci` in peers/pomelo)",
            lib.display()
        ));
    }
    Ok(())
}

/// Runs the peer on `requests`, one answer per request; `None` (after printing why) if skipped.
fn run_peer(requests: &[Value]) -> Option<Vec<Value>> {
    if let Err(why) = peer_available() {
        if std::env::var("GATEKIT_REQUIRE_PEERS").as_deref() == Ok("1") {
            panic!("GATEKIT_REQUIRE_PEERS=1 but the pomelo peer cannot run: {why}");
        }
        // Straight to the process's stderr: libtest would swallow `eprintln!` of a passing test.
        let _ = writeln!(
            std::io::stderr(),
            "skipped: pomelo differential test against pomelo-protocol: {why}"
        );
        return None;
    }
    let mut child = Command::new("node")
        .arg("--no-deprecation")
        .arg("diff.js")
        .current_dir(peers_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node diff.js");
    let input: String = requests.iter().map(|r| format!("{r}\n")).collect();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        stdin.write_all(input.as_bytes()).expect("write to diff.js");
    });
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).map(|_| s)
    });
    let mut stderr = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("diff.js did not finish within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    writer.join().unwrap();
    let out = reader.join().unwrap().expect("read diff.js output");
    let err = err_reader.join().unwrap();
    assert!(status.success(), "diff.js failed ({status}):\n{err}");
    let answers: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(
        answers.len(),
        requests.len(),
        "one answer per request\n{err}"
    );
    Some(answers)
}

// -------------------------------------------------------------------------------------------------
// Random cases (SplitMix64: reproducible, no dependency)
// -------------------------------------------------------------------------------------------------

struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("GATEKIT_DIFF_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x9e37_79b9_7f4a_7c15);
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn char(&mut self) -> char {
        match self.below(10) {
            0..=5 => (b'a' + self.below(26) as u8) as char,
            6 => ['.', '"', '\\', '\n', '\u{1}', ' ', '/', '0'][self.below(8) as usize],
            7 => char::from_u32(0x80 + self.below(0x780) as u32).unwrap(),
            8 => char::from_u32(0x4e00 + self.below(0x100) as u32).unwrap(),
            _ => ['\u{ffff}', '\u{10000}', '\u{1f600}', 'é'][self.below(4) as usize],
        }
    }

    /// 1 to `max_bytes` bytes of text.
    fn text(&mut self, max_chars: u64, max_bytes: usize) -> String {
        let n = 1 + self.below(max_chars);
        let mut s = String::new();
        for _ in 0..n {
            let c = self.char();
            if s.len() + c.len_utf8() > max_bytes {
                break;
            }
            s.push(c);
        }
        if s.is_empty() {
            s.push('r');
        }
        s
    }

    fn bytes(&mut self) -> Vec<u8> {
        let n = match self.below(4) {
            0 => 0,
            1 | 2 => self.below(40),
            _ => self.below(3000),
        };
        (0..n).map(|_| self.next() as u8).collect()
    }

    /// Ids pomelo-protocol handles: 1 to 2^31 − 1, with the varint edges.
    fn id(&mut self) -> MessageId {
        const EDGES: [u32; 10] = [
            1,
            127,
            128,
            16_383,
            16_384,
            (1 << 21) - 1,
            1 << 21,
            (1 << 28) - 1,
            1 << 28,
            i32::MAX as u32,
        ];
        let v = match self.below(3) {
            0 => EDGES[self.below(EDGES.len() as u64) as usize],
            1 => 1 + self.below(1000) as u32,
            _ => 1 + self.below(i32::MAX as u64) as u32,
        };
        MessageId::new(v).unwrap()
    }

    fn route(&mut self) -> MessageRoute {
        if self.below(3) == 0 {
            MessageRoute::Code(self.next() as u16)
        } else {
            let max = if self.below(8) == 0 { 255 } else { 40 };
            MessageRoute::name(self.text(max as u64, max)).unwrap()
        }
    }

    fn message(&mut self) -> Message {
        let body = Bytes::from(self.bytes());
        let m = match self.below(4) {
            0 => Message::request(self.id(), self.route(), body),
            1 => Message::notify(self.route(), body),
            2 => Message::response(self.id(), body),
            _ => Message::push(self.route(), body),
        };
        m.with_gzip(self.below(5) == 0)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The message as pomelo-protocol's `Message.decode` shows it.
fn as_pomelo(m: &Message) -> Value {
    let (id, route, compressed) = match &m.kind {
        MessageKind::Request { id, route } => (id.get(), Some(route), route.is_compressed()),
        MessageKind::Notify { route } | MessageKind::Push { route } => {
            (0, Some(route), route.is_compressed())
        }
        MessageKind::Response { id } => (id.get(), None, false),
    };
    let route = match route {
        None => Value::Null,
        Some(MessageRoute::Code(c)) => json!(c),
        Some(MessageRoute::Name(t)) => json!(t.as_str()),
    };
    json!({
        "id": id,
        "type": m.message_type().as_u8(),
        "compressRoute": u8::from(compressed),
        "route": route,
        "gzip": u8::from(m.gzip),
        "body_hex": hex(&m.body),
    })
}

/// What to check of the peer's answer to one request.
type Check = Box<dyn Fn(&Value)>;

#[test]
fn gatekit_and_pomelo_protocol_agree_both_ways() {
    let mut rng = Rng::new();
    let codec = PomeloCodec::default();
    let mut requests = Vec::new();
    let mut expect: Vec<Check> = Vec::new();

    // gatekit encodes, pomelo-protocol decodes: messages alone and inside data packages.
    for _ in 0..300 {
        let m = rng.message();
        let bytes = m.to_bytes().unwrap();
        requests.push(json!({"op": "decode_message", "hex": hex(&bytes)}));
        let want = as_pomelo(&m);
        expect.push(Box::new(move |got| {
            assert_eq!(got, &want, "pomelo decodes gatekit's message")
        }));
        let mut wire = BytesMut::new();
        codec.encode_message(&m, &mut wire).unwrap();
        requests.push(json!({"op": "decode_package", "hex": hex(&wire)}));
        let body = hex(&bytes);
        expect.push(Box::new(move |got| {
            assert_eq!(
                got,
                &json!({"type": 4, "body_hex": body}),
                "pomelo decodes gatekit's package"
            )
        }));
    }
    for p in [
        Package::Handshake(Bytes::from_static(b"{\"sys\":{}}")),
        Package::HandshakeAck,
        Package::Heartbeat,
        Package::Kick(Bytes::from_static(b"{\"reason\":\"x\"}")),
        Package::Data(Bytes::new()),
    ] {
        let mut wire = BytesMut::new();
        codec.encode(&p, &mut wire).unwrap();
        requests.push(json!({"op": "decode_package", "hex": hex(&wire)}));
        // pomelo-protocol gives a null body for length 0.
        let body = (!p.body().is_empty()).then(|| hex(p.body()));
        let want = json!({"type": p.package_type().as_u8(), "body_hex": body});
        expect.push(Box::new(move |got| assert_eq!(got, &want, "{p:?}")));
    }

    // pomelo-protocol encodes, gatekit decodes and re-encodes to the same bytes.
    for _ in 0..300 {
        let m = rng.message();
        let mut req = as_pomelo(&m);
        req["op"] = json!("encode_message");
        requests.push(req);
        let codec = codec.clone();
        expect.push(Box::new(move |got| {
            let bytes = unhex(got["hex"].as_str().unwrap_or_else(|| panic!("{got}")));
            let decoded = Message::decode(Bytes::from(bytes.clone()))
                .unwrap_or_else(|e| panic!("{e}: {got}"));
            assert_eq!(decoded, m, "gatekit decodes pomelo's message");
            assert_eq!(m.to_bytes().unwrap(), bytes, "same bytes");
            let pkg = unhex(got["package_hex"].as_str().unwrap());
            let mut wire = BytesMut::from(&pkg[..]);
            let mut dec = PomeloCodec::default();
            assert_eq!(
                dec.decode_eof(&mut wire),
                Ok(Some(Package::Data(Bytes::from(bytes))))
            );
            let mut again = BytesMut::new();
            codec.encode_message(&m, &mut again).unwrap();
            assert_eq!(&again[..], &pkg[..], "same package");
        }));
    }

    // Dictionaries: pinus's numbering, V8's sort and JSON.stringify, Node's md5 + base64.
    for _ in 0..60 {
        let handlers: Vec<String> = (0..rng.below(12))
            .map(|_| {
                format!(
                    "{}.{}.{}",
                    rng.text(4, 12),
                    rng.text(4, 12),
                    rng.text(4, 12)
                )
            })
            .collect();
        let mut user: Vec<String> = (0..rng.below(6)).map(|_| rng.text(6, 30)).collect();
        if rng.below(3) == 0 {
            user.push(["7", "10", "0", "01", "4294967295"][rng.below(5) as usize].to_owned());
        }
        if let (Some(h), 0) = (handlers.first(), rng.below(3)) {
            user.push(h.clone()); // a route given twice
        }
        requests.push(json!({"op": "dict", "handlers": handlers, "user": user}));
        let d = Dictionary::new(handlers.clone(), user.clone()).unwrap();
        expect.push(Box::new(move |got| {
            assert_eq!(got["json"].as_str(), Some(d.json()), "dict JSON");
            assert_eq!(got["version"].as_str(), Some(d.version()), "dictVersion");
            for (route, code) in got["codes"].as_object().unwrap() {
                assert_eq!(d.code(route), code.as_u64().map(|c| c as u16), "{route}");
            }
        }));
    }

    let Some(answers) = run_peer(&requests) else {
        return;
    };
    for (i, ((req, got), check)) in requests.iter().zip(&answers).zip(&expect).enumerate() {
        if let Err(e) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(got))) {
            panic!("case {i}: {req}\n-> {got}\n{e:?}");
        }
    }
    eprintln!("pomelo differential test: {} cases agree", answers.len());
}

/// What pomelo-protocol does with what gatekit refuses, or cannot encode for it: pinned, so a
/// change in the peer shows up (docs/POMELO.md, "Where gatekit differs").
#[test]
fn pomelo_protocol_quirks_gatekit_refuses() {
    let requests = vec![
        // Ids of 2^31 and more: the encoder sizes the buffer with a signed shift (1 byte) and
        // writes 5, so the route and body are lost.
        json!({"op": "encode_message", "id": 2_147_483_648u64, "type": 0, "compressRoute": 0,
               "route": "a.b", "gzip": 0, "body_hex": "78"}),
        // ... and the decoder sums the groups in 32-bit signed arithmetic: u32::MAX reads as -1.
        json!({"op": "decode_message", "hex": "00ffffffff0f03612e6278"}),
        // Non-minimal id 0x80 0x00 = 0, accepted.
        json!({"op": "decode_message", "hex": "0080000161"}),
        // Message type 5 (flag 0a): no id, no route, the rest is the body.
        json!({"op": "decode_message", "hex": "0a7b7d"}),
        // Reserved flag bits are ignored (0x20 = request).
        json!({"op": "decode_message", "hex": "2001036162637b7d"}),
        // A truncated message throws.
        json!({"op": "decode_message", "hex": "0601"}),
        // A zero-length route is the empty string.
        json!({"op": "decode_message", "hex": "0200"}),
    ];
    let Some(got) = run_peer(&requests) else {
        return;
    };
    assert_eq!(got[0]["hex"], "00808080800803", "{}", got[0]);
    assert_eq!(got[1]["id"], -1, "{}", got[1]);
    assert_eq!((&got[2]["id"], &got[2]["route"]), (&json!(0), &json!("a")));
    assert_eq!(
        (&got[3]["type"], &got[3]["body_hex"]),
        (&json!(5), &json!("7b7d"))
    );
    assert_eq!((&got[4]["type"], &got[4]["id"]), (&json!(0), &json!(1)));
    assert!(got[5]["error"].is_string(), "{}", got[5]);
    assert_eq!(got[6]["route"], "", "{}", got[6]);
    // gatekit refuses each of the decoded ones.
    for hex_msg in [
        "00ffffffff0f03612e6278",
        "0080000161",
        "0a7b7d",
        "2001036162637b7d",
        "0601",
        "0200",
    ] {
        let bytes = Bytes::from(unhex(hex_msg));
        match hex_msg {
            // u32::MAX is a valid id for gatekit.
            "00ffffffff0f03612e6278" => assert!(Message::decode(bytes).is_ok()),
            _ => assert!(Message::decode(bytes).is_err(), "{hex_msg}"),
        }
    }
}
