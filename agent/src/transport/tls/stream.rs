//! A TLS server stream on rustls's unbuffered API that holds no buffer while idle.
//!
//! tokio-rustls keeps rustls's buffered `ServerConnection`, whose read buffer is a zero-filled
//! 4 KiB `Vec` kept for the connection's whole life. Here rustls only sees the bytes read: each
//! read from the socket goes into a buffer on the stack, and what the connection keeps between
//! reads is only what is unfinished — the start of a record not fully received, plaintext the
//! caller has not read yet, TLS records not yet written. Each of those buffers is released as soon
//! as it is empty, so an idle connection holds the rustls connection state and nothing else.

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes read from the socket at a time.
const READ_SIZE: usize = 4096;
/// Plaintext encrypted per `poll_write` at most (one full TLS record).
const WRITE_SIZE: usize = 16 * 1024;

/// The most bytes of TLS records the stream keeps unsent: one write's (a `poll_write` waits until
/// the records of the one before are out), with room for the record overhead and what reads
/// queue (a key update's answer, an alert).
pub const MAX_UNSENT: usize = WRITE_SIZE + 512;
/// Ciphertext kept unprocessed at most: a handshake message may take 64 KiB (rustls's own bound),
/// a record 16 KiB and its overhead.
const MAX_INCOMING: usize = 0x1_0000 + 18 * 1024;

/// A server-side TLS stream over `io`.
pub(crate) struct TlsStream<IO> {
    io: IO,
    conn: UnbufferedServerConnection,
    /// Ciphertext received and not yet processed (the start of a record).
    incoming: Vec<u8>,
    /// Plaintext decrypted and not yet read, from `plaintext_at` on.
    plaintext: Vec<u8>,
    plaintext_at: usize,
    /// TLS records to send, from `outgoing_at` on.
    outgoing: Vec<u8>,
    outgoing_at: usize,
    /// The peer sent close_notify.
    peer_closed: bool,
    /// The socket reached its end.
    eof: bool,
    /// close_notify is queued in `outgoing` (or sent).
    close_queued: bool,
    /// The connection failed (rustls refused what the peer sent): every later read or write
    /// fails the same way, once the alert (if any) was sent.
    failed: Option<rustls::Error>,
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// What to do when the connection can send application data.
enum Write<'a> {
    Nothing,
    Data(&'a [u8]),
    CloseNotify,
}

impl<IO: AsyncRead + AsyncWrite + Unpin> TlsStream<IO> {
    /// A stream at the start of the handshake; [`TlsStream::poll_handshake`] completes it.
    pub fn new(io: IO, conn: UnbufferedServerConnection) -> Self {
        TlsStream {
            io,
            conn,
            incoming: Vec::new(),
            plaintext: Vec::new(),
            plaintext_at: 0,
            outgoing: Vec::new(),
            outgoing_at: 0,
            peer_closed: false,
            eof: false,
            close_queued: false,
            failed: None,
        }
    }

    /// The rustls connection (ALPN protocol, SNI, version...).
    #[cfg(test)]
    pub fn connection(&self) -> &UnbufferedServerConnection {
        &self.conn
    }

