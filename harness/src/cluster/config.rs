//! What the cluster's gates are given: the scenario of the runs and the gates' configuration
//! file (loopback listener, every module over NATS, the Redis session store with short expiries,
//! authentication over NATS, the duplicate-login policy).

use crate::listen::WireProtocol;
use crate::scenario::{self, Dur, Scenario};
use gatekit_agent::DuplicateLogin;
use serde::Serialize;
use std::path::Path;

/// The Redis store's expiries in the gates' `[store]`, short enough for a run of a few seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StoreTimes {
    /// `[store] ttl`: an online entry's life past its last write or heartbeat.
    pub ttl: Dur,
    /// `[store] grace`: a disconnected session's settings are kept this long; a killed gate's
    /// users must be offline within it.
    pub grace: Dur,
    /// `[store] gate_ttl`: a gate's liveness key outlives its last refresh this long.
    pub gate_ttl: Dur,
}

impl StoreTimes {
    /// The times for a scenario whose storage heartbeat is `heartbeat`: `ttl` at least that (the
    /// gates refuse less) and at least 10 s, so that a killed gate's users leave the directory
    /// through gate liveness (`gate_ttl`), not through their entries' expiry.
    pub fn new(heartbeat: Dur, grace: Dur, gate_ttl: Dur) -> StoreTimes {
        StoreTimes {
            ttl: Dur(heartbeat.0.max(std::time::Duration::from_secs(10))),
            grace,
            gate_ttl,
        }
    }

    /// What the gates' configuration would refuse (`gate_ttl` longer than `grace`, a zero).
    pub fn check(&self) -> Result<(), String> {
        if self.grace.0.is_zero() || self.gate_ttl.0.is_zero() {
            return Err(format!(
                "--grace {} and --gate-ttl {} must both be more than 0",
                self.grace, self.gate_ttl
            ));
        }
        if self.gate_ttl.0 > self.grace.0 {
            return Err(format!(
                "--gate-ttl {} is longer than --grace {}: the gates refuse it (a dead gate's users would stay online past the grace)",
                self.gate_ttl, self.grace
            ));
        }
        Ok(())
    }
}

/// Everything of a gate's configuration that is not the scenario's.
#[derive(Debug, Clone)]
pub struct GateSetup<'a> {
    /// The NATS server's URL.
    pub nats: &'a str,
    /// The Redis server's URL.
    pub redis: &'a str,
    /// The store's expiries.
    pub store: StoreTimes,
    /// `[store] duplicate_login`.
    pub duplicate_login: DuplicateLogin,
}

/// The scenario named (built in, or a TOML file) and the `gatekit run` arguments that select it.
pub fn scenario_args(name: &str) -> Result<(Scenario, Vec<String>), String> {
    if let Some(s) = scenario::builtin(name) {
        return Ok((s, vec!["--scenario".into(), name.into()]));
    }
    let path = Path::new(name);
    if !path.is_file() {
        return Err(format!(
            "--scenario {name:?}: no built-in scenario or file of that name; see `gatekit scenarios`"
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
    let s = Scenario::from_toml(&text).map_err(|e| format!("{name}: {e}"))?;
    Ok((s, vec!["--file".into(), name.into()]))
}

/// The gates' listeners: the scenario's protocol over TCP (the runs'; the first, which `gatekit
/// serve` reports as its address) and, if that is not native, a native one for the directory's
/// clients.
fn listeners(protocol: WireProtocol) -> String {
    let mut l = vec![format!("\"{}+tcp://127.0.0.1:0\"", protocol.name())];
    if protocol != WireProtocol::Native {
        l.push("\"native+tcp://127.0.0.1:0\"".to_owned());
    }
    l.join(", ")
}

/// The gates' configuration file: loopback listener, `echo` and every other module over NATS,
/// the scenario's gate limits, the Redis store, `[auth] kind = "nats"` (answered by the cluster
/// process, [`super::auth`]).
///
pub fn gate_config(setup: &GateSetup<'_>, s: &Scenario) -> String {
    let g = &s.gate;
    format!(
        r#"# Written by `gatekit cluster`.
[gate]
listen = [{listen}]
shutdown_grace = "5s"

[limits]
heartbeat = "{heartbeat}"
idle_timeout = "{idle}"
handshake_timeout = "{handshake}"
backend_timeout = "{backend}"
max_in_flight = {in_flight}
max_write_queue = {write_queue}

[backends]
default = "nats"

[backends.modules]
echo = "nats"

[nats]
url = "{nats_url}"

[store]
kind = "redis"
url = "{redis_url}"
prefix = "gatekit"
ttl = "{ttl}"
grace = "{grace}"
gate_ttl = "{gate_ttl}"
duplicate_login = "{policy}"

[auth]
kind = "nats"
call = "auth/verify"

[log]
level = "warn"
"#,
        listen = listeners(s.protocol),
        heartbeat = g.heartbeat,
        idle = g.idle_timeout,
        handshake = g.handshake_timeout,
        backend = g.backend_timeout,
        in_flight = g.max_in_flight,
        write_queue = g.max_write_queue,
        nats_url = setup.nats,
        redis_url = setup.redis,
        ttl = setup.store.ttl,
        grace = setup.store.grace,
        gate_ttl = setup.store.gate_ttl,
        policy = setup.duplicate_login.name(),
    )
}
