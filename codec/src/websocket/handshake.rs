//! The opening handshake (RFC 6455 section 4): the client's HTTP/1.1 `GET` with `Upgrade:
//! websocket`, and the server's `101 Switching Protocols` or error answer. Both sides, sans-I/O:
//! the parsers take the bytes received so far and return `Ok(None)` until the head (request or
//! status line and headers, up to the empty line) is complete.
//!
//! Limits ([`UpgradeLimits`]) are checked before anything is allocated: at most
//! `max_header_bytes` of input are ever scanned, and the header table has `max_headers` slots
//! (on the stack up to 64).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};
use sha1::{Digest, Sha1};
use std::borrow::Cow;

/// The GUID appended to the client's key before hashing (RFC 6455 section 1.3).
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// How many header slots live on the stack; more are allocated (bounded by the limits).
const STACK_HEADERS: usize = 64;

/// How much of a refusal's body [`UpgradeError::Refused`] keeps.
const BODY_START: usize = 200;

/// Limits on the head of an upgrade request (or response).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UpgradeLimits {
    /// The most bytes the head may take, request line (or status line), headers and the empty
    /// line included. Default 8,192.
    pub max_header_bytes: usize,
    /// The most header fields. Default 64.
    pub max_headers: usize,
}

impl Default for UpgradeLimits {
    fn default() -> Self {
        UpgradeLimits {
            max_header_bytes: 8192,
            max_headers: 64,
        }
    }
}

/// Why an upgrade was refused, by the server's parser (the HTTP status to answer with is
/// [`status`](UpgradeError::status), the whole answer [`response`](UpgradeError::response)), or
/// why a client did not get a WebSocket from the server's answer
/// ([`parse_upgrade_response`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpgradeError {
    /// The head did not end within the first `max` bytes (431).
    #[error("HTTP head not complete within {max} bytes ({len} bytes received); the maximum is {max} bytes of request line and headers")]
    HeadersTooLarge {
        /// Bytes received so far (more than `max`).
        len: usize,
        /// [`UpgradeLimits::max_header_bytes`].
        max: usize,
    },
    /// More header fields than the limit (431).
    #[error("more than {max} HTTP header fields; the maximum is {max}")]
    TooManyHeaders {
        /// [`UpgradeLimits::max_headers`].
        max: usize,
    },
    /// The head is not HTTP/1.x syntax (400).
    #[error("malformed HTTP head: {reason}")]
    Malformed {
        /// What the parser tripped on, e.g. "invalid header name".
        reason: &'static str,
    },
    /// An HTTP version other than 1.1 (505); a WebSocket upgrade needs HTTP/1.1.
    #[error("HTTP version {version:?} is not supported; a WebSocket upgrade needs HTTP/1.1")]
    UnsupportedHttpVersion {
        /// The version as sent, e.g. "HTTP/1.0" (at most 16 bytes of it).
        version: String,
    },
    /// A method other than GET (405, with `Allow: GET`).
    #[error("method {method:?} is not allowed; a WebSocket upgrade is a GET")]
    MethodNotAllowed {
        /// The method as sent.
        method: String,
    },
    /// A GET without `Upgrade: websocket` and `Connection: Upgrade` (426, with `Upgrade:
    /// websocket`). The caller may rather serve a plain page for `path`.
    #[error("GET {path:?} is not a WebSocket upgrade: it needs \"Upgrade: websocket\" and \"Connection: Upgrade\"")]
    NotUpgrade {
        /// The request's path (request target).
        path: String,
    },
    /// `Sec-WebSocket-Version` missing or not 13 (426, with `Sec-WebSocket-Version: 13`).
    #[error("Sec-WebSocket-Version {} is not supported; only 13 is", match .got { Some(v) => format!("{v:?}"), None => "missing".to_owned() })]
    UnsupportedVersion {
        /// The header's value, `None` if absent.
        got: Option<String>,
    },
    /// No `Sec-WebSocket-Key` (400).
    #[error("Sec-WebSocket-Key is missing")]
    MissingKey,
    /// A `Sec-WebSocket-Key` that is not the standard base64 of 16 bytes (400).
    #[error("Sec-WebSocket-Key {key:?} is not base64 of 16 bytes")]
    BadKey {
        /// The key as sent (not UTF-8 bytes replaced by U+FFFD).
        key: String,
    },
    /// Client side: the server answered with a status other than 101.
    #[error("server refused the upgrade with status {status}: {body_start:?}")]
    Refused {
        /// The server's status code.
        status: u16,
        /// The start of the body (the first 200 bytes of it that were in the input, not UTF-8
        /// replaced by U+FFFD); empty if none had arrived.
        body_start: String,
    },
    /// Client side: a 101 whose `Sec-WebSocket-Accept` is missing or not the key's.
    #[error("Sec-WebSocket-Accept {} does not match the key: expected {expected:?}", match .got { Some(v) => format!("{v:?}"), None => "missing".to_owned() })]
    BadAccept {
        /// [`accept_key`] of the key sent.
        expected: String,
        /// The header's value, `None` if absent.
        got: Option<String>,
    },
    /// Client side: a 101 without `Upgrade: websocket` or `Connection: Upgrade`.
    #[error("101 response lacks \"{missing}\"")]
    BadUpgradeResponse {
        /// The header and token missing: "Upgrade: websocket" or "Connection: Upgrade".
        missing: &'static str,
    },
}

