//! The shared corpus in `corpus/` (see `corpus/README.md`), replayed by `cargo test`:
//!
//! - `native/golden/*.bin`: one canonical frame per packet kind; each decodes to one packet and
//!   re-encodes to the same bytes, and their hex is snapshotted (`snapshots/corpus__golden_hex.snap`)
//!   so that any change of wire bytes shows up in review.
//! - `native/malformed/*.bin` + `*.err`: bad input and the exact `Display` of the first error a
//!   fresh decoder must give on it.
//! - every `.bin` under `native/` and `regressions/` goes through the checks of the fuzz targets
//!   (`fuzz/src/lib.rs`, compiled in here as a module): no panic, no loop, the same results whole
//!   and in 1-byte chunks.
//! - nothing else: a file the replay cannot classify (`classify_corpus`) fails the tests, naming it,
//!   rather than being skipped.
//!
//! The golden and malformed files are written by the generator at the end of this file, never by
//! hand: `GATEKIT_REGENERATE_CORPUS=1 cargo test -p gatekit-codec --test corpus` rewrites them;
//! without the variable, a test checks that the files on disk are what the generator would write.

use bytes::{Bytes, BytesMut};
use gatekit_codec::mqtt::{MqttLimits, Role};
use gatekit_codec::parsers::put_varint;
use gatekit_codec::{
    Close, CloseCode, DecodeError, Field, FrameError, Handshake, NativeCodec, Notify, Oversize,
    Packet, PacketError, Push, Request, Response, Route, Status, Text, Topic, Welcome,
    PROTOCOL_VERSION,
};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// The fuzz targets' checks, shared so the corpus is replayed through the same code.
#[allow(dead_code)]
#[path = "../../fuzz/src/lib.rs"]
mod fuzz_checks;

const REGENERATE: &str = "GATEKIT_REGENERATE_CORPUS";

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus")
}

fn golden_dir() -> PathBuf {
    corpus_dir().join("native/golden")
}

fn malformed_dir() -> PathBuf {
    corpus_dir().join("native/malformed")
}

/// The files of `dir` ending in `.ext`, as (file stem, contents), sorted by name.
fn files_with_ext(dir: &Path, ext: &str) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == ext) {
            let stem = path.file_stem().unwrap().to_str().unwrap().to_owned();
            out.insert(stem, fs::read(&path).unwrap());
        }
    }
    out
}

/// The fuzz targets (`fuzz/Cargo.toml`); a regression's name starts with one of them and `-`.
const FUZZ_TARGETS: [&str; 9] = [
    "native_decode",
    "native_roundtrip",
    "framing",
    "mqtt_decode",
    "mqtt_roundtrip",
    "pomelo_decode",
    "pomelo_roundtrip",
    "websocket_frame",
    "websocket_upgrade",
];

/// What the replay may find under `corpus/`; anything else is refused, not skipped.
const CORPUS_RULES: &str = "allowed under corpus/: README.md (in any of its folders), \
    native/golden/<name>.bin, native/malformed/<name>.bin with its <name>.err (both or neither), \
    mqtt/golden/<name>.bin, websocket/golden/<name>.bin, pomelo/golden/<name>.bin with its <name>.json (both or neither), \
    regressions/<target>-<name>.bin with <target> one of native_decode, native_roundtrip, framing, \
    mqtt_decode, mqtt_roundtrip, pomelo_decode, pomelo_roundtrip";

/// The files of a corpus directory, by kind, each list sorted.
#[derive(Debug, Default)]
struct Corpus {
    golden: Vec<PathBuf>,
    /// The `.bin` of each malformed pair.
    malformed: Vec<PathBuf>,
    regressions: Vec<PathBuf>,
    /// The `.bin` of each pomelo golden pair (written by `peers/pomelo/golden.js`; their
    /// contents are checked by `pomelo_peers.rs`).
    pomelo: Vec<PathBuf>,
    /// Real MQTT clients' packets (`mqtt/golden/`, replayed in detail by `mqtt_peers.rs`).
    mqtt_golden: Vec<PathBuf>,
}

