//! MQTT text held in `Bytes`: [`MqttString`], [`TopicName`] and [`TopicFilter`].
//!
//! Each type checks its rules once, when it is built (or decoded), and is then a zero-copy,
//! cheap-to-clone view of the bytes: decoded text is a slice of the packet's buffer.

use super::parsers::{self, Fault};
use bytes::Bytes;
use std::fmt;

/// The longest MQTT string: 65,535 bytes (its length is a big-endian u16 on the wire).
pub const MAX_STRING_LEN: usize = u16::MAX as usize;

/// Why bytes cannot be an [`MqttString`], [`TopicName`] or [`TopicFilter`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MqttTextError {
    /// Over 65,535 bytes.
    #[error("text is {len} bytes, over the limit of {max}")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit (65,535).
        max: usize,
    },
    /// Not UTF-8.
    #[error("text is not UTF-8: invalid byte at {at}")]
    Utf8 {
        /// Offset of the first invalid byte.
        at: usize,
    },
    /// Contains U+0000, which MQTT strings must not ([MQTT-1.5.3-2]).
    #[error("text contains U+0000 at {at}")]
    Nul {
        /// Offset of the NUL byte.
        at: usize,
    },
    /// A topic name or filter is empty ([MQTT-4.7.3-1]).
    #[error("topic is empty")]
    Empty,
    /// A topic name contains a wildcard `+` or `#` ([MQTT-3.3.2-2]).
    #[error("topic name has a wildcard at {at}")]
    Wildcard {
        /// Offset of the wildcard.
        at: usize,
    },
    /// A topic filter has a wildcard that does not fill its level, or a `#` before the last level
    /// ([MQTT-4.7.1-2], [MQTT-4.7.1-3]).
    #[error("topic filter has a misplaced wildcard at {at}")]
    BadFilter {
        /// Offset of the misplaced wildcard.
        at: usize,
    },
}

impl MqttTextError {
    pub(crate) fn from_fault(f: Fault) -> MqttTextError {
        match f {
            Fault::TooLong { len, max } => MqttTextError::TooLong { len, max },
            Fault::Utf8 { at } => MqttTextError::Utf8 { at },
            Fault::Nul { at } => MqttTextError::Nul { at },
            Fault::Empty => MqttTextError::Empty,
            Fault::Wildcard { at } => MqttTextError::Wildcard { at },
            Fault::BadFilter { at } => MqttTextError::BadFilter { at },
            other => unreachable!("text checks give no {other:?}"),
        }
    }
}

/// An MQTT "UTF-8 encoded string" (3.1.1 §1.5.3): at most 65,535 bytes of UTF-8 without U+0000,
/// in a `Bytes`. May be empty.
#[derive(Clone, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct MqttString(Bytes);

impl MqttString {
    /// Checks and wraps bytes.
    pub fn new(bytes: impl Into<Bytes>) -> Result<MqttString, MqttTextError> {
        let bytes = bytes.into();
        check_string(&bytes)?;
        Ok(MqttString(bytes))
    }

    /// A string from a static `&str`, without copying. Panics if it breaks the rules (meant for
    /// constants).
    pub fn from_static(s: &'static str) -> MqttString {
        match MqttString::new(Bytes::from_static(s.as_bytes())) {
            Ok(s) => s,
            Err(e) => panic!("invalid static MQTT string: {e}"),
        }
    }

    /// Wraps bytes already checked by the decoder.
    #[inline]
    pub(crate) fn from_bytes_unchecked(bytes: Bytes) -> MqttString {
        debug_assert!(check_string(&bytes).is_ok());
        MqttString(bytes)
    }