impl UpgradeError {
    /// The HTTP status a server answers with: 400, 405, 426, 431 or 505, as each variant says.
    /// The client-side variants ([`Refused`](UpgradeError::Refused),
    /// [`BadAccept`](UpgradeError::BadAccept),
    /// [`BadUpgradeResponse`](UpgradeError::BadUpgradeResponse)) give 502 (Bad Gateway), for a
    /// proxy that relays the failure.
    pub fn status(&self) -> u16 {
        match self {
            UpgradeError::HeadersTooLarge { .. } | UpgradeError::TooManyHeaders { .. } => 431,
            UpgradeError::Malformed { .. }
            | UpgradeError::MissingKey
            | UpgradeError::BadKey { .. } => 400,
            UpgradeError::UnsupportedHttpVersion { .. } => 505,
            UpgradeError::MethodNotAllowed { .. } => 405,
            UpgradeError::NotUpgrade { .. } | UpgradeError::UnsupportedVersion { .. } => 426,
            UpgradeError::Refused { .. }
            | UpgradeError::BadAccept { .. }
            | UpgradeError::BadUpgradeResponse { .. } => 502,
        }
    }

    /// The headers the answer must carry besides the ones [`error_response`] always writes:
    /// `Allow: GET` (405), `Upgrade: websocket` (426 for a GET that is no upgrade, RFC 9110
    /// section 15.5.22), `Sec-WebSocket-Version: 13` (426 for a bad version, RFC 6455 section
    /// 4.4); none for the rest.
    pub fn response_headers(&self) -> &'static [(&'static str, &'static str)] {
        match self {
            UpgradeError::MethodNotAllowed { .. } => &[("Allow", "GET")],
            UpgradeError::NotUpgrade { .. } => &[("Upgrade", "websocket")],
            UpgradeError::UnsupportedVersion { .. } => &[("Sec-WebSocket-Version", "13")],
            _ => &[],
        }
    }

    /// The whole answer: [`error_response`] with [`status`](UpgradeError::status), this error's
    /// `Display` as the body and [`response_headers`](UpgradeError::response_headers).
    pub fn response(&self) -> Bytes {
        error_response(self.status(), &self.to_string(), self.response_headers())
    }
}

/// A parsed HTTP/1.1 request head. Only what the upgrade needs is kept: owned copies, bounded by
/// [`UpgradeLimits`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// The method, e.g. "GET" (case-sensitive, as sent).
    pub method: String,
    /// The request target, e.g. "/ws?room=7".
    pub path: String,
    /// The header fields in order, as (name as sent, value with surrounding whitespace removed).
    /// Values are bytes: HTTP allows non-UTF-8 (obs-text) in them.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Bytes of the head, through the empty line; what follows (e.g. the client's first frames)
    /// starts at `input[header_len..]`.
    pub header_len: usize,
}

