//! End to end through the real broker: events produced by confluent-kafka (not our
//! client), `veriflow run` in between, outputs read back by confluent-kafka.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::json;

const RUN_TIMEOUT: Duration = Duration::from_secs(180);
const READ_TIMEOUT: Duration = Duration::from_secs(60);
const LINGER: Duration = Duration::from_secs(3);

#[test]
fn outcomes_match_the_ground_truth() {
    let Scenario {
        d,
        dir: _dir,
        events,
        truth,
    } = Scenario::new(
        "truth",
        &[
            "--rate",
            "6",
            "--duration",
            "6m",
            "--seed",
            "11",
            "--duplicate-share",
            "0.03",
            "--fraud-share",
            "0.05",
        ],
    );
    assert!(
        truth.len() > 1500,
        "a meaningful stream: {} verifications",
        truth.len()
    );
    produce_events(&d.brokers, &d.input, &events, 0, None);

    d.run_until_end(&[], RUN_TIMEOUT);

    let outcomes = consume(&d.brokers, &d.outcomes, truth.len(), READ_TIMEOUT, LINGER);
    assert_outcomes_match_truth(&outcomes, &truth);
    let features = consume(&d.brokers, &d.features, truth.len(), READ_TIMEOUT, LINGER);
    assert_one_feature_record_each(&features, &truth);
    let approved = truth.iter().filter(|t| t["outcome"] == "approved").count();
    assert!(
        approved > truth.len() / 2 && approved < truth.len(),
        "both outcomes occur"
    );
    // The contract's shape of an outcome record.
    let o = outcomes[0].json();
    for field in [
        "outcome_id",
        "requested_at",
        "decided_at",
        "channel",
        "service",
        "failed_attempts",
        "cost",
        "currency",
    ] {
        assert!(o.get(field).is_some(), "outcome lacks `{field}`: {o}");
    }
    assert_eq!(
        outcomes[0]
            .headers
            .get("veriflow.outcome_id")
            .map(String::as_str),
        o["outcome_id"].as_str()
    );
}

/// Every kind of bad input the contract names, each with the reason it must get.
fn bad_inputs() -> Vec<(Vec<u8>, &'static str, Option<&'static str>)> {
    let event = |patch: serde_json::Value| {
        let mut e = json!({
            "event_id": "bad-1", "type": "verification.requested", "verification_id": "bad-v",
            "tenant_id": "acme-bank", "occurred_at": "2026-01-05T00:01:00.000Z",
            "phone_number": "+5511999990000", "country": "BR", "channel": "sms", "service": "login"
        });
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                e.as_object_mut().unwrap().remove(k);
            } else {
                e[k] = v.clone();
            }
        }
        serde_json::to_vec(&e).unwrap()
    };
    vec![
        (b"this is not json".to_vec(), "invalid_json", None),
        (b"".to_vec(), "invalid_json", None),
        (b"{\"event_id\": \"x\",".to_vec(), "invalid_json", None),
        (b"\xff\xfe{}".to_vec(), "invalid_utf8", None),
        (b"[1,2,3]".to_vec(), "not_an_object", None),
        (b"42".to_vec(), "not_an_object", None),
        (event(json!({"verification_id": null, "event_id": "bad-2"})), "missing_field", Some("verification_id")),
        (event(json!({"event_id": 12345})), "invalid_field", Some("event_id")),
        (event(json!({"type": "verification.teleported", "event_id": "bad-3"})), "unknown_type", Some("type")),
        (event(json!({"occurred_at": "last tuesday", "event_id": "bad-4"})), "invalid_timestamp", Some("occurred_at")),
        (event(json!({"occurred_at": "1969-07-20T20:17:00Z", "event_id": "bad-5"})), "timestamp_out_of_range", Some("occurred_at")),
        (event(json!({"occurred_at": "2999-01-01T00:00:00Z", "event_id": "bad-6"})), "timestamp_out_of_range", Some("occurred_at")),
        (event(json!({"phone_number": "12345", "event_id": "bad-7"})), "invalid_field", Some("phone_number")),
        (event(json!({"country": "XX", "event_id": "bad-8"})), "invalid_field", Some("country")),
        (event(json!({"channel": "carrier-pigeon", "event_id": "bad-9"})), "invalid_field", Some("channel")),
        (
            event(json!({"type": "verification.sent", "provider": "twilio", "attempt": "one", "event_id": "bad-10"})),
            "invalid_field",
            Some("attempt"),
        ),
        (event(json!({"event_id": "bad-11", "padding": "x".repeat(5000)})), "too_large", None),
        (
            br#"{"event_id":"bad-12","type":"verification.approved","type":"verification.sent","verification_id":"v","tenant_id":"t","occurred_at":"2026-01-05T00:01:00Z"}"#.to_vec(),
            "duplicate_field",
            Some("type"),
        ),
    ]
}

