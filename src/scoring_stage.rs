//! `veriflow run`'s scoring stage: each accepted request's features, scored by
//! the loaded models against the global route statistics, as a
//! `verifications.scored` record (contract §2).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use veriflow_models::vector::RouteView as LiveRoute;
use veriflow_models::{Registry, ScoringModels};
use veriflow_pipelines::features::FeatureRecord;
use veriflow_pipelines::routes::RouteSnapshot;
use veriflow_pipelines::time::format_rfc3339;

/// The A/B arm every request is in until a challenger is configured.
const CHAMPION: &str = "champion";

pub struct ScoringStage {
    registry: Registry,
}

impl ScoringStage {
    /// Loads and checks the models in `dir`.
    pub fn load(dir: &Path) -> anyhow::Result<ScoringStage> {
        let registry = Registry::default();
        let models = registry
            .load(dir)
            .with_context(|| format!("loading scoring models from {}", dir.display()))?;
        tracing::info!(
            model = %models.card.name,
            version = %models.card.version,
            schema = %models.card.feature_schema,
            "scoring models loaded"
        );
        Ok(ScoringStage { registry })
    }

    pub fn models(&self) -> Option<Arc<ScoringModels>> {
        self.registry.current()
    }
}

/// The `verifications.scored` JSON of one request.
pub fn scored_json(
    models: &ScoringModels,
    record: &FeatureRecord,
    routes: &BTreeMap<(String, String), RouteSnapshot>,
) -> anyhow::Result<Vec<u8>> {
    let r = &record.request;
    let country = r.country.to_string();
    let score = models.score(
        &record.features,
        &country,
        &models.card.providers,
        |provider| LiveRoute::at(routes.get(&(country.clone(), provider.to_string())), r.at),
    )?;
    let card = &models.card;
    let decision = if score.fraud_score >= card.block_threshold {
        "block"
    } else if score.fraud_score >= card.review_threshold {
        "review"
    } else {
        "allow"
    };
    let json = serde_json::json!({
        "scored_id": record.features_id(),
        "verification_id": r.verification_id.as_str(),
        "tenant_id": r.tenant_id.as_str(),
        "event_id": r.event_id.as_str(),
        "requested_at": format_rfc3339(r.at),
        "country": country,
        "features": record.features,
        "fraud_score": score.fraud_score,
        "fraud_decision": decision,
        "fraud_reasons": score.fraud_reasons,
        "routes": score.routes,
        "model": {
            "fraud": {"name": format!("{}-fraud", card.name), "version": card.version},
            "success": {"name": format!("{}-success", card.name), "version": card.version},
            "feature_schema": card.feature_schema,
        },
        "variant": CHAMPION,
    });
    Ok(serde_json::to_vec(&json)?)
}
