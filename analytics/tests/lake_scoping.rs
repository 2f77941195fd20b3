//! Tenant scoping of analysts' SQL over real Parquet files in a lake directory:
//! whatever a tenant sends, it reads its own rows or gets an error.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use veriflow_analytics::lake::{LakeSql, LakeTable, Scope, SqlLimits, tenant_dir};

/// Tenants and their row counts; the odd ids test the directory encoding.
const TENANTS: [(&str, i64); 5] = [
    ("acme", 3),
    ("globex", 5),
    ("../acme", 7),
    ("acme/x", 11),
    ("~2E~2E", 13),
];

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("tenant_id", DataType::Utf8, false),
        Field::new("verification_id", DataType::Utf8, false),
        Field::new("cost_micros", DataType::Int64, false),
    ]))
}

fn lake(limits: SqlLimits) -> (tempfile::TempDir, LakeSql) {
    let dir = tempfile::tempdir().unwrap();
    for (tenant, rows) in TENANTS {
        for table in ["verifications", "alerts"] {
            let d = dir
                .path()
                .join(table)
                .join(format!("tenant={}", tenant_dir(tenant)))
                .join("day=2026-01-01");
            std::fs::create_dir_all(&d).unwrap();
            let ids: Vec<String> = (0..rows).map(|i| format!("{tenant}-v{i}")).collect();
            let batch = RecordBatch::try_new(
                schema(),
                vec![
                    Arc::new(StringArray::from(vec![tenant; rows as usize])),
                    Arc::new(StringArray::from(ids)),
                    Arc::new(Int64Array::from_iter_values(0..rows)),
                ],
            )
            .unwrap();
            let file = std::fs::File::create(d.join("p0-00000000000000000000.parquet")).unwrap();
            let mut w = ArrowWriter::try_new(file, schema(), None).unwrap();
            w.write(&batch).unwrap();
            w.close().unwrap();
        }
    }
    // A file placed by hand beside the tenant directories, as if by another tool.
    std::fs::copy(
        dir.path()
            .join("verifications")
            .join("tenant=globex/day=2026-01-01/p0-00000000000000000000.parquet"),
        dir.path().join("stray.parquet"),
    )
    .unwrap();
    let tables = ["verifications", "alerts"]
        .into_iter()
        .map(|name| LakeTable {
            name: name.into(),
            schema: schema(),
        })
        .collect();
    let views = vec![(
        "per_tenant".to_owned(),
        "SELECT tenant_id, count(*) AS n FROM verifications GROUP BY tenant_id".to_owned(),
    )];
    let sql = LakeSql::open(dir.path().to_str().unwrap(), tables, views, limits).unwrap();
    (dir, sql)
}

fn run(sql: &LakeSql, scope: &Scope, q: &str) -> Result<Vec<RecordBatch>, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(sql.query(scope, q))
        .map(|r| r.batches)
        .map_err(|e| format!("{e}"))
}

/// Every text value in the answer.
fn texts(batches: &[RecordBatch]) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        for c in b.columns() {
            if let Some(s) = c.as_any().downcast_ref::<StringArray>() {
                out.extend(
                    (0..s.len())
                        .filter(|i| s.is_valid(*i))
                        .map(|i| s.value(i).to_owned()),
                );
            }
        }
    }
    out
}

fn total(batches: &[RecordBatch]) -> i64 {
    batches
        .iter()
        .filter_map(|b| b.column(0).as_any().downcast_ref::<Int64Array>().cloned())
        .flat_map(|a| a.values().to_vec())
        .sum()
}