impl Corpus {
    /// Every `.bin` file: golden, malformed and regressions.
    fn bins(&self) -> impl Iterator<Item = &PathBuf> {
        self.golden
            .iter()
            .chain(&self.malformed)
            .chain(&self.regressions)
            .chain(&self.pomelo)
            .chain(&self.mqtt_golden)
    }
}

/// Sorts every file under `dir` into its kind (see `CORPUS_RULES`). Fails with one line per file
/// or folder that fits no rule, and per malformed `.bin` or `.err` without its partner.
fn classify_corpus(dir: &Path) -> Result<Corpus, Vec<String>> {
    fn walk(dir: &Path, rel: &Path, out: &mut Vec<(PathBuf, bool)>) {
        let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let entry = entry.unwrap();
            let rel = rel.join(entry.file_name());
            let is_dir = entry.file_type().unwrap().is_dir();
            if is_dir {
                walk(&entry.path(), &rel, out);
            }
            out.push((rel, is_dir));
        }
    }
    let mut entries = Vec::new();
    walk(dir, Path::new(""), &mut entries);
    entries.sort();

    let mut corpus = Corpus::default();
    let mut malformed_err = Vec::new();
    let mut pomelo_json = Vec::new();
    let mut problems = Vec::new();
    for (rel, is_dir) in entries {
        let Some(text) = rel.to_str() else {
            problems.push(format!("{}: name is not UTF-8", rel.display()));
            continue;
        };
        let parts: Vec<&str> = text.split(std::path::MAIN_SEPARATOR).collect();
        let ok = match (is_dir, parts.as_slice()) {
            (
                true,
                ["native" | "regressions" | "pomelo" | "mqtt"]
                | ["native", "golden" | "malformed"]
                | ["pomelo", "golden"]
                | ["mqtt", "golden"]
                | ["websocket"]
                | ["websocket", "golden"],
            ) => true,
            (true, _) => false,
            (false, [.., "README.md"]) => true,
            (false, ["native", "golden", f]) if is_named(f, ".bin") => {
                corpus.golden.push(dir.join(&rel));
                true
            }
            (false, ["native", "malformed", f]) if is_named(f, ".bin") => {
                corpus.malformed.push(dir.join(&rel));
                true
            }
            (false, ["native", "malformed", f]) if is_named(f, ".err") => {
                malformed_err.push(dir.join(&rel));
                true
            }
            (false, ["mqtt", "golden", f]) if is_named(f, ".bin") => {
                corpus.mqtt_golden.push(dir.join(&rel));
                true
            }
            (false, ["pomelo", "golden", f]) if is_named(f, ".bin") => {
                corpus.pomelo.push(dir.join(&rel));
                true
            }
            (false, ["pomelo", "golden", f]) if is_named(f, ".json") => {
                pomelo_json.push(dir.join(&rel));
                true
            }
            // Checked by websocket_corpus.rs and websocket_fuzz.rs.
            (false, ["websocket", "golden", f]) if is_named(f, ".bin") => true,
            (false, ["regressions", f]) if is_regression(f) => {
                corpus.regressions.push(dir.join(&rel));
                true
            }
            (false, _) => false,
        };
        if !ok {
            let kind = if is_dir { "folder" } else { "file" };
            problems.push(format!(
                "{}: unexpected {kind} in the corpus ({CORPUS_RULES})",
                dir.join(&rel).display()
            ));
        }
    }
    let bins: Vec<PathBuf> = corpus
        .malformed
        .iter()
        .map(|p| p.with_extension(""))
        .collect();
    let errs: Vec<PathBuf> = malformed_err.iter().map(|p| p.with_extension("")).collect();
    for stem in bins.iter().filter(|s| !errs.contains(s)) {
        problems.push(format!(
            "{}.bin: malformed input without its .err ({CORPUS_RULES})",
            stem.display()
        ));
    }
    for stem in errs.iter().filter(|s| !bins.contains(s)) {
        problems.push(format!(
            "{}.err: expected error without its .bin ({CORPUS_RULES})",
            stem.display()
        ));
    }
    let bins: Vec<PathBuf> = corpus.pomelo.iter().map(|p| p.with_extension("")).collect();
    let jsons: Vec<PathBuf> = pomelo_json.iter().map(|p| p.with_extension("")).collect();
    for stem in bins.iter().filter(|s| !jsons.contains(s)) {
        problems.push(format!(
            "{}.bin: pomelo golden vector without its .json ({CORPUS_RULES})",
            stem.display()
        ));
    }
    for stem in jsons.iter().filter(|s| !bins.contains(s)) {
        problems.push(format!(
            "{}.json: pomelo golden description without its .bin ({CORPUS_RULES})",
            stem.display()
        ));
    }
    if problems.is_empty() {
        Ok(corpus)
    } else {
        Err(problems)
    }
}

