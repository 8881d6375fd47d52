//! The gate's side of a run against an external gate: `gatekit serve --control ADDR` records every
//! session (Connect, Disconnect and reason, storage heartbeats, the agent's counters and buffer
//! high-water mark, the pushes it accepted) and answers each connection to ADDR with one JSON
//! document ([`Snapshot`]) and closes it. `gatekit run --target GATE --control ADDR` reads it
//! before and after the run and checks the invariants of the sessions its clients had, as it does
//! for the built-in gate.
//!
//! The records are kept for the life of the process, so this is for test runs, not for memory
//! measurements (`gatekit scale` runs `serve` without it). Times are microseconds on the gate
//! process's clock since it started; the reader maps them onto its own clock through `now_us`.

use crate::recorder::{Recorder, SessionLog};
use crate::run::ConnRecord;
use crate::serve::{GateStatus, Tally};
use gatekit_agent::{AgentHandle, CloseReason, Gate, Learner, Session, SessionStore, StoreFuture};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Largest snapshot the reader accepts.
pub const MAX_SNAPSHOT: usize = 256 * 1024 * 1024;

/// One session, as the gate saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The session id (as sent in WELCOME).
    pub session_id: String,
    /// Connect calls.
    pub connects: u32,
    /// When the first came, µs since the gate started.
    pub connect_us: Option<u64>,
    /// Disconnect calls: when, and the reason's name.
    pub disconnects: Vec<(u64, String)>,
    /// A Disconnect came before any Connect.
    pub disconnect_before_connect: bool,
    /// Storage heartbeats, when.
    pub heartbeats: Vec<u64>,
    /// Heartbeats for the session while no user was bound.
    pub unbound_heartbeats: u32,
    /// The agent's packets received.
    pub received: u64,
    /// The agent's packets sent.
    pub sent: u64,
    /// The most bytes the agent buffered at once.
    pub max_buffered: usize,
    /// Pushes the gate accepted for the session: number (the body's first 8 bytes) and when.
    pub pushes: Vec<(u64, u64)>,
}

/// What the control endpoint answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The gate's clock when the snapshot was taken, µs since it started.
    pub now_us: u64,
    /// The gate's counts.
    pub status: GateStatus,
    /// The bound every connection's buffers keep (`AgentConfig::buffer_bound`).
    pub buffer_bound: usize,
    /// Every session since the gate started.
    pub sessions: Vec<SessionRecord>,
}

#[derive(Default)]
struct Entry {
    record: SessionRecord,
    handle: Option<AgentHandle>,
}

/// The learner and session store of `gatekit serve --control`: counts like [`Tally`] and keeps a
/// record per session.
pub struct ControlRecorder {
    /// The counts.
    pub tally: Tally,
    base: Instant,
    gate: OnceLock<Gate>,
    sessions: Mutex<HashMap<String, Entry>>,
}

impl ControlRecorder {
    /// A recorder whose clock starts now.
    pub fn new() -> Self {
        ControlRecorder {
            tally: Tally::default(),
            base: gatekit_agent::driver::now(),
            gate: OnceLock::new(),
            sessions: Mutex::default(),
        }
    }

    /// The gate whose agents' counters are read (set once, right after it is built).
    pub fn set_gate(&self, gate: Gate) {
        let _ = self.gate.set(gate);
    }

    fn now_us(&self) -> u64 {
        gatekit_agent::driver::now()
            .saturating_duration_since(self.base)
            .as_micros() as u64
    }

    fn with<R>(&self, session_id: &str, f: impl FnOnce(&mut Entry) -> R) -> R {
        let mut map = self.sessions.lock().expect("control sessions");
        let entry = map.entry(session_id.to_owned()).or_insert_with(|| Entry {
            record: SessionRecord {
                session_id: session_id.to_owned(),
                ..SessionRecord::default()
            },
            handle: None,
        });
        f(entry)
    }

    /// Notes that the gate accepted push number `seq` for `session_id`.
    pub fn pushed(&self, session_id: &str, seq: u64) {
        let t = self.now_us();
        self.with(session_id, |e| e.record.pushes.push((seq, t)));
    }

    /// Everything recorded, with the gate's status.
    pub fn snapshot(&self, status: GateStatus, buffer_bound: usize) -> Snapshot {
        let now_us = self.now_us();
        let map = self.sessions.lock().expect("control sessions");
        let mut sessions: Vec<SessionRecord> = map
            .values()
            .map(|e| {
                let mut r = e.record.clone();
                if let Some(h) = &e.handle {
                    r.received = h.received();
                    r.sent = h.sent();
                    r.max_buffered = h.max_buffered();
                }
                r
            })
            .collect();
        sessions.sort_by(|a, b| a.session_id.cmp(&b.session_id));
        Snapshot {
            now_us,
            status,
            buffer_bound,
            sessions,
        }
    }
}

impl Default for ControlRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Learner for ControlRecorder {
    fn connect(&self, session: &Session) {
        self.tally.connect(session);
        let t = self.now_us();
        // The gate registers the session before telling the learner, so its handle is there.
        let handle = self.gate.get().and_then(|g| g.agent(&session.session_id));
        self.with(&session.session_id, |e| {
            e.record.connects += 1;
            e.record.connect_us.get_or_insert(t);
            if e.handle.is_none() {
                e.handle = handle;
            }
        });
    }

