//! The metrics endpoint of a real in-process gate: counters after a known sequence of clients,
//! and the HTTP answers to what is not a scrape.

#[path = "../../agent/tests/common/native_client.rs"]
mod native_client;

use bytes::{Bytes, BytesMut};
use gatekit_codec::*;
use gatekit_server::{Running, Server, ServerConfig};
use native_client::{req, Client};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start() -> Running {
    let mut cfg = ServerConfig::default();
    cfg.gate.listen = vec!["native+tcp://127.0.0.1:0".parse().unwrap()];
    cfg.metrics.addr = Some("127.0.0.1:0".parse().unwrap());
    Server::new(cfg).start().await.expect("server starts")
}

/// Sends `request` as it is and reads the whole answer (the endpoint closes every connection).
async fn http(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("the endpoint answers and closes")
        .unwrap();
    String::from_utf8(out).expect("utf-8")
}

/// The metrics text, checked to be a well-formed 200 answer.
async fn scrape(addr: SocketAddr) -> String {
    let out = http(addr, b"GET /metrics HTTP/1.1\r\nHost: gate\r\n\r\n").await;
    let (head, body) = out.split_once("\r\n\r\n").expect("a head");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains(
            "\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\n"
        ),
        "{head}"
    );
    assert!(
        head.contains(&format!("\r\nContent-Length: {}\r\n", body.len())),
        "{head}"
    );
    assert!(head.contains("\r\nConnection: close"), "{head}");
    assert!(body.ends_with("# EOF\n"));
    body.to_owned()
}

/// The value of the sample `series` (name and labels exactly as written), if present.
fn value(text: &str, series: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?.strip_prefix(' ')?;
        Some(rest.parse::<f64>().expect("a number") as u64)
    })
}

fn encoded_len(packets: &[Packet]) -> u64 {
    let codec = NativeCodec::default();
    let mut out = BytesMut::new();
    for p in packets {
        codec.encode(p, &mut out).unwrap();
    }
    out.len() as u64
}

fn hello(version: u8) -> Packet {
    Packet::Handshake(Handshake {
        version,
        heartbeat_secs: 0,
        token: Bytes::new(),
    })
}

