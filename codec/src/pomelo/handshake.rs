//! The JSON bodies: the client's handshake, the server's handshake response, and the kick.
//!
//! Client → server (handshake package, type 1), as the official clients send it:
//!
//! ```text
//! {"sys":{"type":"js-tcp","version":"0.0.1","rsa":{}},"user":{}}
//! ```
//!
//! Server → client (handshake package, type 1), as pinus 1.7.4 answers:
//!
//! ```text
//! {"code":200,"sys":{"heartbeat":3,"dict":{"chat.chatHandler.send":1},"dictVersion":"...","useDict":true}}
//! {"code":500}      bad handshake (no `sys`, not JSON, not an object, empty)
//! {"code":501}      client too old (pinus's `checkClient(type, version)` said no)
//! ```
//!
//! Kick (type 5): `{"reason":"..."}`.
//!
//! Parsing follows `JSON.parse` (duplicate keys: the last wins) and is lenient where pinus is:
//! keys it does not know are kept (in `sys`: [`ClientHandshake::sys_extra`]) or ignored (at the
//! top level), and every `sys` key is optional. It is strict where the protocol has to be: a body
//! that is empty, not UTF-8, not JSON or not an object, a missing or `null` `sys`, a `sys` that is
//! not an object, and known keys of the wrong type are refused ([`BodyError`]; a gate answers
//! `{"code":500}` and closes).

use super::dict::{push_js_string, Dictionary};
use super::error::{BodyError, JsonFault, JsonKind};
use super::package::{Package, PackageType};
use bytes::Bytes;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::fmt::{self, Write as _};
use std::sync::Arc;

/// Handshake response code: accepted.
pub const CODE_OK: u16 = 200;
/// Handshake response code: bad handshake, or refused by the application (pinus's
/// `CODE_USE_ERROR`).
pub const CODE_USE_ERROR: u16 = 500;
/// Handshake response code: the client is too old (pinus's `CODE_OLD_CLIENT`, sent when the
/// application's `checkClient(type, version)` returns false).
pub const CODE_OLD_CLIENT: u16 = 501;

// -------------------------------------------------------------------------------------------------
// Top-level object: JSON.parse semantics, borrowed raw values
// -------------------------------------------------------------------------------------------------

/// The top-level keys of a body: those in `values` parsed, those in `raws` kept verbatim.
struct Top<'a> {
    values: Vec<(String, Value)>,
    raws: Vec<(String, &'a RawValue)>,
}

impl Top<'_> {
    /// The last value of `key` (`JSON.parse` keeps the last of duplicate keys); `null` counts as
    /// missing.
    fn value(&self, key: &str) -> Option<&Value> {
        self.values
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
            .filter(|v| !v.is_null())
    }

    fn raw(&self, key: &str) -> Option<&RawValue> {
        self.raws
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| *v)
    }
}

struct TopSeed {
    values: &'static [&'static str],
    raws: &'static [&'static str],
}

