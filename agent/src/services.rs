//! The traits a user implements: back ends and the connection learner ([`SessionStore`] is in
//! [`store`](crate::store)).

use crate::connection::CloseReason;
use crate::session::Session;
use crate::store::{NoStore, SessionStore};
use bytes::Bytes;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Why a back end did not answer with a result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The module has no such function.
    #[error("no such function")]
    NotFound,
    /// The back end refused the request; the bytes say why (sent to the client).
    #[error("failed: {}", String::from_utf8_lossy(.0))]
    Failed(Bytes),
    /// The back end is overloaded (or cannot be reached now).
    #[error("busy")]
    Busy,
    /// The back end misbehaved (an answer the gate cannot use): the client gets `internal error`
    /// and the text, which says what was wrong, is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

/// A back-end module (mqant's RPC module): serves `func` calls for one module name.
///
/// A panic inside `call` (or its future) is caught by the driver: the client gets an
/// `internal error` response and the connection goes on.
pub trait Backend: Send + Sync + 'static {
    /// Handles `module/func` with `body` for `session`.
    fn call(
        &self,
        session: Arc<Session>,
        func: &str,
        body: Bytes,
    ) -> BoxFuture<Result<Bytes, BackendError>>;

    /// Handles `module/func`: what the gate calls. By default [`Backend::call`], which does not
    /// need the module's name; a back end that serves many modules (the fallback of
    /// [`Backends::with_fallback`], such as one forwarding every module to a message bus)
    /// overrides this. `module` is the client's, `type@id` included.
    fn call_in(
        &self,
        session: Arc<Session>,
        module: &str,
        func: &str,
        body: Bytes,
    ) -> BoxFuture<Result<Bytes, BackendError>> {
        let _ = module;
        self.call(session, func, body)
    }

    /// Handles the notify `module/func` (the client waits for no answer): what the gate calls for
    /// a notify. By default [`Backend::call_in`], whose answer is dropped; a back end that can
    /// send one-way (a NATS publish without a reply subject) overrides this. Its future still
    /// bounds the connection's calls in flight until it resolves.
    fn notify_in(
        &self,
        session: Arc<Session>,
        module: &str,
        func: &str,
        body: Bytes,
    ) -> BoxFuture<Result<Bytes, BackendError>> {
        self.call_in(session, module, func, body)
    }
}

impl<F, Fut> Backend for F
where
    F: Fn(Arc<Session>, String, Bytes) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Bytes, BackendError>> + Send + 'static,
{
    fn call(
        &self,
        session: Arc<Session>,
        func: &str,
        body: Bytes,
    ) -> BoxFuture<Result<Bytes, BackendError>> {
        Box::pin(self(session, func.to_owned(), body))
    }
}

/// Routes a module name to its back end. `type@id` (mqant's pinned server) falls back to `type`,
/// and a module no entry names to the fallback, if there is one.
///
/// Cloning is cheap (the table is shared): every connection holds a clone.
#[derive(Clone, Default)]
pub struct Backends {
    modules: Arc<HashMap<String, Arc<dyn Backend>>>,
    fallback: Option<Arc<dyn Backend>>,
}

impl Backends {
    /// No modules.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a module.
    pub fn with(mut self, module: impl Into<String>, backend: impl Backend) -> Self {
        Arc::make_mut(&mut self.modules).insert(module.into(), Arc::new(backend));
        self
    }

    /// Adds (or replaces) a shared module.
    pub fn with_arc(mut self, module: impl Into<String>, backend: Arc<dyn Backend>) -> Self {
        Arc::make_mut(&mut self.modules).insert(module.into(), backend);
        self
    }

    /// Serves every module no entry names with `backend` (it is called through
    /// [`Backend::call_in`], with the module's name).
    pub fn with_fallback(mut self, backend: Arc<dyn Backend>) -> Self {
        self.fallback = Some(backend);
        self
    }

    /// The back end for a module, if any.
    pub fn route(&self, module: &str) -> Option<&Arc<dyn Backend>> {
        self.modules
            .get(module)
            .or_else(|| {
                module
                    .split_once('@')
                    .and_then(|(ty, _)| self.modules.get(ty))
            })
            .or(self.fallback.as_ref())
    }

    /// Whether modules no entry names go to a fallback.
    pub fn has_fallback(&self) -> bool {
        self.fallback.is_some()
    }

    /// The back end of modules no entry names, if there is one.
    pub fn fallback(&self) -> Option<&Arc<dyn Backend>> {
        self.fallback.as_ref()
    }

    /// Module names served.
    pub fn modules(&self) -> impl Iterator<Item = &str> {
        self.modules.keys().map(String::as_str)
    }
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut set = f.debug_set();
        set.entries(self.modules.keys());
        if self.fallback.is_some() {
            set.entry(&"*");
        }
        set.finish()
    }
}

/// Told when sessions come and go (mqant's `AgentLearner`).
///
/// `connect` is called once per session after its handshake; `disconnect` once per session, always
/// after its `connect`, on every path. Both are called on the connection's task: keep them short.
pub trait Learner: Send + Sync + 'static {
    /// A session is connected.
    fn connect(&self, _session: &Session) {}
    /// A session is gone, and why.
    fn disconnect(&self, _session: &Session, _reason: CloseReason) {}
    /// A connection ended before it had a session (its handshake was refused, timed out, or the
    /// client left or broke the protocol first), and why. Called once per such connection, on
    /// its task; transport handshakes that fail never reach an agent and are not told here
    /// ([`Gate::transport_failures`](crate::Gate::transport_failures)).
    fn ended_without_session(&self, _reason: CloseReason) {}
}

/// A learner that does nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoLearner;
impl Learner for NoLearner {}

/// Everything a connection's driver needs besides its socket.
#[derive(Clone)]
pub struct Services {
    /// Back ends by module.
    pub backends: Backends,
    /// The session store.
    pub store: Arc<dyn SessionStore>,
    /// The learner.
    pub learner: Arc<dyn Learner>,
}

impl Default for Services {
    fn default() -> Self {
        Services {
            backends: Backends::new(),
            store: Arc::new(NoStore),
            learner: Arc::new(NoLearner),
        }
    }
}
