//! [`MqttCodec`]: streaming MQTT decoding (fixed header, remaining length, packet) and encoding,
//! with [`MqttLimits`].

use super::decode::decode_framed;
use super::encode::encode_packet;
use super::error::{MqttConfigError, MqttDecodeError, MqttEncodeError, MqttFrameError};
use super::packet::{Packet, PacketType, Role};
use super::parsers::{self, Fault, MAX_REMAINING_LENGTH};
use super::text::MAX_STRING_LEN;
use bytes::BytesMut;

/// The limits a codec enforces, each named in the errors that break it. Defaults mirror the
/// native codec and mqant: 65,535-byte packets (mqant's `MaxPackSize`), 255-byte topics (the
/// native route/topic limit), 256-byte client ids and user names, 4,096-byte passwords (the
/// native token limit), 32 filters per SUBSCRIBE / UNSUBSCRIBE / SUBACK.
///
/// ```
/// use gatekit_codec::mqtt::{MqttCodec, MqttLimits, Role};
///
/// let limits = MqttLimits::default().with_max_packet_size(1 << 20).with_max_topic_len(1024);
/// let codec = MqttCodec::new(Role::Server, limits).unwrap();
/// assert_eq!(codec.limits().max_packet_size(), 1 << 20);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MqttLimits {
    pub(crate) max_packet_size: usize,
    pub(crate) max_topic_len: usize,
    pub(crate) max_client_id_len: usize,
    pub(crate) max_username_len: usize,
    pub(crate) max_password_len: usize,
    pub(crate) max_filters: usize,
}

/// The default maximum packet size (remaining length): 65,535 bytes, like mqant's `MaxPackSize`.
pub const DEFAULT_MAX_PACKET_SIZE: usize = 65_535;

impl Default for MqttLimits {
    fn default() -> Self {
        MqttLimits::DEFAULT
    }
}

impl MqttLimits {
    /// The defaults (see the type's documentation).
    pub const DEFAULT: MqttLimits = MqttLimits {
        max_packet_size: DEFAULT_MAX_PACKET_SIZE,
        max_topic_len: 255,
        max_client_id_len: 256,
        max_username_len: 256,
        max_password_len: 4096,
        max_filters: 32,
    };

    /// The most bytes after the fixed header (the remaining length): 1 to 268,435,455. A
    /// longer packet is refused from its remaining length, before its body is buffered.
    pub const fn max_packet_size(&self) -> usize {
        self.max_packet_size
    }

    /// The longest topic name or filter (PUBLISH, will, SUBSCRIBE, UNSUBSCRIBE): 1 to 65,535.
    pub const fn max_topic_len(&self) -> usize {
        self.max_topic_len
    }

    /// The longest client id: 1 to 65,535.
    pub const fn max_client_id_len(&self) -> usize {
        self.max_client_id_len
    }

    /// The longest user name: 1 to 65,535.
    pub const fn max_username_len(&self) -> usize {
        self.max_username_len
    }

    /// The longest password: 1 to 65,535.
    pub const fn max_password_len(&self) -> usize {
        self.max_password_len
    }

    /// The most topic filters in a SUBSCRIBE or UNSUBSCRIBE, and return codes in a SUBACK: 1 to
    /// 65,535.
    pub const fn max_filters(&self) -> usize {
        self.max_filters
    }

    /// Sets [`MqttLimits::max_packet_size`].
    pub const fn with_max_packet_size(mut self, v: usize) -> Self {
        self.max_packet_size = v;
        self
    }

    /// Sets [`MqttLimits::max_topic_len`].
    pub const fn with_max_topic_len(mut self, v: usize) -> Self {
        self.max_topic_len = v;
        self
    }

    /// Sets [`MqttLimits::max_client_id_len`].
    pub const fn with_max_client_id_len(mut self, v: usize) -> Self {
        self.max_client_id_len = v;
        self
    }

    /// Sets [`MqttLimits::max_username_len`].
    pub const fn with_max_username_len(mut self, v: usize) -> Self {
        self.max_username_len = v;
        self
    }

    /// Sets [`MqttLimits::max_password_len`].
    pub const fn with_max_password_len(mut self, v: usize) -> Self {
        self.max_password_len = v;
        self
    }

    /// Sets [`MqttLimits::max_filters`].
    pub const fn with_max_filters(mut self, v: usize) -> Self {
        self.max_filters = v;
        self
    }

    /// Checks every limit is within its range.
    pub fn validate(&self) -> Result<(), MqttConfigError> {
        let check = |limit: &'static str, value: usize, max: usize| {
            if (1..=max).contains(&value) {
                Ok(())
            } else {
                Err(MqttConfigError::OutOfRange {
                    limit,
                    value,
                    min: 1,
                    max,
                })
            }
        };
        check(
            "max_packet_size",
            self.max_packet_size,
            MAX_REMAINING_LENGTH as usize,
        )?;
        check("max_topic_len", self.max_topic_len, MAX_STRING_LEN)?;
        check("max_client_id_len", self.max_client_id_len, MAX_STRING_LEN)?;
        check("max_username_len", self.max_username_len, MAX_STRING_LEN)?;
        check("max_password_len", self.max_password_len, MAX_STRING_LEN)?;
        check("max_filters", self.max_filters, MAX_STRING_LEN)?;
        Ok(())
    }
}

