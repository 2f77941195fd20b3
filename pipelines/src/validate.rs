//! Bytes → [`Event`], or a [`Rejection`] that says exactly what was wrong.
//!
//! The parser walks the JSON object once. Known keys are read as loose scalars
//! ([`Scalar`]) and type-checked only after `type` is known, because a field that
//! belongs to another event type is just an unknown extra field here (kept, never an
//! error). Unknown keys are skipped without allocation.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::Text;
use crate::country::is_assigned_alpha2;
use crate::event::{Channel, Event, EventKind, EventType, Requested, Sent};
use crate::reject::{RejectReason, Rejection};
use crate::time::{EventTime, parse_rfc3339};

/// Limits applied to every input. See `[pipeline]` in `veriflow.toml`.
#[derive(Debug, Clone)]
pub struct ValidationLimits {
    /// Messages larger than this are rejected as `too_large`.
    pub max_event_bytes: usize,
    /// Events before this instant are `timestamp_out_of_range` (default 2000-01-01).
    pub min_event_time: EventTime,
    /// Events at or after this instant are `timestamp_out_of_range` (default 2100-01-01).
    pub max_event_time: EventTime,
    /// Optionally, events further than this ahead of the wall clock are
    /// `timestamp_out_of_range` too. Off by default: a stream generated ahead of
    /// time (a load test, a replay shifted to today) is valid input.
    pub max_future_skew_ms: Option<i64>,
}

/// `[pipeline] max_event_bytes` unless configured.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 64 * 1024;

impl Default for ValidationLimits {
    fn default() -> Self {
        ValidationLimits {
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            min_event_time: 946_684_800_000,   // 2000-01-01T00:00:00Z
            max_event_time: 4_102_444_800_000, // 2100-01-01T00:00:00Z
            max_future_skew_ms: None,
        }
    }
}

const MAX_ID_BYTES: usize = 256;
const MAX_TEXT_BYTES: usize = 1024;

/// Parses and validates one message. `now` is the wall clock in milliseconds (used only
/// for the future-skew check).
pub fn parse_event(
    payload: &[u8],
    limits: &ValidationLimits,
    now: EventTime,
) -> Result<Event, Rejection> {
    if payload.len() > limits.max_event_bytes {
        return Err(Rejection::new(
            RejectReason::TooLarge,
            format!(
                "{} bytes exceeds the limit of {}",
                payload.len(),
                limits.max_event_bytes
            ),
        ));
    }
    let text = std::str::from_utf8(payload)
        .map_err(|e| Rejection::new(RejectReason::InvalidUtf8, format!("not UTF-8: {e}")))?;
    let fields = read_fields(text)?;
    build_event(fields, limits, now)
}

/// A JSON value as read for a known key: scalars kept, compound values only named.
#[derive(Debug, Clone, PartialEq)]
enum Scalar<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
    Null,
    Array,
    Object,
}

impl Scalar<'_> {
    fn json_type(&self) -> &'static str {
        match self {
            Scalar::Str(_) => "string",
            Scalar::Int(_) | Scalar::UInt(_) | Scalar::Float(_) => "number",
            Scalar::Bool(_) => "boolean",
            Scalar::Null => "null",
            Scalar::Array => "array",
            Scalar::Object => "object",
        }
    }
}

impl<'de> de::Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Scalar::UInt(v))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Array)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Object)
            }
        }
        d.deserialize_any(V)
    }
}

/// The keys the engine reads. Index = bit in the duplicate-detection mask.
const KNOWN_KEYS: [&str; 20] = [
    "event_id",
    "type",
    "verification_id",
    "tenant_id",
    "occurred_at",
    "phone_number",
    "country",
    "channel",
    "service",
    "ip",
    "device_id",
    "user_id",
    "locale",
    "user_agent",
    "provider",
    "attempt",
    "cost",
    "currency",
    "error_code",
    "ip_country",
];

#[derive(Default)]
struct Fields<'a> {
    values: [Option<Scalar<'a>>; KNOWN_KEYS.len()],
}

