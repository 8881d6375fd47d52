//! The session: who is on the other end of a connection (mqant's `Session`).

use std::collections::BTreeMap;
use std::fmt;

/// A connection's session, created when its handshake succeeds.
///
/// Sessions are shared as `Arc<Session>` snapshots: a change (bind, settings) makes a new snapshot,
/// so a back end holding one sees a consistent value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Unique id (random, 128 bits as 32 hex digits by default).
    pub session_id: String,
    /// Transport, e.g. `tcp`.
    pub network: String,
    /// The peer's address.
    pub peer: String,
    /// The id of the gate server holding the connection.
    pub server_id: String,
    /// The user id, once bound.
    pub user_id: Option<String>,
    /// Free-form settings.
    pub settings: BTreeMap<String, String>,
}

impl Session {
    /// A new session with no user and empty settings.
    pub fn new(
        session_id: impl Into<String>,
        network: impl Into<String>,
        peer: impl Into<String>,
        server_id: impl Into<String>,
    ) -> Self {
        Session {
            session_id: session_id.into(),
            network: network.into(),
            peer: peer.into(),
            server_id: server_id.into(),
            user_id: None,
            settings: BTreeMap::new(),
        }
    }

    /// Whether a user id is bound.
    pub fn is_bound(&self) -> bool {
        self.user_id.is_some()
    }
}

impl fmt::Display for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} {})", self.session_id, self.network, self.peer)?;
        if let Some(u) = &self.user_id {
            write!(f, " user {u}")?;
        }
        Ok(())
    }
}

/// A fresh random session id: 128 bits as 32 lowercase hex digits.
pub fn random_session_id() -> String {
    let v: u128 = rand::random();
    format!("{v:032x}")
}
