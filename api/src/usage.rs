//! Per-tenant usage counters, counted in memory and flushed to the store.
//!
//! Counting on the request path must not cost a database write, so increments
//! accumulate here and a background task adds them to the store every second
//! (and once more at shutdown). Reads add the pending deltas to the stored
//! values, so a counter never reads lower than what was counted.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::store::{Result, Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counter {
    Requests,
    VerificationsScored,
    WebhooksSent,
}

impl Counter {
    pub const ALL: [Counter; 3] = [
        Counter::Requests,
        Counter::VerificationsScored,
        Counter::WebhooksSent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Counter::Requests => "requests",
            Counter::VerificationsScored => "verifications_scored",
            Counter::WebhooksSent => "webhooks_sent",
        }
    }
}

#[derive(Default)]
pub struct Usage {
    pending: Mutex<HashMap<(String, Counter), i64>>,
}

impl Usage {
    pub fn add(&self, tenant: &str, counter: Counter, n: i64) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        *pending.entry((tenant.to_string(), counter)).or_default() += n;
    }

    /// Writes pending deltas to the store; on failure they are kept for the next try.
    pub async fn flush(&self, store: &Store) -> Result<()> {
        let taken: Vec<((String, Counter), i64)> = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.drain().collect()
        };
        let batch: Vec<(String, String, i64)> = taken
            .iter()
            .map(|((tenant, counter), n)| (tenant.clone(), counter.as_str().to_string(), *n))
            .collect();
        if let Err(e) = store.add_usage(&batch).await {
            for ((tenant, counter), n) in taken {
                self.add(&tenant, counter, n);
            }
            return Err(e);
        }
        Ok(())
    }

    /// Stored plus pending values of every counter of a tenant.
    pub async fn read(&self, store: &Store, tenant: &str) -> Result<Vec<(Counter, i64)>> {
        let stored = store.usage_of(tenant).await?;
        let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        Ok(Counter::ALL
            .iter()
            .map(|c| {
                let s = stored
                    .iter()
                    .find(|(name, _)| name == c.as_str())
                    .map_or(0, |(_, v)| *v);
                let p = pending.get(&(tenant.to_string(), *c)).copied().unwrap_or(0);
                (*c, s + p)
            })
            .collect())
    }
}