impl HttpRequest {
    /// The value of the first header named `name` (ASCII case-insensitive), or `None` if there
    /// is none or its value is not UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_bytes(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The raw value of the first header named `name` (ASCII case-insensitive).
    pub fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        find(self.fields(), name)
    }

    /// The comma-separated tokens of every header named `name` (ASCII case-insensitive), in
    /// order, trimmed, empty ones skipped; values that are not UTF-8 are skipped.
    /// `Connection: keep-alive, Upgrade` gives "keep-alive", "Upgrade".
    pub fn header_tokens<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        tokens(self.fields(), name)
    }

    fn fields(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.headers.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }
}

fn find<'a>(mut fields: impl Iterator<Item = (&'a str, &'a [u8])>, name: &str) -> Option<&'a [u8]> {
    fields
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim_ascii())
}

fn tokens<'a>(
    fields: impl Iterator<Item = (&'a str, &'a [u8])> + 'a,
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    fields
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .filter_map(|(_, v)| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

fn has_token<'a>(
    fields: impl Iterator<Item = (&'a str, &'a [u8])> + 'a,
    name: &'a str,
    token: &str,
) -> bool {
    tokens(fields, name).any(|t| t.eq_ignore_ascii_case(token))
}

fn httparse_fields<'a>(
    headers: &'a [httparse::Header<'a>],
) -> impl Iterator<Item = (&'a str, &'a [u8])> + 'a {
    headers.iter().map(|h| (h.name, h.value))
}

/// Runs `f` with a header table of `max_headers` slots: on the stack up to 64, else allocated,
/// but never more slots than `max_header_bytes` could fill (a field takes at least 3 bytes).
fn with_header_table<'b, R>(
    limits: &UpgradeLimits,
    f: impl FnOnce(&mut [httparse::Header<'b>]) -> R,
) -> R {
    if limits.max_headers <= STACK_HEADERS {
        let mut table = [httparse::EMPTY_HEADER; STACK_HEADERS];
        f(&mut table[..limits.max_headers])
    } else {
        let slots = limits.max_headers.min(limits.max_header_bytes / 3 + 1);
        let mut table = vec![httparse::EMPTY_HEADER; slots];
        f(&mut table)
    }
}

fn httparse_reason(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status code",
        httparse::Error::Token => "invalid token (method or request target)",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "invalid HTTP version",
    }
}

/// Maps an httparse error; for a bad version, finds the version token in the first line (last
/// word of a request line, first of a status line) and reports it if it looks like "HTTP/...".
fn map_error(
    e: httparse::Error,
    head: &[u8],
    request: bool,
    limits: &UpgradeLimits,
) -> UpgradeError {
    match e {
        httparse::Error::TooManyHeaders => UpgradeError::TooManyHeaders {
            max: limits.max_headers,
        },
        httparse::Error::Version => {
            let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
            let mut words = line.trim_ascii().split(|b| *b == b' ');
            let word = if request {
                words.next_back()
            } else {
                words.next()
            };
            match word {
                Some(v) if v.starts_with(b"HTTP/") => UpgradeError::UnsupportedHttpVersion {
                    version: String::from_utf8_lossy(&v[..v.len().min(16)]).into_owned(),
                },
                _ => UpgradeError::Malformed {
                    reason: httparse_reason(e),
                },
            }
        }
        e => UpgradeError::Malformed {
            reason: httparse_reason(e),
        },
    }
}

fn partial(input: &[u8], limits: &UpgradeLimits) -> Result<(), UpgradeError> {
    if input.len() > limits.max_header_bytes {
        Err(UpgradeError::HeadersTooLarge {
            len: input.len(),
            max: limits.max_header_bytes,
        })
    } else {
        Ok(())
    }
}

fn check_version(version: Option<u8>) -> Result<(), UpgradeError> {
    match version {
        Some(1) => Ok(()),
        Some(minor) => Err(UpgradeError::UnsupportedHttpVersion {
            version: format!("HTTP/1.{minor}"),
        }),
        None => Err(UpgradeError::Malformed {
            reason: "invalid HTTP version",
        }),
    }
}