    /// The text.
    #[inline]
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor checks (or is given checked) UTF-8, and `Bytes` is immutable.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The underlying bytes (a slice of the decoded packet when decoded).
    #[inline]
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn check_string(bytes: &[u8]) -> Result<(), MqttTextError> {
    if bytes.len() > MAX_STRING_LEN {
        return Err(MqttTextError::TooLong {
            len: bytes.len(),
            max: MAX_STRING_LEN,
        });
    }
    parsers::mqtt_utf8(bytes).map_err(MqttTextError::from_fault)?;
    Ok(())
}

/// A topic name, as in PUBLISH and a will (3.1.1 §4.7): a non-empty [`MqttString`] without the
/// wildcards `+` and `#`. `/` separates levels; empty levels are allowed.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(MqttString);

impl TopicName {
    /// Checks and wraps a topic name.
    pub fn new(bytes: impl Into<Bytes>) -> Result<TopicName, MqttTextError> {
        let bytes = bytes.into();
        check_string(&bytes)?;
        parsers::topic_name_shape(&bytes).map_err(MqttTextError::from_fault)?;
        Ok(TopicName(MqttString(bytes)))
    }

    /// A topic name from a static `&str`. Panics if it is not valid (meant for constants).
    pub fn from_static(s: &'static str) -> TopicName {
        match TopicName::new(Bytes::from_static(s.as_bytes())) {
            Ok(t) => t,
            Err(e) => panic!("invalid static topic name: {e}"),
        }
    }

    #[inline]
    pub(crate) fn from_bytes_unchecked(bytes: Bytes) -> TopicName {
        debug_assert!(parsers::topic_name_shape(&bytes).is_ok());
        TopicName(MqttString::from_bytes_unchecked(bytes))
    }

    /// The topic.
    #[inline]
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The topic's bytes.
    #[inline]
    pub fn as_bytes(&self) -> &Bytes {
        self.0.as_bytes()
    }

    /// Length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a topic name has at least one byte. (For symmetry with `len`.)
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The topic's levels, split at `/` (`"a//b"` has three: `a`, ``, `b`).
    pub fn levels(&self) -> std::str::Split<'_, char> {
        self.as_str().split('/')
    }
}

/// A topic filter, as in SUBSCRIBE and UNSUBSCRIBE (3.1.1 §4.7.1): a non-empty [`MqttString`]
/// where `+` fills a whole level and `#` fills the whole last level.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicFilter(MqttString);

impl TopicFilter {
    /// Checks and wraps a topic filter.
    pub fn new(bytes: impl Into<Bytes>) -> Result<TopicFilter, MqttTextError> {
        let bytes = bytes.into();
        check_string(&bytes)?;
        parsers::topic_filter_shape(&bytes).map_err(MqttTextError::from_fault)?;
        Ok(TopicFilter(MqttString(bytes)))
    }

    /// A topic filter from a static `&str`. Panics if it is not valid (meant for constants).
    pub fn from_static(s: &'static str) -> TopicFilter {
        match TopicFilter::new(Bytes::from_static(s.as_bytes())) {
            Ok(t) => t,
            Err(e) => panic!("invalid static topic filter: {e}"),
        }
    }

    #[inline]
    pub(crate) fn from_bytes_unchecked(bytes: Bytes) -> TopicFilter {
        debug_assert!(parsers::topic_filter_shape(&bytes).is_ok());
        TopicFilter(MqttString::from_bytes_unchecked(bytes))
    }

    /// The filter.
    #[inline]
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The filter's bytes.
    #[inline]
    pub fn as_bytes(&self) -> &Bytes {
        self.0.as_bytes()
    }

    /// Length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a topic filter has at least one byte. (For symmetry with `len`.)
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the filter has a `+` or `#`.
    pub fn has_wildcards(&self) -> bool {
        self.0.as_bytes().iter().any(|&b| b == b'+' || b == b'#')
    }

