//! Prometheus metrics of the gate, served at `/metrics` on their own address ([`serve`]).
//!
//! Every name starts with `gatekit_`. What the gate counts itself is sampled at each scrape
//! ([`Metrics::watch_gate`], [`Metrics::watch_nats`]); the rest is counted by wrappers around the
//! learner, the session store and every back end ([`Metrics::learner`], [`Metrics::store`],
//! [`Metrics::backends`]):
//!
//! | metric | type | labels | what |
//! |---|---|---|---|
//! | `gatekit_gate_info` | info | `gate` | the gate's id |
//! | `gatekit_connections` | gauge | | connections held, handshaking ones included |
//! | `gatekit_connections_accepted_total` | counter | | connections accepted |
//! | `gatekit_connections_refused_total` | counter | | connections refused (server full, shutting down) |
//! | `gatekit_accept_errors_total` | counter | | failed `accept` calls |
//! | `gatekit_accept_errors_out_of_files_total` | counter | | of those, out of file descriptors |
//! | `gatekit_transport_handshake_failures_total` | counter | `kind` = `failed`, `timed_out` | TLS / WebSocket handshakes that failed |
//! | `gatekit_packets_total`, `gatekit_bytes_total` | counter | `direction` = `in`, `out` | traffic of the protocols' streams |
//! | `gatekit_sessions` | gauge | `network` | sessions connected, by transport |
//! | `gatekit_handshakes_total` | counter | `result` = `accepted` | sessions connected |
//! | `gatekit_handshakes_refused_total` | counter | `reason` | connections that ended without a session |
//! | `gatekit_disconnects_total` | counter | `reason` | sessions gone |
//! | `gatekit_slow_consumers_total` | counter | | sessions closed because the client did not read |
//! | `gatekit_requests_total` | counter | `module`, `status` | back-end calls ended |
//! | `gatekit_backend_timeouts_total` | counter | `module` | back-end calls slower than `backend_timeout` |
//! | `gatekit_backend_latency_seconds` | histogram | `module` | time to the back end's answer |
//! | `gatekit_calls_in_flight` | gauge | | back-end calls running |
//! | `gatekit_storage_heartbeats_total` | counter | | session store heartbeats |
//! | `gatekit_store_operations_total` | counter | `op` = `bind`, `storage`, `heartbeat`, `disconnect`, `delete` | session store operations ended |
//! | `gatekit_store_errors_total` | counter | `op` | of those, failed or timed out (each also logged) |
//! | `gatekit_nats_connected` | gauge | | 1 while the NATS connection is up (absent without NATS) |
//!
//! `reason` is a [`CloseReason`]'s name. The `module` label is bounded: modules of the routing
//! table are labelled by their name (a client's `type@id` by its `type`); modules clients reach
//! through the fallback, or that no back end serves, by their name (`type` of `type@id`) for the
//! first [`MAX_FALLBACK_MODULES`] distinct names only, and `other` after that.

mod collector;
mod http;
mod wrappers;

pub use http::serve;

use collector::Sampled;
use gatekit_agent::{AgentConfig, Backends, CloseReason, Gate, Learner, SessionStore, StoreKind};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Distinct module names labelled as they are among those reaching the fallback (clients choose
/// them); the calls of any further name are labelled `other`.
pub const MAX_FALLBACK_MODULES: usize = 64;

/// The `module` label of the calls of modules past [`MAX_FALLBACK_MODULES`].
pub const OTHER_MODULE: &str = "other";

/// Upper bounds of `gatekit_backend_latency_seconds`' buckets: 0.5 ms to 10 s.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The `Content-Type` of [`Metrics::encode`]'s text: the OpenMetrics text format, which is what
/// prometheus-client writes (it ends with `# EOF`).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `[metrics]` of the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where `/metrics` is served (plain HTTP). None: no metrics endpoint.
    pub addr: Option<SocketAddr>,
}