/// `file` is `<something>.ext`, with a non-empty `<something>`.
fn is_named(file: &str, ext: &str) -> bool {
    file.strip_suffix(ext).is_some_and(|stem| !stem.is_empty())
}

/// `file` is `<target>-<name>.bin`, `<target>` a fuzz target and `<name>` not empty.
fn is_regression(file: &str) -> bool {
    FUZZ_TARGETS.iter().any(|target| {
        file.strip_prefix(target)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|name| is_named(name, ".bin"))
    })
}

/// The repository's corpus, classified; panics naming every file that fits no rule.
fn corpus() -> Corpus {
    classify_corpus(&corpus_dir()).unwrap_or_else(|problems| {
        panic!(
            "corpus/ holds files the replay cannot classify:\n{}",
            problems.join("\n")
        )
    })
}

fn hex(bytes: &[u8]) -> String {
    let parts: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    parts.join(" ")
}

/// The first error a fresh default decoder gives on `wire`: `decode` until an error or `Ok(None)`,
/// then `decode_eof`.
fn first_error(wire: &[u8]) -> Option<DecodeError> {
    let mut codec = NativeCodec::default();
    let mut src = BytesMut::from(wire);
    for _ in 0..=wire.len() {
        match codec.decode(&mut src) {
            Ok(Some(_)) => continue,
            Ok(None) => break,
            Err(e) => return Some(e),
        }
    }
    for _ in 0..=wire.len() {
        match codec.decode_eof(&mut src) {
            Ok(Some(_)) => continue,
            Ok(None) => return None,
            Err(e) => return Some(e),
        }
    }
    panic!("the decoder loops on {}", hex(wire));
}

/// (a) Each golden file is exactly one packet, which re-encodes to the same bytes.
#[test]
fn golden_files_decode_to_one_packet_and_reencode_identically() {
    let files = files_with_ext(&golden_dir(), "bin");
    assert!(!files.is_empty(), "no golden files");
    for (name, wire) in &files {
        let mut codec = NativeCodec::default();
        let mut src = BytesMut::from(&wire[..]);
        let packet = codec
            .decode_eof(&mut src)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .unwrap_or_else(|| panic!("{name}: no packet"));
        assert!(src.is_empty(), "{name}: {} bytes left", src.len());
        assert_eq!(codec.decode_eof(&mut src), Ok(None), "{name}");
        let mut again = BytesMut::new();
        codec.encode(&packet, &mut again).unwrap();
        assert_eq!(hex(&again), hex(wire), "{name}: {packet:?}");
        fuzz_checks::native_roundtrip(&packet);
    }
}

/// (b) Each malformed file makes a fresh decoder fail with the text of its `.err` file.
#[test]
fn malformed_files_give_their_error() {
    let bins = files_with_ext(&malformed_dir(), "bin");
    let errs = files_with_ext(&malformed_dir(), "err");
    assert!(!bins.is_empty(), "no malformed files");
    assert_eq!(
        bins.keys().collect::<Vec<_>>(),
        errs.keys().collect::<Vec<_>>(),
        "every .bin needs its .err and the other way round"
    );
    for (name, wire) in &bins {
        let expected = String::from_utf8(errs[name].clone()).unwrap();
        let got = first_error(wire).unwrap_or_else(|| panic!("{name}: no error"));
        assert_eq!(got.to_string(), expected, "{name}: {got:?}");
    }
}

