//! The user directory over NATS (docs/CLUSTER.md §3): `<prefix>.users.<op>` acts on a user
//! wherever it is online, without the caller knowing the gate.
//!
//! Every gate serves `<prefix>.users.*` in one queue group ([`subject::USERS_QUEUE`]), so each
//! request reaches one gate. That gate looks the user up in the session store (the location of
//! its stored session: gate id and session id) and does the op itself if the user is online
//! there, or forwards it to the owning gate's gate RPC, `<prefix>.gate.<gate>.<op>`, with
//! `Gatekit-Session` set, and relays the answer. So the store says where a user is, and the
//! owning gate (the only one that holds the connection) says whether it is still there: a user
//! whose gate is gone or cannot be reached is never reported online and an op on it never
//! answers success.
//!
//! Also [`NatsRemoteGates`]: a gate kicking a user's older session on another gate (duplicate
//! login) through that gate's `close`.

use super::gate_rpc::{answer, required, GateRpc, OpError};
use super::{headers, subject, NatsError};
use async_nats::client::RequestErrorKind;
use async_nats::{HeaderMap, Message};
use bytes::Bytes;
use futures_util::StreamExt;
use gatekit_agent::{BoxFuture, Gate, Location, RemoteGates, SessionStore};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How long a forwarded op waits for the owning gate's answer before it is `unreachable`.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);

/// The ops of `<prefix>.users.<op>` and the gate RPC op each is forwarded as.
pub const USER_OPS: [(&str, &str); 10] = [
    ("send", "send"),
    ("kick", "close"),
    ("is_online", "is_connect"),
    ("set", "set"),
    ("remove", "remove"),
    ("push", "push"),
    ("join", "join"),
    ("leave", "leave"),
    ("unbind", "unbind"),
    ("logout", "logout"),
];

/// Subscribes to `<prefix>.users.*` (queue group [`subject::USERS_QUEUE`]) and answers each op,
/// looking users up in `store`, until aborted.
pub async fn serve(
    client: async_nats::Client,
    prefix: &str,
    gate_id: &str,
    gate: Gate,
    store: Arc<dyn SessionStore>,
) -> Result<JoinHandle<()>, NatsError> {
    let all = subject::user_op(prefix, "*");
    let mut sub = client
        .queue_subscribe(all.clone(), subject::USERS_QUEUE.to_owned())
        .await
        .map_err(|e| NatsError::Subscribe {
            subject: all.clone(),
            reason: e.to_string(),
        })?;
    let directory = Arc::new(Directory {
        client: client.clone(),
        prefix: prefix.to_owned(),
        op_prefix: subject::user_op(prefix, ""),
        rpc: GateRpc::new(gate, prefix, gate_id),
        store,
    });
    tracing::info!(subject = %all, "user directory served");
    Ok(tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            let directory = directory.clone();
            tokio::spawn(async move {
                let answer = directory.handle(&msg).await;
                if let Some(reply) = msg.reply {
                    let body = Bytes::from(answer.to_string());
                    if let Err(e) = directory.client.publish(reply, body).await {
                        tracing::debug!(error = %e, "user directory: reply not sent");
                    }
                }
            });
        }
    }))
}

struct Directory {
    client: async_nats::Client,
    prefix: String,
    /// `<prefix>.users.`
    op_prefix: String,
    rpc: GateRpc,
    store: Arc<dyn SessionStore>,
}

impl Directory {
    async fn handle(&self, msg: &Message) -> Value {
        let op = msg
            .subject
            .as_str()
            .strip_prefix(self.op_prefix.as_str())
            .unwrap_or_default();
        let Some(&(_, gate_op)) = USER_OPS.iter().find(|(o, _)| *o == op) else {
            let names: Vec<&str> = USER_OPS.iter().map(|(o, _)| *o).collect();
            return answer(Err(OpError::bad_request(format!(
                "unknown op {op:?} ({})",
                names.join(", ")
            ))));
        };
        let h = msg.headers.as_ref();
        let user = match required(h, headers::USER) {
            Ok(u) => u.to_owned(),
            Err(e) => return answer(Err(e)),
        };
        let is_online = op == "is_online";
        let offline = |reason: &str, message: String| {
            if is_online {
                json!({"ok": true, "online": false, "user": user, "reason": reason})
            } else {
                json!({"ok": false, "error": "offline", "user": user, "reason": reason, "message": message})
            }
        };
        let location = match self.store.query(&user).await {
            Err(e) => {
                return json!({"ok": false, "error": "store_unavailable", "user": user, "message": e.to_string()})
            }
            Ok(stored) => stored.and_then(|s| s.location),
        };
        let Some(at) = location else {
            return offline(
                "offline",
                format!("user {user:?} is not online (the session store has no location)"),
            );
        };
        let mut forwarded = h.cloned().unwrap_or_default();
        forwarded.insert(headers::SESSION, at.session_id.as_str());
        let result = if at.gate == self.rpc.gate_id {
            answer(self.rpc.op(gate_op, Some(&forwarded), &msg.payload))
        } else {
            match self
                .forward(&at, gate_op, forwarded, msg.payload.clone())
                .await
            {
                Ok(v) => v,
                Err((reason, message)) => {
                    return offline_or_error(is_online, &user, &at, reason, message)
                }
            }
        };
        if result.get("ok") != Some(&Value::Bool(true)) {
            if result.get("error").and_then(Value::as_str) == Some("no_such_session") {
                return offline(
                    "ended",
                    format!(
                        "user {user:?}: its session {:?} on gate {:?} has ended",
                        at.session_id, at.gate
                    ),
                );
            }
            return result;
        }
        let mut result = result;
        if is_online {
            let online = result.get("connected") == Some(&Value::Bool(true));
            result = json!({"ok": true, "online": online});
            if !online {
                result["reason"] = "ended".into();
            }
        }
        result["user"] = user.into();
        result["gate"] = at.gate.into();
        result["session_id"] = at.session_id.into();
        result
    }

