//! Subjects of the contract (docs/CLUSTER.md) and the check that a name is a NATS token.

/// Why a name cannot be a NATS subject token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    /// The name is empty.
    #[error("an empty name is not a valid NATS subject token")]
    Empty,
    /// The name holds a character a token cannot.
    #[error("{name:?} is not a valid NATS subject token: it holds {found:?} (a token has no '.', '*', '>', space, tab, CR or LF)")]
    BadCharacter {
        /// The name.
        name: String,
        /// The first character refused.
        found: char,
    },
}

/// Whether `c` may appear in a subject token.
fn token_char(c: char) -> bool {
    !matches!(c, '.' | '*' | '>' | ' ' | '\t' | '\r' | '\n' | '\0')
}

/// Checks that `name` is one NATS subject token.
pub fn check_token(name: &str) -> Result<(), SubjectError> {
    if name.is_empty() {
        return Err(SubjectError::Empty);
    }
    match name.chars().find(|&c| !token_char(c)) {
        Some(found) => Err(SubjectError::BadCharacter {
            name: name.to_owned(),
            found,
        }),
        None => Ok(()),
    }
}

/// Checks a subject prefix: one or more tokens separated by `.`.
pub fn check_prefix(prefix: &str) -> Result<(), SubjectError> {
    prefix.split('.').try_for_each(check_token)
}

/// `<prefix>.rpc.<module>.<func>`: where a call goes. `module@id` stays one token.
pub fn rpc(prefix: &str, module: &str, func: &str) -> Result<String, SubjectError> {
    check_token(module)?;
    check_token(func)?;
    Ok(format!("{prefix}.rpc.{module}.{func}"))
}

/// `<prefix>.gate.<gate_id>.<op>`: the gate RPC of one gate.
pub fn gate_op(prefix: &str, gate_id: &str, op: &str) -> String {
    format!("{prefix}.gate.{gate_id}.{op}")
}

/// `<prefix>.gates.broadcast`: a broadcast every gate delivers.
pub fn all_gates_broadcast(prefix: &str) -> String {
    format!("{prefix}.gates.broadcast")
}

/// `<prefix>.groups.send`: a message to a group's members on every gate.
pub fn groups_send(prefix: &str) -> String {
    format!("{prefix}.groups.send")
}

/// `<prefix>.users.<op>`: an op on a user wherever it is online (any one gate answers).
pub fn user_op(prefix: &str, op: &str) -> String {
    format!("{prefix}.users.{op}")
}

/// The queue group every gate serves `<prefix>.users.*` in.
pub const USERS_QUEUE: &str = "gatekit.users";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        assert_eq!(check_token("chat"), Ok(()));
        assert_eq!(check_token("chat@2"), Ok(()));
        assert_eq!(check_token(""), Err(SubjectError::Empty));
        for bad in ["a.b", "a*", ">", "a b", "a\tb", "a\r", "a\n"] {
            assert!(check_token(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            check_token("a.b").unwrap_err().to_string(),
            "\"a.b\" is not a valid NATS subject token: it holds '.' (a token has no '.', '*', '>', space, tab, CR or LF)"
        );
        assert_eq!(check_prefix("gatekit"), Ok(()));
        assert_eq!(check_prefix("acme.gatekit"), Ok(()));
        assert!(check_prefix("acme..gatekit").is_err());
        assert!(check_prefix("").is_err());
        assert_eq!(
            rpc("gatekit", "chat@2", "send").unwrap(),
            "gatekit.rpc.chat@2.send"
        );
        assert!(rpc("gatekit", "chat", "a.b").is_err());
    }
}
