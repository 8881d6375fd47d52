//! The MQTT 3.1.1 packets gatekit reads and writes (docs/MQTT.md).

use super::text::{MqttString, TopicFilter, TopicName};
use bytes::Bytes;
use std::fmt;
use std::num::NonZeroU16;

/// A packet identifier: 1 to 65,535 (zero is refused on the wire, [MQTT-2.3.1-1]).
pub type PacketId = NonZeroU16;

/// The packet type, the high nibble of the fixed header's first byte. Every nibble has a variant,
/// so a decoder can name what it refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum PacketType {
    /// 0: reserved.
    Reserved = 0,
    /// 1: client → server, open a session.
    Connect = 1,
    /// 2: server → client, the answer to CONNECT.
    ConnAck = 2,
    /// 3: either way, a message on a topic.
    Publish = 3,
    /// 4: either way, the acknowledgement of a QoS 1 PUBLISH.
    PubAck = 4,
    /// 5: QoS 2, step 1 (not supported by gatekit).
    PubRec = 5,
    /// 6: QoS 2, step 2 (not supported by gatekit).
    PubRel = 6,
    /// 7: QoS 2, step 3 (not supported by gatekit).
    PubComp = 7,
    /// 8: client → server, subscribe to topic filters.
    Subscribe = 8,
    /// 9: server → client, the answer to SUBSCRIBE.
    SubAck = 9,
    /// 10: client → server, unsubscribe.
    Unsubscribe = 10,
    /// 11: server → client, the answer to UNSUBSCRIBE.
    UnsubAck = 11,
    /// 12: client → server, are you there?
    PingReq = 12,
    /// 13: server → client, yes.
    PingResp = 13,
    /// 14: client → server, closing cleanly.
    Disconnect = 14,
    /// 15: reserved in 3.1.1; MQTT 5's AUTH.
    Auth = 15,
}

impl PacketType {
    /// The type of a fixed header's first byte (its high nibble).
    #[inline]
    pub const fn from_byte1(byte1: u8) -> PacketType {
        match byte1 >> 4 {
            1 => PacketType::Connect,
            2 => PacketType::ConnAck,
            3 => PacketType::Publish,
            4 => PacketType::PubAck,
            5 => PacketType::PubRec,
            6 => PacketType::PubRel,
            7 => PacketType::PubComp,
            8 => PacketType::Subscribe,
            9 => PacketType::SubAck,
            10 => PacketType::Unsubscribe,
            11 => PacketType::UnsubAck,
            12 => PacketType::PingReq,
            13 => PacketType::PingResp,
            14 => PacketType::Disconnect,
            15 => PacketType::Auth,
            _ => PacketType::Reserved,
        }
    }

    /// The nibble value, 0 to 15.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// The upper-case name used by the specification (`"SUBSCRIBE"`).
    pub const fn name(self) -> &'static str {
        match self {
            PacketType::Reserved => "reserved type 0",
            PacketType::Connect => "CONNECT",
            PacketType::ConnAck => "CONNACK",
            PacketType::Publish => "PUBLISH",
            PacketType::PubAck => "PUBACK",
            PacketType::PubRec => "PUBREC",
            PacketType::PubRel => "PUBREL",
            PacketType::PubComp => "PUBCOMP",
            PacketType::Subscribe => "SUBSCRIBE",
            PacketType::SubAck => "SUBACK",
            PacketType::Unsubscribe => "UNSUBSCRIBE",
            PacketType::UnsubAck => "UNSUBACK",
            PacketType::PingReq => "PINGREQ",
            PacketType::PingResp => "PINGRESP",
            PacketType::Disconnect => "DISCONNECT",
            PacketType::Auth => "reserved type 15 (AUTH in MQTT 5)",
        }
    }

    /// The fixed-header flags 3.1.1 requires for this type (§2.2.2), or `None` for PUBLISH (whose
    /// flags are DUP, QoS and RETAIN) and the reserved types.
    pub const fn required_flags(self) -> Option<u8> {
        match self {
            PacketType::Publish | PacketType::Reserved | PacketType::Auth => None,
            PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => Some(0b0010),
            _ => Some(0),
        }
    }

    /// Whether a client sends this type in MQTT 3.1.1.
    pub const fn sent_by_client(self) -> bool {
        matches!(
            self,
            PacketType::Connect
                | PacketType::Publish
                | PacketType::PubAck
                | PacketType::PubRec
                | PacketType::PubRel
                | PacketType::PubComp
                | PacketType::Subscribe
                | PacketType::Unsubscribe
                | PacketType::PingReq
                | PacketType::Disconnect
        )
    }

    /// Whether a server sends this type in MQTT 3.1.1.
    pub const fn sent_by_server(self) -> bool {
        matches!(
            self,
            PacketType::ConnAck
                | PacketType::Publish
                | PacketType::PubAck
                | PacketType::PubRec
                | PacketType::PubRel
                | PacketType::PubComp
                | PacketType::SubAck
                | PacketType::UnsubAck
                | PacketType::PingResp
        )
    }
}

