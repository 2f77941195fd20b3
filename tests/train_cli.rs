//! `veriflow train` and `veriflow evaluate` as a user runs them: simulate history
//! to a file, train on it, evaluate on traffic from another seed; then
//! `veriflow run` scoring a live stream with the trained models.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;

#[test]
fn the_stream_scores_every_request_with_the_trained_models() {
    let dir = tempfile::tempdir().unwrap();
    let models = trained(dir.path(), "live1");
    let Scenario {
        d,
        dir: _sim,
        events,
        truth,
    } = Scenario::new(
        "scoring",
        &[
            "--rate",
            "5",
            "--duration",
            "5m",
            "--seed",
            "32",
            // Attacks are rare, large events: enough of them in five minutes.
            "--fraud-share",
            "0.15",
        ],
    );
    let scored = run_scored(&d, &events, &models, truth.len(), Duration::from_secs(180));
    let mut by_id = BTreeMap::new();
    for s in &scored {
        let v = s.json();
        by_id.insert(v["verification_id"].as_str().unwrap().to_string(), v);
    }
    assert_eq!(
        by_id.len(),
        truth.len(),
        "one scored record per verification"
    );
    let (mut fraud, mut fraud_flagged, mut legit, mut legit_blocked) = (0, 0, 0, 0);
    for t in &truth {
        let v = &by_id[t["verification_id"].as_str().unwrap()];
        assert_eq!(v["model"]["fraud"]["version"], "live1");
        assert_eq!(v["variant"], "champion");
        let score = v["fraud_score"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&score), "{v}");
        let routes = v["routes"].as_array().unwrap();
        assert!(!routes.is_empty());
        let p: Vec<f64> = routes
            .iter()
            .map(|r| r["p_success"].as_f64().unwrap())
            .collect();
        assert!(
            p.windows(2).all(|w| w[0] >= w[1]),
            "ranked best first: {p:?}"
        );
        let decision = v["fraud_decision"].as_str().unwrap();
        assert!(["allow", "review", "block"].contains(&decision));
        if t["is_fraud"] == true {
            fraud += 1;
            fraud_flagged += usize::from(decision != "allow");
            assert!(!v["fraud_reasons"].as_array().unwrap().is_empty(), "{v}");
        } else {
            legit += 1;
            legit_blocked += usize::from(decision == "block");
        }
    }
    assert!(fraud > 20, "the stream has attacks ({fraud})");
    assert!(
        fraud_flagged as f64 >= 0.8 * fraud as f64,
        "{fraud_flagged} of {fraud} pumping requests flagged"
    );
    // The block threshold is set for 0.5 % false blocks on the training holdout
    // (warm state); this stream starts cold, where new numbers look riskier:
    // the bound here is 2 %, the quality target is the models crate's business.
    assert!(
        (legit_blocked as f64) <= 0.02 * legit as f64,
        "{legit_blocked} of {legit} legitimate requests blocked"
    );
}

/// A model trained for another feature schema stops `veriflow run` at start
/// with a clear message.
#[test]
fn run_refuses_models_of_another_feature_schema() {
    let dir = tempfile::tempdir().unwrap();
    let models = trained(dir.path(), "old");
    let card_path = models.join("card.json");
    let card = std::fs::read_to_string(&card_path).unwrap().replace(
        "\"pipeline_feature_schema\": 3",
        "\"pipeline_feature_schema\": 2",
    );
    std::fs::write(&card_path, card).unwrap();
    let d = Deployment::new("scoring-schema");
    let out = d
        .command(&[("VERIFLOW_SCORING__MODELS", models.to_str().unwrap())])
        .arg("--until-end")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("feature schema") && stderr.contains("retrain"),
        "{stderr}"
    );
}

