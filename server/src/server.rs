//! [`Server`]: a gate built from a [`ServerConfig`], started, and shut down gracefully.

use crate::config::ServerConfig;
use crate::listen::Listener;
use crate::listener_transport::{TlsSource, TransportOptions};
use crate::metrics::Metrics;
use gatekit_agent::{Backend, Gate, Learner, NoLearner, Services, SessionStore, ShutdownReport};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinHandle;

/// Pending connections each listening socket queues (the kernel caps it at `somaxconn`).
pub const LISTEN_BACKLOG: u32 = 4096;

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] crate::ConfigError),
    /// The routing table names a back end that does not exist.
    #[error(transparent)]
    Routing(#[from] crate::routing::RoutingError),
    /// A listener could not be set up (bind, certificate).
    #[error("{listener}: {reason}")]
    Listener {
        /// The listener.
        listener: String,
        /// Why.
        reason: String,
    },
    /// The metrics endpoint could not be bound.
    #[error("metrics.addr {addr}: {source}")]
    Metrics {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// NATS could not be set up.
    #[error(transparent)]
    Nats(#[from] crate::nats::NatsError),
    /// `[auth]` could not be set up.
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthSetupError),
}

/// What a program embedding the server adds to a configuration: its own Rust back ends, session
/// store and learner.
#[derive(Default, Clone)]
pub struct Extras {
    /// Rust back ends by module name (`[backends.modules] name = "rust"`, or any module the file
    /// does not name).
    pub backends: HashMap<String, Arc<dyn Backend>>,
    /// The session store, instead of `[store]`'s (default: none, `[store]` decides).
    pub store: Option<Arc<dyn SessionStore>>,
    /// Wraps the session store (`[store]`'s or `store`), e.g. to record what the gate asks of
    /// it: the gate uses what this returns.
    pub wrap_store: Option<StoreWrapper>,
    /// The learner (default: none).
    pub learner: Option<Arc<dyn Learner>>,
    /// Defects injected into the agent (tests of the harness only).
    #[cfg(feature = "fault-injection")]
    pub faults: gatekit_agent::Faults,
}

/// A function wrapping the session store ([`Extras::wrap_store`]).
pub type StoreWrapper = Arc<dyn Fn(Arc<dyn SessionStore>) -> Arc<dyn SessionStore> + Send + Sync>;

/// A gate server, not yet started.
pub struct Server {
    config: ServerConfig,
    extras: Extras,
}

impl Server {
    /// A server of `config` (checked at [`Server::start`]).
    pub fn new(config: ServerConfig) -> Server {
        Server {
            config,
            extras: Extras::default(),
        }
    }

    /// A server of `config` with a program's own parts.
    pub fn with_extras(config: ServerConfig, extras: Extras) -> Server {
        Server { config, extras }
    }

    /// Serves `module` with a Rust back end.
    pub fn backend(mut self, module: impl Into<String>, backend: impl Backend) -> Server {
        self.extras
            .backends
            .insert(module.into(), Arc::new(backend));
        self
    }

    /// Keeps sessions in `store`.
    pub fn store(mut self, store: Arc<dyn SessionStore>) -> Server {
        self.extras.store = Some(store);
        self
    }

    /// Tells `learner` of sessions coming and going.
    pub fn learner(mut self, learner: Arc<dyn Learner>) -> Server {
        self.extras.learner = Some(learner);
        self
    }

    /// Binds every listener, connects to NATS (without waiting for it), serves the gate RPC and
    /// the metrics, and starts accepting.
    pub async fn start(self) -> Result<Running, ServerError> {
        let Server { config, extras } = self;
        config.validate("configuration")?;
        let gate_id = config.gate.id.clone();
        #[allow(unused_mut)]
        let mut agent_config = config.agent_config();
        #[cfg(feature = "fault-injection")]
        {
            agent_config.faults = extras.faults.clone();
        }
        let nats = match &config.nats.url {
            Some(_) => Some(crate::nats::connect(&config.nats, &gate_id).await?),
            None => None,
        };
        let nats_backend: Option<Arc<dyn Backend>> = nats.as_ref().map(|client| {
            Arc::new(crate::nats::NatsBackend::new(
                client.clone(),
                config.nats.prefix.clone(),
                config.limits.backend_timeout.0,
            )) as Arc<dyn Backend>
        });
        let mut backends =
            crate::routing::backends(&config.backends, &extras.backends, nats_backend)?;
        let (mut store, redis) = match extras.store {
            Some(store) => (store, None),
            None => config
                .store
                .build()
                .await
                .map_err(|e| crate::ConfigError::Invalid {
                    origin: "configuration".into(),
                    key: "store.url".into(),
                    message: e.to_string(),
                })?,
        };
        if let Some(wrap) = extras.wrap_store {
            store = wrap(store);
        }
        let mut learner = extras.learner.unwrap_or_else(|| Arc::new(NoLearner));
        let metrics = config.metrics.addr.map(|_| Metrics::new(&gate_id));
        if let Some(m) = &metrics {
            backends = m.backends(backends);
            store = m.store(store);
            learner = m.learner(learner);
        }
        let authenticator = crate::auth::from_config(&config, nats.as_ref())?;
        let mut gate = Gate::builder()
            .config(agent_config.clone())
            .services(Services {
                backends,
                store: store.clone(),
                learner,
            })
            .max_connections(config.gate.max_connections);
        if let Some(client) = &nats {
            gate = gate.remote_gates(Arc::new(crate::nats::directory::NatsRemoteGates::new(
                client.clone(),
                &config.nats.prefix,
            )));
        }
        let gate = match authenticator {
            Some(a) => gate.authenticator(a),
            None => gate,
        }
        .try_build()
        .map_err(|e| crate::ConfigError::Invalid {
            origin: "configuration".into(),
            key: "limits.max_frame_length".into(),
            message: e.to_string(),
        })?;
        let transport_options = TransportOptions {
            tls: config
                .tls
                .cert
                .clone()
                .zip(config.tls.key.clone())
                .map(|(cert, key)| TlsSource::Files { cert, key }),
            allowed_origins: (!config.websocket.allowed_origins.is_empty())
                .then(|| config.websocket.allowed_origins.clone()),
            demo: config.websocket.demo,
        };
        let mut sockets = Vec::new();
        let mut bound = Vec::new();
        for l in &config.gate.listen {
            let fail = |reason: String| ServerError::Listener {
                listener: l.to_string(),
                reason,
            };
            let transport =
                crate::listener_transport::transport(l, &transport_options, &agent_config)
                    .map_err(|e| ServerError::Listener {
                        listener: l.to_string(),
                        reason: e.trim_start_matches(&format!("listener {l}: ")).to_owned(),
                    })?;
            let socket =
                listener(l.addr, config.gate.reuse_port).map_err(|e| fail(e.to_string()))?;
            let addr = socket.local_addr().map_err(|e| fail(e.to_string()))?;
            bound.push(Listener { addr, ..l.clone() });
            sockets.push((socket, l.protocol, transport));
        }
        let mut tasks = Vec::new();
        let mut metrics_addr = None;
        if let (Some(m), Some(addr)) = (&metrics, config.metrics.addr) {
            m.watch_gate(gate.clone());
            if let Some(client) = &nats {
                m.watch_nats(client.clone());
            }
            let l = TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Metrics { addr, source })?;
            metrics_addr = Some(
                l.local_addr()
                    .map_err(|source| ServerError::Metrics { addr, source })?,
            );
            tasks.push(crate::metrics::serve(m.clone(), l));
        }
        if let Some(client) = &nats {
            tasks.push(
                crate::nats::gate_rpc::serve(
                    client.clone(),
                    &config.nats.prefix,
                    &gate_id,
                    gate.clone(),
                )
                .await?,
            );
            tasks.push(
                crate::nats::directory::serve(
                    client.clone(),
                    &config.nats.prefix,
                    &gate_id,
                    gate.clone(),
                    store.clone(),
                )
                .await?,
            );
        }
        if let Some(redis) = &redis {
            // The first beat before the first client: a login here sees this gate alive.
            match redis.beat_gate(&gate_id).await {
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(gate = %gate_id, error = %e, "cannot mark this gate alive in Redis yet")
                }
            }
            tasks.push(crate::store::liveness::spawn(
                redis.clone(),
                gate_id.clone(),
                gate.clone(),
                nats.clone(),
                config.store.gate_ttl.0,
            ));
        }
        let accepts = sockets
            .into_iter()
            .map(|(socket, protocol, transport)| match transport {
                None => gate.serve_with(socket, protocol.factory()),
                Some(t) => gate.serve_over(socket, t, protocol.factory()),
            })
            .collect();
        // Before anyone can see "listening": a SIGTERM from then on is a graceful shutdown, not
        // the default action (a test or a supervisor may send it as soon as it reads the line).
        #[cfg(unix)]
        let signals = Signals::install();
        for l in &bound {
            tracing::info!(listener = %l, gate = %gate_id, "listening");
        }
        if let Some(addr) = metrics_addr {
            tracing::info!(%addr, "metrics at http://{addr}/metrics");
        }
        Ok(Running {
            gate,
            listeners: bound,
            metrics_addr,
            metrics,
            nats,
            redis,
            #[cfg(unix)]
            signals,
            config,
            accepts,
            tasks,
        })
    }
}