impl fmt::Display for PacketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which end of the connection a codec is: it decodes what the other end sends and encodes what
/// its own end sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Role {
    /// The gate: decodes client packets (CONNECT, PUBLISH, SUBSCRIBE, ...), encodes server
    /// packets (CONNACK, PUBLISH, SUBACK, ...).
    Server,
    /// A client (the harness): decodes server packets, encodes client packets.
    Client,
}

impl Role {
    /// Whether a codec of this role decodes packets of this type (the other end sends it).
    pub const fn receives(self, t: PacketType) -> bool {
        match self {
            Role::Server => t.sent_by_client(),
            Role::Client => t.sent_by_server(),
        }
    }

    /// Whether a codec of this role encodes packets of this type (its own end sends it).
    pub const fn sends(self, t: PacketType) -> bool {
        match self {
            Role::Server => t.sent_by_server(),
            Role::Client => t.sent_by_client(),
        }
    }

    /// The other end.
    pub const fn peer(self) -> Role {
        match self {
            Role::Server => Role::Client,
            Role::Client => Role::Server,
        }
    }

    /// `"server"` or `"client"`.
    pub const fn name(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Client => "client",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A quality of service level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[repr(u8)]
pub enum QoS {
    /// 0: at most once.
    AtMostOnce = 0,
    /// 1: at least once (PUBLISH, then PUBACK).
    AtLeastOnce = 1,
    /// 2: exactly once. gatekit refuses QoS 2 PUBLISH packets; a SUBSCRIBE may still ask for it,
    /// and the gate grants at most 1.
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS for 0, 1 or 2.
    pub const fn from_u8(b: u8) -> Option<QoS> {
        match b {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }

    /// 0, 1 or 2.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }
}

/// The protocol a CONNECT names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Protocol {
    /// MQTT 3.1.1: name `"MQTT"`, level 4.
    V311,
    /// MQTT 3.1: name `"MQIsdp"`, level 3. Same packets; the client id must not be empty.
    V31,
}

impl Protocol {
    /// The protocol name on the wire.
    pub const fn name(self) -> &'static str {
        match self {
            Protocol::V311 => "MQTT",
            Protocol::V31 => "MQIsdp",
        }
    }

    /// The protocol level byte.
    pub const fn level(self) -> u8 {
        match self {
            Protocol::V311 => 4,
            Protocol::V31 => 3,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::V311 => "MQTT 3.1.1",
            Protocol::V31 => "MQTT 3.1",
        })
    }
}

/// A client's will: the message the server publishes if the client goes away without DISCONNECT.
/// gatekit decodes and exposes it; the gate may ignore it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// Where to publish it.
    pub topic: TopicName,
    /// What to publish (binary, at most 65,535 bytes).
    pub payload: Bytes,
    /// At which QoS.
    pub qos: QoS,
    /// Whether the server should retain it.
    pub retain: bool,
}

/// Client → server, first packet: open a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// 3.1.1 or 3.1.
    pub protocol: Protocol,
    /// Whether to start a fresh session (and drop it at disconnect).
    pub clean_session: bool,
    /// The keep-alive interval in seconds; 0 turns keep-alive off.
    pub keep_alive: u16,
    /// The client identifier (may be empty in 3.1.1 with `clean_session`).
    pub client_id: MqttString,
    /// The will, if any.
    pub will: Option<Will>,
    /// The user name, if any.
    pub username: Option<MqttString>,
    /// The password, if any (binary; needs a user name).
    pub password: Option<Bytes>,
}