impl<'de> de::DeserializeSeed<'de> for TopSeed {
    type Value = Top<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Top<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopSeed {
    type Value = Top<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top<'de>, A::Error> {
        let mut top = Top {
            values: Vec::new(),
            raws: Vec::new(),
        };
        while let Some(key) = map.next_key::<String>()? {
            if self.values.contains(&key.as_str()) {
                let v: Value = map.next_value()?;
                top.values.push((key, v));
            } else if self.raws.contains(&key.as_str()) {
                let v: &'de RawValue = map.next_value()?;
                top.raws.push((key, v));
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(top)
    }
}

/// The kind of the JSON value starting at the first non-blank byte of `text` (valid JSON).
fn kind_at_start(text: &str) -> JsonKind {
    match text
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .as_bytes()
        .first()
    {
        Some(b'[') => JsonKind::Array,
        Some(b'"') => JsonKind::String,
        Some(b't' | b'f') => JsonKind::Bool,
        Some(b'n') => JsonKind::Null,
        Some(b'{') => JsonKind::Object,
        _ => JsonKind::Number,
    }
}

fn syntax(e: &serde_json::Error) -> JsonFault {
    let text = e.to_string();
    let reason = match text.rfind(" at line ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    };
    JsonFault::Syntax {
        line: e.line(),
        column: e.column(),
        reason,
    }
}

/// Checks `body` is a UTF-8 JSON object and takes its top-level keys.
fn top_level<'a>(
    package: PackageType,
    body: &'a [u8],
    values: &'static [&'static str],
    raws: &'static [&'static str],
) -> Result<Top<'a>, BodyError> {
    let err = |fault| BodyError { package, fault };
    if body.is_empty() {
        return Err(err(JsonFault::Empty));
    }
    let text = std::str::from_utf8(body).map_err(|e| {
        err(JsonFault::NotUtf8 {
            offset: e.valid_up_to(),
        })
    })?;
    let mut d = serde_json::Deserializer::from_str(text);
    let top = de::DeserializeSeed::deserialize(TopSeed { values, raws }, &mut d)
        .and_then(|top| d.end().map(|()| top));
    match top {
        Ok(top) => Ok(top),
        // The only data error is the top level not being an object: the values inside are
        // taken as whatever they are.
        Err(e) if e.is_data() => Err(err(JsonFault::NotAnObject {
            found: kind_at_start(text),
        })),
        Err(e) => Err(err(syntax(&e))),
    }
}

/// The raw JSON of `raw` as a slice of `body` (which `raw` borrows from).
fn raw_slice(body: &Bytes, raw: &RawValue) -> Bytes {
    let text = raw.get();
    let start = text.as_ptr() as usize - body.as_ptr() as usize;
    body.slice(start..start + text.len())
}

fn wrong(field: &'static str, expected: &'static str, v: &Value) -> JsonFault {
    JsonFault::WrongType {
        field,
        expected,
        found: JsonKind::of(v),
    }
}

fn opt_string(
    sys: &Map<String, Value>,
    key: &str,
    field: &'static str,
) -> Result<Option<String>, JsonFault> {
    match sys.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(wrong(field, "a string", v)),
    }
}

/// `v` as an integer in `0..=max`.
fn u64_in(v: &Value, field: &'static str, max: u64) -> Result<u64, JsonFault> {
    match v {
        Value::Number(n) => match n.as_u64() {
            Some(x) if x <= max => Ok(x),
            _ => Err(JsonFault::OutOfRange {
                field,
                value: n.to_string(),
                min: 0,
                max,
            }),
        },
        v => Err(wrong(field, "a number", v)),
    }
}

fn opt_u64(
    obj: &Map<String, Value>,
    key: &str,
    field: &'static str,
    max: u64,
) -> Result<Option<u64>, JsonFault> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => u64_in(v, field, max).map(Some),
    }
}

/// Checks that `json` is one JSON value (for the `user` objects gatekit writes verbatim).
fn check_json(package: PackageType, json: &[u8]) -> Result<(), BodyError> {
    let err = |fault| BodyError { package, fault };
    if json.is_empty() {
        return Err(err(JsonFault::Empty));
    }
    let text = std::str::from_utf8(json).map_err(|e| {
        err(JsonFault::NotUtf8 {
            offset: e.valid_up_to(),
        })
    })?;
    serde_json::from_str::<IgnoredAny>(text)
        .map(|_| ())
        .map_err(|e| err(syntax(&e)))
}

// -------------------------------------------------------------------------------------------------
// Client handshake
// -------------------------------------------------------------------------------------------------

