//! The gate over TLS, WebSocket and WSS on loopback: the native protocol through each layer, and
//! every kind of bad input the issue names, each with its documented close (HTTP status,
//! WebSocket close code or TLS alert), none outliving the handshake deadline, and the good
//! connections beside them unaffected. Every test is bounded by `tokio::time::timeout`.

mod common;

use bytes::{Bytes, BytesMut};
use common::{Client, RecLearner};
use gatekit_agent::transport::tls::provider;
use gatekit_agent::transport::websocket::{self, WebSocketStream};
use gatekit_agent::*;
use gatekit_codec::websocket::{
    apply_mask, decode_header, parse_close_payload, FrameHeader, Opcode, Role,
};
use gatekit_codec::CloseCode;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LIMIT: Duration = Duration::from_secs(30);

async fn bounded<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("test exceeded its time limit");
}

struct Certs {
    cert_pem: String,
    key_pem: String,
    cert_der: rustls::pki_types::CertificateDer<'static>,
}

fn certs() -> Certs {
    let c =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    Certs {
        cert_pem: c.cert.pem(),
        key_pem: c.signing_key.serialize_pem(),
        cert_der: c.cert.der().clone(),
    }
}

fn echo() -> Backends {
    Backends::new().with(
        "echo",
        |_s: Arc<Session>, _f: String, body: Bytes| async move { Ok::<_, BackendError>(body) },
    )
}

struct Fixture {
    gate: Gate,
    addr: SocketAddr,
    learner: Arc<RecLearner>,
}

async fn start(config: AgentConfig, transport: Arc<dyn Transport>) -> Fixture {
    let learner = Arc::new(RecLearner::default());
    let gate = Gate::builder()
        .config(config)
        .services(Services {
            backends: echo(),
            learner: learner.clone(),
            ..Default::default()
        })
        .build();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(gate.serve_over(listener, transport, Arc::new(NativeAgent)));
    Fixture {
        gate,
        addr,
        learner,
    }
}

fn ws_config() -> WebSocketConfig {
    let mut c = WebSocketConfig::for_frame_length(AgentConfig::default().max_frame_length);
    c.path = Some("/gate".into());
    c.protocols = vec!["gatekit".into()];
    c
}

fn tls(certs: &Certs, name: &str) -> Tls {
    let config = Tls::from_pem(certs.cert_pem.as_bytes(), certs.key_pem.as_bytes(), &[]).unwrap();
    Tls::new(config).named(name)
}

fn tls_client(certs: &Certs) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certs.cert_der.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn tls_connect(
    addr: SocketAddr,
    certs: &Certs,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tls_client(certs).connect(name, tcp).await.unwrap()
}

async fn ws_connect<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: S,
    path: &str,
) -> WebSocketStream<S> {
    let max = websocket::message_size_for(AgentConfig::default().max_frame_length);
    let (ws, protocol) = websocket::connect(stream, "127.0.0.1", path, &["gatekit"], max)
        .await
        .unwrap();
    assert_eq!(protocol.as_deref(), Some("gatekit"));
    ws
}

/// A handshake, a request echoed, a ping, and the close handshake, through any stream.
async fn round_trip<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(io: S) {
    let mut c = Client::new(io);
    c.handshake().await;
    let r = c.request(1, "echo/x", b"through the layers").await;
    assert_eq!(&r.body[..], b"through the layers");
    c.ping().await;
    c.close().await;
    assert_eq!(c.recv().await, None);
}

