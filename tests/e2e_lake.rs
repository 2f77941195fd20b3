//! The history lake end to end: events produced by confluent-kafka, `veriflow
//! run` keeping Parquet under `lake.dir`, killed with SIGKILL while it writes,
//! and the lake read back by `veriflow sql`, by DuckDB and pyarrow (readers
//! that are not ours), and over `POST /v1/sql` with tenants' API keys.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const RUN_TIMEOUT: Duration = Duration::from_secs(240);

/// Settings that make a small stream cut into many lake batches.
const LAKE_FAST: [(&str, &str); 3] = [
    ("VERIFLOW_LAKE__FLUSH_INTERVAL", "200ms"),
    ("VERIFLOW_LAKE__MAX_ROWS", "40"),
    ("VERIFLOW_CHECKPOINT__INTERVAL", "500ms"),
];

/// `veriflow sql --format json` over `lake` as `tenant` (None: the operator).
fn sql(lake: &str, tenant: Option<&str>, query: &str, env: &[(&str, &str)]) -> Value {
    let mut cmd = veriflow();
    cmd.args(["sql", "--lake", lake, "--format", "json", query]);
    if let Some(t) = tenant {
        cmd.args(["--tenant", t]);
    }
    let out = cmd
        .envs(env.iter().copied())
        .output()
        .expect("veriflow sql");
    assert!(
        out.status.success(),
        "veriflow sql {query:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("veriflow sql --format json prints JSON")
}

fn count(lake: &str, query: &str, env: &[(&str, &str)]) -> i64 {
    sql(lake, None, query, env)[0]["n"].as_i64().unwrap_or(-1)
}

/// Per tenant: (verifications, approved, expired, attempts) from the simulator's truth.
fn truth_by_tenant(truth: &[Value]) -> BTreeMap<String, (i64, i64, i64, i64)> {
    let mut by = BTreeMap::new();
    for t in truth {
        let e = by
            .entry(t["tenant_id"].as_str().unwrap().to_owned())
            .or_insert((0, 0, 0, 0));
        e.0 += 1;
        match t["outcome"].as_str().unwrap() {
            "approved" => e.1 += 1,
            _ => e.2 += 1,
        }
        e.3 += t["attempts"].as_i64().unwrap();
    }
    by
}

/// The same per-tenant numbers as the lake's `verifications` view gives them.
fn lake_by_tenant(
    lake: &str,
    tenant: Option<&str>,
    env: &[(&str, &str)],
) -> BTreeMap<String, (i64, i64, i64, i64)> {
    let rows = sql(
        lake,
        tenant,
        "SELECT tenant_id, count(*) AS n, \
                sum(CASE WHEN outcome = 'approved' THEN 1 ELSE 0 END) AS approved, \
                sum(CASE WHEN outcome = 'expired' THEN 1 ELSE 0 END) AS expired, \
                sum(attempts) AS attempts \
         FROM verifications GROUP BY tenant_id ORDER BY tenant_id",
        env,
    );
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["tenant_id"].as_str().unwrap().to_owned(),
                (
                    r["n"].as_i64().unwrap(),
                    r["approved"].as_i64().unwrap(),
                    r["expired"].as_i64().unwrap(),
                    r["attempts"].as_i64().unwrap(),
                ),
            )
        })
        .collect()
}

