use super::*;

#[test]
fn the_printed_default_file_is_the_default() {
    let parsed = ServerConfig::parse(DEFAULT_TOML, "default.toml").expect("the default parses");
    assert_eq!(parsed, ServerConfig::default());
    parsed
        .validate("default.toml")
        .expect("the default is valid");
}

#[test]
fn the_printed_default_file_names_every_key() {
    // Every key of the serialized default appears in the commented file (a new option must be
    // documented there).
    let value = toml::Value::try_from(ServerConfig::default()).expect("serializes");
    let mut missing = Vec::new();
    let toml::Value::Table(sections) = value else {
        panic!("a table")
    };
    for (section, keys) in &sections {
        assert!(
            DEFAULT_TOML.contains(&format!("[{section}]")),
            "[{section}]"
        );
        if let toml::Value::Table(keys) = keys {
            for key in keys.keys() {
                let named = [
                    format!("\n{key} ="),
                    format!("\n# {key} ="),
                    format!("[{section}.{key}]"),
                ];
                if !named.iter().any(|n| DEFAULT_TOML.contains(n.as_str())) {
                    missing.push(format!("{section}.{key}"));
                }
            }
        }
    }
    for optional in [
        "tls.cert",
        "tls.key",
        "nats.url",
        "nats.name",
        "metrics.addr",
        "store.url",
    ] {
        assert!(
            DEFAULT_TOML.contains(&format!("# {} =", optional.split('.').nth(1).unwrap())),
            "{optional}"
        );
    }
    assert!(missing.is_empty(), "keys not in default.toml: {missing:?}");
}

fn error_of(text: &str) -> String {
    match ServerConfig::parse(text, "gate.toml") {
        Err(e) => e.to_string(),
        Ok(c) => c.validate("gate.toml").expect_err("invalid").to_string(),
    }
}

#[test]
fn an_unknown_key_is_named_with_its_file_and_line() {
    let e = error_of("[limits]\nhandshake_timeout = \"5s\"\nmax_frame = 10\n");
    assert!(e.starts_with("gate.toml: "), "{e}");
    assert!(e.contains("unknown field `max_frame`"), "{e}");
    assert!(e.contains("line 3"), "{e}");
    let e = error_of("[gatee]\nid = \"x\"\n");
    assert!(e.contains("unknown field `gatee`"), "{e}");
}

#[test]
fn bad_values_are_named() {
    let cases = [
        ("[limits]\nidle_timeout = \"5 parsecs\"\n", "unknown unit"),
        (
            "[limits]\nmax_frame_length = 0\n",
            "gate.toml: limits.max_frame_length: max_frame_length 0 is out of range",
        ),
        ("[limits]\nmax_in_flight = 0\n", "limits.max_in_flight"),
        (
            "[limits]\nbackend_timeout = \"0s\"\n",
            "limits.backend_timeout: must be more than 0",
        ),
        (
            "[gate]\nlisten = [\"native+udp://127.0.0.1:1\"]\n",
            "listener \"native+udp://127.0.0.1:1\"",
        ),
        ("[gate]\nlisten = []\n", "gate.listen: no listener"),
        (
            "[gate]\nid = \"gate.1\"\n",
            "gate.id: \"gate.1\" is not a valid NATS subject token",
        ),
        ("[gate]\nmax_connections = 0\n", "gate.max_connections"),
        (
            "[tls]\ncert = \"c.pem\"\n",
            "tls.key: tls.cert and tls.key go together",
        ),
        (
            "[backends]\ndefault = \"nats\"\n",
            "nats.url: a module goes to NATS",
        ),
        ("[backends.modules]\nchat = \"nats\"\n", "nats.url"),
        (
            "[backends.modules]\nchat = \"grpc\"\n",
            "unknown variant `grpc`",
        ),
        ("[backends.modules]\n\"chat@2\" = \"echo\"\n", "without @id"),
        (
            "[backends.modules]\n\"a.b\" = \"echo\"\n",
            "not a valid NATS subject token",
        ),
        (
            "[nats]\nurl = \"nats://127.0.0.1:4222\"\nprefix = \"a..b\"\n",
            "nats.prefix",
        ),
        ("[log]\nformat = \"xml\"\n", "unknown variant `xml`"),
        ("gate = 3\n", "invalid type"),
        (
            "[auth]\nkind = \"hmac\"\n",
            "auth.secret: kind = \"hmac\" takes the shared secret from exactly one",
        ),
        (
            "[auth]\nkind = \"hmac\"\nsecret = \"short\"\n",
            "shorter than 16 bytes",
        ),
        (
            "[auth]\nkind = \"nats\"\n",
            "nats.url: auth.kind = \"nats\"",
        ),
        (
            "[auth]\ncall = \"verify\"\n",
            "auth.call: \"verify\" is not module/func",
        ),
        ("[auth]\nkind = \"ldap\"\n", "unknown variant `ldap`"),
        (
            "[store]\nkind = \"redis\"\n",
            "store.url: kind = \"redis\" needs the Redis server",
        ),
        (
            "[store]\nurl = \"redis://127.0.0.1:6379\"\n",
            "store.url: a Redis url is given but store.kind is not \"redis\"",
        ),
        (
            "[store]\nttl = \"30s\"\n",
            "store.ttl: 30s is shorter than limits.heartbeat (1m)",
        ),
        (
            "[store]\ngrace = \"0s\"\n",
            "store.grace: must be more than 0",
        ),
        (
            "[store]\nprefix = \"\"\n",
            "store.prefix: \"\": give a non-empty",
        ),
        ("[store]\nkind = \"etcd\"\n", "unknown variant `etcd`"),
        (
            "[store]\ngate_ttl = \"2m\"\n",
            "store.gate_ttl: 2m is longer than store.grace (1m)",
        ),
        (
            "[store]\ngate_ttl = \"0s\"\n",
            "store.gate_ttl: must be more than 0",
        ),
        (
            "[store]\nduplicate_login = \"both\"\n",
            "unknown variant `both`, expected one of `kick`, `refuse`, `allow`",
        ),
    ];
    for (text, expected) in cases {
        let e = error_of(text);
        assert!(e.contains(expected), "{text:?}: {e}");
    }
}

#[test]
fn a_file_sets_what_it_names_and_keeps_the_other_defaults() {
    let c = ServerConfig::parse(
        "[gate]\nid = \"g7\"\nlisten = [\"native+ws://127.0.0.1:0/gate\", \"mqtt+tcp://127.0.0.1:0\"]\n\
         [limits]\nbackend_timeout = \"250ms\"\n[nats]\nurl = \"nats://127.0.0.1:4222\"\n\
         [backends]\ndefault = \"nats\"\n[backends.modules]\nlocal = \"echo\"\n",
        "gate.toml",
    )
    .unwrap();
    c.validate("gate.toml").unwrap();
    assert_eq!(c.gate.id, "g7");
    assert_eq!(c.gate.listen.len(), 2);
    assert_eq!(c.gate.listen[0].path.as_deref(), Some("/gate"));
    let a = c.agent_config();
    assert_eq!(a.backend_timeout, std::time::Duration::from_millis(250));
    assert_eq!(a.server_id, "g7");
    assert_eq!(
        a.handshake_timeout,
        AgentConfig::default().handshake_timeout
    );
    // Naming [backends.modules] replaces the default table (no echo unless named).
    assert_eq!(c.backends.modules.len(), 1);
}

#[test]
fn an_unreadable_file_is_named() {
    let e = ServerConfig::from_file(Path::new("/nonexistent/gate.toml")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("/nonexistent/gate.toml: cannot read"),
        "{e}"
    );
}
