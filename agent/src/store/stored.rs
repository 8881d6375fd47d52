//! [`StoredSession`]: what a store keeps of a bound session, and its JSON encoding (the value the
//! Redis store writes, documented in docs/CLUSTER.md so other services can read it).

use crate::session::Session;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The `v` field of the encoding this version writes and reads.
pub const STORED_SESSION_VERSION: u32 = 1;

/// Where a user is online: a session on a gate.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Location {
    /// The gate's id (`gate.id` of its configuration).
    pub gate: String,
    /// The session's id on that gate.
    pub session_id: String,
}

/// A user's stored session: its settings, and where the user is online (none while the session
/// is in its disconnect grace period).
///
/// Encoded as one JSON object (field order is not significant; unknown fields are ignored, so a
/// newer writer can add some):
///
/// ```json
/// {"v":1,"user_id":"alice","settings":{"room":"lobby"},"gate":"gate-1","session_id":"9f…"}
/// ```
///
/// `gate` and `session_id` are both present (online) or both absent (offline).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSession {
    /// The encoding's version, [`STORED_SESSION_VERSION`].
    pub v: u32,
    /// The user id (also the key's last part).
    pub user_id: String,
    /// The session's settings.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    /// Where the user is online, if it is.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
}

impl StoredSession {
    /// The stored form of a bound session, online where it is; `None` if it is not bound.
    pub fn of(session: &Session) -> Option<StoredSession> {
        let user_id = session.user_id.clone()?;
        Some(StoredSession {
            v: STORED_SESSION_VERSION,
            user_id,
            settings: session.settings.clone(),
            location: Some(Location {
                gate: session.server_id.clone(),
                session_id: session.session_id.clone(),
            }),
        })
    }

    /// Whether the user is online at `session`.
    pub fn is_at(&self, session: &Session) -> bool {
        self.location
            .as_ref()
            .is_some_and(|l| l.session_id == session.session_id && l.gate == session.server_id)
    }

    /// The JSON encoding.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a stored session always encodes")
    }

    /// Decodes the JSON encoding; the error says what is wrong.
    pub fn from_json(bytes: &[u8]) -> Result<StoredSession, String> {
        let s: StoredSession = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if s.v != STORED_SESSION_VERSION {
            return Err(format!(
                "version {} (this gate reads version {STORED_SESSION_VERSION})",
                s.v
            ));
        }
        Ok(s)
    }

    /// Settings stored here that `session` does not have (what a bind restores).
    pub fn restored_for(&self, session: &Session) -> BTreeMap<String, String> {
        self.settings
            .iter()
            .filter(|(k, _)| !session.settings.contains_key(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        let mut s = Session::new("s1", "tcp", "127.0.0.1:1", "gate-1");
        s.user_id = Some("alice".into());
        s.settings.insert("room".into(), "lobby".into());
        s
    }

    #[test]
    fn the_encoding_is_the_documented_one() {
        let stored = StoredSession::of(&session()).unwrap();
        insta::assert_snapshot!(stored.to_json(), @r#"{"v":1,"user_id":"alice","settings":{"room":"lobby"},"gate":"gate-1","session_id":"s1"}"#);
        let offline = StoredSession {
            location: None,
            ..stored.clone()
        };
        insta::assert_snapshot!(offline.to_json(), @r#"{"v":1,"user_id":"alice","settings":{"room":"lobby"}}"#);
        assert_eq!(
            StoredSession::from_json(stored.to_json().as_bytes()),
            Ok(stored)
        );
        assert_eq!(
            StoredSession::from_json(offline.to_json().as_bytes()),
            Ok(offline)
        );
    }

    #[test]
    fn unreadable_values_say_why() {
        assert!(StoredSession::from_json(b"nope")
            .unwrap_err()
            .contains("expected"));
        assert_eq!(
            StoredSession::from_json(br#"{"v":2,"user_id":"a"}"#),
            Err("version 2 (this gate reads version 1)".to_owned())
        );
        // Unknown fields are ignored; settings may be absent.
        let s = StoredSession::from_json(br#"{"v":1,"user_id":"a","extra":true}"#).unwrap();
        assert!(s.settings.is_empty() && s.location.is_none());
    }

    #[test]
    fn a_session_without_a_user_is_not_stored() {
        let mut s = session();
        s.user_id = None;
        assert_eq!(StoredSession::of(&s), None);
    }

    #[test]
    fn restored_settings_are_the_ones_the_session_lacks() {
        let mut stored = StoredSession::of(&session()).unwrap();
        stored.settings.insert("room".into(), "old".into());
        stored.settings.insert("level".into(), "3".into());
        let restored = stored.restored_for(&session());
        assert_eq!(
            restored,
            BTreeMap::from([("level".to_owned(), "3".to_owned())])
        );
    }
}