    /// The owning gate's answer to `op`, or why there was none: (`gate_down`: no gate serves
    /// that gate id; `unreachable`: it did not answer within [`FORWARD_TIMEOUT`]).
    async fn forward(
        &self,
        at: &Location,
        op: &str,
        headers: HeaderMap,
        payload: Bytes,
    ) -> Result<Value, (&'static str, String)> {
        let subject = subject::gate_op(&self.prefix, &at.gate, op);
        match request(&self.client, subject, headers, payload, FORWARD_TIMEOUT).await {
            Ok(v) => Ok(v),
            Err(RequestFailure::NoResponders) => Err((
                "gate_down",
                format!("gate {:?} is not running (no responders)", at.gate),
            )),
            Err(RequestFailure::TimedOut) => Err((
                "unreachable",
                format!(
                    "gate {:?} did not answer within {FORWARD_TIMEOUT:?}",
                    at.gate
                ),
            )),
            Err(RequestFailure::Other(why)) => Err(("unreachable", why)),
        }
    }
}

fn offline_or_error(
    is_online: bool,
    user: &str,
    at: &Location,
    reason: &str,
    message: String,
) -> Value {
    if is_online {
        return json!({"ok": true, "online": false, "user": user, "reason": reason, "gate": at.gate});
    }
    // No responders: the gate is gone, so is the session. A timeout: unknown, an error.
    let error = if reason == "gate_down" {
        "offline"
    } else {
        "unreachable"
    };
    json!({"ok": false, "error": error, "user": user, "reason": reason, "gate": at.gate, "message": message})
}

enum RequestFailure {
    NoResponders,
    TimedOut,
    Other(String),
}

/// One NATS request with a JSON answer, bounded by `limit`.
async fn request(
    client: &async_nats::Client,
    subject: String,
    headers: HeaderMap,
    payload: Bytes,
    limit: Duration,
) -> Result<Value, RequestFailure> {
    let request = async_nats::Request::new()
        .payload(payload)
        .headers(headers)
        .timeout(Some(limit));
    let reply =
        match tokio::time::timeout(limit, client.send_request(subject.clone(), request)).await {
            Err(_) => return Err(RequestFailure::TimedOut),
            Ok(Err(e)) => {
                return Err(match e.kind() {
                    RequestErrorKind::NoResponders => RequestFailure::NoResponders,
                    RequestErrorKind::TimedOut => RequestFailure::TimedOut,
                    RequestErrorKind::Other => RequestFailure::Other(format!("{subject}: {e}")),
                })
            }
            Ok(Ok(reply)) => reply,
        };
    serde_json::from_slice(&reply.payload)
        .map_err(|e| RequestFailure::Other(format!("{subject}: the answer is not JSON: {e}")))
}

/// [`RemoteGates`] over NATS: a kick is the owning gate's `close`.
pub struct NatsRemoteGates {
    client: async_nats::Client,
    prefix: String,
}

impl NatsRemoteGates {
    /// Reaches the other gates over `client`, subjects under `prefix`.
    pub fn new(client: async_nats::Client, prefix: &str) -> NatsRemoteGates {
        NatsRemoteGates {
            client,
            prefix: prefix.to_owned(),
        }
    }
}

impl RemoteGates for NatsRemoteGates {
    fn kick(&self, at: &Location, reason: &str) -> BoxFuture<Result<(), String>> {
        let client = self.client.clone();
        let subject = subject::gate_op(&self.prefix, &at.gate, "close");
        let mut h = HeaderMap::new();
        h.insert(headers::SESSION, at.session_id.as_str());
        h.insert(headers::REASON, reason);
        let gate = at.gate.clone();
        Box::pin(async move {
            match request(&client, subject, h, Bytes::new(), FORWARD_TIMEOUT).await {
                Ok(v) if v.get("ok") == Some(&Value::Bool(true)) => Ok(()),
                Ok(v) => Err(format!("gate {gate:?} answered {v}")),
                Err(RequestFailure::NoResponders) => Err(format!("gate {gate:?} is not running")),
                Err(RequestFailure::TimedOut) => Err(format!(
                    "gate {gate:?} did not answer within {FORWARD_TIMEOUT:?}"
                )),
                Err(RequestFailure::Other(why)) => Err(why),
            }
        })
    }
}
