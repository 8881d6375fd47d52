//! Typed MQTT errors: each names the packet type, the field, the value, the limit and the offset
//! (counted from the packet's first byte, the fixed header's type-and-flags byte).
//!
//! - [`MqttFrameError`]: the stream cannot be framed any more (a remaining length that is malformed,
//!   or over the maximum packet size, or a stream that ends inside a packet). Always fatal.
//! - [`MqttPacketError`]: a packet was framed and consumed but is invalid, or is valid MQTT that
//!   gatekit refuses (QoS 2, MQTT 5, PUBREC, ...). The decoder is still in sync with the stream.
//! - [`MqttDecodeError`]: either, as returned by [`MqttCodec`](super::MqttCodec).
//!
//! MQTT 3.1.1 (§4.8) wants the connection closed after any of them. A packet error still lets the
//! gate answer first: [`MqttDecodeError::connack_refusal`] gives the CONNACK a refused CONNECT
//! deserves (0x01 for a protocol level gatekit does not speak, an MQTT 5 CONNACK 0x84 for a 5.0
//! client, 0x02 for a client id refused), and the gate can log exactly what was wrong.

use super::packet::{ConnAck, ConnectRefusal, Packet, PacketType, Protocol, Role, V5ConnAckReason};
use std::fmt;

/// The wire element an error is about. Its `Display` is the name used in `docs/MQTT.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MqttField {
    /// The fixed header's packet type (high nibble of byte 1).
    PacketType,
    /// The fixed header's flags (low nibble of byte 1).
    Flags,
    /// The fixed header's remaining length.
    RemainingLength,
    /// CONNECT: the protocol name.
    ProtocolName,
    /// CONNECT: the protocol level.
    ProtocolLevel,
    /// CONNECT: the connect flags byte.
    ConnectFlags,
    /// CONNECT: the keep-alive seconds.
    KeepAlive,
    /// CONNECT: the client identifier.
    ClientId,
    /// CONNECT: the will topic.
    WillTopic,
    /// CONNECT: the will payload.
    WillPayload,
    /// CONNECT: the user name.
    Username,
    /// CONNECT: the password.
    Password,
    /// CONNACK: the acknowledge flags byte.
    AckFlags,
    /// CONNACK, SUBACK: a return code.
    ReturnCode,
    /// MQTT 5 CONNACK: the reason code.
    ReasonCode,
    /// MQTT 5 CONNACK: the properties length.
    Properties,
    /// PUBLISH: the topic name.
    TopicName,
    /// A packet identifier.
    PacketId,
    /// SUBSCRIBE, UNSUBSCRIBE: a topic filter.
    TopicFilter,
    /// SUBSCRIBE: a subscription options byte (the requested QoS).
    SubscriptionOptions,
    /// PUBLISH: the application message.
    Payload,
}

impl fmt::Display for MqttField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MqttField::PacketType => "packet type",
            MqttField::Flags => "fixed-header flags",
            MqttField::RemainingLength => "remaining length",
            MqttField::ProtocolName => "protocol name",
            MqttField::ProtocolLevel => "protocol level",
            MqttField::ConnectFlags => "connect flags",
            MqttField::KeepAlive => "keep alive",
            MqttField::ClientId => "client id",
            MqttField::WillTopic => "will topic",
            MqttField::WillPayload => "will payload",
            MqttField::Username => "user name",
            MqttField::Password => "password",
            MqttField::AckFlags => "acknowledge flags",
            MqttField::ReturnCode => "return code",
            MqttField::ReasonCode => "reason code",
            MqttField::Properties => "properties",
            MqttField::TopicName => "topic name",
            MqttField::PacketId => "packet id",
            MqttField::TopicFilter => "topic filter",
            MqttField::SubscriptionOptions => "subscription options",
            MqttField::Payload => "payload",
        })
    }
}

/// "at least " when a length is only a lower bound.
fn at_least(exact: bool) -> &'static str {
    if exact {
        ""
    } else {
        "at least "
    }
}