#[test]
fn bad_input_goes_to_the_dead_letter_topic_and_good_events_flow_around_it() {
    let Scenario {
        d,
        dir: _dir,
        events,
        truth,
    } = Scenario::new("dlq", &["--rate", "2", "--duration", "3m", "--seed", "5"]);
    let good: Vec<(Option<String>, Vec<u8>)> = std::fs::read_to_string(&events)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["tenant_id"].as_str().map(str::to_owned),
                l.as_bytes().to_vec(),
            )
        })
        .collect();
    // One extra verification whose events carry unknown fields: kept, never an error.
    let extra = |id: &str, ty: &str, at: &str, more: serde_json::Value| {
        let mut e = json!({"event_id": id, "type": ty, "verification_id": "v-with-extras", "tenant_id": "shopfast",
                           "occurred_at": at, "campaign": {"id": 7, "tags": ["a"]}, "sdk_version": 3});
        for (k, v) in more.as_object().unwrap() {
            e[k] = v.clone();
        }
        (Some("shopfast".to_owned()), serde_json::to_vec(&e).unwrap())
    };
    let extras = [
        extra(
            "x1",
            "verification.requested",
            "2026-01-05T00:01:00.000Z",
            json!({"phone_number": "+5511988887777", "country": "BR", "channel": "sms", "service": "login"}),
        ),
        extra(
            "x2",
            "verification.sent",
            "2026-01-05T00:01:00.300Z",
            json!({"provider": "sinch", "attempt": 1}),
        ),
        extra(
            "x3",
            "verification.approved",
            "2026-01-05T00:01:30.000Z",
            json!({}),
        ),
    ];

    let bad = bad_inputs();
    let mut records: Vec<(Option<&str>, Vec<u8>)> = Vec::new();
    let every = good.len() / (bad.len() + extras.len() + 1);
    let mut side = bad
        .iter()
        .map(|(bytes, _, _)| (Some("acme-bank"), bytes.clone()))
        .chain(extras.iter().map(|(k, v)| (k.as_deref(), v.clone())));
    for (i, (key, value)) in good.iter().enumerate() {
        records.push((key.as_deref(), value.clone()));
        if i % every == every - 1
            && let Some(s) = side.next()
        {
            records.push(s);
        }
    }
    records.extend(side);
    produce_records(&d.brokers, &d.input, &records);

    d.run_until_end(
        &[("VERIFLOW_PIPELINE__MAX_EVENT_BYTES", "4096")],
        RUN_TIMEOUT,
    );

    let dead = consume(&d.brokers, &d.dlq, bad.len(), READ_TIMEOUT, LINGER);
    assert_eq!(
        dead.len(),
        bad.len(),
        "exactly the bad records are dead-lettered"
    );
    for (bytes, reason, field) in &bad {
        let found = dead.iter().find(|r| &r.value == bytes).unwrap_or_else(|| {
            panic!(
                "no dead letter carries the original bytes of {:?}",
                String::from_utf8_lossy(bytes)
            )
        });
        assert_eq!(
            found.headers.get("veriflow.reason").map(String::as_str),
            Some(*reason),
            "{found:?}"
        );
        assert_eq!(
            found.headers.get("veriflow.field").map(String::as_str),
            *field,
            "{found:?}"
        );
        assert_eq!(found.headers.get("veriflow.source.topic"), Some(&d.input));
        assert!(
            found.headers["veriflow.source.partition"]
                .parse::<i32>()
                .is_ok()
        );
        assert!(
            found.headers["veriflow.source.offset"]
                .parse::<i64>()
                .unwrap()
                >= 0
        );
        assert!(!found.headers["veriflow.detail"].is_empty());
        assert_eq!(
            found.key.as_deref(),
            Some("acme-bank"),
            "the original key is kept"
        );
    }
    // Positions are exact: reading the source at that partition/offset gives the same bytes.
    let source = consume(
        &d.brokers,
        &d.input,
        records.len(),
        READ_TIMEOUT,
        Duration::ZERO,
    );
    for r in &dead {
        let p: i32 = r.headers["veriflow.source.partition"].parse().unwrap();
        let o: i64 = r.headers["veriflow.source.offset"].parse().unwrap();
        let original = source
            .iter()
            .find(|s| s.partition == p && s.offset == o)
            .expect("source record exists");
        assert_eq!(original.value, r.value);
    }

    let outcomes = consume(
        &d.brokers,
        &d.outcomes,
        truth.len() + 1,
        READ_TIMEOUT,
        LINGER,
    );
    let (with_extras, simulated): (Vec<_>, Vec<_>) = outcomes
        .into_iter()
        .partition(|o| o.json()["verification_id"] == "v-with-extras");
    assert_eq!(with_extras.len(), 1);
    assert_eq!(with_extras[0].json()["outcome"], "approved");
    assert_eq!(with_extras[0].json()["time_to_approve_ms"], 30_000);
    assert_outcomes_match_truth(&simulated, &truth);
}

