//! [`PomeloCodec`]: the package stream, decoded and encoded.

use super::error::{ConfigError, EncodeError, PackageError};
use super::message::Message;
use super::package::{
    put_header, Package, PackageType, DEFAULT_MAX_BODY_LENGTH, HEADER_LEN, MAX_BODY_LENGTH_CAP,
};
use super::parsers::{self, Fault};
use crate::framing::Oversize;
use bytes::{Buf, BufMut, BytesMut};

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Waiting for a header. Nothing is remembered: a header is 4 bytes, so re-reading it is
    /// constant work.
    Head,
    /// The header is read: the package is `total` bytes from the buffer's start.
    Body { package: PackageType, total: usize },
    /// Skipping a package: `remaining` bytes still to drop.
    Discard { remaining: u64 },
    /// A fatal error happened; it is returned from now on.
    Failed(PackageError),
}

/// Decodes and encodes pomelo packages on a byte stream (TCP; over WebSocket, one package per
/// binary message, fed the same way).
///
/// - A body longer than the maximum (default 65,535 bytes) is refused from the length bytes alone,
///   as soon as those that have arrived prove it (for the default, the first length byte when it
///   is not zero): nothing of it is buffered. With [`Oversize::Skip`] the package is skipped
///   instead and decoding goes on.
/// - An unknown type byte is fatal from that byte alone (pinus closes the connection at once).
/// - A handshake ack or heartbeat announcing a body is skipped with a recoverable
///   [`PackageError::UnexpectedBody`].
///
/// ```
/// use gatekit_codec::pomelo::{Package, PomeloCodec};
/// use bytes::BytesMut;
///
/// let mut codec = PomeloCodec::default();
/// let mut wire = BytesMut::from(&b"\x02\x00\x00\x00\x04\x00\x00"[..]); // ack, half a data header
/// assert_eq!(codec.decode(&mut wire).unwrap(), Some(Package::HandshakeAck));
/// assert_eq!(codec.decode(&mut wire).unwrap(), None); // need more bytes
/// wire.extend_from_slice(b"\x03\x02\x03a");
/// wire.extend_from_slice(b"\x03\x00\x00\x00");
/// assert_eq!(&codec.decode(&mut wire).unwrap().unwrap().body()[..], b"\x02\x03a"); // data
/// assert_eq!(codec.decode(&mut wire).unwrap(), Some(Package::Heartbeat));
/// ```
#[derive(Debug, Clone)]
pub struct PomeloCodec {
    max: usize,
    oversize: Oversize,
    state: State,
    /// Stream offset of the buffer's first byte.
    pos: u64,
}

impl Default for PomeloCodec {
    /// 65,535-byte bodies, oversized packages fatal.
    fn default() -> Self {
        PomeloCodec::new(DEFAULT_MAX_BODY_LENGTH, Oversize::Fail).expect("default limits are valid")
    }
}

impl PomeloCodec {
    /// A codec accepting bodies of up to `max_body_length` bytes (1 to 16,777,215), failing or
    /// skipping larger packages as `oversize` says. The limit applies to encoding too.
    pub fn new(max_body_length: usize, oversize: Oversize) -> Result<Self, ConfigError> {
        if max_body_length == 0 || max_body_length > MAX_BODY_LENGTH_CAP {
            return Err(ConfigError::MaxBodyLength {
                value: max_body_length,
                cap: MAX_BODY_LENGTH_CAP,
            });
        }
        Ok(PomeloCodec {
            max: max_body_length,
            oversize,
            state: State::Head,
            pos: 0,
        })
    }

    /// The maximum body length.
    pub fn max_body_length(&self) -> usize {
        self.max
    }

    /// The oversize policy.
    pub fn oversize(&self) -> Oversize {
        self.oversize
    }

    /// Stream offset of the next byte to decode (bytes consumed or skipped so far).
    pub fn stream_offset(&self) -> u64 {
        self.pos
    }

    fn fail(&mut self, e: PackageError) -> PackageError {
        self.state = State::Failed(e.clone());
        e
    }