/// The stream cannot be framed any more. Every variant is fatal: the decoder returns the same
/// error from then on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MqttFrameError {
    /// The remaining length is over the maximum packet size: refused from its prefix alone, as
    /// soon as the bytes seen prove it too large, with nothing of the body buffered.
    #[error(
        "{packet} remaining length {}{len} exceeds the maximum packet size of {max} bytes \
         (refused from {length_bytes} length byte(s); nothing buffered)",
        at_least(*exact)
    )]
    TooLarge {
        /// The packet's type.
        packet: PacketType,
        /// The remaining length, or with `exact: false` the least it can be.
        len: u32,
        /// Whether `len` is the length itself or a lower bound.
        exact: bool,
        /// The configured maximum.
        max: usize,
        /// Length bytes read when it was refused (1 to 4).
        length_bytes: usize,
    },
    /// The remaining length has its continuation bit set in all 4 bytes (a 5th would follow).
    #[error("{packet} remaining length at offset 1 does not end within 4 bytes")]
    LengthTooLong {
        /// The packet's type.
        packet: PacketType,
    },
    /// The remaining length is not minimally encoded (it ends with a zero byte).
    #[error(
        "{packet} remaining length at offset 1 is not minimal: {value} in {bytes} bytes \
         fits in fewer"
    )]
    LengthNotMinimal {
        /// The packet's type.
        packet: PacketType,
        /// Bytes it took.
        bytes: usize,
        /// Its value.
        value: u32,
    },
    /// The stream ended inside a packet (from `decode_eof`).
    #[error("stream ended inside a packet: {buffered} bytes buffered, the packet needs {needed}")]
    UnexpectedEof {
        /// Bytes of the unfinished packet that arrived.
        buffered: usize,
        /// Bytes the packet needs in all (fixed header included); if the header itself was cut
        /// off, the least it could need.
        needed: usize,
    },
}

