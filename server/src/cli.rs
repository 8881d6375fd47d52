//! The command line of `gatekit serve`: a configuration file and the options that override it.

use crate::config::{ConfigError, DefaultRoute, LogFormat, ServerConfig};
use crate::listen::Listener;
use crate::Dur;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Options of `gatekit serve` (and of `gatekit-server`). Each one overrides its key of the
/// `--config` file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// The configuration file (TOML; `--print-config` prints one with every default).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print the full default configuration file, commented, and exit.
    #[arg(long)]
    pub print_config: bool,
    /// A listener, `protocol+transport://address[/path]` (repeatable; replaces `[gate] listen`):
    /// protocol native, mqtt or pomelo; transport tcp, tls, ws or wss:
    /// native+tcp://127.0.0.1:7000, native+ws://127.0.0.1:7001/gate,
    /// mqtt+wss://127.0.0.1:8084/mqtt. Every listener shares the back ends and sessions.
    #[arg(long = "listen")]
    pub listen: Vec<Listener>,
    /// The gate's id (`[gate] id`).
    #[arg(long)]
    pub gate_id: Option<String>,
    /// The NATS server, nats://host:port: every module not served in-process goes there
    /// (`[nats] url`, and `[backends] default = "nats"`).
    #[arg(long)]
    pub nats: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics (`[metrics] addr`).
    #[arg(long)]
    pub metrics: Option<SocketAddr>,
    /// Keep sessions in Redis, redis://host:port, shared by every gate (`[store] kind =
    /// "redis"` and `url`).
    #[arg(long)]
    pub redis: Option<String>,
    /// The PEM certificate chain of the tls and wss listeners (`[tls] cert`).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key (PKCS#8, PKCS#1 or SEC1) of the tls and wss listeners (`[tls] key`).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Origins allowed on ws and wss listeners (repeatable; the `Origin` browsers send, e.g.
    /// http://127.0.0.1:8080). Without it any origin is allowed.
    #[arg(long = "allow-origin")]
    pub allow_origin: Vec<String>,
    /// Serve the browser demo (clients/js/demo.html, gatekit.js) at / on native ws and wss
    /// listeners.
    #[arg(long)]
    pub demo: bool,
    /// Share the listeners' ports with other gate processes (SO_REUSEPORT).
    #[arg(long)]
    pub reuse_port: bool,
    /// Connections held at most; more are refused with the protocol's "server full".
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Time allowed from accept to a complete handshake.
    #[arg(long)]
    pub handshake_timeout: Option<Dur>,
    /// A connection with no packet for this long is closed (each protocol may close sooner
    /// from the heartbeat it agreed).
    #[arg(long)]
    pub idle_timeout: Option<Dur>,
    /// Back-end call timeout.
    #[arg(long)]
    pub backend_timeout: Option<Dur>,
    /// Back-end calls in flight per connection.
    #[arg(long)]
    pub max_in_flight: Option<usize>,
    /// Ping interval offered to clients (they may ask for less).
    #[arg(long)]
    pub ping_interval: Option<Dur>,
    /// Time given to calls in flight and clients' CLOSE at SIGTERM/SIGINT.
    #[arg(long)]
    pub shutdown_grace: Option<Dur>,
    /// Log format, text or json (`[log] format`).
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter, e.g. info or debug (`[log] level`; RUST_LOG wins).
    #[arg(long)]
    pub log_level: Option<String>,
}

impl ServeArgs {
    /// The configuration before the command line's overrides: the `--config` file, or the
    /// defaults.
    pub fn base(&self) -> Result<ServerConfig, ConfigError> {
        match &self.config {
            Some(path) => ServerConfig::from_file(path),
            None => Ok(ServerConfig::default()),
        }
    }

    /// Applies the command line's options over `config`, then checks the result (an error names
    /// the option's key and says it came from the command line when the file was fine).
    pub fn apply(&self, config: &mut ServerConfig) -> Result<(), ConfigError> {
        if !self.listen.is_empty() {
            config.gate.listen = self.listen.clone();
        }
        if let Some(id) = &self.gate_id {
            config.gate.id = id.clone();
        }
        if let Some(url) = &self.nats {
            config.nats.url = Some(url.clone());
            config.backends.default = DefaultRoute::Nats;
        }
        if let Some(addr) = self.metrics {
            config.metrics.addr = Some(addr);
        }
        if let Some(url) = &self.redis {
            config.store.kind = crate::store::StoreKind::Redis;
            config.store.url = Some(url.clone());
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            config.tls.cert = Some(cert.clone());
            config.tls.key = Some(key.clone());
        }
        if !self.allow_origin.is_empty() {
            config.websocket.allowed_origins = self.allow_origin.clone();
        }
        config.websocket.demo |= self.demo;
        config.gate.reuse_port |= self.reuse_port;
        if let Some(n) = self.max_connections {
            config.gate.max_connections = n;
        }
        let l = &mut config.limits;
        for (value, slot) in [
            (self.handshake_timeout, &mut l.handshake_timeout),
            (self.idle_timeout, &mut l.idle_timeout),
            (self.backend_timeout, &mut l.backend_timeout),
            (self.ping_interval, &mut l.ping_interval),
        ] {
            if let Some(v) = value {
                *slot = v;
            }
        }
        if let Some(n) = self.max_in_flight {
            l.max_in_flight = n;
        }
        if let Some(d) = self.shutdown_grace {
            config.gate.shutdown_grace = d;
        }
        if let Some(f) = self.log_format {
            config.log.format = f;
        }
        if let Some(level) = &self.log_level {
            config.log.level = level.clone();
        }
        let origin = match &self.config {
            Some(p) => format!("{} with the command line", p.display()),
            None => "command line".to_owned(),
        };
        config.validate(&origin)
    }

    /// The configuration: [`ServeArgs::base`], then [`ServeArgs::apply`].
    pub fn load(&self) -> Result<ServerConfig, ConfigError> {
        let mut config = self.base()?;
        self.apply(&mut config)?;
        Ok(config)
    }
}

/// Runs `gatekit serve` with these options: prints the default file (`--print-config`), or loads
/// the configuration, starts the server on a multi-thread runtime and runs it until SIGTERM or
/// SIGINT. A configuration or start-up error is one line on standard error and exit code 2.
pub fn main(args: ServeArgs) -> std::process::ExitCode {
    use std::process::ExitCode;
    if args.print_config {
        print!("{}", crate::config::DEFAULT_TOML);
        return ExitCode::SUCCESS;
    }
    let config = match args.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gatekit serve: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = crate::logging::init(&config.log) {
        eprintln!("gatekit serve: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gatekit serve: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match crate::Server::new(config).start().await {
            Ok(running) => {
                running.run_until_signal(std::future::pending()).await;
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("gatekit serve: {e}");
                ExitCode::from(2)
            }
        }
    })
}
