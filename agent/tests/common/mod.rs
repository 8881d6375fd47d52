//! Test helpers shared by the agent's integration tests: a recording learner and a small client
//! for the native protocol over any byte stream.

#![allow(dead_code)]

use bytes::Bytes;
use gatekit_agent::*;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

// ----- recording learner -----

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ev {
    Connect(String),
    Disconnect(String, CloseReason),
}

#[derive(Default)]
pub struct RecLearner {
    pub events: Mutex<Vec<Ev>>,
}

impl RecLearner {
    pub fn events(&self) -> Vec<Ev> {
        self.events.lock().unwrap().clone()
    }

    pub fn disconnects(&self) -> usize {
        self.events()
            .iter()
            .filter(|e| matches!(e, Ev::Disconnect(..)))
            .count()
    }

    pub fn connects(&self) -> usize {
        self.events()
            .iter()
            .filter(|e| matches!(e, Ev::Connect(..)))
            .count()
    }

    /// Checks that every session has exactly one Connect followed by exactly one Disconnect, and
    /// returns each session's disconnect reason.
    pub fn lifecycles(&self) -> BTreeMap<String, CloseReason> {
        let events = self.events();
        let mut connected: HashMap<String, usize> = HashMap::new();
        let mut out = BTreeMap::new();
        for (i, e) in events.iter().enumerate() {
            match e {
                Ev::Connect(s) => {
                    assert!(
                        connected.insert(s.clone(), i).is_none(),
                        "second Connect for {s}"
                    );
                }
                Ev::Disconnect(s, r) => {
                    assert!(
                        connected.contains_key(s),
                        "Disconnect for {s} before (or without) its Connect"
                    );
                    assert!(
                        out.insert(s.clone(), *r).is_none(),
                        "second Disconnect for {s}"
                    );
                }
            }
        }
        let missing: Vec<_> = connected.keys().filter(|s| !out.contains_key(*s)).collect();
        assert!(
            missing.is_empty(),
            "sessions without Disconnect: {missing:?}"
        );
        out
    }
}

impl Learner for RecLearner {
    fn connect(&self, s: &Session) {
        self.events
            .lock()
            .unwrap()
            .push(Ev::Connect(s.session_id.clone()));
    }
    fn disconnect(&self, s: &Session, reason: CloseReason) {
        self.events
            .lock()
            .unwrap()
            .push(Ev::Disconnect(s.session_id.clone(), reason));
    }
}

// ----- client -----

#[path = "native_client.rs"]
mod native_client;
#[allow(unused_imports)]
pub use native_client::*;

// ----- a back end the test holds -----

/// A back end whose calls wait until the test lets them go: `hold/<anything>` counts the call,
/// then waits for a permit ([`Hold::release`]) or for [`Hold::release_all`], and answers with
/// the request's body.
#[derive(Clone)]
pub struct Hold {
    permits: std::sync::Arc<tokio::sync::Semaphore>,
    calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Default for Hold {
    fn default() -> Self {
        Hold {
            permits: std::sync::Arc::new(tokio::sync::Semaphore::new(0)),
            calls: Default::default(),
        }
    }
}

impl Hold {
    /// Calls started so far (answered or not).
    pub fn calls(&self) -> usize {
        self.calls.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Lets `n` more calls answer.
    pub fn release(&self, n: usize) {
        self.permits.add_permits(n);
    }

    /// Lets every call, now and later, answer at once.
    pub fn release_all(&self) {
        self.permits.close();
    }

    /// The back ends `hold` (this one) and `echo`.
    pub fn backends(&self) -> Backends {
        let hold = self.clone();
        Backends::new()
            .with(
                "hold",
                move |_s: std::sync::Arc<Session>, _f: String, body: Bytes| {
                    let hold = hold.clone();
                    async move {
                        hold.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        // `Err` once closed by `release_all`: answer then too.
                        if let Ok(permit) = hold.permits.acquire().await {
                            permit.forget();
                        }
                        Ok::<_, BackendError>(body)
                    }
                },
            )
            .with(
                "echo",
                |_s: std::sync::Arc<Session>, _f: String, body: Bytes| async move {
                    Ok::<_, BackendError>(body)
                },
            )
    }
}

// ----- an authenticator the tests drive -----

/// Accepts credentials `good` (and MQTT's `u\0good`, pomelo's `{"token":"good"}`) as user `u1`,
/// refuses everything else with "bad token", says `down` is unavailable, panics on `panic`, and
/// takes `slow` far past any handshake timeout.
pub fn test_authenticator() -> std::sync::Arc<dyn gatekit_agent::Authenticator> {
    std::sync::Arc::new(|c: gatekit_agent::Credentials| async move {
        let text = String::from_utf8_lossy(&c.credentials).into_owned();
        let token = text
            .rsplit(['\0', '"'])
            .find(|t| !t.is_empty() && *t != "}")
            .unwrap_or("")
            .to_owned();
        match token.as_str() {
            "good" => Ok(gatekit_agent::Identity {
                user_id: Some("u1".into()),
            }),
            "down" => Err(gatekit_agent::AuthError::Unavailable(
                "the user service is down".into(),
            )),
            "panic" => panic!("the authenticator broke"),
            "slow" => {
                tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                Ok(gatekit_agent::Identity::default())
            }
            _ => Err(gatekit_agent::AuthError::Refused(format!(
                "bad token {token:?}"
            ))),
        }
    })
}
