//! The gate's configuration: a TOML file (`gatekit serve --config gate.toml`), every key optional,
//! unknown keys refused. `gatekit serve --print-config` prints [`DEFAULT_TOML`], the full file
//! with every default, commented.

mod listeners;

use crate::listen::Listener;
use crate::metrics::MetricsConfig;
use crate::nats::{subject, NatsConfig};
use crate::Dur;
use gatekit_agent::AgentConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The default configuration file, commented: what `--print-config` prints. Parsing it gives
/// [`ServerConfig::default`] (a test holds it to that).
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// Everything a gate server is configured with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// `[gate]`: identity, listeners, connection count, shutdown.
    pub gate: GateSection,
    /// `[tls]`: the certificate of tls and wss listeners.
    pub tls: TlsSection,
    /// `[websocket]`: options of ws and wss listeners.
    pub websocket: WebSocketSection,
    /// `[limits]`: timeouts and sizes of every connection.
    pub limits: Limits,
    /// `[backends]`: where each module's calls go.
    pub backends: BackendsSection,
    /// `[nats]`: the NATS connection of back ends in other processes.
    pub nats: NatsConfig,
    /// `[store]`: where sessions are kept between connections.
    pub store: crate::store::StoreConfig,
    /// `[auth]`: how clients' credentials are checked before their session opens.
    pub auth: crate::auth::AuthSection,
    /// `[metrics]`: the Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// `[log]`: format and level of the logs (standard error).
    pub log: LogSection,
}

/// `[gate]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GateSection {
    /// The gate's id: in every session, in the `Gatekit-Gate` header and in the gate RPC's
    /// subjects. Unique per gate process in a deployment; a valid NATS token.
    pub id: String,
    /// Listeners, `protocol+transport://address[/path]`.
    #[serde(with = "listeners")]
    pub listen: Vec<Listener>,
    /// Connections held at most; more are refused with the protocol's "server full".
    pub max_connections: usize,
    /// Share the listeners' ports with other gate processes on this machine (SO_REUSEPORT).
    pub reuse_port: bool,
    /// At SIGTERM or SIGINT: time given to calls in flight and to the clients' CLOSE before
    /// what is left is cut.
    pub shutdown_grace: Dur,
}

impl Default for GateSection {
    fn default() -> Self {
        GateSection {
            id: "gate-1".to_owned(),
            listen: vec![Listener::tcp(
                crate::listen::WireProtocol::Native,
                "127.0.0.1:7000".parse().expect("a socket address"),
            )],
            max_connections: 100_000,
            reuse_port: false,
            shutdown_grace: Dur::secs(10),
        }
    }
}

/// `[tls]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSection {
    /// The PEM certificate chain: tls and wss listeners need it.
    pub cert: Option<PathBuf>,
    /// The PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
}

/// `[websocket]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSocketSection {
    /// The `Origin`s browsers may connect from; empty: any.
    pub allowed_origins: Vec<String>,
    /// Serve the browser demo page at `/` of native ws and wss listeners.
    pub demo: bool,
}

/// `[limits]`: every [`AgentConfig`] option.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// From accept to a complete handshake, transport handshakes included.
    pub handshake_timeout: Dur,
    /// Ping interval offered to clients (they may ask for less).
    pub ping_interval: Dur,
    /// A connection with no packet for this long is closed.
    pub idle_timeout: Dur,
    /// Storage heartbeat interval of sessions bound to a user.
    pub heartbeat: Dur,
    /// A back-end call not answered in this long is answered `timeout`.
    pub backend_timeout: Dur,
    /// Back-end calls in flight per connection (1 keeps a connection's messages in order).
    pub max_in_flight: usize,
    /// Bytes queued for a client that does not read before it is closed as a slow consumer.
    pub max_write_queue: usize,
    /// Largest frame accepted and sent, bytes.
    pub max_frame_length: usize,
    /// Time given to a closing connection to flush its CLOSE.
    pub close_linger: Dur,
}

