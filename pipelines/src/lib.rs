//! The streaming core of veriflow: event model, validation, dedup, lifecycle join,
//! watermarks and checkpoints. It knows streams and state, not Kafka or HTTP: sources
//! and sinks live in `veriflow-connectors`.
//!
//! Data flow for one input partition ([`PartitionPipeline`]):
//!
//! ```text
//! bytes ─ validate ─┬─ rejected ──────────────────────────▶ dead-letter output
//!                   └─ event ─ watermark ─┬─ late ─────────▶ late output
//!                                         └─ dedup ─ join ─ timers ─▶ outcomes
//!                                                                 └─▶ orphans (late output)
//! ```

pub mod alerts;
pub mod checkpoint;
pub mod config;
pub mod country;
pub mod engine;
pub mod event;
pub mod features;
pub mod feedback;
pub mod forecast;
pub mod key;
pub mod kpi;
pub mod lifecycle;
pub mod live;
pub mod outcome;
pub mod partition;
pub mod reject;
pub mod routes;
pub mod scoring;
pub mod time;
pub mod time_queue;
pub mod validate;

pub use config::{PipelineConfig, PipelineSettings};
pub use engine::{CheckpointReport, Engine, PartitionView, Restored};
pub use event::{Channel, Event, EventKind, EventType};
pub use live::{LiveFeatures, Peeked, SharedFeatures, SharedPartition};
pub use outcome::{Outcome, OutcomeKind};
pub use partition::{
    InputRecord, Output, OutputId, PartitionPipeline, PartitionState, PartitionStats, SinkPosition,
};
pub use reject::{RejectReason, Rejected, Rejection};
pub use validate::ValidationLimits;

/// Short text (ids, tenant, country, provider, phone): up to 24 bytes inline, so
/// most event fields and state keys never touch the heap.
pub type Text = compact_str::CompactString;
