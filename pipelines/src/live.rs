//! The feature state of this instance's partitions, readable from other threads:
//! what the synchronous route and score calls compute features against.
//!
//! Each partition keeps its [`FeatureState`] behind an `RwLock` that only its
//! pipeline writes (one short write per featurized request or decision); readers
//! take the read lock for one [`FeatureState::peek`]. A reader sees the state as of
//! the partition's watermark: requests still waiting in the reorder heap are not in
//! it yet, exactly as they are not for the stream's own next request.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use crate::Text;
use crate::features::{FeatureRequest, FeatureState, Features};
use crate::feedback::{Feedback, SharedFeedback};
use crate::routes::{RouteSnapshot, SharedRoutes};

/// One partition's feature state, shared with readers.
pub type SharedFeatures = Arc<RwLock<FeatureState>>;

/// What one partition shares with readers: its feature state, route
/// statistics and feedback (only its pipeline writes them).
#[derive(Clone, Default)]
pub struct SharedPartition {
    pub features: SharedFeatures,
    pub routes: SharedRoutes,
    pub feedback: SharedFeedback,
}

/// The partitions this instance holds, by number.
#[derive(Default)]
pub struct LiveFeatures {
    partitions: RwLock<BTreeMap<i32, SharedPartition>>,
}

/// What [`LiveFeatures::peek`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Peeked {
    /// The partition whose history the features come from; `None` when no
    /// partition here knows the tenant's phone, prefix, IP, device or country
    /// (the features are then those of a first request).
    pub partition: Option<i32>,
    pub features: Features,
    /// That partition's route statistics in the request's country (none
    /// without a partition), as the stream's scorer would read them.
    pub routes: Vec<(Text, RouteSnapshot)>,
    /// That partition's feedback for the request's tenant and country.
    pub feedback: Feedback,
}

impl LiveFeatures {
    pub fn register(&self, partition: i32, shared: SharedPartition) {
        self.partitions
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(partition, shared);
    }

    pub fn remove(&self, partition: i32) {
        self.partitions
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&partition);
    }

    /// Partitions held now.
    pub fn partitions(&self) -> Vec<i32> {
        let held = self
            .partitions
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        held.keys().copied().collect()
    }

    /// The features `request` would get if it arrived now, from the partition
    /// that holds its tenant's history (input is keyed by tenant, so one does).
    pub fn peek(&self, request: &FeatureRequest) -> Peeked {
        let held = self
            .partitions
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        for (partition, shared) in held.iter() {
            let state = shared
                .features
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            if state.knows(request) {
                let routes = shared
                    .routes
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .country(&request.country);
                let feedback = shared
                    .feedback
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .for_request_at(&request.tenant_id, &request.country, request.at);
                return Peeked {
                    partition: Some(*partition),
                    features: state.peek(request),
                    routes,
                    feedback,
                };
            }
        }
        Peeked {
            partition: None,
            features: FeatureState::default().peek(request),
            routes: Vec::new(),
            feedback: Feedback::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Text;

    fn request(tenant: &str, vid: &str, at: i64, phone: &str, ip: &str) -> FeatureRequest {
        FeatureRequest {
            tenant_id: tenant.into(),
            verification_id: vid.into(),
            event_id: format!("{vid}-e1").into(),
            at,
            phone_number: phone.into(),
            country: "BR".into(),
            ip: Some(Text::from(ip)),
            ip_country: None,
            device_id: None,
        }
    }

    #[test]
    fn peek_reads_the_tenants_partition_and_matches_the_stream() {
        let live = LiveFeatures::default();
        let (p0, p1) = (SharedFeatures::default(), SharedFeatures::default());
        let shared = |features: &SharedFeatures| SharedPartition {
            features: features.clone(),
            ..Default::default()
        };
        live.register(0, shared(&p0));
        live.register(1, shared(&p1));
        let t0 = 1_767_571_200_000;
        for i in 0..30i64 {
            let r = request(
                "acme",
                &format!("a{i}"),
                t0 + i * 1000,
                &format!("+55119{i:06}"),
                "1.2.3.4",
            );
            p1.write().unwrap().on_request(&r);
            let r = request(
                "other",
                &format!("o{i}"),
                t0 + i * 1000,
                &format!("+55119{i:06}"),
                "1.2.3.4",
            );
            p0.write().unwrap().on_request(&r);
        }
        let next = request("acme", "a-next", t0 + 31_000, "+55119000031", "1.2.3.4");
        let peeked = live.peek(&next);
        assert_eq!(
            peeked.partition,
            Some(1),
            "acme's history is in partition 1"
        );
        assert_eq!(peeked.features.ip_requests_1m, Some(30));
        assert_eq!(peeked.features.prefix_requests_1m, 30);
        let streamed = p1.write().unwrap().clone().on_request(&next);
        assert_eq!(
            peeked.features, streamed,
            "the stream computes the same vector"
        );

        let stranger = request("nobody", "n1", t0 + 31_000, "+55119000031", "1.2.3.4");
        let peeked = live.peek(&stranger);
        assert_eq!(peeked.partition, None);
        assert_eq!(peeked.features.ip_requests_1m, Some(0));
        assert!(peeked.features.phone_first_seen);

        live.remove(1);
        assert_eq!(live.partitions(), vec![0]);
        assert_eq!(
            live.peek(&next).partition,
            None,
            "a revoked partition is not read"
        );
    }
}