/// A packet was framed and consumed, but is invalid or refused by gatekit's profile. The decoder is
/// in sync and can go on; MQTT wants the connection closed (see [`MqttDecodeError::connack_refusal`]
/// for what to answer first).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MqttPacketError {
    /// Packet type 0 or 15 (15 is MQTT 5's AUTH).
    #[error("{packet} at offset 0 is not an MQTT 3.1.1 packet type")]
    ReservedPacketType {
        /// The type ([`PacketType::Reserved`] or [`PacketType::Auth`]).
        packet: PacketType,
    },
    /// PUBREC, PUBREL or PUBCOMP: the QoS 2 flow, which gatekit does not support.
    #[error("{packet} at offset 0 belongs to the QoS 2 flow, which gatekit does not support")]
    UnsupportedPacketType {
        /// The type.
        packet: PacketType,
    },
    /// A packet the other end never sends (a CONNACK sent to a server, a SUBSCRIBE to a client).
    #[error("{packet} at offset 0 is not accepted by a {role}: only a {} sends it", role.peer())]
    UnexpectedPacket {
        /// The type.
        packet: PacketType,
        /// The decoder's role.
        role: Role,
    },
    /// The fixed-header flags are not the ones 3.1.1 requires for the type (§2.2.2).
    #[error("{packet} fixed-header flags 0b{flags:04b} at offset 0, must be 0b{expected:04b}")]
    InvalidFlags {
        /// The type.
        packet: PacketType,
        /// The flags found.
        flags: u8,
        /// The flags required.
        expected: u8,
    },
    /// A QoS 0 PUBLISH with the DUP flag ([MQTT-3.3.1-2]).
    #[error("PUBLISH at offset 0 has the DUP flag with QoS 0")]
    DupWithQoS0,
    /// A QoS field holds 3 (PUBLISH flags, will QoS, subscription options).
    #[error("{packet} {field} at offset {offset} has QoS 3, which is reserved")]
    InvalidQoS {
        /// The type.
        packet: PacketType,
        /// Which QoS field.
        field: MqttField,
        /// Where it is.
        offset: usize,
    },
    /// A well-formed QoS 2 PUBLISH: gatekit speaks QoS 0 and 1 only. The topic and packet id are
    /// given so the gate can log what it refused.
    #[error(
        "PUBLISH with QoS 2 (packet id {packet_id}, topic {topic:?}): gatekit supports QoS 0 and 1 \
         only"
    )]
    QoS2Publish {
        /// The packet id.
        packet_id: u16,
        /// The topic.
        topic: String,
    },
    /// The packet ends inside a field.
    #[error(
        "{packet} {field} at offset {offset} is truncated: needs {needed} bytes, the packet has \
         {available} left"
    )]
    Truncated {
        /// The type.
        packet: PacketType,
        /// The field cut off.
        field: MqttField,
        /// Where the field starts.
        offset: usize,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in the packet.
        available: usize,
    },
    /// The packet has bytes after its last field.
    #[error("{packet} has {extra} unexpected bytes at offset {offset}")]
    TrailingBytes {
        /// The type.
        packet: PacketType,
        /// Where they start.
        offset: usize,
        /// How many.
        extra: usize,
    },
    /// CONNECT's protocol name is neither `MQTT` nor `MQIsdp`: not MQTT; no CONNACK is due.
    #[error(
        "CONNECT protocol name {name:?} at offset {offset} is neither \"MQTT\" nor \"MQIsdp\""
    )]
    UnknownProtocol {
        /// The name (lossily decoded).
        name: String,
        /// Where it starts.
        offset: usize,
    },
    /// CONNECT names a protocol level gatekit does not speak: MQTT 5.0 (level 5) or another.
    #[error(
        "CONNECT protocol level {level} ({}) at offset {offset} is not supported: gatekit speaks \
         MQTT 3.1.1 (\"MQTT\", level 4) and 3.1 (\"MQIsdp\", level 3)",
        level_name(name, *level)
    )]
    UnsupportedProtocolLevel {
        /// The protocol name (`"MQTT"` or `"MQIsdp"`).
        name: &'static str,
        /// The level.
        level: u8,
        /// Where the level byte is.
        offset: usize,
    },
    /// The CONNECT flags break a 3.1.1 rule.
    #[error("CONNECT connect flags 0b{flags:08b} at offset {offset}: {rule}")]
    InvalidConnectFlags {
        /// The byte.
        flags: u8,
        /// Where it is.
        offset: usize,
        /// The rule broken.
        rule: &'static str,
    },
    /// An empty client id where it is not allowed: without clean session ([MQTT-3.1.3-8]), or in
    /// MQTT 3.1. The CONNACK due is 0x02, identifier rejected.
    #[error("CONNECT client id at offset {offset} is empty: {}", empty_id_rule(*protocol))]
    EmptyClientId {
        /// The protocol the CONNECT asked for.
        protocol: Protocol,
        /// Where the client id starts.
        offset: usize,
    },
    /// A field is longer than its limit (a configured one, or the protocol's).
    #[error("{packet} {field} at offset {offset} is {len} bytes, over the limit of {max}")]
    TooLong {
        /// The type.
        packet: PacketType,
        /// The field.
        field: MqttField,
        /// Where it starts.
        offset: usize,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A list (topic filters, return codes) has more entries than the configured limit.
    #[error("{packet} has more than {max} {field} entries (the next at offset {offset})")]
    TooManyEntries {
        /// The type.
        packet: PacketType,
        /// What the entries are.
        field: MqttField,
        /// Where the first entry over the limit starts.
        offset: usize,
        /// The limit.
        max: usize,
    },
    /// A list that needs at least one entry has none ([MQTT-3.8.3-3], [MQTT-3.10.3-2]).
    #[error("{packet} has no {field} entries after offset {offset}")]
    NoEntries {
        /// The type.
        packet: PacketType,
        /// What the entries are.
        field: MqttField,
        /// Where the list should start.
        offset: usize,
    },
    /// A topic name or filter is empty ([MQTT-4.7.3-1]).
    #[error("{packet} {field} at offset {offset} is empty")]
    EmptyTopic {
        /// The type.
        packet: PacketType,
        /// The field.
        field: MqttField,
        /// Where it starts.
        offset: usize,
    },
    /// Text is not UTF-8 ([MQTT-1.5.3-1]).
    #[error("{packet} {field} at offset {offset} is not UTF-8: invalid byte at offset {at}")]
    InvalidUtf8 {
        /// The type.
        packet: PacketType,
        /// The field.
        field: MqttField,
        /// Where the field starts (its length prefix).
        offset: usize,
        /// Where the first invalid byte is.
        at: usize,
    },
    /// Text contains U+0000 ([MQTT-1.5.3-2]).
    #[error("{packet} {field} at offset {offset} contains U+0000 at offset {at}")]
    NulCharacter {
        /// The type.
        packet: PacketType,
        /// The field.
        field: MqttField,
        /// Where the field starts (its length prefix).
        offset: usize,
        /// Where the NUL is.
        at: usize,
    },
    /// A topic name (PUBLISH, will) contains `+` or `#` ([MQTT-3.3.2-2]).
    #[error("{packet} {field} at offset {offset} has a wildcard at offset {at}")]
    WildcardInTopic {
        /// The type.
        packet: PacketType,
        /// The field.
        field: MqttField,
        /// Where the field starts.
        offset: usize,
        /// Where the wildcard is.
        at: usize,
    },
    /// A topic filter has a wildcard not alone in its level, or `#` before the last level.
    #[error("{packet} topic filter {filter:?} at offset {offset} has a misplaced wildcard at offset {at}")]
    InvalidTopicFilter {
        /// The type.
        packet: PacketType,
        /// The filter text.
        filter: String,
        /// Where the filter starts.
        offset: usize,
        /// Where the misplaced wildcard is.
        at: usize,
    },
    /// A packet id is zero ([MQTT-2.3.1-1]).
    #[error("{packet} packet id at offset {offset} is 0; ids are 1 to 65535")]
    ZeroPacketId {
        /// The type.
        packet: PacketType,
        /// Where it is.
        offset: usize,
    },
    /// A return or reason code is not one the protocol defines.
    #[error("{packet} {field} 0x{value:02x} at offset {offset} is not a valid code")]
    InvalidCode {
        /// The type.
        packet: PacketType,
        /// Return code or reason code.
        field: MqttField,
        /// The byte.
        value: u8,
        /// Where it is.
        offset: usize,
    },
    /// Reserved bits are set (CONNACK acknowledge flags, SUBSCRIBE options).
    #[error("{packet} {field} 0x{value:02x} at offset {offset} has reserved bits set")]
    ReservedBits {
        /// The type.
        packet: PacketType,
        /// The field.
        field: MqttField,
        /// The byte.
        value: u8,
        /// Where it is.
        offset: usize,
    },
    /// A CONNACK refusing the connection says a session is present ([MQTT-3.2.2-4]).
    #[error("CONNACK at offset 2 has session present with return code 0x{code:02x}")]
    SessionPresentOnRefusal {
        /// The return code.
        code: u8,
    },
    /// An MQTT 5 CONNACK carries properties (gatekit reads only the bare refusal).
    #[error("MQTT 5 CONNACK properties of {len} bytes at offset {offset} are not supported")]
    UnsupportedProperties {
        /// Their length.
        len: u8,
        /// Where the properties length is.
        offset: usize,
    },
}

