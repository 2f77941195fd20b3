//! The one verdict on a request — what the stream's scored record and both
//! synchronous answers carry — and the `verifications.scored` record.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use veriflow_common::hash::mixed64;
use veriflow_common::scoring::{
    FraudDecision, FraudThresholds, ModelName, ModelVersions, RankedProvider, ScoringSettings,
    Verdict,
};
use veriflow_models::ScoringModels;
use veriflow_models::router::choose;
use veriflow_models::vector::RouteView;
use veriflow_pipelines::features::{FeatureRecord, Features};
use veriflow_pipelines::feedback::Feedback;
use veriflow_pipelines::time::{EventTime, format_rfc3339};

use super::Assignment;
use veriflow_pipelines::Text;
use veriflow_pipelines::routes::RouteSnapshot;

/// What scoring one request reads: its features and where it goes.
pub struct Request<'a> {
    pub features: &'a Features,
    pub country: &'a str,
    pub at: EventTime,
    /// Decides the exploration draw (stable for a verification).
    pub seed: u64,
    /// Providers already tried (a retry goes elsewhere).
    pub tried: &'a [String],
    /// What the partition learned from decided outcomes, as of the request.
    pub feedback: &'a Feedback,
}

/// A verdict and the success model's raw probabilities behind it (what the
/// feedback's calibration learns from).
pub struct Judged {
    pub verdict: Verdict,
    pub success_raw: Vec<(Text, f32)>,
}

/// One model's verdict on a request, under the tenant's settings (`None`: the
/// learned thresholds and every provider). `routes`: the live statistics of
/// the request's country, by provider (the partition's, as of the request).
///
/// The candidates are every provider the live statistics know in the country
/// (a provider the model never saw is judged by its statistics: no model
/// reads a name), and the card's providers while no route of the country
/// has evidence yet. `routes` rank by `p_success`; the `choice` is the best
/// route with evidence ([`veriflow_models::router::choose`]). `p_success` is the model's,
/// recalibrated by the feedback (a monotone map: the ranking is the model's).
/// The fraud thresholds are the tenant's own when it set them, else the ones
/// learned from its legitimate traffic, never below the card's.
pub fn verdict(
    models: &ScoringModels,
    request: &Request<'_>,
    routes: &[(Text, RouteSnapshot)],
    settings: Option<&ScoringSettings>,
) -> Result<Judged, veriflow_models::ModelError> {
    let card = &models.card;
    let default_policy = Default::default();
    let policy = settings.map_or(&default_policy, |s| &s.providers);
    // The live routes' statistics as of the request, decayed once for the
    // candidates, ranking and exploration.
    let known: Vec<(&str, RouteView)> = routes
        .iter()
        .map(|(p, s)| (p.as_str(), RouteView::at(Some(s), request.at)))
        .collect();
    // The card's providers stand in only while no route of the country has
    // evidence (a cold start): once the platform's own providers are known
    // here, a card provider it never uses is not a candidate (nor a probe).
    let known_here = known.iter().any(|(_, v)| v.has_evidence());
    let card_providers = card.providers.iter().filter(|_| !known_here).cloned();
    let mut providers: Vec<String> = card_providers
        .chain(known.iter().map(|(p, _)| (*p).to_owned()))
        .collect();
    providers.sort();
    providers.dedup();
    let live = |provider: &str| {
        known
            .iter()
            .find(|(p, _)| *p == provider)
            .map_or_else(|| RouteView::at(None, request.at), |(_, v)| *v)
    };
    let score = models.route(
        request.features,
        request.country,
        &providers,
        policy,
        request.tried,
        live,
    )?;
    let thresholds = settings
        .and_then(|s| s.fraud_thresholds)
        .unwrap_or_else(|| {
            let (review, block) = request.feedback.thresholds(
                f64::from(card.review_threshold),
                f64::from(card.block_threshold),
            );
            FraudThresholds { review, block }
        });
    let success_raw = score
        .routes
        .iter()
        .map(|r| (Text::from(r.provider.as_str()), r.p_success))
        .collect();
    let choice = choose(&score.routes, live, request.seed);
    let model = |kind: &str| ModelName {
        name: format!("{}-{kind}", card.name),
        version: card.version.clone(),
    };
    let verdict = Verdict {
        fraud_score: score.fraud_score,
        fraud_decision: FraudDecision::at(score.fraud_score, &thresholds),
        fraud_reasons: score.fraud_reasons,
        fraud_thresholds: thresholds,
        routes: score
            .routes
            .into_iter()
            .map(|r| RankedProvider {
                p_success: request.feedback.calibrated(r.p_success),
                provider: r.provider,
            })
            .collect(),
        choice,
        model: ModelVersions {
            fraud: model("fraud"),
            success: model("success"),
            feature_schema: card.feature_schema.clone(),
        },
    };
    Ok(Judged {
        verdict,
        success_raw,
    })
}

/// The exploration seed of a verification: stable across restarts and
/// instances, different between verifications.
pub fn seed_of(tenant: &str, verification: &str) -> u64 {
    mixed64(format!("{tenant}\u{1f}{verification}").as_bytes()) >> 11
}

/// One `verifications.scored` record (contract §2), as written and read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredRecord<'a> {
    pub scored_id: Cow<'a, str>,
    pub verification_id: Cow<'a, str>,
    pub tenant_id: Cow<'a, str>,
    pub event_id: Cow<'a, str>,
    pub requested_at: String,
    pub country: Cow<'a, str>,
    pub features: Cow<'a, Features>,
    /// `champion` or `challenger`.
    pub variant: Cow<'a, str>,
    #[serde(flatten)]
    pub verdict: Cow<'a, Verdict>,
    /// The challenger's verdict in shadow mode (it decides nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<Cow<'a, Verdict>>,
}

/// The scored record of one featurized request, and the deciding verdict.
pub fn scored_record(
    assignment: &Assignment,
    record: &FeatureRecord,
    settings: Option<&ScoringSettings>,
) -> Result<(Vec<u8>, Judged), veriflow_models::ModelError> {
    let r = &record.request;
    let routes = &record.routes;
    let request = Request {
        features: &record.features,
        country: &r.country,
        at: r.at,
        seed: seed_of(&r.tenant_id, &r.verification_id),
        tried: &[],
        feedback: &record.feedback,
    };
    let judged = verdict(&assignment.decides, &request, routes, settings)?;
    let decided = &judged.verdict;
    // The shadow is a challenger: the feedback learned from the champion's
    // raw probabilities, so its calibration does not apply to another model.
    let shadow = match &assignment.shadow {
        Some(models) => {
            let request = Request {
                feedback: &Feedback::default(),
                ..request
            };
            Some(verdict(models, &request, routes, settings)?.verdict)
        }
        None => None,
    };
    let json = ScoredRecord {
        scored_id: Cow::Owned(record.features_id()),
        verification_id: Cow::Borrowed(&r.verification_id),
        tenant_id: Cow::Borrowed(&r.tenant_id),
        event_id: Cow::Borrowed(&r.event_id),
        requested_at: format_rfc3339(r.at),
        country: Cow::Borrowed(&r.country),
        features: Cow::Borrowed(&record.features),
        variant: Cow::Borrowed(assignment.variant),
        verdict: Cow::Borrowed(decided),
        shadow: shadow.as_ref().map(Cow::Borrowed),
    };
    // Plain structs of strings and numbers: serializing cannot fail.
    let bytes = serde_json::to_vec(&json).unwrap_or_default();
    Ok((bytes, judged))
}
