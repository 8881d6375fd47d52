//! Back ends in any language over NATS (docs/CLUSTER.md is the contract): the gate's calls as
//! NATS requests ([`NatsBackend`]), and the gate RPC back ends call ([`gate_rpc`]).

mod backend;
pub mod directory;
pub mod gate_rpc;
pub mod headers;
pub mod subject;

pub use backend::NatsBackend;

use crate::Dur;
use serde::{Deserialize, Serialize};

/// `[nats]` of the config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsConfig {
    /// The NATS server, `nats://host:port`. None: no NATS (every module in-process).
    pub url: Option<String>,
    /// The first token of every subject (`<prefix>.rpc.<module>.<func>`, `<prefix>.gate...`).
    pub prefix: String,
    /// The name the gate's NATS connection has in the server's monitoring.
    pub name: Option<String>,
    /// Time allowed for one attempt to connect; the gate starts without NATS and reconnects.
    pub connect_timeout: Dur,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: None,
            prefix: "gatekit".to_owned(),
            name: None,
            connect_timeout: Dur::secs(2),
        }
    }
}

/// What can go wrong setting up NATS.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// The URL or options were refused by the client library.
    #[error("nats url {url:?}: {reason}")]
    Options {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The prefix is not a valid subject (one or more tokens).
    #[error("nats prefix {prefix:?}: {reason}")]
    Prefix {
        /// The prefix.
        prefix: String,
        /// Why.
        reason: String,
    },
    /// A subscription failed.
    #[error("nats subscribe {subject}: {reason}")]
    Subscribe {
        /// The subject.
        subject: String,
        /// Why.
        reason: String,
    },
}

/// Connects to NATS without waiting for it longer than one attempt: the first attempt is given
/// `connect_timeout`; if it fails the client is returned all the same and connects (and
/// reconnects, for the gate's life) in the background, logging each change. Calls while it is
/// away are answered `busy` ([`NatsBackend`]).
pub async fn connect(config: &NatsConfig, gate_id: &str) -> Result<async_nats::Client, NatsError> {
    let url = config.url.clone().unwrap_or_default();
    subject::check_prefix(&config.prefix).map_err(|e| NatsError::Prefix {
        prefix: config.prefix.clone(),
        reason: e.to_string(),
    })?;
    let name = config
        .name
        .clone()
        .unwrap_or_else(|| format!("gatekit {gate_id}"));
    let url_for_log = url.clone();
    // Set once the first attempt has ended, either way.
    let (first_tx, mut first_rx) = tokio::sync::watch::channel(false);
    let first_tx = std::sync::Arc::new(first_tx);
    let client = async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .connection_timeout(config.connect_timeout.0)
        // Every request has its own timeout (the back-end timeout).
        .request_timeout(None)
        .event_callback(move |event| {
            let url = url_for_log.clone();
            let first = first_tx.clone();
            async move {
                match &event {
                    async_nats::Event::Connected => tracing::info!(%url, "connected to NATS"),
                    async_nats::Event::Disconnected => {
                        tracing::warn!(%url, "NATS connection lost; NATS modules answer busy until it is back")
                    }
                    async_nats::Event::ClientError(e) if !*first.borrow() => {
                        tracing::warn!(%url, error = %e, "cannot connect to NATS; starting without it, NATS modules answer busy until it is there")
                    }
                    other => tracing::info!(%url, event = %other, "NATS"),
                }
                if matches!(
                    event,
                    async_nats::Event::Connected | async_nats::Event::ClientError(_)
                ) {
                    first.send_replace(true);
                }
            }
        })
        .connect(url.as_str())
        .await
        .map_err(|e| NatsError::Options {
            url,
            reason: e.to_string(),
        })?;
    let wait = config.connect_timeout.0 + std::time::Duration::from_millis(200);
    let _ = tokio::time::timeout(wait, first_rx.wait_for(|done| *done)).await;
    Ok(client)
}

/// Returns once the server has processed everything `client` sent before: a message to a
/// private subject comes back (the server handles one connection's operations in order, so the
/// subscriptions before it are in place). `flush` only empties the socket's buffer: a
/// subscription is not yet live for other connections when it returns. Not bounded in time: wrap
/// it in a timeout.
pub async fn round_trip(client: &async_nats::Client) -> Result<(), String> {
    let probe = client.new_inbox();
    let mut sub = client
        .subscribe(probe.clone())
        .await
        .map_err(|e| e.to_string())?;
    client
        .publish(probe, bytes::Bytes::new())
        .await
        .map_err(|e| e.to_string())?;
    client.flush().await.map_err(|e| e.to_string())?;
    match futures_util::StreamExt::next(&mut sub).await {
        Some(_) => Ok(()),
        None => Err("the probe subscription ended".to_owned()),
    }
}