#[test]
fn train_then_evaluate_on_held_out_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history");
    let other = dir.path().join("other");
    std::fs::create_dir_all(&history).unwrap();
    std::fs::create_dir_all(&other).unwrap();
    let sim = ["--rate", "10", "--duration", "40m", "--fraud-share", "0.03"];
    let (events, _) = simulate_to_file(&history, &[&sim[..], &["--seed", "21"]].concat());
    let (other_events, _) = simulate_to_file(&other, &[&sim[..], &["--seed", "22"]].concat());
    let models = dir.path().join("models");

    let out = veriflow()
        .args(["train", "--from"])
        .arg(&events)
        .args(["--out"])
        .arg(&models)
        .args([
            "--version",
            "t1",
            "--epochs",
            "150",
            "--until",
            "2026-01-05T00:35:00Z",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "train failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("fraud    average precision"), "{stdout}");
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(models.join("t1/card.json")).unwrap())
            .unwrap();
    assert!(models.join("t1/model.safetensors").exists());
    assert!(
        card["training"]["until"].as_str().unwrap() < "2026-01-05T00:35:00Z",
        "--until bounds the training data: {}",
        card["training"]
    );
    assert!(card["fraud_features"].as_array().unwrap().len() > 20);

    let out = veriflow()
        .args(["evaluate", "--models"])
        .arg(models.join("t1"))
        .arg("--from")
        .arg(&other_events)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "evaluate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("model veriflow-scoring t1"), "{stdout}");
    assert!(stdout.contains("uplift captured"), "{stdout}");

    // A missing truth file is a clear error, not a panic.
    std::fs::remove_file(other.join("events.truth.jsonl")).unwrap();
    let out = veriflow()
        .args(["evaluate", "--models"])
        .arg(models.join("t1"))
        .arg("--from")
        .arg(&other_events)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ground truth") && stderr.contains("--truth"),
        "{stderr}"
    );
}

