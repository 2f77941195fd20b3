//! `veriflow run`'s scoring stage: each accepted request's features, scored by
//! the loaded models against the global route statistics, as a
//! `verifications.scored` record (contract §2).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use veriflow_models::vector::RouteView as LiveRoute;
use veriflow_models::{Registry, ScoringModels};
use veriflow_pipelines::features::FeatureRecord;
use veriflow_pipelines::routes::RouteSnapshot;
use veriflow_pipelines::time::format_rfc3339;

/// The A/B arm every request is in until a challenger is configured.
const CHAMPION: &str = "champion";

pub struct ScoringStage {
    registry: Arc<Registry>,
    stop: Arc<AtomicBool>,
}

impl ScoringStage {
    /// Loads and checks the models in `dir`, then watches it: when its
    /// `card.json` changes (a new version copied in, or a symlink re-pointed),
    /// the new models are loaded and swapped in without a restart. A version that
    /// fails to load is logged and the models in use stay.
    pub fn load(dir: &Path, reload_every: Option<Duration>) -> anyhow::Result<ScoringStage> {
        let registry = Arc::new(Registry::default());
        let models = registry
            .load(dir)
            .with_context(|| format!("loading scoring models from {}", dir.display()))?;
        log_loaded(&models, "scoring models loaded");
        let stop = Arc::new(AtomicBool::new(false));
        if let Some(every) = reload_every {
            let (registry, stop, dir) = (registry.clone(), stop.clone(), dir.to_path_buf());
            let mut seen = card_stamp(&dir);
            std::thread::Builder::new()
                .name("model-reload".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(every);
                        let now = card_stamp(&dir);
                        if now == seen {
                            continue;
                        }
                        seen = now;
                        match registry.load(&dir) {
                            Ok(models) => log_loaded(&models, "scoring models reloaded"),
                            Err(e) => tracing::warn!(
                                error = %e,
                                dir = %dir.display(),
                                "new scoring models refused; the models in use stay"
                            ),
                        }
                    }
                })
                .context("starting the model reload thread")?;
        }
        Ok(ScoringStage { registry, stop })
    }

    pub fn models(&self) -> Option<Arc<ScoringModels>> {
        self.registry.current()
    }
}

impl Drop for ScoringStage {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn log_loaded(models: &ScoringModels, what: &str) {
    tracing::info!(
        model = %models.card.name,
        version = %models.card.version,
        schema = %models.card.feature_schema,
        "{what}"
    );
}

/// What identifies the card on disk now (through symlinks): its contents' length
/// and modification time, or `None` while it is missing.
fn card_stamp(dir: &Path) -> Option<(u64, std::time::SystemTime, String)> {
    let card = dir.join("card.json");
    let meta = std::fs::metadata(&card).ok()?;
    let target = std::fs::canonicalize(&card).ok()?.display().to_string();
    Some((meta.len(), meta.modified().ok()?, target))
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
