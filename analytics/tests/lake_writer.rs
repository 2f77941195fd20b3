//! The lake writer over a real directory: rows land in tenant and day
//! partitions, a batch that never committed is recognised and replaced, and
//! the views answer over what was written.

use veriflow_analytics::lake::tables::{AlertRow, LakeRow, OutcomeRow, ScoredRow};
use veriflow_analytics::lake::{
    LakeSql, LakeWriter, ResultFormat, Scope, SqlLimits, lake_tables, lake_views,
};
use veriflow_pipelines::features::Features;

const DAY: i64 = 1_767_571_200_000; // 2026-01-05T00:00:00Z

fn outcome(tenant: &str, id: usize, approved: bool, at: i64) -> OutcomeRow {
    OutcomeRow {
        tenant_id: tenant.into(),
        verification_id: format!("v{id}"),
        outcome: if approved { "approved" } else { "expired" }.into(),
        requested_at: at,
        decided_at: at + 20_000,
        time_to_approve_ms: approved.then_some(20_000),
        country: "BR".into(),
        channel: "sms".into(),
        service: "login".into(),
        providers: "sinch,twilio".into(),
        first_provider: Some("sinch".into()),
        last_provider: Some("twilio".into()),
        attempts: 2,
        failed_attempts: if approved { 0 } else { 2 },
        delivered: 1,
        undelivered: 1,
        check_failed: 0,
        cost: Some(0.01),
        currency: Some("USD".into()),
        variant: Some("champion".into()),
        fraud_score: Some(0.1),
        fraud_decision: Some("allow".into()),
    }
}

fn scored(tenant: &str, id: usize, at: i64, decision: &str) -> ScoredRow {
    ScoredRow {
        scored_id: format!("{tenant}:v{id}:e{id}"),
        tenant_id: tenant.into(),
        verification_id: format!("v{id}"),
        event_id: format!("e{id}"),
        requested_at: at,
        country: "BR".into(),
        variant: "champion".into(),
        fraud_score: if decision == "allow" { 0.1 } else { 0.95 },
        fraud_decision: decision.into(),
        fraud_reasons: "prefix_requests_10m,ip_requests_1h".into(),
        review_threshold: 0.5,
        block_threshold: 0.9,
        routes: "sinch:0.9100,twilio:0.8800".into(),
        top_provider: Some("sinch".into()),
        top_p_success: Some(0.91),
        chosen_provider: Some("sinch".into()),
        fraud_model: "fraud@1".into(),
        success_model: "success@1".into(),
        features: Features {
            phone_attempts_10m: id as u32,
            ip_requests_1m: Some(3),
            local_hour: Some(14),
            ..Features::default()
        },
    }
}