async fn until(mut cond: impl FnMut() -> bool) {
    while !cond() {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn the_native_protocol_runs_over_tls_ws_and_wss() {
    bounded(async {
        let certs = certs();
        let over_tls = start(AgentConfig::default(), Arc::new(tls(&certs, "tls"))).await;
        round_trip(tls_connect(over_tls.addr, &certs).await).await;
        let over_ws = start(
            AgentConfig::default(),
            Arc::new(WebSocket::new(ws_config())),
        )
        .await;
        let tcp = TcpStream::connect(over_ws.addr).await.unwrap();
        round_trip(ws_connect(tcp, "/gate?room=1").await).await;
        let wss = Layered::new(
            "wss",
            Arc::new(tls(&certs, "wss")),
            Arc::new(WebSocket::new(ws_config())),
        );
        let over_wss = start(AgentConfig::default(), Arc::new(wss)).await;
        round_trip(ws_connect(tls_connect(over_wss.addr, &certs).await, "/gate").await).await;
        for (f, network) in [(&over_tls, "tls"), (&over_ws, "ws"), (&over_wss, "wss")] {
            until(|| f.learner.disconnects() == 1).await;
            assert_eq!(f.learner.connects(), 1, "{network}");
            assert_eq!(f.gate.transport_failures(), (0, 0), "{network}");
            let reasons: Vec<CloseReason> = f.learner.lifecycles().into_values().collect();
            assert_eq!(reasons, vec![CloseReason::ClientClosed], "{network}");
        }
    })
    .await;
}

/// Reads an HTTP response head (to the blank line) and the rest until the gate closes.
async fn http_response(stream: &mut TcpStream) -> String {
    let mut all = Vec::new();
    let _ = stream.read_to_end(&mut all).await;
    String::from_utf8_lossy(&all).into_owned()
}

async fn upgrade_refused(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    http_response(&mut s).await
}

fn request_with(headers: &str) -> Vec<u8> {
    format!("GET /gate HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n").into_bytes()
}

const GOOD: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

#[tokio::test]
async fn bad_upgrade_requests_get_their_http_status() {
    bounded(async {
        let mut mqtt = ws_config();
        mqtt.protocols = vec!["mqtt".into()];
        mqtt.require_protocol = true;
        mqtt.allowed_origins = Some(vec!["http://game.example".into()]);
        let f = start(AgentConfig::default(), Arc::new(WebSocket::new(mqtt))).await;
        let huge = format!("{GOOD}X-Filler: {}\r\n", "a".repeat(9000));
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("8 KiB+ of headers", request_with(&huge), "431"),
            (
                "missing key",
                request_with(&GOOD.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "")),
                "400",
            ),
            (
                "wrong key",
                request_with(&GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "not-a-key")),
                "400",
            ),
            (
                "version 12",
                request_with(&GOOD.replace("Version: 13", "Version: 12")),
                "426",
            ),
            ("no subprotocol for MQTT", request_with(GOOD), "400"),
            (
                "wrong subprotocol for MQTT",
                request_with(&format!("{GOOD}Sec-WebSocket-Protocol: chat\r\n")),
                "400",
            ),
            (
                "origin not allowed",
                request_with(&format!(
                    "{GOOD}Sec-WebSocket-Protocol: mqtt\r\nOrigin: http://evil.example\r\n"
                )),
                "403",
            ),
            (
                "wrong path",
                format!(
                    "GET /other HTTP/1.1\r\nHost: x\r\n{GOOD}Sec-WebSocket-Protocol: mqtt\r\n\r\n"
                )
                .into_bytes(),
                "404",
            ),
            (
                "POST",
                format!("POST /gate HTTP/1.1\r\nHost: x\r\n{GOOD}\r\n").into_bytes(),
                "405",
            ),
            ("plain GET", request_with(""), "426"),
        ];
        let n = cases.len() as u64;
        for (what, request, status) in cases {
            let response = upgrade_refused(f.addr, &request).await;
            assert!(
                response.starts_with(&format!("HTTP/1.1 {status} ")),
                "{what}: {response}"
            );
            if status == "426" && what == "version 12" {
                assert!(response.contains("Sec-WebSocket-Version: 13"), "{response}");
            }
        }
        // The same gate upgrades a good request with the subprotocol and an allowed origin.
        let ok = format!("{GOOD}Sec-WebSocket-Protocol: mqtt\r\nOrigin: http://game.example\r\n");
        let response_start = {
            let mut s = TcpStream::connect(f.addr).await.unwrap();
            s.write_all(&request_with(&ok)).await.unwrap();
            let mut buf = vec![0; 1024];
            let n = s.read(&mut buf).await.unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        };
        assert!(
            response_start.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
            "{response_start}"
        );
        assert!(response_start.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(response_start.contains("Sec-WebSocket-Protocol: mqtt\r\n"));
        until(|| f.gate.transport_failures().0 == n).await;
        assert_eq!(
            f.learner.connects(),
            0,
            "no refused upgrade reached the agent"
        );
    })
    .await;
}

