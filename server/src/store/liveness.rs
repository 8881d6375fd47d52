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
//!
//! Every gate also reaps: the users located on a gate whose key has expired (it died) are set
//! offline in Redis ([`RedisStore::reap`]), so within `gate_ttl` plus one beat interval no dead
//! gate's user is listed online, even to a service that reads Redis directly.

use super::redis::RedisStore;
use gatekit_agent::Gate;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Users handled per reap call.
const REAP_BUDGET: u32 = 1000;

/// Before the gate's first client: sets offline every user an earlier run of this gate id left
/// located here, and marks the gate alive. Failures are logged (the loop retries the beat).
pub async fn start(redis: &RedisStore, gate_id: &str) {
    loop {
        match redis.reap(Some(gate_id), REAP_BUDGET).await {
            Ok((reaped, handled)) => {
                if reaped > 0 {
                    tracing::info!(gate = %gate_id, users = reaped, "users an earlier run of this gate left online are offline now");
                }
                if handled < u64::from(REAP_BUDGET) {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(gate = %gate_id, error = %e, "cannot clear what an earlier run of this gate left in Redis");
                break;
            }
        }
    }
    if let Err(e) = redis.beat_gate(gate_id).await {
        tracing::warn!(gate = %gate_id, error = %e, "cannot mark this gate alive in Redis yet");
    }
}

/// Runs the beats of gate `gate_id`, and the reaping of dead gates' users, until aborted.
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
                    match redis.reap(None, REAP_BUDGET).await {
                        Ok((0, _)) => {}
                        Ok((n, _)) => {
                            tracing::info!(gate = %gate_id, users = n, "users of a gate that died are offline now")
                        }
                        Err(e) => tracing::debug!(error = %e, "reap failed"),
                    }
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