/// DuckDB (PyPI) over the lake's `outcomes` files: rows, distinct ids, per outcome.
fn duckdb_counts(dir: &Path) -> Value {
    let script = r#"
import duckdb, json, sys
glob = sys.argv[1] + "/outcomes/*/*/*.parquet"
con = duckdb.connect()
n, distinct = con.execute(f"SELECT count(*), count(DISTINCT tenant_id || '/' || verification_id) FROM read_parquet('{glob}', hive_partitioning = true)").fetchone()
by = dict(con.execute(f"SELECT outcome, count(*) FROM read_parquet('{glob}') GROUP BY 1").fetchall())
import pyarrow.dataset as ds
table = ds.dataset(sys.argv[1] + "/outcomes", format="parquet", partitioning="hive").to_table()
print(json.dumps({"rows": n, "distinct": distinct, "by_outcome": by, "pyarrow_rows": table.num_rows}))
"#;
    let out = Command::new("python3")
        .args(["-c", script, &dir.display().to_string()])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "duckdb/pyarrow could not read the lake (pip install duckdb pyarrow): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_lake_holds_every_verification_once_across_kill_9() {
    let Scenario {
        d,
        dir: _dir,
        events,
        truth,
    } = Scenario::new("lake", &["--rate", "8", "--duration", "8m", "--seed", "61"]);
    let lake_dir = tempfile::tempdir().unwrap();
    let lake = lake_dir.path().display().to_string();
    let mut env: Vec<(&str, &str)> = LAKE_FAST.to_vec();
    env.push(("VERIFLOW_LAKE__DIR", lake.as_str()));
    let lines = std::fs::read_to_string(&events).unwrap().lines().count();

    // Two crashes while the lake is being written, each after more rows landed.
    produce_events(&d.brokers, &d.input, &events, 0, Some(lines * 2 / 3));
    let mut seen = 0;
    for round in 0..2 {
        let child = d.spawn(&env, Stdio::null());
        wait_until(
            "more outcome rows in the lake",
            Duration::from_secs(120),
            || {
                let n = count(&lake, "SELECT count(*) AS n FROM outcomes", &[]);
                n > seen + 40
            },
        );
        seen = count(&lake, "SELECT count(*) AS n FROM outcomes", &[]);
        kill_hard(child);
        if round == 0 {
            produce_events(&d.brokers, &d.input, &events, lines * 2 / 3, None);
        }
    }
    d.run_until_end(&env, RUN_TIMEOUT);

    let total = truth.len() as i64;
    assert_eq!(
        count(&lake, "SELECT count(*) AS n FROM outcomes", &[]),
        total
    );
    assert_eq!(
        count(
            &lake,
            "SELECT count(DISTINCT tenant_id || '/' || verification_id) AS n FROM outcomes",
            &[]
        ),
        total,
        "no verification twice"
    );
    assert_eq!(lake_by_tenant(&lake, None, &[]), truth_by_tenant(&truth));
    // Every tenant alone sees its own numbers, and nothing of the others.
    for (tenant, numbers) in truth_by_tenant(&truth) {
        let seen = lake_by_tenant(&lake, Some(&tenant), &[]);
        assert_eq!(
            seen,
            BTreeMap::from([(tenant.clone(), numbers)]),
            "{tenant}"
        );
    }
    // Readers that are not ours agree, and every file opens.
    let duck = duckdb_counts(lake_dir.path());
    assert_eq!(duck["rows"], json!(total), "{duck}");
    assert_eq!(duck["distinct"], json!(total), "{duck}");
    assert_eq!(duck["pyarrow_rows"], json!(total), "{duck}");
    let approved = truth.iter().filter(|t| t["outcome"] == "approved").count();
    assert_eq!(duck["by_outcome"]["approved"], json!(approved), "{duck}");
    // The views plan and answer over the same rows.
    let kpi = sql(
        &lake,
        None,
        "SELECT sum(requests) AS n, sum(approved) AS approved FROM kpi_minute",
        &[],
    );
    assert_eq!(kpi[0]["n"], json!(total));
    assert_eq!(kpi[0]["approved"], json!(approved));
    let scorecard = sql(
        &lake,
        None,
        "SELECT sum(requests_24h) AS n FROM route_scorecard",
        &[],
    );
    let sent = truth
        .iter()
        .filter(|t| t["providers"].as_array().is_some_and(|p| !p.is_empty()))
        .count();
    assert_eq!(
        scorecard[0]["n"],
        json!(sent),
        "every sent verification: 8 minutes are within 24 h"
    );
}

