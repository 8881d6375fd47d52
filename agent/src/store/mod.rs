//! Where sessions are kept between connections (mqant's `StorageHandler`), as an asynchronous,
//! fallible service: [`SessionStore`], its stored value [`StoredSession`] (with a documented JSON
//! encoding, docs/CLUSTER.md), and the embedded store [`MemoryStore`].
//!
//! The driver runs a connection's store operations one at a time, in the order the connection
//! asked for them (a queue per connection), beside its packets: a slow or failing store
//! never holds a packet back. An operation that fails or outlives `store_timeout` is counted
//! ([`Gate::store_errors`](crate::Gate::store_errors)) and logged, and the connection goes on.

mod memory;
pub(crate) mod queue;
mod stored;

pub use memory::MemoryStore;
pub use stored::{Location, StoredSession, STORED_SESSION_VERSION};

use crate::services::BoxFuture;
use crate::session::Session;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// What a store operation returns.
pub type StoreFuture<T> = BoxFuture<Result<T, StoreError>>;

/// Why a store operation failed. The connection goes on either way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or refused the operation.
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    /// The store did not answer within `store_timeout`.
    #[error("session store did not answer within {0:?}")]
    Timeout(Duration),
    /// A stored value is not a stored session (a service wrote something else under the key).
    #[error("stored session of user {user_id:?} is unreadable: {reason}")]
    Corrupt {
        /// The user whose value it is.
        user_id: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// What a gate does when a session binds a user who is online on another session (on this gate
/// or another): [`AgentConfig::duplicate_login`](crate::AgentConfig::duplicate_login).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum DuplicateLogin {
    /// The new session binds and the old one is closed with CLOSE `kicked`, reason
    /// [`LOGGED_IN_ELSEWHERE`] (the default).
    #[default]
    Kick,
    /// The new session is not stored as the user's and is closed with CLOSE `kicked`, reason
    /// [`ALREADY_ONLINE`]; the old one goes on.
    Refuse,
    /// Both stay; the user's location is the newer session.
    Allow,
}

impl DuplicateLogin {
    /// Its name in configuration files: `kick`, `refuse`, `allow`.
    pub fn name(self) -> &'static str {
        match self {
            DuplicateLogin::Kick => "kick",
            DuplicateLogin::Refuse => "refuse",
            DuplicateLogin::Allow => "allow",
        }
    }
}

impl std::str::FromStr for DuplicateLogin {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "kick" => Ok(DuplicateLogin::Kick),
            "refuse" => Ok(DuplicateLogin::Refuse),
            "allow" => Ok(DuplicateLogin::Allow),
            other => Err(format!(
                "duplicate login policy {other:?}: expected kick, refuse or allow"
            )),
        }
    }
}

/// The CLOSE reason an older session gets when its user logs in elsewhere ([`DuplicateLogin::Kick`]).
pub const LOGGED_IN_ELSEWHERE: &str = "logged in elsewhere";

/// The CLOSE reason a new session gets when its user is online elsewhere ([`DuplicateLogin::Refuse`]).
pub const ALREADY_ONLINE: &str = "already logged in elsewhere";

/// What [`SessionStore::bind`] found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bound {
    /// Settings stored for the user that the session did not have: the connection adds them to
    /// its session (the session's own keys win, as in mqant's Bind).
    pub restored: BTreeMap<String, String>,
    /// Where the user was online before this bind, if on another session that the store
    /// believes live (a session of a gate the store knows has died is not reported).
    pub previous: Option<Location>,
    /// The store did not bind: the policy was [`DuplicateLogin::Refuse`] and the user is online
    /// at `previous`. Nothing was written.
    pub refused: bool,
}

/// The store operations, named as in mqant's `StorageHandler` and gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StoreKind {
    /// [`SessionStore::bind`].
    Bind,
    /// [`SessionStore::storage`].
    Storage,
    /// [`SessionStore::heartbeat`].
    Heartbeat,
    /// [`SessionStore::disconnect`].
    Disconnect,
    /// [`SessionStore::delete`].
    Delete,
}

impl StoreKind {
    /// Every kind.
    pub const ALL: [StoreKind; 5] = [
        StoreKind::Bind,
        StoreKind::Storage,
        StoreKind::Heartbeat,
        StoreKind::Disconnect,
        StoreKind::Delete,
    ];

