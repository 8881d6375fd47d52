//! What the directory phase asks the cluster, as any other service would: the user directory
//! over NATS (`<prefix>.users.<op>`, answered by one gate of the queue group), and the user's
//! stored session read straight from Redis (`GET <prefix>:session:<user>`).

use bytes::Bytes;
use gatekit_server::nats::headers;
use serde_json::Value;
use std::time::Duration;

/// How long one directory request may take (a forwarded op takes up to 2 s at the gates).
pub const REQUEST_WITHIN: Duration = Duration::from_secs(5);

/// The subject prefix of the cluster's gates.
pub const PREFIX: &str = "gatekit";

/// `<prefix>.users.<op>` for `user` with `extra` headers and `payload`: the JSON answer, or why
/// there was none.
pub async fn op(
    nats: &async_nats::Client,
    op: &str,
    user: &str,
    extra: &[(&'static str, &str)],
    payload: Bytes,
) -> Result<Value, String> {
    op_within(nats, op, user, extra, payload, REQUEST_WITHIN).await
}

/// [`op`], waiting at most `within` for the answer.
pub async fn op_within(
    nats: &async_nats::Client,
    op: &str,
    user: &str,
    extra: &[(&'static str, &str)],
    payload: Bytes,
    within: Duration,
) -> Result<Value, String> {
    let subject = format!("{PREFIX}.users.{op}");
    let mut h = async_nats::HeaderMap::new();
    h.insert(headers::USER, user);
    for (k, v) in extra {
        h.insert(*k, *v);
    }
    let request = async_nats::Request::new()
        .payload(payload)
        .headers(h)
        .timeout(Some(within));
    let reply = tokio::time::timeout(within, nats.send_request(subject.clone(), request))
        .await
        .map_err(|_| format!("{subject} for {user:?}: no answer within {within:?}"))?
        .map_err(|e| format!("{subject} for {user:?}: {e}"))?;
    serde_json::from_slice(&reply.payload).map_err(|e| {
        format!(
            "{subject} for {user:?}: the answer is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&reply.payload)
        )
    })
}

/// `users.send` of `body` on `topic` to `user`.
pub async fn send(
    nats: &async_nats::Client,
    user: &str,
    topic: &str,
    body: Bytes,
) -> Result<Value, String> {
    op(nats, "send", user, &[(headers::TOPIC, topic)], body).await
}

/// `users.is_online` of `user`.
pub async fn is_online(nats: &async_nats::Client, user: &str) -> Result<Value, String> {
    op(nats, "is_online", user, &[], Bytes::new()).await
}

/// Where an `is_online` answer says the user is: `Some((gate, session_id))` when online.
pub fn online_at(answer: &Value) -> Option<(String, String)> {
    if answer.get("ok") != Some(&Value::Bool(true))
        || answer.get("online") != Some(&Value::Bool(true))
    {
        return None;
    }
    let s = |k: &str| answer.get(k).and_then(Value::as_str).map(str::to_owned);
    Some((s("gate")?, s("session_id")?))
}

/// A string field of an answer (`""` when absent).
pub fn field<'a>(answer: &'a Value, key: &str) -> &'a str {
    answer.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// A connection to the cluster's Redis, for reading the stored sessions as other services may.
#[derive(Clone)]
pub struct Redis {
    conn: redis::aio::MultiplexedConnection,
}

impl Redis {
    /// Connects to `url` (within 5 s).
    pub async fn connect(url: &str) -> Result<Redis, String> {
        let client = redis::Client::open(url).map_err(|e| format!("redis url {url}: {e}"))?;
        let conn = tokio::time::timeout(
            Duration::from_secs(5),
            client.get_multiplexed_async_connection(),
        )
        .await
        .map_err(|_| format!("redis {url}: no connection within 5 s"))?
        .map_err(|e| format!("redis {url}: {e}"))?;
        Ok(Redis { conn })
    }

    /// The gate `user`'s stored session names as its location (`None`: no entry, or no
    /// location: offline).
    pub async fn stored_gate(&self, user: &str) -> Result<Option<String>, String> {
        let key = format!("{PREFIX}:session:{user}");
        let mut c = self.conn.clone();
        let value: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut c)
            .await
            .map_err(|e| format!("redis GET {key}: {e}"))?;
        let Some(value) = value else { return Ok(None) };
        let v: Value = serde_json::from_str(&value)
            .map_err(|e| format!("redis GET {key}: not JSON ({e}): {value:?}"))?;
        Ok(v.get("gate").and_then(Value::as_str).map(str::to_owned))
    }

    /// `INFO <section>`'s text.
    pub async fn info(&self, section: &str) -> Result<String, String> {
        let mut c = self.conn.clone();
        redis::cmd("INFO")
            .arg(section)
            .query_async(&mut c)
            .await
            .map_err(|e| format!("redis INFO {section}: {e}"))
    }

    /// Whether the gate's liveness key `<prefix>:gate:<gate>` exists.
    pub async fn gate_alive(&self, gate: &str) -> Result<bool, String> {
        let key = format!("{PREFIX}:gate:{gate}");
        let mut c = self.conn.clone();
        let n: i64 = redis::cmd("EXISTS")
            .arg(&key)
            .query_async(&mut c)
            .await
            .map_err(|e| format!("redis EXISTS {key}: {e}"))?;
        Ok(n > 0)
    }
}
