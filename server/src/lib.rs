//! The deployable gatekit gate: what `gatekit serve` runs.
//!
//! A [`ServerConfig`] (a TOML file, [`config`], with command-line overrides, [`cli`]) says where
//! to listen, with which protocols and transports, the limits of every connection, where each
//! module's calls go — in-process Rust back ends, or any language over NATS ([`nats`],
//! docs/CLUSTER.md) — how clients authenticate, where metrics are served ([`metrics`]) and how
//! to log. [`Server`] runs it until SIGTERM or SIGINT, then shuts down gracefully.
//!
//! With no configuration at all it runs embedded: one native listener on 127.0.0.1:7000, the
//! in-process `echo` module ([`embedded`]), sessions in memory.

pub mod auth;
pub mod cli;
pub mod config;
mod duration;
pub mod embedded;
pub mod listen;
pub mod listener_transport;
pub mod logging;
pub mod metrics;
pub mod nats;
pub mod routing;
mod server;
pub mod store;

pub use config::{ConfigError, ServerConfig};
pub use duration::Dur;
pub use server::{listener, Extras, Running, Server, ServerError, LISTEN_BACKLOG};
