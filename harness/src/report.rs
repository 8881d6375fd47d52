//! The final report: a table for people, JSON for programs, thresholds like k6's.

use crate::invariants::{self, Status, Verdict};
use crate::run::RunData;
use crate::scenario::{Dur, Mode};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Latency {
    /// Responses measured.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Maximum.
    pub max_ms: f64,
}

/// A threshold to enforce (`--max-p99 20ms`, `--min-rate 1000`).
#[derive(Debug, Clone, Default)]
pub struct Thresholds {
    /// Highest acceptable p99 latency.
    pub max_p99: Option<Dur>,
    /// Lowest acceptable response rate (responses per second).
    pub min_rate: Option<f64>,
    /// Highest acceptable fraction of requests without an ok response.
    pub max_error_rate: Option<f64>,
}

/// One threshold's verdict.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ThresholdResult {
    /// Name.
    pub name: String,
    /// The limit.
    pub limit: f64,
    /// What was measured.
    pub actual: f64,
    /// Whether it passed.
    pub passed: bool,
    /// The unit of `limit` and `actual`.
    pub unit: &'static str,
}

/// The report of a run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Mode.
    pub mode: Mode,
    /// The transport in TCP mode when it is not plain TCP (`tls`, `ws`, `wss`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    /// Seed.
    pub seed: u64,
    /// Clients.
    pub clients: usize,
    /// Time from start to the last connection's end (virtual in sim), seconds.
    pub elapsed_s: f64,
    /// Real time taken, seconds (TCP mode only: sim reports are reproducible to the byte).
    pub wall_s: Option<f64>,
    /// Connections.
    pub connections: BTreeMap<&'static str, u64>,
    /// Messages by kind.
    pub messages: BTreeMap<&'static str, u64>,
    /// Rates per second over the elapsed time.
    pub rates: BTreeMap<&'static str, f64>,
    /// Latency of request → response.
    pub latency: Latency,
    /// Responses by status.
    pub responses_by_status: BTreeMap<&'static str, u64>,
    /// Errors by kind.
    pub errors: BTreeMap<String, u64>,
    /// Why connections ended (the agent's reason).
    pub close_reasons: BTreeMap<&'static str, u64>,
    /// Clients by behaviour.
    pub behaviors: BTreeMap<&'static str, u64>,
    /// Invariants.
    pub invariants: Vec<Verdict>,
    /// Thresholds.
    pub thresholds: Vec<ThresholdResult>,
}

impl Report {
    /// Builds the report, checking every invariant and threshold.
    pub fn new(run: &RunData, thresholds: &Thresholds) -> Report {
        let elapsed = run
            .finished
            .saturating_duration_since(run.started)
            .max(Duration::from_millis(1));
        let secs = elapsed.as_secs_f64();
        let mut messages: BTreeMap<&'static str, u64> = BTreeMap::new();
        let mut responses: BTreeMap<&'static str, u64> = BTreeMap::new();
        let mut errors: BTreeMap<String, u64> = BTreeMap::new();
        let mut close_reasons: BTreeMap<&'static str, u64> = BTreeMap::new();
        let mut behaviors: BTreeMap<&'static str, u64> = BTreeMap::new();
        let mut welcomed = 0;
        for c in &run.conns {
            let s = &c.stats;
            for (k, v) in [
                ("requests", s.requests),
                ("notifies", s.notifies),
                ("pings", s.pings),
                ("pongs", s.pongs),
                ("pushes", s.pushes),
                ("packets_sent", s.packets_sent),
                ("packets_received", s.packets_received),
            ] {
                *messages.entry(k).or_default() += v;
            }
            for (k, v) in &s.responses {
                *responses.entry(*k).or_default() += v;
            }
            for (k, v) in [
                ("unanswered requests", s.unanswered),
                ("late responses", s.late_responses),
                ("responses out of order", s.out_of_order),
                ("clients that gave up waiting", u64::from(s.gave_up)),
                ("unexpected responses", s.unexpected_responses),
                ("wrong response bodies", s.wrong_bodies),
                ("client decode errors", s.decode_errors),
            ] {
                if v > 0 {
                    *errors.entry(k.to_owned()).or_default() += v;
                }
            }
            if let Some(code) = s.gate_close {
                *errors
                    .entry(format!("CLOSE from gate: {code}"))
                    .or_default() += 1;
            }
            if let Some(r) = c.close_reason {
                *close_reasons.entry(r.name()).or_default() += 1;
            }
            *behaviors.entry(c.behavior.name()).or_default() += 1;
            welcomed += u64::from(s.welcomed);
        }
        for k in ["requests", "packets_sent", "packets_received"] {
            // Present even when no connection opened (every connect failed).
            messages.entry(k).or_default();
        }
        if run.connect_failures > 0 {
            errors.insert("connect failures".into(), run.connect_failures);
        }
        let responses_total: u64 = responses.values().sum();
        let h = &run.latency_us;
        let ms = |q: f64| {
            if h.is_empty() {
                0.0
            } else {
                h.value_at_quantile(q) as f64 / 1000.0
            }
        };
        let latency = Latency {
            count: h.len(),
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: if h.is_empty() {
                0.0
            } else {
                h.max() as f64 / 1000.0
            },
        };
        let rates = BTreeMap::from([
            ("responses_per_s", round(responses_total as f64 / secs)),
            ("requests_per_s", round(messages["requests"] as f64 / secs)),
            (
                "packets_per_s",
                round((messages["packets_sent"] + messages["packets_received"]) as f64 / secs),
            ),
        ]);
        let mut results = Vec::new();
        if let Some(max) = thresholds.max_p99 {
            let limit = max.0.as_secs_f64() * 1000.0;
            results.push(ThresholdResult {
                name: format!("p99 latency ≤ {max}"),
                limit,
                actual: latency.p99_ms,
                passed: latency.p99_ms <= limit,
                unit: "ms",
            });
        }
        if let Some(min) = thresholds.min_rate {
            let actual = rates["responses_per_s"];
            results.push(ThresholdResult {
                name: format!("responses/s ≥ {min}"),
                limit: min,
                actual,
                passed: actual >= min,
                unit: "/s",
            });
        }
        if let Some(max) = thresholds.max_error_rate {
            let ok = responses.get("ok").copied().unwrap_or(0);
            let req = messages["requests"].max(1);
            let actual = round(1.0 - ok as f64 / req as f64);
            results.push(ThresholdResult {
                name: format!("error rate ≤ {max}"),
                limit: max,
                actual,
                passed: actual <= max,
                unit: "",
            });
        }
        Report {
            scenario: run.scenario.name.clone(),
            mode: run.mode,
            transport: run.transport.map(str::to_owned),
            seed: run.scenario.seed,
            clients: run.scenario.clients,
            elapsed_s: round(secs),
            wall_s: (run.mode == Mode::Tcp).then(|| round(run.wall.as_secs_f64())),
            connections: BTreeMap::from([
                ("opened", run.conns.len() as u64),
                ("welcomed", welcomed),
                ("failed", run.connect_failures),
                ("refused", run.refused),
                ("sessions_left", run.sessions_left as u64),
            ]),
            messages,
            rates,
            latency,
            responses_by_status: responses,
            errors,
            close_reasons,
            behaviors,
            invariants: invariants::check(run),
            thresholds: results,
        }
    }

