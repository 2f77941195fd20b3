//! The global route statistics: every partition's latest snapshot, read from the
//! compacted route-statistics topic by every instance, summed per route, for
//! the metrics. Scoring does not read it: it reads the request's own
//! partition's statistics as of the request (deterministic whatever the pace,
//! unlike this view, which moves at checkpoints in wall-clock time).
//! (One route's statistics at one instant, as a model reads them, is
//! `veriflow_models::vector::RouteView`.)

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use veriflow_connectors::records::RouteStatsRecord;
use veriflow_pipelines::routes::RouteSnapshot;

/// Per (country, provider), summed over partitions.
pub type Routes = BTreeMap<(String, String), RouteSnapshot>;

#[derive(Default)]
pub struct GlobalRouteStats {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Latest record per topic key (source topic, partition, country, provider).
    latest: HashMap<String, RouteStatsRecord>,
    /// The last merge, until the next update (each scrape reads it).
    merged: Option<(String, Arc<Routes>)>,
}

impl GlobalRouteStats {
    /// Takes one record of the topic; records that do not parse are skipped.
    pub fn update(&self, value: &[u8]) {
        let Ok(record) = serde_json::from_slice::<RouteStatsRecord>(value) else {
            tracing::debug!("skipping a route-statistics record that does not parse");
            return;
        };
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.latest.insert(record.key(), record);
        inner.merged = None;
    }

    /// Per (country, provider), the sum over every partition of `source_topic`.
    pub fn merged(&self, source_topic: &str) -> Arc<Routes> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((topic, merged)) = &inner.merged
            && topic == source_topic
        {
            return merged.clone();
        }
        let mut parts: BTreeMap<(String, String), Vec<RouteSnapshot>> = BTreeMap::new();
        for r in inner
            .latest
            .values()
            .filter(|r| r.source_topic == source_topic)
        {
            parts
                .entry((r.country.clone(), r.provider.clone()))
                .or_default()
                .push(r.snapshot());
        }
        let merged: Arc<Routes> = Arc::new(
            parts
                .into_iter()
                .map(|(k, v)| (k, RouteSnapshot::merge(&v)))
                .collect(),
        );
        inner.merged = Some((source_topic.to_string(), merged.clone()));
        merged
    }
}
