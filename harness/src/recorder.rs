//! Records what the gate tells its learner and session store, per session, with times.

use gatekit_agent::{CloseReason, Learner, Session, SessionStore, StoreFuture};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Instant;

/// One session's events.
#[derive(Debug, Clone, Default)]
pub struct SessionLog {
    /// Connect calls.
    pub connects: u32,
    /// When the (first) connect came.
    pub connect_at: Option<Instant>,
    /// Disconnect calls, with time and reason.
    pub disconnects: Vec<(Instant, CloseReason)>,
    /// A disconnect arrived before any connect.
    pub disconnect_before_connect: bool,
    /// When a user id was bound.
    pub bind_at: Option<Instant>,
    /// Storage heartbeats.
    pub heartbeats: Vec<Instant>,
    /// Heartbeats for a session without a user id bound.
    pub unbound_heartbeats: u32,
}

/// Sessions by id.
#[derive(Debug, Default)]
pub struct Recorder {
    /// The logs.
    pub sessions: BTreeMap<String, SessionLog>,
    /// Session ids by the peer address the gate saw (for protocols whose welcome carries no
    /// session id, such as pomelo's).
    pub peers: BTreeMap<String, String>,
    /// Learner calls that double-counted on purpose (test hook: see [`Recorder::double_count`]).
    pub double_count: bool,
}

impl Recorder {
    /// Records a connect.
    pub fn connect(&mut self, session: &Session, now: Instant) {
        self.peers
            .insert(session.peer.clone(), session.session_id.clone());
        let log = self.sessions.entry(session.session_id.clone()).or_default();
        log.connects += 1;
        log.connect_at.get_or_insert(now);
        if self.double_count {
            log.connects += 1;
        }
    }

    /// Records a disconnect.
    pub fn disconnect(&mut self, session: &Session, reason: CloseReason, now: Instant) {
        let log = self.sessions.entry(session.session_id.clone()).or_default();
        if log.connects == 0 {
            log.disconnect_before_connect = true;
        }
        log.disconnects.push((now, reason));
    }

    /// Records a bind.
    pub fn bind(&mut self, session_id: &str, now: Instant) {
        self.sessions
            .entry(session_id.to_owned())
            .or_default()
            .bind_at
            .get_or_insert(now);
    }

    /// Records a storage heartbeat.
    pub fn heartbeat(&mut self, session: &Session, now: Instant) {
        let log = self.sessions.entry(session.session_id.clone()).or_default();
        if session.user_id.is_none() {
            log.unbound_heartbeats += 1;
        }
        log.heartbeats.push(now);
    }
}

/// A [`Recorder`] behind a lock, as the real gate's learner and session store.
#[derive(Debug, Default)]
pub struct SharedRecorder(pub Mutex<Recorder>);

fn now() -> Instant {
    gatekit_agent::driver::now()
}

impl Learner for SharedRecorder {
    fn connect(&self, session: &Session) {
        self.0
            .lock()
            .expect("recorder lock")
            .connect(session, now());
    }
    fn disconnect(&self, session: &Session, reason: CloseReason) {
        self.0
            .lock()
            .expect("recorder lock")
            .disconnect(session, reason, now());
    }
}

impl SessionStore for SharedRecorder {
    fn heartbeat(&self, session: Arc<Session>) -> StoreFuture<()> {
        self.0
            .lock()
            .expect("recorder lock")
            .heartbeat(&session, now());
        Box::pin(std::future::ready(Ok(())))
    }
}