    /// Runs the handshake until it is done (application data may flow both ways) and its last
    /// records are written.
    pub fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.failed.is_none() {
                // A failure is recorded in `failed`, with its alert queued in `outgoing`.
                let _ = self.process(Write::Nothing);
            }
            let written = self.poll_write_outgoing(cx);
            if let Some(e) = &self.failed {
                let e = tls_error(e.clone());
                ready!(written)?;
                return Poll::Ready(Err(e));
            }
            let written = written?;
            if !self.conn.is_handshaking() {
                ready!(written);
                return Poll::Ready(Ok(()));
            }
            if self.eof {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "tls handshake eof",
                )));
            }
            match ready!(self.poll_fill(cx)) {
                Ok(()) => {}
                // Send the alert, then fail.
                Err(_) if self.failed.is_some() => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Processes the received records and, once the handshake allows it, does `write`. Returns
    /// whether `write` was done. Fails only when the connection failed (`self.failed`).
    fn process(&mut self, mut write: Write<'_>) -> io::Result<bool> {
        if let Some(e) = &self.failed {
            return Err(tls_error(e.clone()));
        }
        let mut done = matches!(write, Write::Nothing);
        // Each turn handles one state; the handshake takes a handful, a read one per record.
        loop {
            let UnbufferedStatus { mut discard, state } =
                self.conn.process_tls_records(&mut self.incoming);
            let mut stop = false;
            match state {
                Err(e) => {
                    self.incoming.drain(..discard.min(self.incoming.len()));
                    self.fail(e.clone());
                    return Err(tls_error(e));
                }
                Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                    while let Some(record) = traffic.next_record() {
                        match record {
                            Ok(record) => {
                                discard += record.discard;
                                if self.plaintext_at == self.plaintext.len() {
                                    self.plaintext.clear();
                                    self.plaintext_at = 0;
                                }
                                self.plaintext.extend_from_slice(record.payload);
                            }
                            Err(e) => {
                                drop(traffic);
                                self.incoming.drain(..discard.min(self.incoming.len()));
                                self.fail(e.clone());
                                return Err(tls_error(e));
                            }
                        }
                    }
                }
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    encode_into(&mut self.outgoing, |out| encode.encode(out));
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    // Queued in `outgoing`, which is written in order before anything else.
                    transmit.done();
                }
                Ok(ConnectionState::PeerClosed) => self.peer_closed = true,
                Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                    match std::mem::replace(&mut write, Write::Nothing) {
                        Write::Nothing => {}
                        Write::Data(data) => {
                            encrypt_into(&mut self.outgoing, |out| traffic.encrypt(data, out))
                                .map_err(io::Error::other)?;
                            done = true;
                        }
                        Write::CloseNotify => {
                            encrypt_into(&mut self.outgoing, |out| traffic.queue_close_notify(out))
                                .map_err(io::Error::other)?;
                            self.close_queued = true;
                            done = true;
                        }
                    }
                    stop = true;
                }
                Ok(ConnectionState::Closed) | Ok(ConnectionState::BlockedHandshake) => stop = true,
                // Early (0-RTT) data, if the config accepts it: dropped, as the buffered
                // `ServerConnection` leaves it unread unless asked for it.
                Ok(ConnectionState::ReadEarlyData(mut early)) => {
                    while let Some(record) = early.next_record() {
                        match record {
                            Ok(record) => discard += record.discard,
                            Err(e) => {
                                drop(early);
                                self.incoming.drain(..discard.min(self.incoming.len()));
                                self.fail(e.clone());
                                return Err(tls_error(e));
                            }
                        }
                    }
                }
                // A state this version of rustls does not have.
                Ok(_) => {
                    let e = rustls::Error::General("unexpected TLS state".into());
                    self.incoming.drain(..discard.min(self.incoming.len()));
                    self.fail(e.clone());
                    return Err(tls_error(e));
                }
            }
            self.incoming.drain(..discard.min(self.incoming.len()));
            if stop {
                break;
            }
        }
        if self.incoming.is_empty() && self.incoming.capacity() > 0 {
            self.incoming = Vec::new();
        }
        Ok(done)
    }

    /// Records `e` and queues what rustls has to send about it (its alert).
    fn fail(&mut self, e: rustls::Error) {
        self.failed = Some(e);
        // rustls keeps the alert for the next call, which gives it before looking at the records
        // again; it must not be called once there is nothing left to send (it would process the
        // records that failed a second time).
        while self.conn.wants_write() {
            let status = self.conn.process_tls_records(&mut self.incoming);
            match status.state {
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    encode_into(&mut self.outgoing, |out| encode.encode(out));
                }
                _ => break,
            }
        }
        self.incoming = Vec::new();
    }

    /// Writes `outgoing`; `Ready` once it is empty.
    fn poll_write_outgoing(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.outgoing_at < self.outgoing.len() {
            let n =
                ready!(Pin::new(&mut self.io).poll_write(cx, &self.outgoing[self.outgoing_at..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.outgoing_at += n;
        }
        if self.outgoing.capacity() > 0 {
            self.outgoing = Vec::new();
            self.outgoing_at = 0;
        }
        Poll::Ready(Ok(()))
    }

    /// Reads once from the socket into `incoming` and processes it. `Ready(Ok)` after bytes or
    /// the end of the stream (`eof`).
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.incoming.len() >= MAX_INCOMING {
            let e = rustls::Error::General("TLS message too large".into());
            self.fail(e.clone());
            return Poll::Ready(Err(tls_error(e)));
        }
        let mut buf = [0u8; READ_SIZE];
        let mut rb = ReadBuf::new(&mut buf);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut rb))?;
        if rb.filled().is_empty() {
            self.eof = true;
        } else {
            self.incoming.extend_from_slice(rb.filled());
        }
        self.process(Write::Nothing)?;
        Poll::Ready(Ok(()))
    }
}