/// A masked frame from a client.
fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x11, 0x22, 0x33, 0x44];
    let mut out = BytesMut::new();
    FrameHeader {
        fin,
        opcode: Opcode::from_u8(opcode).unwrap(),
        mask: Some(mask),
        payload_len: payload.len() as u64,
    }
    .encode_to(&mut out);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(mask, 0, &mut out[start..]);
    out.to_vec()
}

/// Upgrades by hand, sends `bytes`, and reads the frames the gate sends until it closes; gives
/// the Close frame's code (and when it came).
async fn gate_close_code(addr: SocketAddr, bytes: &[u8]) -> (Option<u16>, Duration) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&request_with(&format!(
        "{GOOD}Sec-WebSocket-Protocol: gatekit\r\n"
    )))
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    let t0 = Instant::now();
    s.write_all(bytes).await.unwrap();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all).await;
    let took = t0.elapsed();
    let mut rest = &all[..];
    while let Ok(Some((h, n))) = decode_header(rest, Role::Client, 1 << 20) {
        let end = n + h.payload_len as usize;
        if h.opcode == Opcode::Close {
            let code = parse_close_payload(&rest[n..end]).unwrap().map(|c| c.0);
            return (code, took);
        }
        rest = &rest[end..];
    }
    (None, took)
}

#[tokio::test]
async fn bad_frames_get_their_close_code_and_others_are_unaffected() {
    bounded(async {
        let f = start(
            AgentConfig::default(),
            Arc::new(WebSocket::new(ws_config())),
        )
        .await;
        // A good client connected through it all.
        let tcp = TcpStream::connect(f.addr).await.unwrap();
        let mut good = Client::new(ws_connect(tcp, "/gate").await);
        good.handshake().await;
        let max = websocket::message_size_for(AgentConfig::default().max_frame_length);
        let mut too_big = BytesMut::new();
        FrameHeader {
            fin: true,
            opcode: Opcode::Binary,
            mask: Some([1, 2, 3, 4]),
            payload_len: max + 1,
        }
        .encode_to(&mut too_big);
        let mut unmasked = BytesMut::new();
        FrameHeader {
            fin: true,
            opcode: Opcode::Binary,
            mask: None,
            payload_len: 2,
        }
        .encode_to(&mut unmasked);
        unmasked.extend_from_slice(b"hi");
        let cases: Vec<(&str, Vec<u8>, u16)> = vec![
            ("unmasked client frame", unmasked.to_vec(), 1002),
            ("RSV1 set", vec![0xC2, 0x80, 0, 0, 0, 0], 1002),
            ("reserved opcode 3", vec![0x83, 0x80, 0, 0, 0, 0], 1002),
            (
                "control frame over 125 bytes",
                frame(true, 9, &[7; 126]),
                1002,
            ),
            ("text frame", frame(true, 1, b"hello"), 1003),
            // Announced in its header; not one payload byte is sent.
            ("message over the limit", too_big.to_vec(), 1009),
            (
                "close with code 1005",
                frame(true, 8, &1005u16.to_be_bytes()),
                1002,
            ),
            (
                "close with code 5000",
                frame(true, 8, &5000u16.to_be_bytes()),
                1002,
            ),
        ];
        for (what, bytes, code) in cases {
            let (got, took) = gate_close_code(f.addr, &bytes).await;
            assert_eq!(got, Some(code), "{what}");
            assert!(
                took < Duration::from_secs(5),
                "{what}: closed after {took:?}"
            );
            // The good client goes on.
            let r = good.request(1, "echo/x", what).await;
            assert_eq!(&r.body[..], what.as_bytes());
        }
        // A valid close frame is answered with its code.
        let (got, _) = gate_close_code(f.addr, &frame(true, 8, &4000u16.to_be_bytes())).await;
        assert_eq!(got, Some(4000));
        good.close().await;
    })
    .await;
}