impl Connect {
    /// A 3.1.1 CONNECT with clean session, no will, user name or password.
    pub fn new(client_id: MqttString, keep_alive: u16) -> Connect {
        Connect {
            protocol: Protocol::V311,
            clean_session: true,
            keep_alive,
            client_id,
            will: None,
            username: None,
            password: None,
        }
    }
}

/// A 3.1.1 CONNACK return code that refuses the connection (1 to 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[repr(u8)]
pub enum ConnectRefusal {
    /// 0x01: the server does not speak the protocol level the client asked for.
    UnacceptableProtocolVersion = 1,
    /// 0x02: the client id is not allowed.
    IdentifierRejected = 2,
    /// 0x03: the MQTT service is unavailable.
    ServerUnavailable = 3,
    /// 0x04: the user name or password is malformed.
    BadUserNameOrPassword = 4,
    /// 0x05: the client is not authorised to connect.
    NotAuthorized = 5,
}

impl ConnectRefusal {
    /// The refusal for return code 1 to 5.
    pub const fn from_u8(b: u8) -> Option<ConnectRefusal> {
        match b {
            1 => Some(ConnectRefusal::UnacceptableProtocolVersion),
            2 => Some(ConnectRefusal::IdentifierRejected),
            3 => Some(ConnectRefusal::ServerUnavailable),
            4 => Some(ConnectRefusal::BadUserNameOrPassword),
            5 => Some(ConnectRefusal::NotAuthorized),
            _ => None,
        }
    }

    /// The return code byte.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }
}

/// Server → client: the answer to a 3.1.1 (or 3.1) CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum ConnAck {
    /// Return code 0: accepted.
    Accepted {
        /// Whether the server had a session for this client id (always false with clean session).
        session_present: bool,
    },
    /// Return codes 1 to 5: refused; the server closes the connection after sending it.
    Refused(ConnectRefusal),
}

impl ConnAck {
    /// The return code byte.
    pub const fn return_code(self) -> u8 {
        match self {
            ConnAck::Accepted { .. } => 0,
            ConnAck::Refused(r) => r.as_u8(),
        }
    }
}

/// An MQTT 5 CONNACK reason code that refuses the connection, for answering a 5.0 client in a form
/// it understands. Only failure codes: gatekit never accepts a 5.0 session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[repr(u8)]
pub enum V5ConnAckReason {
    /// 0x80: unspecified error.
    UnspecifiedError = 0x80,
    /// 0x81: malformed packet.
    MalformedPacket = 0x81,
    /// 0x82: protocol error.
    ProtocolError = 0x82,
    /// 0x84: unsupported protocol version (what gatekit answers a 5.0 CONNECT with).
    UnsupportedProtocolVersion = 0x84,
    /// 0x85: client identifier not valid.
    ClientIdentifierNotValid = 0x85,
    /// 0x86: bad user name or password.
    BadUserNameOrPassword = 0x86,
    /// 0x87: not authorized.
    NotAuthorized = 0x87,
    /// 0x88: server unavailable.
    ServerUnavailable = 0x88,
    /// 0x89: server busy.
    ServerBusy = 0x89,
    /// 0x95: packet too large.
    PacketTooLarge = 0x95,
}

impl V5ConnAckReason {
    /// The reason for a byte, if it is one of these.
    pub const fn from_u8(b: u8) -> Option<V5ConnAckReason> {
        match b {
            0x80 => Some(V5ConnAckReason::UnspecifiedError),
            0x81 => Some(V5ConnAckReason::MalformedPacket),
            0x82 => Some(V5ConnAckReason::ProtocolError),
            0x84 => Some(V5ConnAckReason::UnsupportedProtocolVersion),
            0x85 => Some(V5ConnAckReason::ClientIdentifierNotValid),
            0x86 => Some(V5ConnAckReason::BadUserNameOrPassword),
            0x87 => Some(V5ConnAckReason::NotAuthorized),
            0x88 => Some(V5ConnAckReason::ServerUnavailable),
            0x89 => Some(V5ConnAckReason::ServerBusy),
            0x95 => Some(V5ConnAckReason::PacketTooLarge),
            _ => None,
        }
    }

