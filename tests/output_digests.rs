//! A seeded stream gives the same bytes on every output topic, release after
//! release: restructuring the engine must not change what users read.
//!
//! The digests below were recorded from the build before the runtime crate
//! existed (`veriflow run` in the binary). A change that means to alter an
//! output (a new field, a model change) updates them in the same commit and
//! says why.
//!
//! The stream: simulated traffic with attacks, duplicates, malformed and late
//! events, scored by a model trained on another seed, KPIs and alerts on.
//! Route statistics are published only at checkpoints; the checkpoint
//! interval is an hour here, so the scorer reads the same (empty) global view
//! however fast the machine is, and every output is a function of the events.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use sha2::{Digest, Sha256};

/// Topic role → (records, SHA-256 of its sorted, normalized records).
const EXPECTED: &[(&str, usize, &str)] = &[
    (
        "alerts",
        5,
        "942394aab16418b70d5e46750f3ba135ee0c3cd7a139f2df00108c1ab777b32d",
    ),
    (
        "dlq",
        139,
        "e38eba1a9a04622157b975009e8cc9c352ea69cd89d866360e9276dfba9b5768",
    ),
    (
        "features",
        16499,
        "90cb3a5438ab7c51e26c1f5c88afa9fd7424b3dfb34f22440af4ef5a9d124cd3",
    ),
    (
        "late",
        3628,
        "6177f8542ea69ed4b5bac255cefe10b759ddf94f4c912945e80c2a9991fb192a",
    ),
    (
        "outcomes",
        16499,
        "1255432a1f48dfc73c28c958d66545e230c292bc8987bc2e082b3c503bda5ddf",
    ),
    (
        "route_stats",
        116,
        "9be1aea592910ecf0e89a696d238f86b9c307d6dbcbc121c991e651f1081aaef",
    ),
    (
        "scored",
        16499,
        "e87e5bab9f890b54f0510367912724385e1d8ed917ab87b33f3fd987a4d831e8",
    ),
];

fn train(dir: &std::path::Path) -> std::path::PathBuf {
    let (events, _) = simulate_to_file(
        dir,
        &[
            "--rate",
            "10",
            "--duration",
            "40m",
            "--fraud-share",
            "0.03",
            "--seed",
            "21",
        ],
    );
    let out = veriflow()
        .args(["train", "--from"])
        .arg(&events)
        .arg("--out")
        .arg(dir.join("models"))
        .args(["--version", "digest1", "--epochs", "150"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "train failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join("models").join("digest1")
}

/// One record as a line independent of where and when it was written: the
/// per-run input topic name replaced, headers sorted. A rejected record's
/// source position is left out: the producer puts messages without a key
/// (malformed ones) in a random partition, which shifts offsets.
fn normalized(c: &Consumed, input: &str) -> String {
    let text = |b: &[u8]| String::from_utf8_lossy(b).replace(input, "<input>");
    let rejected = c.headers.contains_key("veriflow.reason");
    let headers: Vec<String> = c
        .headers
        .iter()
        .filter(|(k, _)| {
            !(rejected
                && matches!(
                    k.as_str(),
                    "veriflow.source.partition" | "veriflow.source.offset"
                ))
        })
        .map(|(k, v)| format!("{k}={}", v.replace(input, "<input>")))
        .collect();
    format!(
        "{}\t{}\t{}",
        text(c.key.as_deref().unwrap_or("").as_bytes()),
        text(&c.value),
        headers.join(",")
    )
}

#[test]
fn a_seeded_stream_gives_the_recorded_bytes_on_every_output_topic() {
    let train_dir = tempfile::tempdir().unwrap();
    let models = train(train_dir.path());
    let Scenario {
        d,
        dir: _sim,
        events,
        truth,
    } = Scenario::new(
        "digest",
        &[
            "--rate",
            "5",
            "--duration",
            "60m",
            "--seed",
            "77",
            "--fraud-share",
            "0.06",
            "--malformed-share",
            "0.002",
            "--duplicate-share",
            "0.02",
            "--max-delay",
            "150s",
        ],
    );
    let scored = format!("{}.scored", d.input);
    let alerts = format!("{}.alerts", d.input);
    let vm = format!("http://{}", victoria_metrics());
    produce_events(&d.brokers, &d.input, &events, 0, None);
    d.run_until_end(
        &[
            ("VERIFLOW_SCORING__MODELS", models.to_str().unwrap()),
            ("VERIFLOW_TOPICS__SCORED", scored.as_str()),
            ("VERIFLOW_TOPICS__ALERTS", alerts.as_str()),
            ("VERIFLOW_INFLUX__URL", vm.as_str()),
            ("VERIFLOW_INFLUX__BUCKET", d.input.as_str()),
            ("VERIFLOW_CHECKPOINT__INTERVAL", "1h"),
        ],
        Duration::from_secs(300),
    );
    let topics = [
        // Late requests (delays past the lateness) make orphans: fewer
        // outcomes than verifications; the run has ended, so all are there.
        ("outcomes", d.outcomes.as_str(), truth.len() / 2),
        ("features", d.features.as_str(), truth.len() / 2),
        ("scored", scored.as_str(), truth.len() / 2),
        ("dlq", d.dlq.as_str(), 1),
        ("late", d.late.as_str(), 1),
        ("alerts", alerts.as_str(), 1),
        ("route_stats", d.route_stats.as_str(), 1),
    ];
    let mut measured = BTreeMap::new();
    for (role, topic, at_least) in topics {
        let records = consume(
            &d.brokers,
            topic,
            at_least,
            Duration::from_secs(60),
            Duration::from_secs(5),
        );
        let mut lines: Vec<String> = records.iter().map(|c| normalized(c, &d.input)).collect();
        lines.sort();
        let digest = Sha256::digest(lines.join("\n").as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        measured.insert(role, (lines.len(), hex));
    }
    let report: Vec<String> = measured
        .iter()
        .map(|(role, (n, hex))| format!("    (\"{role}\", {n}, \"{hex}\"),"))
        .collect();
    for (role, n, hex) in EXPECTED {
        let (got_n, got_hex) = &measured[role];
        assert_eq!(
            (got_n, got_hex.as_str()),
            (n, *hex),
            "{role} differs from the recorded stream; measured:\n{}",
            report.join("\n")
        );
    }
}