/// (c) Every corpus file, fuzz finds included, through the `native_decode` check, and decoded
/// whole and one byte at a time to the same packets and errors (oversized frames fatal or skipped).
#[test]
fn corpus_replays_whole_and_bytewise() {
    let corpus = corpus();
    assert!(!corpus.golden.is_empty() && !corpus.malformed.is_empty());
    let mut failures = Vec::new();
    for path in corpus.bins() {
        let data = fs::read(path).unwrap();
        let replay = catch_unwind(AssertUnwindSafe(|| {
            fuzz_checks::native_decode(&data);
            fuzz_checks::pomelo::pomelo_decode(&data);
            fuzz_checks::mqtt::mqtt_decode(&data);
            for role in [Role::Server, Role::Client] {
                let limits = MqttLimits::default();
                let whole =
                    fuzz_checks::mqtt::mqtt_decode_all(&data, data.len().max(1), role, limits);
                let bytewise = fuzz_checks::mqtt::mqtt_decode_all(&data, 1, role, limits);
                assert_eq!(whole, bytewise, "MQTT, {role}");
            }
            for oversize in [Oversize::Fail, Oversize::Skip] {
                let whole = fuzz_checks::decode_all(&data, data.len().max(1), oversize);
                let bytewise = fuzz_checks::decode_all(&data, 1, oversize);
                assert_eq!(whole, bytewise, "{oversize:?}");
            }
            replay_typed_regression(path, &data);
        }));
        if replay.is_err() {
            failures.push(path.display().to_string());
        }
    }
    assert!(failures.is_empty(), "panicked on {failures:#?}");
}

/// Nothing in `corpus/` escapes the replay: every file is of a kind the tests above read.
#[test]
fn corpus_holds_only_classifiable_files() {
    let corpus = corpus();
    assert!(!corpus.golden.is_empty(), "no golden files");
}

/// A scratch directory under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "gatekit-corpus-{name}-{}-{nanos}",
            std::process::id()
        ));
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, rel: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, bytes).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The classifier accepts a corpus of every allowed kind, and refuses, naming it, each file that
/// the replay would otherwise skip: a regression without `.bin` or with an unknown target, a file
/// of the wrong kind or in a folder of its own, a malformed `.bin` or `.err` without its partner.
#[test]
fn classifier_refuses_what_it_cannot_classify() {
    let tmp = TempDir::new("classify");
    tmp.write("README.md", b"");
    tmp.write("regressions/README.md", b"");
    let golden = tmp.write("native/golden/ping.bin", &[1, 7]);
    let malformed = tmp.write("native/malformed/empty_frame.bin", &[0]);
    tmp.write("native/malformed/empty_frame.err", b"empty frame");
    let regression = tmp.write("regressions/framing-varint.bin", &[0]);
    let mqtt = tmp.write("mqtt/golden/paho_v311-10-c-pingreq.bin", &[0xc0, 0]);
    tmp.write("mqtt/golden/README.md", b"");
    let pomelo = tmp.write("pomelo/golden/heartbeat.bin", &[3, 0, 0, 0]);
    tmp.write("pomelo/golden/heartbeat.json", b"{}");
    tmp.write("pomelo/README.md", b"");
    let corpus = classify_corpus(&tmp.0).expect("a valid corpus");
    assert_eq!(corpus.pomelo, [pomelo]);
    assert_eq!(corpus.mqtt_golden, [mqtt]);
    assert_eq!(corpus.golden, [golden]);
    assert_eq!(corpus.malformed, [malformed]);
    assert_eq!(corpus.regressions, [regression]);

    for bad in [
        "regressions/framing-varint",
        "regressions/framing-varint.txt",
        "regressions/framming-varint.bin",
        "regressions/framing-.bin",
        "regressions/crash-0123abcd",
        "regressions/new/framing-x.bin",
        "native/golden/ping.err",
        "native/golden/README.txt",
        "native/other/ping.bin",
        "native/ping.bin",
        "mqtt/ping.bin",
        "mqtt/other/ping.bin",
        "mqtt/golden/ping.err",
        "pomelo/heartbeat.bin",
        "pomelo/other/heartbeat.bin",
        "pomelo/golden/heartbeat.err",
        "stray.bin",
    ] {
        let path = tmp.write(bad, &[0]);
        let problems = classify_corpus(&tmp.0).expect_err(bad);
        let named = path.display().to_string();
        assert!(
            problems.iter().any(|p| p.starts_with(&named)
                && p.contains("unexpected")
                && p.contains("allowed under corpus/")),
            "{bad}: {problems:#?}"
        );
        if path.parent().unwrap().read_dir().unwrap().count() == 1 {
            fs::remove_dir_all(path.parent().unwrap()).unwrap();
        } else {
            fs::remove_file(&path).unwrap();
        }
        classify_corpus(&tmp.0).unwrap_or_else(|p| panic!("after removing {bad}: {p:#?}"));
    }

    for (bad, partner_missing) in [
        ("native/malformed/lonely.bin", ".err"),
        ("native/malformed/lonely.err", ".bin"),
        ("pomelo/golden/lonely.bin", ".json"),
        ("pomelo/golden/lonely.json", ".bin"),
    ] {
        let path = tmp.write(bad, &[0]);
        let problems = classify_corpus(&tmp.0).expect_err(bad);
        assert_eq!(problems.len(), 1, "{bad}: {problems:#?}");
        assert!(
            problems[0].starts_with(&path.display().to_string())
                && problems[0].contains(&format!("without its {partner_missing}")),
            "{bad}: {problems:#?}"
        );
        fs::remove_file(&path).unwrap();
    }
    classify_corpus(&tmp.0).expect("a valid corpus again");
}