    /// The reason code byte.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }
}

/// How a PUBLISH is delivered: gatekit speaks QoS 0 and 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Delivery {
    /// QoS 0: no packet id, no acknowledgement.
    AtMostOnce,
    /// QoS 1: acknowledged by a PUBACK with the same packet id.
    AtLeastOnce {
        /// The packet id.
        packet_id: PacketId,
        /// Whether this is a re-delivery of an earlier attempt.
        dup: bool,
    },
}

/// Either way: a message on a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// QoS 0 or 1, with the packet id and DUP flag for QoS 1.
    pub delivery: Delivery,
    /// The RETAIN flag.
    pub retain: bool,
    /// The topic (a zero-copy slice of the packet when decoded).
    pub topic: TopicName,
    /// The application message (a zero-copy slice of the packet when decoded; may be empty).
    pub payload: Bytes,
}

impl Publish {
    /// A QoS 0 PUBLISH, not retained.
    pub fn qos0(topic: TopicName, payload: impl Into<Bytes>) -> Publish {
        Publish {
            delivery: Delivery::AtMostOnce,
            retain: false,
            topic,
            payload: payload.into(),
        }
    }

    /// A QoS 1 PUBLISH, first attempt, not retained.
    pub fn qos1(packet_id: PacketId, topic: TopicName, payload: impl Into<Bytes>) -> Publish {
        Publish {
            delivery: Delivery::AtLeastOnce {
                packet_id,
                dup: false,
            },
            retain: false,
            topic,
            payload: payload.into(),
        }
    }

    /// 0 or 1.
    pub fn qos(&self) -> QoS {
        match self.delivery {
            Delivery::AtMostOnce => QoS::AtMostOnce,
            Delivery::AtLeastOnce { .. } => QoS::AtLeastOnce,
        }
    }

    /// The packet id of a QoS 1 PUBLISH.
    pub fn packet_id(&self) -> Option<PacketId> {
        match self.delivery {
            Delivery::AtMostOnce => None,
            Delivery::AtLeastOnce { packet_id, .. } => Some(packet_id),
        }
    }

    /// The DUP flag (always false at QoS 0).
    pub fn dup(&self) -> bool {
        matches!(self.delivery, Delivery::AtLeastOnce { dup: true, .. })
    }
}

/// One topic filter of a SUBSCRIBE, with the QoS asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The filter.
    pub filter: TopicFilter,
    /// The maximum QoS the client wants for messages on it.
    pub qos: QoS,
}

/// Client → server: subscribe to topic filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// The packet id the SUBACK will carry.
    pub packet_id: PacketId,
    /// At least one filter, each with its QoS.
    pub subscriptions: Vec<Subscription>,
}

/// The answer to one filter of a SUBSCRIBE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum SubscribeReturnCode {
    /// 0x00, 0x01, 0x02: subscribed, with this maximum QoS.
    Granted(QoS),
    /// 0x80: refused.
    Failure,
}

impl SubscribeReturnCode {
    /// The code for a byte, if valid.
    pub const fn from_u8(b: u8) -> Option<SubscribeReturnCode> {
        match b {
            0x80 => Some(SubscribeReturnCode::Failure),
            b => match QoS::from_u8(b) {
                Some(q) => Some(SubscribeReturnCode::Granted(q)),
                None => None,
            },
        }
    }

    /// The byte.
    pub const fn as_u8(self) -> u8 {
        match self {
            SubscribeReturnCode::Granted(q) => q.as_u8(),
            SubscribeReturnCode::Failure => 0x80,
        }
    }
}

/// Server → client: the answer to a SUBSCRIBE, one return code per filter, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    /// The SUBSCRIBE's packet id.
    pub packet_id: PacketId,
    /// One code per filter of the SUBSCRIBE (at least one).
    pub return_codes: Vec<SubscribeReturnCode>,
}

/// Client → server: unsubscribe from topic filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// The packet id the UNSUBACK will carry.
    pub packet_id: PacketId,
    /// At least one filter.
    pub filters: Vec<TopicFilter>,
}

