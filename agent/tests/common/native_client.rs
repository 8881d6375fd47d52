//! A small client of the native protocol over any byte stream, for tests (the agent's, and the
//! server's and examples' through `#[path]`).

#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use gatekit_codec::*;
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Client<S> {
    pub io: S,
    pub codec: NativeCodec,
    pub buf: BytesMut,
}

impl Client<TcpStream> {
    pub async fn connect(addr: SocketAddr) -> Self {
        Client::new(TcpStream::connect(addr).await.expect("connect"))
    }
}

impl<S: AsyncRead + Unpin> Client<S> {
    pub fn new(io: S) -> Self {
        Client {
            io,
            codec: NativeCodec::default(),
            buf: BytesMut::new(),
        }
    }

    /// The next packet, or `None` once the gate closed the stream.
    pub async fn recv(&mut self) -> Option<Packet> {
        loop {
            if let Some(p) = self.codec.decode(&mut self.buf).expect("gate sent garbage") {
                return Some(p);
            }
            match self.io.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => {
                    assert!(self.buf.is_empty(), "stream ended mid-frame");
                    return None;
                }
                Ok(_) => {}
            }
        }
    }

    pub async fn recv_response(&mut self) -> Response {
        match self.recv().await {
            Some(Packet::Response(r)) => r,
            other => panic!("expected RESPONSE, got {other:?}"),
        }
    }

    /// Reads the CLOSE the gate must send, then the end of the stream; returns its reason text.
    pub async fn expect_close(&mut self, code: CloseCode) -> String {
        let reason = match self.recv().await {
            Some(Packet::Close(c)) => {
                assert_eq!(c.code, code, "close reason text: {:?}", c.reason);
                c.reason.as_str().to_owned()
            }
            other => panic!("expected CLOSE {code}, got {other:?}"),
        };
        assert_eq!(self.recv().await, None, "bytes after CLOSE");
        reason
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    pub async fn send(&mut self, p: Packet) {
        self.send_all(&[p]).await;
    }

    /// Writes several packets in one write (pipelining).
    pub async fn send_all(&mut self, ps: &[Packet]) {
        let mut out = BytesMut::new();
        for p in ps {
            self.codec.encode(p, &mut out).unwrap();
        }
        self.io.write_all(&out).await.unwrap();
    }

    pub async fn handshake(&mut self) -> String {
        self.send(Packet::Handshake(Handshake {
            version: PROTOCOL_VERSION,
            heartbeat_secs: 0,
            token: Bytes::new(),
        }))
        .await;
        match self.recv().await {
            Some(Packet::Welcome(w)) => w.session_id.as_str().to_owned(),
            other => panic!("expected WELCOME, got {other:?}"),
        }
    }

    pub async fn request(&mut self, id: u32, route: &str, body: impl AsRef<[u8]>) -> Response {
        self.send(req(id, route, body)).await;
        let r = self.recv_response().await;
        assert_eq!(r.id.get(), id, "response to the wrong request");
        r
    }

    pub async fn ping(&mut self) {
        self.send(Packet::Ping).await;
        assert_eq!(self.recv().await, Some(Packet::Pong));
    }

    /// Sends CLOSE, and reads the gate's CLOSE `normal` in reply (the close handshake: the gate
    /// answers what it read first, then says goodbye).
    pub async fn close(&mut self) {
        self.send(Packet::Close(Close {
            code: CloseCode::Normal,
            reason: Text::from("bye"),
        }))
        .await;
        assert_eq!(
            self.recv().await,
            Some(Packet::Close(Close {
                code: CloseCode::Normal,
                reason: Text::from("bye"),
            })),
            "the gate's CLOSE in reply"
        );
    }
}

pub fn req(id: u32, route: &str, body: impl AsRef<[u8]>) -> Packet {
    Packet::Request(Request::new(
        MessageId::new(id).unwrap(),
        Route::try_from(route).unwrap(),
        Bytes::copy_from_slice(body.as_ref()),
    ))
}