impl Default for Limits {
    fn default() -> Self {
        let a = AgentConfig::default();
        Limits {
            handshake_timeout: Dur(a.handshake_timeout),
            ping_interval: Dur(a.ping_interval),
            idle_timeout: Dur(a.idle_timeout),
            heartbeat: Dur(a.heartbeat),
            backend_timeout: Dur(a.backend_timeout),
            max_in_flight: a.max_in_flight,
            max_write_queue: a.max_write_queue,
            max_frame_length: a.max_frame_length,
            close_linger: Dur(a.close_linger),
        }
    }
}

/// Where one module's calls go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModuleRoute {
    /// The built-in `echo` back end: answers every call with its body ([`crate::embedded`]).
    Echo,
    /// Over NATS, to the module's instances (docs/CLUSTER.md); needs `[nats] url`.
    Nats,
    /// A Rust back end the program embedding the server registered under the module's name
    /// ([`crate::Server::backend`]).
    Rust,
}

/// Where a module that `[backends.modules]` does not name goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DefaultRoute {
    /// Answered `not found` by the gate.
    None,
    /// Over NATS (needs `[nats] url`).
    Nats,
}

/// `[backends]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackendsSection {
    /// Where a module not named in `modules` goes.
    pub default: DefaultRoute,
    /// Module name → where its calls go. `type@id` calls go where `type` does.
    pub modules: BTreeMap<String, ModuleRoute>,
}

impl Default for BackendsSection {
    fn default() -> Self {
        BackendsSection {
            default: DefaultRoute::None,
            modules: BTreeMap::from([("echo".to_owned(), ModuleRoute::Echo)]),
        }
    }
}

/// Log formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A `tracing` filter: `info`, `debug`, `gatekit_agent=debug,info`... `RUST_LOG`, when set,
    /// wins.
    pub level: String,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

/// Why a configuration could not be used. Each names the file (or the command line) and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read the configuration file: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not TOML, or has an unknown key or a value of the wrong type (the message
    /// names the key, line and column).
    #[error("{origin}: {message}")]
    Parse {
        /// The file, or `--config` text's origin.
        origin: String,
        /// The parser's message.
        message: String,
    },
    /// A value is out of range or inconsistent with another.
    #[error("{origin}: {key}: {message}")]
    Invalid {
        /// The file, or `command line`.
        origin: String,
        /// The key, `limits.max_frame_length`.
        key: String,
        /// What is wrong, and what is allowed.
        message: String,
    },
}

