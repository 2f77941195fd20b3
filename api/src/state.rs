//! What every handler can reach.

use std::sync::Arc;

use crate::auth::key_cache::KeyCache;
use crate::config::ApiConfig;
use crate::limits::Limiter;
use crate::metrics::HttpMetrics;
use crate::scoring::{ScorerSlot, TenantScoring};
use crate::sql::SqlSlot;
use crate::store::Store;
use crate::templates::Catalog;
use crate::usage::Usage;
use crate::webhooks::Webhooks;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub config: Arc<ApiConfig>,
    pub catalog: Arc<Catalog>,
    pub usage: Arc<Usage>,
    pub limiter: Arc<Limiter>,
    pub metrics: Arc<HttpMetrics>,
    pub webhooks: Webhooks,
    /// Tenants' fraud thresholds and provider policies, in memory.
    pub scoring_settings: Arc<TenantScoring>,
    /// API keys read recently (authentication without a query per request).
    pub keys: Arc<KeyCache>,
    /// Live scoring, when the process runs the stream (`veriflow run`).
    pub scorer: ScorerSlot,
    /// Analysts' SQL, when the process keeps a lake.
    pub sql: SqlSlot,
}
