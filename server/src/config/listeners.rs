//! `[gate] listen` as strings, `"native+ws://127.0.0.1:7001/gate"`, each parsed as a [`Listener`].

use crate::listen::Listener;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Writes each listener as its string.
pub fn serialize<S: Serializer>(listeners: &[Listener], s: S) -> Result<S::Ok, S::Error> {
    let strings: Vec<String> = listeners.iter().map(ToString::to_string).collect();
    strings.serialize(s)
}

/// Reads each listener from its string; an error names the string and what is wrong with it.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Listener>, D::Error> {
    let strings = Vec::<String>::deserialize(d)?;
    strings
        .iter()
        .map(|s| {
            s.parse()
                .map_err(|e| serde::de::Error::custom(format!("listener {s:?}: {e}")))
        })
        .collect()
}