fn empty_id_rule(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::V311 => "MQTT 3.1.1 allows that only with clean session [MQTT-3.1.3-8]",
        Protocol::V31 => "MQTT 3.1 needs 1 to 23 characters",
    }
}

fn level_name(name: &str, level: u8) -> &'static str {
    match (name, level) {
        ("MQTT", 5) => "MQTT 5.0",
        ("MQTT", 3) => "3.1's level, but 3.1 is named MQIsdp",
        ("MQIsdp", 4) => "3.1.1's level, but 3.1.1 is named MQTT",
        _ => "no MQTT version",
    }
}

impl MqttPacketError {
    /// The type of the refused packet.
    pub fn packet_type(&self) -> PacketType {
        use MqttPacketError as E;
        match self {
            E::ReservedPacketType { packet }
            | E::UnsupportedPacketType { packet }
            | E::UnexpectedPacket { packet, .. }
            | E::InvalidFlags { packet, .. }
            | E::InvalidQoS { packet, .. }
            | E::Truncated { packet, .. }
            | E::TrailingBytes { packet, .. }
            | E::TooLong { packet, .. }
            | E::TooManyEntries { packet, .. }
            | E::NoEntries { packet, .. }
            | E::EmptyTopic { packet, .. }
            | E::InvalidUtf8 { packet, .. }
            | E::NulCharacter { packet, .. }
            | E::WildcardInTopic { packet, .. }
            | E::InvalidTopicFilter { packet, .. }
            | E::ZeroPacketId { packet, .. }
            | E::InvalidCode { packet, .. }
            | E::ReservedBits { packet, .. } => *packet,
            E::DupWithQoS0 | E::QoS2Publish { .. } => PacketType::Publish,
            E::UnknownProtocol { .. }
            | E::UnsupportedProtocolLevel { .. }
            | E::InvalidConnectFlags { .. }
            | E::EmptyClientId { .. } => PacketType::Connect,
            E::SessionPresentOnRefusal { .. } | E::UnsupportedProperties { .. } => {
                PacketType::ConnAck
            }
        }
    }

    /// Whether this is an MQTT 5 CONNECT (protocol name `MQTT`, level 5).
    pub fn is_mqtt5_connect(&self) -> bool {
        matches!(
            self,
            MqttPacketError::UnsupportedProtocolLevel {
                name: "MQTT",
                level: 5,
                ..
            }
        )
    }