/// An MQTT packet of gatekit's profile.
///
/// CONNECT is boxed: it is large and rare, and keeping it inline would make every PUBLISH result
/// larger to move around.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// Client → server: open a session.
    Connect(Box<Connect>),
    /// Server → client: the answer to a 3.1.1 CONNECT.
    ConnAck(ConnAck),
    /// Server → client: an MQTT 5 CONNACK refusing a 5.0 client (`20 03 00 <reason> 00`).
    ConnAckV5(V5ConnAckReason),
    /// Either way: a message.
    Publish(Publish),
    /// Either way: acknowledges the QoS 1 PUBLISH with this packet id.
    PubAck(PacketId),
    /// Client → server: subscribe.
    Subscribe(Subscribe),
    /// Server → client: the answer to SUBSCRIBE.
    SubAck(SubAck),
    /// Client → server: unsubscribe.
    Unsubscribe(Unsubscribe),
    /// Server → client: acknowledges the UNSUBSCRIBE with this packet id.
    UnsubAck(PacketId),
    /// Client → server: are you there?
    PingReq,
    /// Server → client: yes.
    PingResp,
    /// Client → server: closing cleanly (the server must discard the will).
    Disconnect,
}

impl Packet {
    /// The packet's type.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::ConnAck(_) | Packet::ConnAckV5(_) => PacketType::ConnAck,
            Packet::Publish(_) => PacketType::Publish,
            Packet::PubAck(_) => PacketType::PubAck,
            Packet::Subscribe(_) => PacketType::Subscribe,
            Packet::SubAck(_) => PacketType::SubAck,
            Packet::Unsubscribe(_) => PacketType::Unsubscribe,
            Packet::UnsubAck(_) => PacketType::UnsubAck,
            Packet::PingReq => PacketType::PingReq,
            Packet::PingResp => PacketType::PingResp,
            Packet::Disconnect => PacketType::Disconnect,
        }
    }
}

impl From<Connect> for Packet {
    fn from(c: Connect) -> Packet {
        Packet::Connect(Box::new(c))
    }
}

impl From<ConnAck> for Packet {
    fn from(c: ConnAck) -> Packet {
        Packet::ConnAck(c)
    }
}

impl From<Publish> for Packet {
    fn from(p: Publish) -> Packet {
        Packet::Publish(p)
    }
}

impl From<Subscribe> for Packet {
    fn from(s: Subscribe) -> Packet {
        Packet::Subscribe(s)
    }
}

impl From<SubAck> for Packet {
    fn from(s: SubAck) -> Packet {
        Packet::SubAck(s)
    }
}

impl From<Unsubscribe> for Packet {
    fn from(u: Unsubscribe) -> Packet {
        Packet::Unsubscribe(u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_nibble_has_a_type() {
        for b in 0..=255u8 {
            assert_eq!(PacketType::from_byte1(b).as_u8(), b >> 4);
        }
    }

    #[test]
    fn directions() {
        assert!(Role::Server.receives(PacketType::Connect));
        assert!(!Role::Server.receives(PacketType::ConnAck));
        assert!(Role::Client.receives(PacketType::SubAck));
        assert!(Role::Server.sends(PacketType::PingResp));
        assert!(Role::Client.sends(PacketType::Disconnect));
        for t in [PacketType::Publish, PacketType::PubAck] {
            assert!(Role::Server.receives(t) && Role::Client.receives(t));
        }
        assert!(!Role::Server.receives(PacketType::Reserved));
        assert!(!Role::Client.receives(PacketType::Auth));
        assert_eq!(Role::Server.peer(), Role::Client);
    }

    #[test]
    fn codes_round_trip() {
        for b in 0..=255u8 {
            if let Some(c) = SubscribeReturnCode::from_u8(b) {
                assert_eq!(c.as_u8(), b);
            }
            if let Some(c) = ConnectRefusal::from_u8(b) {
                assert_eq!(c.as_u8(), b);
            }
            if let Some(c) = V5ConnAckReason::from_u8(b) {
                assert_eq!(c.as_u8(), b);
            }
        }
        assert_eq!(
            SubscribeReturnCode::from_u8(0x80),
            Some(SubscribeReturnCode::Failure)
        );
        assert_eq!(SubscribeReturnCode::from_u8(3), None);
        assert_eq!(
            PacketType::Subscribe.required_flags(),
            Some(0b0010),
            "SUBSCRIBE flags"
        );
    }
}
