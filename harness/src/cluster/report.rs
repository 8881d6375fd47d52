//! What `gatekit cluster` found: per gate its run's report and exit codes, per back end its
//! counts, the directory phase's invariants, and the verdict.

use super::directory::DirectoryReport;
use crate::scenario::Dur;
use crate::serve::GateStatus;
use serde::Serialize;
use std::fmt;
use std::net::SocketAddr;

/// One gate and the run against it.
#[derive(Debug, Clone, Serialize)]
pub struct GateRun {
    /// Its gate id.
    pub id: String,
    /// Where it listened.
    pub addr: SocketAddr,
    /// Its control endpoint.
    pub control: SocketAddr,
    /// Clients of the run against it.
    pub clients: usize,
    /// The run's exit code (`None`: killed at the deadline, or by a signal).
    pub run_exit: Option<i32>,
    /// The run's report, as it printed it.
    pub run_report: String,
    /// What the run printed on standard error.
    pub run_stderr: String,
    /// The run's report as JSON (`gatekit run --json`), if it wrote one.
    pub run_json: Option<serde_json::Value>,
    /// The gate's exit code after its graceful shutdown.
    pub gate_exit: Option<i32>,
    /// The gate's counts after its shutdown, if it reported them.
    pub gate_stopped: Option<GateStatus>,
    /// Killed on purpose by the directory phase (its exit without a code is expected).
    pub killed: bool,
}

/// One back-end process.
#[derive(Debug, Clone, Serialize)]
pub struct BackendRun {
    /// Its number, from 1.
    pub index: usize,
    /// Its exit code.
    pub exit: Option<i32>,
    /// Requests it answered.
    pub answered: Option<u64>,
    /// Of those, answered wrongly on purpose (`--corrupt-every`).
    pub corrupted: Option<u64>,
    /// Notifies it got.
    pub notifies: Option<u64>,
}

/// What `gatekit cluster` found.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterReport {
    /// The NATS server's URL.
    pub nats: String,
    /// The scenario of the runs.
    pub scenario: String,
    /// Clients in all.
    pub clients: usize,
    /// How long the clients sent.
    pub duration: Dur,
    /// Every gate.
    pub gates: Vec<GateRun>,
    /// Every back end.
    pub backends: Vec<BackendRun>,
    /// The directory phase's invariants (`None`: it did not run).
    pub directory: Option<DirectoryReport>,
    /// What went wrong besides failed runs (a process that exited non-zero, the deadline).
    pub problems: Vec<String>,
    /// Every run passed and every process exited 0.
    pub passed: bool,
}

impl ClusterReport {
    /// Adds the problems besides the runs' own and sets `passed`.
    pub fn judge(&mut self) {
        for g in &self.gates {
            if g.run_exit != Some(0) {
                self.problems.push(format!(
                    "the run against {} exited {}",
                    g.id,
                    exit_text(g.run_exit)
                ));
            }
            if g.gate_exit != Some(0) && !g.killed {
                self.problems
                    .push(format!("gate {} exited {}", g.id, exit_text(g.gate_exit)));
            }
        }
        for b in &self.backends {
            if b.exit != Some(0) {
                self.problems
                    .push(format!("back end {} exited {}", b.index, exit_text(b.exit)));
            }
        }
        match &self.directory {
            None => self
                .problems
                .push("the directory phase did not run".to_owned()),
            Some(d) if !d.passed => self
                .problems
                .push("a directory invariant failed (see above)".to_owned()),
            Some(_) => {}
        }
        // Every client of the cluster has a valid token: a refusal is a defect.
        if let Some(d) = self.directory.as_ref().filter(|d| d.auth.refused > 0) {
            self.problems.push(format!(
                "the login service refused {} tokens (every client's token is valid)",
                d.auth.refused
            ));
        }
        self.passed = self.problems.is_empty();
    }
}

fn exit_text(code: Option<i32>) -> String {
    code.map_or("without a code (killed)".to_owned(), |c| c.to_string())
}

impl fmt::Display for ClusterReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "gatekit cluster: {} clients, scenario {}, {} · {} gates · {} back ends (echo over NATS) · nats-server {}",
            self.clients,
            self.scenario,
            self.duration,
            self.gates.len(),
            self.backends.len(),
            self.nats
        )?;
        for g in &self.gates {
            writeln!(f)?;
            writeln!(
                f,
                "gate {} on {} (control {}): {} clients; run exit {}, gate exit {}{}",
                g.id,
                g.addr,
                g.control,
                g.clients,
                exit_text(g.run_exit),
                exit_text(g.gate_exit),
                if g.killed {
                    " (SIGKILLed by the directory phase, as planned)"
                } else {
                    ""
                }
            )?;
            for line in g.run_report.lines() {
                writeln!(f, "    {line}")?;
            }
            if g.run_exit != Some(0) {
                for line in g.run_stderr.lines().filter(|l| !l.trim().is_empty()) {
                    writeln!(f, "    stderr: {line}")?;
                }
            }
        }
        writeln!(f)?;
        for b in &self.backends {
            let n = |v: Option<u64>| v.map_or("?".to_owned(), |v| v.to_string());
            writeln!(
                f,
                "back end {}: answered {}, corrupted {}, notifies {}; exit {}",
                b.index,
                n(b.answered),
                n(b.corrupted),
                n(b.notifies),
                exit_text(b.exit)
            )?;
        }
        if let Some(d) = &self.directory {
            writeln!(f)?;
            write!(f, "{d}")?;
        }
        for p in &self.problems {
            writeln!(f, "problem: {p}")?;
        }
        write!(
            f,
            "result        {}",
            if self.passed { "PASS" } else { "FAIL" }
        )
    }
}
