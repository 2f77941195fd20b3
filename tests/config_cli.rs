//! A bad configuration stops `veriflow run` before it creates anything — no
//! topic, no checkpoint directory, no database, no connection — with an error
//! that names the key and where its value came from.

mod common;

use std::path::Path;
use std::process::Stdio;

use common::*;

/// Runs `veriflow run` in `dir` with `env` (and `file` as `--config` when
/// given) against a broker address nothing listens on; returns stderr.
fn refused(dir: &Path, env: &[(&str, &str)], file: Option<&str>) -> String {
    let mut cmd = veriflow();
    cmd.current_dir(dir)
        .args(["run", "--brokers", "127.0.0.1:1", "--until-end"])
        .arg("--checkpoint-dir")
        .arg(dir.join("checkpoints"))
        .env(
            "VERIFLOW_API__DATABASE_URL",
            format!("sqlite://{}/api.db", dir.display()),
        )
        .env("VERIFLOW_WEBHOOKS__KEY_FILE", dir.join("webhooks.key"))
        .env("VERIFLOW_METRICS__LISTEN", "127.0.0.1:0")
        .env("VERIFLOW_API__LISTEN", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(text) = file {
        let path = dir.join("veriflow.toml");
        std::fs::write(&path, text).unwrap();
        cmd.arg("--config").arg(&path);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().unwrap();
    let (status, log) = wait_with_timeout(child, std::time::Duration::from_secs(30));
    assert!(!status.success(), "veriflow run accepted {env:?} {file:?}");
    let created: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "veriflow.toml" && n != "models" && n != "sql")
        .collect();
    assert!(
        created.is_empty(),
        "created {created:?} before refusing {env:?}:\n{log}"
    );
    assert!(
        !log.contains("127.0.0.1:1"),
        "it got as far as the broker:\n{log}"
    );
    log
}

#[test]
fn a_bad_value_in_each_section_is_refused_before_anything_is_created() {
    let cases: &[(&str, &str, &str)] = &[
        ("VERIFLOW_KAFKA__RESUME_REWIND", "-1", "kafka.resume_rewind"),
        ("VERIFLOW_KAFKA__GROUP_ID", "", "kafka.group_id"),
        ("VERIFLOW_TOPICS__PARTITIONS", "0", "topics.partitions"),
        ("VERIFLOW_TOPICS__LATE", "verifications.dlq", "topics.late"),
        (
            "VERIFLOW_TOPICS__SCORED",
            "a topic with spaces",
            "topics.scored",
        ),
        ("VERIFLOW_PIPELINE__TTL", "ten minutes", "pipeline.ttl"),
        (
            "VERIFLOW_PIPELINE__IDLE_TIMEOUT",
            "0s",
            "pipeline.idle_timeout",
        ),
        (
            "VERIFLOW_CHECKPOINT__INTERVAL",
            "0ms",
            "checkpoint.interval",
        ),
        ("VERIFLOW_CHECKPOINT__DIR", "s3://", "checkpoint.dir"),
        ("VERIFLOW_METRICS__LISTEN", "no-port", "metrics.listen"),
        (
            "VERIFLOW_API__RATE_LIMIT_PER_SECOND",
            "0",
            "api.rate_limit_per_second",
        ),
        (
            "VERIFLOW_API__DATABASE_URL",
            "mysql://x",
            "api.database_url",
        ),
        ("VERIFLOW_KPI__WINDOW", "500ms", "kpi.window"),
        ("VERIFLOW_INFLUX__URL", "ftp://metrics", "influx.url"),
        ("VERIFLOW_INFLUX__BATCH_POINTS", "0", "influx.batch_points"),
        (
            "VERIFLOW_WEBHOOKS__RETRY_JITTER",
            "1.5",
            "webhooks.retry_jitter",
        ),
        (
            "VERIFLOW_WEBHOOKS__ALLOW_NETWORKS",
            "10.0.0.0/33",
            "webhooks.allow_networks",
        ),
        (
            "VERIFLOW_WEBHOOKS__ENCRYPTION_KEY",
            "not-base64!",
            "webhooks.encryption_key",
        ),
        (
            "VERIFLOW_SCORING__CHALLENGER_SHARE",
            "2",
            "scoring.challenger_share",
        ),
        (
            "VERIFLOW_SCORING__MODELS",
            "/nonexistent/models",
            "scoring.models",
        ),
        (
            "VERIFLOW_SCORING__RELOAD_INTERVAL",
            "soon",
            "scoring.reload_interval",
        ),
    ];
    for (var, value, key) in cases {
        let dir = tempfile::tempdir().unwrap();
        let log = refused(dir.path(), &[(var, value)], None);
        assert!(
            log.contains(key) && log.contains(var),
            "{var}={value}: the error names neither {key} nor the variable:\n{log}"
        );
    }
}

#[test]
fn a_bad_file_value_names_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let log = refused(
        dir.path(),
        &[],
        Some(
            "[[alerts.rules]]\nname = \"x\"\nmetric = \"requests\"\nscope = \"tenant\"\ncomparison = \"spike\"\nthreshold = 0.5\n",
        ),
    );
    assert!(log.contains("veriflow.toml"), "{log}");
    assert!(log.contains("alerts.rules[0].threshold"), "{log}");
    let dir = tempfile::tempdir().unwrap();
    let log = refused(dir.path(), &[], Some("[kafka]\nbroker = \"typo:9092\"\n"));
    assert!(
        log.contains("veriflow.toml") && log.contains("broker"),
        "{log}"
    );
    let dir = tempfile::tempdir().unwrap();
    let log = refused(dir.path(), &[], Some("[pipeline\nttl = 1"));
    assert!(log.contains("not TOML"), "{log}");
}

#[test]
fn what_the_config_names_is_checked_before_anything_is_created() {
    // A KPI file that does not plan, and models of a schema this build does
    // not compute: both read at start, both before any side effect.
    let dir = tempfile::tempdir().unwrap();
    let sql = dir.path().join("sql");
    std::fs::create_dir(&sql).unwrap();
    std::fs::write(
        sql.join("broken.sql"),
        "SELECT no_such_column FROM verifications",
    )
    .unwrap();
    let log = refused(
        dir.path(),
        &[
            ("VERIFLOW_INFLUX__URL", "http://127.0.0.1:1"),
            ("VERIFLOW_KPI__SQL_DIR", sql.to_str().unwrap()),
        ],
        None,
    );
    assert!(log.contains("broken.sql"), "{log}");
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    std::fs::create_dir(&models).unwrap();
    std::fs::write(models.join("card.json"), "{\"name\": \"not a card\"}").unwrap();
    let log = refused(
        dir.path(),
        &[("VERIFLOW_SCORING__MODELS", models.to_str().unwrap())],
        None,
    );
    assert!(log.contains("card"), "{log}");
}