/// The client's handshake: `{"sys":{"type":..,"version":..,"rsa":{..},..},"user":{..}}`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientHandshake {
    /// `sys.type`: the client library (`js-websocket`, `js-tcp`, `unity-socket`, ...).
    pub client_type: Option<String>,
    /// `sys.version`: the client library's version (what pinus's `checkClient` judges).
    pub version: Option<String>,
    /// `sys.rsa`: the client's RSA public key (`rsa_n`, `rsa_e`) for pinus's `useCrypto`;
    /// the official clients send `{}`.
    pub rsa: Option<Map<String, Value>>,
    /// `sys.dictVersion`: the dictionary version the client has cached; the server sends the
    /// dictionary again unless it is the current one.
    pub dict_version: Option<String>,
    /// `sys.protoVersion`: the protobuf schema version the client has cached (a number or a
    /// string). gatekit carries no protobuf schemas; it is kept for the application.
    pub proto_version: Option<Value>,
    /// The other `sys` keys, kept (some clients put platform and build numbers there).
    pub sys_extra: Map<String, Value>,
    /// The `user` value, verbatim: a slice of the package body. The application's handshake data.
    pub user: Option<Bytes>,
}

impl ClientHandshake {
    /// A handshake as the official clients send it: `type`, `version`, `"rsa":{}` and
    /// `"user":{}`.
    pub fn new(client_type: impl Into<String>, version: impl Into<String>) -> ClientHandshake {
        ClientHandshake {
            client_type: Some(client_type.into()),
            version: Some(version.into()),
            rsa: Some(Map::new()),
            user: Some(Bytes::from_static(b"{}")),
            ..ClientHandshake::default()
        }
    }

    /// Parses a handshake package's body (see the module docs for what is refused). Top-level
    /// keys other than `sys` and `user` are ignored.
    pub fn parse(body: &Bytes) -> Result<ClientHandshake, BodyError> {
        let package = PackageType::Handshake;
        let err = |fault| BodyError { package, fault };
        let top = top_level(package, body, &["sys"], &["user"])?;
        let sys = match top.value("sys") {
            None => return Err(err(JsonFault::MissingField { field: "sys" })),
            Some(Value::Object(sys)) => sys,
            Some(v) => return Err(err(wrong("sys", "an object", v))),
        };
        let rsa = match sys.get("rsa") {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m.clone()),
            Some(v) => return Err(err(wrong("sys.rsa", "an object", v))),
        };
        let proto_version = match sys.get("protoVersion") {
            None | Some(Value::Null) => None,
            Some(v @ (Value::Number(_) | Value::String(_))) => Some(v.clone()),
            Some(v) => return Err(err(wrong("sys.protoVersion", "a number or a string", v))),
        };
        const KNOWN: [&str; 5] = ["type", "version", "rsa", "dictVersion", "protoVersion"];
        Ok(ClientHandshake {
            client_type: opt_string(sys, "type", "sys.type").map_err(err)?,
            version: opt_string(sys, "version", "sys.version").map_err(err)?,
            rsa,
            dict_version: opt_string(sys, "dictVersion", "sys.dictVersion").map_err(err)?,
            proto_version,
            sys_extra: sys
                .iter()
                .filter(|(k, _)| !KNOWN.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            user: top.raw("user").map(|raw| raw_slice(body, raw)),
        })
    }

    /// The `user` value parsed, if there is one.
    pub fn user_value(&self) -> Option<Value> {
        self.user
            .as_ref()
            .and_then(|u| serde_json::from_slice(u).ok())
    }

    /// The handshake as JSON: `sys` with `type`, `version`, `rsa`, `dictVersion`, `protoVersion`
    /// (those present, in this order), then the extra `sys` keys; then `user` if present.
    /// [`ClientHandshake::parse`] gives it back.
    pub fn to_json(&self) -> String {
        let mut sys = String::new();
        let key = |name: &str, sys: &mut String| {
            sys.push(if sys.is_empty() { '{' } else { ',' });
            push_js_string(sys, name);
            sys.push(':');
        };
        if let Some(t) = &self.client_type {
            key("type", &mut sys);
            push_js_string(&mut sys, t);
        }
        if let Some(v) = &self.version {
            key("version", &mut sys);
            push_js_string(&mut sys, v);
        }
        if let Some(rsa) = &self.rsa {
            key("rsa", &mut sys);
            sys.push_str(&serde_json::to_string(rsa).expect("a JSON map serializes"));
        }
        if let Some(d) = &self.dict_version {
            key("dictVersion", &mut sys);
            push_js_string(&mut sys, d);
        }
        if let Some(p) = &self.proto_version {
            key("protoVersion", &mut sys);
            sys.push_str(&p.to_string());
        }
        for (k, v) in &self.sys_extra {
            key(k, &mut sys);
            sys.push_str(&v.to_string());
        }
        if sys.is_empty() {
            sys.push('{');
        }
        sys.push('}');
        let mut out = format!("{{\"sys\":{sys}");
        if let Some(user) = &self.user {
            out.push_str(",\"user\":");
            out.push_str(&String::from_utf8_lossy(user));
        }
        out.push('}');
        out
    }

