use super::*;
use proptest::prelude::*;
use std::collections::VecDeque;
use std::future::poll_fn;

/// A peer scripted byte by byte: each read gives the next chunk (or what fits of it), every
/// write is kept.
#[derive(Default)]
struct Script {
    chunks: VecDeque<Vec<u8>>,
    written: Vec<u8>,
    shut: bool,
}

impl AsyncRead for Script {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(mut chunk) = self.chunks.pop_front() {
            let take = chunk.len().min(buf.remaining());
            buf.put_slice(&chunk[..take]);
            if take < chunk.len() {
                self.chunks.push_front(chunk.split_off(take));
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Script {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.written.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.shut = true;
        Poll::Ready(Ok(()))
    }
}

/// A client frame: masked with `mask`.
fn frame(fin: bool, opcode: u8, mask: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    let header = FrameHeader {
        fin,
        opcode: Opcode::from_u8(opcode).expect("valid opcode"),
        mask: Some(mask),
        payload_len: payload.len() as u64,
    };
    header.encode_to(&mut out);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(mask, 0, &mut out[start..]);
    out.to_vec()
}

fn server(chunks: Vec<Vec<u8>>, max: u64) -> WebSocketStream<Script> {
    let script = Script {
        chunks: chunks.into(),
        ..Script::default()
    };
    WebSocketStream::new(script, Role::Server, max, None)
}

/// Reads to the end (or the first error) through a 4 KiB buffer, as the driver does.
async fn read_all(ws: &mut WebSocketStream<Script>) -> (Vec<u8>, Option<io::Error>) {
    let mut out = Vec::new();
    loop {
        let mut space = [0u8; 4096];
        let mut buf = ReadBuf::new(&mut space);
        match poll_fn(|cx| Pin::new(&mut *ws).poll_read(cx, &mut buf)).await {
            Ok(()) if buf.filled().is_empty() => return (out, None),
            Ok(()) => out.extend_from_slice(buf.filled()),
            Err(e) => return (out, Some(e)),
        }
    }
}

fn close_sent(ws: &WebSocketStream<Script>) -> Option<(u16, String)> {
    // The server's frames are unmasked: find the Close frame among them.
    let mut rest = &ws.get_ref().written[..];
    while !rest.is_empty() {
        let (h, n) = decode_header(rest, Role::Client, 1 << 20).unwrap().unwrap();
        let payload = &rest[n..n + h.payload_len as usize];
        if h.opcode == Opcode::Close {
            let (code, reason) = parse_close_payload(payload).unwrap().unwrap();
            return Some((code, reason.to_owned()));
        }
        rest = &rest[n + h.payload_len as usize..];
    }
    None
}

fn close_code_of(e: &io::Error) -> u16 {
    e.get_ref()
        .and_then(|e| e.downcast_ref::<WebSocketClose>())
        .map(|c| c.code)
        .expect("a WebSocketClose error")
}

proptest! {
    /// Whatever the frames and wherever the reads cut the bytes, the stream read is the
    /// messages' payloads in order, and pings interleaved are answered with their payload.
    #[test]
    fn any_split_of_any_frames_reads_the_payloads(
        messages in proptest::collection::vec(
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..4), 1..6),
        masks in proptest::collection::vec(any::<[u8; 4]>(), 20),
        ping in proptest::collection::vec(any::<u8>(), 0..126),
        cuts in proptest::collection::vec(1usize..50, 1..40),
    ) {
        let mut raw = Vec::new();
        let mut expected = Vec::new();
        let mut m = 0;
        for fragments in &messages {
            for (i, f) in fragments.iter().enumerate() {
                let opcode = if i == 0 { 2 } else { 0 };
                raw.extend(frame(i + 1 == fragments.len(), opcode, masks[m % masks.len()], f));
                m += 1;
                expected.extend_from_slice(f);
                if i == 0 {
                    raw.extend(frame(true, 9, masks[m % masks.len()], &ping));
                }
            }
        }
        let mut chunks = Vec::new();
        let mut at = 0;
        for c in cuts.iter().cycle() {
            if at >= raw.len() { break; }
            let end = (at + c).min(raw.len());
            chunks.push(raw[at..end].to_vec());
            at = end;
        }
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let (got, err, written) = rt.block_on(async {
            let mut ws = server(chunks, 1 << 20);
            let (got, err) = read_all(&mut ws).await;
            (got, err.map(|e| e.to_string()), ws.get_ref().written.clone())
        });
        prop_assert_eq!(err, None);
        prop_assert_eq!(got, expected);
        // One pong per ping, each with the ping's payload.
        let mut pongs = 0;
        let mut rest = &written[..];
        while !rest.is_empty() {
            let (h, n) = decode_header(rest, Role::Client, 1 << 20).unwrap().unwrap();
            prop_assert_eq!(h.opcode, Opcode::Pong);
            prop_assert_eq!(&rest[n..n + h.payload_len as usize], &ping[..]);
            rest = &rest[n + h.payload_len as usize..];
            pongs += 1;
        }
        prop_assert_eq!(pongs, messages.len());
    }
}

#[tokio::test]
async fn a_close_ends_the_reading_side_and_is_answered_at_shutdown() {
    let mut payload = BytesMut::new();
    encode_close_payload(1001, "bye", &mut payload);
    let mut ws = server(
        vec![
            frame(true, 2, [1, 2, 3, 4], b"last"),
            frame(true, 8, [5, 6, 7, 8], &payload),
            frame(true, 2, [1, 2, 3, 4], b"after close: ignored"),
        ],
        1024,
    );
    let (got, err) = read_all(&mut ws).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(got, b"last");
    assert!(ws.peer_closed());
    // Like a half-close: what the agent still owes goes out first, then the Close in reply.
    assert_eq!(close_sent(&ws), None);
    let n = poll_fn(|cx| Pin::new(&mut ws).poll_write(cx, b"answer"))
        .await
        .unwrap();
    assert_eq!(n, 6);
    poll_fn(|cx| Pin::new(&mut ws).poll_shutdown(cx))
        .await
        .unwrap();
    let written = ws.get_ref().written.clone();
    assert_eq!(&written[..8], b"\x82\x06answer");
    assert_eq!(close_sent(&ws), Some((1001, String::new())));
    assert!(ws.get_ref().shut);
    // Nothing is written after the Close.
    let e = poll_fn(|cx| Pin::new(&mut ws).poll_write(cx, b"late"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
}

#[tokio::test]
async fn each_protocol_violation_closes_with_its_code() {
    let mask = [9, 8, 7, 6];
    let mut bad_utf8 = BytesMut::new();
    bad_utf8.extend_from_slice(&1000u16.to_be_bytes());
    bad_utf8.extend_from_slice(&[0xff, 0xfe]);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("text frame", frame(true, 1, mask, b"hi"), 1003),
        ("unmasked frame", vec![0x82, 0x02, b'h', b'i'], 1002),
        ("RSV1 set", vec![0xC2, 0x80, 0, 0, 0, 0], 1002),
        ("reserved opcode 3", vec![0x83, 0x80, 0, 0, 0, 0], 1002),
        ("reserved opcode 0xB", vec![0x8B, 0x80, 0, 0, 0, 0], 1002),
        ("ping of 126 bytes", frame(true, 9, mask, &[0; 126]), 1002),
        ("fragmented ping", frame(false, 9, mask, b"x"), 1002),
        ("continuation first", frame(true, 0, mask, b"x"), 1002),
        (
            "binary inside a fragmented message",
            [frame(false, 2, mask, b"a"), frame(true, 2, mask, b"b")].concat(),
            1002,
        ),
        (
            "close code 1005",
            frame(true, 8, mask, &1005u16.to_be_bytes()),
            1002,
        ),
        (
            "close code 999",
            frame(true, 8, mask, &999u16.to_be_bytes()),
            1002,
        ),
        ("close of one byte", frame(true, 8, mask, &[3]), 1002),
        (
            "close reason not UTF-8",
            frame(true, 8, mask, &bad_utf8),
            1007,
        ),
    ];
    for (what, bytes, code) in cases {
        let mut ws = server(vec![bytes], 1024);
        let (_, err) = read_all(&mut ws).await;
        let err = err.unwrap_or_else(|| panic!("{what}: no error"));
        assert_eq!(close_code_of(&err), code, "{what}: {err}");
        assert_eq!(close_sent(&ws).map(|c| c.0), Some(code), "{what}");
        // Reading again gives the same error; shutting down sends no second Close.
        assert!(read_all(&mut ws).await.1.is_some(), "{what}");
        let before = ws.get_ref().written.len();
        poll_fn(|cx| Pin::new(&mut ws).poll_shutdown(cx))
            .await
            .unwrap();
        assert_eq!(ws.get_ref().written.len(), before, "{what}");
        assert!(ws.get_ref().shut, "{what}");
    }
}

#[tokio::test]
async fn a_message_over_the_limit_is_refused_from_its_header() {
    // The header announces 2,000 bytes; none of them is sent, the refusal comes at once.
    let header = FrameHeader {
        fin: true,
        opcode: Opcode::Binary,
        mask: Some([1, 1, 1, 1]),
        payload_len: 2000,
    };
    let mut h = BytesMut::new();
    header.encode_to(&mut h);
    let mut ws = server(vec![h.to_vec()], 1000);
    let (_, err) = read_all(&mut ws).await;
    assert_eq!(close_code_of(&err.expect("refused")), 1009);
    // Fragments are counted together: 600 + 600 > 1000.
    let mut ws = server(
        vec![
            frame(false, 2, [1, 2, 3, 4], &[0; 600]),
            frame(true, 0, [1, 2, 3, 4], &[0; 600]),
        ],
        1000,
    );
    let (got, err) = read_all(&mut ws).await;
    assert_eq!(got.len(), 600);
    assert_eq!(close_code_of(&err.expect("refused")), 1009);
}

#[tokio::test]
async fn bytes_after_the_upgrade_are_read_first() {
    let first = frame(true, 2, [4, 3, 2, 1], b"early ");
    let script = Script {
        chunks: vec![frame(true, 2, [4, 3, 2, 1], b"then late")].into(),
        ..Script::default()
    };
    let mut ws = WebSocketStream::new(script, Role::Server, 1024, Some(BytesMut::from(&first[..])));
    let (got, err) = read_all(&mut ws).await;
    assert!(err.is_none());
    assert_eq!(got, b"early then late");
}

#[tokio::test]
async fn server_writes_are_binary_frames_and_shutdown_sends_close() {
    let mut ws = server(vec![], 1024);
    let n = poll_fn(|cx| Pin::new(&mut ws).poll_write(cx, b"hello"))
        .await
        .unwrap();
    assert_eq!(n, 5);
    ws.set_close(1001, "going away");
    poll_fn(|cx| Pin::new(&mut ws).poll_shutdown(cx))
        .await
        .unwrap();
    let written = ws.get_ref().written.clone();
    assert_eq!(&written[..7], &[0x82, 0x05, b'h', b'e', b'l', b'l', b'o']);
    assert_eq!(close_sent(&ws), Some((1001, "going away".to_owned())));
}

/// A client and a server over an in-memory pipe: both directions, large writes, the close
/// handshake.
#[tokio::test]
async fn client_and_server_talk_through_a_pipe() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (a, b) = tokio::io::duplex(1024);
    let mut client = WebSocketStream::new(a, Role::Client, 100_000, None);
    let mut server = WebSocketStream::new(b, Role::Server, 100_000, None);
    let big: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    let sent = big.clone();
    let writer = tokio::spawn(async move {
        client.write_all(&sent).await.unwrap();
        client.flush().await.unwrap();
        let mut back = vec![0; 5];
        client.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"reply");
        client.shutdown().await.unwrap();
        // The server answers the Close and ends.
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    });
    let mut got = vec![0; big.len()];
    server.read_exact(&mut got).await.unwrap();
    assert_eq!(got, big);
    server.write_all(b"reply").await.unwrap();
    server.flush().await.unwrap();
    let mut rest = Vec::new();
    server.read_to_end(&mut rest).await.unwrap();
    assert!(server.peer_closed());
    server.shutdown().await.unwrap();
    writer.await.unwrap();
}