#[tokio::test]
async fn slow_handshakes_end_at_the_one_handshake_deadline() {
    bounded(async {
        let config = AgentConfig {
            handshake_timeout: Duration::from_millis(800),
            ..AgentConfig::default()
        };
        let certs = certs();
        let ws = start(config.clone(), Arc::new(WebSocket::new(ws_config()))).await;
        let over_tls = start(config.clone(), Arc::new(tls(&certs, "tls"))).await;

        // An HTTP request that never finishes its headers, a byte every 100 ms.
        let t0 = Instant::now();
        let mut s = TcpStream::connect(ws.addr).await.unwrap();
        let request = request_with(GOOD);
        for b in request.iter().take(request.len() - 2) {
            if s.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            if t0.elapsed() > Duration::from_secs(3) {
                break;
            }
        }
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
        let took = t0.elapsed();
        assert!(
            took < Duration::from_millis(1500),
            "headers dribbled: closed after {took:?}"
        );

        // A TLS handshake dribbled: a real ClientHello, a byte every 100 ms.
        let hello = client_hello(&certs).await;
        let t0 = Instant::now();
        let mut s = TcpStream::connect(over_tls.addr).await.unwrap();
        for b in &hello {
            if s.write_all(&[*b]).await.is_err() || t0.elapsed() > Duration::from_secs(3) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = s.read_to_end(&mut Vec::new()).await;
        let took = t0.elapsed();
        assert!(
            took < Duration::from_millis(1500),
            "TLS dribbled: closed after {took:?}"
        );

        // The upgrade done quickly, then no protocol handshake: the agent's handshake deadline
        // is the same one, counted from accept.
        let t0 = Instant::now();
        let tcp = TcpStream::connect(ws.addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut c = Client::new(ws_connect(tcp, "/gate").await);
        c.expect_close(CloseCode::HandshakeTimeout).await;
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(750) && took < Duration::from_millis(1200),
            "the protocol handshake got its own timeout after the upgrade: {took:?}"
        );
        until(|| ws.gate.transport_failures().1 == 1).await;
        until(|| over_tls.gate.transport_failures().1 == 1).await;
        assert_eq!(ws.learner.connects(), 0);
        assert_eq!(over_tls.learner.connects(), 0);
    })
    .await;
}

/// The ClientHello a rustls client sends (captured from a client talking to a sink).
async fn client_hello(certs: &Certs) -> Vec<u8> {
    let sink = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = sink.local_addr().unwrap();
    let connector = tls_client(certs);
    let client = tokio::spawn(async move {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(2), connector.connect(name, tcp)).await;
    });
    let (mut s, _) = sink.accept().await.unwrap();
    let mut hello = vec![0; 4096];
    let n = s.read(&mut hello).await.unwrap();
    hello.truncate(n);
    client.abort();
    assert_eq!(hello[0], 0x16, "a TLS handshake record");
    hello
}

#[tokio::test]
async fn the_wrong_bytes_for_the_port_are_refused() {
    bounded(async {
        let certs = certs();
        // Plain protocol bytes to a TLS port: a TLS alert, then the end; no agent runs.
        let over_tls = start(AgentConfig::default(), Arc::new(tls(&certs, "tls"))).await;
        let mut s = TcpStream::connect(over_tls.addr).await.unwrap();
        s.write_all(b"\x01\x00\x00\x00\x05hello, plain")
            .await
            .unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got).await;
        assert_eq!(got.first(), Some(&0x15), "a TLS alert record: {got:?}");
        until(|| over_tls.gate.transport_failures().0 == 1).await;
        assert_eq!(over_tls.learner.connects(), 0);

        // A ClientHello to a WebSocket port: HTTP 400.
        let ws = start(
            AgentConfig::default(),
            Arc::new(WebSocket::new(ws_config())),
        )
        .await;
        let response = upgrade_refused(ws.addr, &client_hello(&certs).await).await;
        assert!(response.starts_with("HTTP/1.1 400 "), "{response}");

        // A ClientHello to a plain native port: the native protocol's own refusal.
        let plain = Gate::builder().build();
        let (addr, _accept) = plain.listen("127.0.0.1:0").await.unwrap();
        let mut c = Client::connect(addr).await;
        c.io.write_all(&client_hello(&certs).await).await.unwrap();
        match c.recv().await {
            Some(gatekit_codec::Packet::Close(close)) => {
                assert_ne!(close.code, CloseCode::Normal, "{close:?}")
            }
            other => panic!("expected a CLOSE, got {other:?}"),
        }
    })
    .await;
}