/// A started server.
pub struct Running {
    gate: Gate,
    listeners: Vec<Listener>,
    metrics_addr: Option<SocketAddr>,
    metrics: Option<Arc<Metrics>>,
    nats: Option<async_nats::Client>,
    redis: Option<crate::store::redis::RedisStore>,
    /// SIGTERM and SIGINT, caught from before the first "listening" line.
    #[cfg(unix)]
    signals: Option<Signals>,
    config: ServerConfig,
    accepts: Vec<JoinHandle<()>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// The gate: its sessions, counters, push and kick.
    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// Every listener with its bound address (the real port when 0 was asked for).
    pub fn listeners(&self) -> &[Listener] {
        &self.listeners
    }

    /// The metrics endpoint's bound address, if there is one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The metrics, if they are served.
    pub fn metrics(&self) -> Option<&Arc<Metrics>> {
        self.metrics.as_ref()
    }

    /// The NATS client, if the gate has one.
    pub fn nats(&self) -> Option<&async_nats::Client> {
        self.nats.as_ref()
    }

    /// The configuration it runs.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Returns at the first SIGTERM or SIGINT (its name) since [`Server::start`] logged its
    /// listeners: the handlers are installed before that line, so a signal sent on reading it
    /// is a graceful shutdown, not the process's death.
    pub async fn signalled(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            if self.signals.is_none() {
                self.signals = Signals::install();
            }
            if let Some(Signals { term, int }) = self.signals.as_mut() {
                return tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                };
            }
        }
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }

    /// Runs until SIGTERM or SIGINT (or `stop` resolves), then shuts down gracefully.
    pub async fn run_until_signal(
        mut self,
        stop: impl std::future::Future<Output = ()>,
    ) -> ShutdownReport {
        tokio::select! {
            which = self.signalled() => tracing::info!("{which}: shutting down"),
            _ = stop => {}
        }
        self.shutdown().await
    }

    /// Graceful shutdown: stop accepting, let calls in flight answer, CLOSE `shutdown` to every
    /// client, cut what is left after `[gate] shutdown_grace`; then stop serving the gate RPC and
    /// flush NATS.
    pub async fn shutdown(self) -> ShutdownReport {
        let report = self.gate.shutdown(self.config.gate.shutdown_grace.0).await;
        for a in &self.accepts {
            a.abort();
        }
        for t in &self.tasks {
            t.abort();
        }
        if let Some(redis) = &self.redis {
            // Its sessions have ended (and told the store): the gate is no longer alive.
            if let Err(e) = redis.forget_gate(&self.config.gate.id).await {
                tracing::debug!(error = %e, "gate liveness key not removed");
            }
        }
        if let Some(client) = &self.nats {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), client.flush()).await;
        }
        tracing::info!(
            closed = report.connections,
            aborted = report.aborted,
            "shut down"
        );
        report
    }
}

/// SIGTERM and SIGINT streams: once made, the process no longer dies of either; each is seen by
/// the next `recv`.
#[cfg(unix)]
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn install() -> Option<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => Some(Signals { term, int }),
            _ => None,
        }
    }
}

/// A listening socket on `addr`, sharing the port with other processes if `reuse_port`.
pub fn listener(addr: SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    if reuse_port {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}
