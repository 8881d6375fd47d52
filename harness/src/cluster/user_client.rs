//! An authenticated native client of the directory phase: it opens a session with a user's
//! signed token, then a task reads everything the gate sends — the pushes on
//! [`DIRECTORY_TOPIC`] (kept, with the instant each arrived), pings (answered), and the end of
//! the connection (a CLOSE with its code and reason, or the connection dropped).

use bytes::{Bytes, BytesMut};
use gatekit_codec::{
    Close, CloseCode, DecodeError, Handshake, NativeCodec, Packet, Text, PROTOCOL_VERSION,
};
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// The topic of the directory's pushes (`users.send` with `Gatekit-Topic` this); the gates'
/// own `push/tick` broadcasts are not kept.
pub const DIRECTORY_TOPIC: &str = "cluster/push";

/// Time allowed from connect to WELCOME.
const HANDSHAKE_WITHIN: Duration = Duration::from_secs(5);

/// Why a client could not open its session.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The TCP connection failed.
    #[error("user {user}: connecting to {addr}: {source}")]
    Connect {
        /// The user.
        user: String,
        /// The gate's address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The gate answered the handshake with CLOSE.
    #[error("user {user}: the gate at {addr} refused the handshake: CLOSE {code} {reason:?}")]
    Refused {
        /// The user.
        user: String,
        /// The gate's address.
        addr: SocketAddr,
        /// The CLOSE code's name.
        code: String,
        /// Its reason.
        reason: String,
    },
    /// Something else than WELCOME or CLOSE came, the bytes were not the protocol, or the
    /// connection ended.
    #[error("user {user}: handshake with {addr}: {what}")]
    Handshake {
        /// The user.
        user: String,
        /// The gate's address.
        addr: SocketAddr,
        /// What happened.
        what: String,
    },
    /// No WELCOME within 5 s.
    #[error("user {user}: no WELCOME from {addr} within {HANDSHAKE_WITHIN:?}")]
    Timeout {
        /// The user.
        user: String,
        /// The gate's address.
        addr: SocketAddr,
    },
}

/// How a client's connection ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "how", rename_all = "snake_case")]
pub enum Ended {
    /// The gate sent CLOSE.
    Closed {
        /// The code's name (`kicked`, `shutdown`, ...).
        code: String,
        /// The reason.
        reason: String,
    },
    /// The connection ended without a CLOSE (the gate's process died), or broke.
    Dropped {
        /// What the socket said.
        why: String,
    },
    /// This side closed it ([`UserClient::close`]).
    ByUs,
}

/// What a client has seen since its WELCOME.
#[derive(Debug, Default)]
pub struct ClientLog {
    /// The bodies of the pushes on [`DIRECTORY_TOPIC`], with when each arrived.
    pub pushes: Vec<(Bytes, Instant)>,
    /// How the connection ended, if it has, and when.
    pub ended: Option<(Ended, Instant)>,
}

/// One user's open session on one gate.
pub struct UserClient {
    /// The user bound by the token.
    pub user: String,
    /// The index of the gate it is connected to.
    pub gate: usize,
    /// The session id of the WELCOME.
    pub session_id: String,
    log: Arc<Mutex<ClientLog>>,
    writer: Arc<tokio::sync::Mutex<OwnedWriteHalf>>,
    reader: JoinHandle<()>,
}

impl Drop for UserClient {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

fn encode(packet: &Packet) -> BytesMut {
    let mut out = BytesMut::new();
    NativeCodec::default()
        .encode(packet, &mut out)
        .expect("a client packet within limits");
    out
}

impl UserClient {
    /// Connects to the gate `gate` at `addr` and opens a session with `token`; returns after
    /// its WELCOME.
    pub async fn connect(
        addr: SocketAddr,
        gate: usize,
        user: &str,
        token: &str,
    ) -> Result<UserClient, ConnectError> {
        let user_s = user.to_owned();
        match tokio::time::timeout(HANDSHAKE_WITHIN, Self::open(addr, gate, user, token)).await {
            Ok(r) => r,
            Err(_) => Err(ConnectError::Timeout { user: user_s, addr }),
        }
    }