type Label1 = [(&'static str, String); 1];
type Label2 = [(&'static str, String); 2];

/// The gate's metrics.
pub struct Metrics {
    gate_id: String,
    registry: Registry,
    sampled: Arc<Sampled>,
    /// The gate's `backend_timeout`, nanoseconds (from [`Metrics::watch_gate`]).
    backend_timeout_nanos: AtomicU64,
    sessions: Family<Label1, Gauge>,
    handshakes_accepted: Counter,
    /// By [`CloseReason::ALL`]'s order.
    handshakes_refused: Vec<Counter>,
    /// By [`CloseReason::ALL`]'s order.
    disconnects: Vec<Counter>,
    slow_consumers: Counter,
    requests: Family<Label2, Counter>,
    backend_timeouts: Family<Label1, Counter>,
    backend_latency: Family<Label1, Histogram, fn() -> Histogram>,
    calls_in_flight: Gauge,
    storage_heartbeats: Counter,
    /// By [`StoreKind::ALL`]'s order.
    store_ops: Vec<Counter>,
    /// By [`StoreKind::ALL`]'s order.
    store_errors: Vec<Counter>,
    fallback: wrappers::FallbackLabels,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

fn reason_index(reason: CloseReason) -> usize {
    CloseReason::ALL
        .iter()
        .position(|r| *r == reason)
        .expect("CloseReason::ALL has every reason")
}

/// `s` as an OpenMetrics label value: `\`, `"` and line feeds escaped (prometheus-client writes
/// label values as they are, and module names come from clients).
pub fn escape_label(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

impl Metrics {
    /// Metrics of the gate `gate_id`.
    pub fn new(gate_id: &str) -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("gatekit");
        registry.register(
            "gate",
            "The gate's id",
            Info::new([("gate", escape_label(gate_id))]),
        );
        let sessions = Family::<Label1, Gauge>::default();
        registry.register(
            "sessions",
            "Sessions connected (handshake done, not yet disconnected), by transport",
            sessions.clone(),
        );
        let handshakes = Family::<[(&'static str, &'static str); 1], Counter>::default();
        let handshakes_accepted = handshakes.get_or_create_owned(&[("result", "accepted")]);
        registry.register(
            "handshakes",
            "Handshakes that gave a session, by result",
            handshakes,
        );
        let refused = Family::<[(&'static str, &'static str); 1], Counter>::default();
        let handshakes_refused = CloseReason::ALL
            .iter()
            .map(|r| refused.get_or_create_owned(&[("reason", r.name())]))
            .collect();
        registry.register(
            "handshakes_refused",
            "Connections that ended without a session (handshake refused or timed out, or the client \
             left or broke the protocol first), by reason; failed transport handshakes are not counted \
             here (gatekit_transport_handshake_failures_total)",
            refused,
        );
        let disc = Family::<[(&'static str, &'static str); 1], Counter>::default();
        let disconnects = CloseReason::ALL
            .iter()
            .map(|r| disc.get_or_create_owned(&[("reason", r.name())]))
            .collect();
        registry.register("disconnects", "Sessions gone, by reason", disc);
        let slow_consumers = Counter::default();
        registry.register(
            "slow_consumers",
            "Sessions closed because the client did not read its output (disconnects with reason slow_consumer)",
            slow_consumers.clone(),
        );
        let requests = Family::<Label2, Counter>::default();
        registry.register(
            "requests",
            "Back-end calls ended, by module and status: the back end's answer (ok, not_found, failed, \
             busy, internal_error; a panic is internal_error), also when it came after backend_timeout, \
             or cancelled when the call was dropped unanswered (its connection closed, or the gate gave up \
             on it); calls to a module no back end serves are not_found",
            requests.clone(),
        );
        let backend_timeouts = Family::<Label1, Counter>::default();
        registry.register(
            "backend_timeouts",
            "Back-end calls that took longer than backend_timeout, answered late or dropped unanswered \
             after it, by module: the gate answered the client's request timeout",
            backend_timeouts.clone(),
        );
        let backend_latency =
            Family::<Label1, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "backend_latency",
            "Time from a back-end call to its answer (late ones included, cancelled ones not), by module",
            Unit::Seconds,
            backend_latency.clone(),
        );
        let calls_in_flight = Gauge::default();
        registry.register(
            "calls_in_flight",
            "Back-end calls running (started, neither answered nor dropped)",
            calls_in_flight.clone(),
        );
        let storage_heartbeats = Counter::default();
        registry.register(
            "storage_heartbeats",
            "Heartbeats of bound sessions sent to the session store",
            storage_heartbeats.clone(),
        );
        let ops = Family::<[(&'static str, &'static str); 1], Counter>::default();
        let store_ops = StoreKind::ALL
            .iter()
            .map(|k| ops.get_or_create_owned(&[("op", k.name())]))
            .collect();
        registry.register(
            "store_operations",
            "Session store operations ended (successfully or not), by operation",
            ops,
        );
        let errors = Family::<[(&'static str, &'static str); 1], Counter>::default();
        let store_errors = StoreKind::ALL
            .iter()
            .map(|k| errors.get_or_create_owned(&[("op", k.name())]))
            .collect();
        registry.register(
            "store_errors",
            "Session store operations that failed or timed out, by operation (the connection goes on)",
            errors,
        );
        let sampled = Arc::new(Sampled::default());
        registry.register_collector(Box::new(sampled.clone()));
        let m = Metrics {
            gate_id: gate_id.to_owned(),
            registry,
            sampled,
            backend_timeout_nanos: AtomicU64::new(0),
            sessions,
            handshakes_accepted,
            handshakes_refused,
            disconnects,
            slow_consumers,
            requests,
            backend_timeouts,
            backend_latency,
            calls_in_flight,
            storage_heartbeats,
            store_ops,
            store_errors,
            fallback: wrappers::FallbackLabels::default(),
        };
        m.set_backend_timeout(AgentConfig::default().backend_timeout);
        Arc::new(m)
    }

    /// The gate's id.
    pub fn gate_id(&self) -> &str {
        &self.gate_id
    }

    /// `inner`, counted: sessions, handshakes, disconnects.
    pub fn learner(self: &Arc<Self>, inner: Arc<dyn Learner>) -> Arc<dyn Learner> {
        Arc::new(wrappers::CountedLearner {
            inner,
            metrics: self.clone(),
        })
    }

    /// `inner`, counted: operations and failures by kind (a timeout the driver imposes is
    /// counted by the gate, [`Gate::store_errors`](gatekit_agent::Gate::store_errors)).
    pub fn store(self: &Arc<Self>, inner: Arc<dyn SessionStore>) -> Arc<dyn SessionStore> {
        Arc::new(wrappers::CountedStore {
            inner,
            metrics: self.clone(),
        })
    }

    /// Every back end of `backends`, counted and timed. Without a fallback, one answering
    /// `not_found` is added, so calls to modules no back end serves are counted too (the client
    /// gets the same answer).
    pub fn backends(self: &Arc<Self>, backends: Backends) -> Backends {
        wrappers::counted_backends(self, backends)
    }

    /// Samples the gate's own counters at each scrape, and takes its `backend_timeout` (calls
    /// slower than it count as `gatekit_backend_timeouts_total`).
    pub fn watch_gate(&self, gate: Gate) {
        self.set_backend_timeout(gate.config().backend_timeout);
        self.sampled.set_gate(gate);
    }

    /// Samples the NATS connection's state at each scrape.
    pub fn watch_nats(&self, client: async_nats::Client) {
        self.sampled.set_nats(client);
    }

    /// The text exposition format (OpenMetrics, [`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing to a String fails only if an encoder does; ours do not.
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            tracing::warn!("metrics could not be encoded");
        }
        out
    }

    fn set_backend_timeout(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.backend_timeout_nanos.store(nanos, Ordering::Relaxed);
    }

    fn backend_timeout(&self) -> Duration {
        Duration::from_nanos(self.backend_timeout_nanos.load(Ordering::Relaxed))
    }

    /// The counters of calls labelled `module` (a label value, escaped).
    fn module_metrics(&self, label: String) -> wrappers::ModuleMetrics {
        wrappers::ModuleMetrics::new(self, label)
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("gate_id", &self.gate_id)
            .finish_non_exhaustive()
    }
}