    /// Takes the next package off the front of `src`.
    ///
    /// - `Ok(Some(package))`: a package; its body is a zero-copy slice of `src`'s memory.
    /// - `Ok(None)`: no complete package yet; call again when more bytes have arrived.
    /// - `Err(e)`, `!e.is_fatal()`: a package is being skipped (oversized with
    ///   [`Oversize::Skip`], or an ack or heartbeat with a body); call again.
    /// - `Err(e)`, `e.is_fatal()`: the stream cannot be decoded; every later call returns `e`.
    ///
    /// Never buffers or reserves more than a header plus the maximum body length.
    #[inline]
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Package>, PackageError> {
        loop {
            match self.state {
                State::Head => {
                    let offset = self.pos;
                    let (package, len) = match parsers::package_header(src) {
                        Ok((_, header)) => header,
                        Err(nom::Err::Incomplete(_)) => {
                            // The type byte, if here, is known (else it failed below); the length
                            // bytes seen may already prove the body too large.
                            if let (Oversize::Fail, Some((len, length_bytes))) =
                                (self.oversize, parsers::proven_oversize(src, self.max))
                            {
                                let package = PackageType::from_u8(src[0]).expect("checked");
                                return Err(self.fail(PackageError::TooLarge {
                                    package,
                                    len,
                                    length_bytes,
                                    max: self.max,
                                    offset,
                                }));
                            }
                            return Ok(None);
                        }
                        Err(nom::Err::Error(f) | nom::Err::Failure(f)) => {
                            let value = match f {
                                Fault::UnknownPackageType(b) => b,
                                _ => src[0],
                            };
                            return Err(self.fail(PackageError::UnknownType { value, offset }));
                        }
                    };
                    if len as usize > self.max {
                        match self.oversize {
                            Oversize::Fail => {
                                let (len, length_bytes) = parsers::proven_oversize(src, self.max)
                                    .expect("a complete header over the maximum proves it");
                                return Err(self.fail(PackageError::TooLarge {
                                    package,
                                    len,
                                    length_bytes,
                                    max: self.max,
                                    offset,
                                }));
                            }
                            Oversize::Skip => {
                                self.state = State::Discard {
                                    remaining: HEADER_LEN as u64 + u64::from(len),
                                };
                                return Err(PackageError::TooLargeSkipped {
                                    package,
                                    len,
                                    max: self.max,
                                    offset,
                                });
                            }
                        }
                    }
                    if !package.has_body() && len > 0 {
                        self.state = State::Discard {
                            remaining: HEADER_LEN as u64 + u64::from(len),
                        };
                        return Err(PackageError::UnexpectedBody {
                            package,
                            len,
                            offset,
                        });
                    }
                    let total = HEADER_LEN + len as usize;
                    self.state = State::Body { package, total };
                    if src.len() < total {
                        // Bounded by the header plus the maximum body length.
                        src.reserve(total - src.len());
                        return Ok(None);
                    }
                }
                State::Body { package, total } => {
                    if src.len() < total {
                        return Ok(None);
                    }
                    self.state = State::Head;
                    self.pos += total as u64;
                    let mut body = src.split_to(total).freeze();
                    body.advance(HEADER_LEN);
                    let p = Package::from_parts(package, body).expect("control bodies are empty");
                    return Ok(Some(p));
                }
                State::Discard { remaining } => {
                    let n = remaining.min(src.len() as u64);
                    src.advance(n as usize);
                    self.pos += n;
                    if n == remaining {
                        self.state = State::Head;
                    } else {
                        self.state = State::Discard {
                            remaining: remaining - n,
                        };
                        return Ok(None);
                    }
                }
                State::Failed(ref e) => return Err(e.clone()),
            }
        }
    }

    /// Like [`PomeloCodec::decode`] when the stream has ended: a partial package left over is
    /// [`PackageError::UnexpectedEof`] (fatal, and returned again by later calls).
    pub fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Package>, PackageError> {
        if let Some(p) = self.decode(src)? {
            return Ok(Some(p));
        }
        let offset = self.pos;
        let e = match self.state {
            State::Head if src.is_empty() => return Ok(None),
            State::Head => PackageError::UnexpectedEof {
                buffered: src.len(),
                needed: HEADER_LEN,
                offset,
            },
            State::Body { total, .. } => PackageError::UnexpectedEof {
                buffered: src.len(),
                needed: total,
                offset,
            },
            State::Discard { remaining } => PackageError::UnexpectedEof {
                buffered: 0,
                needed: usize::try_from(remaining).unwrap_or(usize::MAX),
                offset,
            },
            State::Failed(ref e) => return Err(e.clone()),
        };
        Err(self.fail(e))
    }

    /// Appends `package` to `dst`, or refuses it (writing nothing) if its body is over the
    /// maximum body length.
    #[inline]
    pub fn encode(&self, package: &Package, dst: &mut BytesMut) -> Result<(), EncodeError> {
        encode_package(package, self.max, dst)
    }

