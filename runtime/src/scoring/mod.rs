//! Scoring in the runtime: the loaded models and their rollout arms, hot
//! reload, the one verdict on a request, and its two callers — the stream's
//! scorer inside the pipeline ([`stream::StreamScorer`], writing
//! `verifications.scored`) and the synchronous `/v1/route` and `/v1/score`
//! ([`live::LiveScoring`]).

pub mod live;
pub mod stream;
pub mod verdict;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use veriflow_common::config::{
    ConfigError, Validate, duration_or_off, empty_as_none, ensure, string_list,
};
use veriflow_common::hash::unit_interval;
use veriflow_models::{ModelError, Registry, ScoringModels};
use veriflow_pipelines::PipelineSettings;

/// `[scoring]`: which models score requests, and how versions roll out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScoringConfig {
    /// A model version directory written by `veriflow train`
    /// (`models/trained/<version>`); empty turns scoring off.
    #[serde(with = "empty_as_none")]
    pub models: Option<PathBuf>,
    /// How often to look for a new version in `models`; `"off"` never reloads.
    #[serde(with = "duration_or_off")]
    pub reload_interval: Option<Duration>,
    /// A challenger version directory; empty: the champion scores everything.
    #[serde(with = "empty_as_none")]
    pub challenger: Option<PathBuf>,
    /// Share of verifications (by a hash of their id) the challenger decides.
    pub challenger_share: f64,
    /// Tenants the challenger decides for entirely.
    #[serde(with = "string_list")]
    pub challenger_tenants: Vec<String>,
    /// The challenger scores beside the champion (a `shadow` field), deciding nothing.
    pub shadow: bool,
}

impl Default for ScoringConfig {
    fn default() -> Self {
        ScoringConfig {
            models: None,
            reload_interval: Some(Duration::from_secs(5)),
            challenger: None,
            challenger_share: 0.0,
            challenger_tenants: Vec::new(),
            shadow: false,
        }
    }
}

