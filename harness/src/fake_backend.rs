//! Fake back ends: configurable latency, errors, hangs and panics, answering with the request body
//! so a client can check it got the answer to its own request.

use crate::scenario::BackendProfile;
use bytes::Bytes;
use gatekit_agent::{Backend, BackendError, BoxFuture, Session};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a fake call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answers with the request body.
    Echo,
    /// Answers with an error.
    Error,
    /// Never answers.
    Hang,
    /// Panics.
    Panic,
}

/// Draws a call's latency and outcome.
pub fn sample(profile: &BackendProfile, rng: &mut StdRng) -> (Duration, Outcome) {
    let (lo, hi) = (profile.latency_min.0, profile.latency_max.0);
    let latency = if hi > lo {
        lo + (hi - lo).mul_f64(rng.random::<f64>())
    } else {
        lo
    };
    let r = rng.random::<f64>();
    let outcome = if r < profile.panic_rate {
        Outcome::Panic
    } else if r < profile.panic_rate + profile.timeout_rate {
        Outcome::Hang
    } else if r < profile.panic_rate + profile.timeout_rate + profile.error_rate {
        Outcome::Error
    } else {
        Outcome::Echo
    };
    (latency, outcome)
}

/// The error body a failing fake back end answers with.
pub const INJECTED_ERROR: &[u8] = b"injected error";

/// The fake `echo` module for the real gate (TCP mode and `gatekit serve`).
#[derive(Clone)]
pub struct EchoBackend {
    profile: BackendProfile,
    rng: Arc<Mutex<StdRng>>,
}

impl EchoBackend {
    /// A fake back end with this profile and seed.
    pub fn new(profile: BackendProfile, seed: u64) -> Self {
        EchoBackend {
            profile,
            rng: Arc::new(Mutex::new(StdRng::seed_from_u64(seed))),
        }
    }
}

impl Backend for EchoBackend {
    fn call(
        &self,
        _session: Arc<Session>,
        _func: &str,
        body: Bytes,
    ) -> BoxFuture<Result<Bytes, BackendError>> {
        let (latency, outcome) = sample(&self.profile, &mut self.rng.lock().expect("rng lock"));
        Box::pin(async move {
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            match outcome {
                Outcome::Echo => Ok(body),
                Outcome::Error => Err(BackendError::Failed(Bytes::from_static(INJECTED_ERROR))),
                Outcome::Hang => std::future::pending().await,
                Outcome::Panic => panic!("injected back-end panic"),
            }
        })
    }
}
