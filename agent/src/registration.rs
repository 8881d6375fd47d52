//! [`Registration`]: the drop guard that makes Disconnect impossible to forget.

use crate::connection::CloseReason;
use crate::gate::GateShared;
use crate::handle::AgentHandle;
use crate::session::Session;
use std::sync::Arc;

/// Ties one connection to its gate: registers the session on [`Registration::connect`] and, when
/// dropped, unregisters it and calls the learner's `disconnect` — on every path, including a panic or
/// a cancelled task, and for custom agents too. mqant leaves this call to the implementer (its seed
/// example warns that forgetting it leaks the agent); here it is not a call anyone can forget.
pub struct Registration {
    gate: Arc<GateShared>,
    conn_id: u64,
    handle: AgentHandle,
    session: Option<Arc<Session>>,
    reason: Option<CloseReason>,
    /// Whether the learner was told of the end (or, under fault injection, deliberately not).
    told: bool,
}

impl Registration {
    pub(crate) fn conn_id(&self) -> u64 {
        self.conn_id
    }

    pub(crate) fn new(gate: Arc<GateShared>, conn_id: u64, handle: AgentHandle) -> Self {
        Registration {
            gate,
            conn_id,
            handle,
            session: None,
            reason: None,
            told: false,
        }
    }

    /// The gate's authenticator, if it has one.
    pub(crate) fn authenticator(&self) -> Option<&Arc<dyn crate::auth::Authenticator>> {
        self.gate.authenticator.as_ref()
    }

    /// The handle of this connection.
    pub fn handle(&self) -> &AgentHandle {
        &self.handle
    }

    /// Registers the session and tells the learner (once; later calls only update the snapshot).
    pub fn connect(&mut self, session: Arc<Session>) {
        self.handle.set_session(Some(session.clone()));
        if self.session.is_some() {
            self.session = Some(session);
            return;
        }
        self.gate.register(&session, &self.handle);
        self.gate.services.learner.connect(&session);
        self.session = Some(session);
    }

    /// Counts and logs a store operation's failure (at `warn` at most every 10 s with the count
    /// so far, each at `debug`; a success after a warned failure at `info`).
    pub(crate) fn store_result<T>(
        &self,
        kind: crate::store::StoreKind,
        result: &Result<T, crate::store::StoreError>,
    ) {
        self.gate.store_result(kind, result);
    }

    /// Has the user's older session at `at` kicked (duplicate login, policy `kick`).
    pub(crate) fn kick_elsewhere(&self, at: crate::store::Location) {
        self.gate.kick_elsewhere(at);
    }

    /// Counts a refused duplicate login (this session).
    pub(crate) fn duplicate_refused(&self) {
        self.gate.duplicate_refused();
    }

    /// Updates the session snapshot (after bind, settings...).
    pub fn update(&mut self, session: Arc<Session>) {
        if self.session.is_some() {
            self.handle.set_session(Some(session.clone()));
            self.session = Some(session);
        }
    }

    /// Unregisters and tells the learner now, with `reason`. Dropping does the same (with
    /// `internal`, or `shutdown` during a gate shutdown) if this was not called.
    pub fn disconnect(&mut self, reason: CloseReason) {
        self.reason.get_or_insert(reason);
        if std::mem::replace(&mut self.told, true) {
            return;
        }
        #[cfg(feature = "fault-injection")]
        if self
            .session
            .as_ref()
            .is_some_and(|s| self.gate.config.faults.drops_disconnect_of(&s.session_id))
        {
            // Forgotten, as in mqant: the session stays registered and the learner is never told.
            self.session = None;
            return;
        }
        if let Some(session) = self.session.take() {
            self.gate.unregister(&session.session_id);
            self.gate.services.learner.disconnect(&session, reason);
        } else {
            self.gate.services.learner.ended_without_session(reason);
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let reason = if self.gate.is_shutting_down() {
            CloseReason::Shutdown
        } else {
            CloseReason::Internal
        };
        self.disconnect(reason);
        self.gate.connection_ended(self.conn_id);
    }
}