    /// Whether `topic` matches this filter (3.1.1 §4.7): `+` matches one level, `#` the parent
    /// level and any below it; a filter starting with a wildcard does not match a topic starting
    /// with `$` ([MQTT-4.7.2-1]).
    pub fn matches(&self, topic: &TopicName) -> bool {
        let filter = self.as_str();
        let topic = topic.as_str();
        if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
            return false;
        }
        let mut f = filter.split('/');
        let mut t = topic.split('/');
        loop {
            match (f.next(), t.next()) {
                (Some("#"), _) => return true,
                (Some("+"), Some(_)) => {}
                (Some(a), Some(b)) if a == b => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }
}

macro_rules! text_impls {
    ($($t:ty),*) => {$(
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self.as_str(), f)
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq<str> for $t {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl TryFrom<&str> for $t {
            type Error = MqttTextError;
            fn try_from(s: &str) -> Result<Self, Self::Error> {
                <$t>::new(Bytes::copy_from_slice(s.as_bytes()))
            }
        }

        impl TryFrom<String> for $t {
            type Error = MqttTextError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                <$t>::new(Bytes::from(s))
            }
        }
    )*};
}

text_impls!(MqttString, TopicName, TopicFilter);

impl AsRef<str> for MqttString {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_refuse_nul_and_bad_utf8() {
        assert_eq!(MqttString::try_from("").unwrap(), "");
        assert_eq!(
            MqttString::try_from("a\0b"),
            Err(MqttTextError::Nul { at: 1 })
        );
        assert_eq!(
            MqttString::new(&b"ab\xff"[..]),
            Err(MqttTextError::Utf8 { at: 2 })
        );
        assert_eq!(
            MqttString::new(vec![b'x'; 65_536]),
            Err(MqttTextError::TooLong {
                len: 65_536,
                max: 65_535
            })
        );
        assert!(MqttString::new(vec![b'x'; 65_535]).is_ok());
        assert_eq!(MqttString::try_from("é").unwrap().len(), 2);
    }

    #[test]
    fn topic_names_have_no_wildcards() {
        let t = TopicName::from_static("echo/HD_say/1");
        assert_eq!(t.levels().collect::<Vec<_>>(), ["echo", "HD_say", "1"]);
        assert_eq!(TopicName::try_from(""), Err(MqttTextError::Empty));
        assert_eq!(
            TopicName::try_from("a/+"),
            Err(MqttTextError::Wildcard { at: 2 })
        );
        assert_eq!(
            TopicName::try_from("#"),
            Err(MqttTextError::Wildcard { at: 0 })
        );
        assert!(TopicName::try_from("/").is_ok());
        assert!(TopicName::try_from("a//b ").is_ok());
    }

    #[test]
    fn topic_filters_place_wildcards_validly() {
        for ok in [
            "#",
            "+",
            "a/#",
            "+/+",
            "/+",
            "a/+/b",
            "sport/tennis/#",
            "+/",
            "a//b",
        ] {
            assert!(TopicFilter::try_from(ok).is_ok(), "{ok}");
        }
        for (bad, at) in [
            ("a#", 1),
            ("a/#/b", 2),
            ("a+", 1),
            ("+a", 0),
            ("a/b+/c", 3),
            ("##", 0),
        ] {
            assert_eq!(
                TopicFilter::try_from(bad),
                Err(MqttTextError::BadFilter { at }),
                "{bad}"
            );
        }
        assert_eq!(TopicFilter::try_from(""), Err(MqttTextError::Empty));
        assert!(TopicFilter::from_static("a/+").has_wildcards());
        assert!(!TopicFilter::from_static("a/b").has_wildcards());
    }

    #[test]
    fn filters_match_topics() {
        let m = |f: &'static str, t: &'static str| {
            TopicFilter::from_static(f).matches(&TopicName::from_static(t))
        };
        assert!(m("sport/tennis/#", "sport/tennis"));
        assert!(m("sport/tennis/#", "sport/tennis/player1/ranking"));
        assert!(m("#", "a/b"));
        assert!(m("+/+", "/finance"));
        assert!(m("+", "a"));
        assert!(!m("+", "a/b"));
        assert!(!m("+", "/finance"));
        assert!(m("echo/+/1", "echo/HD_say/1"));
        assert!(!m("echo/+/1", "echo/HD_say/2"));
        assert!(!m("a/b", "a/b/c"));
        assert!(!m("#", "$SYS/x"));
        assert!(!m("+/x", "$SYS/x"));
        assert!(m("$SYS/#", "$SYS/x"));
    }
}
