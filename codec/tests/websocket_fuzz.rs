//! The checks of the WebSocket fuzz targets, and their replay over `corpus/websocket/` on every
//! `cargo test`.
//!
//! `fuzz/fuzz_targets/websocket_frame.rs` and `websocket_upgrade.rs` compile this file as a module
//! (`#[path]`), so the functions outside `mod tests` may use only `gatekit_codec` and `std`. Each
//! check panics when a property breaks; libFuzzer reports the panic as a crash.

use gatekit_codec::websocket::{
    apply_mask, decode_header, encode_close_payload, is_valid_close_code, parse_close_payload,
    parse_http_request, parse_upgrade_request, parse_upgrade_response, upgrade_response,
    FrameError, Role, UpgradeError, UpgradeLimits, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN,
};

/// The key the `websocket_upgrade` checks expect a server's answer to be for.
pub const CLIENT_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// Target `websocket_frame`: the first byte picks the maximum payload (`u64::MAX >> byte`, 0 for
/// 64 and up), the rest is decoded as a frame header in both roles. An accepted header is
/// within the maximum and re-encodes (minimal encoding) to exactly its bytes, and every shorter
/// prefix of it is `Ok(None)`; `Ok(None)` only for fewer than 14 bytes; an error stays the same
/// error whatever bytes follow. The payload bytes present are unmasked whole and in two pieces
/// alike, and read as a Close payload (an accepted one re-encodes to its bytes).
pub fn frame(data: &[u8]) {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let max = u64::MAX.checked_shr(u32::from(first)).unwrap_or(0);
    for role in [Role::Server, Role::Client] {
        match decode_header(input, role, max) {
            Ok(None) => assert!(
                input.len() < MAX_HEADER_LEN,
                "{role:?}: Ok(None) on {input:?}"
            ),
            Ok(Some((header, len))) => {
                assert!(len <= MAX_HEADER_LEN && len <= input.len());
                assert!(header.payload_len <= max);
                assert_eq!(len, header.encoded_len());
                let mut out = [0; MAX_HEADER_LEN];
                assert_eq!(header.encode(&mut out), len);
                assert_eq!(&out[..len], &input[..len], "{role:?}: {header:?}");
                let mut buf = Vec::new();
                header.encode_to(&mut buf);
                assert_eq!(buf, &input[..len]);
                for cut in 0..len {
                    assert_eq!(decode_header(&input[..cut], role, max), Ok(None));
                }
                assert_eq!(header.mask.is_some(), role == Role::Server);
                if header.opcode.is_control() {
                    assert!(header.fin && header.payload_len <= MAX_CONTROL_PAYLOAD as u64);
                }
                let available = (input.len() - len).min(header.payload_len as usize);
                let payload = &input[len..len + available];
                if let Some(mask) = header.mask {
                    let mut whole = payload.to_vec();
                    apply_mask(mask, 0, &mut whole);
                    let mut pieces = payload.to_vec();
                    let (a, b) = pieces.split_at_mut(available / 3);
                    apply_mask(mask, 0, a);
                    apply_mask(mask, available / 3, b);
                    assert_eq!(whole, pieces);
                    apply_mask(mask, 0, &mut pieces);
                    assert_eq!(pieces, payload);
                }
            }
            Err(e) => {
                let code = e.close_code();
                assert_eq!(code == 1009, matches!(e, FrameError::TooLong { .. }));
                assert!(code == 1002 || code == 1009);
                assert!(!matches!(
                    (role, e),
                    (Role::Server, FrameError::MaskedFromServer)
                        | (Role::Client, FrameError::Unmasked)
                ));
                let mut longer = input.to_vec();
                longer.extend_from_slice(&[0xff; MAX_HEADER_LEN]);
                assert_eq!(decode_header(&longer, role, max), Err(e));
            }
        }
    }
    close_payload(input);
}

/// A Close payload: an accepted one has a valid code and re-encodes to the same bytes.
fn close_payload(payload: &[u8]) {
    match parse_close_payload(payload) {
        Ok(None) => assert!(payload.is_empty()),
        Ok(Some((code, reason))) => {
            assert!(is_valid_close_code(code));
            if reason.len() <= MAX_CONTROL_PAYLOAD - 2 {
                let mut out = Vec::new();
                encode_close_payload(code, reason, &mut out);
                assert_eq!(out, payload);
            }
        }
        Err(e) => assert!(matches!(e.close_code(), 1002 | 1007)),
    }
}

/// The limits of the `websocket_upgrade` checks, from the input's first two bytes: up to
/// 16,320 header bytes (64 per step) and up to 255 headers (past 64 the header table is
/// allocated). Returns them and the rest of the input.
pub fn upgrade_limits(data: &[u8]) -> (UpgradeLimits, &[u8]) {
    match data {
        [a, b, rest @ ..] => (
            UpgradeLimits {
                max_header_bytes: usize::from(*a) * 64,
                max_headers: usize::from(*b),
            },
            rest,
        ),
        _ => (UpgradeLimits::default(), data),
    }
}

