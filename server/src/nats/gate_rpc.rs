//! The gate RPC (docs/CLUSTER.md §2): back ends act on sessions of this gate over NATS.

use super::{headers, subject, NatsError};
use async_nats::connection::State;
use async_nats::{HeaderMap, Message};
use bytes::Bytes;
use futures_util::StreamExt;
use gatekit_agent::{Command, Gate, HandleError};
use gatekit_codec::Topic;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How long `serve` waits for the server to confirm the subscriptions.
const FLUSH_WITHIN: Duration = Duration::from_secs(5);

/// The reason of a `close` without `Gatekit-Reason`.
pub const DEFAULT_CLOSE_REASON: &str = "kicked";

/// Subscribes to `<prefix>.gate.<gate_id>.*`, `<prefix>.gates.broadcast` and
/// `<prefix>.groups.send` and answers each op on `gate`, until aborted.
///
/// When the client is connected, the subscriptions are confirmed by the server before this
/// returns; when it is not, they are made as soon as it connects (and again at each reconnect).
pub async fn serve(
    client: async_nats::Client,
    prefix: &str,
    gate_id: &str,
    gate: Gate,
) -> Result<JoinHandle<()>, NatsError> {
    let ops_subject = subject::gate_op(prefix, gate_id, "*");
    let all_subject = subject::all_gates_broadcast(prefix);
    let subscribe_error = |subject: &str, e: &dyn std::fmt::Display| NatsError::Subscribe {
        subject: subject.to_owned(),
        reason: e.to_string(),
    };
    let ops = client
        .subscribe(ops_subject.clone())
        .await
        .map_err(|e| subscribe_error(&ops_subject, &e))?;
    let all = client
        .subscribe(all_subject.clone())
        .await
        .map_err(|e| subscribe_error(&all_subject, &e))?;
    let groups_subject = subject::groups_send(prefix);
    let groups = client
        .subscribe(groups_subject.clone())
        .await
        .map_err(|e| subscribe_error(&groups_subject, &e))?;
    if client.connection_state() == State::Connected {
        match tokio::time::timeout(FLUSH_WITHIN, super::round_trip(&client)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(subject = %ops_subject, error = %e, "gate RPC: subscriptions not confirmed; they are made again at reconnect")
            }
            Err(_) => {
                tracing::warn!(subject = %ops_subject, "gate RPC: subscriptions not confirmed within {FLUSH_WITHIN:?}; they are made again at reconnect")
            }
        }
    }
    let rpc = GateRpc {
        gate,
        gate_id: gate_id.to_owned(),
        op_prefix: subject::gate_op(prefix, gate_id, ""),
        all_subject,
        groups_subject,
    };
    tracing::info!(subject = %ops_subject, "gate RPC served");
    Ok(tokio::spawn(async move {
        let mut messages =
            futures_util::stream::select(futures_util::stream::select(ops, all), groups);
        while let Some(msg) = messages.next().await {
            let answer = rpc.handle(&msg);
            if let Some(reply) = msg.reply {
                let body = Bytes::from(answer.to_string());
                if let Err(e) = client.publish(reply, body).await {
                    tracing::debug!(error = %e, "gate RPC: reply not sent");
                }
            }
        }
    }))
}

/// An op's failure: its code and message.
pub(crate) struct OpError {
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl OpError {
    pub(crate) fn bad_request(message: impl Into<String>) -> OpError {
        OpError {
            code: "bad_request",
            message: message.into(),
        }
    }
}

/// The gate RPC of one gate: answers ops on its sessions (also for the user directory,
/// [`super::directory`], when a user is online here).
pub(crate) struct GateRpc {
    pub(crate) gate: Gate,
    pub(crate) gate_id: String,
    /// `<prefix>.gate.<gate_id>.`
    op_prefix: String,
    all_subject: String,
    groups_subject: String,
}

/// An op's answer as JSON: `{"ok":true,...}` or `{"ok":false,"error":<code>,"message":...}`.
pub(crate) fn answer(result: Result<Value, OpError>) -> Value {
    match result {
        Ok(Value::Object(mut fields)) => {
            fields.insert("ok".into(), Value::Bool(true));
            Value::Object(fields)
        }
        Ok(_) => json!({"ok": true}),
        Err(e) => json!({"ok": false, "error": e.code, "message": e.message}),
    }
}

impl GateRpc {
    /// The gate RPC of `gate` (`gate_id`), for subjects under `prefix`.
    pub(crate) fn new(gate: Gate, prefix: &str, gate_id: &str) -> GateRpc {
        GateRpc {
            gate,
            gate_id: gate_id.to_owned(),
            op_prefix: subject::gate_op(prefix, gate_id, ""),
            all_subject: subject::all_gates_broadcast(prefix),
            groups_subject: subject::groups_send(prefix),
        }
    }

    /// The answer to one message.
    fn handle(&self, msg: &Message) -> Value {
        let subject = msg.subject.as_str();
        let h = msg.headers.as_ref();
        let result = if subject == self.all_subject {
            self.broadcast(h, &msg.payload)
        } else if subject == self.groups_subject {
            self.send_to_group(h, &msg.payload)
        } else {
            match subject.strip_prefix(self.op_prefix.as_str()) {
                Some(op) => self.op(op, h, &msg.payload),
                None => Err(OpError::bad_request(format!("unknown subject {subject:?}"))),
            }
        };
        answer(result)
    }