#[test]
fn bad_certificate_files_are_named_in_the_error() {
    let dir = std::env::temp_dir().join(format!("gatekit-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (certs, other) = (self::certs(), self::certs());
    let (cert, key, garbage, other_key) = (
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("garbage.pem"),
        dir.join("other-key.pem"),
    );
    std::fs::write(&cert, &certs.cert_pem).unwrap();
    std::fs::write(&key, &certs.key_pem).unwrap();
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    std::fs::write(&other_key, &other.key_pem).unwrap();
    assert!(Tls::from_pem_files(&cert, &key, &["http/1.1"]).is_ok());
    let missing = dir.join("missing.pem");
    let cases = [
        (&missing, &key, "TLS certificate file", "missing.pem"),
        (
            &garbage,
            &key,
            "no CERTIFICATE section found",
            "garbage.pem",
        ),
        (
            &cert,
            &garbage,
            "no PRIVATE KEY section found",
            "garbage.pem",
        ),
        (&cert, &other_key, "TLS certificate", "other-key.pem"),
    ];
    for (c, k, says, names) in cases {
        let e = Tls::from_pem_files(c, k, &[])
            .expect_err("refused")
            .to_string();
        assert!(e.contains(says), "{e}");
        assert!(e.contains(names), "{e}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn tls_1_2_and_1_3_are_both_spoken() {
    bounded(async {
        let certs = certs();
        let f = start(AgentConfig::default(), Arc::new(tls(&certs, "tls"))).await;
        for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(certs.cert_der.clone()).unwrap();
            let config = rustls::ClientConfig::builder_with_provider(provider())
                .with_protocol_versions(&[version])
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
            let tcp = TcpStream::connect(f.addr).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, tcp)
                .await
                .unwrap();
            assert_eq!(stream.get_ref().1.protocol_version(), Some(version.version));
            round_trip(stream).await;
        }
        until(|| f.learner.disconnects() == 2).await;
    })
    .await;
}

#[tokio::test]
async fn a_full_gate_refuses_through_the_transport_in_the_protocol() {
    bounded(async {
        let learner = Arc::new(RecLearner::default());
        let gate = Gate::builder()
            .services(Services {
                backends: echo(),
                learner: learner.clone(),
                ..Default::default()
            })
            .max_connections(1)
            .build();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(gate.serve_over(
            listener,
            Arc::new(WebSocket::new(ws_config())),
            Arc::new(NativeAgent),
        ));
        let mut first =
            Client::new(ws_connect(TcpStream::connect(addr).await.unwrap(), "/gate").await);
        first.handshake().await;
        let mut second =
            Client::new(ws_connect(TcpStream::connect(addr).await.unwrap(), "/gate").await);
        second.expect_close(CloseCode::ServerFull).await;
        assert_eq!(gate.accepted_refused(), (1, 1));
        first.close().await;
    })
    .await;
}

/// A layer that keeps what is written until it is flushed (as tokio-rustls keeps TLS records the
/// socket did not take): the driver flushes once its output is written, so answers never wait
/// for a later write.
#[tokio::test]
async fn output_held_by_a_layer_is_flushed() {
    bounded(async {
        let gate = Gate::builder()
            .services(Services {
                backends: echo(),
                ..Default::default()
            })
            .build();
        let (client, server) = tokio::io::duplex(64 * 1024);
        gate.accept(
            Box::new(tokio::io::BufWriter::new(server)),
            "buffered",
            "peer".into(),
        );
        let mut c = Client::new(client);
        tokio::time::timeout(Duration::from_secs(5), async {
            c.handshake().await;
            let r = c.request(1, "echo/x", b"flushed").await;
            assert_eq!(&r.body[..], b"flushed");
            c.ping().await;
        })
        .await
        .expect("the gate's answers stayed in the layer's buffer");
    })
    .await;
}
