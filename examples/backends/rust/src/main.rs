//! The chat module of docs/CLUSTER.md, in Rust with async-nats.

fn main() {}