#[test]
fn a_tenant_reads_only_its_own_rows_whatever_it_sends() {
    let (_dir, sql) = lake(SqlLimits::default());
    let me = Scope::Tenant("acme".into());
    let attempts = [
        "SELECT * FROM verifications",
        "SELECT * FROM verifications WHERE tenant_id <> 'acme'",
        "SELECT * FROM verifications WHERE tenant_id = 'globex'",
        "SELECT * FROM verifications WHERE tenant_id = 'acme' OR true",
        "SELECT * FROM verifications WHERE tenant_id LIKE '%'",
        "SELECT * FROM alerts",
        "SELECT v.* FROM verifications v JOIN alerts a ON v.verification_id = a.verification_id",
        "SELECT a.* FROM verifications v RIGHT JOIN alerts a ON false",
        "SELECT a.* FROM verifications v FULL OUTER JOIN alerts a ON v.tenant_id = a.tenant_id",
        "SELECT * FROM verifications CROSS JOIN alerts",
        "WITH x AS (SELECT * FROM verifications) SELECT * FROM x",
        "WITH RECURSIVE x AS (SELECT tenant_id FROM verifications) SELECT * FROM x",
        "SELECT * FROM (SELECT * FROM (SELECT * FROM alerts) s) t",
        "SELECT * FROM verifications WHERE verification_id IN (SELECT verification_id FROM alerts)",
        "SELECT * FROM verifications WHERE EXISTS (SELECT 1 FROM alerts WHERE alerts.tenant_id = 'globex')",
        "SELECT * FROM verifications UNION ALL SELECT * FROM alerts",
        "SELECT * FROM verifications UNION SELECT * FROM alerts EXCEPT SELECT * FROM alerts WHERE false",
        "SELECT tenant_id, row_number() OVER (PARTITION BY tenant_id) FROM verifications",
        "SELECT tenant_id, count(*) OVER () FROM alerts",
        "SELECT * FROM per_tenant",
        "SELECT * FROM information_schema.tables",
        "SELECT * FROM information_schema.columns",
        "SHOW TABLES",
        "SELECT * FROM datafusion.public.verifications",
        "SELECT * FROM \"verifications\"",
        "SELECT * FROM 'stray.parquet'",
        "SELECT * FROM 'verifications/tenant=globex/day=2026-01-01/p0-00000000000000000000.parquet'",
        "SELECT * FROM verifications; SELECT * FROM alerts",
        "SELECT * FROM unnest([1, 2])",
        "SELECT * FROM generate_series(1, 3)",
        "SELECT * FROM verifications AS OF SYSTEM TIME '2020-01-01'",
        "SELECT * FROM verifications WHERE tenant_id = '../acme'",
        "SELECT * FROM verifications WHERE tenant_id = 'acme/x'",
        "SELECT (SELECT max(tenant_id) FROM alerts), * FROM verifications",
    ];
    let mut answered = 0;
    for q in attempts {
        match run(&sql, &me, q) {
            Ok(batches) => {
                answered += 1;
                for t in texts(&batches) {
                    let other = ["globex", "../acme", "acme/x", "~2E~2E"]
                        .iter()
                        .any(|o| t == *o || t.starts_with(&format!("{o}-")));
                    assert!(!other, "{q:?} leaked {t:?}");
                }
            }
            Err(e) => assert!(e.contains("SQLSTATE"), "{q:?}: {e}"),
        }
    }
    assert!(
        answered >= 20,
        "most attempts are valid SQL and answer: {answered}"
    );
    // Its own rows are all there.
    let own = run(&sql, &me, "SELECT count(*) FROM verifications").unwrap();
    assert_eq!(total(&own), 3);
    // A tenant whose id looks like a path or an escape reads its own directory
    // only; a tenant with no files reads nothing (and no error).
    for (tenant, table, rows) in [
        ("../acme", "verifications", 7),
        ("acme/x", "alerts", 11),
        ("~2E~2E", "verifications", 13),
        ("initech", "verifications", 0),
    ] {
        let scope = Scope::Tenant(tenant.into());
        let got = run(&sql, &scope, &format!("SELECT count(*) FROM {table}")).unwrap();
        assert_eq!(total(&got), rows, "{tenant}");
    }
}

#[test]
fn the_operator_reads_every_tenant() {
    let (_dir, sql) = lake(SqlLimits::default());
    let all = run(&sql, &Scope::Operator, "SELECT count(*) FROM verifications").unwrap();
    assert_eq!(total(&all), TENANTS.iter().map(|(_, n)| n).sum::<i64>());
    let groups = run(&sql, &Scope::Operator, "SELECT n FROM per_tenant").unwrap();
    assert_eq!(total(&groups), 39);
}

