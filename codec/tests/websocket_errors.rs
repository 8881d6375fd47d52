//! Every refusal of the WebSocket upgrade, from a realistic request: the error, its HTTP status,
//! and the whole answer a gate sends (snapshotted in
//! `snapshots/websocket_errors__refusals.snap`; docs/WEBSOCKET.md lists the same).

use gatekit_codec::websocket::{
    parse_http_request, parse_upgrade_request, UpgradeError, UpgradeLimits,
};

/// A browser's upgrade request (Chromium's header order), with `edit` applied to its lines.
fn request(edit: impl FnOnce(&mut Vec<String>)) -> Vec<u8> {
    let mut lines: Vec<String> = [
        "GET /chat?room=7 HTTP/1.1",
        "Host: gate.example:8443",
        "Connection: Upgrade",
        "Pragma: no-cache",
        "Cache-Control: no-cache",
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        "Upgrade: websocket",
        "Origin: https://game.example",
        "Sec-WebSocket-Version: 13",
        "Accept-Encoding: gzip, deflate, br, zstd",
        "Accept-Language: en-US,en;q=0.9",
        "Sec-WebSocket-Key: w/r2Ag6PZ8y28YQFhR6LNA==",
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
        "Sec-WebSocket-Protocol: mqtt",
    ]
    .map(String::from)
    .to_vec();
    edit(&mut lines);
    let mut out = lines.join("\r\n");
    out.push_str("\r\n\r\n");
    out.into_bytes()
}

fn set(lines: &mut [String], name: &str, value: &str) {
    let line = lines
        .iter_mut()
        .find(|l| l.starts_with(&format!("{name}:")))
        .unwrap();
    *line = format!("{name}: {value}");
}

fn remove(lines: &mut Vec<String>, name: &str) {
    lines.retain(|l| !l.starts_with(&format!("{name}:")));
}

fn parse(req: &[u8]) -> Result<Option<gatekit_codec::websocket::UpgradeRequest>, UpgradeError> {
    parse_upgrade_request(req, &UpgradeLimits::default())
}

#[test]
fn the_base_request_is_accepted() {
    let req = request(|_| {});
    let up = parse(&req).unwrap().unwrap();
    assert_eq!(up.path, "/chat?room=7");
    assert_eq!(up.origin.as_deref(), Some("https://game.example"));
    assert_eq!(up.protocols, ["mqtt"]);
    assert_eq!(up.header_len, req.len());
}

/// A request that keeps sending headers and never ends them: `Ok(None)` up to 8,192 bytes,
/// then refused.
#[test]
fn never_ending_headers() {
    let limits = UpgradeLimits::default();
    let mut req = request(|_| {});
    req.truncate(req.len() - 2); // no empty line yet
    let mut i = 0;
    while req.len() <= limits.max_header_bytes {
        assert_eq!(
            parse_upgrade_request(&req, &limits),
            Ok(None),
            "{} bytes",
            req.len()
        );
        req.extend_from_slice(
            format!("X-Padding-{i}: {}\r\n", "a".repeat(150 + i % 50)).as_bytes(),
        );
        i += 1;
    }
    assert!(i < limits.max_headers, "stays within the header count");
    assert_eq!(
        parse_upgrade_request(&req, &limits),
        Err(UpgradeError::HeadersTooLarge {
            len: req.len(),
            max: 8192
        })
    );
    // Byte by byte, the same: incomplete until the limit is passed.
    assert_eq!(parse_upgrade_request(&req[..8192], &limits), Ok(None));
    assert!(matches!(
        parse_upgrade_request(&req[..8193], &limits),
        Err(UpgradeError::HeadersTooLarge { len: 8193, .. })
    ));
}

#[test]
fn limits_are_exact() {
    let req = request(|_| {});
    let exact = UpgradeLimits {
        max_header_bytes: req.len(),
        max_headers: 13,
    };
    assert!(parse_upgrade_request(&req, &exact).unwrap().is_some());
    let short = UpgradeLimits {
        max_header_bytes: req.len() - 1,
        ..exact
    };
    assert!(matches!(
        parse_upgrade_request(&req, &short),
        Err(UpgradeError::HeadersTooLarge { .. })
    ));
    let few = UpgradeLimits {
        max_headers: 12,
        ..exact
    };
    assert_eq!(
        parse_upgrade_request(&req, &few),
        Err(UpgradeError::TooManyHeaders { max: 12 })
    );
    // More headers than fit on the stack: the table is allocated.
    let many = UpgradeLimits {
        max_header_bytes: 1 << 16,
        max_headers: 1000,
    };
    let big = request(|l| l.extend((0..900).map(|i| format!("X-{i}: {i}"))));
    assert!(parse_upgrade_request(&big, &many).unwrap().is_some());
}

