//! The `/metrics` endpoint: just enough HTTP/1.1 for a scraper, one request per connection.
//!
//! The request head is read with bounds (8 KiB, 5 s) and parsed by httparse; `GET` (or `HEAD`)
//! `/metrics` gets the metrics, any other path 404, any other method 405, anything that is not
//! HTTP 400, a head too large 431, a head too slow 408. Every answer closes the connection.

use super::{Metrics, CONTENT_TYPE};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// Largest request head read.
pub const MAX_HEAD: usize = 8 * 1024;
/// Time given to a client to send its request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time given to a client to take the response.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 64;
/// Headers a request may have.
const MAX_HEADERS: usize = 64;

/// Serves `GET /metrics` on `listener` until aborted (aborting it also ends the connections
/// being served).
pub fn serve(metrics: Arc<Metrics>, listener: TcpListener) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _peer)) => {
                        if conns.len() >= MAX_CONNECTIONS {
                            drop(stream);
                            continue;
                        }
                        let _ = stream.set_nodelay(true);
                        let m = metrics.clone();
                        conns.spawn(async move { handle(&m, stream).await });
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "metrics endpoint: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
    })
}

/// What the request head asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Head {
    /// A complete head.
    Request { method: String, path: String },
    /// More bytes are needed.
    Partial,
    /// Not HTTP.
    Bad,
    /// Too many headers.
    TooLarge,
}

/// Parses the bytes of a request head read so far. Never panics.
pub(super) fn parse(buf: &[u8]) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(_)) => match (req.method, req.path) {
            (Some(method), Some(path)) => Head::Request {
                method: method.to_owned(),
                path: path.to_owned(),
            },
            _ => Head::Bad,
        },
        Ok(httparse::Status::Partial) => Head::Partial,
        Err(httparse::Error::TooManyHeaders) => Head::TooLarge,
        Err(_) => Head::Bad,
    }
}

/// Reads a request head: at most [`MAX_HEAD`] bytes. `None`: the client left before sending
/// anything (or the connection broke).
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> Option<Head> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let room = (MAX_HEAD - buf.len()).min(chunk.len());
        let n = match stream.read(&mut chunk[..room]).await {
            Ok(0) | Err(_) => return (!buf.is_empty()).then_some(Head::Bad),
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        match parse(&buf) {
            Head::Partial if buf.len() >= MAX_HEAD => return Some(Head::TooLarge),
            Head::Partial => {}
            head => return Some(head),
        }
    }
}

fn response(status: &str, extra: &str, content_type: &str, body: &str, with_body: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if with_body {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

fn plain(status: &str, extra: &str, body: &str) -> Vec<u8> {
    response(status, extra, "text/plain; charset=utf-8", body, true)
}

/// The response to a head.
pub(super) fn answer(metrics: &Metrics, head: Head) -> Vec<u8> {
    match head {
        Head::Request { method, path } => {
            let path_only = path.split_once('?').map_or(path.as_str(), |(p, _)| p);
            if path_only != "/metrics" {
                return plain("404 Not Found", "", "not found; metrics are at /metrics\n");
            }
            match method.as_str() {
                "GET" | "HEAD" => response(
                    "200 OK",
                    "",
                    CONTENT_TYPE,
                    &metrics.encode(),
                    method == "GET",
                ),
                _ => plain(
                    "405 Method Not Allowed",
                    "Allow: GET, HEAD\r\n",
                    "method not allowed\n",
                ),
            }
        }
        Head::Bad | Head::Partial => plain("400 Bad Request", "", "bad request\n"),
        Head::TooLarge => plain(
            "431 Request Header Fields Too Large",
            "",
            "request head too large\n",
        ),
    }
}

/// Serves one connection: one request, one response, then the connection is closed.
pub(super) async fn handle<S: AsyncRead + AsyncWrite + Unpin>(metrics: &Metrics, mut stream: S) {
    let out = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(None) => return,
        Ok(Some(head)) => answer(metrics, head),
        Err(_) => plain("408 Request Timeout", "", "request timeout\n"),
    };
    let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(&out).await?;
        stream.shutdown().await?;
        // Reads what the client still sends (a body we did not read) until it closes, so the
        // close does not reset the connection under the response: bounded in bytes and time.
        let mut sink = [0u8; 1024];
        let mut left = 64 * 1024usize;
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
        Ok::<(), std::io::Error>(())
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    async fn exchange(request: &[u8]) -> String {
        let m = Metrics::new("gate-1");
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let task = tokio::spawn(async move { handle(&m, server).await });
        client.write_all(request).await.unwrap();
        // The request ends here (a head cut short is a bad request, not a slow one).
        client.shutdown().await.unwrap();
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        drop(client);
        task.await.unwrap();
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    async fn metrics_path() {
        let out = exchange(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains(&format!("Content-Type: {CONTENT_TYPE}\r\n")));
        assert!(head.contains(&format!("Content-Length: {}\r\n", body.len())));
        assert!(head.lines().any(|l| l == "Connection: close"));
        assert!(body.contains("gatekit_gate_info{gate=\"gate-1\"} 1\n"));
        assert!(body.ends_with("# EOF\n"));
    }

    #[tokio::test]
    async fn head_has_no_body() {
        let out = exchange(b"HEAD /metrics?x=1 HTTP/1.1\r\n\r\n").await;
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.ends_with("\r\n\r\n"));
    }

    #[tokio::test]
    async fn errors() {
        let status = |out: String| out.lines().next().unwrap_or_default().to_owned();
        assert_eq!(
            status(exchange(b"GET / HTTP/1.1\r\n\r\n").await),
            "HTTP/1.1 404 Not Found"
        );
        assert_eq!(
            status(exchange(b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc").await),
            "HTTP/1.1 405 Method Not Allowed"
        );
        assert_eq!(
            status(exchange(b"\x00\x01garbage\r\n\r\n").await),
            "HTTP/1.1 400 Bad Request"
        );
        // Ends before the head does.
        assert_eq!(
            status(exchange(b"GET /metrics HTTP/1.1\r\n").await),
            "HTTP/1.1 400 Bad Request"
        );
        let mut big = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_HEAD + 100, b'a');
        assert_eq!(
            status(exchange(&big).await),
            "HTTP/1.1 431 Request Header Fields Too Large"
        );
        assert_eq!(exchange(b"").await, "");
    }

    #[tokio::test(start_paused = true)]
    async fn slow_head_times_out() {
        let m = Metrics::new("gate-1");
        let (mut client, server) = tokio::io::duplex(1024);
        let task = tokio::spawn(async move { handle(&m, server).await });
        client.write_all(b"GET /met").await.unwrap();
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        task.await.unwrap();
        assert!(out.starts_with(b"HTTP/1.1 408 Request Timeout\r\n"));
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let head = parse(&bytes);
            let m = Metrics::new("g");
            let out = answer(&m, head);
            prop_assert!(out.starts_with(b"HTTP/1.1 "));
        }
    }
}
