//! The global route statistics: every partition's latest snapshot, read from the
//! compacted route-statistics topic by every instance, summed per route.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use veriflow_connectors::kafka::records::RouteStatsRecord;
use veriflow_pipelines::routes::RouteSnapshot;

#[derive(Default)]
pub struct RouteView {
    /// Latest record per topic key (source topic, partition, country, provider).
    latest: Mutex<HashMap<String, RouteStatsRecord>>,
}

impl RouteView {
    /// Takes one record of the topic; records that do not parse are skipped.
    pub fn update(&self, value: &[u8]) {
        let Ok(record) = serde_json::from_slice::<RouteStatsRecord>(value) else {
            tracing::debug!("skipping a route-statistics record that does not parse");
            return;
        };
        if let Ok(mut latest) = self.latest.lock() {
            latest.insert(record.key(), record);
        }
    }

    /// Per (country, provider), the sum over every partition of `source_topic`.
    pub fn merged(&self, source_topic: &str) -> BTreeMap<(String, String), RouteSnapshot> {
        let Ok(latest) = self.latest.lock() else {
            return BTreeMap::new();
        };
        let mut parts: BTreeMap<(String, String), Vec<RouteSnapshot>> = BTreeMap::new();
        for r in latest.values().filter(|r| r.source_topic == source_topic) {
            parts
                .entry((r.country.clone(), r.provider.clone()))
                .or_default()
                .push(r.snapshot());
        }
        parts
            .into_iter()
            .map(|(k, v)| (k, RouteSnapshot::merge(&v)))
            .collect()
    }
}
