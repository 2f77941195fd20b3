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
}
