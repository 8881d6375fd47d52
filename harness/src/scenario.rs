//! Load scenarios: built in, or read from TOML, with command-line overrides.

use serde::{Deserialize, Serialize};

pub use gatekit_server::Dur;

/// Where the clients run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One process, virtual clock, in-memory pipes: deterministic for a seed.
    Sim,
    /// Real loopback sockets against the in-process gate or `--target`.
    Tcp,
}

/// How many clients of each behaviour (relative weights).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Mix {
    /// Request/response at the scenario's rate, graceful CLOSE at the end.
    pub normal: f64,
    /// Like normal, in bursts of `burst_size` requests.
    pub burst: f64,
    /// Like normal, then drops the connection abruptly at a random time.
    pub drop: f64,
    /// Drops the connection in the middle of a frame.
    pub drop_mid_frame: f64,
    /// Stops reading after the handshake while the gate pushes to it.
    pub slow_consumer: f64,
    /// Connects and never finishes the handshake.
    pub slowloris: f64,
    /// Sends its frames one byte at a time, slowly.
    pub dribble: f64,
    /// Sends random bytes, an oversized length prefix or an invalid route after the handshake.
    pub garbage: f64,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            normal: 1.0,
            burst: 0.0,
            drop: 0.0,
            drop_mid_frame: 0.0,
            slow_consumer: 0.0,
            slowloris: 0.0,
            dribble: 0.0,
            garbage: 0.0,
        }
    }
}

/// The fake back ends' behaviour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackendProfile {
    /// Shortest latency.
    pub latency_min: Dur,
    /// Longest latency (uniform between the two).
    pub latency_max: Dur,
    /// Fraction of calls answered with an error.
    pub error_rate: f64,
    /// Fraction of calls that never answer (the gate times them out).
    pub timeout_rate: f64,
    /// Fraction of calls that panic.
    pub panic_rate: f64,
}

impl Default for BackendProfile {
    fn default() -> Self {
        BackendProfile {
            latency_min: Dur::millis(0),
            latency_max: Dur::millis(1),
            error_rate: 0.0,
            timeout_rate: 0.0,
            panic_rate: 0.0,
        }
    }
}

/// Gate options for the run (the in-process gate).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GateProfile {
    /// Storage heartbeat interval.
    pub heartbeat: Dur,
    /// Idle timeout.
    pub idle_timeout: Dur,
    /// Handshake timeout.
    pub handshake_timeout: Dur,
    /// Back-end timeout.
    pub backend_timeout: Dur,
    /// Calls in flight per connection.
    pub max_in_flight: usize,
    /// Write queue bound per connection, bytes.
    pub max_write_queue: usize,
}

impl Default for GateProfile {
    fn default() -> Self {
        GateProfile {
            heartbeat: Dur::secs(60),
            idle_timeout: Dur::secs(90),
            handshake_timeout: Dur::secs(10),
            backend_timeout: Dur::secs(10),
            max_in_flight: 1,
            max_write_queue: 256 * 1024,
        }
    }
}

/// A load scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// Name.
    pub name: String,
    /// One line on what it shows.
    pub description: String,
    /// Sim or TCP.
    pub mode: Mode,
    /// The wire protocol the clients (and the gate) speak.
    pub protocol: crate::listen::WireProtocol,
    /// Simulated clients.
    pub clients: usize,
    /// How long clients send (they then close; the run ends when every connection has).
    pub duration: Dur,
    /// Clients connect spread evenly over this time.
    pub ramp_up: Dur,
    /// Messages per second per client.
    pub rate: f64,
    /// Requests a client keeps in flight at most.
    pub window: usize,
    /// Fraction of messages sent as NOTIFY (no response).
    pub notify_ratio: f64,
    /// Request body size in bytes (at least 16: the body carries the client and sequence number).
    pub body_size: usize,
    /// Requests per burst (burst clients).
    pub burst_size: usize,
    /// A client that has sent nothing for this long sends PING.
    pub ping_interval: Dur,
    /// Bind a user id to every session (storage heartbeats).
    pub bind_users: bool,
    /// Server pushes per second to each session.
    pub push_rate: f64,
    /// Seed for every random choice.
    pub seed: u64,
    /// Client behaviours.
    pub mix: Mix,
    /// Fake back ends.
    pub backend: BackendProfile,
    /// Gate options.
    pub gate: GateProfile,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            name: "custom".into(),
            description: String::new(),
            mode: Mode::Sim,
            protocol: crate::listen::WireProtocol::Native,
            clients: 100,
            duration: Dur::secs(10),
            ramp_up: Dur::secs(1),
            rate: 10.0,
            window: 1,
            notify_ratio: 0.1,
            body_size: 32,
            burst_size: 20,
            ping_interval: Dur::secs(20),
            bind_users: false,
            push_rate: 0.0,
            seed: 1,
            mix: Mix::default(),
            backend: BackendProfile::default(),
            gate: GateProfile::default(),
        }
    }
}