    /// The handshake package.
    pub fn to_package(&self) -> Package {
        Package::Handshake(self.to_json().into())
    }
}

// -------------------------------------------------------------------------------------------------
// Server handshake response
// -------------------------------------------------------------------------------------------------

/// The gate's answer to a handshake, built by typed constructors and written as pinus writes it.
///
/// ```
/// use gatekit_codec::pomelo::{ClientHandshake, Dictionary, HandshakeResponse};
/// use std::sync::Arc;
///
/// let dict = Arc::new(Dictionary::new(["chat.chatHandler.send"], Vec::<String>::new()).unwrap());
/// let hello = ClientHandshake::new("js-websocket", "0.0.1");
/// let answer = HandshakeResponse::accept(&hello, Some(3), Some(&dict));
/// assert_eq!(
///     answer.to_json(),
///     format!(r#"{{"code":200,"sys":{{"heartbeat":3,"dict":{{"chat.chatHandler.send":1}},"dictVersion":"{}","useDict":true}}}}"#, dict.version())
/// );
/// assert_eq!(HandshakeResponse::refused().to_json(), r#"{"code":500}"#);
/// assert_eq!(HandshakeResponse::old_client().to_json(), r#"{"code":501}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeResponse {
    code: u16,
    heartbeat_secs: Option<u32>,
    dict: Option<Arc<Dictionary>>,
    use_dict: bool,
    route_maps: bool,
    user: Option<Bytes>,
}

impl HandshakeResponse {
    /// Accepted (code 200), with the heartbeat interval in seconds; `None` leaves `heartbeat` out
    /// (the client then never heartbeats, as with a pinus configured without one).
    pub fn ok(heartbeat_secs: Option<u32>) -> HandshakeResponse {
        HandshakeResponse {
            code: CODE_OK,
            heartbeat_secs,
            dict: None,
            use_dict: false,
            route_maps: false,
            user: None,
        }
    }

    /// pinus's answer to `client`: accepted with `heartbeat_secs`; with a dictionary, the
    /// dictionary itself only if the client's `dictVersion` is not the current one, and
    /// `useDict: true` either way.
    pub fn accept(
        client: &ClientHandshake,
        heartbeat_secs: Option<u32>,
        dict: Option<&Arc<Dictionary>>,
    ) -> HandshakeResponse {
        let r = HandshakeResponse::ok(heartbeat_secs);
        match dict {
            Some(d) if client.dict_version.as_deref() == Some(d.version()) => r.use_dict(),
            Some(d) => r.with_dict(d.clone()),
            None => r,
        }
    }

    /// Refused (code 500): a bad handshake, or one the application refuses. The gate closes after
    /// sending it.
    pub fn refused() -> HandshakeResponse {
        HandshakeResponse::error(CODE_USE_ERROR)
    }

    /// Refused (code 501): the client library is too old. The gate closes after sending it.
    pub fn old_client() -> HandshakeResponse {
        HandshakeResponse::error(CODE_OLD_CLIENT)
    }

    /// Refused with another code: `{"code":N}`.
    pub fn error(code: u16) -> HandshakeResponse {
        HandshakeResponse {
            code,
            ..HandshakeResponse::ok(None)
        }
    }

