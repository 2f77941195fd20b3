//! The deployable unit: the models, their card, and the registry that swaps
//! them atomically.
//!
//! Three candle logistic models make the two scores:
//! - **fraud**: the request's features → P(SMS pumping);
//! - **success**, in two halves joined by a fitted [`Stack`]: **delivery**
//!   (a route's live statistics → P(the provider delivers)) and **approval**
//!   (the request's features → P(the user enters the code | delivered)).
//!   Routes rank by delivery alone, which the route statistics measure
//!   directly; who is asking moves every route's P(success) together.
//!
//! On disk a version is a directory: `model.safetensors` (the tensors) and
//! `card.json` (what it reads, in which order, what it was trained on, how it
//! scored). Loading recomputes this build's feature names and refuses a model
//! whose schema differs: a model silently reading shifted columns is the worst
//! failure a scoring system can have.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use veriflow_pipelines::features::{FEATURE_SCHEMA_VERSION, Features};

use crate::ModelError;
use crate::logistic::{Logistic, Stack};
use crate::metrics::{FraudMetrics, RoutingReport, SuccessMetrics};
use crate::router::candidates;
use crate::vector::{
    DELIVERY_FEATURE_NAMES, RouteView, delivery_vector, fraud_feature_names, fraud_vector,
    schema_id,
};
use veriflow_common::scoring::ProviderPolicy;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    pub name: String,
    pub version: String,
    /// The pipeline's `FEATURE_SCHEMA_VERSION` when trained.
    pub pipeline_feature_schema: u32,
    /// `schema_id` of the inputs (checked at load).
    pub feature_schema: String,
    /// The fraud and approval models' inputs, in order.
    pub fraud_features: Vec<String>,
    /// The delivery model's inputs, in order (absent from cards written before
    /// the delivery model existed: those are refused as another schema).
    #[serde(default)]
    pub delivery_features: Vec<String>,
    /// The candidate providers, and the countries seen in training.
    pub providers: Vec<String>,
    pub countries: Vec<String>,
    /// Mean cost of one message per route (`country/provider`), from history;
    /// what tenants' cost ceilings are checked against.
    #[serde(default)]
    pub route_costs: BTreeMap<String, f64>,
    pub training: TrainingInfo,
    pub fraud: FraudMetrics,
    pub success: SuccessMetrics,
    pub routing: RoutingReport,
    /// Suggested fraud thresholds (tenants may set their own).
    pub review_threshold: f32,
    pub block_threshold: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingInfo {
    pub source: String,
    /// The `[pipeline]` settings the history was replayed with (absent from
    /// cards written before they were recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<veriflow_pipelines::PipelineSettings>,
    pub seed: u64,
    /// Request times covered (RFC 3339), and where the holdout starts.
    pub from: String,
    pub until: String,
    pub holdout_from: String,
    pub train_rows: usize,
    pub holdout_rows: usize,
    pub epochs: usize,
    pub seconds: f64,
}

/// The models plus their card.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoringModels {
    pub card: ModelCard,
    pub fraud: Logistic,
    pub delivery: Logistic,
    pub approval: Logistic,
    pub stack: Stack,
}

/// A provider with its predicted probability of success.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RankedRoute {
    pub provider: String,
    pub p_success: f32,
}

/// A verification's scores.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Score {
    pub fraud_score: f32,
    /// The features that pushed the fraud score up most, strongest first.
    pub fraud_reasons: Vec<String>,
    /// Best first.
    pub routes: Vec<RankedRoute>,
}

impl ScoringModels {
    /// Scores one request: fraud risk with reasons, and every candidate provider
    /// ranked by calibrated P(success). `route` gives a provider's live route
    /// statistics in the request's country.
    pub fn score(
        &self,
        features: &Features,
        candidates: &[String],
        route: impl Fn(&str) -> RouteView,
    ) -> Result<Score, ModelError> {
        let fraud_row = fraud_vector(features, &self.card.fraud_features);
        let fraud_score = self.fraud.predict(std::slice::from_ref(&fraud_row))?[0];
        let mut contributions: Vec<(f32, &String)> = self
            .fraud
            .contributions(&fraud_row)
            .into_iter()
            .zip(&self.card.fraud_features)
            .filter(|(c, _)| *c > 0.0)
            .collect();
        contributions.sort_by(|a, b| b.0.total_cmp(&a.0));
        let views: Vec<RouteView> = candidates.iter().map(|p| route(p)).collect();
        let p = self.success(&fraud_row, &views)?;
        let mut routes: Vec<RankedRoute> = candidates
            .iter()
            .zip(p)
            .map(|(provider, p_success)| RankedRoute {
                provider: provider.clone(),
                p_success,
            })
            .collect();
        crate::router::rank(&mut routes);
        Ok(Score {
            fraud_score,
            fraud_reasons: contributions
                .iter()
                .take(3)
                .map(|(_, n)| (*n).clone())
                .collect(),
            routes,
        })
    }

