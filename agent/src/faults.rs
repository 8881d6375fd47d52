//! Deliberate defects in the real code, to prove that the checks watching the gate (the harness's
//! invariants, a user's own tests) catch them. Only with the `fault-injection` feature, which is
//! off by default: without it this module does not exist and the code paths below compile away.
//!
//! Each fault breaks one guarantee of [`Connection`](crate::Connection) or
//! [`Registration`](crate::Registration) where the guarantee is kept, not in a test double:
//!
//! | fault (text form) | breaks |
//! |---|---|
//! | `drop-response=N` | every N-th response of a connection is never encoded (mqant's dropped reply) |
//! | `drop-push=N` | every N-th push of a connection is reported queued but never encoded |
//! | `swap-responses=N` | every N-th response is held back and written after the next one |
//! | `skip-heartbeat=N` | every N-th storage heartbeat that is due is skipped (the interval restarts as if it ran) |
//! | `skip-slow-consumer-close` | a client that does not read is never closed: its write queue grows without bound |
//! | `drop-disconnect=N` | for one session in N (by a hash of its id), the Disconnect is never told and the session stays registered (mqant's forgotten `DisConnect`) |
//!
//! `gatekit run --inject-fault` and `gatekit serve --inject-fault` take the text form,
//! comma-separated: `drop-response=7,skip-heartbeat=2`.

use std::fmt;
use std::str::FromStr;

/// The faults to inject; all off by default. See the module docs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    /// Drop every n-th response of a connection.
    pub drop_response_every: Option<u64>,
    /// Drop every n-th push of a connection (while reporting it queued).
    pub drop_push_every: Option<u64>,
    /// Hold back every n-th response and write it after the next one.
    pub swap_responses_every: Option<u64>,
    /// Skip every n-th due storage heartbeat.
    pub skip_heartbeat_every: Option<u64>,
    /// Never close a slow consumer.
    pub skip_slow_consumer_close: bool,
    /// Lose the Disconnect of one session in n (chosen by a hash of the session id).
    pub drop_disconnect_every: Option<u64>,
}

impl Faults {
    /// Whether no fault is set.
    pub fn is_none(&self) -> bool {
        *self == Faults::default()
    }

    /// Whether the Disconnect of `session_id` is to be lost.
    pub fn drops_disconnect_of(&self, session_id: &str) -> bool {
        self.drop_disconnect_every
            .is_some_and(|n| fnv1a(session_id.as_bytes()) % n.max(1) == 0)
    }
}

/// Whether the `count`-th event (counted from 1) is hit by a fault firing every `every`.
fn hits(every: Option<u64>, count: u64) -> bool {
    every.is_some_and(|n| count % n.max(1) == 0)
}

/// What the injected faults have counted so far on one connection. All the decisions live here,
/// so the connection's own code only asks.
#[derive(Debug)]
pub(crate) struct FaultState<R> {
    responses: u64,
    pushes: u64,
    heartbeats: u64,
    /// A response held back by `swap-responses`, written after the next one.
    held: Option<Answer<R>>,
}

/// A response: to whom, with what status and body.
pub(crate) type Answer<R> = (R, gatekit_codec::Status, bytes::Bytes);

impl<R> Default for FaultState<R> {
    fn default() -> Self {
        FaultState {
            responses: 0,
            pushes: 0,
            heartbeats: 0,
            held: None,
        }
    }
}

impl<R> FaultState<R> {
    /// The responses to write, in order, when the connection answers `r`: none (dropped, or held
    /// back), `r`, or `r` then the one held back.
    pub(crate) fn responses(&mut self, faults: &Faults, r: Answer<R>) -> Vec<Answer<R>> {
        self.responses += 1;
        if hits(faults.drop_response_every, self.responses) {
            return Vec::new();
        }
        if let Some(held) = self.held.take() {
            return vec![r, held];
        }
        if hits(faults.swap_responses_every, self.responses) {
            self.held = Some(r);
            return Vec::new();
        }
        vec![r]
    }

    /// Whether this push is to be dropped.
    pub(crate) fn drops_push(&mut self, faults: &Faults) -> bool {
        self.pushes += 1;
        hits(faults.drop_push_every, self.pushes)
    }