#[test]
fn a_restart_mid_stream_gives_every_verification_exactly_one_outcome() {
    let Scenario {
        d,
        dir: _dir,
        events,
        truth,
    } = Scenario::new(
        "restart",
        &["--rate", "5", "--duration", "5m", "--seed", "23"],
    );
    let lines = std::fs::read_to_string(&events).unwrap().lines().count();
    let first = lines * 6 / 10;
    produce_events(&d.brokers, &d.input, &events, 0, Some(first));

    let child = d.spawn(
        &[("VERIFLOW_CHECKPOINT__INTERVAL", "500ms")],
        Stdio::piped(),
    );
    let ckpt_dir = d.checkpoints.path().to_path_buf();
    // A checkpoint with progress (the one written at assignment is at offset 0).
    wait_until(
        "a checkpoint past offset 0",
        Duration::from_secs(60),
        || {
            walk(&ckpt_dir).iter().any(|p| {
                p.extension().is_some_and(|e| e == "vfck")
                    && p.file_stem()
                        .is_some_and(|s| !s.to_string_lossy().trim_start_matches('0').is_empty())
            })
        },
    );
    let log = stop_gracefully(child);
    assert!(log.contains("in_flight="), "{log}");

    produce_events(&d.brokers, &d.input, &events, first, None);
    let log = d.run_until_end(&[], RUN_TIMEOUT);
    assert!(
        log.contains("restored from checkpoint"),
        "the second run resumes from the checkpoint:\n{log}"
    );

    let outcomes = consume(&d.brokers, &d.outcomes, truth.len(), READ_TIMEOUT, LINGER);
    assert_outcomes_match_truth(&outcomes, &truth);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// SIGKILL at arbitrary points, restart each time: the outputs end up exactly as an
/// uninterrupted run's — every outcome and dead letter once, none lost, none twice.
#[test]
fn sigkill_at_random_points_loses_nothing_and_duplicates_nothing() {
    let Scenario {
        d,
        dir,
        events,
        truth,
    } = Scenario::new(
        "kill9",
        &[
            "--rate",
            "20",
            "--duration",
            "12m",
            "--seed",
            "31",
            "--malformed-share",
            "0.002",
        ],
    );
    let lines = std::fs::read_to_string(&events).unwrap().lines().count();
    let malformed = std::fs::read_to_string(&events)
        .unwrap()
        .lines()
        .filter(|l| veriflow_pipelines_parse_fails(l))
        .count();
    assert!(
        malformed > 5,
        "the stream carries dead letters too ({malformed})"
    );

    // Seeded, so a failure reproduces: where in each life the kill lands.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let kills = 10;
    // Scored records too: trained models score every request.
    let models_dir = tempfile::tempdir().unwrap();
    let models = trained(models_dir.path(), "kill9");
    let scored_topic = format!("{}.scored", d.input);
    let env = [
        ("VERIFLOW_CHECKPOINT__INTERVAL", "300ms"),
        ("VERIFLOW_KAFKA__PROPERTIES__SESSION.TIMEOUT.MS", "6000"),
        ("VERIFLOW_SCORING__MODELS", models.to_str().unwrap()),
        ("VERIFLOW_TOPICS__SCORED", scored_topic.as_str()),
    ];
    let mut logs = Vec::new();
    for life in 0..kills {
        // The stream keeps arriving while the engine dies and restarts.
        let chunk = lines.div_ceil(kills);
        produce_events(&d.brokers, &d.input, &events, life * chunk, Some(chunk));
        let log_path = dir.path().join(format!("life-{life}.log"));
        let child = d.spawn(&env, std::fs::File::create(&log_path).unwrap());
        logs.push(log_path);
        let lifetime = Duration::from_millis(1500 + next() % 6000);
        std::thread::sleep(lifetime);
        let mut child = child;
        assert!(
            child.try_wait().unwrap().is_none(),
            "life {life}: the engine stopped by itself before the kill"
        );
        kill_hard(child);
    }
    let log = d.run_until_end(&env, RUN_TIMEOUT);
    let all_logs: String = logs
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .chain([log.clone()])
        .collect();
    assert!(
        all_logs.contains("will not be written again"),
        "no restart had to suppress a replayed output: the test did not exercise the crash window"
    );

    let outcomes = consume(&d.brokers, &d.outcomes, truth.len(), READ_TIMEOUT, LINGER);
    assert_outcomes_match_truth(&outcomes, &truth);
    let features = consume(&d.brokers, &d.features, truth.len(), READ_TIMEOUT, LINGER);
    assert_one_feature_record_each(&features, &truth);
    let scored = consume(&d.brokers, &scored_topic, truth.len(), READ_TIMEOUT, LINGER);
    let mut scored_ids: Vec<&str> = scored
        .iter()
        .map(|r| r.headers["veriflow.scored_id"].as_str())
        .collect();
    scored_ids.sort();
    let before = scored_ids.len();
    scored_ids.dedup();
    assert_eq!(before, scored_ids.len(), "a scored record written twice");
    assert_eq!(
        scored_ids.len(),
        truth.len(),
        "one scored record per request"
    );
    let dead = consume(&d.brokers, &d.dlq, malformed, READ_TIMEOUT, LINGER);
    let mut positions: Vec<(String, String)> = dead
        .iter()
        .map(|r| {
            (
                r.headers["veriflow.source.partition"].clone(),
                r.headers["veriflow.source.offset"].clone(),
            )
        })
        .collect();
    positions.sort();
    positions.dedup();
    assert_eq!(
        dead.len(),
        malformed,
        "each dead letter exactly once:\n{log}"
    );
    assert_eq!(positions.len(), malformed);
}

/// A line the engine must dead-letter (the simulator's malformed kinds).
fn veriflow_pipelines_parse_fails(line: &str) -> bool {
    match serde_json::from_str::<serde_json::Value>(line) {
        Err(_) => true,
        Ok(v) => {
            !v.is_object()
                || v.get("event_id").is_none()
                || v["type"].as_str().is_some_and(|t| t.contains("unheard_of"))
                || v["occurred_at"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("not-a-time"))
        }
    }
}

/// Two instances in one group share the partitions; one is SIGKILLed mid-run and the
/// survivor takes its partitions over from their checkpoints. Nothing is lost or
/// doubled, and outcomes and feature bytes equal a single instance's.
#[test]
fn two_instances_share_the_work_and_survive_losing_one() {
    let Scenario {
        d,
        dir,
        events,
        truth,
    } = Scenario::new(
        "scale",
        &[
            "--rate",
            "15",
            "--duration",
            "10m",
            "--seed",
            "47",
            "--malformed-share",
            "0.002",
        ],
    );
    let lines = std::fs::read_to_string(&events).unwrap().lines().count();
    produce_events(&d.brokers, &d.input, &events, 0, Some(lines / 3));
    let env = [
        ("VERIFLOW_CHECKPOINT__INTERVAL", "300ms"),
        ("VERIFLOW_KAFKA__PROPERTIES__SESSION.TIMEOUT.MS", "6000"),
    ];
    let start = |name: &str| {
        let log = dir.path().join(format!("{name}.log"));
        let child = d.spawn(&env, std::fs::File::create(&log).unwrap());
        (child, log)
    };
    let log_of = |log: &std::path::Path| std::fs::read_to_string(log).unwrap_or_default();
    let all: std::collections::BTreeSet<i32> = (0..4).collect();

    let (mut a, a_log) = start("a");
    wait_until(
        "the first instance to own the partitions",
        Duration::from_secs(60),
        || owned_partitions(&log_of(&a_log)) == all,
    );
    let (b, b_log) = start("b");
    wait_until(
        "the two instances to split the partitions",
        Duration::from_secs(60),
        || {
            let (oa, ob) = (
                owned_partitions(&log_of(&a_log)),
                owned_partitions(&log_of(&b_log)),
            );
            !ob.is_empty() && oa.is_disjoint(&ob) && oa.union(&ob).count() == 4
        },
    );
    let b_share = owned_partitions(&log_of(&b_log));
    produce_events(&d.brokers, &d.input, &events, lines / 3, Some(lines / 3));
    std::thread::sleep(Duration::from_secs(2));

    // B dies hard, mid-stream: A must take B's partitions over with B's state.
    kill_hard(b);
    wait_until(
        "the survivor to own every partition",
        Duration::from_secs(90),
        || owned_partitions(&log_of(&a_log)) == all,
    );
    produce_events(&d.brokers, &d.input, &events, 2 * (lines / 3), None);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        a.try_wait().unwrap().is_none(),
        "the survivor was still running"
    );
    stop_gracefully(a);
    // Decide what is still open, from the checkpoints.
    d.run_until_end(&env, RUN_TIMEOUT);
    assert!(
        !b_share.is_empty() && b_share.len() < 4,
        "the killed instance owned a share: {b_share:?}"
    );

    let outcomes = consume(&d.brokers, &d.outcomes, truth.len(), READ_TIMEOUT, LINGER);
    assert_outcomes_match_truth(&outcomes, &truth);

    // And the same features, byte for byte, as one uninterrupted instance computes.
    let single = Deployment::new("scale-single");
    create_topic(&single.brokers, &single.input, 4);
    produce_events(&single.brokers, &single.input, &events, 0, None);
    single.run_until_end(&[], RUN_TIMEOUT);
    let values = |d: &Deployment| {
        let mut v: Vec<Vec<u8>> =
            consume(&d.brokers, &d.features, truth.len(), READ_TIMEOUT, LINGER)
                .into_iter()
                .map(|r| r.value)
                .collect();
        v.sort();
        v
    };
    let (shared, alone) = (values(&d), values(&single));
    assert_eq!(shared.len(), truth.len());
    assert!(
        shared == alone,
        "features differ between two instances (with a crash) and one"
    );
}