fn json(sql: &LakeSql, scope: &Scope, query: &str) -> serde_json::Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let result = rt.block_on(sql.query(scope, query)).unwrap();
    serde_json::from_slice(&result.encode(ResultFormat::Json).unwrap()).unwrap()
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn rows_land_by_tenant_and_day_and_the_views_answer() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().display().to_string();
    let writer = LakeWriter::open(&root).unwrap();
    // Partition 0: two tenants over two days; an odd tenant id too.
    let rows: Vec<OutcomeRow> = (0..30)
        .map(|i| {
            let tenant = ["acme", "shop/../fast", "acme"][i % 3];
            let at = DAY + (i as i64) * 3_600_000; // spans into the next day
            outcome(tenant, i, i % 4 != 0, at)
        })
        .collect();
    let refs: Vec<&OutcomeRow> = rows.iter().collect();
    block_on(writer.commit(0, 100, 130, &refs)).unwrap();
    assert_eq!(block_on(writer.position("outcomes", 0)).unwrap(), Some(130));
    assert_eq!(block_on(writer.position("outcomes", 1)).unwrap(), None);
    let scored_rows: Vec<ScoredRow> = (0..30)
        .map(|i| {
            let tenant = ["acme", "shop/../fast", "acme"][i % 3];
            scored(
                tenant,
                i,
                DAY + (i as i64) * 3_600_000,
                if i % 5 == 0 { "block" } else { "allow" },
            )
        })
        .collect();
    let refs: Vec<&ScoredRow> = scored_rows.iter().collect();
    block_on(writer.commit(0, 0, 30, &refs)).unwrap();
    let alert = AlertRow {
        alert_id: "a1".into(),
        tenant_id: "acme".into(),
        alert_type: "kpi.alert".into(),
        raised_at: DAY,
        rule: "volume_spike".into(),
        severity: "warning".into(),
        metric: "requests".into(),
        country: "BR".into(),
        provider: "".into(),
        value: 40.0,
        threshold: 4.0,
        baseline: None,
        volume: 40,
        window_start: DAY - 60_000,
        message: "m".into(),
    };
    block_on(writer.commit(2, 7, 8, &[&alert])).unwrap();

    let names: Vec<String> = std::fs::read_dir(dir.path().join("outcomes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.contains(&"tenant=acme".to_owned()), "{names:?}");
    assert!(
        names.contains(&"tenant=shop~2F~2E~2E~2Ffast".to_owned()),
        "{names:?}"
    );
    assert!(
        dir.path()
            .join("outcomes/tenant=acme/day=2026-01-06/p0-00000000000000000100.parquet")
            .exists()
    );

    let sql = LakeSql::open(&root, lake_tables(), lake_views(), SqlLimits::default()).unwrap();
    let all = json(
        &sql,
        &Scope::Operator,
        "SELECT tenant_id, count(*) AS n FROM verifications GROUP BY 1 ORDER BY 1",
    );
    assert_eq!(
        all,
        serde_json::json!([{"tenant_id": "acme", "n": 20}, {"tenant_id": "shop/../fast", "n": 10}])
    );
    // The features joined in, typed as written.
    let v = json(
        &sql,
        &Scope::Tenant("acme".into()),
        "SELECT phone_attempts_10m, ip_requests_1m, local_hour, fraud_reasons \
         FROM verifications WHERE verification_id = 'v3'",
    );
    assert_eq!(
        v,
        serde_json::json!([{"phone_attempts_10m": 3, "ip_requests_1m": 3, "local_hour": 14,
                             "fraud_reasons": "prefix_requests_10m,ip_requests_1h"}])
    );
    let kpi = json(
        &sql,
        &Scope::Tenant("acme".into()),
        "SELECT sum(requests) AS requests, sum(approved) AS approved, sum(sent) AS sent FROM kpi_minute",
    );
    let approved = (0..30).filter(|i| i % 3 != 1 && i % 4 != 0).count();
    assert_eq!(
        kpi,
        serde_json::json!([{"requests": 20, "approved": approved, "sent": 40}])
    );
    let flagged = json(
        &sql,
        &Scope::Tenant("acme".into()),
        "SELECT count(*) AS n FROM fraud_signals",
    );
    let blocks = (0..30).filter(|i| i % 3 != 1 && i % 5 == 0).count();
    assert_eq!(flagged, serde_json::json!([{"n": blocks}]));
    let scorecard = json(
        &sql,
        &Scope::Operator,
        "SELECT tenant_id, provider, requests_24h, delivery_rate_24h FROM route_scorecard ORDER BY 1",
    );
    // Only the rows within 24 h of the newest request count.
    assert_eq!(scorecard.as_array().unwrap().len(), 2, "{scorecard}");
    assert_eq!(scorecard[0]["delivery_rate_24h"], 0.5);
    let alerts = json(
        &sql,
        &Scope::Tenant("acme".into()),
        "SELECT alert_type, raised_at FROM alerts",
    );
    assert_eq!(alerts[0]["alert_type"], "kpi.alert", "{alerts}");
    assert!(
        alerts[0]["raised_at"]
            .as_str()
            .unwrap()
            .starts_with("2026-01-05T00:00:00"),
        "{alerts}"
    );
}

#[test]
fn a_batch_that_never_committed_is_removed_and_rewritten_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().display().to_string();
    let writer = LakeWriter::open(&root).unwrap();
    let rows: Vec<OutcomeRow> = (0..10).map(|i| outcome("acme", i, true, DAY)).collect();
    let first: Vec<&OutcomeRow> = rows[..5].iter().collect();
    block_on(writer.commit(3, 0, 5, &first)).unwrap();
    // A crash after the next batch's file, before its position: the file is
    // there, the position still says 5.
    let second: Vec<&OutcomeRow> = rows[5..].iter().collect();
    block_on(writer.commit(3, 5, 10, &second)).unwrap();
    std::fs::write(
        dir.path().join("_positions/outcomes/p3.json"),
        br#"{"next_offset":5}"#,
    )
    .unwrap();
    // Another partition's files are not touched.
    block_on(writer.commit(4, 5, 6, &[&outcome("acme", 99, true, DAY)])).unwrap();
    assert_eq!(block_on(writer.discard_from("outcomes", 3, 5)).unwrap(), 1);
    assert_eq!(block_on(writer.discard_from("outcomes", 3, 5)).unwrap(), 0);
    block_on(writer.commit(3, 5, 10, &second)).unwrap();
    let sql = LakeSql::open(&root, lake_tables(), lake_views(), SqlLimits::default()).unwrap();
    let n = json(
        &sql,
        &Scope::Operator,
        "SELECT count(*) AS n, count(DISTINCT verification_id) AS d FROM outcomes",
    );
    assert_eq!(n, serde_json::json!([{"n": 11, "d": 11}]));
}

#[test]
fn every_table_has_a_schema_its_rows_fill() {
    for table in lake_tables() {
        assert!(!table.schema.fields().is_empty(), "{}", table.name);
    }
    let schema = ScoredRow::schema();
    assert!(schema.field_with_name("prefix_requests_zscore").is_ok());
    assert!(
        schema.field_with_name("features").is_err(),
        "features are columns"
    );
    let batch = ScoredRow::to_batch(&[&scored("a", 1, DAY, "allow")]).unwrap();
    assert_eq!(batch.num_rows(), 1);
    assert_eq!(batch.schema(), schema);
}