    /// One op of `<prefix>.gate.<gate_id>.<op>` with its headers and payload.
    pub(crate) fn op(
        &self,
        op: &str,
        h: Option<&HeaderMap>,
        payload: &Bytes,
    ) -> Result<Value, OpError> {
        let done = |r: Result<(), HandleError>, session: &str| {
            r.map(|()| json!({}))
                .map_err(|e| self.handle_error(e, session))
        };
        match op {
            "bind" => {
                let s = required(h, headers::SESSION)?;
                let user = required(h, headers::USER)?;
                done(self.gate.bind_user(s, user), s)
            }
            "unbind" => {
                let s = required(h, headers::SESSION)?;
                done(self.gate.unbind_user(s), s)
            }
            "logout" => {
                let s = required(h, headers::SESSION)?;
                done(self.gate.logout(s), s)
            }
            "set" => {
                let s = required(h, headers::SESSION)?;
                let key = required(h, headers::KEY)?;
                let value = std::str::from_utf8(payload)
                    .map_err(|_| OpError::bad_request("the payload (the value) is not UTF-8"))?;
                done(self.gate.set(s, key, value), s)
            }
            "remove" => {
                let s = required(h, headers::SESSION)?;
                let key = required(h, headers::KEY)?;
                done(self.gate.remove(s, key), s)
            }
            "push" => {
                let s = required(h, headers::SESSION)?;
                let settings: BTreeMap<String, String> = serde_json::from_slice(payload)
                    .map_err(|e| {
                        OpError::bad_request(format!(
                            "the payload is not a JSON object of strings: {e}"
                        ))
                    })?;
                let agent = self
                    .gate
                    .agent(s)
                    .ok_or_else(|| self.handle_error(HandleError::NoSuchSession, s))?;
                for (k, v) in settings {
                    agent
                        .command(Command::Set(k, v))
                        .map_err(|e| self.handle_error(e, s))?;
                }
                Ok(json!({}))
            }
            "send" => {
                let s = required(h, headers::SESSION)?;
                let topic = topic(h)?;
                done(self.gate.push(s, topic, payload.clone()), s)
            }
            "close" => {
                let s = required(h, headers::SESSION)?;
                let reason = headers::get(h, headers::REASON).unwrap_or(DEFAULT_CLOSE_REASON);
                done(self.gate.kick(s, reason), s)
            }
            "is_connect" => {
                let s = required(h, headers::SESSION)?;
                let connected = self.gate.agent(s).is_some_and(|a| !a.is_closed());
                Ok(json!({ "connected": connected }))
            }
            "join" => {
                let s = required(h, headers::SESSION)?;
                let group = required(h, headers::GROUP)?;
                let joined = self
                    .gate
                    .join(s, group)
                    .map_err(|e| self.handle_error(e, s))?;
                Ok(json!({ "joined": joined }))
            }
            "leave" => {
                let s = required(h, headers::SESSION)?;
                let group = required(h, headers::GROUP)?;
                Ok(json!({ "left": self.gate.leave(s, group) }))
            }
            "broadcast" => self.broadcast(h, payload),
            other => Err(OpError::bad_request(format!(
                "unknown op {other:?} (bind, unbind, logout, set, remove, push, send, close, is_connect, join, leave, broadcast)"
            ))),
        }
    }

    fn broadcast(&self, h: Option<&HeaderMap>, payload: &Bytes) -> Result<Value, OpError> {
        let topic = topic(h)?;
        let delivered = self.gate.broadcast(topic, payload.clone());
        Ok(json!({ "gate": self.gate_id, "delivered": delivered }))
    }

    fn send_to_group(&self, h: Option<&HeaderMap>, payload: &Bytes) -> Result<Value, OpError> {
        let group = required(h, headers::GROUP)?;
        let topic = topic(h)?;
        let delivered = self.gate.send_to_group(group, topic, payload.clone());
        Ok(json!({ "gate": self.gate_id, "delivered": delivered }))
    }

    pub(crate) fn handle_error(&self, e: HandleError, session: &str) -> OpError {
        let (code, message) = match &e {
            HandleError::NoSuchSession => (
                "no_such_session",
                format!("no session {session:?} on gate {:?}", self.gate_id),
            ),
            HandleError::Closed => ("closed", format!("session {session:?}: {e}")),
            HandleError::Full => ("queue_full", format!("session {session:?}: {e}")),
            HandleError::TooLarge { .. } => ("too_large", e.to_string()),
        };
        OpError { code, message }
    }
}

/// A header the op needs, not empty.
pub(crate) fn required<'a>(h: Option<&'a HeaderMap>, name: &str) -> Result<&'a str, OpError> {
    match headers::get(h, name) {
        None => Err(OpError::bad_request(format!("header {name} is missing"))),
        Some("") => Err(OpError::bad_request(format!("header {name} is empty"))),
        Some(v) => Ok(v),
    }
}

/// `Gatekit-Topic`, a valid push topic.
fn topic(h: Option<&HeaderMap>) -> Result<Topic, OpError> {
    let t = required(h, headers::TOPIC)?;
    Topic::try_from(t)
        .map_err(|e| OpError::bad_request(format!("header {}: {t:?}: {e}", headers::TOPIC)))
}