impl<'a> Fields<'a> {
    fn get(&self, key: &'static str) -> Option<&Scalar<'a>> {
        let i = KNOWN_KEYS.iter().position(|k| *k == key)?;
        match &self.values[i] {
            Some(Scalar::Null) | None => None,
            Some(v) => Some(v),
        }
    }
}

/// Reads the object's known keys; the side channel carries structured errors out of
/// serde, whose own error type only holds a message.
fn read_fields(text: &str) -> Result<Fields<'_>, Rejection> {
    struct Seed<'r> {
        rejection: &'r mut Option<Rejection>,
    }
    impl<'de> DeserializeSeed<'de> for Seed<'_> {
        type Value = Fields<'de>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Seed<'_> {
        type Value = Fields<'de>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut fields = Fields::default();
            while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                match KNOWN_KEYS.iter().position(|k| *k == key) {
                    Some(i) => {
                        if fields.values[i].is_some() {
                            *self.rejection = Some(Rejection::field(
                                RejectReason::DuplicateField,
                                KNOWN_KEYS[i],
                                format!("`{}` appears more than once", KNOWN_KEYS[i]),
                            ));
                            return Err(de::Error::custom("duplicate field"));
                        }
                        fields.values[i] = Some(map.next_value::<Scalar<'de>>()?);
                    }
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(fields)
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(self.not_object("an array"))
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Err(self.not_object("a string"))
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Err(self.not_object("a number"))
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Err(self.not_object("a number"))
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Err(self.not_object("a number"))
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Err(self.not_object("a boolean"))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Err(self.not_object("null"))
        }
    }
    impl Seed<'_> {
        fn not_object<E: de::Error>(self, what: &str) -> E {
            *self.rejection = Some(Rejection::new(
                RejectReason::NotAnObject,
                format!("expected a JSON object, found {what}"),
            ));
            E::custom("not an object")
        }
    }

    let mut rejection = None;
    let mut de = serde_json::Deserializer::from_str(text);
    let result = Seed {
        rejection: &mut rejection,
    }
    .deserialize(&mut de)
    .and_then(|fields| de.end().map(|()| fields));
    match (result, rejection) {
        (_, Some(rejection)) => Err(rejection),
        (Ok(fields), None) => Ok(fields),
        (Err(e), None) => Err(Rejection::new(RejectReason::InvalidJson, e.to_string())),
    }
}

fn build_event(
    f: Fields<'_>,
    limits: &ValidationLimits,
    now: EventTime,
) -> Result<Event, Rejection> {
    let type_text = required_str(&f, "type", MAX_ID_BYTES)?;
    let event_type = EventType::parse(&type_text).ok_or_else(|| {
        Rejection::field(
            RejectReason::UnknownType,
            "type",
            format!("unknown event type `{}`", truncate(&type_text, 64)),
        )
    })?;
    let event_id = required_str(&f, "event_id", MAX_ID_BYTES)?;
    let verification_id = required_str(&f, "verification_id", MAX_ID_BYTES)?;
    let tenant_id = required_str(&f, "tenant_id", MAX_ID_BYTES)?;
    let occurred_text = required_str(&f, "occurred_at", 64)?;
    let occurred_at = parse_rfc3339(&occurred_text).ok_or_else(|| {
        Rejection::field(
            RejectReason::InvalidTimestamp,
            "occurred_at",
            format!(
                "`{}` is not an RFC 3339 timestamp",
                truncate(&occurred_text, 64)
            ),
        )
    })?;
    if occurred_at < limits.min_event_time || occurred_at >= limits.max_event_time {
        return Err(Rejection::field(
            RejectReason::TimestampOutOfRange,
            "occurred_at",
            format!("{occurred_text} is outside the accepted years 2000 to 2099"),
        ));
    }
    if let Some(skew) = limits.max_future_skew_ms
        && occurred_at > now.saturating_add(skew)
    {
        return Err(Rejection::field(
            RejectReason::TimestampOutOfRange,
            "occurred_at",
            format!(
                "{occurred_text} is more than {} s in the future",
                skew / 1000
            ),
        ));
    }

    let kind = match event_type {
        EventType::Requested => EventKind::Requested(requested(&f)?),
        EventType::Sent => EventKind::Sent(Sent {
            provider: required_str(&f, "provider", MAX_ID_BYTES)?.as_ref().into(),
            attempt: attempt(&f)?,
            cost: cost(&f)?,
            currency: optional_str(&f, "currency", 3)?
                .map(|c| {
                    validated(c, "currency", "an ISO 4217 code such as USD", |c| {
                        c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase())
                    })
                })
                .transpose()?,
        }),
        EventType::Delivered => EventKind::Delivered {
            provider: required_str(&f, "provider", MAX_ID_BYTES)?.as_ref().into(),
        },
        EventType::Undelivered => EventKind::Undelivered {
            provider: required_str(&f, "provider", MAX_ID_BYTES)?.as_ref().into(),
            error_code: error_code(&f)?,
        },
        EventType::Approved => EventKind::Approved,
        EventType::CheckFailed => EventKind::CheckFailed,
    };
    Ok(Event {
        event_id: event_id.as_ref().into(),
        verification_id: verification_id.as_ref().into(),
        tenant_id: tenant_id.as_ref().into(),
        occurred_at,
        kind,
    })
}