impl ServerConfig {
    /// Reads and checks a configuration file.
    pub fn from_file(path: &Path) -> Result<ServerConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config = Self::parse(&text, &path.display().to_string())?;
        config.validate(&path.display().to_string())?;
        Ok(config)
    }

    /// Parses configuration text (not yet checked: see [`ServerConfig::validate`]); `origin`
    /// names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<ServerConfig, ConfigError> {
        toml::from_str(text).map_err(|e| {
            // One line: `file: line 3, column 1: unknown field ...`.
            let at = e.span().map_or(String::new(), |span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                format!("line {line}, column {column}: ")
            });
            ConfigError::Parse {
                origin: origin.to_owned(),
                message: format!("{at}{}", e.message().trim_end().replace('\n', " ")),
            }
        })
    }

    /// Checks what the types alone do not: ranges, names, and that what a key needs is there.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            origin: origin.to_owned(),
            key: key.to_owned(),
            message,
        };
        if let Err(e) = subject::check_token(&self.gate.id) {
            return Err(invalid("gate.id", e.to_string()));
        }
        if self.gate.listen.is_empty() {
            return Err(invalid(
                "gate.listen",
                "no listener: give at least one, e.g. \"native+tcp://127.0.0.1:7000\"".into(),
            ));
        }
        if self.gate.max_connections == 0 {
            return Err(invalid(
                "gate.max_connections",
                "0 would refuse every client: give 1 or more".into(),
            ));
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(invalid(
                if self.tls.cert.is_some() {
                    "tls.key"
                } else {
                    "tls.cert"
                },
                "tls.cert and tls.key go together: give both or neither".into(),
            ));
        }
        if let Err(e) = self.agent_config().validate() {
            return Err(invalid("limits.max_frame_length", e.to_string()));
        }
        if self.limits.max_in_flight == 0 {
            return Err(invalid(
                "limits.max_in_flight",
                "0 would never call a back end: give 1 or more".into(),
            ));
        }
        for (key, d) in [
            ("limits.handshake_timeout", self.limits.handshake_timeout),
            ("limits.ping_interval", self.limits.ping_interval),
            ("limits.idle_timeout", self.limits.idle_timeout),
            ("limits.heartbeat", self.limits.heartbeat),
            ("limits.backend_timeout", self.limits.backend_timeout),
        ] {
            if d.0.is_zero() {
                return Err(invalid(key, "must be more than 0".into()));
            }
        }
        if let Err(e) = subject::check_prefix(&self.nats.prefix) {
            return Err(invalid("nats.prefix", e.to_string()));
        }
        let wants_nats = self.backends.default == DefaultRoute::Nats
            || self
                .backends
                .modules
                .values()
                .any(|r| *r == ModuleRoute::Nats);
        if wants_nats && self.nats.url.is_none() {
            return Err(invalid(
                "nats.url",
                "a module goes to NATS ([backends]) but no NATS server is given: set nats.url (or --nats)"
                    .into(),
            ));
        }
        match self.auth.kind {
            crate::auth::AuthKind::None => {}
            crate::auth::AuthKind::Hmac => {
                if self.auth.secret.is_some() == self.auth.secret_file.is_some() {
                    return Err(invalid(
                        "auth.secret",
                        "kind = \"hmac\" takes the shared secret from exactly one of auth.secret and auth.secret_file".into(),
                    ));
                }
                if self.auth.secret.as_ref().is_some_and(|s| s.len() < 16) {
                    return Err(invalid(
                        "auth.secret",
                        "shorter than 16 bytes: too easy to guess".into(),
                    ));
                }
            }
            crate::auth::AuthKind::Nats => {
                if self.nats.url.is_none() {
                    return Err(invalid(
                        "nats.url",
                        "auth.kind = \"nats\" calls a back end over NATS, but no NATS server is given: set nats.url (or --nats)".into(),
                    ));
                }
            }
        }
        if let Err((key, message)) = self.store.check(self.limits.heartbeat) {
            return Err(invalid(key, message));
        }
        if let Err(e) = self.auth_subject() {
            return Err(invalid("auth.call", e));
        }
        for name in self.backends.modules.keys() {
            if let Err(e) = subject::check_token(name) {
                return Err(invalid(
                    &format!("backends.modules.{name:?}"),
                    e.to_string(),
                ));
            }
            if name.contains('@') {
                return Err(invalid(
                    &format!("backends.modules.{name:?}"),
                    "name the module's type without @id: calls to type@id go where type does"
                        .into(),
                ));
            }
        }
        Ok(())
    }

    /// The subject of `[auth] call` (`auth/verify` → `<prefix>.rpc.auth.verify`).
    pub fn auth_subject(&self) -> Result<String, String> {
        let (module, func) = self
            .auth
            .call
            .split_once('/')
            .ok_or_else(|| format!("{:?} is not module/func", self.auth.call))?;
        subject::rpc(&self.nats.prefix, module, func).map_err(|e| e.to_string())
    }

    /// The options of every connection.
    // Every field is set, but `fault-injection` adds one: the update is needed only then.
    #[allow(clippy::needless_update)]
    pub fn agent_config(&self) -> AgentConfig {
        let l = &self.limits;
        AgentConfig {
            handshake_timeout: l.handshake_timeout.0,
            ping_interval: l.ping_interval.0,
            idle_timeout: l.idle_timeout.0,
            heartbeat: l.heartbeat.0,
            backend_timeout: l.backend_timeout.0,
            max_in_flight: l.max_in_flight,
            max_write_queue: l.max_write_queue,
            max_frame_length: l.max_frame_length,
            close_linger: l.close_linger.0,
            store_timeout: self.store.timeout.0,
            duplicate_login: self.store.duplicate_login,
            server_id: self.gate.id.clone(),
            ..AgentConfig::default()
        }
    }
}

#[cfg(test)]
mod tests;