/// The same events in another arrival order (within the allowed lateness) give
/// byte-identical outcomes through the real broker.
#[test]
fn shuffled_arrival_gives_byte_identical_outcomes() {
    let dir = tempfile::tempdir().unwrap();
    let (events, truth) = simulate_to_file(
        dir.path(),
        &[
            "--rate",
            "6",
            "--duration",
            "5m",
            "--seed",
            "61",
            "--duplicate-share",
            "0.03",
        ],
    );
    let text = std::fs::read_to_string(&events).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // Reorder: sort by event time plus a seeded jitter below the allowed lateness (2m).
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut keyed: Vec<(i64, usize)> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let at = veriflow_time(v["occurred_at"].as_str().unwrap()).expect("an RFC 3339 time");
            (at + (x % 110_000) as i64, i)
        })
        .collect();
    keyed.sort();
    let shuffled: Vec<&str> = keyed.iter().map(|(_, i)| lines[*i]).collect();
    assert_ne!(shuffled, lines, "the order really changed");
    let shuffled_path = dir.path().join("shuffled.jsonl");
    std::fs::write(&shuffled_path, shuffled.join("\n")).unwrap();

    let mut results = Vec::new();
    for (name, file) in [("ordered", &events), ("shuffled", &shuffled_path)] {
        let d = Deployment::new(name);
        create_topic(&d.brokers, &d.input, 4);
        produce_events(&d.brokers, &d.input, file, 0, None);
        d.run_until_end(&[], RUN_TIMEOUT);
        let mut values: Vec<Vec<u8>> =
            consume(&d.brokers, &d.outcomes, truth.len(), READ_TIMEOUT, LINGER)
                .into_iter()
                .map(|r| r.value)
                .collect();
        values.sort();
        results.push(values);
    }
    assert_eq!(results[0].len(), truth.len());
    assert!(
        results[0] == results[1],
        "outcomes differ between arrival orders"
    );
}