fn requested(f: &Fields<'_>) -> Result<Requested, Rejection> {
    let phone = required_str(f, "phone_number", 16)?;
    let phone = validated(
        phone,
        "phone_number",
        "E.164 (+ and 2 to 15 digits)",
        is_e164,
    )?;
    let country = required_str(f, "country", 2)?;
    let country = validated(
        country,
        "country",
        "an ISO 3166-1 alpha-2 code such as BR",
        is_assigned_alpha2,
    )?;
    let channel_text = required_str(f, "channel", 16)?;
    let channel = Channel::parse(&channel_text).ok_or_else(|| {
        Rejection::field(
            RejectReason::InvalidField,
            "channel",
            format!("`{channel_text}` is not one of sms, voice, whatsapp, email"),
        )
    })?;
    let service = Text::from(required_str(f, "service", MAX_ID_BYTES)?.as_ref());
    let ip = match optional_str(f, "ip", 64)? {
        None => None,
        Some(text) => Some(text.parse::<IpAddr>().map_err(|_| {
            Rejection::field(
                RejectReason::InvalidField,
                "ip",
                format!("`{}` is not an IP address", truncate(&text, 64)),
            )
        })?),
    };
    let locale = optional_str(f, "locale", 64)?
        .map(|l| {
            validated(
                l,
                "locale",
                "a BCP 47 language tag such as pt-BR",
                is_bcp47_shape,
            )
        })
        .transpose()?;
    Ok(Requested {
        phone_number: phone,
        country,
        channel,
        service,
        ip,
        device_id: optional_str(f, "device_id", MAX_ID_BYTES)?.map(|c| Text::from(c.as_ref())),
        user_id: optional_str(f, "user_id", MAX_ID_BYTES)?.map(|c| Text::from(c.as_ref())),
        locale,
        user_agent: optional_str(f, "user_agent", MAX_TEXT_BYTES)?.map(|c| Text::from(c.as_ref())),
        // Not in the contract: used when upstream knows it, ignored when malformed
        // (an unknown extra field is never an error).
        ip_country: match f.get("ip_country") {
            Some(Scalar::Str(c)) if is_assigned_alpha2(c) => Some(Text::from(c.as_ref())),
            _ => None,
        },
    })
}

fn required_str<'f>(
    f: &'f Fields<'_>,
    key: &'static str,
    max: usize,
) -> Result<Cow<'f, str>, Rejection> {
    optional_str(f, key, max)?.ok_or_else(|| {
        Rejection::field(
            RejectReason::MissingField,
            key,
            format!("`{key}` is required"),
        )
    })
}

fn optional_str<'f>(
    f: &'f Fields<'_>,
    key: &'static str,
    max: usize,
) -> Result<Option<Cow<'f, str>>, Rejection> {
    match f.get(key) {
        None => Ok(None),
        Some(Scalar::Str(s)) if s.is_empty() => Err(Rejection::field(
            RejectReason::InvalidField,
            key,
            format!("`{key}` must not be empty"),
        )),
        Some(Scalar::Str(s)) if s.len() > max => Err(Rejection::field(
            RejectReason::InvalidField,
            key,
            format!("`{key}` is {} bytes, longer than {max}", s.len()),
        )),
        Some(Scalar::Str(s)) => Ok(Some(Cow::Borrowed(s.as_ref()))),
        Some(other) => Err(wrong_type(key, "a string", other)),
    }
}

fn attempt(f: &Fields<'_>) -> Result<u32, Rejection> {
    let n = match f.get("attempt") {
        None => {
            return Err(Rejection::field(
                RejectReason::MissingField,
                "attempt",
                "`attempt` is required",
            ));
        }
        Some(Scalar::UInt(n)) => *n,
        Some(Scalar::Int(n)) => u64::try_from(*n).unwrap_or(0),
        Some(other) => return Err(wrong_type("attempt", "an integer", other)),
    };
    match u32::try_from(n) {
        Ok(n) if (1..=1000).contains(&n) => Ok(n),
        _ => Err(Rejection::field(
            RejectReason::InvalidField,
            "attempt",
            format!("`attempt` is {n}; expected 1 to 1000"),
        )),
    }
}