/// Parses the head of an HTTP/1.1 request at the start of `input`.
///
/// - `Ok(None)`: the head is not complete and `input` is at most `max_header_bytes` long; call
///   again with more bytes.
/// - [`UpgradeError::HeadersTooLarge`]: no complete head within the first `max_header_bytes`
///   (only those are ever scanned); [`UpgradeError::TooManyHeaders`]: more than `max_headers`
///   fields (431 both).
/// - [`UpgradeError::Malformed`] (400): not HTTP/1.x syntax, as httparse reads it;
///   [`UpgradeError::UnsupportedHttpVersion`] (505): HTTP/1.0 or a version httparse does not
///   know ("HTTP/2.0").
pub fn parse_http_request(
    input: &[u8],
    limits: &UpgradeLimits,
) -> Result<Option<HttpRequest>, UpgradeError> {
    let head = &input[..input.len().min(limits.max_header_bytes)];
    with_header_table(limits, |table| {
        let mut req = httparse::Request::new(table);
        match req.parse(head) {
            Ok(httparse::Status::Partial) => partial(input, limits).map(|()| None),
            Ok(httparse::Status::Complete(header_len)) => {
                check_version(req.version)?;
                Ok(Some(HttpRequest {
                    method: req.method.unwrap_or_default().to_owned(),
                    path: req.path.unwrap_or_default().to_owned(),
                    headers: req
                        .headers
                        .iter()
                        .map(|h| (h.name.to_owned(), h.value.trim_ascii().to_vec()))
                        .collect(),
                    header_len,
                }))
            }
            Err(e) => Err(map_error(e, head, true, limits)),
        }
    })
}

/// A valid WebSocket upgrade request (RFC 6455 section 4.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeRequest {
    /// The request target, e.g. "/ws?room=7".
    pub path: String,
    /// The `Sec-WebSocket-Key`, trimmed (base64 of 16 bytes); give it to [`upgrade_response`].
    pub key: String,
    /// Every `Sec-WebSocket-Protocol` token, in order (the client's preference).
    pub protocols: Vec<String>,
    /// The `Origin` header (sent by browsers), if present and UTF-8.
    pub origin: Option<String>,
    /// The `Host` header, if present and UTF-8.
    pub host: Option<String>,
    /// Bytes of the head, through the empty line; the client's frames start at
    /// `input[header_len..]`.
    pub header_len: usize,
}

/// Parses and validates a WebSocket upgrade request at the start of `input`:
/// [`parse_http_request`], then, in this order, the method is GET
/// ([`UpgradeError::MethodNotAllowed`], 405); `Upgrade` has the token `websocket` and
/// `Connection` the token `upgrade`, case-insensitively ([`UpgradeError::NotUpgrade`], 426);
/// `Sec-WebSocket-Version` is 13 ([`UpgradeError::UnsupportedVersion`], 426);
/// `Sec-WebSocket-Key` is present ([`UpgradeError::MissingKey`], 400) and the standard base64 of
/// 16 bytes ([`UpgradeError::BadKey`], 400).
///
/// `Host` and `Origin` are returned, not checked: which hosts and origins to allow is the
/// caller's policy (403 via [`error_response`]).
pub fn parse_upgrade_request(
    input: &[u8],
    limits: &UpgradeLimits,
) -> Result<Option<UpgradeRequest>, UpgradeError> {
    let Some(req) = parse_http_request(input, limits)? else {
        return Ok(None);
    };
    if req.method != "GET" {
        return Err(UpgradeError::MethodNotAllowed { method: req.method });
    }
    if !has_token(req.fields(), "upgrade", "websocket")
        || !has_token(req.fields(), "connection", "upgrade")
    {
        return Err(UpgradeError::NotUpgrade { path: req.path });
    }
    match req.header_bytes("sec-websocket-version") {
        Some(b"13") => {}
        got => {
            return Err(UpgradeError::UnsupportedVersion {
                got: got.map(|v| String::from_utf8_lossy(v).into_owned()),
            })
        }
    }
    let key = req
        .header_bytes("sec-websocket-key")
        .ok_or(UpgradeError::MissingKey)?;
    let key = match std::str::from_utf8(key) {
        Ok(key) if is_valid_key(key) => key.to_owned(),
        _ => {
            return Err(UpgradeError::BadKey {
                key: String::from_utf8_lossy(key).into_owned(),
            })
        }
    };
    Ok(Some(UpgradeRequest {
        protocols: req
            .header_tokens("sec-websocket-protocol")
            .map(str::to_owned)
            .collect(),
        origin: req.header("origin").map(str::to_owned),
        host: req.header("host").map(str::to_owned),
        path: req.path,
        key,
        header_len: req.header_len,
    }))
}