/// A fuzz find of a typed target (`framing-*.bin`, `native_roundtrip-*.bin`) holds `Arbitrary`
/// input: with the `arbitrary` feature, replay it through that target's check too.
#[cfg(feature = "arbitrary")]
fn replay_typed_regression(path: &Path, data: &[u8]) {
    use arbitrary::{Arbitrary, Unstructured};
    let name = path.file_name().unwrap().to_str().unwrap();
    if name.starts_with("framing-") {
        type Input<'a> = (gatekit_codec::FramingBuilder, &'a [u8]);
        if let Ok((builder, bytes)) = Input::arbitrary_take_rest(Unstructured::new(data)) {
            fuzz_checks::framing(builder, bytes);
        }
    } else if name.starts_with("native_roundtrip-") {
        if let Ok(packet) = Packet::arbitrary_take_rest(Unstructured::new(data)) {
            fuzz_checks::native_roundtrip(&packet);
        }
    } else if name.starts_with("mqtt_roundtrip-") {
        if let Ok(packet) =
            gatekit_codec::mqtt::Packet::arbitrary_take_rest(Unstructured::new(data))
        {
            fuzz_checks::mqtt::mqtt_roundtrip(&packet);
        }
    } else if name.starts_with("pomelo_roundtrip-") {
        use gatekit_codec::pomelo::{Message, Package};
        if let Ok((package, message)) =
            <(Package, Message)>::arbitrary_take_rest(Unstructured::new(data))
        {
            fuzz_checks::pomelo::pomelo_roundtrip(&package, &message);
        }
    }
}

#[cfg(not(feature = "arbitrary"))]
fn replay_typed_regression(_: &Path, _: &[u8]) {}

/// (d) The wire bytes of the golden files, for review.
#[test]
fn golden_hex_snapshot() {
    let mut listing = String::new();
    for (name, wire) in files_with_ext(&golden_dir(), "bin") {
        writeln!(listing, "{name}: {}", hex(&wire)).unwrap();
    }
    insta::assert_snapshot!("golden_hex", listing);
}

// ---------------------------------------------------------------------------------------------
// (e) The generator.

