//! Results depend on the set of events, not on their arrival order within the
//! allowed lateness, nor on a checkpoint/restore in the middle.

use veriflow_pipelines::{
    InputRecord, Output, PartitionPipeline, PipelineConfig, ValidationLimits,
};
use veriflow_simulator::{SimConfig, SimItem, Simulator};

fn config() -> PipelineConfig {
    PipelineConfig {
        limits: ValidationLimits {
            max_future_skew_ms: None,
            ..Default::default()
        },
        kpi_window_ms: Some(60_000),
        alert_rules: veriflow_pipelines::alerts::AlertRule::defaults(),
        kpi_hops: vec![(5 * 60_000, 60_000)],
        ..PipelineConfig::default()
    }
}

/// (occurred_at, payload) in the simulator's arrival order.
fn stream(seed: u64) -> Vec<(i64, Vec<u8>)> {
    let mut sim = Simulator::new(SimConfig {
        seed,
        rate: 8.0,
        duration_ms: Some(20 * 60_000),
        duplicate_share: 0.05,
        fraud_share: 0.05,
        ..SimConfig::default()
    });
    let mut out = Vec::new();
    while let Some(item) = sim.next() {
        if let SimItem::Event(e) = item {
            let v: serde_json::Value = serde_json::from_slice(&e.payload).unwrap();
            let at = veriflow_pipelines::time::parse_rfc3339(v["occurred_at"].as_str().unwrap())
                .unwrap();
            out.push((at, e.payload));
        }
    }
    out
}

/// Runs a stream through one partition; `restore_at` checkpoints and restores there.
fn run(events: &[(i64, Vec<u8>)], restore_at: Option<usize>) -> Vec<Vec<u8>> {
    let cfg = config();
    let mut p = PartitionPipeline::new(0);
    let mut out = Vec::new();
    for (i, (_, payload)) in events.iter().enumerate() {
        if Some(i) == restore_at {
            let bytes = postcard_roundtrip(p.snapshot());
            p = PartitionPipeline::restore(&cfg, bytes);
        }
        p.process(
            &cfg,
            InputRecord {
                offset: i as i64,
                key: None,
                payload,
            },
            0,
            &mut out,
        );
        if i % 97 == 0 {
            p.fire_timers(&cfg, &mut out);
        }
    }
    p.drain(&cfg, &mut out);
    let mut records = Vec::new();
    let mut final_kpis = Vec::new();
    let mut alerts = Vec::new();
    for o in out {
        match o {
            Output::Outcome(o) => records.push(o.to_json_bytes()),
            Output::Features(f) => records.push(f.to_json_bytes()),
            Output::Scored(s) => records.push(s.record),
            // Provisional KPI emissions depend on when the watermark moved and are
            // overwritten downstream; the final ones must not depend on anything
            // (when they come relative to other outputs may: they go elsewhere).
            Output::Kpi(k) if k.is_final => final_kpis.push((k.window_start, format!("{k:?}"))),
            Output::Kpi(_) => {}
            Output::Alert(a) => alerts.push((a.alert_id(), format!("{a:?}"))),
            Output::Forecast(f) => alerts.push((
                format!("forecast {} {} {}", f.tenant, f.country, f.made_at),
                format!("{f:?}"),
            )),
            Output::Rejected(r) => panic!("nothing should be rejected: {:?}", r.rejection),
        }
    }
    final_kpis.sort();
    let windows = final_kpis.len();
    assert!(windows >= 20, "{windows} final KPI windows");
    let facts: usize = final_kpis
        .iter()
        .filter(|(_, k)| k.contains("hop: None"))
        .map(|(_, k)| k.matches("KpiFact {").count())
        .sum();
    assert!(
        final_kpis.iter().any(|(_, k)| k.contains("hop: Some")),
        "hopping windows too"
    );
    let outcomes = records
        .iter()
        .filter(|r| r.starts_with(b"{\"outcome_id\""))
        .count();
    assert_eq!(
        facts, outcomes,
        "every decided verification in exactly one final window"
    );
    records.extend(final_kpis.into_iter().map(|(_, k)| k.into_bytes()));
    // Alerts are evaluated at fixed instants: the same ones fire in any order.
    alerts.sort();
    records.extend(alerts.into_iter().map(|(_, a)| a.into_bytes()));
    records
}

fn postcard_roundtrip(
    state: veriflow_pipelines::PartitionState,
) -> veriflow_pipelines::PartitionState {
    let dir = tempfile::tempdir().unwrap();
    let store = veriflow_pipelines::checkpoint::CheckpointStore::new(dir.path(), 1);
    store.save("t", &state).unwrap();
    store.load_latest("t", state.partition).unwrap().unwrap()
}

/// Reorders so that no event arrives after anything more than `lateness` newer.
fn shuffle_within(events: &[(i64, Vec<u8>)], lateness: i64, seed: u64) -> Vec<(i64, Vec<u8>)> {
    let mut x = seed;
    let mut keyed: Vec<(i64, usize)> = events
        .iter()
        .enumerate()
        .map(|(i, (at, _))| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (at + (x % lateness as u64) as i64, i)
        })
        .collect();
    keyed.sort();
    keyed.into_iter().map(|(_, i)| events[i].clone()).collect()
}

/// Equal output lists, or a message naming the first difference.
fn assert_same(got: &[Vec<u8>], want: &[Vec<u8>], what: &str) {
    if got == want {
        return;
    }
    let i = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let show = |v: &[Vec<u8>]| {
        v.get(i).map(|b| {
            String::from_utf8_lossy(b)
                .chars()
                .take(600)
                .collect::<String>()
        })
    };
    panic!(
        "{what} changed the outputs ({} vs {} records); first difference at {i}:\n got: {:?}\nwant: {:?}",
        got.len(),
        want.len(),
        show(got),
        show(want)
    );
}

#[test]
fn shuffled_arrival_within_lateness_gives_byte_identical_outputs() {
    let events = stream(9);
    let baseline = run(&events, None);
    assert!(baseline.len() > 5000, "{} outcomes", baseline.len());
    let lateness = config().allowed_lateness_ms;
    for seed in [1, 2, 3] {
        let shuffled = shuffle_within(&events, lateness, seed);
        assert_ne!(shuffled, events);
        assert_same(&run(&shuffled, None), &baseline, &format!("shuffle {seed}"));
    }
}

#[test]
fn a_checkpoint_and_restore_anywhere_changes_nothing() {
    let events = stream(4);
    let baseline = run(&events, None);
    for at in [1, events.len() / 3, events.len() / 2, events.len() - 1] {
        assert_same(
            &run(&events, Some(at)),
            &baseline,
            &format!("restore at {at}"),
        );
    }
}
