//! How configuration values are written, for every crate's config type.
//!
//! Config types hold plain values (`std::time::Duration`, `Option<String>`,
//! `Vec<...>`) and deserialize them with the helpers here, so that a value is
//! parsed and checked once, when the file is loaded, and used as a typed value
//! everywhere after:
//!
//! - durations are text with a unit: `1500ms`, `30s`, `10m`, `2h`, `5d`
//!   ([`duration`], [`duration_list`]);
//! - `"off"` turns an optional feature off ([`duration_or_off`], [`or_off`]);
//! - an empty string means "not set" ([`empty_as_none`]);
//! - a list may also be one comma-separated string, which is how environment
//!   variables write lists ([`string_list`], [`duration_list`]).
//!
//! Semantic checks (ranges, relations between keys) are each config type's
//! [`Validate`] impl, reporting the key that is wrong in a [`ConfigError`].

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serializer};

/// A configuration value that is wrong, and where: `key` is the dotted path
/// inside the config type that reported it (callers prefix their section).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            message: message.into(),
        }
    }

    /// The same error seen from the enclosing section (`section.key`).
    pub fn within(mut self, section: &str) -> Self {
        self.key = if self.key.is_empty() {
            section.to_owned()
        } else {
            format!("{section}.{}", self.key)
        };
        self
    }
}

/// Semantic checks of a deserialized config type, run once at load before the
/// configuration is used for anything.
pub trait Validate {
    fn validate(&self) -> Result<(), ConfigError>;
}

/// `Err(ConfigError)` for `key` unless `ok`.
pub fn ensure(ok: bool, key: &str, message: impl Into<String>) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(key, message))
    }
}

/// Parses `1500ms`, `30s`, `10m` (or `10min`), `2h`, `1d`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    let unit_ms: u64 = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(unit_ms).map(Duration::from_millis)
}

/// The shortest text [`parse_duration`] reads back as `d` (whole milliseconds).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms > 0 && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

const DURATION_EXAMPLES: &str = "a duration such as 1500ms, 30s, 10m, 2h or 5d";

fn duration_from_str<E: de::Error>(text: &str) -> Result<Duration, E> {
    parse_duration(text).ok_or_else(|| E::custom(format!("{text:?} is not {DURATION_EXAMPLES}")))
}

/// `#[serde(with = "duration")]` for a `std::time::Duration` written as text.
pub mod duration {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        duration_from_str(&text)
    }
}

/// `#[serde(with = "duration_or_off")]` for an `Option<Duration>`: `"off"` is `None`.
pub mod duration_or_off {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&format_duration(*d)),
            None => s.serialize_str("off"),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = String::deserialize(d)?;
        if text.trim() == "off" {
            return Ok(None);
        }
        parse_duration(&text).map(Some).ok_or_else(|| {
            de::Error::custom(format!("{text:?} is not {DURATION_EXAMPLES}, or \"off\""))
        })
    }
}

/// `#[serde(with = "or_off")]` for an `Option<String>` (an address): `"off"` is `None`.
pub mod or_off {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_deref().unwrap_or("off"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        let text = String::deserialize(d)?;
        Ok((text.trim() != "off").then_some(text))
    }
}

/// `#[serde(with = "empty_as_none")]` for an optional string-like value
/// (`Option<String>`, `Option<PathBuf>`): `""` is `None`.
pub mod empty_as_none {
    use super::*;

    pub fn serialize<T: AsRef<std::ffi::OsStr>, S: Serializer>(
        v: &Option<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&v.as_ref().to_string_lossy()),
            None => s.serialize_str(""),
        }
    }

    pub fn deserialize<'de, T: From<String>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        let text = String::deserialize(d)?;
        Ok((!text.is_empty()).then(|| T::from(text)))
    }
}

/// A list written as a TOML array, or as one comma-separated string (what an
/// environment variable can hold): `["a", "b"]` or `"a,b"`. Empty items are
/// dropped, so `""` is the empty list.
fn list<'de, D: Deserializer<'de>>(d: D, what: &'static str) -> Result<Vec<String>, D::Error> {
    struct ListVisitor(&'static str);
    impl<'de> Visitor<'de> for ListVisitor {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a list of {} (or one comma-separated string)", self.0)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<String>, E> {
            Ok(v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
            let mut out = Vec::new();
            while let Some(item) = seq.next_element::<String>()? {
                out.push(item);
            }
            Ok(out)
        }
    }
    d.deserialize_any(ListVisitor(what))
}

/// `#[serde(with = "string_list")]` for a `Vec<String>` (see [`list`]).
pub mod string_list {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[String], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        list(d, "strings")
    }
}

/// `#[serde(with = "duration_list")]` for a `Vec<Duration>` (see [`list`]).
pub mod duration_list {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|d| format_duration(*d)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        list(d, "durations")?
            .iter()
            .map(|t| duration_from_str(t))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        #[serde(with = "duration")]
        ttl: Duration,
        #[serde(with = "duration_or_off")]
        skew: Option<Duration>,
        #[serde(with = "or_off")]
        listen: Option<String>,
        #[serde(with = "empty_as_none")]
        dir: Option<std::path::PathBuf>,
        #[serde(with = "string_list")]
        tenants: Vec<String>,
        #[serde(with = "duration_list")]
        schedule: Vec<Duration>,
    }

    #[test]
    fn values_read_as_written_and_round_trip() {
        let text = r#"
            ttl = "10m"
            skew = "off"
            listen = "127.0.0.1:80"
            dir = ""
            tenants = "acme, shopfast"
            schedule = ["5s", "1500ms", "2h"]
        "#;
        let s: Sample = toml::from_str(text).unwrap();
        assert_eq!(s.ttl, Duration::from_secs(600));
        assert_eq!(s.skew, None);
        assert_eq!(s.listen.as_deref(), Some("127.0.0.1:80"));
        assert_eq!(s.dir, None);
        assert_eq!(s.tenants, ["acme", "shopfast"]);
        assert_eq!(
            s.schedule,
            [
                Duration::from_secs(5),
                Duration::from_millis(1500),
                Duration::from_secs(7200)
            ]
        );
        let back: Sample = toml::from_str(&toml::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn bad_values_say_what_is_expected() {
        let err = toml::from_str::<Sample>(
            "ttl = \"10 minutes\"\nskew = \"off\"\nlisten = \"off\"\ndir = \"\"\ntenants = []\nschedule = []",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("\"10 minutes\" is not a duration"), "{err}");
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("m"), None);
        assert_eq!(parse_duration("99999999999999999999d"), None);
        for d in [0, 1, 999, 1000, 90_000, 3_600_000, 86_400_000 * 5] {
            let d = Duration::from_millis(d);
            assert_eq!(parse_duration(&format_duration(d)), Some(d));
        }
    }

    #[test]
    fn errors_name_their_key_from_the_outside_in() {
        let e = ConfigError::new("challenger_share", "must be between 0 and 1").within("scoring");
        assert_eq!(
            e.to_string(),
            "scoring.challenger_share: must be between 0 and 1"
        );
    }
}