/// One canonical packet per kind (the examples of `docs/PROTOCOL.md`), plus a few variants.
fn golden_packets() -> Vec<(&'static str, Packet)> {
    let id = |n: u32| n.try_into().unwrap();
    vec![
        (
            "handshake",
            Packet::Handshake(Handshake {
                version: PROTOCOL_VERSION,
                heartbeat_secs: 30,
                token: Bytes::from_static(b"tok"),
            }),
        ),
        (
            "welcome",
            Packet::Welcome(Welcome {
                version: PROTOCOL_VERSION,
                heartbeat_secs: 30,
                max_frame_length: 65_535,
                session_id: Text::from_static("s-1"),
            }),
        ),
        (
            "request",
            Request::new(id(7), Route::from_static("chat/send"), &b"{}"[..]).into(),
        ),
        (
            "request_empty_body",
            Request::new(id(1), Route::from_static("room/join"), Bytes::new()).into(),
        ),
        (
            "response",
            Packet::Response(Response {
                id: id(7),
                status: Status::Ok,
                body: Bytes::from_static(b"ok"),
            }),
        ),
        (
            "notify",
            Notify::new(Route::from_static("chat/typing"), Bytes::new()).into(),
        ),
        (
            "push",
            Push::new(Topic::try_from("room/7").unwrap(), &b"hi"[..]).into(),
        ),
        ("ping", Packet::Ping),
        ("pong", Packet::Pong),
        (
            "close",
            Packet::Close(Close {
                code: CloseCode::Kicked,
                reason: Text::from_static("bye"),
            }),
        ),
        (
            "close_refusal_server_full",
            Packet::Close(Close {
                code: CloseCode::ServerFull,
                reason: Text::default(),
            }),
        ),
    ]
}

fn encode(packet: &Packet) -> Vec<u8> {
    let mut wire = BytesMut::new();
    NativeCodec::default().encode(packet, &mut wire).unwrap();
    wire.to_vec()
}

/// A frame: the varint length of `parts` joined, then the parts.
fn framed(parts: &[&[u8]]) -> Vec<u8> {
    let frame = parts.concat();
    let mut wire = BytesMut::new();
    put_varint(&mut wire, frame.len().try_into().unwrap());
    wire.extend_from_slice(&frame);
    wire.to_vec()
}

fn packet_error(e: PacketError) -> DecodeError {
    DecodeError::Packet(e)
}

fn frame_error(e: FrameError) -> DecodeError {
    DecodeError::Frame(e)
}