    /// Whether this due heartbeat is to be skipped.
    pub(crate) fn skips_heartbeat(&mut self, faults: &Faults) -> bool {
        self.heartbeats += 1;
        hits(faults.skip_heartbeat_every, self.heartbeats)
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A fault list that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fault {item:?}: {why} (known: drop-response=N, drop-push=N, swap-responses=N, skip-heartbeat=N, skip-slow-consumer-close, drop-disconnect=N)")]
pub struct FaultsParseError {
    /// The item of the list that was wrong.
    pub item: String,
    /// What was wrong with it.
    pub why: &'static str,
}

impl FromStr for Faults {
    type Err = FaultsParseError;

    fn from_str(s: &str) -> Result<Faults, FaultsParseError> {
        let mut f = Faults::default();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let err = |why| FaultsParseError {
                item: item.to_owned(),
                why,
            };
            let (name, value) = match item.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim())),
                None => (item, None),
            };
            let every = || -> Result<Option<u64>, FaultsParseError> {
                let v = value.ok_or_else(|| err("needs =N, the period (1 = every time)"))?;
                match v.parse::<u64>() {
                    Ok(n) if n >= 1 => Ok(Some(n)),
                    _ => Err(err("the period must be a whole number of at least 1")),
                }
            };
            match name {
                "drop-response" => f.drop_response_every = every()?,
                "drop-push" => f.drop_push_every = every()?,
                "swap-responses" => f.swap_responses_every = every()?,
                "skip-heartbeat" => f.skip_heartbeat_every = every()?,
                "drop-disconnect" => f.drop_disconnect_every = every()?,
                "skip-slow-consumer-close" if value.is_none() => f.skip_slow_consumer_close = true,
                "skip-slow-consumer-close" => return Err(err("takes no value")),
                _ => return Err(err("unknown fault")),
            }
        }
        Ok(f)
    }
}

impl fmt::Display for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        for (name, every) in [
            ("drop-response", self.drop_response_every),
            ("drop-push", self.drop_push_every),
            ("swap-responses", self.swap_responses_every),
            ("skip-heartbeat", self.skip_heartbeat_every),
        ] {
            if let Some(n) = every {
                parts.push(format!("{name}={n}"));
            }
        }
        if self.skip_slow_consumer_close {
            parts.push("skip-slow-consumer-close".to_owned());
        }
        if let Some(n) = self.drop_disconnect_every {
            parts.push(format!("drop-disconnect={n}"));
        }
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips() {
        let f: Faults = "drop-response=7, drop-push=5,swap-responses=3,skip-heartbeat=2,skip-slow-consumer-close,drop-disconnect=4"
            .parse()
            .unwrap();
        assert_eq!(
            f,
            Faults {
                drop_response_every: Some(7),
                drop_push_every: Some(5),
                swap_responses_every: Some(3),
                skip_heartbeat_every: Some(2),
                skip_slow_consumer_close: true,
                drop_disconnect_every: Some(4),
            }
        );
        assert_eq!(f.to_string().parse::<Faults>().unwrap(), f);
        assert!("".parse::<Faults>().unwrap().is_none());
    }

    #[test]
    fn bad_lists_name_the_item() {
        for (text, why) in [
            ("drop-response", "needs =N"),
            ("drop-response=0", "at least 1"),
            ("drop-response=x", "at least 1"),
            ("skip-slow-consumer-close=1", "takes no value"),
            ("lose-everything=1", "unknown fault"),
        ] {
            let e = text.parse::<Faults>().unwrap_err();
            assert!(e.to_string().contains(why), "{text}: {e}");
            assert!(e.to_string().contains(text), "{text}: {e}");
        }
    }

    #[test]
    fn periods_and_the_disconnect_choice() {
        let hit: Vec<u64> = (1..=9).filter(|&c| hits(Some(3), c)).collect();
        assert_eq!(hit, [3, 6, 9]);
        assert!(!hits(None, 3));
        let f = Faults {
            drop_disconnect_every: Some(4),
            ..Faults::default()
        };
        let ids: Vec<String> = (0..4000).map(|i| format!("{i:032x}")).collect();
        let dropped = ids.iter().filter(|id| f.drops_disconnect_of(id)).count();
        assert!((800..1200).contains(&dropped), "{dropped} of 4000");
        assert!(!Faults::default().drops_disconnect_of(&ids[0]));
    }
}