    /// Sends `dict` (`dict` and `dictVersion`) and `useDict: true`.
    pub fn with_dict(mut self, dict: Arc<Dictionary>) -> HandshakeResponse {
        self.dict = Some(dict);
        self.use_dict = true;
        self
    }

    /// `useDict: true` without the dictionary (the client has the current one cached).
    pub fn use_dict(mut self) -> HandshakeResponse {
        self.use_dict = true;
        self
    }

    /// Also sends `routeToCode` and `codeToRoute` beside `dict`, as pomelo 2.x does (pinus 1.7.4
    /// no longer does; some older clients read them).
    pub fn with_route_maps(mut self, on: bool) -> HandshakeResponse {
        self.route_maps = on;
        self
    }

    /// Adds `user`: the application's answer, JSON written verbatim (pinus's handshake callback
    /// result). Refused if it is not one JSON value.
    pub fn with_user(mut self, json: impl Into<Bytes>) -> Result<HandshakeResponse, BodyError> {
        let json = json.into();
        check_json(PackageType::Handshake, &json)?;
        self.user = Some(json);
        Ok(self)
    }

    /// The response code.
    pub fn code(&self) -> u16 {
        self.code
    }

    /// Whether it is an acceptance.
    pub fn is_ok(&self) -> bool {
        self.code == CODE_OK
    }

    /// The response JSON, byte for byte as pinus writes it (`code`, `sys` with `heartbeat`,
    /// `dict`, [`routeToCode`, `codeToRoute`,] `dictVersion`, `useDict`; then `user`).
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(64 + self.dict.as_ref().map_or(0, |d| d.json().len()));
        let _ = write!(out, "{{\"code\":{}", self.code);
        if self.code == CODE_OK {
            let mut first = true;
            let mut key = |name: &str, out: &mut String| {
                out.push(if first { '{' } else { ',' });
                first = false;
                let _ = write!(out, "\"{name}\":");
            };
            out.push_str(",\"sys\":");
            if let Some(h) = self.heartbeat_secs {
                key("heartbeat", &mut out);
                let _ = write!(out, "{h}");
            }
            if let Some(d) = &self.dict {
                key("dict", &mut out);
                out.push_str(d.json());
                if self.route_maps {
                    key("routeToCode", &mut out);
                    out.push_str(d.json());
                    key("codeToRoute", &mut out);
                    out.push_str(d.code_to_route_json());
                }
                key("dictVersion", &mut out);
                push_js_string(&mut out, d.version());
            }
            if self.use_dict {
                key("useDict", &mut out);
                out.push_str("true");
            }
            if first {
                out.push('{');
            }
            out.push('}');
        }
        if let Some(user) = &self.user {
            out.push_str(",\"user\":");
            out.push_str(std::str::from_utf8(user).expect("checked UTF-8"));
        }
        out.push('}');
        out
    }

    /// The handshake package.
    pub fn to_package(&self) -> Package {
        Package::Handshake(self.to_json().into())
    }

    /// Parses a server's handshake response (the client side, e.g. gatekit's simulated clients).
    pub fn parse(body: &Bytes) -> Result<ServerHandshake, BodyError> {
        ServerHandshake::parse(body)
    }
}

/// A server's handshake response, parsed (client side).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerHandshake {
    /// `code`: 200 accepted, 500 refused, 501 client too old.
    pub code: u16,
    /// `sys.heartbeat`, seconds; `None` or 0: no heartbeats.
    pub heartbeat_secs: Option<u32>,
    /// `sys.dict`, (route, code) sorted by code.
    pub dict: Option<Vec<(String, u16)>>,
    /// `sys.dictVersion`.
    pub dict_version: Option<String>,
    /// `sys.useDict`.
    pub use_dict: bool,
    /// The other `sys` keys (`routeToCode`, `codeToRoute`, `protos`, `useProto`, ...), kept.
    pub sys_extra: Map<String, Value>,
    /// The `user` value, verbatim.
    pub user: Option<Bytes>,
}

