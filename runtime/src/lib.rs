//! veriflow's runtime: hosts the engine between a source and its sinks.
//!
//! - [`driver`]: the one loop that drives an `Engine` from a source (batches,
//!   timers, idle advance, back-pressure, checkpoint then commit, rebalance and
//!   rejoin, until-end), writing outputs to topics and handing them to
//!   [`driver::Stage`]s;
//! - [`topics`]: the one list of output topics;
//! - [`config`]: the whole configuration, composed of each crate's own
//!   section, validated at load;
//! - the stages: [`scoring`] (models, rollout, the verdict), [`kpi`]
//!   (DataFusion → InfluxDB), [`fanout`] (outputs → webhooks), [`lake`]
//!   (outputs → Parquet history), [`metrics`],
//!   [`summary`]; and [`routes`], the global route statistics;
//! - [`runtime`]: `veriflow run` and `veriflow api` as a [`Runtime`] that owns
//!   every thread it starts and stops them in a declared order;
//! - [`replay`]: history through the same driver in-process (training,
//!   forecast evaluation, the bench); [`demo`] and [`simulate`].
//!
//! The binary is only the command line and glue over this crate.

pub mod api_host;
pub mod config;
pub mod demo;
pub mod driver;
pub mod error;
pub mod fanout;
pub mod forecast_eval;
pub mod history;
pub mod kpi;
pub mod lake;
pub mod metrics;
pub mod pace;
pub mod replay;
pub mod routes;
pub mod runtime;
pub mod scoring;
pub mod simulate;
pub mod sql;
pub mod summary;
pub mod topics;

pub use config::{Config, ConfigLoadError};
pub use error::{Result, RuntimeError};
pub use runtime::{RunOptions, Runtime, run, serve_api};
