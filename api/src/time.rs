//! Times on the API's surface: Unix milliseconds inside, RFC 3339 outside.

use chrono::{DateTime, SecondsFormat, Utc};

/// Unix milliseconds as RFC 3339 (UTC, milliseconds).
pub fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// An RFC 3339 time given in `field`, as Unix milliseconds.
pub(crate) fn parse_time(field: &str, text: &str) -> Result<i64, crate::problem::Problem> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            crate::problem::Problem::bad_request(format!("{field} must be an RFC 3339 time"))
        })
}
