//! KPI SQL files: planning errors at load, and results on known facts.

use veriflow_analytics::{AnalyticsError, KpiEngine};
use veriflow_connectors::influx::{FieldValue, Point};
use veriflow_pipelines::kpi::{KpiFact, KpiWindowBatch};
use veriflow_pipelines::{Channel, OutcomeKind};

fn fact(country: &str, provider: &str, outcome: Option<OutcomeKind>, tta: Option<i64>) -> KpiFact {
    KpiFact {
        tenant: "acme".into(),
        country: country.into(),
        channel: Channel::Sms,
        provider: provider.into(),
        requested_at: 60_000 + 5_000,
        sent: if provider == "none" { 0 } else { 1 },
        delivered: u32::from(outcome == Some(OutcomeKind::Approved)),
        undelivered: u32::from(outcome == Some(OutcomeKind::Expired)),
        cost: Some(0.01),
        outcome,
        time_to_approve_ms: tta,
        receipts: Vec::new(),
        scored: None,
    }
}

/// The points of one measurement.
fn of(points: Vec<Point>, measurement: &str) -> Vec<Point> {
    points
        .into_iter()
        .filter(|p| p.measurement == measurement)
        .collect()
}

fn batch(facts: Vec<KpiFact>, is_final: bool) -> KpiWindowBatch {
    KpiWindowBatch {
        partition: 0,
        window_start: 60_000,
        window_end: 120_000,
        as_of: 120_000,
        is_final,
        facts,
        hop: None,
    }
}

fn field<'a>(p: &'a Point, name: &str) -> Option<&'a FieldValue> {
    p.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

fn tag<'a>(p: &'a Point, name: &str) -> &'a str {
    p.tags
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

#[test]
fn the_builtin_kpi_counts_a_window() {
    let mut engine = KpiEngine::load(None).unwrap();
    let facts = vec![
        fact("BR", "sinch", Some(OutcomeKind::Approved), Some(20_000)),
        fact("BR", "sinch", Some(OutcomeKind::Approved), Some(40_000)),
        fact("BR", "sinch", Some(OutcomeKind::Expired), None),
        fact("MX", "twilio", None, None),
    ];
    let points = of(
        engine.evaluate(&batch(facts, false)).unwrap(),
        "veriflow_kpi",
    );
    assert_eq!(points.len(), 2);
    let br = points.iter().find(|p| tag(p, "country") == "BR").unwrap();
    assert_eq!(br.measurement, "veriflow_kpi");
    assert_eq!(br.timestamp_ms, 60_000);
    assert_eq!(
        (tag(br, "tenant"), tag(br, "provider"), tag(br, "channel")),
        ("acme", "sinch", "sms")
    );
    assert_eq!(field(br, "requests"), Some(&FieldValue::Int(3)));
    assert_eq!(field(br, "approved"), Some(&FieldValue::Int(2)));
    assert_eq!(field(br, "expired"), Some(&FieldValue::Int(1)));
    assert_eq!(field(br, "delivered"), Some(&FieldValue::Int(2)));
    assert_eq!(
        field(br, "conversion_rate"),
        Some(&FieldValue::Float(2.0 / 3.0))
    );
    assert_eq!(
        field(br, "delivery_rate"),
        Some(&FieldValue::Float(2.0 / 3.0))
    );
    let Some(FieldValue::Float(cost)) = field(br, "cost") else {
        panic!("cost")
    };
    assert!((cost - 0.03).abs() < 1e-9);
    let Some(FieldValue::Float(p50)) = field(br, "time_to_approve_p50_ms") else {
        panic!("p50: {:?}", br.fields)
    };
    assert!((20_000.0..=40_000.0).contains(p50), "{p50}");
    assert_eq!(
        field(br, "fraud_score_avg"),
        None,
        "no scores yet: left out, not zero"
    );
    let mx = points.iter().find(|p| tag(p, "country") == "MX").unwrap();
    assert_eq!(field(mx, "approved"), Some(&FieldValue::Int(0)));
    assert_eq!(field(mx, "delivery_rate"), None, "no receipts: no rate");
}

/// The A/B test reads per variant: requests, conversion, blocks, mean score.
#[test]
fn the_variant_kpi_splits_the_ab_test() {
    use veriflow_pipelines::scoring::{FraudDecision, ScoreNote};
    let mut engine = KpiEngine::load(None).unwrap();
    let scored = |mut f: KpiFact, variant: &str, score: f32, decision| {
        f.scored = Some(ScoreNote {
            variant: variant.into(),
            fraud_score: score,
            fraud_decision: decision,
        });
        f
    };
    let facts = vec![
        scored(
            fact("BR", "sinch", Some(OutcomeKind::Approved), Some(1)),
            "champion",
            0.1,
            FraudDecision::Allow,
        ),
        scored(
            fact("BR", "sinch", Some(OutcomeKind::Expired), None),
            "champion",
            0.9,
            FraudDecision::Block,
        ),
        scored(
            fact("MX", "twilio", Some(OutcomeKind::Approved), Some(1)),
            "challenger",
            0.2,
            FraudDecision::Review,
        ),
        fact("MX", "twilio", None, None),
    ];
    let points = of(
        engine.evaluate(&batch(facts, false)).unwrap(),
        "veriflow_kpi_variant",
    );
    let arm = |v: &str| points.iter().find(|p| tag(p, "variant") == v).unwrap();
    assert_eq!(points.len(), 3, "{points:?}");
    let champion = arm("champion");
    assert_eq!(field(champion, "requests"), Some(&FieldValue::Int(2)));
    assert_eq!(field(champion, "approved"), Some(&FieldValue::Int(1)));
    assert_eq!(
        field(champion, "failed_attempts"),
        Some(&FieldValue::Int(1))
    );
    assert_eq!(field(champion, "fraud_blocked"), Some(&FieldValue::Int(1)));
    let Some(FieldValue::Float(avg)) = field(champion, "fraud_score_avg") else {
        panic!("{champion:?}")
    };
    assert!((avg - 0.5).abs() < 1e-6, "{avg}");
    let challenger = arm("challenger");
    assert_eq!(field(challenger, "requests"), Some(&FieldValue::Int(1)));
    assert_eq!(
        field(challenger, "fraud_blocked"),
        Some(&FieldValue::Int(0))
    );
    assert_eq!(
        field(arm("none"), "requests"),
        Some(&FieldValue::Int(1)),
        "unscored requests stay visible"
    );
}

