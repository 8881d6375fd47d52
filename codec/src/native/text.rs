//! Validated text held in `Bytes`: [`Text`], [`Route`] and [`Topic`].

use crate::error::Field;
use crate::parsers::{self, Fault};
use bytes::Bytes;
use std::fmt;

/// The longest route or topic: 255 bytes (its length is one byte on the wire).
pub const MAX_ROUTE_LEN: usize = 255;

/// UTF-8 text in a `Bytes`: zero-copy when decoded, cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Text(Bytes);

impl Text {
    /// Text from a static string, without copying.
    pub const fn from_static(s: &'static str) -> Text {
        Text(Bytes::from_static(s.as_bytes()))
    }

    /// Wraps bytes already known to be UTF-8.
    pub(crate) fn from_utf8_unchecked(bytes: Bytes) -> Text {
        debug_assert!(std::str::from_utf8(&bytes).is_ok());
        Text(bytes)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor checks (or is given checked) UTF-8, and `Bytes` is immutable.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The underlying bytes (a slice of the decoded frame when decoded).
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl TryFrom<Bytes> for Text {
    type Error = std::str::Utf8Error;
    fn try_from(bytes: Bytes) -> Result<Self, Self::Error> {
        std::str::from_utf8(&bytes)?;
        Ok(Text(bytes))
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        Text(Bytes::from(s))
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        Text(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

/// Why a string cannot be a [`Route`] or [`Topic`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TextError {
    /// Empty.
    #[error("{0} is empty")]
    Empty(Field),
    /// Over 255 bytes.
    #[error("{field} is {len} bytes, over the limit of {max}")]
    TooLong {
        /// Route or topic.
        field: Field,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not UTF-8.
    #[error("{0} is not UTF-8")]
    Utf8(Field),
    /// Not `module/func`.
    #[error("route {0:?} is not of the form module/func")]
    NotRoute(String),
}

fn check_short(field: Field, bytes: &[u8]) -> Result<(), TextError> {
    if bytes.is_empty() {
        return Err(TextError::Empty(field));
    }
    if bytes.len() > MAX_ROUTE_LEN {
        return Err(TextError::TooLong {
            field,
            len: bytes.len(),
            max: MAX_ROUTE_LEN,
        });
    }
    Ok(())
}

/// A route `module/func`: 1 to 255 bytes of UTF-8 with exactly one `/` and text on both sides.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Route {
    text: Text,
    slash: u8,
}

impl Route {
    /// Checks and wraps a route.
    pub fn new(route: impl Into<Bytes>) -> Result<Route, TextError> {
        let bytes = route.into();
        check_short(Field::Route, &bytes)?;
        let text = parsers::utf8(&bytes).map_err(|_| TextError::Utf8(Field::Route))?;
        let slash = parsers::route_shape(text).map_err(|_| TextError::NotRoute(text.to_owned()))?;
        Ok(Route {
            slash: slash as u8,
            text: Text(bytes),
        })
    }

    /// A route from a static string, without copying. Panics if it is not a valid route (meant for
    /// constants).
    pub fn from_static(route: &'static str) -> Route {
        match Route::new(Bytes::from_static(route.as_bytes())) {
            Ok(r) => r,
            Err(e) => panic!("invalid static route: {e}"),
        }
    }

    pub(crate) fn from_parts_unchecked(text: Text, slash: usize) -> Route {
        Route {
            text,
            slash: slash as u8,
        }
    }

    /// The whole route.
    pub fn as_str(&self) -> &str {
        self.text.as_str()
    }

    /// The part before the `/`: the back-end module.
    pub fn module(&self) -> &str {
        &self.as_str()[..self.slash as usize]
    }

    /// The part after the `/`: the function.
    pub fn func(&self) -> &str {
        &self.as_str()[self.slash as usize + 1..]
    }

    /// The route's bytes.
    pub fn as_bytes(&self) -> &Bytes {
        self.text.as_bytes()
    }

    /// Position of the `/`.
    pub(crate) fn slash(&self) -> usize {
        self.slash as usize
    }
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<&str> for Route {
    type Error = TextError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Route::new(Bytes::copy_from_slice(s.as_bytes()))
    }
}

/// A push topic: 1 to 255 bytes of UTF-8.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Topic(Text);

impl Topic {
    /// Checks and wraps a topic.
    pub fn new(topic: impl Into<Bytes>) -> Result<Topic, TextError> {
        let bytes = topic.into();
        check_short(Field::Topic, &bytes)?;
        parsers::utf8(&bytes).map_err(|_: Fault| TextError::Utf8(Field::Topic))?;
        Ok(Topic(Text(bytes)))
    }

    /// A topic from a static string. Panics if it is empty or over 255 bytes.
    pub fn from_static(topic: &'static str) -> Topic {
        match Topic::new(Bytes::from_static(topic.as_bytes())) {
            Ok(t) => t,
            Err(e) => panic!("invalid static topic: {e}"),
        }
    }

    pub(crate) fn from_text_unchecked(text: Text) -> Topic {
        Topic(text)
    }

    /// The topic.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The topic's bytes.
    pub fn as_bytes(&self) -> &Bytes {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<&str> for Topic {
    type Error = TextError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Topic::new(Bytes::copy_from_slice(s.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_parts() {
        let r = Route::from_static("chat@2/send");
        assert_eq!((r.module(), r.func()), ("chat@2", "send"));
        assert!(matches!(
            Route::try_from("nochat"),
            Err(TextError::NotRoute(_))
        ));
        assert_eq!(Route::try_from(""), Err(TextError::Empty(Field::Route)));
        let long = format!("m/{}", "f".repeat(254));
        assert!(matches!(
            Route::try_from(long.as_str()),
            Err(TextError::TooLong { len: 256, .. })
        ));
        assert_eq!(
            Route::new(&b"a/\xff"[..]),
            Err(TextError::Utf8(Field::Route))
        );
    }

    #[test]
    fn topic_limits() {
        assert!(Topic::try_from("room/1/chat").is_ok());
        assert_eq!(Topic::try_from(""), Err(TextError::Empty(Field::Topic)));
    }
}