/// History can be a topic: `--from kafka://host:port/topic` reads every
/// partition from the beginning and replays it like a file.
#[test]
fn train_from_a_kafka_topic_replays_it_from_the_beginning() {
    let Scenario {
        d,
        dir: sim,
        events,
        truth,
    } = Scenario::new(
        "train-kafka",
        &[
            "--rate",
            "10",
            "--duration",
            "20m",
            "--seed",
            "23",
            "--fraud-share",
            "0.05",
        ],
    );
    produce_events(&d.brokers, &d.input, &events, 0, None);
    let models = sim.path().join("models");
    let train = |from: String, version: &str| {
        let out = veriflow()
            .args(["train", "--from", &from, "--truth"])
            .arg(sim.path().join("events.truth.jsonl"))
            .arg("--out")
            .arg(&models)
            .args(["--version", version, "--epochs", "100"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "train --from {from} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let card: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(models.join(version).join("card.json")).unwrap(),
        )
        .unwrap();
        card
    };
    let from_topic = train(format!("kafka://{}/{}", d.brokers, d.input), "k1");
    let rows = |card: &serde_json::Value| {
        card["training"]["train_rows"].as_u64().unwrap()
            + card["training"]["holdout_rows"].as_u64().unwrap()
    };
    assert_eq!(
        rows(&from_topic) as usize,
        truth.len(),
        "every verification of the topic replayed"
    );
    assert_eq!(
        from_topic["training"]["source"],
        format!("kafka://{}/{}", d.brokers, d.input)
    );
    let from_file = train(events.display().to_string(), "f1");
    assert_eq!(rows(&from_file), rows(&from_topic));

    // A topic with nothing in it is a clear error.
    let empty = unique("train-empty");
    create_topic(&d.brokers, &empty, 2);
    let out = veriflow()
        .args([
            "train",
            "--from",
            &format!("kafka://{}/{empty}", d.brokers),
            "--truth",
        ])
        .arg(sim.path().join("events.truth.jsonl"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("holds no records"), "{stderr}");
}

/// A new model version is picked up without a restart; a broken one is refused
/// and the running version stays.
#[test]
fn models_reload_without_a_restart_and_a_bad_version_is_refused() {
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let v1 = trained(dir.path(), "hot1");
    let v2 = trained(dir.path(), "hot2");
    let current = dir.path().join("current");
    let point = |target: &std::path::Path| {
        let tmp = dir.path().join("current.tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(target, &tmp).unwrap();
        std::fs::rename(&tmp, &current).unwrap();
    };
    point(&v1);
    let Scenario {
        d,
        dir: _sim,
        events,
        truth,
    } = Scenario::new(
        "hot-reload",
        &["--rate", "5", "--duration", "6m", "--seed", "33"],
    );
    let scored_topic = format!("{}.scored", d.input);
    let mut child = d.spawn(
        &[
            ("VERIFLOW_SCORING__MODELS", current.to_str().unwrap()),
            ("VERIFLOW_SCORING__RELOAD_INTERVAL", "200ms"),
            ("VERIFLOW_TOPICS__SCORED", scored_topic.as_str()),
            // The stream's tail is released when input stays quiet this long
            // (longer than the pause between the two halves, or the second
            // half would arrive late).
            ("VERIFLOW_PIPELINE__IDLE_TIMEOUT", "20s"),
        ],
        Stdio::piped(),
    );
    let rx = stderr_lines(&mut child);
    let wait_log = |what: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(what) => return line,
                Ok(_) => {}
                Err(_) => panic!("no log line with {what:?}"),
            }
        }
    };
    // Versions in each partition's order (records of one partition are in the
    // order they were scored).
    let versions = |n: usize| -> BTreeMap<i32, Vec<String>> {
        let mut consumed = consume(
            &d.brokers,
            &scored_topic,
            n,
            Duration::from_secs(60),
            Duration::from_secs(1),
        );
        consumed.sort_by_key(|c| (c.partition, c.offset));
        let mut by_partition: BTreeMap<i32, Vec<String>> = BTreeMap::new();
        for c in consumed {
            let v = c.json()["model"]["fraud"]["version"]
                .as_str()
                .unwrap()
                .to_string();
            by_partition.entry(c.partition).or_default().push(v);
        }
        by_partition
    };
    let half = 2 * truth.len(); // about half of the events (≈4 per verification)
    produce_events(&d.brokers, &d.input, &events, 0, Some(half));
    let first = versions(50);
    assert!(first.values().flatten().all(|v| v == "hot1"), "{first:?}");

    point(&v2);
    wait_log("scoring models reloaded");
    // A version with another feature schema: refused, hot2 stays.
    let bad = dir.path().join("models/bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::copy(v2.join("model.safetensors"), bad.join("model.safetensors")).unwrap();
    let card = std::fs::read_to_string(v2.join("card.json"))
        .unwrap()
        .replace(
            "\"pipeline_feature_schema\": 3",
            "\"pipeline_feature_schema\": 2",
        );
    std::fs::write(bad.join("card.json"), card).unwrap();
    point(&bad);
    wait_log("new scoring models refused");

    produce_events(&d.brokers, &d.input, &events, half, None);
    let all = versions(truth.len());
    assert!(
        all.values().flatten().any(|v| v == "hot2"),
        "the new version scores"
    );
    for (partition, seq) in &all {
        if let Some(first_v2) = seq.iter().position(|v| v == "hot2") {
            assert!(
                seq[first_v2..].iter().all(|v| v == "hot2"),
                "partition {partition}: never back to hot1, never the bad version"
            );
        }
    }
    stop_gracefully(child);
}

/// Champion/challenger: the challenger decides for its share of verifications
/// (and says so in `variant`); in shadow mode it scores beside the champion.
#[test]
fn a_challenger_decides_for_its_share_and_a_shadow_only_scores() {
    let dir = tempfile::tempdir().unwrap();
    let champion = trained(dir.path(), "champ");
    let challenger = trained(dir.path(), "chall");
    for shadow in [false, true] {
        let Scenario {
            d,
            dir: _sim,
            events,
            truth,
        } = Scenario::new("ab", &["--rate", "4", "--duration", "3m", "--seed", "34"]);
        let scored_topic = format!("{}.scored", d.input);
        // The variant KPI under a measurement name of this run's own
        // (VictoriaMetrics outlives test runs).
        let measurement = unique("vf_variant").replace('-', "_");
        let sql = dir.path().join(&measurement);
        std::fs::create_dir_all(&sql).unwrap();
        std::fs::copy(
            repo().join("sql/kpi/veriflow_kpi_variant.sql"),
            sql.join(format!("{measurement}.sql")),
        )
        .unwrap();
        let vm = format!("http://{}", victoria_metrics());
        produce_events(&d.brokers, &d.input, &events, 0, None);
        d.run_until_end(
            &[
                ("VERIFLOW_SCORING__MODELS", champion.to_str().unwrap()),
                ("VERIFLOW_SCORING__CHALLENGER", challenger.to_str().unwrap()),
                ("VERIFLOW_SCORING__CHALLENGER_SHARE", "0.5"),
                (
                    "VERIFLOW_SCORING__SHADOW",
                    if shadow { "true" } else { "false" },
                ),
                ("VERIFLOW_TOPICS__SCORED", scored_topic.as_str()),
                ("VERIFLOW_INFLUX__URL", vm.as_str()),
                ("VERIFLOW_KPI__SQL_DIR", sql.to_str().unwrap()),
                ("VERIFLOW_KPI__PROVISIONAL", "false"),
            ],
            Duration::from_secs(180),
        );
        let scored = consume(
            &d.brokers,
            &scored_topic,
            truth.len(),
            Duration::from_secs(60),
            Duration::from_secs(2),
        );
        let mut arms: BTreeMap<String, usize> = BTreeMap::new();
        for c in &scored {
            let v = c.json();
            let variant = v["variant"].as_str().unwrap().to_string();
            let version = v["model"]["fraud"]["version"].as_str().unwrap();
            let expected = if variant == "challenger" {
                "chall"
            } else {
                "champ"
            };
            assert_eq!(version, expected, "{variant} is scored by its own model");
            if shadow {
                assert_eq!(variant, "champion", "a shadow decides nothing");
                assert_eq!(v["shadow"]["model"]["fraud"]["version"], "chall");
                assert!(v["shadow"]["fraud_score"].is_number());
            } else {
                assert!(v.get("shadow").is_none());
            }
            *arms.entry(variant).or_default() += 1;
        }
        if !shadow {
            let share = arms.get("challenger").copied().unwrap_or(0) as f64 / scored.len() as f64;
            assert!(
                (0.4..=0.6).contains(&share),
                "challenger share {share}: {arms:?}"
            );
        }
        // Each outcome carries the scores its verification was given.
        let by_id: BTreeMap<String, serde_json::Value> = scored
            .iter()
            .map(|c| {
                let v = c.json();
                (v["verification_id"].as_str().unwrap().to_string(), v)
            })
            .collect();
        let mut blocked: BTreeMap<String, usize> = BTreeMap::new();
        for v in by_id.values() {
            *blocked
                .entry(v["variant"].as_str().unwrap().to_string())
                .or_default() += usize::from(v["fraud_decision"] == "block");
        }
        let outcomes = consume(
            &d.brokers,
            &d.outcomes,
            truth.len(),
            Duration::from_secs(60),
            Duration::from_secs(1),
        );
        for o in &outcomes {
            let o = o.json();
            let s = &by_id[o["verification_id"].as_str().unwrap()];
            assert_eq!(o["scores"]["variant"], s["variant"], "{o}");
            assert_eq!(o["scores"]["fraud_score"], s["fraud_score"], "{o}");
            assert_eq!(o["scores"]["fraud_decision"], s["fraud_decision"], "{o}");
        }
        // The variant KPI: requests and blocks per arm add up to the records.
        let mut kpi: BTreeMap<(String, String), f64> = BTreeMap::new();
        wait_until(
            "the variant KPI in VictoriaMetrics",
            Duration::from_secs(30),
            || {
                kpi.clear();
                for (name, labels, samples) in vm_export(&format!("{measurement}_")) {
                    let field = name.trim_start_matches(&format!("{measurement}_"));
                    let total: f64 = samples.iter().map(|(_, v)| v).sum();
                    *kpi.entry((labels["variant"].clone(), field.to_string()))
                        .or_default() += total;
                }
                let requests: f64 = kpi
                    .iter()
                    .filter(|((_, f), _)| f == "requests")
                    .map(|(_, v)| v)
                    .sum();
                requests as usize == truth.len()
            },
        );
        for (variant, n) in &arms {
            assert_eq!(
                kpi.get(&(variant.clone(), "requests".into())).copied(),
                Some(*n as f64),
                "{variant} requests: {kpi:?}"
            );
            assert_eq!(
                kpi.get(&(variant.clone(), "fraud_blocked".into()))
                    .copied()
                    .unwrap_or(0.0),
                blocked.get(variant).copied().unwrap_or(0) as f64,
                "{variant} blocks: {kpi:?}"
            );
        }
    }
}

/// `POST /v1/route` and `/v1/score` answer from the stream's live state: for a
/// request about to be sent, the HTTP answer carries exactly the features,
/// scores, ranking, choice and decision that the stream's scored record carries
/// when the same request then arrives — under the tenant's own thresholds and
/// provider policy.
#[test]
fn route_and_score_over_http_give_the_streams_numbers() {
    use std::process::Stdio;
    use veriflow_pipelines::time::{format_rfc3339, parse_rfc3339};
    let dir = tempfile::tempdir().unwrap();
    let models = trained(dir.path(), "sync1");
    let Scenario {
        d,
        dir: _sim,
        events,
        truth,
    } = Scenario::new(
        "sync-scoring",
        &[
            "--rate",
            "5",
            "--duration",
            "3m",
            "--seed",
            "34",
            "--fraud-share",
            "0.05",
        ],
    );
    let history = read_json_lines(&events);
    // The prospect: a phone that already asked, of a tenant with history.
    let fraud_ids: std::collections::BTreeSet<&str> = truth
        .iter()
        .filter(|t| t["is_fraud"] == true)
        .filter_map(|t| t["verification_id"].as_str())
        .collect();
    let requests: Vec<&serde_json::Value> = history
        .iter()
        .filter(|e| e["type"] == "verification.requested")
        .collect();
    let seen = requests
        .iter()
        .rev()
        .find(|e| fraud_ids.contains(e["verification_id"].as_str().unwrap()))
        .or(requests.last())
        .copied()
        .unwrap()
        .clone();
    let tenant = seen["tenant_id"].as_str().unwrap().to_string();
    let last = history
        .iter()
        .filter_map(|e| parse_rfc3339(e["occurred_at"].as_str()?))
        .max()
        .unwrap();
    let minute = 60_000;
    // After every history verification is decided (TTL 10 min, lateness 2 min).
    let clock1 = last + 13 * minute;
    let prospect_at = clock1 - minute;
    let clock2 = clock1 + 3 * minute;

    let scored_topic = format!("{}.scored", d.input);
    let db = format!("sqlite://{}/api.db", dir.path().display());
    let mut child = d.spawn(
        &[
            ("VERIFLOW_SCORING__MODELS", models.to_str().unwrap()),
            ("VERIFLOW_TOPICS__SCORED", scored_topic.as_str()),
            ("VERIFLOW_API__LISTEN", "127.0.0.1:0"),
            ("VERIFLOW_API__DATABASE_URL", db.as_str()),
            ("VERIFLOW_API__OPERATOR_TOKEN", OPERATOR),
            ("VERIFLOW_CHECKPOINT__INTERVAL", "300ms"),
        ],
        Stdio::piped(),
    );
    let rx = stderr_lines(&mut child);
    let port = api_port_from_log(&rx);
    let created = api_call(
        port,
        "POST",
        "/v1/tenants",
        OPERATOR,
        Some(serde_json::json!({
            "id": tenant, "name": tenant,
            "fraud_thresholds": {"review": 0.2, "block": 0.6},
            "providers": {"deny": ["sinch"]}})),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let key = created.json()["admin_key"]["key"]
        .as_str()
        .unwrap()
        .to_string();

    produce_events(&d.brokers, &d.input, &events, 0, None);
    // Watermarks are per partition: every tenant's clock moves past the history.
    let tenants: std::collections::BTreeSet<&str> = truth
        .iter()
        .filter_map(|t| t["tenant_id"].as_str())
        .collect();
    let clocks: Vec<(Option<&str>, Vec<u8>)> = tenants
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let phone = format!("+35840100{i:04}");
            let clock = request_event(t, &format!("clock-1-{t}"), clock1, &phone, "FI", None);
            (Some(*t), clock)
        })
        .collect();
    produce_records(&d.brokers, &d.input, &clocks);
    // Every history request scored; their verifications all decided.
    consume(
        &d.brokers,
        &scored_topic,
        truth.len(),
        Duration::from_secs(120),
        Duration::from_secs(1),
    );

    let phone = seen["phone_number"].as_str().unwrap();
    let country = seen["country"].as_str().unwrap();
    let ip = seen["ip"].as_str();
    let mut body = serde_json::json!({
        "verification_id": "sync-r", "phone_number": phone, "country": country,
        "requested_at": format_rfc3339(prospect_at)});
    if let Some(ip) = ip {
        body["ip"] = ip.into();
    }
    // Route statistics reach the view at checkpoints: wait until the answer
    // stops changing.
    let mut previous = serde_json::Value::Null;
    let mut routed = serde_json::Value::Null;
    wait_until(
        "a settled /v1/route answer",
        Duration::from_secs(30),
        || {
            std::thread::sleep(Duration::from_millis(700));
            let r = api_call(port, "POST", "/v1/route", &key, Some(body.clone()));
            assert_eq!(r.status, 200, "{}", r.body);
            routed = r.json();
            let settled = routed == previous;
            previous = routed.clone();
            settled
        },
    );
    let scored_http = api_call(port, "POST", "/v1/score", &key, Some(body.clone()));
    assert_eq!(scored_http.status, 200, "{}", scored_http.body);
    let scored_http = scored_http.json();

    produce_records(
        &d.brokers,
        &d.input,
        &[
            (
                Some(tenant.as_str()),
                request_event(&tenant, "sync-r", prospect_at, phone, country, ip),
            ),
            (
                Some(tenant.as_str()),
                request_event(&tenant, "clock-2", clock2, "+358402000002", "FI", None),
            ),
        ],
    );
    // The prospect is the first record after the history in its partition.
    let all = consume(
        &d.brokers,
        &scored_topic,
        truth.len() + 1,
        Duration::from_secs(60),
        Duration::from_secs(3),
    );
    let streamed = all
        .iter()
        .map(|c| c.json())
        .find(|v| v["verification_id"] == "sync-r")
        .expect("the prospect, once sent, is scored by the stream");
    // Generated requests, valid and invalid, against the live scorer.
    let report = schemathesis(port, &key, &["--include-tag", "scoring"]);
    assert!(report.contains("/v1/route"), "{report}");
    stop_gracefully(child);

    assert!(
        routed["features_partition"].is_number(),
        "the tenant's partition was found: {routed}"
    );
    assert_eq!(streamed["features"]["phone_first_seen"], false);
    for field in [
        "features",
        "fraud_score",
        "fraud_decision",
        "fraud_reasons",
        "fraud_thresholds",
        "routes",
        "choice",
        "model",
        "variant",
    ] {
        assert_eq!(
            routed[field], streamed[field],
            "{field}: HTTP {} vs stream {}",
            routed[field], streamed[field]
        );
    }
    for field in ["features", "fraud_score", "fraud_decision", "fraud_reasons"] {
        assert_eq!(scored_http[field], streamed[field], "/v1/score {field}");
    }
    assert_eq!(
        streamed["fraud_thresholds"],
        serde_json::json!({"review": 0.2, "block": 0.6}),
        "the tenant's thresholds"
    );
    let providers: Vec<&str> = streamed["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["provider"].as_str().unwrap())
        .collect();
    assert!(
        !providers.is_empty() && !providers.contains(&"sinch"),
        "the tenant's deny list: {providers:?}"
    );
}

/// A `verification.requested` event as upstream sends it.
fn request_event(
    tenant: &str,
    vid: &str,
    at: i64,
    phone: &str,
    country: &str,
    ip: Option<&str>,
) -> Vec<u8> {
    let mut e = serde_json::json!({
        "event_id": format!("{vid}-e1"), "type": "verification.requested",
        "verification_id": vid, "tenant_id": tenant,
        "occurred_at": veriflow_pipelines::time::format_rfc3339(at),
        "phone_number": phone, "country": country, "channel": "sms", "service": "login"});
    if let Some(ip) = ip {
        e["ip"] = ip.into();
    }
    e.to_string().into_bytes()
}

/// The `[pipeline]` settings a history was replayed with travel in the model
/// card; evaluating (or serving) under other settings says so.
#[test]
fn training_records_its_pipeline_settings_and_evaluate_reports_a_difference() {
    let dir = tempfile::tempdir().unwrap();
    let (events, _) = simulate_to_file(
        dir.path(),
        &[
            "--rate",
            "10",
            "--duration",
            "20m",
            "--seed",
            "23",
            "--max-delay",
            "30s",
        ],
    );
    let config = dir.path().join("short.toml");
    std::fs::write(
        &config,
        "[pipeline]\nttl = \"5m\"\nallowed_lateness = \"1m\"\n",
    )
    .unwrap();
    let out = veriflow()
        .args(["train", "--from"])
        .arg(&events)
        .arg("--config")
        .arg(&config)
        .arg("--out")
        .arg(dir.path().join("models"))
        .args(["--version", "short", "--epochs", "60"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let card: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("models/short/card.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(card["training"]["pipeline"]["ttl"], "5m");
    assert_eq!(card["training"]["pipeline"]["allowed_lateness"], "1m");
    let evaluate = |config: Option<&std::path::Path>| {
        let mut cmd = veriflow();
        cmd.args(["evaluate", "--models"])
            .arg(dir.path().join("models/short"))
            .arg("--from")
            .arg(&events);
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let default = evaluate(None);
    assert!(
        default.contains("pipeline.ttl: trained 5m, here 10m")
            && default.contains("pipeline.allowed_lateness: trained 1m, here 2m"),
        "{default}"
    );
    let same = evaluate(Some(&config));
    assert!(!same.contains("warning"), "{same}");
}

/// `veriflow run` recalibrates `p_success` online from the outcomes it
/// decides: on a world whose true rates are far from the training world's
/// (another family: lower conversion, other providers), the probabilities it
/// serves start off (the model's own) and converge to the truth once the
/// first outcomes are learned (one TTL in). The thresholds it decides with
/// are never below the card's.
#[test]
fn the_stream_recalibrates_on_a_world_unlike_the_training_one() {
    let dir = tempfile::tempdir().unwrap();
    let models = trained(dir.path(), "recal1");
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(models.join("card.json")).unwrap()).unwrap();
    let floor = card["block_threshold"].as_f64().unwrap();
    let Scenario {
        d,
        dir: _sim,
        events,
        truth,
    } = Scenario::new(
        "recalibrate",
        &[
            "--rate",
            "6",
            "--duration",
            "45m",
            "--seed",
            "5",
            "--world",
            "varied:3",
        ],
    );
    let scored = run_scored(&d, &events, &models, truth.len(), Duration::from_secs(300));
    let truth: BTreeMap<String, &serde_json::Value> = truth
        .iter()
        .map(|t| (t["verification_id"].as_str().unwrap().to_string(), t))
        .collect();
    let start = scored
        .iter()
        .map(|s| instant(s.json()["requested_at"].as_str().unwrap()))
        .min()
        .unwrap();
    // (served p, true P) of each legitimate first attempt, early and late.
    let (mut early, mut late) = (Vec::new(), Vec::new());
    for s in &scored {
        let v = s.json();
        assert!(
            v["fraud_thresholds"]["block"].as_f64().unwrap() >= floor - 1e-9,
            "{v}"
        );
        let t = truth[v["verification_id"].as_str().unwrap()];
        let Some(first) = t["providers"].as_array().and_then(|p| p.first()) else {
            continue;
        };
        if t["is_fraud"].as_bool().unwrap() {
            continue;
        }
        let first = first.as_str().unwrap();
        let served = v["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["provider"] == first)
            .and_then(|r| r["p_success"].as_f64());
        let (Some(served), Some(true_p)) = (served, t["p_success"][first].as_f64()) else {
            continue;
        };
        let minutes = (instant(v["requested_at"].as_str().unwrap()) - start) / 60_000;
        match minutes {
            0..8 => early.push((served, true_p)),
            20.. => late.push((served, true_p)),
            _ => {}
        }
    }
    assert!(
        early.len() > 500 && late.len() > 1_000,
        "{} {}",
        early.len(),
        late.len()
    );
    let (e, l) = (ece(&early), ece(&late));
    eprintln!("ECE against the truth: first 8 minutes {e:.4}, after 20 minutes {l:.4}");
    assert!(
        e > 0.05,
        "this world's rates differ from the training world's: {e}"
    );
    assert!(l <= 0.03 && l < e / 2.0, "recalibrated: {l} (before {e})");
}

/// Expected calibration error of predictions against true probabilities
/// (10 bins, weighted by count).
fn ece(pairs: &[(f64, f64)]) -> f64 {
    let mut bins = [(0.0, 0.0, 0usize); 10];
    for (p, t) in pairs {
        let b = ((p * 10.0) as usize).min(9);
        bins[b].0 += p;
        bins[b].1 += t;
        bins[b].2 += 1;
    }
    bins.iter()
        .filter(|b| b.2 > 0)
        .map(|(p, t, _)| (p - t).abs() / pairs.len() as f64)
        .sum()
}

fn instant(s: &str) -> i64 {
    veriflow_pipelines::time::parse_rfc3339(s).unwrap()
}

/// Produces `events`, runs `veriflow run` with `models` scoring until the
/// input's end, and reads the `expected` scored records.
fn run_scored(
    d: &Deployment,
    events: &std::path::Path,
    models: &std::path::Path,
    expected: usize,
    within: Duration,
) -> Vec<Consumed> {
    let scored_topic = format!("{}.scored", d.input);
    produce_events(&d.brokers, &d.input, events, 0, None);
    d.run_until_end(
        &[
            ("VERIFLOW_SCORING__MODELS", models.to_str().unwrap()),
            ("VERIFLOW_TOPICS__SCORED", scored_topic.as_str()),
        ],
        within,
    );
    consume(
        &d.brokers,
        &scored_topic,
        expected,
        Duration::from_secs(60),
        Duration::from_secs(2),
    )
}