    async fn open(
        addr: SocketAddr,
        gate: usize,
        user: &str,
        token: &str,
    ) -> Result<UserClient, ConnectError> {
        let handshake_error = |what: String| ConnectError::Handshake {
            user: user.to_owned(),
            addr,
            what,
        };
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| ConnectError::Connect {
                user: user.to_owned(),
                addr,
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let (mut read, mut write) = stream.into_split();
        let hello = encode(&Packet::Handshake(Handshake {
            version: PROTOCOL_VERSION,
            heartbeat_secs: 0,
            token: Bytes::copy_from_slice(token.as_bytes()),
        }));
        write
            .write_all(&hello)
            .await
            .map_err(|e| handshake_error(format!("sending the handshake: {e}")))?;
        let mut codec = NativeCodec::default();
        let mut buf = BytesMut::with_capacity(4096);
        let session_id = loop {
            match codec.decode(&mut buf) {
                Ok(Some(Packet::Welcome(w))) => break w.session_id.as_str().to_owned(),
                Ok(Some(Packet::Close(c))) => {
                    return Err(ConnectError::Refused {
                        user: user.to_owned(),
                        addr,
                        code: c.code.name().to_owned(),
                        reason: c.reason.as_str().to_owned(),
                    })
                }
                Ok(Some(other)) => {
                    return Err(handshake_error(format!("{other:?} before WELCOME")));
                }
                Ok(None) => {}
                Err(e) => return Err(handshake_error(e.to_string())),
            }
            match read.read_buf(&mut buf).await {
                Ok(0) => return Err(handshake_error("the gate closed the connection".into())),
                Ok(_) => {}
                Err(e) => return Err(handshake_error(e.to_string())),
            }
        };
        let log = Arc::new(Mutex::new(ClientLog::default()));
        let writer = Arc::new(tokio::sync::Mutex::new(write));
        let reader = tokio::spawn(read_loop(read, codec, buf, log.clone(), writer.clone()));
        Ok(UserClient {
            user: user.to_owned(),
            gate,
            session_id,
            log,
            writer,
            reader,
        })
    }

    /// The pushes so far, each body with when it arrived (a copy).
    pub fn pushes(&self) -> Vec<(Bytes, Instant)> {
        self.log.lock().expect("client log").pushes.clone()
    }

    /// How many pushes it has received so far.
    pub fn push_count(&self) -> usize {
        self.log.lock().expect("client log").pushes.len()
    }

    /// How the connection ended, if it has.
    pub fn ended(&self) -> Option<Ended> {
        self.log
            .lock()
            .expect("client log")
            .ended
            .as_ref()
            .map(|e| e.0.clone())
    }

    /// Says goodbye (CLOSE normal) if the connection is still open, and stops reading.
    pub async fn close(self) {
        if self.ended().is_none() {
            let bye = encode(&Packet::Close(Close {
                code: CloseCode::Normal,
                reason: Text::from_static("bye"),
            }));
            let mut w = self.writer.lock().await;
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                let _ = w.write_all(&bye).await;
                let _ = w.shutdown().await;
            })
            .await;
            drop(w);
            // Let the gate's CLOSE (or the end) come back, briefly.
            let until = Instant::now() + Duration::from_millis(500);
            while self.ended().is_none() && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let mut log = self.log.lock().expect("client log");
            if log.ended.is_none() {
                log.ended = Some((Ended::ByUs, Instant::now()));
            }
        }
    }
}

async fn read_loop(
    mut read: tokio::net::tcp::OwnedReadHalf,
    mut codec: NativeCodec,
    mut buf: BytesMut,
    log: Arc<Mutex<ClientLog>>,
    writer: Arc<tokio::sync::Mutex<OwnedWriteHalf>>,
) {
    let end = |e: Ended| {
        let mut l = log.lock().expect("client log");
        if l.ended.is_none() {
            l.ended = Some((e, Instant::now()));
        }
    };
    loop {
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(Packet::Push(p))) => {
                    if p.topic() == DIRECTORY_TOPIC {
                        let at = Instant::now();
                        log.lock()
                            .expect("client log")
                            .pushes
                            .push((p.into_body(), at));
                    }
                }
                Ok(Some(Packet::Ping)) => {
                    let pong = encode(&Packet::Pong);
                    let _ = writer.lock().await.write_all(&pong).await;
                }
                Ok(Some(Packet::Close(c))) => {
                    end(Ended::Closed {
                        code: c.code.name().to_owned(),
                        reason: c.reason.as_str().to_owned(),
                    });
                    return;
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    let fatal = DecodeError::is_fatal(&e);
                    if fatal {
                        end(Ended::Dropped {
                            why: format!("undecodable bytes from the gate: {e}"),
                        });
                        return;
                    }
                }
            }
        }
        match read.read_buf(&mut buf).await {
            Ok(0) => {
                end(Ended::Dropped {
                    why: "the connection ended without a CLOSE".into(),
                });
                return;
            }
            Ok(_) => {}
            Err(e) => {
                end(Ended::Dropped { why: e.to_string() });
                return;
            }
        }
    }
}
