//! `veriflow train` and `veriflow evaluate` as a user runs them: simulate history
//! to a file, train on it, evaluate on traffic from another seed.

mod common;

use common::*;

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
