//! `gatekit hold`: a client worker process for connection-scale runs. It opens many connections to
//! a gate, handshakes each, then holds them idle, pinging at the interval the gate's WELCOME gives,
//! until standard input closes (or `--hold` ends); then it closes them all and reports.
//!
//! It reports on stdout as JSON lines ([`WorkerEvent`]), for `gatekit scale`, which starts several
//! of these next to several `gatekit serve` processes. A worker that reaches its open-file limit
//! says so and stops (exit status 2) instead of hanging.
//!
//! Every connection goes over `--transport` (tcp, tls, ws, wss: [`ClientTransport`]) before its
//! native handshake; tls and wss check the gate's certificate against `--tls-ca`.

use crate::client_transport::{ClientStream, ClientTransport};
use crate::procfs;
use crate::source_address::{connect_from, source_for, PER_SOURCE_ADDRESS};
use crate::tcp::require_loopback;

use bytes::{Bytes, BytesMut};
use gatekit_codec::native::PROTOCOL_VERSION;
use gatekit_codec::{Handshake, NativeCodec, Packet};
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch, Semaphore};

/// File descriptors a worker keeps for itself (standard streams, the runtime's epoll and wakers).
pub const RESERVED_FILES: u64 = 32;

/// What `gatekit hold` prints, one JSON object per line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WorkerEvent {
    /// Every connection is open and handshaken.
    Connected {
        /// Connections handshaken.
        connections: usize,
        /// Seconds from the first connect to the last WELCOME.
        secs: f64,
        /// The ping interval the gate gave, seconds.
        ping_secs: u16,
    },
    /// The worker could not open or handshake every connection; it closes what it holds and exits 2.
    Failed {
        /// What went wrong, first error first.
        message: String,
        /// Connections that were handshaken.
        held: usize,
    },
    /// Every connection is closed.
    Left {
        /// Connections closed by this worker.
        connections: usize,
        /// PINGs sent while holding.
        pings: u64,
        /// PONGs received.
        pongs: u64,
        /// Connections the gate ended while they were held (should be 0).
        closed_by_gate: u64,
    },
}

/// Options of `gatekit hold`.
#[derive(Debug, Clone)]
pub struct HoldOptions {
    /// The gate (loopback).
    pub target: SocketAddr,
    /// Connections to open.
    pub connections: usize,
    /// First source address; every `per_source` connections the next one is used. Without it the
    /// kernel chooses (one source address, up to [`PER_SOURCE_ADDRESS`] connections).
    pub source: Option<Ipv4Addr>,
    /// Connections per source address (at most [`PER_SOURCE_ADDRESS`]).
    pub per_source: usize,
    /// Connects and handshakes in flight at once.
    pub concurrency: usize,
    /// Ping interval to ask the gate for.
    pub ping: Duration,
    /// Time allowed for one connect plus handshake.
    pub handshake_timeout: Duration,
    /// Hold this long, then leave (`None`: until standard input closes).
    pub hold: Option<Duration>,
    /// The transport every connection goes over.
    pub transport: ClientTransport,
    /// Log every connection in as its own user: (the gate's `[auth] hmac` secret, a user id
    /// prefix); connection `i` is user `<prefix><i>`. None: the token `hold` (no auth).
    pub login: Option<(String, String)>,
}

#[derive(Default)]
struct Stats {
    pings: AtomicU64,
    pongs: AtomicU64,
    closed_by_gate: AtomicU64,
}

struct Wire {
    handshake: Bytes,
    ping: Bytes,
    pong: Bytes,
}

fn wire(ping: Duration) -> Wire {
    let codec = NativeCodec::default();
    let encode = |p: &Packet| {
        let mut b = BytesMut::new();
        codec.encode(p, &mut b).expect("client packets are valid");
        b.freeze()
    };
    Wire {
        handshake: encode(&Packet::Handshake(Handshake {
            version: PROTOCOL_VERSION,
            heartbeat_secs: ping.as_secs().clamp(1, u16::MAX as u64) as u16,
            token: Bytes::from_static(b"hold"),
        })),
        ping: encode(&Packet::Ping),
        pong: encode(&Packet::Pong),
    }
}

