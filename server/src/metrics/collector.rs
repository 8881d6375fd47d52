//! What the gate and the NATS client count themselves, sampled at each scrape.

use gatekit_agent::Gate;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use std::fmt;
use std::sync::Mutex;

/// The gate and NATS client to sample, once they are known.
#[derive(Default)]
pub(super) struct Sampled {
    gate: Mutex<Option<Gate>>,
    nats: Mutex<Option<async_nats::Client>>,
}

impl Sampled {
    pub(super) fn set_gate(&self, gate: Gate) {
        *self.gate.lock().unwrap_or_else(|e| e.into_inner()) = Some(gate);
    }

    pub(super) fn set_nats(&self, client: async_nats::Client) {
        *self.nats.lock().unwrap_or_else(|e| e.into_inner()) = Some(client);
    }
}

impl fmt::Debug for Sampled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sampled").finish_non_exhaustive()
    }
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> fmt::Result {
    let m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(v).encode(m)
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> fmt::Result {
    let m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(v).encode(m)
}

fn counters(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &'static str,
    values: &[(&'static str, u64)],
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, v) in values {
        let labels = [(label, *value)];
        ConstCounter::new(*v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn clamp(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Collector for Sampled {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let gate = self.gate.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(gate) = gate {
            let (accepted, refused) = gate.accepted_refused();
            let (accept_errors, out_of_files) = gate.accept_errors();
            let (failed, timed_out) = gate.transport_failures();
            let traffic = gate.traffic();
            gauge(
                &mut enc,
                "connections",
                "Connections held, handshaking ones included.",
                clamp(gate.connection_count()),
            )?;
            counter(
                &mut enc,
                "connections_accepted",
                "Connections accepted.",
                accepted,
            )?;
            counter(
                &mut enc,
                "connections_refused",
                "Connections refused: the gate was full (max_connections) or shutting down.",
                refused,
            )?;
            counter(
                &mut enc,
                "accept_errors",
                "Failed accept calls of the listeners.",
                accept_errors,
            )?;
            counter(
                &mut enc,
                "accept_errors_out_of_files",
                "Failed accept calls because the process or the system was out of file descriptors.",
                out_of_files,
            )?;
            counters(
                &mut enc,
                "transport_handshake_failures",
                "Connections whose transport handshake (TLS, WebSocket upgrade) failed or did not end \
                 by the handshake deadline, by kind.",
                "kind",
                &[("failed", failed), ("timed_out", timed_out)],
            )?;
            let (kicked, refused) = gate.duplicate_logins();
            counters(
                &mut enc,
                "duplicate_logins",
                "Logins of a user online on another session ([store] duplicate_login): the older \
                 session kicked, or the new one refused.",
                "outcome",
                &[("kicked", kicked), ("refused", refused)],
            )?;
            gauge(
                &mut enc,
                "groups",
                "Groups with members on this gate.",
                clamp(gate.group_count()),
            )?;
            counters(
                &mut enc,
                "packets",
                "Packets received from (in) and written to (out) clients.",
                "direction",
                &[("in", traffic.packets_in), ("out", traffic.packets_out)],
            )?;
            counters(
                &mut enc,
                "bytes",
                "Bytes of the protocols' streams received from (in) and written to (out) clients \
                 (TLS records and WebSocket frames not counted).",
                "direction",
                &[("in", traffic.bytes_in), ("out", traffic.bytes_out)],
            )?;
        }
        let nats = self.nats.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(client) = nats {
            let up = client.connection_state() == async_nats::connection::State::Connected;
            gauge(
                &mut enc,
                "nats_connected",
                "1 while the NATS connection is up, 0 while it is not.",
                i64::from(up),
            )?;
        }
        Ok(())
    }
}
