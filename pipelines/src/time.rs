//! Event time: milliseconds since the Unix epoch, UTC.
//!
//! One integer type keeps watermark arithmetic, timers and checkpoints cheap and exact;
//! RFC 3339 text is parsed once at the edge and formatted once on output.

use chrono::{DateTime, SecondsFormat, Utc};

/// Milliseconds since 1970-01-01T00:00:00Z.
pub type EventTime = i64;

pub const MILLIS_PER_SECOND: i64 = 1_000;
pub const MILLIS_PER_MINUTE: i64 = 60 * MILLIS_PER_SECOND;

/// Parses RFC 3339 (`2026-01-01T10:00:00.123Z`, `...+02:00`) into UTC milliseconds.
pub fn parse_rfc3339(text: &str) -> Option<EventTime> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc).timestamp_millis())
}

/// Formats UTC milliseconds as RFC 3339 with millisecond precision and a `Z` suffix.
pub fn format_rfc3339(t: EventTime) -> String {
    match DateTime::<Utc>::from_timestamp_millis(t) {
        Some(dt) => dt.to_rfc3339_opts(SecondsFormat::Millis, true),
        None => t.to_string(),
    }
}

/// The wall clock, in the same unit. Only used for the "absurd future" check and for
/// idle-partition handling, never for results.
pub fn now_millis() -> EventTime {
    Utc::now().timestamp_millis()
}

/// Parses a human duration such as `10m`, `30s`, `1500ms`, `2h`, `1d`.
pub fn parse_duration_ms(text: &str) -> Option<i64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let n: i64 = number.parse().ok()?;
    let unit_ms = match unit.trim() {
        "ms" => 1,
        "s" => MILLIS_PER_SECOND,
        "m" | "min" => MILLIS_PER_MINUTE,
        "h" => 60 * MILLIS_PER_MINUTE,
        "d" => 24 * 60 * MILLIS_PER_MINUTE,
        _ => return None,
    };
    n.checked_mul(unit_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_offsets_to_utc() {
        let z = parse_rfc3339("2026-03-01T10:00:00.250Z").unwrap();
        let plus2 = parse_rfc3339("2026-03-01T12:00:00.250+02:00").unwrap();
        assert_eq!(z, plus2);
        assert_eq!(format_rfc3339(z), "2026-03-01T10:00:00.250Z");
        assert!(parse_rfc3339("2026-03-01 10:00").is_none());
        assert!(parse_rfc3339("yesterday").is_none());
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration_ms("10m"), Some(600_000));
        assert_eq!(parse_duration_ms("1500ms"), Some(1500));
        assert_eq!(parse_duration_ms("2h"), Some(7_200_000));
        assert_eq!(parse_duration_ms("10"), None);
        assert_eq!(parse_duration_ms("m"), None);
    }
}