#[test]
fn only_queries_run_and_each_refusal_has_a_code() {
    let (dir, sql) = lake(SqlLimits::default());
    let me = Scope::Tenant("acme".into());
    let refused = [
        (
            format!(
                "CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '{}/verifications/'",
                dir.path().display()
            ),
            "42501",
        ),
        ("CREATE TABLE x AS SELECT 1".into(), "42501"),
        (
            "CREATE VIEW x AS SELECT * FROM verifications".into(),
            "42501",
        ),
        ("DROP TABLE verifications".into(), "42501"),
        (
            "INSERT INTO verifications VALUES ('a', 'b', 1)".into(),
            "42501",
        ),
        (
            format!("COPY verifications TO '{}/out.csv'", dir.path().display()),
            "42501",
        ),
        ("SET datafusion.execution.batch_size = 1".into(), "42501"),
        ("BEGIN".into(), "42501"),
        ("SELEC * FROM verifications".into(), "42601"),
        ("SELECT * FROM nowhere".into(), "42P01"),
        ("SELECT no_such_column FROM verifications".into(), "42703"),
    ];
    for (q, code) in refused {
        let e = run(&sql, &me, &q).expect_err(&q);
        assert!(e.contains(&format!("SQLSTATE {code}")), "{q:?}: {e}");
    }
    assert!(!dir.path().join("out.csv").exists());
    // Deep nesting and huge texts are errors, not a stack overflow.
    let deep = format!("SELECT {}1{}", "(".repeat(20_000), ")".repeat(20_000));
    let e = run(&sql, &me, &deep).unwrap_err();
    assert!(e.contains("SQLSTATE"), "{e}");
    let huge = format!("SELECT 1 {}", " ".repeat(1 << 20));
    let e = run(&sql, &me, &huge).unwrap_err();
    assert!(e.contains("SQLSTATE 54000"), "{e}");
}

#[test]
fn limits_are_errors_not_truncations() {
    let (_dir, sql) = lake(SqlLimits {
        max_rows: 4,
        max_memory_bytes: 64 << 20,
        timeout: Duration::from_secs(30),
    });
    let e = run(&sql, &Scope::Operator, "SELECT * FROM verifications").unwrap_err();
    assert!(
        e.contains("SQLSTATE 54000") && e.contains("more than 4 rows"),
        "{e}"
    );
    assert!(
        run(
            &sql,
            &Scope::Operator,
            "SELECT * FROM verifications LIMIT 4"
        )
        .is_ok()
    );

    let (_dir, sql) = lake(SqlLimits {
        max_rows: 10,
        max_memory_bytes: 1 << 20,
        timeout: Duration::from_secs(30),
    });
    let e = run(
        &sql,
        &Scope::Operator,
        "SELECT count(DISTINCT a.value * 100000 + b.value) FROM generate_series(1, 2000) a, generate_series(1, 2000) b",
    )
    .unwrap_err();
    assert!(e.contains("SQLSTATE 53200"), "{e}");
}

/// The planner check on its own: a plan whose scan lists a file outside the
/// allow-list fails, whatever put it there.
#[test]
fn the_plan_check_fails_a_scan_outside_the_allow_list() {
    let (dir, _sql) = lake(SqlLimits::default());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let ctx = datafusion::prelude::SessionContext::new();
        let globex = dir.path().join("verifications/tenant=globex/");
        ctx.register_parquet(
            "v",
            globex.to_str().unwrap(),
            datafusion::prelude::ParquetReadOptions::default(),
        )
        .await
        .unwrap();
        let plan = ctx
            .sql("SELECT * FROM v")
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let root = root.to_str().unwrap().trim_start_matches('/');
        let acme = format!("{root}/verifications/tenant=acme/");
        let e = veriflow_analytics::lake::check_plan(&plan, &[acme]).unwrap_err();
        assert_eq!(e.code, "42501");
        assert!(e.message.contains("tenant=globex"), "{}", e.message);
        let globex = format!("{root}/verifications/tenant=globex/");
        veriflow_analytics::lake::check_plan(&plan, &[globex]).unwrap();
    });
}
