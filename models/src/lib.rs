//! veriflow's scoring models: delivery success per provider (for routing) and
//! SMS-pumping fraud risk, both candle logistic models over the pipeline's own
//! feature vectors.
//!
//! - [`vector`]: `Features` + live route statistics → model inputs (shared by
//!   training and serving: no skew).
//! - [`dataset`]: examples from the outputs of the very pipeline code the
//!   stream runs, replayed over history (the runtime drives the replay), with
//!   outcomes (and, from the simulator, fraud truth) as labels.
//! - [`logistic`]: training (candle, AdamW), Platt calibration, batched inference.
//! - [`bundle`]: the two models with their card; save/load as safetensors + JSON,
//!   refusing a model whose feature schema differs from this build's.
//! - [`evaluate`]: time-split holdout metrics and the routing report.
//! - [`router`]: a tenant's allow/deny lists, cost ceiling and retries → candidates;
//!   exploration.
//! - [`metrics`]: the metrics and reports (fraud, success, routing).

pub mod bundle;
pub mod dataset;
pub mod evaluate;
pub mod logistic;
pub mod metrics;
pub mod router;
pub mod vector;

pub use bundle::{ModelCard, RankedRoute, Registry, Score, ScoringModels};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("no training data")]
    NoData,
    #[error("a row has {found} features, the model expects {expected}")]
    Width { expected: usize, found: usize },
    #[error(
        "model {model} was trained on feature schema {found}, this build computes {expected}; \
         retrain it (`veriflow train`) — the current model stays in use"
    )]
    SchemaMismatch {
        model: String,
        expected: String,
        found: String,
    },
    #[error("the model file lacks tensor {0}")]
    MissingTensor(String),
    #[error("the model is corrupt: {0}")]
    Corrupt(String),
    #[error("reading or writing {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("model card {path}: {source}")]
    Card {
        path: String,
        source: serde_json::Error,
    },
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
}
