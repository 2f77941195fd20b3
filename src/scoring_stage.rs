//! `veriflow run`'s scoring stage: each accepted request's features, scored by
//! the loaded models against the global route statistics, as a
//! `verifications.scored` record (contract §2).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use veriflow_api::routes::tenants::{FraudThresholds, ProviderPolicy};
use veriflow_api::scoring::{
    FraudDecision, ModelName, ModelVersions, RankedProvider, ScoringSettings, TenantScoring,
    Verdict,
};
use veriflow_pipelines::scoring::{
    FraudDecision as PipelineDecision, RequestScorer, ScoreNote, Scored,
};

use crate::routes_view::{RouteView, Routes};
use veriflow_models::router::{RoutePolicy, thompson_choice};
use veriflow_models::vector::RouteView as LiveRoute;
use veriflow_models::{Registry, ScoringModels};
use veriflow_pipelines::features::{FeatureRecord, Features};
use veriflow_pipelines::lifecycle::fnv1a64;
use veriflow_pipelines::time::{EventTime, format_rfc3339};

/// How requests are split between the champion and a challenger.
#[derive(Debug, Clone, Default)]
pub struct Rollout {
    /// The challenger's version directory; `None`: champion only.
    pub challenger: Option<std::path::PathBuf>,
    /// Share of verifications (by a hash of their id) the challenger decides.
    pub share: f64,
    /// Tenants whose every verification the challenger decides.
    pub tenants: Vec<String>,
    /// The challenger scores every request beside the champion, which decides.
    pub shadow: bool,
}

pub struct ScoringStage {
    registry: Arc<Registry>,
    challenger: Option<Arc<Registry>>,
    rollout: Rollout,
    stop: Arc<AtomicBool>,
}

/// Which models score one request.
pub struct Assignment {
    pub decides: Arc<ScoringModels>,
    pub variant: &'static str,
    pub shadow: Option<Arc<ScoringModels>>,
}

impl ScoringStage {
    /// Loads and checks the models in `dir`, then watches it: when its
    /// `card.json` changes (a new version copied in, or a symlink re-pointed),
    /// the new models are loaded and swapped in without a restart. A version that
    /// fails to load is logged and the models in use stay.
    pub fn load(
        dir: &Path,
        rollout: Rollout,
        reload_every: Option<Duration>,
    ) -> anyhow::Result<ScoringStage> {
        let stop = Arc::new(AtomicBool::new(false));
        let registry = watched(dir, reload_every, &stop)?;
        let challenger = match &rollout.challenger {
            Some(dir) => Some(watched(dir, reload_every, &stop)?),
            None => None,
        };
        Ok(ScoringStage {
            registry,
            challenger,
            rollout,
            stop,
        })
    }

    /// The models deciding `verification` of `tenant`, and the shadow, if any.
    /// Deterministic: the same verification always lands in the same arm.
    /// Without a verification id only the tenant list can pick the challenger.
    pub fn assign(&self, tenant: &str, verification: Option<&str>) -> Option<Assignment> {
        let champion = self.registry.current()?;
        let challenger = self.challenger.as_ref().and_then(|r| r.current());
        let Some(challenger) = challenger else {
            return Some(Assignment {
                decides: champion,
                variant: CHAMPION,
                shadow: None,
            });
        };
        if self.rollout.shadow {
            return Some(Assignment {
                decides: champion,
                variant: CHAMPION,
                shadow: Some(challenger),
            });
        }
        let in_challenger = self.rollout.tenants.iter().any(|t| t == tenant)
            || verification.is_some_and(|v| unit_hash(v) < self.rollout.share);
        Some(if in_challenger {
            Assignment {
                decides: challenger,
                variant: CHALLENGER,
                shadow: None,
            }
        } else {
            Assignment {
                decides: champion,
                variant: CHAMPION,
                shadow: None,
            }
        })
    }
}