/// Whether `key` is the standard, padded base64 of exactly 16 bytes (24 characters).
fn is_valid_key(key: &str) -> bool {
    let mut out = [0; 18];
    key.len() == 24 && STANDARD.decode_slice(key, &mut out) == Ok(16)
}

/// The `Sec-WebSocket-Accept` value for `key`: base64(SHA-1(key ++
/// "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")) (RFC 6455 section 4.2.2).
///
/// ```
/// use gatekit_codec::websocket::accept_key;
///
/// assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(ACCEPT_GUID.as_bytes());
    STANDARD.encode(sha.finalize())
}

/// A client's `Sec-WebSocket-Key` from 16 bytes the caller drew at random (this crate does no
/// I/O, randomness included): their standard base64.
pub fn client_key(nonce: [u8; 16]) -> String {
    STANDARD.encode(nonce)
}

/// The server's `101 Switching Protocols` for a request with `key`, with the subprotocol it
/// chose (one of the request's [`protocols`](UpgradeRequest::protocols), a token) if any.
pub fn upgrade_response(key: &str, protocol: Option<&str>) -> Bytes {
    let mut out = BytesMut::with_capacity(160);
    out.put_slice(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ");
    out.put_slice(accept_key(key).as_bytes());
    out.put_slice(b"\r\n");
    if let Some(p) = protocol {
        put_header(&mut out, "Sec-WebSocket-Protocol", p);
    }
    out.put_slice(b"\r\n");
    out.freeze()
}

/// The standard reason phrase of `status`, empty for one not listed (an empty reason is valid
/// HTTP/1.1).
fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

fn put_header(out: &mut BytesMut, name: &str, value: &str) {
    out.put_slice(name.as_bytes());
    out.put_slice(b": ");
    out.put_slice(value.as_bytes());
    out.put_slice(b"\r\n");
}

/// A plain-text error answer that closes the connection: the status line with the standard
/// reason phrase, `Content-Type: text/plain; charset=utf-8`, `Content-Length`, `Connection:
/// close`, then `extra_headers` (names and values must not contain CR or LF), and the body
/// `message` + "\n".
pub fn error_response(status: u16, message: &str, extra_headers: &[(&str, &str)]) -> Bytes {
    let mut out = BytesMut::with_capacity(160 + message.len());
    out.put_slice(format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status)).as_bytes());
    put_header(&mut out, "Content-Type", "text/plain; charset=utf-8");
    put_header(&mut out, "Content-Length", &(message.len() + 1).to_string());
    put_header(&mut out, "Connection", "close");
    for (name, value) in extra_headers {
        put_header(&mut out, name, value);
    }
    out.put_slice(b"\r\n");
    out.put_slice(message.as_bytes());
    out.put_slice(b"\n");
    out.freeze()
}

/// A client's upgrade request: `GET path` with `Host`, `Upgrade: websocket`, `Connection:
/// Upgrade`, `Sec-WebSocket-Key: key` (see [`client_key`]), `Sec-WebSocket-Version: 13` and,
/// if `protocols` is not empty, `Sec-WebSocket-Protocol` with them comma-separated.
pub fn client_request(host: &str, path: &str, key: &str, protocols: &[&str]) -> Bytes {
    let mut out = BytesMut::with_capacity(160 + host.len() + path.len());
    out.put_slice(b"GET ");
    out.put_slice(path.as_bytes());
    out.put_slice(b" HTTP/1.1\r\n");
    put_header(&mut out, "Host", host);
    out.put_slice(b"Upgrade: websocket\r\nConnection: Upgrade\r\n");
    put_header(&mut out, "Sec-WebSocket-Key", key);
    out.put_slice(b"Sec-WebSocket-Version: 13\r\n");
    if !protocols.is_empty() {
        put_header(&mut out, "Sec-WebSocket-Protocol", &protocols.join(", "));
    }
    out.put_slice(b"\r\n");
    out.freeze()
}

/// A server's accepted upgrade, as the client reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeResponse {
    /// The status: always 101 (anything else is [`UpgradeError::Refused`]).
    pub status: u16,
    /// The subprotocol the server chose (`Sec-WebSocket-Protocol`), if any. Whether it is one the
    /// client offered is for the caller to check.
    pub protocol: Option<String>,
    /// Bytes of the head, through the empty line; the server's frames start at
    /// `input[header_len..]`.
    pub header_len: usize,
}

