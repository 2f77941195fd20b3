//! veriflow's shared vocabulary, below every other crate:
//!
//! - [`config`]: how configuration values are written (durations such as `10m`,
//!   `"off"` switches, lists from environment variables) and the error that
//!   names the key that is wrong. Each crate's own config type deserializes
//!   itself with these helpers and keeps its defaults in its `Default`.
//! - [`hash`]: hashes that must never change between builds (partitioning,
//!   A/B arms, exploration seeds, deduplication keys).
//! - [`scoring`]: the scoring domain that the pipeline, the models, the API and
//!   the runtime all speak: fraud decisions and thresholds, a tenant's provider
//!   policy, the verdict on one request.
//! - [`truth`]: the ground-truth record the simulator writes and training reads.

pub mod config;
pub mod hash;
pub mod scoring;
pub mod truth;
