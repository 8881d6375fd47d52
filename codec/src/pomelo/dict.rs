//! The route dictionary (route ↔ u16 code) that compressed routes refer to, numbered and versioned
//! exactly as pinus 1.7.4's `DictionaryComponent` does it.
//!
//! pinus collects every handler route `server.handler.method`, sorts them (JavaScript's default
//! `Array.prototype.sort`, which compares UTF-16 code units), numbers them from 1, then appends
//! the user dictionary (`config/dictionary`) in its order. The handshake response carries the
//! dictionary as the JSON object `dict` (`route: code`) and
//! `dictVersion` = base64(md5(`JSON.stringify(dict)`)). Both are reproduced byte for byte here,
//! including two JavaScript rules that matter for odd routes: object keys that are array indices
//! (`"0"`, `"17"`, ...) come first in `JSON.stringify`, in numeric order; and a route given twice
//! keeps its first position in the JSON but takes the later code (both codes still resolve).

use super::error::DictError;
use super::message::MessageRoute;
use base64::Engine as _;
use md5::Digest as _;
use std::collections::HashMap;
use std::fmt::Write as _;

/// Codes are u16 and start at 1: at most 65,535 routes.
pub const MAX_DICT_ROUTES: usize = u16::MAX as usize;

/// A route dictionary: route ↔ code, with its JSON and `dictVersion` computed once.
///
/// ```
/// use gatekit_codec::pomelo::{Dictionary, MessageRoute};
///
/// let dict = Dictionary::new(["chat.chatHandler.send", "connector.entryHandler.entry"], ["onChat"]).unwrap();
/// assert_eq!(dict.code("connector.entryHandler.entry"), Some(2));
/// assert_eq!(dict.route(3), Some("onChat"));
/// assert_eq!(dict.json(), r#"{"chat.chatHandler.send":1,"connector.entryHandler.entry":2,"onChat":3}"#);
/// assert_eq!(dict.compress("onChat"), MessageRoute::Code(3));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dictionary {
    /// The route of code `i + 1`.
    by_code: Vec<String>,
    /// Route → code (the last code given to the route).
    codes: HashMap<String, u16>,
    /// `JSON.stringify(dict)`.
    json: String,
    /// `JSON.stringify(abbrs)`: code → route (pomelo 2.x's `codeToRoute`).
    abbrs_json: String,
    /// base64(md5(json)).
    version: String,
}

impl Default for Dictionary {
    fn default() -> Self {
        Dictionary::new(Vec::<String>::new(), Vec::<String>::new()).expect("empty is valid")
    }
}

impl Dictionary {
    /// The dictionary pinus builds from its handler routes (any order: they are sorted here as
    /// pinus sorts them) and its user dictionary (kept in order, numbered after the handlers).
    pub fn new<H, U>(handler_routes: H, user_routes: U) -> Result<Dictionary, DictError>
    where
        H: IntoIterator,
        H::Item: Into<String>,
        U: IntoIterator,
        U::Item: Into<String>,
    {
        let mut routes: Vec<String> = handler_routes.into_iter().map(Into::into).collect();
        routes.sort_by(|a, b| js_cmp(a, b));
        routes.extend(user_routes.into_iter().map(Into::into));
        Dictionary::numbered(routes)
    }

    /// A dictionary numbering `routes` 1, 2, ... in the order given (pinus with `ignoreAutoRouter`
    /// and only a user dictionary).
    pub fn numbered(routes: Vec<String>) -> Result<Dictionary, DictError> {
        if routes.len() > MAX_DICT_ROUTES {
            return Err(DictError::TooManyRoutes {
                count: routes.len(),
                max: MAX_DICT_ROUTES,
            });
        }
        // `dict[route] = code` on a JavaScript object: the first assignment fixes the key's
        // position, a later one only changes the value.
        let mut order: Vec<&str> = Vec::with_capacity(routes.len());
        let mut codes: HashMap<String, u16> = HashMap::with_capacity(routes.len());
        for (i, route) in routes.iter().enumerate() {
            let code = (i + 1) as u16;
            if codes.insert(route.clone(), code).is_none() {
                order.push(route);
            }
        }
        let json = js_object_json(
            order
                .iter()
                .map(|r| (r.to_string(), codes[*r].to_string()))
                .collect(),
        );
        // `abbrs[code] = route`: every key is an array index, so code order.
        let abbrs_json = js_object_json(
            routes
                .iter()
                .enumerate()
                .map(|(i, r)| ((i + 1).to_string(), js_string(r)))
                .collect(),
        );
        let version = dict_version(&json);
        Ok(Dictionary {
            by_code: routes,
            codes,
            json,
            abbrs_json,
            version,
        })
    }

