//! Session stores of the server (`[store]`): in memory (the embedded default), or none.

use crate::Dur;
use gatekit_agent::{MemoryStore, NoStore, SessionStore};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Which store keeps the sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreKind {
    /// This gate's memory: a quick reconnect to the same gate gets its settings back.
    Memory,
    /// Nothing is kept.
    None,
}

/// `[store]` of the config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Which store.
    pub kind: StoreKind,
    /// How long a bound session's entry lives past its last write or heartbeat: at least the
    /// heartbeat interval (`limits.heartbeat`), or online users would expire between beats.
    pub ttl: Dur,
    /// How long a session's settings are kept after it disconnects (a reconnect within it gets
    /// them back).
    pub grace: Dur,
    /// Time a store operation may take before it counts as failed (the connection goes on).
    pub timeout: Dur,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            kind: StoreKind::Memory,
            ttl: Dur::secs(180),
            grace: Dur::secs(60),
            timeout: Dur::secs(2),
        }
    }
}

impl StoreConfig {
    /// What is wrong with the section, as (key, message); `heartbeat` is `limits.heartbeat`.
    pub fn check(&self, heartbeat: Dur) -> Result<(), (&'static str, String)> {
        for (key, d) in [
            ("store.ttl", self.ttl),
            ("store.grace", self.grace),
            ("store.timeout", self.timeout),
        ] {
            if d.0.is_zero() {
                return Err((key, "must be more than 0".into()));
            }
        }
        if self.ttl.0 < heartbeat.0 {
            return Err((
                "store.ttl",
                format!(
                    "{} is shorter than limits.heartbeat ({}): online sessions would expire between their heartbeats",
                    self.ttl, heartbeat
                ),
            ));
        }
        Ok(())
    }

    /// The store this section describes.
    pub fn build(&self) -> Arc<dyn SessionStore> {
        match self.kind {
            StoreKind::None => Arc::new(NoStore),
            StoreKind::Memory => Arc::new(MemoryStore::new(self.ttl.0, self.grace.0)),
        }
    }
}