    /// Appends a data package carrying `message`, written straight into `dst` (no intermediate
    /// buffer), or refuses it (writing nothing) if the message breaks a limit or is over the
    /// maximum body length.
    #[inline]
    pub fn encode_message(&self, message: &Message, dst: &mut BytesMut) -> Result<(), EncodeError> {
        message.check()?;
        let len = message.encoded_len();
        check_body(PackageType::Data, len, self.max)?;
        dst.reserve(HEADER_LEN + len);
        put_header(dst, PackageType::Data, len);
        message.encode_unchecked(dst);
        Ok(())
    }

    /// Whether a fatal error has ended the decoder.
    pub fn is_failed(&self) -> bool {
        matches!(self.state, State::Failed(_))
    }

    /// Whether the decoder sits between packages (nothing partly read or being skipped).
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Head)
    }
}

fn check_body(package: PackageType, len: usize, max: usize) -> Result<(), EncodeError> {
    if len > max.min(MAX_BODY_LENGTH_CAP) {
        return Err(EncodeError::BodyTooLarge { package, len, max });
    }
    Ok(())
}

/// Appends `package` (header and body) to `dst`, or refuses it, writing nothing, if its body is
/// over `max_body_length` (itself capped at 16,777,215, what the 3-byte length can carry).
pub fn encode_package(
    package: &Package,
    max_body_length: usize,
    dst: &mut BytesMut,
) -> Result<(), EncodeError> {
    let body = package.body();
    check_body(package.package_type(), body.len(), max_body_length)?;
    dst.reserve(HEADER_LEN + body.len());
    put_header(dst, package.package_type(), body.len());
    dst.put_slice(body);
    Ok(())
}

#[cfg(feature = "tokio")]
mod tokio_impl {
    //! tokio-util `Decoder` / `Encoder` for [`PomeloCodec`] (feature `tokio`): recoverable errors
    //! come out as items, `Err` inside `Ok(Some(..))`, since `Framed` stops after any error.
    use super::*;
    use std::io;

    /// An error that ends a framed pomelo stream: I/O, a fatal decode error, or an encoder refusal.
    #[derive(Debug, thiserror::Error)]
    pub enum PomeloCodecError {
        /// The transport failed.
        #[error("i/o error: {0}")]
        Io(#[from] io::Error),
        /// The stream cannot be decoded any more.
        #[error(transparent)]
        Decode(PackageError),
        /// A package or message was refused by the encoder.
        #[error(transparent)]
        Encode(#[from] EncodeError),
    }

    /// A decoded item: a package, or a recoverable error after which decoding goes on.
    pub type Decoded = Result<Package, PackageError>;

    fn split(
        r: Result<Option<Package>, PackageError>,
    ) -> Result<Option<Decoded>, PomeloCodecError> {
        match r {
            Ok(Some(p)) => Ok(Some(Ok(p))),
            Ok(None) => Ok(None),
            Err(e) if e.is_fatal() => Err(PomeloCodecError::Decode(e)),
            Err(e) => Ok(Some(Err(e))),
        }
    }

    impl tokio_util::codec::Decoder for PomeloCodec {
        type Item = Decoded;
        type Error = PomeloCodecError;

        fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Decoded>, PomeloCodecError> {
            split(PomeloCodec::decode(self, src))
        }

        fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Decoded>, PomeloCodecError> {
            split(PomeloCodec::decode_eof(self, src))
        }
    }

    impl tokio_util::codec::Encoder<&Package> for PomeloCodec {
        type Error = PomeloCodecError;

        fn encode(&mut self, item: &Package, dst: &mut BytesMut) -> Result<(), PomeloCodecError> {
            Ok(PomeloCodec::encode(self, item, dst)?)
        }
    }

    impl tokio_util::codec::Encoder<Package> for PomeloCodec {
        type Error = PomeloCodecError;

        fn encode(&mut self, item: Package, dst: &mut BytesMut) -> Result<(), PomeloCodecError> {
            Ok(PomeloCodec::encode(self, &item, dst)?)
        }
    }

    impl tokio_util::codec::Encoder<&Message> for PomeloCodec {
        type Error = PomeloCodecError;

        fn encode(&mut self, item: &Message, dst: &mut BytesMut) -> Result<(), PomeloCodecError> {
            Ok(PomeloCodec::encode_message(self, item, dst)?)
        }
    }
}

#[cfg(feature = "tokio")]
pub use tokio_impl::{Decoded, PomeloCodecError};

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn buf(b: &[u8]) -> BytesMut {
        BytesMut::from(b)
    }

