//! `gatekit backend`: a fake back end in a process of its own, over NATS (docs/CLUSTER.md). It
//! queue-subscribes to `<prefix>.rpc.<module>.>` in queue group `<module>` and answers every
//! request with its payload (after `latency`), with no `Gatekit-Status` header (ok); messages
//! without a reply subject (notifies) are counted and dropped. `gatekit cluster` runs several.
//!
//! On stdout, JSON lines ([`BackendEvent`]): `{"event":"ready"}` once the NATS server has the
//! subscription (a round trip through a private inbox proves it), and `stopped` with counts at
//! the end. It stops at SIGTERM or SIGINT, or (with `stdin_control`) when standard input closes.
//!
//! `corrupt_every` (for the tests that prove `gatekit cluster` can fail) answers every Nth
//! request with a body that differs from the request's.

use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Options of `gatekit backend`.
#[derive(Debug, Clone)]
pub struct BackendOptions {
    /// The NATS server, e.g. `nats://127.0.0.1:4222`.
    pub nats: String,
    /// The module served.
    pub module: String,
    /// The first token of every subject (the gate's `[nats] prefix`).
    pub prefix: String,
    /// Time before each answer.
    pub latency: Duration,
    /// Stop when standard input closes.
    pub stdin_control: bool,
    /// Answer every Nth request with a wrong body (0 or `None`: never).
    pub corrupt_every: Option<u64>,
}

/// What `gatekit backend` prints, one JSON object per line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum BackendEvent {
    /// Subscribed: requests sent from now on reach this back end (or another of its group).
    Ready,
    /// Stopped, with what it did.
    Stopped {
        /// Requests answered (corrupted ones included).
        answered: u64,
        /// Of those, the ones answered with a wrong body.
        corrupted: u64,
        /// Messages without a reply subject.
        notifies: u64,
    },
}

/// The body sent instead of the request's by `corrupt_every`: never equal to it.
pub fn corrupt(payload: &[u8]) -> Bytes {
    let mut v = payload.to_vec();
    v.extend_from_slice(b"!corrupted");
    Bytes::from(v)
}

/// Runs the back end until a signal (or standard input's end); `report` gets its events.
pub async fn run(
    opts: BackendOptions,
    mut report: impl FnMut(&BackendEvent),
) -> Result<(), String> {
    let client = async_nats::ConnectOptions::new()
        .name(format!("gatekit backend {}", opts.module))
        .connection_timeout(Duration::from_secs(5))
        .connect(opts.nats.as_str())
        .await
        .map_err(|e| format!("connecting to NATS at {}: {e}", opts.nats))?;
    let subject = format!("{}.rpc.{}.>", opts.prefix, opts.module);
    let mut requests = client
        .queue_subscribe(subject.clone(), opts.module.clone())
        .await
        .map_err(|e| format!("subscribing to {subject}: {e}"))?;
    round_trip(&client).await?;
    report(&BackendEvent::Ready);

    let stdin = async {
        if opts.stdin_control {
            crate::stdin_control::closed().await
        } else {
            std::future::pending().await
        }
    };
    tokio::pin!(stdin);
    let terminate = terminate_signal();
    tokio::pin!(terminate);
    let every = opts.corrupt_every.filter(|&n| n > 0);
    let (mut answered, mut corrupted, mut notifies) = (0u64, 0u64, 0u64);
    let mut delayed = tokio::task::JoinSet::new();
    loop {
        let msg = tokio::select! {
            _ = &mut stdin => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = &mut terminate => break,
            // Reap finished delayed answers so the set does not grow.
            Some(_) = delayed.join_next(), if !delayed.is_empty() => continue,
            msg = requests.next() => match msg {
                Some(m) => m,
                None => return Err("the NATS subscription ended".to_owned()),
            },
        };
        let Some(reply) = msg.reply else {
            notifies += 1;
            continue;
        };
        answered += 1;
        let body = if every.is_some_and(|n| answered % n == 0) {
            corrupted += 1;
            corrupt(&msg.payload)
        } else {
            msg.payload
        };
        if opts.latency.is_zero() {
            if let Err(e) = client.publish(reply, body).await {
                eprintln!("gatekit backend: reply not sent: {e}");
            }
        } else {
            let (client, latency) = (client.clone(), opts.latency);
            delayed.spawn(async move {
                tokio::time::sleep(latency).await;
                if let Err(e) = client.publish(reply, body).await {
                    eprintln!("gatekit backend: reply not sent: {e}");
                }
            });
        }
    }
    // Stop taking requests, send the answers still due, then say what was done.
    let _ = requests.unsubscribe().await;
    while delayed.join_next().await.is_some() {}
    let _ = client.flush().await;
    report(&BackendEvent::Stopped {
        answered,
        corrupted,
        notifies,
    });
    Ok(())
}

/// Returns once the server has processed everything `client` sent before (the subscription
/// above included), within 10 s.
async fn round_trip(client: &async_nats::Client) -> Result<(), String> {
    match tokio::time::timeout(
        Duration::from_secs(10),
        gatekit_server::nats::round_trip(client),
    )
    .await
    {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("NATS round trip: {e}")),
        Err(_) => Err("NATS round trip: no answer within 10 s".to_owned()),
    }
}

/// SIGTERM (never, where there is no such signal).
async fn terminate_signal() {
    #[cfg(unix)]
    if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    {
        term.recv().await;
        return;
    }
    std::future::pending::<()>().await
}