/// RFC 3339 → ms, independently of the engine's parser.
fn veriflow_time(s: &str) -> Option<i64> {
    // 2026-01-05T00:00:11.204Z
    let (date, time) = s.strip_suffix('Z')?.split_once('T')?;
    let d: Vec<i64> = date
        .split('-')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let (hms, ms) = time.split_once('.')?;
    let t: Vec<i64> = hms
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    // Days from civil (Howard Hinnant's algorithm).
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1] + 9)
    } else {
        (d[0], d[1] - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + t[0]) * 60 + t[1]) * 60_000 + t[2] * 1000 + ms.parse::<i64>().ok()?)
}

/// A partition that falls silent still decides its open verifications once it has
/// been idle for `pipeline.idle_timeout`: its event time follows the wall clock.
#[test]
fn an_idle_partition_does_not_stall_its_verifications() {
    let d = Deployment::new("idle");
    create_topic(&d.brokers, &d.input, 1);
    let event = |id: &str, ty: &str, extra: serde_json::Value| {
        let mut e = json!({"event_id": id, "type": ty, "verification_id": "lonely",
                           "tenant_id": "acme-bank", "occurred_at": "2026-01-05T10:00:00.000Z"});
        for (k, v) in extra.as_object().unwrap() {
            e[k] = v.clone();
        }
        (Some("acme-bank"), serde_json::to_vec(&e).unwrap())
    };
    produce_records(
        &d.brokers,
        &d.input,
        &[
            event(
                "l1",
                "verification.requested",
                json!({"phone_number": "+5511999990001", "country": "BR", "channel": "sms", "service": "login"}),
            ),
            event(
                "l2",
                "verification.sent",
                json!({"provider": "sinch", "attempt": 1}),
            ),
        ],
    );
    let env = [
        ("VERIFLOW_PIPELINE__TTL", "3s"),
        ("VERIFLOW_PIPELINE__ALLOWED_LATENESS", "1s"),
        ("VERIFLOW_PIPELINE__IDLE_TIMEOUT", "1s"),
    ];
    let child = d.spawn(&env, Stdio::piped());
    // Without idle advance nothing more ever arrives, and the verification stays open.
    let outcomes = consume(
        &d.brokers,
        &d.outcomes,
        1,
        Duration::from_secs(60),
        Duration::ZERO,
    );
    let mut child = child;
    assert!(
        child.try_wait().unwrap().is_none(),
        "decided while the engine kept running"
    );
    stop_gracefully(child);
    let o = outcomes[0].json();
    assert_eq!(o["verification_id"], "lonely");
    assert_eq!(o["outcome"], "expired");
    assert_eq!(o["attempts"], 1);
}

