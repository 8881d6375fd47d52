//! [`RemoteGates`]: what a gate asks of the other gates of its cluster. The agent crate has no
//! network of its own for this; the server implements it over NATS (gatekit-server's gate RPC).

use crate::services::BoxFuture;
use crate::store::Location;

/// The other gates of a cluster, as one gate reaches them.
pub trait RemoteGates: Send + Sync + 'static {
    /// Closes the session at `at` (on another gate) with CLOSE `kicked` and `reason`.
    /// An error says why it could not be done (the gate is gone, unreachable, or has no such
    /// session); the caller logs it.
    fn kick(&self, at: &Location, reason: &str) -> BoxFuture<Result<(), String>>;
}

/// A gate alone: there are no other gates, and kicking a session elsewhere fails.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoRemoteGates;

impl RemoteGates for NoRemoteGates {
    fn kick(&self, at: &Location, _reason: &str) -> BoxFuture<Result<(), String>> {
        let why = format!(
            "session {:?} is on gate {:?} and this gate reaches no other gate",
            at.session_id, at.gate
        );
        Box::pin(std::future::ready(Err(why)))
    }
}