fn cost(f: &Fields<'_>) -> Result<Option<f64>, Rejection> {
    let value = match f.get("cost") {
        None => return Ok(None),
        Some(Scalar::Float(x)) => *x,
        Some(Scalar::Int(x)) => *x as f64,
        Some(Scalar::UInt(x)) => *x as f64,
        Some(other) => return Err(wrong_type("cost", "a number", other)),
    };
    if value.is_finite() && value >= 0.0 {
        Ok(Some(value))
    } else {
        Err(Rejection::field(
            RejectReason::InvalidField,
            "cost",
            format!("`cost` is {value}; expected a non-negative number"),
        ))
    }
}

/// Providers report error codes as strings or numbers; both are kept as text.
fn error_code(f: &Fields<'_>) -> Result<Option<Text>, Rejection> {
    match f.get("error_code") {
        None => Ok(None),
        Some(Scalar::Str(s)) => Ok(Some(Text::from(truncate(s, MAX_ID_BYTES)))),
        Some(Scalar::Int(n)) => Ok(Some(Text::from(n.to_string()))),
        Some(Scalar::UInt(n)) => Ok(Some(Text::from(n.to_string()))),
        Some(other) => Err(wrong_type("error_code", "a string or an integer", other)),
    }
}

fn validated(
    value: Cow<'_, str>,
    key: &'static str,
    expected: &str,
    ok: impl Fn(&str) -> bool,
) -> Result<Text, Rejection> {
    if ok(&value) {
        Ok(Text::from(value.as_ref()))
    } else {
        Err(Rejection::field(
            RejectReason::InvalidField,
            key,
            format!("`{}` is not {expected}", truncate(&value, 64)),
        ))
    }
}

fn wrong_type(key: &'static str, expected: &str, found: &Scalar<'_>) -> Rejection {
    Rejection::field(
        RejectReason::InvalidField,
        key,
        format!("`{key}` must be {expected}, found {}", found.json_type()),
    )
}

/// `+` then a non-zero digit and 1 to 14 more digits (ITU-T E.164).
pub fn is_e164(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 3
        && b.len() <= 16
        && b[0] == b'+'
        && (b'1'..=b'9').contains(&b[1])
        && b[2..].iter().all(u8::is_ascii_digit)
}

