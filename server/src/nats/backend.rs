//! [`NatsBackend`]: the gate's calls as NATS requests (docs/CLUSTER.md §1).

use super::{headers, subject};
use async_nats::client::RequestErrorKind;
use async_nats::connection::State;
use bytes::Bytes;
use gatekit_agent::{Backend, BackendError, BoxFuture, Session};
use std::sync::Arc;
use std::time::Duration;

/// How long past the back-end timeout a request is kept waiting: the connection answers
/// `timeout` itself at the back-end timeout, so its own answer must not come first.
const TIMEOUT_MARGIN: Duration = Duration::from_millis(500);

/// Sends every call it is given to NATS: `<prefix>.rpc.<module>.<func>`, the session in headers.
///
/// A notify is published without a reply subject ([`Backend::notify_in`]).
#[derive(Clone)]
pub struct NatsBackend {
    client: async_nats::Client,
    prefix: String,
    timeout: Duration,
}

impl NatsBackend {
    /// Calls over `client`, subjects under `prefix`; a request is abandoned a little after
    /// `timeout` (the back-end timeout, at which the client has been answered `timeout`).
    pub fn new(client: async_nats::Client, prefix: impl Into<String>, timeout: Duration) -> Self {
        NatsBackend {
            client,
            prefix: prefix.into(),
            timeout,
        }
    }

    /// The subject and headers of a call, or why it is answered without going to NATS.
    fn prepare(
        &self,
        session: &Session,
        module: &str,
        func: &str,
        body: &Bytes,
    ) -> Result<(String, async_nats::HeaderMap), BackendError> {
        let subject = match subject::rpc(&self.prefix, module, func) {
            Ok(s) => s,
            Err(e) => {
                return Err(BackendError::Failed(Bytes::from(e.to_string())));
            }
        };
        let headers = match headers::session_headers(session) {
            Ok(h) => h,
            Err(e) => {
                let why = format!("{subject}: {e}");
                return Err(BackendError::Internal(why));
            }
        };
        // Not connected: answered at once; nothing is queued for when NATS is back.
        if self.client.connection_state() != State::Connected {
            return Err(BackendError::Busy);
        }
        let max_payload = self.client.server_info().max_payload;
        let header_len: usize = headers
            .iter()
            .map(|(k, vs)| {
                vs.iter()
                    .map(|v| AsRef::<str>::as_ref(k).len() + v.as_str().len() + 4)
                    .sum::<usize>()
            })
            .sum::<usize>()
            + 12;
        if max_payload > 0 && body.len() + header_len > max_payload {
            // The server would refuse it and drop the gate's connection: refused here.
            let why = format!(
                "a request of {} bytes exceeds the NATS server's max_payload of {max_payload} bytes",
                body.len() + header_len
            );
            return Err(BackendError::Failed(Bytes::from(why)));
        }
        Ok((subject, headers))
    }
}

impl Backend for NatsBackend {
    fn call(
        &self,
        _session: Arc<Session>,
        func: &str,
        _body: Bytes,
    ) -> BoxFuture<Result<Bytes, BackendError>> {
        let why = format!("NatsBackend called for {func:?} without its module's name");
        Box::pin(async move { Err(BackendError::Internal(why)) })
    }

    fn call_in(
        &self,
        session: Arc<Session>,
        module: &str,
        func: &str,
        body: Bytes,
    ) -> BoxFuture<Result<Bytes, BackendError>> {
        let (subject, headers) = match self.prepare(&session, module, func, &body) {
            Ok(p) => p,
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        let client = self.client.clone();
        let limit = self.timeout + TIMEOUT_MARGIN;
        Box::pin(async move {
            let request = async_nats::Request::new()
                .payload(body)
                .headers(headers)
                .timeout(Some(limit));
            // The request's own timeout covers the wait for the reply; this one also covers a
            // full command channel.
            let reply =
                match tokio::time::timeout(limit, client.send_request(subject.clone(), request))
                    .await
                {
                    Err(_) => return Err(BackendError::Busy),
                    Ok(Err(e)) => {
                        return Err(match e.kind() {
                            RequestErrorKind::NoResponders => BackendError::NotFound,
                            RequestErrorKind::TimedOut => BackendError::Busy,
                            RequestErrorKind::Other => {
                                tracing::debug!(%subject, error = %e, "NATS request failed");
                                BackendError::Busy
                            }
                        })
                    }
                    Ok(Ok(reply)) => reply,
                };
            reply_result(&subject, reply)
        })
    }

    /// A notify is published without a reply subject (docs/CLUSTER.md §1): nothing is waited
    /// for but the hand-over to the client's write buffer, so the connection's next call goes
    /// on at once.
    fn notify_in(
        &self,
        session: Arc<Session>,
        module: &str,
        func: &str,
        body: Bytes,
    ) -> BoxFuture<Result<Bytes, BackendError>> {
        let (subject, headers) = match self.prepare(&session, module, func, &body) {
            Ok(p) => p,
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        let client = self.client.clone();
        let limit = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(
                limit,
                client.publish_with_headers(subject.clone(), headers, body),
            )
            .await
            {
                Ok(Ok(())) => Ok(Bytes::new()),
                Ok(Err(e)) => {
                    tracing::debug!(%subject, error = %e, "NATS publish failed");
                    Err(BackendError::Busy)
                }
                Err(_) => Err(BackendError::Busy),
            }
        })
    }
}