impl Validate for ScoringConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        ensure(
            (0.0..=1.0).contains(&self.challenger_share),
            "challenger_share",
            format!("{} must be between 0 and 1", self.challenger_share),
        )?;
        ensure(
            self.challenger.is_some()
                || (self.challenger_share == 0.0
                    && !self.shadow
                    && self.challenger_tenants.is_empty()),
            "challenger",
            "challenger_share, challenger_tenants and shadow need scoring.challenger",
        )?;
        ensure(
            self.challenger.is_none() || self.models.is_some(),
            "models",
            "a challenger needs a champion in scoring.models",
        )?;
        ensure(
            self.reload_interval.is_none_or(|d| !d.is_zero()),
            "reload_interval",
            "must be positive or \"off\"",
        )?;
        for (key, dir) in [("models", &self.models), ("challenger", &self.challenger)] {
            if let Some(dir) = dir {
                ensure(
                    dir.join("card.json").is_file(),
                    key,
                    format!(
                        "{} holds no card.json (a version directory written by `veriflow train`)",
                        dir.display()
                    ),
                )?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("loading scoring models from {dir}: {source}")]
pub struct LoadError {
    dir: String,
    source: ModelError,
}

/// The loaded champion (and challenger), watched for new versions.
pub struct ScoringStage {
    registry: Arc<Registry>,
    challenger: Option<Arc<Registry>>,
    share: f64,
    tenants: Vec<String>,
    shadow: bool,
    stop: Arc<AtomicBool>,
    watchers: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

/// Which models score one request.
pub struct Assignment {
    pub decides: Arc<ScoringModels>,
    pub variant: &'static str,
    pub shadow: Option<Arc<ScoringModels>>,
}

pub const CHAMPION: &str = "champion";
pub const CHALLENGER: &str = "challenger";

impl ScoringStage {
    /// Loads and checks the configured versions (`None` when scoring is off),
    /// then watches them: when a `card.json` changes (a new version copied in,
    /// or a symlink re-pointed), the new models are loaded and swapped in
    /// without a restart. A version that fails to load is logged and the
    /// models in use stay. `pipeline` is what the stream runs with: a model
    /// replayed under other settings is loaded with a warning.
    pub fn load(
        config: &ScoringConfig,
        pipeline: &PipelineSettings,
    ) -> Result<Option<ScoringStage>, LoadError> {
        let Some(models) = &config.models else {
            return Ok(None);
        };
        let stop = Arc::new(AtomicBool::new(false));
        let mut watchers = Vec::new();
        let every = config.reload_interval;
        let registry = watched(models, every, &stop, pipeline, &mut watchers)?;
        let challenger = match &config.challenger {
            Some(dir) => Some(watched(dir, every, &stop, pipeline, &mut watchers)?),
            None => None,
        };
        Ok(Some(ScoringStage {
            registry,
            challenger,
            share: config.challenger_share,
            tenants: config.challenger_tenants.clone(),
            shadow: config.shadow,
            stop,
            watchers: std::sync::Mutex::new(watchers),
        }))
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
        if self.shadow {
            return Some(Assignment {
                decides: champion,
                variant: CHAMPION,
                shadow: Some(challenger),
            });
        }
        let in_challenger = self.tenants.iter().any(|t| t == tenant)
            || verification.is_some_and(|v| unit_interval(v.as_bytes()) < self.share);
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

    /// Stops watching for new versions (the loaded models stay usable).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let watchers = std::mem::take(
            &mut *self
                .watchers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for w in watchers {
            let _ = w.join();
        }
    }
}

/// A registry loaded from `dir`, reloaded when its card changes.
fn watched(
    dir: &Path,
    reload_every: Option<Duration>,
    stop: &Arc<AtomicBool>,
    pipeline: &PipelineSettings,
    watchers: &mut Vec<JoinHandle<()>>,
) -> Result<Arc<Registry>, LoadError> {
    let registry = Arc::new(Registry::default());
    let models = registry.load(dir).map_err(|source| LoadError {
        dir: dir.display().to_string(),
        source,
    })?;
    log_loaded(&models, "scoring models loaded", pipeline);
    if let Some(every) = reload_every {
        let (registry, stop, dir) = (registry.clone(), stop.clone(), dir.to_path_buf());
        let pipeline = pipeline.clone();
        let mut seen = card_stamp(&dir);
        let thread = std::thread::Builder::new()
            .name("model-reload".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    // Sleep in short steps so a stop is seen promptly.
                    let mut slept = Duration::ZERO;
                    while slept < every && !stop.load(Ordering::Relaxed) {
                        let step = (every - slept).min(Duration::from_millis(100));
                        std::thread::sleep(step);
                        slept += step;
                    }
                    let now = card_stamp(&dir);
                    if now == seen {
                        continue;
                    }
                    seen = now;
                    match registry.load(&dir) {
                        Ok(models) => log_loaded(&models, "scoring models reloaded", &pipeline),
                        Err(e) => tracing::warn!(
                            error = %e,
                            dir = %dir.display(),
                            "new scoring models refused; the models in use stay"
                        ),
                    }
                }
            })
            .map_err(|e| LoadError {
                dir: "(reload thread)".into(),
                source: ModelError::Io {
                    path: "thread".into(),
                    source: e,
                },
            })?;
        watchers.push(thread);
    }
    Ok(registry)
}

fn log_loaded(models: &ScoringModels, what: &str, pipeline: &PipelineSettings) {
    tracing::info!(
        model = %models.card.name,
        version = %models.card.version,
        schema = %models.card.feature_schema,
        "{what}"
    );
    for difference in trained_under_other_settings(models, pipeline) {
        tracing::warn!(
            model = %models.card.version,
            "{difference}: the features it learned from differ from the ones served; retrain with this [pipeline]"
        );
    }
}

/// How the `[pipeline]` settings a model was replayed with differ from
/// `here`, one line each (`pipeline.ttl: trained 10m, here 5m`); a card
/// that does not record them says so.
pub fn trained_under_other_settings(
    models: &ScoringModels,
    here: &PipelineSettings,
) -> Vec<String> {
    match &models.card.training.pipeline {
        None => vec!["the model card does not record its [pipeline] settings".into()],
        Some(trained) => trained
            .replay_differences(here)
            .into_iter()
            .map(|(key, a, b)| format!("pipeline.{key}: trained {a}, here {b}"))
            .collect(),
    }
}

/// What identifies the card on disk now (through symlinks): its contents' length
/// and modification time, or `None` while it is missing.
fn card_stamp(dir: &Path) -> Option<(u64, std::time::SystemTime, String)> {
    let card = dir.join("card.json");
    let meta = std::fs::metadata(&card).ok()?;
    let target = std::fs::canonicalize(&card).ok()?.display().to_string();
    Some((meta.len(), meta.modified().ok()?, target))
}