/// The shape of a BCP 47 tag: a 2–8 letter primary subtag, then 1–8 alphanumeric
/// subtags separated by `-`. Registry membership is checked where locales are used.
fn is_bcp47_shape(s: &str) -> bool {
    let mut parts = s.split('-');
    let primary_ok = parts
        .next()
        .is_some_and(|p| (2..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphabetic()));
    primary_ok
        && parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: EventTime = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    fn parse(s: &str) -> Result<Event, Rejection> {
        parse_event(s.as_bytes(), &ValidationLimits::default(), NOW)
    }

    fn reason(s: &str) -> (RejectReason, Option<&'static str>) {
        let r = parse(s).expect_err("should be rejected");
        (r.reason, r.field)
    }

    const REQ: &str = r#"{"event_id":"e1","type":"verification.requested","verification_id":"v1","tenant_id":"t1","occurred_at":"2025-12-31T23:00:00.000Z","phone_number":"+5511999990000","country":"BR","channel":"sms","service":"login","ip":"203.0.113.7","locale":"pt-BR","extra":{"nested":[1,2]}}"#;

    #[test]
    fn accepts_a_requested_event_with_extras() {
        let e = parse(REQ).unwrap();
        assert_eq!(e.verification_id, "v1");
        match e.kind {
            EventKind::Requested(r) => {
                assert_eq!(r.country, "BR");
                assert_eq!(r.channel, Channel::Sms);
                assert_eq!(r.ip, Some("203.0.113.7".parse().unwrap()));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn fields_of_other_types_are_extras_not_errors() {
        let e = parse(r#"{"event_id":"e2","type":"verification.approved","verification_id":"v1","tenant_id":"t1","occurred_at":"2025-12-31T23:00:01Z","country":5,"attempt":"x"}"#).unwrap();
        assert_eq!(e.kind, EventKind::Approved);
    }

    #[test]
    fn ip_country_is_an_optional_extension_never_an_error() {
        let with =
            |c: &str| REQ.replacen("\"locale\"", &format!("\"ip_country\":{c},\"locale\""), 1);
        let ip_country = |s: &str| match parse(s).unwrap().kind {
            EventKind::Requested(r) => r.ip_country,
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(ip_country(&with("\"NG\"")), Some(Text::from("NG")));
        assert_eq!(ip_country(&with("\"Nigeria\"")), None);
        assert_eq!(ip_country(&with("7")), None);
        assert_eq!(ip_country(REQ), None);
    }

    #[test]
    fn error_code_may_be_number_or_string() {
        let base = r#"{"event_id":"e","type":"verification.undelivered","verification_id":"v","tenant_id":"t","occurred_at":"2025-12-31T23:00:01Z","provider":"p","error_code":"#;
        for (code, want) in [("30008", "30008"), ("\"EXPIRED\"", "EXPIRED")] {
            match parse(&format!("{base}{code}}}")).unwrap().kind {
                EventKind::Undelivered { error_code, .. } => {
                    assert_eq!(error_code.as_deref(), Some(want))
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn every_rejection_kind_has_its_reason() {
        use RejectReason::*;
        assert_eq!(reason("{\"a\":"), (InvalidJson, None));
        assert_eq!(reason("{} trailing"), (InvalidJson, None));
        assert_eq!(reason("[1,2]"), (NotAnObject, None));
        assert_eq!(reason("\"text\""), (NotAnObject, None));
        assert_eq!(
            reason(r#"{"type":"verification.approved"}"#),
            (MissingField, Some("event_id"))
        );
        assert_eq!(
            reason(r#"{"event_id":"e","type":"verification.exploded"}"#),
            (UnknownType, Some("type"))
        );
        assert_eq!(
            reason(r#"{"event_id":"e","type":"x","type":"y"}"#),
            (DuplicateField, Some("type"))
        );
        assert_eq!(
            reason(r#"{"event_id":7,"type":"verification.approved"}"#),
            (InvalidField, Some("event_id"))
        );
        let approved = |at: &str| {
            format!(
                r#"{{"event_id":"e","type":"verification.approved","verification_id":"v","tenant_id":"t","occurred_at":"{at}"}}"#
            )
        };
        assert_eq!(
            reason(&approved("yesterday")),
            (InvalidTimestamp, Some("occurred_at"))
        );
        assert_eq!(
            reason(&approved("1970-01-01T00:00:00Z")),
            (TimestampOutOfRange, Some("occurred_at"))
        );
        assert_eq!(
            reason(&approved("2100-01-01T00:00:00Z")),
            (TimestampOutOfRange, Some("occurred_at"))
        );
        // Ahead of the wall clock is fine by default, and refused when asked for.
        assert!(parse(&approved("2030-01-01T00:00:00Z")).is_ok());
        let strict = ValidationLimits {
            max_future_skew_ms: Some(3_600_000),
            ..Default::default()
        };
        let far = approved("2030-01-01T00:00:00Z");
        let r = parse_event(far.as_bytes(), &strict, NOW).unwrap_err();
        assert_eq!(
            (r.reason, r.field),
            (TimestampOutOfRange, Some("occurred_at"))
        );
        let bad_req = |field: &str, value: &str| {
            let mut v: serde_json::Value = serde_json::from_str(REQ).unwrap();
            v[field] = serde_json::from_str(value).unwrap();
            reason(&v.to_string())
        };
        assert_eq!(
            bad_req("phone_number", "\"5511999990000\""),
            (InvalidField, Some("phone_number"))
        );
        assert_eq!(
            bad_req("phone_number", "\"+0511\""),
            (InvalidField, Some("phone_number"))
        );
        assert_eq!(
            bad_req("country", "\"UK\""),
            (InvalidField, Some("country"))
        );
        assert_eq!(
            bad_req("channel", "\"pigeon\""),
            (InvalidField, Some("channel"))
        );
        assert_eq!(bad_req("ip", "\"999.1.1.1\""), (InvalidField, Some("ip")));
        assert_eq!(bad_req("service", "null"), (MissingField, Some("service")));
        assert_eq!(
            bad_req("tenant_id", "\"\""),
            (InvalidField, Some("tenant_id"))
        );
        assert_eq!(
            bad_req("locale", "\"not a locale\""),
            (InvalidField, Some("locale"))
        );
        let sent = |extra: &str| {
            format!(
                r#"{{"event_id":"e","type":"verification.sent","verification_id":"v","tenant_id":"t","occurred_at":"2025-12-31T23:00:00Z","provider":"p"{extra}}}"#
            )
        };
        assert_eq!(reason(&sent("")), (MissingField, Some("attempt")));
        assert_eq!(
            reason(&sent(r#","attempt":0"#)),
            (InvalidField, Some("attempt"))
        );
        assert_eq!(
            reason(&sent(r#","attempt":1.5"#)),
            (InvalidField, Some("attempt"))
        );
        assert_eq!(
            reason(&sent(r#","attempt":1,"cost":-1"#)),
            (InvalidField, Some("cost"))
        );
        assert_eq!(
            reason(&sent(r#","attempt":1,"currency":"usd""#)),
            (InvalidField, Some("currency"))
        );
        assert!(parse(&sent(r#","attempt":2,"cost":0.0071,"currency":"USD""#)).is_ok());
    }

    #[test]
    fn size_and_encoding_limits() {
        let limits = ValidationLimits {
            max_event_bytes: 100,
            ..Default::default()
        };
        let r = parse_event(REQ.as_bytes(), &limits, NOW).unwrap_err();
        assert_eq!(r.reason, RejectReason::TooLarge);
        let r = parse_event(
            b"{\"event_id\":\"\xff\"}",
            &ValidationLimits::default(),
            NOW,
        )
        .unwrap_err();
        assert_eq!(r.reason, RejectReason::InvalidUtf8);
        let r = parse_event(b"", &ValidationLimits::default(), NOW).unwrap_err();
        assert_eq!(r.reason, RejectReason::InvalidJson);
    }

    #[test]
    fn escaped_strings_are_decoded() {
        let s = REQ.replace(r#""service":"login""#, r#""service":"log\u0069n""#);
        match parse(&s).unwrap().kind {
            EventKind::Requested(r) => assert_eq!(r.service, "login"),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[cfg(test)]
mod hostile {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::{Value, json};
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| json!(f)),
            "\\PC{0,30}".prop_map(Value::String),
            Just(json!("2026-01-05T10:00:00.000Z")),
            Just(json!("+5511987654321")),
            Just(json!("\u{0}\u{202e}")),
        ];
        leaf.prop_recursive(5, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("[a-z_]{1,10}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Events with every known field present, each set to any value.
    fn event() -> impl Strategy<Value = Vec<u8>> {
        let keys = [
            "event_id",
            "type",
            "verification_id",
            "tenant_id",
            "occurred_at",
            "phone_number",
            "country",
            "channel",
            "service",
            "ip",
            "device_id",
            "provider",
            "attempt",
            "cost",
            "currency",
            "error_code",
            "locale",
        ];
        (
            prop::collection::vec(value(), keys.len()),
            prop_oneof![
                Just("verification.requested"),
                Just("verification.sent"),
                Just("verification.approved"),
                Just("nope"),
            ],
        )
            .prop_map(move |(values, ty)| {
                let mut map: serde_json::Map<String, serde_json::Value> =
                    keys.iter().map(|k| k.to_string()).zip(values).collect();
                if ty != "nope" {
                    map.insert("type".into(), serde_json::json!(ty));
                }
                serde_json::to_vec(&map).unwrap_or_default()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn any_bytes_are_an_event_or_a_rejection(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse_event(&bytes, &ValidationLimits::default(), 0);
        }

        #[test]
        fn any_field_values_are_an_event_or_a_rejection(payload in event()) {
            match parse_event(&payload, &ValidationLimits::default(), 0) {
                Ok(e) => prop_assert!(!e.event_id.is_empty()),
                Err(r) => prop_assert!(!r.detail.is_empty()),
            }
        }

        /// Nesting and size at and past the limits: rejected, never recursed
        /// into without bound.
        #[test]
        fn deep_and_large_inputs_are_rejected(depth in 1usize..20_000, pad in 0usize..70_000) {
            let deep = format!(
                "{{\"event_id\":\"e\",\"x\":{}1{}}}",
                "[".repeat(depth),
                "]".repeat(depth)
            );
            let limits = ValidationLimits::default();
            let result = parse_event(deep.as_bytes(), &limits, 0);
            prop_assert!(result.is_err());
            let big = format!("{{\"event_id\":\"{}\"}}", "e".repeat(pad));
            let result = parse_event(big.as_bytes(), &limits, 0);
            prop_assert!(result.is_err());
            if big.len() > limits.max_event_bytes {
                prop_assert_eq!(result.unwrap_err().reason, RejectReason::TooLarge);
            }
        }
    }
}