    /// The code of `route`, if it is in the dictionary.
    pub fn code(&self, route: &str) -> Option<u16> {
        self.codes.get(route).copied()
    }

    /// The route of `code`, if any (codes are 1 to [`Dictionary::len`]).
    pub fn route(&self, code: u16) -> Option<&str> {
        self.by_code
            .get(usize::from(code).checked_sub(1)?)
            .map(String::as_str)
    }

    /// The route a message names: its name, or the route of its code.
    pub fn resolve<'a>(&'a self, route: &'a MessageRoute) -> Result<&'a str, DictError> {
        match route {
            MessageRoute::Name(t) => Ok(t.as_str()),
            MessageRoute::Code(code) => self.route(*code).ok_or(DictError::UnknownCode {
                code: *code,
                len: self.len(),
            }),
        }
    }

    /// The route to put in a push: its code when the route is in the dictionary (as pinus does),
    /// else its name.
    pub fn compress(&self, route: &str) -> MessageRoute {
        match self.code(route) {
            Some(code) => MessageRoute::Code(code),
            None => MessageRoute::Name(route.to_owned().into()),
        }
    }

    /// The number of codes (routes given, duplicates included).
    pub fn len(&self) -> usize {
        self.by_code.len()
    }

    /// Whether there are no routes.
    pub fn is_empty(&self) -> bool {
        self.by_code.is_empty()
    }

    /// (code, route) for every code, in code order.
    pub fn iter(&self) -> impl Iterator<Item = (u16, &str)> {
        self.by_code
            .iter()
            .enumerate()
            .map(|(i, r)| ((i + 1) as u16, r.as_str()))
    }

    /// The dictionary as the JSON object pinus sends as `sys.dict`: `JSON.stringify(dict)`.
    pub fn json(&self) -> &str {
        &self.json
    }

    /// Code → route as the JSON object pomelo 2.x sends as `sys.codeToRoute`.
    pub fn code_to_route_json(&self) -> &str {
        &self.abbrs_json
    }

    /// pinus's `dictVersion`: base64(md5(`JSON.stringify(dict)`)), 24 characters.
    pub fn version(&self) -> &str {
        &self.version
    }
}

/// base64 (standard alphabet, padded) of the MD5 of `json`'s UTF-8 bytes, as Node's
/// `crypto.createHash('md5').update(json).digest('base64')`.
pub fn dict_version(json: &str) -> String {
    let digest = md5::Md5::digest(json.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(digest)
}

/// JavaScript's default sort order for strings: by UTF-16 code units.
pub fn js_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

/// Whether `key` is an array index as ECMAScript defines it (a canonical decimal below
/// 2^32 − 1): such keys come first in an object's key order, in numeric order.
pub fn is_array_index(key: &str) -> bool {
    let b = key.as_bytes();
    if b.is_empty() || b.len() > 10 || !b.iter().all(u8::is_ascii_digit) {
        return false;
    }
    if b.len() > 1 && b[0] == b'0' {
        return false;
    }
    key.parse::<u64>().is_ok_and(|v| v < u64::from(u32::MAX))
}

/// `JSON.stringify` of an object whose (key, value as JSON) pairs were assigned in this order, each
/// key once: array-index keys first in numeric order, then the others in order.
fn js_object_json(entries: Vec<(String, String)>) -> String {
    let (mut index, other): (Vec<_>, Vec<_>) =
        entries.into_iter().partition(|(k, _)| is_array_index(k));
    index.sort_by_key(|(k, _)| k.parse::<u64>().unwrap_or(0));
    let mut out = String::from("{");
    for (i, (k, v)) in index.iter().chain(other.iter()).enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_js_string(&mut out, k);
        out.push(':');
        out.push_str(v);
    }
    out.push('}');
    out
}

