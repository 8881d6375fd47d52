//! The NATS headers of the contract (docs/CLUSTER.md).

use async_nats::HeaderMap;
use gatekit_agent::Session;

/// The session id (32 hex digits): on every call, and the session a gate RPC op acts on.
pub const SESSION: &str = "Gatekit-Session";
/// The id of the gate holding the connection: where the gate RPC goes.
pub const GATE: &str = "Gatekit-Gate";
/// The bound user id (absent while none is bound); the user of a gate RPC `bind`.
pub const USER: &str = "Gatekit-User";
/// The client's transport: `tcp`, `tls`, `ws` or `wss`.
pub const NETWORK: &str = "Gatekit-Network";
/// The client's address as the gate saw it, `ip:port`.
pub const PEER: &str = "Gatekit-Peer";
/// The session's settings as one compact JSON object of strings (absent when there are none).
pub const SETTINGS: &str = "Gatekit-Settings";
/// A reply's status: absent or `ok`, `not_found`, `failed`, `busy`.
pub const STATUS: &str = "Gatekit-Status";
/// The setting a gate RPC `set` or `remove` acts on.
pub const KEY: &str = "Gatekit-Key";
/// The push topic of a gate RPC `send` or `broadcast`.
pub const TOPIC: &str = "Gatekit-Topic";
/// The reason text of a gate RPC `close`.
pub const REASON: &str = "Gatekit-Reason";
/// The group (`join`, `leave`, `<prefix>.groups.send`).
pub const GROUP: &str = "Gatekit-Group";

/// Values of [`STATUS`].
pub mod status {
    /// The payload is the answer (the same as no header).
    pub const OK: &str = "ok";
    /// The module has no such function.
    pub const NOT_FOUND: &str = "not_found";
    /// The back end refused the call; the payload says why.
    pub const FAILED: &str = "failed";
    /// The back end is overloaded.
    pub const BUSY: &str = "busy";
}

/// A value that cannot travel as a NATS header value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("header {header}: {value:?} cannot be a NATS header value: {why}")]
pub struct HeaderError {
    /// The header.
    pub header: &'static str,
    /// The value.
    pub value: String,
    /// What is wrong with it.
    pub why: String,
}

/// Checks that `value` survives as a header value: no control character (CR and LF would end
/// the header), and no space or tab at either end (receivers trim them).
pub fn check_value(header: &'static str, value: &str) -> Result<(), HeaderError> {
    let fail = |why: String| HeaderError {
        header,
        value: value.to_owned(),
        why,
    };
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(fail(format!("it holds the control character {:?}", c)));
    }
    if value.starts_with([' ', '\t']) || value.ends_with([' ', '\t']) {
        return Err(fail("it starts or ends with white space".to_owned()));
    }
    Ok(())
}

/// Inserts `header: value` after [`check_value`].
pub fn insert(
    headers: &mut HeaderMap,
    header: &'static str,
    value: &str,
) -> Result<(), HeaderError> {
    check_value(header, value)?;
    headers.insert(header, value);
    Ok(())
}

/// The session headers of every call (docs/CLUSTER.md §1).
pub fn session_headers(session: &Session) -> Result<HeaderMap, HeaderError> {
    let mut h = HeaderMap::new();
    insert(&mut h, SESSION, &session.session_id)?;
    insert(&mut h, GATE, &session.server_id)?;
    if let Some(user) = &session.user_id {
        insert(&mut h, USER, user)?;
    }
    insert(&mut h, NETWORK, &session.network)?;
    insert(&mut h, PEER, &session.peer)?;
    if !session.settings.is_empty() {
        let json = serde_json::to_string(&session.settings).map_err(|e| HeaderError {
            header: SETTINGS,
            value: format!("{:?}", session.settings),
            why: e.to_string(),
        })?;
        insert(&mut h, SETTINGS, &json)?;
    }
    Ok(h)
}

/// The value of `name` in `headers`: the exact name first, then any case of it.
pub fn get<'a>(headers: Option<&'a HeaderMap>, name: &str) -> Option<&'a str> {
    let headers = headers?;
    if let Some(v) = headers.get(name) {
        return Some(v.as_str());
    }
    headers
        .iter()
        .find(|(k, _)| AsRef::<str>::as_ref(*k).eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.first())
        .map(|v| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session::new(
            "0123456789abcdef0123456789abcdef",
            "tcp",
            "127.0.0.1:5000",
            "gate-1",
        )
    }

    fn value<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
        get(Some(h), name)
    }

    #[test]
    fn a_fresh_session() {
        let h = session_headers(&session()).unwrap();
        assert_eq!(value(&h, SESSION), Some("0123456789abcdef0123456789abcdef"));
        assert_eq!(value(&h, GATE), Some("gate-1"));
        assert_eq!(value(&h, NETWORK), Some("tcp"));
        assert_eq!(value(&h, PEER), Some("127.0.0.1:5000"));
        assert_eq!(value(&h, USER), None);
        assert_eq!(value(&h, SETTINGS), None);
        assert_eq!(h.len(), 4);
    }

    #[test]
    fn user_and_settings() {
        let mut s = session();
        s.user_id = Some("alice".into());
        s.settings.insert("room".into(), "lobby".into());
        s.settings
            .insert("say".into(), "a \"quote\"\nand a newline, é".into());
        let h = session_headers(&s).unwrap();
        assert_eq!(value(&h, USER), Some("alice"));
        let json = value(&h, SETTINGS).unwrap();
        assert_eq!(
            json,
            r#"{"room":"lobby","say":"a \"quote\"\nand a newline, é"}"#
        );
        let back: std::collections::BTreeMap<String, String> = serde_json::from_str(json).unwrap();
        assert_eq!(back, s.settings);
    }

    #[test]
    fn values_that_cannot_be_headers() {
        for (bad, why) in [
            ("a\r\nb", "control character"),
            ("a\nb", "control character"),
            ("a\0b", "control character"),
            ("a\u{7f}", "control character"),
            (" alice", "white space"),
            ("alice\t", "control character"),
            ("alice ", "white space"),
        ] {
            let mut s = session();
            s.user_id = Some(bad.into());
            let e = session_headers(&s).unwrap_err();
            assert_eq!(e.header, USER, "{bad:?}");
            assert!(e.to_string().contains(why), "{bad:?}: {e}");
            assert!(e.to_string().starts_with("header Gatekit-User: "), "{e}");
        }
        let mut s = session();
        s.peer = "x\ny".into();
        assert_eq!(session_headers(&s).unwrap_err().header, PEER);
        // Inside the settings JSON, escapes carry anything.
        let mut s = session();
        s.settings.insert("k\n".into(), "\r\n\0".into());
        assert!(session_headers(&s).is_ok());
    }

    #[test]
    fn get_ignores_case_when_it_must() {
        let mut h = HeaderMap::new();
        h.insert("gatekit-status", "busy");
        assert_eq!(value(&h, STATUS), Some("busy"));
        h.insert(STATUS, "ok");
        assert_eq!(value(&h, STATUS), Some("ok"));
        assert_eq!(get(None, STATUS), None);
    }
}