/// Bad input and the error a fresh default decoder must give first. Offsets count from the kind
/// byte; the errors are written out here, not taken from the decoder.
fn malformed_cases() -> Vec<(&'static str, Vec<u8>, DecodeError)> {
    use PacketError::*;
    const ID7: &[u8] = &[0, 0, 0, 7];
    let request = encode(&golden_packets()[2].1);
    let welcome_head: &[u8] = &[0x02, PROTOCOL_VERSION, 0, 30, 0, 0, 0xff, 0xff];
    vec![
        // Packet kind and frame shape.
        (
            "unknown_kind",
            framed(&[&[0x0a]]),
            packet_error(UnknownKind { kind: 0x0a }),
        ),
        (
            "unknown_kind_after_ping",
            [encode(&Packet::Ping), framed(&[&[0xff, 1, 2]])].concat(),
            packet_error(UnknownKind { kind: 0xff }),
        ),
        ("empty_frame", framed(&[]), packet_error(EmptyFrame)),
        (
            "ping_trailing_bytes",
            framed(&[&[0x07, 0x00]]),
            packet_error(TrailingBytes {
                kind: "PING",
                offset: 1,
                extra: 1,
            }),
        ),
        (
            "pong_trailing_bytes",
            framed(&[&[0x08], b"hi"]),
            packet_error(TrailingBytes {
                kind: "PONG",
                offset: 1,
                extra: 2,
            }),
        ),
        // Message ids.
        (
            "zero_message_id",
            framed(&[&[0x03, 0, 0, 0, 0, 9], b"chat/send{}"]),
            packet_error(ZeroMessageId { offset: 1 }),
        ),
        (
            "response_zero_message_id",
            framed(&[&[0x04, 0, 0, 0, 0, 0], b"ok"]),
            packet_error(ZeroMessageId { offset: 1 }),
        ),
        (
            "message_id_truncated",
            framed(&[&[0x03, 0, 0]]),
            packet_error(Truncated {
                field: Field::MessageId,
                offset: 1,
                needed: 4,
                available: 2,
            }),
        ),
        // Routes and topics.
        (
            "route_not_utf8",
            framed(&[&[0x03], ID7, &[9], b"chat/s\xffnd"]),
            packet_error(InvalidUtf8 {
                field: Field::Route,
                offset: 5,
                bad_at: 12,
            }),
        ),
        (
            "route_without_slash",
            framed(&[&[0x03], ID7, &[8], b"chatsend{}"]),
            packet_error(MalformedRoute {
                route: "chatsend".into(),
                offset: 5,
            }),
        ),
        (
            "route_two_slashes",
            framed(&[&[0x03], ID7, &[11], b"chat/send/x"]),
            packet_error(MalformedRoute {
                route: "chat/send/x".into(),
                offset: 5,
            }),
        ),
        (
            "notify_route_without_module",
            framed(&[&[0x05, 5], b"/send"]),
            packet_error(MalformedRoute {
                route: "/send".into(),
                offset: 1,
            }),
        ),
        (
            "route_empty",
            framed(&[&[0x03], ID7, &[0], b"{}"]),
            packet_error(EmptyField {
                field: Field::Route,
                offset: 5,
            }),
        ),
        (
            "route_truncated",
            framed(&[&[0x03], ID7, &[9], b"chat"]),
            packet_error(Truncated {
                field: Field::Route,
                offset: 5,
                needed: 10,
                available: 5,
            }),
        ),
        (
            "topic_empty",
            framed(&[&[0x06, 0], b"hi"]),
            packet_error(EmptyField {
                field: Field::Topic,
                offset: 1,
            }),
        ),
        (
            "topic_not_utf8",
            framed(&[&[0x06, 2, 0xff, b'a']]),
            packet_error(InvalidUtf8 {
                field: Field::Topic,
                offset: 1,
                bad_at: 2,
            }),
        ),
        // Status and close codes.
        (
            "unknown_status",
            framed(&[&[0x04], ID7, &[6]]),
            packet_error(UnknownStatus {
                value: 6,
                offset: 5,
            }),
        ),
        (
            "status_truncated",
            framed(&[&[0x04], ID7]),
            packet_error(Truncated {
                field: Field::Status,
                offset: 5,
                needed: 1,
                available: 0,
            }),
        ),
        (
            "unknown_close_code",
            framed(&[&[0x09, 13], b"bye"]),
            packet_error(UnknownCloseCode {
                value: 13,
                offset: 1,
            }),
        ),
        (
            "close_code_missing",
            framed(&[&[0x09]]),
            packet_error(Truncated {
                field: Field::CloseCode,
                offset: 1,
                needed: 1,
                available: 0,
            }),
        ),
        // Field limits and text.
        (
            "reason_too_long",
            framed(&[&[0x09, 0], &[b'x'; 256]]),
            packet_error(TooLong {
                field: Field::Reason,
                offset: 2,
                len: 256,
                max: 255,
            }),
        ),
        (
            "reason_not_utf8",
            framed(&[&[0x09, 5], b"bye\xff"]),
            packet_error(InvalidUtf8 {
                field: Field::Reason,
                offset: 2,
                bad_at: 5,
            }),
        ),
        (
            "session_id_too_long",
            framed(&[welcome_head, &[b's'; 65]]),
            packet_error(TooLong {
                field: Field::SessionId,
                offset: 8,
                len: 65,
                max: 64,
            }),
        ),
        (
            "session_id_empty",
            framed(&[welcome_head]),
            packet_error(EmptyField {
                field: Field::SessionId,
                offset: 8,
            }),
        ),
        (
            "session_id_not_utf8",
            framed(&[welcome_head, b"s-\xc3"]),
            packet_error(InvalidUtf8 {
                field: Field::SessionId,
                offset: 8,
                bad_at: 10,
            }),
        ),
        (
            "welcome_max_frame_length_truncated",
            framed(&[&welcome_head[..6]]),
            packet_error(Truncated {
                field: Field::MaxFrameLength,
                offset: 4,
                needed: 4,
                available: 2,
            }),
        ),
        (
            "token_too_long",
            framed(&[&[0x01, PROTOCOL_VERSION, 0, 30], &[b't'; 4097]]),
            packet_error(TooLong {
                field: Field::Token,
                offset: 4,
                len: 4097,
                max: 4096,
            }),
        ),
        (
            "handshake_heartbeat_truncated",
            framed(&[&[0x01, PROTOCOL_VERSION, 0]]),
            packet_error(Truncated {
                field: Field::Heartbeat,
                offset: 2,
                needed: 2,
                available: 1,
            }),
        ),
        // Framing (all fatal).
        (
            "length_oversize",
            vec![0x80, 0x80, 0x04, 0x07],
            frame_error(FrameError::TooLarge {
                len: 65_536,
                max: 65_535,
            }),
        ),
        (
            // Refused at its third byte: the prefix already means at least 2 MiB.
            "varint_prefix_proves_too_large",
            vec![0x80, 0x80, 0x80, 0x80, 0x01, 0x07],
            frame_error(FrameError::TooLargePrefix {
                at_least: 2_097_152,
                prefix_bytes: 3,
                max: 65_535,
            }),
        ),
        (
            "length_prefix_ff_ff_ff",
            vec![0xff, 0xff, 0xff],
            frame_error(FrameError::TooLargePrefix {
                at_least: 4_194_303,
                prefix_bytes: 3,
                max: 65_535,
            }),
        ),
        (
            "varint_not_minimal",
            vec![0x81, 0x00, 0x07],
            frame_error(FrameError::VarintNotMinimal { bytes: 2, value: 1 }),
        ),
        (
            "eof_mid_frame",
            request[..request.len() - 1].to_vec(),
            frame_error(FrameError::UnexpectedEof {
                buffered: request.len() - 1,
                needed: request.len(),
            }),
        ),
        (
            "eof_mid_length_prefix",
            vec![0x80],
            frame_error(FrameError::UnexpectedEof {
                buffered: 1,
                needed: 2,
            }),
        ),
    ]
}

