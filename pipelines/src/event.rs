//! The typed verification lifecycle event (contract §1).
//!
//! Only the fields the engine uses are typed here. Unknown extra fields are not an
//! error and are not lost: the original bytes travel with the event
//! ([`crate::InputRecord::payload`]) to every output that keeps raw events.

use crate::Text;
use std::net::IpAddr;

use crate::time::EventTime;

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub event_id: Text,
    pub verification_id: Text,
    pub tenant_id: Text,
    pub occurred_at: EventTime,
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    Requested(Requested),
    Sent(Sent),
    Delivered {
        provider: Text,
    },
    Undelivered {
        provider: Text,
        error_code: Option<Text>,
    },
    Approved,
    CheckFailed,
}

/// The `type` discriminator, as it appears on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Requested,
    Sent,
    Delivered,
    Undelivered,
    Approved,
    CheckFailed,
}

impl EventType {
    pub const ALL: [EventType; 6] = [
        EventType::Requested,
        EventType::Sent,
        EventType::Delivered,
        EventType::Undelivered,
        EventType::Approved,
        EventType::CheckFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Requested => "verification.requested",
            EventType::Sent => "verification.sent",
            EventType::Delivered => "verification.delivered",
            EventType::Undelivered => "verification.undelivered",
            EventType::Approved => "verification.approved",
            EventType::CheckFailed => "verification.check_failed",
        }
    }

    pub fn parse(text: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == text)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Requested {
    pub phone_number: Text,
    pub country: Text,
    pub channel: Channel,
    pub service: Text,
    pub ip: Option<IpAddr>,
    pub device_id: Option<Text>,
    pub user_id: Option<Text>,
    pub locale: Option<Text>,
    pub user_agent: Option<Text>,
    /// The IP's country, when upstream sends `ip_country` (an extension, optional).
    pub ip_country: Option<Text>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    pub provider: Text,
    pub attempt: u32,
    pub cost: Option<f64>,
    pub currency: Option<Text>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Sms,
    Voice,
    Whatsapp,
    Email,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
            Channel::Voice => "voice",
            Channel::Whatsapp => "whatsapp",
            Channel::Email => "email",
        }
    }

    pub fn parse(text: &str) -> Option<Channel> {
        match text {
            "sms" => Some(Channel::Sms),
            "voice" => Some(Channel::Voice),
            "whatsapp" => Some(Channel::Whatsapp),
            "email" => Some(Channel::Email),
            _ => None,
        }
    }
}