/// Parses the server's answer to [`client_request`] with `key`, at the start of `input`.
/// `Ok(None)` and the limit errors as for [`parse_http_request`]; then an answer other than 101
/// is [`UpgradeError::Refused`] (with the start of whatever body is in `input`; the body is not
/// waited for), a 101 without `Upgrade: websocket` or `Connection: Upgrade` is
/// [`UpgradeError::BadUpgradeResponse`], and a wrong or missing `Sec-WebSocket-Accept`
/// [`UpgradeError::BadAccept`].
pub fn parse_upgrade_response(
    input: &[u8],
    limits: &UpgradeLimits,
    key: &str,
) -> Result<Option<UpgradeResponse>, UpgradeError> {
    let head = &input[..input.len().min(limits.max_header_bytes)];
    with_header_table(limits, |table| {
        let mut resp = httparse::Response::new(table);
        let header_len = match resp.parse(head) {
            Ok(httparse::Status::Partial) => return partial(input, limits).map(|()| None),
            Ok(httparse::Status::Complete(n)) => n,
            Err(e) => return Err(map_error(e, head, false, limits)),
        };
        check_version(resp.version)?;
        let status = resp.code.unwrap_or_default();
        if status != 101 {
            let body = &input[header_len..];
            return Err(UpgradeError::Refused {
                status,
                body_start: String::from_utf8_lossy(&body[..body.len().min(BODY_START)])
                    .into_owned(),
            });
        }
        let fields = || httparse_fields(resp.headers);
        if !has_token(fields(), "upgrade", "websocket") {
            return Err(UpgradeError::BadUpgradeResponse {
                missing: "Upgrade: websocket",
            });
        }
        if !has_token(fields(), "connection", "upgrade") {
            return Err(UpgradeError::BadUpgradeResponse {
                missing: "Connection: Upgrade",
            });
        }
        let expected = accept_key(key);
        let got = find(fields(), "sec-websocket-accept");
        if got != Some(expected.as_bytes()) {
            return Err(UpgradeError::BadAccept {
                expected,
                got: got.map(|v| String::from_utf8_lossy(v).into_owned()),
            });
        }
        let protocol = find(fields(), "sec-websocket-protocol")
            .map(|v| String::from_utf8_lossy(v))
            .map(Cow::into_owned);
        Ok(Some(UpgradeResponse {
            status,
            protocol,
            header_len,
        }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    /// The bytes as text with each CR LF shown as a visible `\\r\\n` (snapshots keep them).
    fn text(bytes: &[u8]) -> String {
        String::from_utf8(bytes.to_vec())
            .unwrap()
            .replace("\r\n", "\\r\\n\n")
    }

    #[test]
    fn rfc_6455_accept_key() {
        assert_eq!(accept_key(KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(client_key(*b"the sample nonce"), KEY);
    }

    #[test]
    fn keys() {
        assert!(is_valid_key(KEY));
        assert!(is_valid_key("AAAAAAAAAAAAAAAAAAAAAA=="));
        for bad in [
            "",
            "abc",
            "dGhlIHNhbXBsZSBub25jZQ",
            "dGhlIHNhbXBsZSBub25jZQ=",
            "dGhlIHNhbXBsZSBub25jZQ===",
            "dGhlIHNhbXBsZSBub25jZSE=", // 17 bytes
            "dGhlIHNhbXBsZSBub25jZ!==",
            "dGhlIHNhbXBsZSBub25jZR==", // non-canonical trailing bits
        ] {
            assert!(!is_valid_key(bad), "{bad}");
        }
    }

    #[test]
    fn responses() {
        let mut all = String::new();
        all += &text(&upgrade_response(KEY, None));
        all += "----\n";
        all += &text(&upgrade_response(KEY, Some("mqtt")));
        all += "----\n";
        all += &text(&error_response(
            403,
            "origin \"https://evil.example\" is not allowed",
            &[],
        ));
        all += "----\n";
        all += &text(&error_response(
            503,
            "gate is full",
            &[("Retry-After", "5")],
        ));
        all += "----\n";
        all += &text(&error_response(599, "odd", &[]));
        insta::assert_snapshot!(all);
    }

    #[test]
    fn client_request_round_trip() {
        let req = client_request("gate.example:8080", "/ws?x=1", KEY, &["mqtt", "pomelo"]);
        insta::assert_snapshot!(text(&req));
        let up = parse_upgrade_request(&req, &UpgradeLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(up.path, "/ws?x=1");
        assert_eq!(up.key, KEY);
        assert_eq!(up.protocols, ["mqtt", "pomelo"]);
        assert_eq!(up.host.as_deref(), Some("gate.example:8080"));
        assert_eq!(up.origin, None);
        assert_eq!(up.header_len, req.len());

        let resp = upgrade_response(&up.key, Some("mqtt"));
        let mut wire = resp.to_vec();
        wire.extend_from_slice(&[0x81, 0x00]);
        let got = parse_upgrade_response(&wire, &UpgradeLimits::default(), KEY)
            .unwrap()
            .unwrap();
        assert_eq!(
            got,
            UpgradeResponse {
                status: 101,
                protocol: Some("mqtt".into()),
                header_len: resp.len()
            }
        );
        for cut in 0..resp.len() {
            assert_eq!(
                parse_upgrade_response(&resp[..cut], &UpgradeLimits::default(), KEY),
                Ok(None)
            );
        }
    }

    #[test]
    fn header_lookup() {
        let req = b"GET / HTTP/1.1\r\nconnection: keep-alive\r\nX: \xff\r\nCONNECTION:  Upgrade ,, x \r\n\r\n";
        let req = parse_http_request(req, &UpgradeLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(req.header("Connection"), Some("keep-alive"));
        assert_eq!(req.header("x"), None);
        assert_eq!(req.header_bytes("x"), Some(&b"\xff"[..]));
        assert_eq!(req.header("missing"), None);
        assert_eq!(
            req.header_tokens("connection").collect::<Vec<_>>(),
            ["keep-alive", "Upgrade", "x"]
        );
    }

    #[test]
    fn big_header_table_is_bounded() {
        let limits = UpgradeLimits {
            max_header_bytes: 30,
            max_headers: usize::MAX,
        };
        assert_eq!(
            parse_http_request(b"GET / HTTP/1.1\r\na:\r\nb:\r\n\r\n", &limits)
                .unwrap()
                .unwrap()
                .headers
                .len(),
            2
        );
    }

    #[test]
    fn client_side_refusals() {
        let limits = UpgradeLimits::default();
        let refused = error_response(503, "gate is full", &[]);
        assert_eq!(
            parse_upgrade_response(&refused, &limits, KEY),
            Err(UpgradeError::Refused {
                status: 503,
                body_start: "gate is full\n".into()
            })
        );
        let wrong = upgrade_response("AAAAAAAAAAAAAAAAAAAAAA==", None);
        assert!(matches!(
            parse_upgrade_response(&wrong, &limits, KEY),
            Err(UpgradeError::BadAccept { got: Some(_), .. })
        ));
        let no_accept = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
        assert_eq!(
            parse_upgrade_response(no_accept, &limits, KEY),
            Err(UpgradeError::BadAccept {
                expected: accept_key(KEY),
                got: None
            })
        );
        let no_upgrade = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n";
        assert_eq!(
            parse_upgrade_response(no_upgrade, &limits, KEY),
            Err(UpgradeError::BadUpgradeResponse {
                missing: "Upgrade: websocket"
            })
        );
        let no_conn = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\n\r\n";
        assert_eq!(
            parse_upgrade_response(no_conn, &limits, KEY),
            Err(UpgradeError::BadUpgradeResponse {
                missing: "Connection: Upgrade"
            })
        );
        assert_eq!(
            parse_upgrade_response(b"HTTP/1.0 101 OK\r\n\r\n", &limits, KEY),
            Err(UpgradeError::UnsupportedHttpVersion {
                version: "HTTP/1.0".into()
            })
        );
        assert_eq!(
            parse_upgrade_response(b"HTTP/2 101 OK\r\n\r\n", &limits, KEY),
            Err(UpgradeError::UnsupportedHttpVersion {
                version: "HTTP/2".into()
            })
        );
    }
}