/// The call's result from a back end's reply (`Gatekit-Status`, docs/CLUSTER.md §1).
fn reply_result(subject: &str, reply: async_nats::Message) -> Result<Bytes, BackendError> {
    if let Some(code) = reply.status {
        if code != async_nats::StatusCode::OK {
            return Err(BackendError::Internal(format!(
                "{subject}: the reply has NATS status {code} {}",
                reply.description.as_deref().unwrap_or("")
            )));
        }
    }
    match headers::get(reply.headers.as_ref(), headers::STATUS) {
        None | Some(headers::status::OK) => Ok(reply.payload),
        Some(headers::status::NOT_FOUND) => Err(BackendError::NotFound),
        Some(headers::status::FAILED) => Err(BackendError::Failed(reply.payload)),
        Some(headers::status::BUSY) => Err(BackendError::Busy),
        Some(other) => Err(BackendError::Internal(format!(
            "{subject}: the reply's {} is {other:?} (expected ok, not_found, failed or busy)",
            headers::STATUS
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: Option<&str>, body: &'static str) -> async_nats::Message {
        let headers = status.map(|s| {
            let mut h = async_nats::HeaderMap::new();
            h.insert(headers::STATUS, s);
            h
        });
        async_nats::Message {
            subject: "_INBOX.x".into(),
            reply: None,
            payload: Bytes::from_static(body.as_bytes()),
            headers,
            status: None,
            description: None,
            length: 0,
        }
    }

    #[test]
    fn statuses() {
        let s = "gatekit.rpc.chat.send";
        assert_eq!(reply_result(s, reply(None, "hi")), Ok(Bytes::from("hi")));
        assert_eq!(
            reply_result(s, reply(Some("ok"), "hi")),
            Ok(Bytes::from("hi"))
        );
        assert_eq!(
            reply_result(s, reply(Some("not_found"), "")),
            Err(BackendError::NotFound)
        );
        assert_eq!(
            reply_result(s, reply(Some("failed"), "why")),
            Err(BackendError::Failed(Bytes::from("why")))
        );
        assert_eq!(
            reply_result(s, reply(Some("busy"), "")),
            Err(BackendError::Busy)
        );
        match reply_result(s, reply(Some("weird"), "")) {
            Err(BackendError::Internal(why)) => assert!(why.contains("\"weird\""), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_nats_status_is_internal() {
        let mut m = reply(None, "");
        m.status = Some(async_nats::StatusCode::TIMEOUT);
        assert!(matches!(
            reply_result("s", m),
            Err(BackendError::Internal(_))
        ));
    }

    #[tokio::test]
    async fn bad_tokens_and_no_connection() {
        // A client that never connects (nothing listens on port 1).
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect("nats://127.0.0.1:1")
            .await
            .unwrap();
        let b = NatsBackend::new(client, "gatekit", Duration::from_secs(1));
        let s = Arc::new(Session::new("s", "tcp", "127.0.0.1:1", "gate-1"));
        match b.call_in(s.clone(), "a.b", "f", Bytes::new()).await {
            Err(BackendError::Failed(body)) => {
                let text = String::from_utf8_lossy(&body);
                assert!(
                    text.contains("\"a.b\" is not a valid NATS subject token"),
                    "{text}"
                );
            }
            other => panic!("{other:?}"),
        }
        for (m, f) in [("chat", "x*"), ("chat", ">"), ("a b", "f"), ("", "f")] {
            assert!(
                matches!(
                    b.call_in(s.clone(), m, f, Bytes::new()).await,
                    Err(BackendError::Failed(_))
                ),
                "{m}/{f}"
            );
        }
        let started = std::time::Instant::now();
        assert_eq!(
            b.call_in(s.clone(), "chat", "send", Bytes::new()).await,
            Err(BackendError::Busy)
        );
        assert!(started.elapsed() < Duration::from_millis(100));
        let mut bad = (*s).clone();
        bad.user_id = Some("a\nb".into());
        match b.call_in(Arc::new(bad), "chat", "send", Bytes::new()).await {
            Err(BackendError::Internal(why)) => assert!(why.contains("Gatekit-User"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