#[derive(Debug, Clone)]
enum State {
    /// Waiting for a fixed header. Nothing is remembered: it is at most 5 bytes, so re-parsing it
    /// is constant work.
    Head,
    /// The fixed header is parsed: the packet is `total` bytes from the buffer's start.
    Body { header_len: usize, total: usize },
    /// A fatal error ended the stream.
    Failed(MqttFrameError),
}

/// Decodes and encodes MQTT 3.1.1 packets on a byte stream, as one end of a connection.
///
/// ```
/// use gatekit_codec::mqtt::{MqttCodec, Packet, Publish, TopicName};
/// use bytes::BytesMut;
///
/// let gate = MqttCodec::server();
/// let mut client = MqttCodec::client();
/// let mut wire = BytesMut::new();
/// let push = Publish::qos0(TopicName::from_static("echo/HD_say/1"), &b"{\"hi\":1}"[..]);
/// gate.encode(&push.into(), &mut wire).unwrap();
///
/// let mut half = wire.split_to(5);
/// assert_eq!(client.decode(&mut half).unwrap(), None); // incomplete: need more bytes
/// half.unsplit(wire);
/// match client.decode(&mut half).unwrap() {
///     Some(Packet::Publish(p)) => assert_eq!((p.topic.as_str(), &p.payload[..]), ("echo/HD_say/1", &b"{\"hi\":1}"[..])),
///     other => panic!("{other:?}"),
/// }
/// ```
#[derive(Debug, Clone)]
pub struct MqttCodec {
    role: Role,
    limits: MqttLimits,
    state: State,
}

impl MqttCodec {
    /// A codec for this end of the connection with these limits.
    pub fn new(role: Role, limits: MqttLimits) -> Result<MqttCodec, MqttConfigError> {
        limits.validate()?;
        Ok(MqttCodec {
            role,
            limits,
            state: State::Head,
        })
    }

    /// The gate's end with the default limits: decodes what clients send.
    pub fn server() -> MqttCodec {
        MqttCodec::new(Role::Server, MqttLimits::DEFAULT).expect("default limits are valid")
    }

    /// A client's end with the default limits: decodes what servers send.
    pub fn client() -> MqttCodec {
        MqttCodec::new(Role::Client, MqttLimits::DEFAULT).expect("default limits are valid")
    }

    /// Which end this codec is.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The limits.
    pub fn limits(&self) -> &MqttLimits {
        &self.limits
    }

    /// Takes the next packet off the front of `src`.
    ///
    /// - `Ok(Some(packet))`: a packet; its topics, payloads and strings are zero-copy slices of
    ///   `src`'s memory.
    /// - `Ok(None)`: no complete packet yet; call again when more bytes have arrived. The decoder
    ///   reserves room for the packet in `src`, never more than its fixed header plus the maximum
    ///   packet size.
    /// - `Err(e)`, `!e.is_fatal()`: a packet was framed and consumed but is invalid or refused
    ///   ([`MqttPacketError`](super::MqttPacketError)); the decoder can go on, but MQTT wants the
    ///   connection closed (after [`MqttDecodeError::connack_refusal`], if any).
    /// - `Err(e)`, `e.is_fatal()`: the stream cannot be framed; every later call returns `e`.
    #[inline]
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Packet>, MqttDecodeError> {
        let (header_len, total) = match self.state {
            State::Head => {
                let max = self.limits.max_packet_size;
                match parsers::fixed_header(max)(src) {
                    Ok((_, h)) => {
                        let total = h.header_len + h.remaining_len as usize;
                        if src.len() < total {
                            // Bounded by the fixed header plus the maximum packet size.
                            src.reserve(total - src.len());
                            self.state = State::Body {
                                header_len: h.header_len,
                                total,
                            };
                            return Ok(None);
                        }
                        (h.header_len, total)
                    }
                    Err(nom::Err::Incomplete(_)) => return Ok(None),
                    Err(nom::Err::Error(f) | nom::Err::Failure(f)) => {
                        return Err(self.fail(frame_error(src[0], f, max)).into())
                    }
                }
            }
            State::Body { header_len, total } => {
                if src.len() < total {
                    return Ok(None);
                }
                self.state = State::Head;
                (header_len, total)
            }
            State::Failed(ref e) => return Err(e.clone().into()),
        };
        let packet = src.split_to(total).freeze();
        Ok(Some(decode_framed(
            packet,
            header_len,
            self.role,
            &self.limits,
        )?))
    }

