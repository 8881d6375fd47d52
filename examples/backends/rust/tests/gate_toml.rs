//! examples/gate.toml, the gate of docs/CLUSTER.md §3, is a configuration the gate accepts, and
//! says what the documentation says it does.

use gatekit_server::config::{DefaultRoute, ModuleRoute};
use gatekit_server::ServerConfig;
use std::path::PathBuf;

#[test]
fn the_example_gate_configuration_parses() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../gate.toml");
    let cfg = ServerConfig::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
    let listen: Vec<String> = cfg.gate.listen.iter().map(|l| l.to_string()).collect();
    assert_eq!(
        listen,
        [
            "native+tcp://127.0.0.1:7000",
            "native+ws://127.0.0.1:7001/gate"
        ]
    );
    assert_eq!(cfg.gate.id, "gate-1");
    assert_eq!(cfg.nats.url.as_deref(), Some("nats://127.0.0.1:4222"));
    assert_eq!(cfg.nats.prefix, "gatekit");
    assert_eq!(cfg.backends.default, DefaultRoute::Nats);
    assert_eq!(cfg.backends.modules.get("echo"), Some(&ModuleRoute::Echo));
    assert_eq!(cfg.metrics.addr, Some("127.0.0.1:9100".parse().unwrap()));
    assert!(cfg.websocket.demo);
}