impl ServerHandshake {
    /// Parses a handshake response: `code` is required (0 to 65,535); `sys` and its keys are
    /// optional but typed.
    pub fn parse(body: &Bytes) -> Result<ServerHandshake, BodyError> {
        let package = PackageType::Handshake;
        let err = |fault| BodyError { package, fault };
        let top = top_level(package, body, &["code", "sys"], &["user"])?;
        let code = match top.value("code") {
            None => return Err(err(JsonFault::MissingField { field: "code" })),
            Some(v) => u64_in(v, "code", u64::from(u16::MAX)).map_err(err)? as u16,
        };
        let mut out = ServerHandshake {
            code,
            user: top.raw("user").map(|raw| raw_slice(body, raw)),
            ..ServerHandshake::default()
        };
        let sys = match top.value("sys") {
            None => return Ok(out),
            Some(Value::Object(sys)) => sys,
            Some(v) => return Err(err(wrong("sys", "an object", v))),
        };
        out.heartbeat_secs = opt_u64(sys, "heartbeat", "sys.heartbeat", u64::from(u32::MAX))
            .map_err(err)?
            .map(|h| h as u32);
        out.dict = match sys.get("dict") {
            None | Some(Value::Null) => None,
            Some(Value::Object(d)) => {
                let mut pairs = Vec::with_capacity(d.len());
                for (route, code) in d {
                    let code = u64_in(code, "sys.dict", u64::from(u16::MAX)).map_err(err)?;
                    pairs.push((route.clone(), code as u16));
                }
                pairs.sort_by_key(|&(_, code)| code);
                Some(pairs)
            }
            Some(v) => return Err(err(wrong("sys.dict", "an object", v))),
        };
        out.dict_version = opt_string(sys, "dictVersion", "sys.dictVersion").map_err(err)?;
        out.use_dict = match sys.get("useDict") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(v) => return Err(err(wrong("sys.useDict", "a boolean", v))),
        };
        const KNOWN: [&str; 4] = ["heartbeat", "dict", "dictVersion", "useDict"];
        out.sys_extra = sys
            .iter()
            .filter(|(k, _)| !KNOWN.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(out)
    }

    /// The dictionary, when `sys.dict` numbers its routes 1, 2, ... without gaps (as pinus does).
    pub fn dictionary(&self) -> Option<Dictionary> {
        let pairs = self.dict.as_ref()?;
        let dense = pairs
            .iter()
            .enumerate()
            .all(|(i, &(_, code))| usize::from(code) == i + 1);
        if !dense {
            return None;
        }
        Dictionary::numbered(pairs.iter().map(|(r, _)| r.clone()).collect()).ok()
    }
}

// -------------------------------------------------------------------------------------------------
// Kick
// -------------------------------------------------------------------------------------------------

/// A kick package's body: `{"reason":".."}`. pinus sends one only when it has a reason string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Kick {
    /// Why the server is closing the connection.
    pub reason: String,
}

impl Kick {
    /// A kick with `reason`.
    pub fn new(reason: impl Into<String>) -> Kick {
        Kick {
            reason: reason.into(),
        }
    }

    /// `{"reason":".."}`, as pinus's `JSON.stringify({reason})`.
    pub fn to_json(&self) -> String {
        let mut out = String::from("{\"reason\":");
        push_js_string(&mut out, &self.reason);
        out.push('}');
        out
    }

    /// The kick package.
    pub fn to_package(&self) -> Package {
        Package::Kick(self.to_json().into())
    }