#[test]
fn a_series_that_disappears_from_a_window_is_zeroed() {
    let mut engine = KpiEngine::load(None).unwrap();
    // First emission: the request is not sent yet (provider "none").
    let first = of(
        engine
            .evaluate(&batch(vec![fact("BR", "none", None, None)], false))
            .unwrap(),
        "veriflow_kpi",
    );
    assert_eq!(first.len(), 1);
    assert_eq!(tag(&first[0], "provider"), "none");
    // Later: it went to sinch. The "none" series is written back to zero.
    let later = of(
        engine
            .evaluate(&batch(
                vec![fact("BR", "sinch", Some(OutcomeKind::Approved), Some(1))],
                true,
            ))
            .unwrap(),
        "veriflow_kpi",
    );
    assert_eq!(later.len(), 2, "{later:?}");
    let gone = later.iter().find(|p| tag(p, "provider") == "none").unwrap();
    assert_eq!(field(gone, "requests"), Some(&FieldValue::Int(0)));
    assert_eq!(field(gone, "conversion_rate"), None);
    let now = later
        .iter()
        .find(|p| tag(p, "provider") == "sinch")
        .unwrap();
    assert_eq!(field(now, "requests"), Some(&FieldValue::Int(1)));
}

#[test]
fn a_user_added_file_produces_its_own_measurement() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("veriflow_kpi.sql"),
        include_str!("../../sql/kpi/veriflow_kpi.sql"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("requests_by_country.sql"),
        "SELECT date_bin(INTERVAL '1 minute', requested_at) AS time, country, count(*) AS n \
         FROM verifications GROUP BY 1, 2",
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not SQL").unwrap();
    let mut engine = KpiEngine::load(Some(dir.path())).unwrap();
    assert_eq!(engine.queries().len(), 2);
    let points = engine
        .evaluate(&batch(
            vec![fact("BR", "x", None, None), fact("BR", "y", None, None)],
            true,
        ))
        .unwrap();
    let mine: Vec<_> = points
        .iter()
        .filter(|p| p.measurement == "requests_by_country")
        .collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(field(mine[0], "n"), Some(&FieldValue::Int(2)));
    assert_eq!(mine[0].timestamp_ms, 60_000);
}

fn load_error(sql: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken.sql"), sql).unwrap();
    match KpiEngine::load(Some(dir.path())) {
        Err(e @ AnalyticsError::Sql { .. }) => e.to_string(),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("{sql:?} was accepted"),
    }
}

#[test]
fn bad_files_are_refused_at_load_with_file_and_line() {
    let e = load_error(
        "SELECT window_start AS time,\n  count(*) AS n\nFROM verifications\nGROUP BY window_start,\nWHERE",
    );
    assert!(e.contains("broken.sql:"), "{e}");
    let e = load_error("SELECT window_start AS time, count(nope) FROM verifications GROUP BY 1");
    assert!(e.contains("broken.sql") && e.contains("nope"), "{e}");
    let e = load_error("SELECT count(*) AS n FROM verifications");
    assert!(e.contains("`time`"), "{e}");
    let e = load_error("CREATE TABLE x AS SELECT 1");
    assert!(e.contains("broken.sql"), "{e}");
    let e = load_error("SELECT 1 AS time FROM other_table");
    assert!(e.contains("other_table"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        KpiEngine::load(Some(dir.path())),
        Err(AnalyticsError::Empty(_))
    ));
}

#[test]
fn hopping_files_run_on_hopping_batches_only() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tumbling.sql"),
        "SELECT window_start AS time, count(*) AS n FROM verifications GROUP BY 1",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("hourly.sql"),
        "-- the last hour, every 5 minutes\n-- window: 1h every 5m\n\
         SELECT window_start AS time, count(*) AS n FROM verifications GROUP BY 1",
    )
    .unwrap();
    let mut engine = KpiEngine::load(Some(dir.path())).unwrap();
    assert_eq!(engine.hops(), vec![(3_600_000, 300_000)]);
    let facts = vec![fact("BR", "x", None, None); 3];
    let tumbling = engine.evaluate(&batch(facts.clone(), true)).unwrap();
    assert_eq!(
        tumbling
            .iter()
            .map(|p| p.measurement.as_str())
            .collect::<Vec<_>>(),
        ["tumbling"]
    );
    let mut hop = batch(facts, true);
    hop.hop = Some((3_600_000, 300_000));
    let hopping = engine.evaluate(&hop).unwrap();
    assert_eq!(
        hopping
            .iter()
            .map(|p| p.measurement.as_str())
            .collect::<Vec<_>>(),
        ["hourly"]
    );
    assert_eq!(field(&hopping[0], "n"), Some(&FieldValue::Int(3)));
    let e = load_error("-- window: an hour\nSELECT window_start AS time FROM verifications");
    assert!(e.contains("broken.sql:1") && e.contains("every"), "{e}");
}