    #[test]
    fn packages_and_partial_input() {
        let mut c = PomeloCodec::default();
        let mut src = buf(b"\x01\x00\x00\x02{}\x02\x00");
        assert_eq!(
            c.decode(&mut src),
            Ok(Some(Package::Handshake(Bytes::from_static(b"{}"))))
        );
        assert_eq!(c.decode(&mut src), Ok(None));
        src.extend_from_slice(b"\x00\x00\x05\x00\x00\x00");
        assert_eq!(c.decode(&mut src), Ok(Some(Package::HandshakeAck)));
        assert_eq!(c.decode(&mut src), Ok(Some(Package::Kick(Bytes::new()))));
        assert_eq!(c.stream_offset(), 14);
        assert_eq!(c.decode_eof(&mut src), Ok(None));
    }

    #[test]
    fn unknown_type_is_fatal_from_the_first_byte() {
        let mut c = PomeloCodec::default();
        let mut src = buf(b"\x03\x00\x00\x00\x06");
        assert_eq!(c.decode(&mut src), Ok(Some(Package::Heartbeat)));
        let e = c.decode(&mut src).unwrap_err();
        assert_eq!(
            e,
            PackageError::UnknownType {
                value: 6,
                offset: 4
            }
        );
        assert!(e.is_fatal() && c.is_failed());
        assert_eq!(c.decode(&mut buf(b"\x03\x00\x00\x00")), Err(e));
    }

    #[test]
    fn oversize_refused_from_the_first_length_byte() {
        let mut c = PomeloCodec::default();
        let mut src = buf(b"\x04\x01");
        let e = c.decode(&mut src).unwrap_err();
        assert_eq!(
            e,
            PackageError::TooLarge {
                package: PackageType::Data,
                len: 65_536,
                length_bytes: 1,
                max: 65_535,
                offset: 0
            }
        );
        assert_eq!(src.capacity(), 2, "nothing reserved");
        // The same error, whole: the fewest bytes that prove it.
        let mut whole = buf(b"\x04\x01\x00\x00");
        assert_eq!(PomeloCodec::default().decode(&mut whole), Err(e));
        // Exactly the maximum is fine.
        let mut c = PomeloCodec::new(3, Oversize::Fail).unwrap();
        assert_eq!(
            c.decode(&mut buf(b"\x04\x00\x00\x03abc")),
            Ok(Some(Package::Data(Bytes::from_static(b"abc"))))
        );
        assert!(matches!(
            c.decode(&mut buf(b"\x04\x00\x00\x04")),
            Err(PackageError::TooLarge {
                len: 4,
                length_bytes: 3,
                ..
            })
        ));
    }

    #[test]
    fn oversize_skip_and_control_bodies_stay_in_sync() {
        let mut c = PomeloCodec::new(3, Oversize::Skip).unwrap();
        let mut src = buf(b"\x04\x00\x00\x05ab");
        let e = c.decode(&mut src).unwrap_err();
        assert!(!e.is_fatal(), "{e}");
        assert_eq!(c.decode(&mut src), Ok(None));
        assert!(src.is_empty(), "skipped bytes are dropped as they arrive");
        src.extend_from_slice(b"cde\x03\x00\x00\x02xy\x03\x00\x00\x00");
        assert_eq!(
            c.decode(&mut src),
            Err(PackageError::UnexpectedBody {
                package: PackageType::Heartbeat,
                len: 2,
                offset: 9
            })
        );
        assert_eq!(c.decode(&mut src), Ok(Some(Package::Heartbeat)));
        assert_eq!(c.stream_offset(), 19);
    }

    #[test]
    fn eof_inside_a_package_is_fatal_and_sticky() {
        let mut c = PomeloCodec::default();
        let mut src = buf(b"\x04\x00");
        let e = c.decode_eof(&mut src).unwrap_err();
        assert_eq!(
            e,
            PackageError::UnexpectedEof {
                buffered: 2,
                needed: 4,
                offset: 0
            }
        );
        assert!(c.is_failed());
        assert_eq!(c.decode(&mut src), Err(e));
    }

    #[test]
    fn encode_checks_the_maximum() {
        let c = PomeloCodec::new(4, Oversize::Fail).unwrap();
        let mut out = BytesMut::new();
        assert_eq!(
            c.encode(&Package::Kick(Bytes::from_static(b"12345")), &mut out),
            Err(EncodeError::BodyTooLarge {
                package: PackageType::Kick,
                len: 5,
                max: 4
            })
        );
        let m = Message::response(1.try_into().unwrap(), &b"1234"[..]);
        assert!(c.encode_message(&m, &mut out).is_err());
        assert!(out.is_empty());
        c.encode(&Package::Heartbeat, &mut out).unwrap();
        assert_eq!(&out[..], b"\x03\x00\x00\x00");
        assert!(PomeloCodec::new(0, Oversize::Fail).is_err());
        assert!(PomeloCodec::new(MAX_BODY_LENGTH_CAP + 1, Oversize::Fail).is_err());
    }
}