/// Every generated file, by path relative to `corpus/`, after checking that each golden packet
/// round-trips and each malformed input gives its error.
fn generated_files() -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    for (name, packet) in golden_packets() {
        let wire = encode(&packet);
        let decoded = NativeCodec::default()
            .decode_eof(&mut BytesMut::from(&wire[..]))
            .unwrap();
        assert_eq!(decoded, Some(packet), "{name}");
        files.insert(format!("native/golden/{name}.bin").into(), wire);
    }
    for (name, wire, error) in malformed_cases() {
        assert_eq!(first_error(&wire), Some(error.clone()), "{name}");
        let path = format!("native/malformed/{name}");
        files.insert(format!("{path}.bin").into(), wire);
        files.insert(format!("{path}.err").into(), error.to_string().into_bytes());
    }
    files
}

/// The `.bin` and `.err` files now in `native/golden/` and `native/malformed/`.
fn files_on_disk() -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    for sub in ["native/golden", "native/malformed"] {
        let Ok(entries) = fs::read_dir(corpus_dir().join(sub)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "bin" || e == "err") {
                let rel = Path::new(sub).join(path.file_name().unwrap());
                files.insert(rel, fs::read(&path).unwrap());
            }
        }
    }
    files
}

/// (e) With `GATEKIT_REGENERATE_CORPUS=1`, writes the golden and malformed files (and removes stale
/// ones); otherwise checks that the files on disk are exactly what would be written.
#[test]
fn corpus_files_match_generator() {
    let generated = generated_files();
    let on_disk = files_on_disk();
    if std::env::var(REGENERATE).as_deref() == Ok("1") {
        for path in on_disk.keys().filter(|p| !generated.contains_key(*p)) {
            fs::remove_file(corpus_dir().join(path)).unwrap();
        }
        for (path, bytes) in &generated {
            let path = corpus_dir().join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, bytes).unwrap();
        }
        return;
    }
    let hint = format!("regenerate with {REGENERATE}=1 cargo test -p gatekit-codec --test corpus");
    assert_eq!(
        on_disk.keys().collect::<Vec<_>>(),
        generated.keys().collect::<Vec<_>>(),
        "corpus files differ from the generator's; {hint}"
    );
    for (path, bytes) in &generated {
        assert!(
            on_disk[path] == *bytes,
            "{} differs from the generator's; {hint}",
            path.display()
        );
    }
}