const CHAMPION: &str = "champion";
const CHALLENGER: &str = "challenger";

/// FNV-1a of the id (the pipeline's), mixed: stable across restarts and
/// instances. FNV's high bits barely move between ids that differ at the end,
/// so MurmurHash3's finalizer spreads them.
fn mixed_hash(id: &str) -> u64 {
    let mut h = fnv1a64(id.as_bytes());
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The id's hash as a number in [0, 1): the A/B split.
fn unit_hash(id: &str) -> f64 {
    (mixed_hash(id) >> 11) as f64 / (1u64 << 53) as f64
}

/// A registry loaded from `dir`, reloaded when its card changes.
fn watched(
    dir: &Path,
    reload_every: Option<Duration>,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<Arc<Registry>> {
    let registry = Arc::new(Registry::default());
    let models = registry
        .load(dir)
        .with_context(|| format!("loading scoring models from {}", dir.display()))?;
    log_loaded(&models, "scoring models loaded");
    {
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
    }
    Ok(registry)
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

/// What scoring one request reads: its features and where it goes.
pub struct Request<'a> {
    pub features: &'a Features,
    pub country: &'a str,
    pub at: EventTime,
    /// Decides the exploration draw (stable for a verification).
    pub seed: u64,
    /// Providers already tried (a retry goes elsewhere).
    pub tried: &'a [String],
}

/// One model's verdict on a request, under the tenant's settings (`None`: the
/// card's thresholds and every provider). The stream's scored records and the
/// synchronous `/v1/route` and `/v1/score` answers are both this.
pub fn verdict(
    models: &ScoringModels,
    request: &Request<'_>,
    routes: &Routes,
    settings: Option<&ScoringSettings>,
) -> anyhow::Result<Verdict> {
    let card = &models.card;
    let policy = settings
        .map(|s| route_policy(&s.providers))
        .unwrap_or_default();
    // Each candidate's live statistics, read once for ranking and exploration.
    let views: Vec<(&str, LiveRoute)> = card
        .providers
        .iter()
        .map(|p| {
            let key = (request.country.to_string(), p.clone());
            (p.as_str(), LiveRoute::at(routes.get(&key), request.at))
        })
        .collect();
    let live = |provider: &str| {
        views
            .iter()
            .find(|(p, _)| *p == provider)
            .map_or_else(|| LiveRoute::at(None, request.at), |(_, v)| *v)
    };
    let score = models.route(
        request.features,
        request.country,
        &policy,
        request.tried,
        live,
    )?;
    let thresholds = settings
        .and_then(|s| s.fraud_thresholds.clone())
        .unwrap_or(FraudThresholds {
            review: f64::from(card.review_threshold),
            block: f64::from(card.block_threshold),
        });
    let choice = thompson_choice(&score.routes, |p| live(p).sent_1h(), request.seed);
    let model = |kind: &str| ModelName {
        name: format!("{}-{kind}", card.name),
        version: card.version.clone(),
    };
    Ok(Verdict {
        fraud_score: score.fraud_score,
        fraud_decision: FraudDecision::at(score.fraud_score, &thresholds),
        fraud_reasons: score.fraud_reasons,
        fraud_thresholds: thresholds,
        routes: score
            .routes
            .into_iter()
            .map(|r| RankedProvider {
                provider: r.provider,
                p_success: r.p_success,
            })
            .collect(),
        choice,
        model: ModelVersions {
            fraud: model("fraud"),
            success: model("success"),
            feature_schema: card.feature_schema.clone(),
        },
    })
}

/// The API's provider settings as the router reads them.
fn route_policy(p: &ProviderPolicy) -> RoutePolicy {
    RoutePolicy {
        allow: p.allow.iter().map(|n| n.0.clone()).collect(),
        deny: p.deny.iter().map(|n| n.0.clone()).collect(),
        max_cost_per_message: p.max_cost_per_message,
    }
}

/// The exploration seed of a verification: stable across restarts and
/// instances, different between verifications.
pub fn seed_of(tenant: &str, verification: &str) -> u64 {
    mixed_hash(&format!("{tenant}\u{1f}{verification}")) >> 11
}

/// The `verifications.scored` JSON of one request, and the deciding verdict.
pub fn scored_record(
    assignment: &Assignment,
    record: &FeatureRecord,
    routes: &Routes,
    settings: Option<&ScoringSettings>,
) -> anyhow::Result<(Vec<u8>, Verdict)> {
    let r = &record.request;
    let request = Request {
        features: &record.features,
        country: &r.country,
        at: r.at,
        seed: seed_of(&r.tenant_id, &r.verification_id),
        tried: &[],
    };
    let decided = verdict(&assignment.decides, &request, routes, settings)?;
    let shadow = match &assignment.shadow {
        Some(models) => Some(verdict(models, &request, routes, settings)?),
        None => None,
    };
    let json = ScoredRecord {
        scored_id: record.features_id(),
        verification_id: &r.verification_id,
        tenant_id: &r.tenant_id,
        event_id: &r.event_id,
        requested_at: format_rfc3339(r.at),
        country: &r.country,
        features: &record.features,
        variant: assignment.variant,
        verdict: &decided,
        shadow: shadow.as_ref(),
    };
    Ok((serde_json::to_vec(&json)?, decided))
}

/// Scores each request inside the pipeline, as its features are computed
/// ([`veriflow_pipelines::scoring`]): the scored record to write, and the note
/// the verification keeps for its outcome and KPI facts.
pub struct StreamScorer {
    pub stage: Arc<ScoringStage>,
    /// The global route statistics and the input topic they are kept for.
    pub routes: Arc<RouteView>,
    pub topic: String,
    /// Tenants' thresholds and provider policies (from the API, when it runs).
    pub settings: Option<Arc<TenantScoring>>,
}

impl RequestScorer for StreamScorer {
    fn score(&self, record: &FeatureRecord) -> Option<Scored> {
        let r = &record.request;
        let assignment = self.stage.assign(&r.tenant_id, Some(&r.verification_id))?;
        let routes = self.routes.merged(&self.topic);
        let settings = self.settings.as_ref().and_then(|s| s.get(&r.tenant_id));
        match scored_record(&assignment, record, &routes, settings.as_deref()) {
            Ok((bytes, verdict)) => Some(Scored {
                note: ScoreNote {
                    variant: assignment.variant.into(),
                    fraud_score: verdict.fraud_score,
                    fraud_decision: match verdict.fraud_decision {
                        FraudDecision::Allow => PipelineDecision::Allow,
                        FraudDecision::Review => PipelineDecision::Review,
                        FraudDecision::Block => PipelineDecision::Block,
                    },
                },
                record: bytes,
            }),
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), verification = %r.verification_id, "scoring a request failed; it goes unscored");
                None
            }
        }
    }
}

/// One `verifications.scored` record (contract §2).
#[derive(serde::Serialize)]
struct ScoredRecord<'a> {
    scored_id: String,
    verification_id: &'a str,
    tenant_id: &'a str,
    event_id: &'a str,
    requested_at: String,
    country: &'a str,
    features: &'a Features,
    variant: &'static str,
    #[serde(flatten)]
    verdict: &'a Verdict,
    /// The challenger's verdict in shadow mode (it decides nothing).
    #[serde(skip_serializing_if = "Option::is_none")]
    shadow: Option<&'a Verdict>,
}

#[cfg(test)]
mod tests {
    use super::unit_hash;

    #[test]
    fn the_split_hash_is_uniform_enough() {
        let below = (0..10_000)
            .filter(|i| unit_hash(&format!("v1-{i:09}")) < 0.5)
            .count();
        assert!((4_500..5_500).contains(&below), "{below}");
    }
}