impl Scenario {
    /// Parses a TOML scenario (unknown keys are errors).
    pub fn from_toml(text: &str) -> Result<Scenario, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The scenario as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("scenario serialises")
    }

    /// Checks the numbers make sense.
    pub fn validate(&self) -> Result<(), String> {
        let rates = [
            self.notify_ratio,
            self.backend.error_rate,
            self.backend.timeout_rate,
            self.backend.panic_rate,
        ];
        if rates.iter().any(|r| !(0.0..=1.0).contains(r)) {
            return Err("ratios and fault rates must be between 0 and 1".into());
        }
        if self.clients == 0 {
            return Err("clients must be at least 1".into());
        }
        if !(self.rate.is_finite()
            && self.rate >= 0.0
            && self.push_rate.is_finite()
            && self.push_rate >= 0.0)
        {
            return Err("rates must be finite and non-negative".into());
        }
        if self.window == 0 || self.gate.max_in_flight == 0 {
            return Err("window and max_in_flight must be at least 1".into());
        }
        if self.backend.latency_max < self.backend.latency_min {
            return Err("latency_max is below latency_min".into());
        }
        let m = &self.mix;
        let w = [
            m.normal,
            m.burst,
            m.drop,
            m.drop_mid_frame,
            m.slow_consumer,
            m.slowloris,
            m.dribble,
            m.garbage,
        ];
        if w.iter().any(|x| !(x.is_finite() && *x >= 0.0)) || w.iter().sum::<f64>() <= 0.0 {
            return Err("mix weights must be non-negative with a positive sum".into());
        }
        Ok(())
    }
}

/// The built-in scenarios.
pub fn builtins() -> Vec<Scenario> {
    let base = Scenario::default();
    vec![
        Scenario {
            name: "smoke".into(),
            description: "1,000 clients over loopback TCP for about 10 s: requests, notifies, pings, pushes, users bound (storage heartbeats every 2 s), graceful closes".into(),
            mode: Mode::Tcp,
            clients: 1000,
            duration: Dur::secs(8),
            ramp_up: Dur::secs(1),
            rate: 4.0,
            ping_interval: Dur::millis(200),
            push_rate: 2.0,
            bind_users: true,
            gate: GateProfile { heartbeat: Dur::secs(2), ..GateProfile::default() },
            ..base.clone()
        },
        Scenario {
            name: "steady".into(),
            description: "request/response at a steady rate".into(),
            clients: 1000,
            duration: Dur::secs(30),
            rate: 10.0,
            ..base.clone()
        },
        Scenario {
            name: "burst".into(),
            description: "clients send bursts of 20 pipelined requests (window 20, in order per connection)".into(),
            clients: 500,
            rate: 2.0,
            window: 20,
            mix: Mix { normal: 0.2, burst: 0.8, ..Mix::default() },
            backend: BackendProfile { latency_min: Dur::millis(1), latency_max: Dur::millis(20), ..BackendProfile::default() },
            ..base.clone()
        },
        Scenario {
            name: "churn".into(),
            description: "connect/disconnect storms: graceful closes, abrupt drops and drops mid-frame".into(),
            clients: 2000,
            duration: Dur::secs(5),
            ramp_up: Dur::secs(5),
            mix: Mix { normal: 0.4, drop: 0.4, drop_mid_frame: 0.2, ..Mix::default() },
            ..base.clone()
        },
        Scenario {
            name: "slow_backend".into(),
            description: "back ends take 50-500 ms; the gate stops reading instead of dropping (window 8)".into(),
            clients: 500,
            window: 8,
            rate: 20.0,
            backend: BackendProfile { latency_min: Dur::millis(50), latency_max: Dur::millis(500), ..BackendProfile::default() },
            ..base.clone()
        },
        Scenario {
            name: "backend_faults".into(),
            description: "back ends fail 5%, hang 2% (timeout) and panic 2% of calls".into(),
            clients: 500,
            gate: GateProfile { backend_timeout: Dur::secs(2), ..GateProfile::default() },
            backend: BackendProfile { error_rate: 0.05, timeout_rate: 0.02, panic_rate: 0.02, ..BackendProfile::default() },
            ..base.clone()
        },
        Scenario {
            name: "slow_consumer".into(),
            description: "a tenth of the clients stop reading while the gate pushes to everyone; they are closed, others unaffected".into(),
            clients: 200,
            push_rate: 200.0,
            body_size: 512,
            mix: Mix { normal: 0.9, slow_consumer: 0.1, ..Mix::default() },
            gate: GateProfile { max_write_queue: 64 * 1024, ..GateProfile::default() },
            ..base.clone()
        },
        Scenario {
            name: "slowloris".into(),
            description: "clients that never finish the handshake, and clients that dribble frames byte by byte".into(),
            clients: 300,
            rate: 1.0,
            mix: Mix { normal: 0.4, slowloris: 0.3, dribble: 0.3, ..Mix::default() },
            ..base.clone()
        },
        Scenario {
            name: "garbage".into(),
            description: "random bytes, oversized length prefixes and invalid routes; only the offenders are closed".into(),
            clients: 500,
            mix: Mix { normal: 0.5, garbage: 0.5, ..Mix::default() },
            ..base.clone()
        },
        Scenario {
            name: "heartbeat".into(),
            description: "idle clients with user ids bound, pinging for 2 virtual hours: storage heartbeats throttled exactly".into(),
            clients: 1000,
            duration: Dur::secs(7200),
            ramp_up: Dur::secs(60),
            rate: 0.0,
            bind_users: true,
            ping_interval: Dur::secs(25),
            ..base
        },
    ]
}

/// A built-in scenario by name.
pub fn builtin(name: &str) -> Option<Scenario> {
    builtins().into_iter().find(|s| s.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print() {
        for (s, d) in [
            ("250ms", Dur::millis(250)),
            ("10s", Dur::secs(10)),
            ("2m", Dur::secs(120)),
            ("1h", Dur::secs(3600)),
        ] {
            assert_eq!(s.parse::<Dur>().unwrap(), d);
            assert_eq!(d.to_string(), s);
        }
        assert!("10".parse::<Dur>().is_err());
        assert!("10x".parse::<Dur>().is_err());
    }

    #[test]
    fn builtins_are_valid_and_round_trip_through_toml() {
        for s in builtins() {
            s.validate().unwrap();
            assert_eq!(Scenario::from_toml(&s.to_toml()).unwrap(), s, "{}", s.name);
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(Scenario::from_toml("clientz = 3").is_err());
    }
}