/// `/metrics`, `/healthz` and `/readyz` of a running engine tell what it did.
#[test]
fn metrics_endpoint_reports_progress_state_and_checkpoints() {
    let d = Deployment::new("metrics");
    let dir = tempfile::tempdir().unwrap();
    let (events, _) = simulate_to_file(
        dir.path(),
        &[
            "--rate",
            "4",
            "--duration",
            "3m",
            "--seed",
            "71",
            "--malformed-share",
            "0.01",
        ],
    );
    let produced = std::fs::read_to_string(&events).unwrap().lines().count();
    create_topic(&d.brokers, &d.input, 4);
    produce_events(&d.brokers, &d.input, &events, 0, None);
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let listen = format!("127.0.0.1:{port}");
    // `veriflow run` serves the API beside the pipeline, on an embedded SQLite store.
    let api_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let api_listen = format!("127.0.0.1:{api_port}");
    let api_db = format!("sqlite://{}/api/veriflow.db", dir.path().display());
    let child = d.spawn(
        &[
            ("VERIFLOW_METRICS__LISTEN", &listen),
            ("VERIFLOW_CHECKPOINT__INTERVAL", "500ms"),
            ("VERIFLOW_API__LISTEN", &api_listen),
            ("VERIFLOW_API__DATABASE_URL", &api_db),
            ("VERIFLOW_API__OPERATOR_TOKEN", "op-token"),
        ],
        Stdio::null(),
    );
    wait_until("the API to answer", Duration::from_secs(30), || {
        http_get(api_port, "/readyz").0 == 200
    });
    let created = http_request(
        "POST",
        api_port,
        "/v1/tenants",
        &[("x-api-key", "op-token")],
        Some(r#"{"id": "acme", "name": "Acme"}"#),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    assert!(dir.path().join("api/veriflow.db").exists());
    let metric = |text: &str, name: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let mut text = String::new();
    wait_until(
        "every produced record to be counted",
        Duration::from_secs(60),
        || {
            text = http_get(port, "/metrics").1;
            metric(&text, "veriflow_events_received_total") as usize == produced
        },
    );
    wait_until(
        "a checkpoint to be measured",
        Duration::from_secs(30),
        || {
            text = http_get(port, "/metrics").1;
            metric(&text, "veriflow_checkpoint_duration_seconds_count") >= 1.0
        },
    );
    assert_eq!(http_get(port, "/healthz").0, 200);
    assert_eq!(http_get(port, "/readyz").0, 200);
    assert!(
        metric(
            &text,
            "veriflow_rejected_events_total{reason=\"invalid_json\"}"
        ) >= 1.0,
        "{text}"
    );
    assert!(metric(&text, "veriflow_outcomes_total") >= 1.0, "{text}");
    assert!(
        metric(&text, "veriflow_open_verifications") >= 1.0,
        "{text}"
    );
    assert!(
        text.contains("veriflow_consumer_lag{partition=\"0\"}"),
        "{text}"
    );
    assert!(text.contains("veriflow_watermark_delay_seconds{"), "{text}");
    assert!(metric(&text, "veriflow_checkpoint_bytes") > 0.0, "{text}");
    stop_gracefully(child);
}

fn http_get(port: u16, path: &str) -> (u16, String) {
    http("GET", port, path)
}

/// A finished historical stream, consumed by a plain `veriflow run` (no
/// `--until-end`): once its partitions fall silent, every verification is decided,
/// and the outcomes equal the ground truth.
#[test]
fn a_finished_stream_is_fully_decided_by_a_running_engine() {
    let Scenario {
        d,
        dir: _dir,
        events,
        truth,
    } = Scenario::new(
        "finished",
        &["--rate", "4", "--duration", "4m", "--seed", "83"],
    );
    produce_events(&d.brokers, &d.input, &events, 0, None);
    let child = d.spawn(&[("VERIFLOW_PIPELINE__IDLE_TIMEOUT", "2s")], Stdio::piped());
    let outcomes = consume(
        &d.brokers,
        &d.outcomes,
        truth.len(),
        Duration::from_secs(90),
        LINGER,
    );
    let mut child = child;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the engine is still running"
    );
    stop_gracefully(child);
    assert_outcomes_match_truth(&outcomes, &truth);
}

/// Route statistics are merged across instances: each of two instances, owning
/// different partitions, reports the global attempts per country × provider, equal to
/// the ground truth.
#[test]
fn route_statistics_are_global_across_instances() {
    let Scenario {
        d,
        dir,
        events,
        truth,
    } = Scenario::new(
        "routes",
        &["--rate", "5", "--duration", "4m", "--seed", "97"],
    );
    let mut expected: std::collections::BTreeMap<(String, String), i64> = Default::default();
    for t in &truth {
        for p in t["providers"].as_array().unwrap() {
            let key = (
                t["country"].as_str().unwrap().to_owned(),
                p.as_str().unwrap().to_owned(),
            );
            *expected.entry(key).or_default() += 1;
        }
    }
    produce_events(&d.brokers, &d.input, &events, 0, None);
    let free_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let ports = [free_port(), free_port()];
    let mut children = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let listen = format!("127.0.0.1:{port}");
        let log = dir.path().join(format!("instance-{i}.log"));
        let env = [
            ("VERIFLOW_METRICS__LISTEN", listen.as_str()),
            ("VERIFLOW_CHECKPOINT__INTERVAL", "300ms"),
            ("VERIFLOW_PIPELINE__IDLE_TIMEOUT", "2s"),
        ];
        let child = d.spawn(&env, std::fs::File::create(&log).unwrap());
        children.push((child, log));
        if i == 0 {
            let first = &children[0].1;
            wait_until(
                "the first instance to start",
                Duration::from_secs(60),
                || {
                    std::fs::read_to_string(first)
                        .unwrap_or_default()
                        .contains("partition assigned")
                },
            );
        }
    }
    let attempts = |port: u16| -> std::collections::BTreeMap<(String, String), i64> {
        let text = http_get(port, "/metrics").1;
        text.lines()
            .filter(|l| l.starts_with("veriflow_route_attempts{"))
            .filter_map(|l| {
                let (labels, value) = l.rsplit_once(' ')?;
                let field = |name: &str| {
                    let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
                    Some(labels[start..].split('"').next()?.to_owned())
                };
                Some(((field("country")?, field("provider")?), value.parse().ok()?))
            })
            .collect()
    };
    for port in ports {
        wait_until(
            "the global route view to match the truth",
            Duration::from_secs(120),
            || attempts(port) == expected,
        );
    }
    let logs: Vec<String> = children
        .iter()
        .map(|(_, l)| std::fs::read_to_string(l).unwrap())
        .collect();
    for (mut child, _) in children {
        assert!(child.try_wait().unwrap().is_none());
        stop_gracefully(child);
    }
    // Each instance owned a share only, so each saw the others' routes through the topic.
    let owned = |log: &str| {
        (0..4)
            .filter(|p| {
                log.rsplit("partitions revoked")
                    .next()
                    .unwrap_or_default()
                    .contains(&format!("partition={p}"))
            })
            .count()
    };
    assert!(
        owned(&logs[1]) > 0 && owned(&logs[1]) < 4,
        "the second instance owned a share:\n{}",
        logs[1]
    );
}