    /// The CONNACK a server should send before closing, when this error refuses a CONNECT that
    /// 3.1.1 says deserves one:
    ///
    /// - an MQTT 5 CONNECT: [`Packet::ConnAckV5`] with 0x84, unsupported protocol version
    ///   (`20 03 00 84 00`), which a 5.0 client understands;
    /// - another protocol level: return code 0x01, unacceptable protocol version
    ///   ([MQTT-3.1.2-2]);
    /// - a client id that is empty where not allowed, or over the limit: 0x02, identifier rejected
    ///   ([MQTT-3.1.3-8], [MQTT-3.1.3-9]).
    ///
    /// Any other error (including an unknown protocol name, which may not be MQTT at all) gets no
    /// CONNACK: the server just closes.
    pub fn connack_refusal(&self) -> Option<Packet> {
        match self {
            e if e.is_mqtt5_connect() => Some(Packet::ConnAckV5(
                V5ConnAckReason::UnsupportedProtocolVersion,
            )),
            MqttPacketError::UnsupportedProtocolLevel { .. } => Some(Packet::ConnAck(
                ConnAck::Refused(ConnectRefusal::UnacceptableProtocolVersion),
            )),
            MqttPacketError::EmptyClientId { .. }
            | MqttPacketError::TooLong {
                packet: PacketType::Connect,
                field: MqttField::ClientId,
                ..
            } => Some(Packet::ConnAck(ConnAck::Refused(
                ConnectRefusal::IdentifierRejected,
            ))),
            _ => None,
        }
    }
}

/// An error from [`MqttCodec`](super::MqttCodec)'s decoder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MqttDecodeError {
    /// The stream cannot be framed (fatal).
    #[error(transparent)]
    Frame(#[from] MqttFrameError),
    /// A framed packet is invalid or refused (the decoder is in sync).
    #[error(transparent)]
    Packet(#[from] MqttPacketError),
}

impl MqttDecodeError {
    /// Whether the stream is lost: a fatal error is returned again by every later call. After a
    /// packet error the decoder has consumed the packet and can decode the next one, but MQTT
    /// (§4.8) wants the connection closed all the same.
    pub fn is_fatal(&self) -> bool {
        matches!(self, MqttDecodeError::Frame(_))
    }

    /// The type of the packet at fault, when known (a stream cut off before a type byte has none).
    pub fn packet_type(&self) -> Option<PacketType> {
        match self {
            MqttDecodeError::Packet(e) => Some(e.packet_type()),
            MqttDecodeError::Frame(
                MqttFrameError::TooLarge { packet, .. }
                | MqttFrameError::LengthTooLong { packet }
                | MqttFrameError::LengthNotMinimal { packet, .. },
            ) => Some(*packet),
            MqttDecodeError::Frame(MqttFrameError::UnexpectedEof { .. }) => None,
        }
    }

    /// The CONNACK to send before closing, if any (see [`MqttPacketError::connack_refusal`]).
    pub fn connack_refusal(&self) -> Option<Packet> {
        match self {
            MqttDecodeError::Packet(e) => e.connack_refusal(),
            MqttDecodeError::Frame(_) => None,
        }
    }
}

/// The encoder refused a packet. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MqttEncodeError {
    /// The remaining length would exceed the maximum packet size.
    #[error("{packet} remaining length {len} exceeds the maximum packet size of {max} bytes")]
    PacketTooLarge {
        /// The type.
        packet: PacketType,
        /// The remaining length it would have.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// A field is longer than its limit.
    #[error("{packet} {field} is {len} bytes, over the limit of {max}")]
    TooLong {
        /// The type.
        packet: PacketType,
        /// The field.
        field: MqttField,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A list that needs at least one entry is empty.
    #[error("{packet} has no {field} entries; it needs at least one")]
    NoEntries {
        /// The type.
        packet: PacketType,
        /// What the entries are.
        field: MqttField,
    },
    /// A list has more entries than the configured limit.
    #[error("{packet} has {count} {field} entries, over the limit of {max}")]
    TooManyEntries {
        /// The type.
        packet: PacketType,
        /// What the entries are.
        field: MqttField,
        /// How many.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// This end of the connection does not send this type (a server sending SUBSCRIBE).
    #[error("a {role} does not send {packet}")]
    WrongDirection {
        /// The type.
        packet: PacketType,
        /// The encoder's role.
        role: Role,
    },
    /// A password without a user name ([MQTT-3.1.2-22]).
    #[error("CONNECT has a password but no user name")]
    PasswordWithoutUsername,
    /// An empty client id where the decoder would refuse it.
    #[error("CONNECT client id is empty: {}", empty_id_rule(*protocol))]
    EmptyClientId {
        /// The CONNECT's protocol.
        protocol: Protocol,
    },
}

/// A limit that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MqttConfigError {
    /// A limit is outside its range.
    #[error("{limit} {value} is outside {min}..={max}")]
    OutOfRange {
        /// The limit's name (as its setter is called).
        limit: &'static str,
        /// The value asked for.
        value: usize,
        /// The least allowed.
        min: usize,
        /// The most allowed.
        max: usize,
    },
}