    /// Like [`MqttCodec::decode`] when the stream has ended: a partial packet left over is
    /// [`MqttFrameError::UnexpectedEof`].
    pub fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Packet>, MqttDecodeError> {
        if let Some(p) = self.decode(src)? {
            return Ok(Some(p));
        }
        let e = match self.state {
            State::Head if src.is_empty() => return Ok(None),
            State::Head => MqttFrameError::UnexpectedEof {
                buffered: src.len(),
                needed: src.len() + 1,
            },
            State::Body { total, .. } => MqttFrameError::UnexpectedEof {
                buffered: src.len(),
                needed: total,
            },
            State::Failed(ref e) => return Err(e.clone().into()),
        };
        Err(self.fail(e).into())
    }

    /// Appends `packet` to `dst`, or refuses it (writing nothing) if this end does not send its
    /// type or it breaks a limit (the same limits the decoder enforces, so whatever this codec
    /// encodes, a peer codec with the same limits decodes).
    #[inline]
    pub fn encode(&self, packet: &Packet, dst: &mut BytesMut) -> Result<(), MqttEncodeError> {
        encode_packet(packet, self.role, &self.limits, dst)
    }

    /// Whether a fatal error has ended the decoder.
    pub fn is_failed(&self) -> bool {
        matches!(self.state, State::Failed(_))
    }

    /// Whether the decoder sits between packets (no fixed header parsed and waiting for its body).
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Head)
    }

    #[cold]
    fn fail(&mut self, e: MqttFrameError) -> MqttFrameError {
        self.state = State::Failed(e.clone());
        e
    }
}

/// The frame error for a fault of the fixed-header parser.
#[cold]
fn frame_error(byte1: u8, fault: Fault, max: usize) -> MqttFrameError {
    let packet = PacketType::from_byte1(byte1);
    match fault {
        Fault::LengthOverMax { len, exact, bytes } => MqttFrameError::TooLarge {
            packet,
            len,
            exact,
            max,
            length_bytes: bytes,
        },
        Fault::LengthNotMinimal { bytes, value } => MqttFrameError::LengthNotMinimal {
            packet,
            bytes,
            value,
        },
        _ => MqttFrameError::LengthTooLong { packet },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_validated() {
        assert!(MqttLimits::default().validate().is_ok());
        assert_eq!(
            MqttCodec::new(Role::Server, MqttLimits::default().with_max_packet_size(0))
                .unwrap_err(),
            MqttConfigError::OutOfRange {
                limit: "max_packet_size",
                value: 0,
                min: 1,
                max: 268_435_455
            }
        );
        assert!(MqttCodec::new(
            Role::Server,
            MqttLimits::default().with_max_topic_len(65_536)
        )
        .is_err());
        assert!(MqttCodec::new(Role::Client, MqttLimits::default().with_max_filters(0)).is_err());
    }

    #[test]
    fn partial_header_then_body() {
        let mut c = MqttCodec::server();
        let mut src = BytesMut::from(&b"\x30"[..]);
        assert_eq!(c.decode(&mut src), Ok(None));
        assert!(c.is_idle());
        src.extend_from_slice(b"\x05\x00\x01t");
        assert_eq!(c.decode(&mut src), Ok(None));
        assert!(!c.is_idle());
        assert!(src.capacity() >= 7);
        src.extend_from_slice(b"hi\xc0");
        assert!(matches!(c.decode(&mut src), Ok(Some(Packet::Publish(_)))));
        assert_eq!(&src[..], b"\xc0");
        assert_eq!(
            c.decode_eof(&mut src),
            Err(MqttFrameError::UnexpectedEof {
                buffered: 1,
                needed: 2
            }
            .into())
        );
        assert!(c.is_failed());
    }

    #[test]
    fn oversized_is_refused_from_the_prefix_and_sticks() {
        let mut c = MqttCodec::server();
        let mut src = BytesMut::from(&b"\x30\xff\xff\xff"[..]);
        let e = c.decode(&mut src).unwrap_err();
        assert_eq!(
            e,
            MqttFrameError::TooLarge {
                packet: PacketType::Publish,
                len: 4_194_303,
                exact: false,
                max: 65_535,
                length_bytes: 3
            }
            .into()
        );
        assert!(e.is_fatal());
        assert!(src.capacity() < 64, "nothing reserved for the body");
        src.extend_from_slice(b"\x00");
        assert_eq!(c.decode(&mut src), Err(e));
    }

    #[test]
    fn packet_errors_consume_the_packet() {
        let mut c = MqttCodec::server();
        let mut src = BytesMut::from(&b"\x20\x02\x00\x00\xc0\x00"[..]);
        let e = c.decode(&mut src).unwrap_err();
        assert!(!e.is_fatal());
        assert_eq!(e.packet_type(), Some(PacketType::ConnAck));
        assert_eq!(c.decode(&mut src), Ok(Some(Packet::PingReq)));
        assert_eq!(c.decode_eof(&mut src), Ok(None));
    }
}