/// Checks, before opening anything, that `connections` fit under this process's open-file limit.
pub fn check_open_file_limit(connections: usize) -> Result<(), String> {
    if let Some((soft, _)) = procfs::open_file_limit() {
        let need = connections as u64 + RESERVED_FILES;
        if need > soft {
            return Err(format!(
                "{connections} connections need about {need} open files, but this process may open {soft} (RLIMIT_NOFILE); use more worker processes (gatekit scale --workers)"
            ));
        }
    }
    Ok(())
}

async fn connect(opts: &HoldOptions, i: usize) -> std::io::Result<ClientStream> {
    let source = match opts.source {
        Some(first) => Some(source_for(first, i, opts.per_source)),
        None if opts.connections > PER_SOURCE_ADDRESS => Some(source_for(
            Ipv4Addr::new(127, 0, 0, 1),
            i,
            PER_SOURCE_ADDRESS,
        )),
        None => None,
    };
    let tcp = connect_from(opts.target, source).await?;
    opts.transport.connect(tcp).await
}

/// Writes `bytes` and flushes them (a TLS or WebSocket layer may otherwise keep some queued).
async fn send(stream: &mut ClientStream, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}

/// The HANDSHAKE of connection `i`: with its user's token when `opts.login` says so.
fn handshake_packet(opts: &HoldOptions, wire: &Wire, i: usize) -> Bytes {
    let Some((secret, prefix)) = &opts.login else {
        return wire.handshake.clone();
    };
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 24 * 3600;
    let token = gatekit_server::auth::HmacAuthenticator::new(secret.as_bytes())
        .token(&format!("{prefix}{i}"), expires);
    let mut b = BytesMut::new();
    NativeCodec::default()
        .encode(
            &Packet::Handshake(Handshake {
                version: PROTOCOL_VERSION,
                heartbeat_secs: opts.ping.as_secs().clamp(1, u16::MAX as u64) as u16,
                token: Bytes::from(token),
            }),
            &mut b,
        )
        .expect("client packets are valid");
    b.freeze()
}

/// Sends `hello`, then reads packets until a WELCOME; returns its ping interval.
async fn handshake(
    stream: &mut ClientStream,
    hello: &Bytes,
    codec: &mut NativeCodec,
    input: &mut BytesMut,
) -> Result<u16, String> {
    send(stream, hello)
        .await
        .map_err(|e| format!("sending HANDSHAKE: {e}"))?;
    loop {
        while let Some(p) = codec.decode(input).map_err(|e| e.to_string())? {
            match p {
                Packet::Welcome(w) => return Ok(w.heartbeat_secs),
                Packet::Close(c) => return Err(format!("gate closed: {}", c.reason.as_str())),
                _ => {}
            }
        }
        let mut buf = [0u8; 512];
        match stream.read(&mut buf).await {
            Ok(0) => return Err("gate closed the connection before WELCOME".to_owned()),
            Ok(n) => input.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("reading WELCOME: {e}")),
        }
    }
}

enum Opened {
    Ok(u16),
    Failed(String, bool),
}