/// `POST /v1/sql` with tenants' keys: each sees its own rows whatever it sends,
/// the operator sees all, roles without `sql:query` are refused, formats follow
/// `Accept`, bad SQL is a problem with its SQLSTATE.
#[test]
fn sql_over_http_is_scoped_to_the_callers_tenant() {
    let Scenario {
        d,
        dir: _dir,
        events,
        truth,
    } = Scenario::new(
        "lakehttp",
        &["--rate", "6", "--duration", "4m", "--seed", "62"],
    );
    let lake_dir = tempfile::tempdir().unwrap();
    let lake = lake_dir.path().display().to_string();
    let mut env: Vec<(&str, &str)> = LAKE_FAST.to_vec();
    env.push(("VERIFLOW_LAKE__DIR", lake.as_str()));
    produce_events(&d.brokers, &d.input, &events, 0, None);
    d.run_until_end(&env, RUN_TIMEOUT);
    let expected = truth_by_tenant(&truth);
    assert!(expected.len() >= 2, "the scenario has several tenants");

    let db = tempfile::tempdir().unwrap();
    let api = ApiProcess::start(
        &format!("sqlite://{}/api.db", db.path().display()),
        &[("VERIFLOW_LAKE__DIR", lake.as_str())],
    );
    let mut keys = BTreeMap::new();
    for tenant in expected.keys() {
        let r = api.call(
            "POST",
            "/v1/tenants",
            OPERATOR,
            Some(json!({"id": tenant, "name": tenant})),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        let admin = r.json()["admin_key"]["key"].as_str().unwrap().to_owned();
        let mut role_keys = BTreeMap::new();
        for role in ["analyst", "viewer", "developer"] {
            let r = api.call(
                "POST",
                "/v1/auth/keys",
                &admin,
                Some(json!({"name": format!("{role}-key"), "role": role})),
            );
            assert_eq!(r.status, 201, "{}", r.body);
            role_keys.insert(role, r.json()["key"].as_str().unwrap().to_owned());
        }
        keys.insert(tenant.clone(), role_keys);
    }
    let post = |key: &str, sql: &str, accept: &str| {
        http_request(
            "POST",
            api.port,
            "/v1/sql",
            &[("x-api-key", key), ("accept", accept)],
            Some(&json!({ "sql": sql }).to_string()),
        )
    };
    let (first, second) = {
        let mut it = expected.keys();
        (it.next().unwrap().clone(), it.next().unwrap().clone())
    };
    let analyst = keys[&first]["analyst"].clone();
    let by_tenant =
        "SELECT tenant_id, count(*) AS n FROM verifications GROUP BY tenant_id ORDER BY tenant_id";
    let r = post(&analyst, by_tenant, "application/json");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json(),
        json!([{"tenant_id": first, "n": expected[&first].0}])
    );
    // The operator sees every tenant.
    let r = post(OPERATOR, by_tenant, "application/json");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json().as_array().unwrap().len(), expected.len());

    // Attempts to reach the second tenant's rows with the first one's key.
    let lake_path = lake_dir.path().display().to_string();
    let other = |q: &str| {
        q.replace("{other}", &second)
            .replace("{first}", &first)
            .replace("{lake}", &lake_path)
    };
    let attempts = [
        "SELECT count(*) AS n FROM verifications WHERE tenant_id = '{other}'",
        "SELECT count(*) AS n FROM outcomes WHERE tenant_id <> '{first}' OR tenant_id = '{other}'",
        "SELECT count(*) AS n FROM (SELECT * FROM verifications UNION ALL SELECT * FROM verifications) v WHERE tenant_id = '{other}'",
        "WITH x AS (SELECT * FROM outcomes) SELECT count(*) AS n FROM x WHERE tenant_id = '{other}'",
        "SELECT count(*) AS n FROM kpi_minute WHERE tenant_id = '{other}'",
        "SELECT count(*) AS n FROM route_scorecard WHERE tenant_id = '{other}'",
        "SELECT count(*) AS n FROM outcomes a JOIN outcomes b ON a.verification_id = b.verification_id WHERE b.tenant_id = '{other}'",
        "SELECT count(*) AS n FROM (SELECT tenant_id, row_number() OVER (PARTITION BY tenant_id) AS r FROM outcomes) WHERE tenant_id = '{other}'",
    ];
    for q in attempts {
        let q = other(q);
        let r = post(&analyst, &q, "application/json");
        assert_eq!(r.status, 200, "{q}: {}", r.body);
        assert_eq!(r.json(), json!([{"n": 0}]), "{q}");
    }
    let refused = [
        "SELECT * FROM '{lake}/outcomes/tenant={other}/'",
        "CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '{lake}/outcomes/'",
        "COPY (SELECT * FROM outcomes) TO '/tmp/x.csv'",
        "SET datafusion.execution.target_partitions = 1",
        "DROP VIEW verifications",
        "INSERT INTO outcomes SELECT * FROM outcomes",
    ];
    for q in refused {
        let q = other(q);
        let r = post(&analyst, &q, "application/json");
        assert!(
            (400..500).contains(&r.status) && r.json()["sqlstate"].is_string(),
            "{q}: {} {}",
            r.status,
            r.body
        );
        assert!(
            !r.body.contains(&format!("\"{second}\"")),
            "{q}: {}",
            r.body
        );
    }
    // Roles: viewers and developers do not read history.
    for role in ["viewer", "developer"] {
        let r = post(&keys[&first][role], by_tenant, "application/json");
        assert_eq!(r.status, 403, "{role}: {}", r.body);
    }
    // Formats by Accept.
    let r = post(&analyst, by_tenant, "text/csv");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"));
    assert_eq!(
        r.body.trim(),
        format!("tenant_id,n\n{first},{}", expected[&first].0)
    );
    let r = post(&analyst, by_tenant, "image/png");
    assert_eq!(r.status, 406, "{}", r.body);
    // Bad SQL: a problem with the PostgreSQL code, not a 500.
    for (q, code) in [
        ("SELEC 1", "42601"),
        ("SELECT no_such_column FROM outcomes", "42703"),
        ("SELECT * FROM no_such_table", "42P01"),
    ] {
        let r = post(&analyst, q, "application/json");
        assert_eq!(r.status, 422, "{q}: {}", r.body);
        assert_eq!(r.json()["sqlstate"], code, "{q}: {}", r.body);
    }
    api.stop();
}

