//! The invariants checked at the end of every run.
//!
//! Each gives a [`Verdict`]: **held** (something was checked and nothing broke it), **violated**
//! (something broke it), or **not checked**, always with the reason (the scenario gave it
//! nothing to check, or the gate's side of it is not visible). Checking nothing is never a pass.
//!
//! - [`delivery`]: `nothing_lost`, `order`, `pushes` — what the client sees.
//! - [`lifecycle`]: `counters`, `disconnect` — what the gate tells its learner and counts.
//! - [`throttle`]: `heartbeat`, `memory` — the storage heartbeat and the buffer bound.

pub mod delivery;
pub mod lifecycle;
pub mod throttle;

use crate::run::{GateSide, RunData};
use serde::Serialize;

/// Whether an invariant held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Checked on at least one item, and no item broke it.
    Held,
    /// At least one item broke it.
    Violated,
    /// Nothing was checked; [`Verdict::not_checked`] says why.
    NotChecked,
}

/// One invariant's verdict.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Verdict {
    /// Short name.
    pub name: &'static str,
    /// What it checks.
    pub what: String,
    /// Held, violated or not checked.
    pub status: Status,
    /// Items checked (connections, sessions or requests, as `what` says).
    pub checked: usize,
    /// Items that broke it.
    pub violations: usize,
    /// A few of them, explained.
    pub sample: Vec<String>,
    /// Why nothing was checked, when nothing was.
    pub not_checked: Option<String>,
}

impl Verdict {
    fn new(name: &'static str, what: impl Into<String>) -> Self {
        Verdict {
            name,
            what: what.into(),
            status: Status::NotChecked,
            checked: 0,
            violations: 0,
            sample: Vec::new(),
            not_checked: None,
        }
    }

    /// Counts one item checked; `ok` false makes it a violation, explained by `why`.
    fn check(&mut self, ok: bool, why: impl FnOnce() -> String) {
        self.checked += 1;
        if !ok {
            self.violations += 1;
            if self.sample.len() < 5 {
                self.sample.push(why());
            }
        }
    }

    /// A verdict that checks nothing, for this reason.
    fn skipped(name: &'static str, what: impl Into<String>, why: impl Into<String>) -> Self {
        let mut v = Verdict::new(name, what);
        v.not_checked = Some(why.into());
        v
    }

    /// Settles the status; `why_empty` is the reason given if nothing was checked.
    fn finish(mut self, why_empty: impl FnOnce() -> String) -> Self {
        self.status = if self.violations > 0 {
            Status::Violated
        } else if self.checked == 0 || self.not_checked.is_some() {
            if self.not_checked.is_none() {
                self.not_checked = Some(why_empty());
            }
            Status::NotChecked
        } else {
            Status::Held
        };
        self
    }

    /// Whether it held (checked something, and nothing broke it).
    pub fn held(&self) -> bool {
        self.status == Status::Held
    }

    /// Whether it lets the run pass: held, or not checked for a stated reason.
    pub fn passes(&self) -> bool {
        match self.status {
            Status::Held => true,
            Status::Violated => false,
            Status::NotChecked => self.not_checked.as_deref().is_some_and(|w| !w.is_empty()),
        }
    }
}

/// Checks every invariant.
pub fn check(run: &RunData) -> Vec<Verdict> {
    vec![
        lifecycle::counters(run),
        delivery::nothing_lost(run),
        delivery::order(run),
        delivery::pushes(run),
        lifecycle::disconnects(run),
        throttle::heartbeats(run),
        throttle::memory(run),
    ]
}

/// Why the gate's side cannot be checked, if it cannot.
fn gate_side_hidden(run: &RunData) -> Option<&str> {
    match &run.gate_side {
        GateSide::Invisible(why) => Some(why),
        _ => None,
    }
}