async fn one_connection(
    i: usize,
    opts: Arc<HoldOptions>,
    wire: Arc<Wire>,
    stats: Arc<Stats>,
    gate: Arc<Semaphore>,
    opened: mpsc::UnboundedSender<Opened>,
    mut leave: watch::Receiver<bool>,
) {
    let permit = gate.acquire_owned().await;
    let mut codec = NativeCodec::default();
    let mut input = BytesMut::new();
    let attempt = tokio::time::timeout(opts.handshake_timeout, async {
        let mut stream = connect(&opts, i).await.map_err(|e| {
            let files = procfs::is_out_of_files(&e);
            (format!("connect over {}: {e}", opts.transport.kind), files)
        })?;
        let hello = handshake_packet(&opts, &wire, i);
        let ping = handshake(&mut stream, &hello, &mut codec, &mut input)
            .await
            .map_err(|e| (e, false))?;
        Ok::<_, (String, bool)>((stream, ping))
    })
    .await;
    drop(permit);
    let (mut stream, ping) = match attempt {
        Ok(Ok(x)) => x,
        Ok(Err((msg, files))) => {
            let _ = opened.send(Opened::Failed(msg, files));
            return;
        }
        Err(_) => {
            let _ = opened.send(Opened::Failed(
                format!(
                    "connect and handshake took over {:?} (is the gate at its open-file limit? see its output)",
                    opts.handshake_timeout
                ),
                false,
            ));
            return;
        }
    };
    let _ = opened.send(Opened::Ok(ping));
    drop(opened);
    let every = Duration::from_secs(u64::from(ping.max(1)));
    // Spread the pings over the interval.
    let phase = every.mul_f64((i % 997) as f64 / 997.0);
    let mut next = tokio::time::Instant::now() + phase;
    let mut buf = [0u8; 64];
    loop {
        tokio::select! {
            _ = leave.changed() => break,
            _ = tokio::time::sleep_until(next) => {
                next += every;
                if send(&mut stream, &wire.ping).await.is_err() {
                    stats.closed_by_gate.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                stats.pings.fetch_add(1, Ordering::Relaxed);
            }
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => {
                    stats.closed_by_gate.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Ok(n) => {
                    input.extend_from_slice(&buf[..n]);
                    let mut closed = false;
                    while let Ok(Some(p)) = codec.decode(&mut input) {
                        match p {
                            Packet::Pong => { stats.pongs.fetch_add(1, Ordering::Relaxed); }
                            Packet::Ping => { let _ = send(&mut stream, &wire.pong).await; }
                            Packet::Close(_) => closed = true,
                            _ => {}
                        }
                    }
                    if input.is_empty() {
                        input = BytesMut::new();
                    }
                    if closed {
                        stats.closed_by_gate.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
        }
    }
}

/// Opens, holds and closes the connections; reports through `report`. Returns an error (after
/// closing everything) if not every connection could be opened.
pub async fn hold(opts: HoldOptions, mut report: impl FnMut(&WorkerEvent)) -> Result<(), String> {
    require_loopback(&opts.target)?;
    if let Err(message) = check_open_file_limit(opts.connections) {
        report(&WorkerEvent::Failed {
            message: message.clone(),
            held: 0,
        });
        return Err(message);
    }
    let opts = Arc::new(opts);
    let wire = Arc::new(wire(opts.ping));
    let stats = Arc::new(Stats::default());
    let gate = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    let (leave_tx, leave_rx) = watch::channel(false);
    let (opened_tx, mut opened_rx) = mpsc::unbounded_channel();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..opts.connections {
        tasks.spawn(one_connection(
            i,
            opts.clone(),
            wire.clone(),
            stats.clone(),
            gate.clone(),
            opened_tx.clone(),
            leave_rx.clone(),
        ));
    }
    drop(opened_tx);
    let mut held = 0;
    let mut ping_secs = 0;
    let mut first_error: Option<String> = None;
    let mut errors = 0;
    let mut out_of_files = false;
    while let Some(o) = opened_rx.recv().await {
        match o {
            Opened::Ok(p) => {
                held += 1;
                ping_secs = p;
            }
            Opened::Failed(msg, files) => {
                errors += 1;
                out_of_files |= files;
                first_error.get_or_insert(msg);
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let failure = first_error.map(|first| {
        let mut message = format!(
            "{errors} of {} connections failed; first: {first}",
            opts.connections
        );
        if out_of_files {
            message = format!("{}; {message}", procfs::out_of_files_message(held));
        }
        message
    });
    match &failure {
        None => report(&WorkerEvent::Connected {
            connections: held,
            secs,
            ping_secs,
        }),
        Some(message) => report(&WorkerEvent::Failed {
            message: message.clone(),
            held,
        }),
    }
    if failure.is_none() {
        match opts.hold {
            Some(d) => tokio::time::sleep(d).await,
            None => crate::stdin_control::closed().await,
        }
    }
    let _ = leave_tx.send(true);
    while tasks.join_next().await.is_some() {}
    report(&WorkerEvent::Left {
        connections: held,
        pings: stats.pings.load(Ordering::Relaxed),
        pongs: stats.pongs.load(Ordering::Relaxed),
        closed_by_gate: stats.closed_by_gate.load(Ordering::Relaxed),
    });
    match failure {
        None => Ok(()),
        Some(m) => Err(m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_more_connections_than_files() {
        if let Some((soft, _)) = procfs::open_file_limit() {
            if soft < u64::MAX / 2 {
                let err = check_open_file_limit(soft as usize).unwrap_err();
                assert!(err.contains("RLIMIT_NOFILE"), "{err}");
                assert!(check_open_file_limit(1).is_ok());
            }
        }
    }
}