    fn disconnect(&self, session: &Session, reason: CloseReason) {
        Learner::disconnect(&self.tally, session, reason);
        let t = self.now_us();
        self.with(&session.session_id, |e| {
            if e.record.connects == 0 {
                e.record.disconnect_before_connect = true;
            }
            e.record.disconnects.push((t, reason.name().to_owned()));
        });
    }
}

impl SessionStore for ControlRecorder {
    fn heartbeat(&self, session: Arc<Session>) -> StoreFuture<()> {
        self.tally.count_heartbeat();
        let t = self.now_us();
        let unbound = session.user_id.is_none();
        self.with(&session.session_id, |e| {
            e.record.heartbeats.push(t);
            e.record.unbound_heartbeats += u32::from(unbound);
        });
        Box::pin(std::future::ready(Ok(())))
    }
}

/// Serves snapshots on `listener` until the task is aborted: each connection gets one JSON
/// document, then EOF.
pub fn serve(
    listener: TcpListener,
    snapshot: impl Fn() -> Snapshot + Send + Sync + 'static,
) -> tokio::task::JoinHandle<()> {
    let snapshot = Arc::new(snapshot);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let text = serde_json::to_vec(&snapshot()).expect("snapshot serialises");
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(10), async {
                    let _ = stream.write_all(&text).await;
                    let _ = stream.shutdown().await;
                })
                .await;
            });
        }
    })
}

/// A snapshot read from a control endpoint, with when it was read on this process's clock.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The snapshot.
    pub snapshot: Snapshot,
    /// This process's clock when it arrived.
    pub at: Instant,
}

impl std::ops::Deref for Fetched {
    type Target = GateStatus;
    fn deref(&self) -> &GateStatus {
        &self.snapshot.status
    }
}

impl Fetched {
    /// A time of the gate's clock on this process's clock.
    pub fn local(&self, us: u64) -> Instant {
        let ago = Duration::from_micros(self.snapshot.now_us.saturating_sub(us));
        self.at.checked_sub(ago).unwrap_or(self.at)
    }
}

/// Reads one snapshot from a control endpoint.
pub async fn fetch(addr: SocketAddr) -> Result<Fetched, String> {
    let read = async {
        let mut stream = TcpStream::connect(addr).await?;
        let mut text = Vec::new();
        (&mut stream)
            .take(MAX_SNAPSHOT as u64 + 1)
            .read_to_end(&mut text)
            .await?;
        Ok::<_, std::io::Error>(text)
    };
    let text = tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .map_err(|_| format!("control endpoint {addr}: no answer in 30 s"))?
        .map_err(|e| format!("control endpoint {addr}: {e}"))?;
    if text.len() > MAX_SNAPSHOT {
        return Err(format!(
            "control endpoint {addr}: snapshot over {MAX_SNAPSHOT} bytes"
        ));
    }
    let snapshot = serde_json::from_slice(&text).map_err(|e| {
        format!("control endpoint {addr}: not a gatekit control snapshot ({e}); is it `gatekit serve --control`?")
    })?;
    Ok(Fetched {
        snapshot,
        at: gatekit_agent::driver::now(),
    })
}

/// Waits until the gate holds no more connections than before the run (every one of the run's
/// has ended), for up to `limit`, and returns the last snapshot.
pub async fn settle(
    addr: SocketAddr,
    before: &Fetched,
    limit: Duration,
) -> Result<Fetched, String> {
    let deadline = Instant::now() + limit;
    loop {
        let now = fetch(addr).await?;
        if now.connections <= before.connections || Instant::now() >= deadline {
            return Ok(now);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn reason_named(name: &str) -> Option<CloseReason> {
    CloseReason::ALL.into_iter().find(|r| r.name() == name)
}

/// The run's sessions as a [`Recorder`] (those that were not there before it), and the agents'
/// counters, buffers and accepted pushes into the clients' records.
pub fn apply(before: &Fetched, after: &Fetched, conns: &mut [ConnRecord]) -> Recorder {
    let old: std::collections::HashSet<&str> = before
        .snapshot
        .sessions
        .iter()
        .map(|s| s.session_id.as_str())
        .collect();
    let mut recorder = Recorder::default();
    let mut by_id: HashMap<&str, &SessionRecord> = HashMap::new();
    for s in &after.snapshot.sessions {
        if old.contains(s.session_id.as_str()) {
            continue;
        }
        by_id.insert(&s.session_id, s);
        let log = SessionLog {
            connects: s.connects,
            connect_at: s.connect_us.map(|t| after.local(t)),
            disconnects: s
                .disconnects
                .iter()
                .map(|(t, r)| {
                    (
                        after.local(*t),
                        reason_named(r).unwrap_or(CloseReason::Internal),
                    )
                })
                .collect(),
            disconnect_before_connect: s.disconnect_before_connect,
            bind_at: None,
            heartbeats: s.heartbeats.iter().map(|&t| after.local(t)).collect(),
            unbound_heartbeats: s.unbound_heartbeats,
        };
        recorder.sessions.insert(s.session_id.clone(), log);
    }
    for c in conns {
        let Some(r) = c
            .client_session_id
            .as_deref()
            .and_then(|sid| by_id.get(sid))
        else {
            continue;
        };
        c.agent_received = Some(r.received);
        c.agent_sent = Some(r.sent);
        c.max_buffered = Some(r.max_buffered);
        c.buffer_bound = Some(after.snapshot.buffer_bound);
        c.pushes_accepted = Some(
            r.pushes
                .iter()
                .map(|&(seq, t)| (seq, after.local(t)))
                .collect(),
        );
    }
    recorder
}