    /// Whether no invariant was violated (each held, or was not checked for a stated reason), at
    /// least one held (a run that checked nothing — every connection failed, say — is not a
    /// pass), and every threshold passed.
    pub fn passed(&self) -> bool {
        self.invariants.iter().all(Verdict::passes)
            && self.checked_anything()
            && self.connect_failures() == 0
            && self.thresholds.iter().all(|t| t.passed)
    }

    /// Clients whose connection never opened (TCP connect, TLS handshake or WebSocket upgrade
    /// failed): each is a failure of the run, whatever the invariants say of the others.
    pub fn connect_failures(&self) -> u64 {
        self.connections.get("failed").copied().unwrap_or(0)
    }

    /// Whether at least one invariant held on something.
    pub fn checked_anything(&self) -> bool {
        self.invariants
            .iter()
            .any(|v| v.status == crate::invariants::Status::Held)
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("report serialises")
    }
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn map_line<K: fmt::Display, V: fmt::Display>(m: &BTreeMap<K, V>) -> String {
    if m.is_empty() {
        return "none".into();
    }
    m.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.mode {
            Mode::Sim => "sim (virtual clock)".to_owned(),
            Mode::Tcp => format!("{} (loopback)", self.transport.as_deref().unwrap_or("tcp")),
        };
        writeln!(
            f,
            "gatekit report: scenario {} · {mode} · seed {} · {} clients",
            self.scenario, self.seed, self.clients
        )?;
        match self.wall_s {
            Some(w) => writeln!(f, "elapsed       {:.3} s (wall {:.3} s)", self.elapsed_s, w)?,
            None => writeln!(f, "elapsed       {:.3} s of virtual time", self.elapsed_s)?,
        }
        writeln!(f, "connections   {}", map_line(&self.connections))?;
        writeln!(f, "clients       {}", map_line(&self.behaviors))?;
        writeln!(f, "messages      {}", map_line(&self.messages))?;
        writeln!(f, "rates         {}", map_line(&self.rates))?;
        let l = &self.latency;
        writeln!(
            f,
            "latency ms    p50 {:.3} · p90 {:.3} · p99 {:.3} · p99.9 {:.3} · max {:.3} ({} responses)",
            l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.count
        )?;
        writeln!(f, "responses     {}", map_line(&self.responses_by_status))?;
        writeln!(f, "errors        {}", map_line(&self.errors))?;
        writeln!(f, "closed        {}", map_line(&self.close_reasons))?;
        writeln!(f, "invariants")?;
        for v in &self.invariants {
            match v.status {
                Status::Held => writeln!(
                    f,
                    "  {:<13} held     {} checked: {}",
                    v.name, v.checked, v.what
                )?,
                Status::Violated => writeln!(
                    f,
                    "  {:<13} VIOLATED ({} of {}) {}",
                    v.name, v.violations, v.checked, v.what
                )?,
                Status::NotChecked => writeln!(
                    f,
                    "  {:<13} not checked: {}",
                    v.name,
                    v.not_checked.as_deref().unwrap_or("(no reason given)")
                )?,
            }
            for s in &v.sample {
                writeln!(f, "      {s}")?;
            }
        }
        if !self.thresholds.is_empty() {
            writeln!(f, "thresholds")?;
            for t in &self.thresholds {
                writeln!(
                    f,
                    "  {:<28} {} (actual {}{})",
                    t.name,
                    if t.passed { "passed" } else { "FAILED" },
                    t.actual,
                    t.unit
                )?;
            }
        }
        if self.connect_failures() > 0 {
            writeln!(
                f,
                "connect       FAILED: {} of {} clients never opened their connection",
                self.connect_failures(),
                self.clients
            )?;
        }
        if !self.checked_anything() {
            writeln!(
                f,
                "checked       nothing: no invariant held on anything, so this is no pass"
            )?;
        }
        write!(
            f,
            "result        {}",
            if self.passed() { "PASS" } else { "FAIL" }
        )
    }
}
