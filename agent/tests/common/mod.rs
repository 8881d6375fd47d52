//! Test helpers shared by the agent's integration tests: a recording learner and a small client
//! for the native protocol over any byte stream.

#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use gatekit_agent::*;
use gatekit_codec::*;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

// ----- recording learner -----

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ev {
    Connect(String),
    Disconnect(String, CloseReason),
}

#[derive(Default)]
pub struct RecLearner {
    pub events: Mutex<Vec<Ev>>,
}

impl RecLearner {
    pub fn events(&self) -> Vec<Ev> {
        self.events.lock().unwrap().clone()
    }

    pub fn disconnects(&self) -> usize {
        self.events()
            .iter()
            .filter(|e| matches!(e, Ev::Disconnect(..)))
            .count()
    }

    pub fn connects(&self) -> usize {
        self.events()
            .iter()
            .filter(|e| matches!(e, Ev::Connect(..)))
            .count()
    }

    /// Checks that every session has exactly one Connect followed by exactly one Disconnect, and
    /// returns each session's disconnect reason.
    pub fn lifecycles(&self) -> BTreeMap<String, CloseReason> {
        let events = self.events();
        let mut connected: HashMap<String, usize> = HashMap::new();
        let mut out = BTreeMap::new();
        for (i, e) in events.iter().enumerate() {
            match e {
                Ev::Connect(s) => {
                    assert!(
                        connected.insert(s.clone(), i).is_none(),
                        "second Connect for {s}"
                    );
                }
                Ev::Disconnect(s, r) => {
                    assert!(
                        connected.contains_key(s),
                        "Disconnect for {s} before (or without) its Connect"
                    );
                    assert!(
                        out.insert(s.clone(), *r).is_none(),
                        "second Disconnect for {s}"
                    );
                }
            }
        }
        let missing: Vec<_> = connected.keys().filter(|s| !out.contains_key(*s)).collect();
        assert!(
            missing.is_empty(),
            "sessions without Disconnect: {missing:?}"
        );
        out
    }
}

impl Learner for RecLearner {
    fn connect(&self, s: &Session) {
        self.events
            .lock()
            .unwrap()
            .push(Ev::Connect(s.session_id.clone()));
    }
    fn disconnect(&self, s: &Session, reason: CloseReason) {
        self.events
            .lock()
            .unwrap()
            .push(Ev::Disconnect(s.session_id.clone(), reason));
    }
}

// ----- client -----

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

// ----- a back end the test holds -----

/// A back end whose calls wait until the test lets them go: `hold/<anything>` counts the call,
/// then waits for a permit ([`Hold::release`]) or for [`Hold::release_all`], and answers with
/// the request's body.
#[derive(Clone)]
pub struct Hold {
    permits: std::sync::Arc<tokio::sync::Semaphore>,
    calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Default for Hold {
    fn default() -> Self {
        Hold {
            permits: std::sync::Arc::new(tokio::sync::Semaphore::new(0)),
            calls: Default::default(),
        }
    }
}

impl Hold {
    /// Calls started so far (answered or not).
    pub fn calls(&self) -> usize {
        self.calls.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Lets `n` more calls answer.
    pub fn release(&self, n: usize) {
        self.permits.add_permits(n);
    }

    /// Lets every call, now and later, answer at once.
    pub fn release_all(&self) {
        self.permits.close();
    }

    /// The back ends `hold` (this one) and `echo`.
    pub fn backends(&self) -> Backends {
        let hold = self.clone();
        Backends::new()
            .with(
                "hold",
                move |_s: std::sync::Arc<Session>, _f: String, body: Bytes| {
                    let hold = hold.clone();
                    async move {
                        hold.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        // `Err` once closed by `release_all`: answer then too.
                        if let Ok(permit) = hold.permits.acquire().await {
                            permit.forget();
                        }
                        Ok::<_, BackendError>(body)
                    }
                },
            )
            .with(
                "echo",
                |_s: std::sync::Arc<Session>, _f: String, body: Bytes| async move {
                    Ok::<_, BackendError>(body)
                },
            )
    }
}