/// Appends what `encode` writes to `out`, growing it as asked.
fn encode_into(out: &mut Vec<u8>, mut encode: impl FnMut(&mut [u8]) -> Result<usize, EncodeError>) {
    let at = out.len();
    let mut room = 1024;
    loop {
        out.resize(at + room, 0);
        match encode(&mut out[at..]) {
            Ok(n) => {
                out.truncate(at + n);
                return;
            }
            Err(EncodeError::InsufficientSize(s)) => room = s.required_size,
            Err(_) => {
                out.truncate(at);
                return;
            }
        }
    }
}

/// Appends what `encrypt` writes to `out`, growing it as asked.
fn encrypt_into(
    out: &mut Vec<u8>,
    mut encrypt: impl FnMut(&mut [u8]) -> Result<usize, EncryptError>,
) -> Result<(), EncryptError> {
    let at = out.len();
    let mut room = 0;
    loop {
        out.resize(at + room, 0);
        match encrypt(&mut out[at..]) {
            Ok(n) => {
                out.truncate(at + n);
                return Ok(());
            }
            Err(EncryptError::InsufficientSize(s)) if s.required_size > room => {
                room = s.required_size
            }
            Err(e) => {
                out.truncate(at);
                return Err(e);
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.plaintext_at < this.plaintext.len() {
                let n = buf
                    .remaining()
                    .min(this.plaintext.len() - this.plaintext_at);
                buf.put_slice(&this.plaintext[this.plaintext_at..this.plaintext_at + n]);
                this.plaintext_at += n;
                if this.plaintext_at == this.plaintext.len() {
                    this.plaintext = Vec::new();
                    this.plaintext_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if let Some(e) = this.failed.clone() {
                // Send the alert first (best effort).
                let _ = this.poll_write_outgoing(cx);
                return Poll::Ready(Err(tls_error(e)));
            }
            if this.peer_closed {
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "peer closed connection without sending TLS close_notify",
                )));
            }
            // Records rustls wants sent (a key update's answer) go out as reads happen.
            if let Poll::Ready(Err(e)) = this.poll_write_outgoing(cx) {
                return Poll::Ready(Err(e));
            }
            ready!(this.poll_fill(cx))?;
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // Records already queued go first: at most one write's worth is ever kept.
        ready!(this.poll_write_outgoing(cx))?;
        if this.close_queued {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let data = &data[..data.len().min(WRITE_SIZE)];
        if !this.process(Write::Data(data))? {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "TLS handshake not complete",
            )));
        }
        // Start sending; what the socket does not take now waits for the next write or flush.
        if let Poll::Ready(Err(e)) = this.poll_write_outgoing(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(data.len()))
    }

    /// Gathers the slices (up to one record's worth) and encrypts them as one record: a layer
    /// above that writes a header and its payload together (the WebSocket stream does) gets one
    /// TLS record for both, not one for each.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let first = bufs.iter().find(|b| !b.is_empty());
        match first {
            None => self.poll_write(cx, &[]),
            Some(b) if b.len() == total.min(WRITE_SIZE) => self.poll_write(cx, b),
            Some(_) => {
                let mut gather = [0u8; WRITE_SIZE];
                let mut n = 0;
                for b in bufs {
                    let take = b.len().min(WRITE_SIZE - n);
                    gather[n..n + take].copy_from_slice(&b[..take]);
                    n += take;
                    if n == WRITE_SIZE {
                        break;
                    }
                }
                self.poll_write(cx, &gather[..n])
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_outgoing(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_queued && this.failed.is_none() {
            // After a failure the alert already ends the connection.
            if !this.process(Write::CloseNotify).unwrap_or(false) {
                this.close_queued = true;
            }
        }
        ready!(this.poll_write_outgoing(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::tls::provider;
    use rustls::pki_types::ServerName;
    use std::future::poll_fn;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    /// A stream whose reads return at most the next size of `sizes` (cycled) bytes.
    struct Dribble {
        io: DuplexStream,
        sizes: Vec<usize>,
        at: usize,
        /// Bytes written through it.
        written: usize,
    }

    impl AsyncRead for Dribble {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let size = self.sizes[self.at % self.sizes.len()].max(1);
            let mut small = vec![0u8; size.min(buf.remaining())];
            let mut rb = ReadBuf::new(&mut small);
            ready!(Pin::new(&mut self.io).poll_read(cx, &mut rb))?;
            self.at += 1;
            buf.put_slice(rb.filled());
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Dribble {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, data))?;
            self.written += n;
            Poll::Ready(Ok(n))
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.io).poll_flush(cx)
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.io).poll_shutdown(cx)
        }
    }

    type Client = tokio_rustls::client::TlsStream<DuplexStream>;

    fn configs(tls12: bool) -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let server = crate::transport::Tls::from_pem(
            cert.cert.pem().as_bytes(),
            cert.signing_key.serialize_pem().as_bytes(),
            &["gatekit"],
        )
        .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.cert.der().clone()).unwrap();
        let version: &[&rustls::SupportedProtocolVersion] = if tls12 {
            &[&rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS13]
        };
        let mut client = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(version)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![b"gatekit".to_vec()];
        (server, Arc::new(client))
    }

    /// A handshaken pair: our server stream (reading `sizes` bytes at a time) and a tokio-rustls
    /// client.
    async fn pair(tls12: bool, sizes: Vec<usize>) -> (TlsStream<Dribble>, Client) {
        let (server_config, client_config) = configs(tls12);
        let (a, b) = tokio::io::duplex(64 * 1024);
        let conn = UnbufferedServerConnection::new(server_config).unwrap();
        let mut server = TlsStream::new(
            Dribble {
                io: b,
                sizes,
                at: 0,
                written: 0,
            },
            conn,
        );
        let connector = tokio_rustls::TlsConnector::from(client_config);
        let name = ServerName::try_from("localhost").unwrap();
        let (handshake, client) = tokio::join!(
            poll_fn(|cx| server.poll_handshake(cx)),
            connector.connect(name, a)
        );
        handshake.unwrap();
        let client = client.unwrap();
        assert_eq!(server.connection().alpn_protocol(), Some(&b"gatekit"[..]));
        let expected = if tls12 {
            rustls::ProtocolVersion::TLSv1_2
        } else {
            rustls::ProtocolVersion::TLSv1_3
        };
        assert_eq!(server.connection().protocol_version(), Some(expected));
        (server, client)
    }

    fn assert_idle(s: &TlsStream<Dribble>) {
        assert_eq!(s.incoming.capacity(), 0, "incoming kept");
        assert_eq!(s.plaintext.capacity(), 0, "plaintext kept");
        assert_eq!(s.outgoing.capacity(), 0, "outgoing kept");
    }

    /// Sends `messages` from the client (one record each), reads them all on the server and echoes
    /// them back.
    async fn exchange(server: &mut TlsStream<Dribble>, client: &mut Client, messages: &[Vec<u8>]) {
        let all: Vec<u8> = messages.concat();
        let send = async {
            for m in messages {
                client.write_all(m).await.unwrap();
            }
            client.flush().await.unwrap();
            let mut back = vec![0u8; all.len()];
            client.read_exact(&mut back).await.unwrap();
            back
        };
        let echo = async {
            let mut got = vec![0u8; all.len()];
            server.read_exact(&mut got).await.unwrap();
            server.write_all(&got).await.unwrap();
            server.flush().await.unwrap();
            got
        };
        let (back, got) = tokio::join!(send, echo);
        assert_eq!(got, all);
        assert_eq!(back, all);
    }

    #[tokio::test]
    async fn records_split_at_every_byte() {
        for tls12 in [false, true] {
            let (mut server, mut client) = pair(tls12, vec![1]).await;
            exchange(
                &mut server,
                &mut client,
                &[b"hello".to_vec(), vec![7; 3000]],
            )
            .await;
            assert_idle(&server);
        }
    }

    #[tokio::test]
    async fn several_records_per_read() {
        for tls12 in [false, true] {
            let (mut server, mut client) = pair(tls12, vec![4096]).await;
            let messages: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 1 + i as usize * 7]).collect();
            // All records are in the pipe before the server's first read.
            for m in &messages {
                client.write_all(m).await.unwrap();
            }
            client.flush().await.unwrap();
            exchange(&mut server, &mut client, &messages).await;
            let mut got = vec![0u8; messages.concat().len()];
            server.read_exact(&mut got).await.unwrap();
            assert_eq!(got, messages.concat());
            assert_idle(&server);
        }
    }

    #[tokio::test]
    async fn a_16_kib_record_and_large_writes() {
        for tls12 in [false, true] {
            let (mut server, mut client) = pair(tls12, vec![4096, 100, 13]).await;
            let big: Vec<u8> = (0..16 * 1024).map(|i| (i % 251) as u8).collect();
            exchange(&mut server, &mut client, &[big]).await;
            let huge: Vec<u8> = (0..100_000).map(|i| (i % 253) as u8).collect();
            exchange(&mut server, &mut client, &[huge]).await;
            assert_idle(&server);
        }
    }

    #[tokio::test]
    async fn close_notify_both_ways() {
        for tls12 in [false, true] {
            // The server closes: the client sees a clean end (close_notify, not a cut).
            let (mut server, mut client) = pair(tls12, vec![4096]).await;
            server.write_all(b"bye").await.unwrap();
            server.shutdown().await.unwrap();
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"bye");
            assert!(server.write_all(b"more").await.is_err());

            // The client closes: the server reads to a clean end.
            let (mut server, mut client) = pair(tls12, vec![4096]).await;
            client.write_all(b"last words").await.unwrap();
            client.shutdown().await.unwrap();
            let mut got = Vec::new();
            server.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"last words");

            // A cut without close_notify is an error, not an end.
            let (mut server, client) = pair(tls12, vec![4096]).await;
            drop(client);
            let e = server.read(&mut [0u8; 16]).await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        }
    }

    #[tokio::test]
    async fn garbage_after_the_handshake_fails_with_an_alert() {
        for tls12 in [false, true] {
            let (mut server, mut client) = pair(tls12, vec![4096]).await;
            exchange(&mut server, &mut client, &[b"fine".to_vec()]).await;
            // An application-data record that does not decrypt, then plain text.
            let raw = client.get_mut().0;
            raw.write_all(&[0x17, 0x03, 0x03, 0x00, 0x20])
                .await
                .unwrap();
            raw.write_all(&[0x55; 0x20]).await.unwrap();
            raw.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
            let e = server.read(&mut [0u8; 16]).await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
            // It stays failed, for reads and writes.
            assert!(server.read(&mut [0u8; 16]).await.is_err());
            assert!(server.write_all(b"x").await.is_err());
            // The client got an alert (bad_record_mac) and fails too.
            let e = client.read(&mut [0u8; 16]).await.unwrap_err();
            assert!(e.to_string().contains("BadRecordMac"), "{e}");
        }
    }

    #[tokio::test]
    async fn key_updates_from_the_client_are_answered() {
        let (mut server, mut client) = pair(false, vec![4096]).await;
        for round in 0..3u8 {
            client.get_mut().1.refresh_traffic_keys().unwrap();
            exchange(&mut server, &mut client, &[vec![round; 500]]).await;
        }
        assert_idle(&server);
    }

    #[tokio::test]
    async fn plain_bytes_get_an_alert_during_the_handshake() {
        let (server_config, _) = configs(false);
        let (mut a, b) = tokio::io::duplex(64 * 1024);
        let conn = UnbufferedServerConnection::new(server_config).unwrap();
        let mut server = TlsStream::new(b, conn);
        a.write_all(b"\x01\x00\x00\x00\x05hello, plain")
            .await
            .unwrap();
        let e = poll_fn(|cx| server.poll_handshake(cx)).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        drop(server);
        let mut got = Vec::new();
        a.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.first(), Some(&0x15), "{got:?}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        #[test]
        fn any_read_sizes_and_messages(
            sizes in proptest::collection::vec(1usize..6000, 1..8),
            messages in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 1..20_000), 1..6),
            tls12 in proptest::bool::ANY,
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let (mut server, mut client) = pair(tls12, sizes).await;
                exchange(&mut server, &mut client, &messages).await;
                assert_idle(&server);
            });
        }
    }

    /// A header and its payload written together (as the WebSocket stream does) go out as one
    /// record: TLS 1.3 adds 22 bytes to a record (5 of header, 1 of content type, 16 of tag).
    #[tokio::test]
    async fn a_vectored_write_is_one_record() {
        let (mut server, mut client) = pair(false, vec![4096]).await;
        let before = server.io.written;
        let parts = [io::IoSlice::new(b"\x82\x05"), io::IoSlice::new(b"hello")];
        let n = poll_fn(|cx| Pin::new(&mut server).poll_write_vectored(cx, &parts))
            .await
            .unwrap();
        assert_eq!(n, 7);
        poll_fn(|cx| Pin::new(&mut server).poll_flush(cx))
            .await
            .unwrap();
        assert_eq!(server.io.written - before, 7 + 22, "one record");
        let mut got = [0u8; 7];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"\x82\x05hello");
    }
}
