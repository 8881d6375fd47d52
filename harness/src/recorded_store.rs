//! [`RecordedStore`]: the gate's configured session store, with what the harness records of it
//! (storage heartbeats, for the throttle invariant). The gate keeps its real store (`[store]`,
//! e.g. Redis in `gatekit cluster`); the harness only watches.

use gatekit_agent::{Bound, DuplicateLogin, Session, SessionStore, StoreFuture, StoredSession};
use std::sync::Arc;

/// `inner` (the store the gate was configured with), whose heartbeats `recorder` also sees.
pub struct RecordedStore {
    inner: Arc<dyn SessionStore>,
    recorder: Arc<dyn SessionStore>,
}

impl RecordedStore {
    /// Wraps `inner`; `recorder`'s `heartbeat` is called (and its result ignored) before each
    /// of `inner`'s.
    pub fn new(inner: Arc<dyn SessionStore>, recorder: Arc<dyn SessionStore>) -> Self {
        RecordedStore { inner, recorder }
    }
}

impl SessionStore for RecordedStore {
    fn bind(&self, session: Arc<Session>, policy: DuplicateLogin) -> StoreFuture<Bound> {
        self.inner.bind(session, policy)
    }

    fn storage(&self, session: Arc<Session>) -> StoreFuture<()> {
        self.inner.storage(session)
    }

    fn heartbeat(&self, session: Arc<Session>) -> StoreFuture<()> {
        // The recorders answer at once: they only count.
        drop(self.recorder.heartbeat(session.clone()));
        self.inner.heartbeat(session)
    }

    fn disconnect(&self, session: Arc<Session>) -> StoreFuture<()> {
        self.inner.disconnect(session)
    }

    fn delete(&self, session: Arc<Session>) -> StoreFuture<()> {
        self.inner.delete(session)
    }

    fn query(&self, user_id: &str) -> StoreFuture<Option<StoredSession>> {
        self.inner.query(user_id)
    }
}