/// Checkpoints in an S3-compatible object store: SIGKILL mid-stream, and a fresh
/// instance resumes from the checkpoint in the bucket.
#[test]
fn checkpoints_in_an_object_store_survive_a_crash() {
    let s3_port = 9000;
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", s3_port)).is_ok(),
        "no S3-compatible server on 127.0.0.1:{s3_port}: start the stack with `scripts/stack.sh up`"
    );
    let d = Deployment::new("s3ckpt");
    let bucket = unique("veriflow-ckpt").to_lowercase().replace('.', "-");
    let (status, body) = http("PUT", s3_port, &format!("/{bucket}"));
    assert_eq!(status, 200, "creating bucket {bucket}: {body}");
    let dir = tempfile::tempdir().unwrap();
    let (events, truth) = simulate_to_file(
        dir.path(),
        &["--rate", "5", "--duration", "5m", "--seed", "29"],
    );
    let lines = std::fs::read_to_string(&events).unwrap().lines().count();
    create_topic(&d.brokers, &d.input, 4);
    produce_events(&d.brokers, &d.input, &events, 0, Some(lines / 2));
    let endpoint = format!("http://127.0.0.1:{s3_port}");
    let url = format!("s3://{bucket}/checkpoints");
    let env = [
        ("VERIFLOW_CHECKPOINT__DIR", url.as_str()),
        ("VERIFLOW_CHECKPOINT__INTERVAL", "300ms"),
        ("AWS_ENDPOINT", endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "veriflow-test"),
        ("AWS_SECRET_ACCESS_KEY", "veriflow-test"),
        ("AWS_REGION", "us-east-1"),
    ];
    let child = d.spawn(&env, Stdio::null());
    wait_until(
        "a checkpoint object in the bucket",
        Duration::from_secs(60),
        || {
            http(
                "GET",
                s3_port,
                &format!("/{bucket}?list-type=2&prefix=checkpoints/"),
            )
            .1
            .contains(".vfck")
        },
    );
    kill_hard(child);
    produce_events(&d.brokers, &d.input, &events, lines / 2, None);
    let log = d.run_until_end(&env, RUN_TIMEOUT);
    assert!(log.contains(&url), "the store in use is logged:\n{log}");
    assert!(
        log.contains("restored from checkpoint"),
        "resumed from the bucket:\n{log}"
    );
    let outcomes = consume(&d.brokers, &d.outcomes, truth.len(), READ_TIMEOUT, LINGER);
    assert_outcomes_match_truth(&outcomes, &truth);
}
