//! # gatekit-harness
//!
//! Simulates thousands of game clients against a gatekit gate and proves its invariants.
//!
//! - [`client::SimClient`]: one simulated client, sans-I/O, with seeded randomness and a behaviour
//!   (normal, burst, drop, drop mid-frame, slow consumer, slowloris, dribble, garbage).
//! - [`sim`]: every client and agent in one process on a virtual clock — deterministic for a seed.
//! - [`tcp`]: the same clients over loopback sockets, against the built-in gate or `--target`.
//! - [`scenario`]: built-in scenarios and TOML files; [`invariants`] and [`report`]: what is checked
//!   and shown at the end of every run.
//!
//! The `gatekit` binary is the command-line front end (`gatekit run`, `gatekit scenarios`,
//! `gatekit serve`, `gatekit hold`, `gatekit scale`, `gatekit rtt`).
//! - [`serve`], [`hold`], [`scale`]: connection scale across processes — gate processes sharing a
//!   port, client worker processes, and the driver that measures connect rate, memory per
//!   connection and Disconnects.

#![warn(missing_docs)]

pub mod answer_deadline;
pub mod client;
pub mod client_transport;
pub mod client_wire;
pub mod cluster;
pub mod control;
pub mod fake_backend;
pub mod hold;
pub mod invariants;
pub mod nats_echo;
pub use gatekit_server::listen;
pub use gatekit_server::listener_transport;
pub mod procfs;
pub mod recorded_store;
pub mod recorder;
pub mod report;
pub mod rtt;
pub mod run;
pub mod scale;
pub mod scale_directory;
pub mod scenario;
pub mod serve;
pub mod sim;
pub mod source_address;
pub mod stdin_control;
pub mod tcp;