    /// A short snake_case name (metrics label, logs).
    pub fn name(self) -> &'static str {
        match self {
            StoreKind::Bind => "bind",
            StoreKind::Storage => "storage",
            StoreKind::Heartbeat => "heartbeat",
            StoreKind::Disconnect => "disconnect",
            StoreKind::Delete => "delete",
        }
    }
}

impl std::fmt::Display for StoreKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A store operation a connection asks its driver for ([`Action::Store`](crate::Action::Store)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOp {
    /// Which operation.
    pub kind: StoreKind,
    /// The session as of the request (the driver sends the latest snapshot of the same user).
    pub session: Arc<Session>,
}

/// Where sessions are kept between connections (mqant's `StorageHandler`): a network service in
/// general, so every operation is asynchronous and may fail.
///
/// Only sessions bound to a user id are stored, keyed by user id. Each operation is given the
/// session as it is when the operation starts. A connection's operations run one at a time, in
/// order; different connections' run concurrently, so an implementation must make each one
/// atomic on its own (docs/CLUSTER.md has the rules the Redis store follows).
///
/// Every method defaults to doing nothing and succeeding, so a store implements what it keeps.
pub trait SessionStore: Send + Sync + 'static {
    /// The session was bound to its user id (mqant's Bind): read the user's stored session, merge
    /// its settings into the session's (the session's own keys win), store the result with the
    /// session as the user's location, and say what was restored and where the user was.
    ///
    /// With [`DuplicateLogin::Refuse`], a user online on another (live) session is not bound:
    /// nothing is written and [`Bound::refused`] is set. The check and the write are one atomic
    /// step, so of two sessions binding the same user at once exactly one is bound.
    fn bind(&self, session: Arc<Session>, policy: DuplicateLogin) -> StoreFuture<Bound> {
        let _ = (session, policy);
        ready(Ok(Bound::default()))
    }

    /// The session's settings changed (mqant's Storage, after Set, Remove or Push): store them.
    fn storage(&self, session: Arc<Session>) -> StoreFuture<()> {
        let _ = session;
        ready(Ok(()))
    }

    /// Keeps a bound session alive (mqant's Heartbeat): the driver calls it at most once per
    /// heartbeat interval, and at least once per interval in which the client was active. A
    /// store that lost the session (it restarted) stores it again.
    fn heartbeat(&self, session: Arc<Session>) -> StoreFuture<()> {
        let _ = session;
        ready(Ok(()))
    }

    /// The session ended or was unbound: the user is no longer online there, and its settings
    /// are kept for the store's grace period, so a quick reconnect (on any gate) gets them back.
    fn disconnect(&self, session: Arc<Session>) -> StoreFuture<()> {
        let _ = session;
        ready(Ok(()))
    }

    /// The user logged out (mqant's Delete): forget the stored session.
    fn delete(&self, session: Arc<Session>) -> StoreFuture<()> {
        let _ = session;
        ready(Ok(()))
    }

    /// The stored session of a user, if any (mqant's Query).
    fn query(&self, user_id: &str) -> StoreFuture<Option<StoredSession>> {
        let _ = user_id;
        ready(Ok(None))
    }
}

/// A session store that keeps nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoStore;
impl SessionStore for NoStore {}

fn ready<T: Send + 'static>(v: Result<T, StoreError>) -> StoreFuture<T> {
    Box::pin(std::future::ready(v))
}

/// Runs one operation on `store`.
pub(crate) fn run(
    store: &dyn SessionStore,
    op: StoreOp,
    policy: DuplicateLogin,
) -> StoreFuture<Option<Bound>> {
    match op.kind {
        StoreKind::Bind => {
            let f = store.bind(op.session, policy);
            Box::pin(async move { f.await.map(Some) })
        }
        StoreKind::Storage => unit(store.storage(op.session)),
        StoreKind::Heartbeat => unit(store.heartbeat(op.session)),
        StoreKind::Disconnect => unit(store.disconnect(op.session)),
        StoreKind::Delete => unit(store.delete(op.session)),
    }
}

fn unit(f: StoreFuture<()>) -> StoreFuture<Option<Bound>> {
    Box::pin(async move { f.await.map(|()| None) })
}