#[tokio::test]
async fn counters_after_a_known_sequence() {
    let running = start().await;
    let gate_addr = running.listeners()[0].addr;
    let metrics_addr = running.metrics_addr().expect("metrics served");

    // Nothing yet.
    let text = scrape(metrics_addr).await;
    assert_eq!(value(&text, "gatekit_connections"), Some(0));
    assert_eq!(
        value(&text, r#"gatekit_handshakes_total{result="accepted"}"#),
        Some(0)
    );
    assert_eq!(
        value(
            &text,
            r#"gatekit_requests_total{module="echo",status="ok"}"#
        ),
        Some(0)
    );
    assert_eq!(value(&text, r#"gatekit_gate_info{gate="gate-1"}"#), Some(1));
    assert_eq!(value(&text, "gatekit_nats_connected"), None, "no NATS");
    assert_eq!(
        value(&text, r#"gatekit_duplicate_logins_total{outcome="kicked"}"#),
        Some(0)
    );
    assert_eq!(value(&text, "gatekit_groups"), Some(0));

    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut c = Client::connect(gate_addr).await;
        c.handshake().await;
        clients.push(c);
    }
    let mut sent_bytes = encoded_len(&[hello(PROTOCOL_VERSION)]) * 3;
    // 4 echo requests, one pinned (`echo@2` labels as `echo`), and one to a module nobody serves.
    for (i, route) in ["echo/a", "echo/b", "echo@2/c"].iter().enumerate() {
        let id = i as u32 + 1;
        let r = clients[0].request(id, route, b"hi").await;
        assert_eq!(r.status, Status::Ok);
        assert_eq!(&r.body[..], b"hi");
        sent_bytes += encoded_len(&[req(id, route, b"hi")]);
    }
    let r = clients[1].request(1, "echo/x", b"hello").await;
    assert_eq!(r.status, Status::Ok);
    sent_bytes += encoded_len(&[req(1, "echo/x", b"hello")]);
    let r = clients[2].request(1, "nosuch/f", b"").await;
    assert_eq!(r.status, Status::NotFound);
    sent_bytes += encoded_len(&[req(1, "nosuch/f", b"")]);

    // A handshake the gate refuses.
    let mut bad = Client::connect(gate_addr).await;
    bad.send(hello(PROTOCOL_VERSION.wrapping_add(1))).await;
    bad.expect_close(CloseCode::UnsupportedVersion).await;
    sent_bytes += encoded_len(&[hello(PROTOCOL_VERSION.wrapping_add(1))]);

    // One client leaves.
    let mut first = clients.remove(0);
    first.close().await;
    assert_eq!(first.recv().await, None);
    sent_bytes += encoded_len(&[Packet::Close(Close {
        code: CloseCode::Normal,
        reason: Text::from("bye"),
    })]);

    // The learner is told on the connections' tasks: wait for both ends to be counted.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = scrape(metrics_addr).await;
        let done = value(
            &text,
            r#"gatekit_disconnects_total{reason="client_closed"}"#,
        ) == Some(1)
            && value(
                &text,
                r#"gatekit_handshakes_refused_total{reason="refused"}"#,
            ) == Some(1)
            && value(&text, "gatekit_connections") == Some(2);
        if done || tokio::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let get = |series: &str| value(&text, series);

    assert_eq!(get("gatekit_connections"), Some(2), "{text}");
    assert_eq!(get("gatekit_connections_accepted_total"), Some(4));
    assert_eq!(get("gatekit_connections_refused_total"), Some(0));
    assert_eq!(get("gatekit_accept_errors_total"), Some(0));
    assert_eq!(
        get(r#"gatekit_transport_handshake_failures_total{kind="failed"}"#),
        Some(0)
    );
    assert_eq!(
        get(r#"gatekit_transport_handshake_failures_total{kind="timed_out"}"#),
        Some(0)
    );

    assert_eq!(get(r#"gatekit_sessions{network="tcp"}"#), Some(2));
    assert_eq!(
        get(r#"gatekit_handshakes_total{result="accepted"}"#),
        Some(3)
    );
    assert_eq!(
        get(r#"gatekit_handshakes_refused_total{reason="refused"}"#),
        Some(1)
    );
    assert_eq!(
        get(r#"gatekit_handshakes_refused_total{reason="eof"}"#),
        Some(0)
    );
    assert_eq!(
        get(r#"gatekit_disconnects_total{reason="client_closed"}"#),
        Some(1)
    );
    assert_eq!(get(r#"gatekit_disconnects_total{reason="eof"}"#), Some(0));
    assert_eq!(get("gatekit_slow_consumers_total"), Some(0));

    assert_eq!(
        get(r#"gatekit_requests_total{module="echo",status="ok"}"#),
        Some(4)
    );
    assert_eq!(
        get(r#"gatekit_requests_total{module="echo",status="failed"}"#),
        Some(0)
    );
    assert_eq!(
        get(r#"gatekit_requests_total{module="nosuch",status="not_found"}"#),
        Some(1)
    );
    assert_eq!(
        get(r#"gatekit_backend_latency_seconds_count{module="echo"}"#),
        Some(4)
    );
    assert_eq!(
        get(r#"gatekit_backend_latency_seconds_bucket{le="10.0",module="echo"}"#),
        Some(4)
    );
    assert_eq!(
        get(r#"gatekit_backend_timeouts_total{module="echo"}"#),
        Some(0)
    );
    assert_eq!(get("gatekit_calls_in_flight"), Some(0));
    assert_eq!(get("gatekit_storage_heartbeats_total"), Some(0));

    // In: 4 handshakes, 5 requests, 1 CLOSE. Out: 3 WELCOMEs, 5 responses, 2 CLOSEs.
    assert_eq!(get(r#"gatekit_packets_total{direction="in"}"#), Some(10));
    assert_eq!(get(r#"gatekit_packets_total{direction="out"}"#), Some(10));
    assert_eq!(
        get(r#"gatekit_bytes_total{direction="in"}"#),
        Some(sent_bytes)
    );
    assert!(get(r#"gatekit_bytes_total{direction="out"}"#).unwrap() > 0);

    // Every family is documented.
    for name in [
        "connections",
        "connections_accepted",
        "connections_refused",
        "accept_errors",
        "transport_handshake_failures",
        "packets",
        "bytes",
        "sessions",
        "handshakes",
        "handshakes_refused",
        "disconnects",
        "slow_consumers",
        "requests",
        "backend_timeouts",
        "backend_latency_seconds",
        "calls_in_flight",
        "storage_heartbeats",
        "gate",
    ] {
        let help = format!("# HELP gatekit_{name} ");
        assert!(
            text.lines()
                .any(|l| l.starts_with(&help) && l.len() > help.len() + 3),
            "no HELP for gatekit_{name}"
        );
    }

    drop(clients);
    running.shutdown().await;
}

#[tokio::test]
async fn other_paths_methods_and_garbage() {
    let running = start().await;
    let addr = running.metrics_addr().unwrap();
    let status = |out: String| out.lines().next().unwrap_or_default().to_owned();

    let out = http(addr, b"GET /nothing HTTP/1.1\r\nHost: gate\r\n\r\n").await;
    assert_eq!(status(out.clone()), "HTTP/1.1 404 Not Found");
    assert!(out.contains("\r\nConnection: close\r\n"));
    assert_eq!(
        status(http(addr, b"DELETE /metrics HTTP/1.1\r\n\r\n").await),
        "HTTP/1.1 405 Method Not Allowed"
    );
    assert_eq!(
        status(http(addr, b"\x16\x03\x01\x02\x00garbage that is no HTTP\r\n\r\n").await),
        "HTTP/1.1 400 Bad Request"
    );
    let mut huge = b"GET /metrics HTTP/1.1\r\nX-Long: ".to_vec();
    huge.resize(20_000, b'a');
    assert_eq!(
        status(http(addr, &huge).await),
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
    // HTTP/1.0 and a query string are fine.
    let out = http(addr, b"GET /metrics?debug=1 HTTP/1.0\r\n\r\n").await;
    assert_eq!(status(out.clone()), "HTTP/1.1 200 OK");
    assert!(out.ends_with("# EOF\n"));
    // Still serving after all that.
    scrape(addr).await;
    running.shutdown().await;
}

#[tokio::test]
async fn nats_down_at_start_up_shows_in_the_metrics_and_nats_modules_answer_busy() {
    // A port where nothing listens: the gate starts anyway, reconnecting in the background.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let mut cfg = ServerConfig::default();
    cfg.gate.listen = vec!["native+tcp://127.0.0.1:0".parse().unwrap()];
    cfg.metrics.addr = Some("127.0.0.1:0".parse().unwrap());
    cfg.nats.url = Some(format!("nats://127.0.0.1:{port}"));
    cfg.backends.default = gatekit_server::config::DefaultRoute::Nats;
    let running = tokio::time::timeout(Duration::from_secs(10), Server::new(cfg).start())
        .await
        .expect("starts without NATS")
        .expect("starts");
    let mut c = Client::connect(running.listeners()[0].addr).await;
    c.handshake().await;
    let r = c.request(1, "chat/join", "lobby").await;
    assert_eq!(r.status, Status::Busy);
    let r = c.request(2, "echo/x", "in-process").await;
    assert_eq!((r.status, &r.body[..]), (Status::Ok, &b"in-process"[..]));
    let text = scrape(running.metrics_addr().unwrap()).await;
    assert_eq!(value(&text, "gatekit_nats_connected"), Some(0), "{text}");
    assert_eq!(
        value(
            &text,
            "gatekit_requests_total{module=\"chat\",status=\"busy\"}"
        ),
        Some(1),
        "{text}"
    );
    running.shutdown().await;
}
