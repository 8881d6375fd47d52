//! The NATS headers of the contract (docs/CLUSTER.md).
