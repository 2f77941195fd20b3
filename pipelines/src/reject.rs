//! Why an input record did not become part of the results, in a form machines can read.
//!
//! Every input record that is not accepted leaves the engine as a [`Rejected`] record:
//! the original bytes and key, where they came from, and a [`RejectReason`]. Bad input
//! goes to the dead-letter output; valid events that came too late (or whose
//! verification never started) go to the late output. Nothing is dropped silently.

use serde::Serialize;

/// Machine-readable reason codes. The string forms are part of the public contract
/// (DLQ header `veriflow.reason`), so never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// The message exceeds `pipeline.max_event_bytes`.
    TooLarge,
    /// The message is not UTF-8.
    InvalidUtf8,
    /// The message is not parseable JSON (or has trailing bytes).
    InvalidJson,
    /// Valid JSON, but not an object.
    NotAnObject,
    /// The same key appears twice in the object.
    DuplicateField,
    /// A required field is absent (or null).
    MissingField,
    /// A field has the wrong JSON type or an invalid value (E.164, ISO country, ...).
    InvalidField,
    /// `type` is not one of the contract's event types.
    UnknownType,
    /// `occurred_at` is not RFC 3339.
    InvalidTimestamp,
    /// `occurred_at` is before 2000 or further in the future than the allowed skew.
    TimestampOutOfRange,
    /// A valid event older than the partition's watermark (beyond the allowed lateness).
    Late,
    /// A valid event whose `verification.requested` never arrived within the TTL.
    Orphan,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::TooLarge => "too_large",
            RejectReason::InvalidUtf8 => "invalid_utf8",
            RejectReason::InvalidJson => "invalid_json",
            RejectReason::NotAnObject => "not_an_object",
            RejectReason::DuplicateField => "duplicate_field",
            RejectReason::MissingField => "missing_field",
            RejectReason::InvalidField => "invalid_field",
            RejectReason::UnknownType => "unknown_type",
            RejectReason::InvalidTimestamp => "invalid_timestamp",
            RejectReason::TimestampOutOfRange => "timestamp_out_of_range",
            RejectReason::Late => "late",
            RejectReason::Orphan => "orphan",
        }
    }

    /// Dead-letter reasons are about the bytes; late and orphan are about time.
    pub fn is_dead_letter(self) -> bool {
        !matches!(self, RejectReason::Late | RejectReason::Orphan)
    }
}

/// The verdict on one input: reason, offending field, and a human explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: RejectReason,
    pub field: Option<&'static str>,
    pub detail: String,
}

impl Rejection {
    pub fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Rejection {
            reason,
            field: None,
            detail: detail.into(),
        }
    }

    pub fn field(reason: RejectReason, field: &'static str, detail: impl Into<String>) -> Self {
        Rejection {
            reason,
            field: Some(field),
            detail: detail.into(),
        }
    }
}

/// A rejected input record with everything needed to inspect or replay it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub rejection: Rejection,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}
