//! `veriflow simulate` from the command line: determinism and the ground-truth file.

mod common;

use common::*;

/// Two minutes at 10/s with `seed` and `more` arguments: the events' and
/// the truth's bytes.
fn simulate_bytes(seed: &str, more: &[&str]) -> (Vec<u8>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["--rate", "10", "--duration", "2m", "--seed", seed];
    args.extend_from_slice(more);
    let (events, _) = simulate_to_file(dir.path(), &args);
    (
        std::fs::read(&events).unwrap(),
        std::fs::read(dir.path().join("events.truth.jsonl")).unwrap(),
    )
}

const MALFORMED: &[&str] = &["--malformed-share", "0.01"];

#[test]
fn same_seed_same_bytes() {
    let (events_a, truth_a) = simulate_bytes("42", MALFORMED);
    let (events_b, truth_b) = simulate_bytes("42", MALFORMED);
    assert!(events_a.len() > 100_000, "{} bytes", events_a.len());
    assert!(
        events_a == events_b,
        "events differ between two runs with one seed"
    );
    assert!(
        truth_a == truth_b,
        "truth differs between two runs with one seed"
    );
    let (events_c, _) = simulate_bytes("43", MALFORMED);
    assert!(events_a != events_c, "another seed gives another stream");
}

#[test]
fn ground_truth_describes_every_verification() {
    let dir = tempfile::tempdir().unwrap();
    let (events, truth) = simulate_to_file(
        dir.path(),
        &["--rate", "10", "--duration", "2m", "--seed", "3"],
    );
    let requested = std::fs::read_to_string(&events)
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"verification.requested\""))
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["verification_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(requested.len(), truth.len());
    for t in &truth {
        assert!(requested.contains(t["verification_id"].as_str().unwrap()));
        let p = t["p_success"].as_object().unwrap();
        assert!(p.len() >= 4, "a true success probability per provider");
        assert!(
            p.values()
                .all(|x| (0.0..=1.0).contains(&x.as_f64().unwrap()))
        );
        assert!(t["is_fraud"].is_boolean());
    }
}

/// A varied world from the command line: its own providers and tenants,
/// the same bytes for the same family and seed.
#[test]
fn a_varied_world_has_its_own_providers_and_repeats() {
    let run = |family: &str| {
        let (events, truth) = simulate_bytes(
            "3",
            &["--world", family, "--attacks", "mimicry,slow-spread"],
        );
        (events, String::from_utf8(truth).unwrap())
    };
    let (a, truth) = run("varied:7");
    let (b, _) = run("varied:7");
    assert!(a == b, "one family and seed, one stream");
    let mut providers = std::collections::BTreeSet::new();
    for line in truth.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(
            v["tenant_id"].as_str().unwrap().starts_with("tenant-7-"),
            "{v}"
        );
        for p in v["p_success"].as_object().unwrap().keys() {
            providers.insert(p.clone());
        }
    }
    for standard in ["twilio", "sinch", "infobip", "vonage", "messagebird"] {
        assert!(!providers.contains(standard), "{providers:?}");
    }
    assert!(providers.len() >= 2, "{providers:?}");
    let (c, _) = run("varied:8");
    assert!(a != c, "another family, another world");
}

#[test]
fn bad_arguments_get_clear_messages() {
    let simulate = |more: &[&str]| {
        let mut args = vec!["simulate", "--rate", "1"];
        args.extend_from_slice(more);
        refused(&args)
    };
    let err = simulate(&["--duration", "ten", "--out", "file:///tmp/x"]);
    assert!(err.contains("is not a duration"), "{err}");
    let err = simulate(&["--duration", "1m", "--out", "ftp://x"]);
    assert!(err.contains("kafka://host:port/topic"), "{err}");
    for (world, says) in [
        ("varied", "is not a world"),
        ("varied:x", "not a world family number"),
        ("earth", "standard or varied:<family>"),
    ] {
        let err = simulate(&[
            "--duration",
            "1m",
            "--world",
            world,
            "--out",
            "file:///tmp/x",
        ]);
        assert!(err.contains(says), "{world}: {err}");
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[kafka]\nbrokerz = \"x\"\n").unwrap();
    let err = refused(&["run", "--config", cfg.to_str().unwrap()]);
    assert!(err.contains("brokerz") && err.contains("bad.toml"), "{err}");
}

/// Runs `veriflow args`, which must fail; its standard error.
fn refused(args: &[&str]) -> String {
    let out = veriflow().args(args).output().unwrap();
    assert!(!out.status.success(), "{args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}