    /// Parses a kick body: an object with a string `reason` (other keys ignored).
    pub fn parse(body: &Bytes) -> Result<Kick, BodyError> {
        let package = PackageType::Kick;
        let err = |fault| BodyError { package, fault };
        let top = top_level(package, body, &["reason"], &[])?;
        match top.value("reason") {
            None => Err(err(JsonFault::MissingField { field: "reason" })),
            Some(Value::String(s)) => Ok(Kick { reason: s.clone() }),
            Some(v) => Err(err(wrong("reason", "a string", v))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn fault(r: Result<ClientHandshake, BodyError>) -> JsonFault {
        r.unwrap_err().fault
    }

    #[test]
    fn official_client_handshake() {
        let json = r#"{"sys":{"type":"js-tcp","version":"0.0.1","rsa":{}},"user":{}}"#;
        assert_eq!(json.len(), 0x3e, "PEERS.md: 01 00 00 3e");
        let h = ClientHandshake::parse(&b(json)).unwrap();
        assert_eq!(h, ClientHandshake::new("js-tcp", "0.0.1"));
        assert_eq!(h.to_json(), json);
    }

    #[test]
    fn lenient_where_pinus_is() {
        let body = b(
            r#" {"sys":{"platform":"ios","dictVersion":"x","protoVersion":3},"extra":[1],"user":{"b":2, "a":1}} "#,
        );
        let h = ClientHandshake::parse(&body).unwrap();
        assert_eq!(h.client_type, None);
        assert_eq!(h.dict_version.as_deref(), Some("x"));
        assert_eq!(h.proto_version, Some(Value::from(3)));
        assert_eq!(h.sys_extra.get("platform"), Some(&Value::from("ios")));
        // `user` verbatim, as a slice of the body.
        let user = h.user.unwrap();
        assert_eq!(&user[..], br#"{"b":2, "a":1}"#);
        assert_eq!(user.as_ptr(), body[body.len() - 16..].as_ptr());
        // Duplicate keys: the last wins, as with JSON.parse.
        let h = ClientHandshake::parse(&b(r#"{"sys":5,"sys":{"type":"t"}}"#)).unwrap();
        assert_eq!(h.client_type.as_deref(), Some("t"));
        assert_eq!(h.user, None);
    }

    #[test]
    fn strict_where_it_must_be() {
        assert_eq!(fault(ClientHandshake::parse(&b(""))), JsonFault::Empty);
        assert_eq!(
            fault(ClientHandshake::parse(&Bytes::from_static(b"{\"sys\xff"))),
            JsonFault::NotUtf8 { offset: 5 }
        );
        assert!(matches!(
            fault(ClientHandshake::parse(&b("{\"sys\":"))),
            JsonFault::Syntax { line: 1, .. }
        ));
        for json in [
            "{} x",
            r#"{"sys":1e400}"#,
            r#"{"sys":{"n":1e400}}"#,
            r#"{"u\x":1}"#,
        ] {
            assert!(
                matches!(
                    fault(ClientHandshake::parse(&b(json))),
                    JsonFault::Syntax { .. }
                ),
                "{json}"
            );
        }
        for (json, found) in [
            ("[1]", JsonKind::Array),
            ("null", JsonKind::Null),
            (" \"s\"", JsonKind::String),
            ("-1", JsonKind::Number),
            ("true", JsonKind::Bool),
        ] {
            assert_eq!(
                fault(ClientHandshake::parse(&b(json))),
                JsonFault::NotAnObject { found },
                "{json}"
            );
        }
        for json in [r#"{}"#, r#"{"sys":null}"#, r#"{"user":{}}"#] {
            assert_eq!(
                fault(ClientHandshake::parse(&b(json))),
                JsonFault::MissingField { field: "sys" }
            );
        }
        assert_eq!(
            fault(ClientHandshake::parse(&b(r#"{"sys":"a"}"#))),
            JsonFault::WrongType {
                field: "sys",
                expected: "an object",
                found: JsonKind::String
            }
        );
        assert_eq!(
            fault(ClientHandshake::parse(&b(r#"{"sys":{"version":1}}"#))),
            JsonFault::WrongType {
                field: "sys.version",
                expected: "a string",
                found: JsonKind::Number
            }
        );
        assert_eq!(
            fault(ClientHandshake::parse(&b(r#"{"sys":{"rsa":[]}}"#))),
            JsonFault::WrongType {
                field: "sys.rsa",
                expected: "an object",
                found: JsonKind::Array
            }
        );
    }

    #[test]
    fn deep_nesting_is_no_crash() {
        // `user` is kept raw: serde_json skips it without recursing, so any depth is fine.
        let deep = format!(
            "{{\"sys\":{{}},\"user\":{}{}}}",
            "[".repeat(20_000),
            "]".repeat(20_000)
        );
        let h = ClientHandshake::parse(&b(&deep)).expect("deep user");
        assert_eq!(h.user.map(|u| u.len()), Some(40_000));
        // `sys` is parsed: serde_json's recursion limit (128) makes it a syntax error.
        let deep_sys = format!("{{\"sys\":{}{}}}", "[".repeat(200), "]".repeat(200));
        assert!(matches!(
            fault(ClientHandshake::parse(&b(&deep_sys))),
            JsonFault::Syntax { .. }
        ));
    }

    #[test]
    fn responses_as_pinus_writes_them() {
        let dict = Arc::new(Dictionary::new(["a.b.c"], ["onX"]).unwrap());
        let v = dict.version().to_owned();
        let r = HandshakeResponse::ok(Some(3)).with_dict(dict.clone());
        let json = r.to_json();
        assert_eq!(
            json,
            format!(
                r#"{{"code":200,"sys":{{"heartbeat":3,"dict":{{"a.b.c":1,"onX":2}},"dictVersion":"{v}","useDict":true}}}}"#
            )
        );
        let parsed = HandshakeResponse::parse(&b(&json)).unwrap();
        assert_eq!(parsed.code, 200);
        assert_eq!(parsed.heartbeat_secs, Some(3));
        assert_eq!(parsed.dict_version.as_deref(), Some(v.as_str()));
        assert!(parsed.use_dict);
        assert_eq!(parsed.dictionary().as_ref(), Some(&*dict));
        assert_eq!(
            HandshakeResponse::ok(Some(3))
                .with_dict(dict.clone())
                .with_route_maps(true)
                .to_json(),
            format!(
                r#"{{"code":200,"sys":{{"heartbeat":3,"dict":{{"a.b.c":1,"onX":2}},"routeToCode":{{"a.b.c":1,"onX":2}},"codeToRoute":{{"1":"a.b.c","2":"onX"}},"dictVersion":"{v}","useDict":true}}}}"#
            )
        );
        // The client has the current dictionary: only useDict.
        let mut hello = ClientHandshake::new("js-tcp", "0.0.1");
        hello.dict_version = Some(v);
        assert_eq!(
            HandshakeResponse::accept(&hello, Some(3), Some(&dict)).to_json(),
            r#"{"code":200,"sys":{"heartbeat":3,"useDict":true}}"#
        );
        assert_eq!(
            HandshakeResponse::ok(None).to_json(),
            r#"{"code":200,"sys":{}}"#
        );
        let with_user = HandshakeResponse::ok(Some(1))
            .with_user(&b"{\"uid\":7}"[..])
            .unwrap();
        assert_eq!(
            with_user.to_json(),
            r#"{"code":200,"sys":{"heartbeat":1},"user":{"uid":7}}"#
        );
        assert!(HandshakeResponse::ok(None).with_user(&b"{"[..]).is_err());
        let refused = HandshakeResponse::parse(&b(r#"{"code":501}"#)).unwrap();
        assert_eq!((refused.code, refused.dict), (501, None));
        assert_eq!(
            HandshakeResponse::parse(&b(r#"{"sys":{}}"#))
                .unwrap_err()
                .fault,
            JsonFault::MissingField { field: "code" }
        );
        assert!(matches!(
            HandshakeResponse::parse(&b(r#"{"code":70000}"#))
                .unwrap_err()
                .fault,
            JsonFault::OutOfRange { field: "code", .. }
        ));
    }

    #[test]
    fn kick() {
        let k = Kick::new("bye \"now\"");
        assert_eq!(k.to_json(), r#"{"reason":"bye \"now\""}"#);
        assert_eq!(Kick::parse(&b(&k.to_json())), Ok(k));
        assert_eq!(
            Kick::parse(&b("{}")).unwrap_err().to_string(),
            "kick package body: missing `reason`"
        );
    }
}