#[test]
fn header_tokens_and_case() {
    let req = request(|l| {
        set(l, "Connection", "keep-alive, Upgrade");
        set(l, "Upgrade", "WebSocket");
        l.push("sec-websocket-protocol: chat, superchat".into());
    });
    let up = parse(&req).unwrap().unwrap();
    assert_eq!(up.protocols, ["mqtt", "chat", "superchat"]);
    let http = parse_http_request(&req, &UpgradeLimits::default())
        .unwrap()
        .unwrap();
    assert_eq!(http.header("CONNECTION"), Some("keep-alive, Upgrade"));
}

/// (name, request, expected error) for every server-side refusal.
fn refusals() -> Vec<(&'static str, Vec<u8>, UpgradeError)> {
    use UpgradeError::*;
    let huge_cookie = request(|l| l.push(format!("Cookie: session={}", "x".repeat(8200))));
    let huge_len = huge_cookie.len();
    vec![
        (
            "8 KiB+ of headers",
            huge_cookie,
            HeadersTooLarge {
                len: huge_len,
                max: 8192,
            },
        ),
        (
            "65 headers",
            request(|l| l.extend((0..52).map(|i| format!("X-Trace-{i}: {i}")))),
            TooManyHeaders { max: 64 },
        ),
        (
            "malformed header",
            request(|l| l.push("Bad Header: x".into())),
            Malformed {
                reason: "invalid header name",
            },
        ),
        (
            "HTTP/1.0",
            request(|l| l[0] = "GET /chat?room=7 HTTP/1.0".into()),
            UnsupportedHttpVersion {
                version: "HTTP/1.0".into(),
            },
        ),
        (
            "HTTP/2.0",
            request(|l| l[0] = "GET /chat?room=7 HTTP/2.0".into()),
            UnsupportedHttpVersion {
                version: "HTTP/2.0".into(),
            },
        ),
        (
            "POST",
            request(|l| l[0] = "POST /chat?room=7 HTTP/1.1".into()),
            MethodNotAllowed {
                method: "POST".into(),
            },
        ),
        (
            "no Upgrade header",
            request(|l| remove(l, "Upgrade")),
            NotUpgrade {
                path: "/chat?room=7".into(),
            },
        ),
        (
            "Connection: keep-alive",
            request(|l| set(l, "Connection", "keep-alive")),
            NotUpgrade {
                path: "/chat?room=7".into(),
            },
        ),
        (
            "version 12",
            request(|l| set(l, "Sec-WebSocket-Version", "12")),
            UnsupportedVersion {
                got: Some("12".into()),
            },
        ),
        (
            "no version",
            request(|l| remove(l, "Sec-WebSocket-Version")),
            UnsupportedVersion { got: None },
        ),
        (
            "missing key",
            request(|l| remove(l, "Sec-WebSocket-Key")),
            MissingKey,
        ),
        (
            "wrong key",
            request(|l| set(l, "Sec-WebSocket-Key", "abc")),
            BadKey { key: "abc".into() },
        ),
        (
            "key of 17 bytes",
            request(|l| set(l, "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZSE=")),
            BadKey {
                key: "dGhlIHNhbXBsZSBub25jZSE=".into(),
            },
        ),
    ]
}

#[test]
fn each_refusal() {
    let mut out = String::new();
    for (name, req, want) in refusals() {
        let got = parse(&req);
        assert_eq!(got.as_ref(), Err(&want), "{name}");
        let response = String::from_utf8(want.response().to_vec()).unwrap();
        assert!(response.starts_with(&format!("HTTP/1.1 {} ", want.status())));
        out += &format!(
            "== {name}: {}\n{}\n",
            want.status(),
            response.replace("\r\n", "\\r\\n\n")
        );
    }
    insta::assert_snapshot!("refusals", out);
}