/// `JSON.stringify` of a string (ECMAScript's QuoteJSONString): `"` and `\` escaped, the control
/// characters below U+0020 as `\b \t \n \f \r` or `\u00xx` (lowercase hex), everything else as is.
pub fn js_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_js_string(&mut out, s);
    out
}

/// Appends [`js_string`]`(s)` to `out`.
pub fn push_js_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if c < ' ' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_like_pinus() {
        let d = Dictionary::new(
            ["connector.entryHandler.entry", "chat.chatHandler.send"],
            ["onChat", "onAdd"],
        )
        .unwrap();
        let got: Vec<_> = d.iter().collect();
        assert_eq!(
            got,
            [
                (1, "chat.chatHandler.send"),
                (2, "connector.entryHandler.entry"),
                (3, "onChat"),
                (4, "onAdd")
            ]
        );
        assert_eq!(d.route(0), None);
        assert_eq!(d.route(5), None);
        assert_eq!(
            d.resolve(&MessageRoute::Code(9)),
            Err(DictError::UnknownCode { code: 9, len: 4 })
        );
        assert_eq!(
            d.code_to_route_json(),
            r#"{"1":"chat.chatHandler.send","2":"connector.entryHandler.entry","3":"onChat","4":"onAdd"}"#
        );
    }

    #[test]
    fn version_is_base64_md5_of_the_json() {
        // md5("{}") = 99914b932bd37a50b983c5e7c90ae93b
        assert_eq!(Dictionary::default().version(), "mZFLkyvTelC5g8XnyQrpOw==");
        assert_eq!(Dictionary::default().json(), "{}");
        // RFC 1321's test vector "abc" = 900150983cd24fb0d6963f7d28e17f72.
        assert_eq!(dict_version("abc"), "kAFQmDzST7DWlj99KOF/cg==");
    }

    #[test]
    fn javascript_sort_and_key_order() {
        // U+10000 is a surrogate pair (D800 DC00): before U+FFFF in UTF-16 order.
        let d = Dictionary::new(["\u{ffff}", "\u{10000}", "b", "a"], ["10", "2", "a"]).unwrap();
        let routes: Vec<_> = d.iter().map(|(_, r)| r).collect();
        assert_eq!(routes, ["a", "b", "\u{10000}", "\u{ffff}", "10", "2", "a"]);
        // "a" keeps its first place but takes its last code; index keys first.
        assert_eq!(
            d.json(),
            "{\"2\":6,\"10\":5,\"a\":7,\"b\":2,\"\u{10000}\":3,\"\u{ffff}\":4}"
        );
        assert_eq!(d.code("a"), Some(7));
        assert_eq!(d.route(1), Some("a"));
    }

    #[test]
    fn array_index_keys() {
        for k in ["0", "7", "10", "4294967294"] {
            assert!(is_array_index(k), "{k}");
        }
        for k in [
            "",
            "01",
            "-1",
            "1.5",
            "4294967295",
            "99999999999",
            "a1",
            "١",
        ] {
            assert!(!is_array_index(k), "{k}");
        }
    }

    #[test]
    fn json_string_escapes_like_json_stringify() {
        assert_eq!(
            js_string("\u{0}\u{1f}\u{7f}\u{8}\t\n\u{c}\r\"\\/\u{2028}é"),
            "\"\\u0000\\u001f\u{7f}\\b\\t\\n\\f\\r\\\"\\\\/\u{2028}é\""
        );
    }

    #[test]
    fn too_many_routes() {
        let routes: Vec<String> = (0..=MAX_DICT_ROUTES).map(|i| format!("r{i}")).collect();
        assert_eq!(
            Dictionary::numbered(routes),
            Err(DictError::TooManyRoutes {
                count: 65_536,
                max: 65_535
            })
        );
    }
}