/// The lake in the stack's S3-compatible store, read back through it.
#[test]
fn the_lake_lives_in_an_object_store() {
    let s3_port = 9000;
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", s3_port)).is_ok(),
        "no S3-compatible server on 127.0.0.1:{s3_port}: start the stack with `scripts/stack.sh up`"
    );
    let bucket = unique("veriflow-lake").to_lowercase().replace('.', "-");
    let (status, body) = http("PUT", s3_port, &format!("/{bucket}"));
    assert_eq!(status, 200, "creating bucket {bucket}: {body}");
    let Scenario {
        d,
        dir: _dir,
        events,
        truth,
    } = Scenario::new(
        "lakes3",
        &["--rate", "5", "--duration", "4m", "--seed", "63"],
    );
    let endpoint = format!("http://127.0.0.1:{s3_port}");
    let url = format!("s3://{bucket}/history");
    let mut env: Vec<(&str, &str)> = LAKE_FAST.to_vec();
    env.extend([
        ("VERIFLOW_LAKE__DIR", url.as_str()),
        ("AWS_ENDPOINT", endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "veriflow-test"),
        ("AWS_SECRET_ACCESS_KEY", "veriflow-test"),
        ("AWS_REGION", "us-east-1"),
    ]);
    produce_events(&d.brokers, &d.input, &events, 0, None);
    let child = d.spawn(&env, Stdio::null());
    wait_until(
        "outcome rows in the bucket",
        Duration::from_secs(120),
        || count(&url, "SELECT count(*) AS n FROM outcomes", &env) > 20,
    );
    kill_hard(child);
    let log = d.run_until_end(&env, RUN_TIMEOUT);
    assert_eq!(
        lake_by_tenant(&url, None, &env),
        truth_by_tenant(&truth),
        "{log}"
    );
    let listing = http(
        "GET",
        s3_port,
        &format!("/{bucket}?list-type=2&prefix=history/outcomes/tenant="),
    )
    .1;
    assert!(listing.contains("/day=2026-01-05/p"), "{listing}");
}