    /// P(success) of one request (its fraud vector) through each route,
    /// given the routes' live statistics.
    pub fn success(&self, fraud_row: &[f32], routes: &[RouteView]) -> Result<Vec<f32>, ModelError> {
        let approval = self
            .approval
            .calibrated_logits(&[fraud_row])?
            .first()
            .copied()
            .unwrap_or_default();
        let rows: Vec<Vec<f32>> = routes.iter().map(delivery_vector).collect();
        Ok(self
            .delivery
            .calibrated_logits(&rows)?
            .into_iter()
            .map(|d| self.stack.combine(d, approval))
            .collect())
    }

    /// [`ScoringModels::score`] over `providers` (the routes live statistics
    /// know, and the card's) as far as the tenant's policy allows them (and,
    /// for a retry, not those already tried).
    #[allow(clippy::too_many_arguments)]
    pub fn route(
        &self,
        features: &Features,
        country: &str,
        providers: &[String],
        policy: &ProviderPolicy,
        tried: &[String],
        route: impl Fn(&str) -> RouteView,
    ) -> Result<Score, ModelError> {
        let allowed = candidates(providers, country, policy, &self.card.route_costs, tried);
        self.score(features, &allowed, route)
    }

    /// Writes `dir/model.safetensors` and `dir/card.json`.
    pub fn save(&self, dir: &Path) -> Result<(), ModelError> {
        let io = |source| ModelError::Io {
            path: dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut tensors = self.fraud.tensors("fraud")?;
        tensors.extend(self.delivery.tensors("delivery")?);
        tensors.extend(self.approval.tensors("approval")?);
        tensors.extend(self.stack.tensors("success.stack")?);
        candle_core::safetensors::save(&tensors, dir.join("model.safetensors"))?;
        let card = serde_json::to_string_pretty(&self.card).map_err(|source| ModelError::Card {
            path: dir.display().to_string(),
            source,
        })?;
        std::fs::write(dir.join("card.json"), card + "\n").map_err(io)
    }

    /// Reads a version directory and checks its feature schema against this build.
    pub fn load(dir: &Path) -> Result<ScoringModels, ModelError> {
        let card_path = dir.join("card.json");
        let text = std::fs::read_to_string(&card_path).map_err(|source| ModelError::Io {
            path: card_path.display().to_string(),
            source,
        })?;
        let card: ModelCard = serde_json::from_str(&text).map_err(|source| ModelError::Card {
            path: card_path.display().to_string(),
            source,
        })?;
        let names = fraud_feature_names();
        let expected = schema_id(&names);
        if card.pipeline_feature_schema != FEATURE_SCHEMA_VERSION
            || card.feature_schema != expected
            || card.fraud_features != names
            || card.delivery_features != DELIVERY_FEATURE_NAMES
        {
            return Err(ModelError::SchemaMismatch {
                model: format!("{} {}", card.name, card.version),
                expected,
                found: card.feature_schema.clone(),
            });
        }
        let path = dir.join("model.safetensors");
        let tensors: HashMap<String, candle_core::Tensor> =
            candle_core::safetensors::load(&path, &candle_core::Device::Cpu)?;
        let fraud = Logistic::from_tensors(&tensors, "fraud")?;
        let delivery = Logistic::from_tensors(&tensors, "delivery")?;
        let approval = Logistic::from_tensors(&tensors, "approval")?;
        let stack = Stack::from_tensors(&tensors, "success.stack")?;
        if fraud.weights.len() != names.len()
            || approval.weights.len() != names.len()
            || delivery.weights.len() != DELIVERY_FEATURE_NAMES.len()
        {
            return Err(ModelError::Corrupt(
                "tensor widths do not match the card's features".into(),
            ));
        }
        Ok(ScoringModels {
            card,
            fraud,
            delivery,
            approval,
            stack,
        })
    }
}

/// The models in use, swapped whole: a scorer holds one `Arc` for a batch, so
/// a swap never mixes two versions inside one decision.
#[derive(Default)]
pub struct Registry {
    current: RwLock<Option<Arc<ScoringModels>>>,
}

impl Registry {
    pub fn current(&self) -> Option<Arc<ScoringModels>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Loads and validates `dir`; on success it becomes current. On error the
    /// models in use stay.
    pub fn load(&self, dir: &Path) -> Result<Arc<ScoringModels>, ModelError> {
        let models = Arc::new(ScoringModels::load(dir)?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(models.clone());
        Ok(models)
    }
}
