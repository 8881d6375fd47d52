//! The embedded default back end: the in-process `echo` module, so `gatekit serve` answers with
//! nothing else installed.

use bytes::Bytes;
use gatekit_agent::{Backend, BackendError, BoxFuture, Session};
use std::sync::Arc;

/// Answers every call with its request body.
#[derive(Debug, Default, Clone, Copy)]
pub struct Echo;

impl Backend for Echo {
    fn call(
        &self,
        _session: Arc<Session>,
        _func: &str,
        body: Bytes,
    ) -> BoxFuture<Result<Bytes, BackendError>> {
        Box::pin(async move { Ok(body) })
    }
}