/// What every parser's result must respect: `Ok(None)` only within the byte limit, a limit error
/// naming the limits in force, a status the error's doc gives.
fn check_limits<T>(
    result: &Result<Option<T>, UpgradeError>,
    input: &[u8],
    limits: &UpgradeLimits,
    header_len: impl Fn(&T) -> usize,
) {
    match result {
        Ok(None) => assert!(input.len() <= limits.max_header_bytes),
        Ok(Some(v)) => {
            let n = header_len(v);
            assert!(n <= limits.max_header_bytes && n <= input.len());
            assert!(input[..n].ends_with(b"\n"));
        }
        Err(UpgradeError::HeadersTooLarge { len, max }) => {
            assert_eq!((*len, *max), (input.len(), limits.max_header_bytes));
            assert!(*len > *max);
        }
        Err(UpgradeError::TooManyHeaders { max }) => assert_eq!(*max, limits.max_headers),
        Err(e) => {
            assert!(matches!(e.status(), 400 | 405 | 426 | 502 | 505), "{e:?}");
            assert!(!e.to_string().is_empty());
            assert!(e.response().starts_with(b"HTTP/1.1 "));
        }
    }
}

/// Target `websocket_upgrade`: with the limits of [`upgrade_limits`], the rest goes through
/// `parse_http_request`, `parse_upgrade_request` and `parse_upgrade_response` (for
/// [`CLIENT_KEY`]): no panic, the limits respected, `parse_upgrade_request` agreeing with
/// `parse_http_request`, every prefix of a complete head `Ok(None)`, and a server's answer to an
/// accepted request accepted by the client side.
pub fn upgrade(data: &[u8]) {
    let (limits, input) = upgrade_limits(data);
    let http = parse_http_request(input, &limits);
    check_limits(&http, input, &limits, |r| r.header_len);
    if let Ok(Some(req)) = &http {
        assert!(req.headers.len() <= limits.max_headers);
        for cut in [0, req.header_len / 2, req.header_len - 1] {
            assert!(matches!(
                parse_http_request(&input[..cut], &limits),
                Ok(None)
            ));
        }
        assert_eq!(
            parse_http_request(&input[..req.header_len], &limits).as_ref(),
            Ok(&Some(req.clone()))
        );
    }
    let up = parse_upgrade_request(input, &limits);
    check_limits(&up, input, &limits, |r| r.header_len);
    match (&http, &up) {
        (Ok(None), Ok(None)) => {}
        (Err(a), Err(b)) => assert_eq!(a, b),
        (Ok(Some(req)), Ok(Some(u))) => {
            assert_eq!((req.header_len, &req.path), (u.header_len, &u.path));
            let answer = upgrade_response(&u.key, u.protocols.first().map(String::as_str));
            let got = parse_upgrade_response(&answer, &UpgradeLimits::default(), &u.key)
                .expect("our answer is accepted")
                .expect("and complete");
            assert_eq!(got.header_len, answer.len());
            assert_eq!(got.protocol.as_ref(), u.protocols.first());
        }
        (Ok(Some(_)), Err(e)) => assert!(matches!(e.status(), 400 | 405 | 426), "{e:?}"),
        (a, b) => panic!("parse_http_request gave {a:?} but parse_upgrade_request {b:?}"),
    }
    let resp = parse_upgrade_response(input, &limits, CLIENT_KEY);
    check_limits(&resp, input, &limits, |r| r.header_len);
    if let Ok(Some(r)) = &resp {
        assert_eq!(r.status, 101);
        for cut in [0, r.header_len / 2, r.header_len - 1] {
            assert!(matches!(
                parse_upgrade_response(&input[..cut], &limits, CLIENT_KEY),
                Ok(None)
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::path::Path;

    /// Every file of `corpus/websocket/golden/` goes through both targets' checks, with the
    /// default limits and with each maximum payload, whole and cut short.
    #[test]
    fn corpus_replay() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/websocket/golden");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "bin") {
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            for first in [0u8, 1, 40, 56, 63, 64, 255] {
                let mut data = vec![first];
                data.extend_from_slice(&bytes);
                frame(&data);
            }
            let mut data = vec![128, 64];
            data.extend_from_slice(&bytes);
            for cut in [data.len(), data.len() - 1, data.len() / 2, 2] {
                upgrade(&data[..cut]);
            }
            upgrade(&[&[1, 3][..], &bytes].concat()); // 64 bytes, 3 headers
            n += 1;
        }
        assert!(n >= 20, "only {n} files in {}", dir.display());
    }

    proptest! {
        #[test]
        fn frame_checks_hold(data in proptest::collection::vec(any::<u8>(), 0..40)) {
            frame(&data);
        }

        #[test]
        fn upgrade_checks_hold_on_bytes(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            upgrade(&data);
        }

        /// Requests made of plausible lines, so that the checks see complete heads too.
        #[test]
        fn upgrade_checks_hold_on_heads(
            a: u8,
            b in 0u8..80,
            lines in proptest::collection::vec(prop_oneof![
                Just("GET /ws HTTP/1.1".to_owned()),
                Just("HTTP/1.1 101 Switching Protocols".to_owned()),
                Just("Upgrade: websocket".to_owned()),
                Just("Connection: keep-alive, Upgrade".to_owned()),
                Just("Sec-WebSocket-Version: 13".to_owned()),
                Just(format!("Sec-WebSocket-Key: {CLIENT_KEY}")),
                Just("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".to_owned()),
                Just("Sec-WebSocket-Protocol: mqtt, chat".to_owned()),
                Just(String::new()),
                "[ -~]{0,20}",
            ], 0..12),
        ) {
            let mut data = vec![a, b];
            data.extend_from_slice(lines.join("\r\n").as_bytes());
            upgrade(&data);
        }
    }
}
