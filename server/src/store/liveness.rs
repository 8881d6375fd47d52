//! Gate liveness in Redis: a gate keeps its key `<prefix>:gate:<gate_id>` alive while it can be
//! reached, and stores its live sessions again when Redis comes back or it can be reached again.
//!
//! The key is refreshed every third of `gate_ttl` ([`RedisStore::beat_gate`]) while the gate's
//! NATS connection is up (or always, for a gate without NATS). A gate that is killed, or cut off
//! from NATS, stops refreshing it; within `gate_ttl` the key expires and every other gate
//! treats the users located there as offline (a login elsewhere is not a duplicate, a lookup
//! answers offline and removes the stale location). When the beats succeed again after a
//! failure or a pause, or find the key gone (Redis restarted between two beats), the gate writes every bound session again
//! ([`Gate::store_sessions_again`]): a Redis that restarted empty, or locations removed while
//! the gate was unreachable, are rebuilt from the sessions that are actually live.

use super::redis::RedisStore;
use gatekit_agent::Gate;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Runs the beats of gate `gate_id` until aborted.
pub fn spawn(
    redis: RedisStore,
    gate_id: String,
    gate: Gate,
    nats: Option<async_nats::Client>,
    gate_ttl: Duration,
) -> JoinHandle<()> {
    let every = (gate_ttl / 3).max(Duration::from_millis(10));
    tokio::spawn(async move {
        // Whether the last round refreshed the key; the first success needs no rebuild.
        let mut beating = None::<bool>;
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let reachable = nats
                .as_ref()
                .is_none_or(|c| c.connection_state() == async_nats::connection::State::Connected);
            if !reachable {
                if beating != Some(false) {
                    tracing::warn!(gate = %gate_id, "NATS is not connected: this gate stops marking itself alive in Redis; within gate_ttl the other gates count its users offline");
                }
                beating = Some(false);
                continue;
            }
            match redis.beat_gate(&gate_id).await {
                Ok(was_there) => {
                    // Not there though we beat: Redis lost it (restarted) between two beats.
                    if beating == Some(false) || (beating == Some(true) && !was_there) {
                        let n = gate.store_sessions_again();
                        tracing::info!(gate = %gate_id, sessions = n, "marked alive in Redis again; storing the live sessions again");
                    }
                    beating = Some(true);
                }
                Err(e) => {
                    if beating != Some(false) {
                        tracing::warn!(gate = %gate_id, error = %e, "cannot mark this gate alive in Redis; retrying");
                    }
                    beating = Some(false);
                }
            }
        }
    })
}
