//! Webhooks as tenants receive them: `veriflow api` / `veriflow run` as real
//! processes, a real HTTP receiver (`tests/webhook_receiver.py`) and the stock
//! `standardwebhooks` and `svix` libraries checking every signature.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// The receiver process; killed when dropped.
struct Receiver {
    child: Child,
    port: u16,
}

impl Receiver {
    fn start() -> Receiver {
        let mut child = Command::new("python3")
            .arg(repo().join("tests/webhook_receiver.py"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 must be installed");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| {
            panic!(
                "the receiver did not start (needs `pip install standardwebhooks svix`, \
                 which scripts/setup.sh does): {line:?}"
            )
        });
        Receiver { child, port }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    /// Every request of endpoint `name`, in arrival order.
    fn requests(&self, name: &str) -> Vec<Value> {
        let (status, body) = http("GET", self.port, "/_log");
        assert_eq!(status, 200, "receiver log: {body}");
        let all: Vec<Value> = serde_json::from_str(&body).unwrap();
        all.into_iter().filter(|r| r["name"] == name).collect()
    }

    /// Distinct webhook ids `name` received.
    fn ids(&self, name: &str) -> BTreeSet<String> {
        self.requests(name)
            .iter()
            .map(|r| r["headers"]["webhook-id"].as_str().unwrap().to_string())
            .collect()
    }

    /// Per request of `name`: (webhook id, verified by standardwebhooks, by svix).
    fn verify(&self, name: &str, secret: &str) -> Vec<(String, bool, bool)> {
        let body = json!({"name": name, "secret": secret}).to_string();
        let r = http_request("POST", self.port, "/_verify", &[], Some(&body));
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["webhook_id"].as_str().unwrap().to_string(),
                    v["standardwebhooks"] == true,
                    v["svix"] == true,
                )
            })
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Settings that make retries take milliseconds and let loopback receivers in.
const FAST: &[(&str, &str)] = &[
    ("VERIFLOW_WEBHOOKS__ALLOW_NETWORKS", r#"["127.0.0.0/8"]"#),
    ("VERIFLOW_WEBHOOKS__POLL_INTERVAL", "20ms"),
    (
        "VERIFLOW_WEBHOOKS__RETRY_SCHEDULE",
        r#"["300ms", "600ms", "900ms", "1200ms"]"#,
    ),
    ("VERIFLOW_WEBHOOKS__RETRY_JITTER", "0.1"),
    ("VERIFLOW_WEBHOOKS__TIMEOUT", "2s"),
];

fn env_with<'a>(
    base: &[(&'a str, &'a str)],
    more: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    base.iter().chain(more).copied().collect()
}

/// A tenant and its admin key.
fn tenant(api: &ApiProcess, id: &str) -> String {
    let r = api.call(
        "POST",
        "/v1/tenants",
        OPERATOR,
        Some(json!({"id": id, "name": id})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()["admin_key"]["key"].as_str().unwrap().to_string()
}

/// Creates an endpoint; returns (id, secret).
fn endpoint(api: &ApiProcess, key: &str, body: Value) -> (String, String) {
    let r = api.call("POST", "/v1/webhooks/endpoints", key, Some(body));
    assert_eq!(r.status, 201, "{}", r.body);
    let v = r.json();
    (
        v["id"].as_str().unwrap().to_string(),
        v["secret"].as_str().unwrap().to_string(),
    )
}

fn send_test(api: &ApiProcess, key: &str, endpoint: &str) -> String {
    let r = api.call(
        "POST",
        &format!("/v1/webhooks/endpoints/{endpoint}/test"),
        key,
        None,
    );
    assert_eq!(r.status, 202, "{}", r.body);
    r.json()["message_id"].as_str().unwrap().to_string()
}

fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}/api.db", dir.path().display())
}

#[test]
fn deliveries_verify_with_stock_libraries_including_during_rotation() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let api = ApiProcess::start(&sqlite_url(&dir), FAST);
    let key = tenant(&api, "acme");
    let (ep, first) = endpoint(
        &api,
        &key,
        json!({"url": receiver.url("ok/a"), "headers": {"x-tenant-tag": "blue"}}),
    );
    assert!(first.starts_with("whsec_"));

    let m1 = send_test(&api, &key, &ep);
    wait_until("the first delivery", Duration::from_secs(20), || {
        receiver.ids("a").contains(&m1)
    });
    let req = &receiver.requests("a")[0];
    assert_eq!(req["headers"]["x-tenant-tag"], "blue", "custom header sent");
    let body: Value = serde_json::from_str(req["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["type"], "webhook.test");
    assert!(body["timestamp"].is_string() && body["data"]["endpoint_id"] == ep.as_str());
    assert_eq!(
        receiver.verify("a", &first),
        vec![(m1.clone(), true, true)],
        "standardwebhooks and svix both verify"
    );

    // Rotation with an overlap: deliveries carry both signatures.
    let r = api.call(
        "POST",
        &format!("/v1/webhooks/endpoints/{ep}/secret/rotate"),
        &key,
        Some(json!({"overlap_seconds": 3600})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let second = r.json()["key"].as_str().unwrap().to_string();
    assert_ne!(second, first);
    assert!(r.json()["previous_valid_until"].is_string());
    let m2 = send_test(&api, &key, &ep);
    wait_until(
        "the delivery after rotation",
        Duration::from_secs(20),
        || receiver.ids("a").contains(&m2),
    );
    for secret in [&first, &second] {
        let results = receiver.verify("a", secret);
        assert!(
            results.contains(&(m2.clone(), true, true)),
            "during the overlap each secret verifies: {results:?}"
        );
    }
    let r = api.call(
        "GET",
        &format!("/v1/webhooks/endpoints/{ep}/secret"),
        &key,
        None,
    );
    assert_eq!(r.json()["key"], second.as_str());

    // Rotation without overlap: the old secret stops verifying at once.
    let r = api.call(
        "POST",
        &format!("/v1/webhooks/endpoints/{ep}/secret/rotate"),
        &key,
        Some(json!({"overlap_seconds": 0})),
    );
    let third = r.json()["key"].as_str().unwrap().to_string();
    let m3 = send_test(&api, &key, &ep);
    wait_until(
        "the delivery after the second rotation",
        Duration::from_secs(20),
        || receiver.ids("a").contains(&m3),
    );
    assert!(
        receiver
            .verify("a", &third)
            .contains(&(m3.clone(), true, true))
    );
    assert!(
        receiver
            .verify("a", &second)
            .contains(&(m3.clone(), false, false)),
        "a retired secret no longer verifies"
    );

    // The attempts log shows each success.
    let r = api.call(
        "GET",
        &format!("/v1/webhooks/endpoints/{ep}/attempts"),
        &key,
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let attempts = r.json()["attempts"].as_array().unwrap().clone();
    assert_eq!(attempts.len(), 3);
    assert!(attempts.iter().all(|a| a["outcome"] == "success"
        && a["status_code"] == 200
        && a["response"] == "{\"ok\": true}"));
    // Secrets are stored encrypted, never in clear.
    let db = std::fs::read(dir.path().join("api.db")).unwrap();
    let db = String::from_utf8_lossy(&db);
    assert!(
        !db.contains(&first) && !db.contains(&third),
        "secret stored in clear"
    );
    // Another tenant sees none of it.
    let other = tenant(&api, "globex");
    let r = api.call(
        "GET",
        &format!("/v1/webhooks/endpoints/{ep}/attempts"),
        &other,
        None,
    );
    assert_eq!(r.status, 404, "{}", r.body);
    api.stop();
}

#[test]
fn a_failing_receiver_gets_exactly_n_plus_one_attempts_on_schedule_and_replay_resends() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let api = ApiProcess::start(&sqlite_url(&dir), FAST);
    let key = tenant(&api, "acme");
    let (ep, _) = endpoint(&api, &key, json!({"url": receiver.url("fail/3/b")}));
    let m = send_test(&api, &key, &ep);
    wait_until("four attempts", Duration::from_secs(20), || {
        receiver.requests("b").len() >= 4
    });
    // Long enough for a fifth attempt to have come, were one scheduled.
    std::thread::sleep(Duration::from_millis(1500));
    let requests = receiver.requests("b");
    assert_eq!(requests.len(), 4, "3 failures + 1 success, then nothing");
    assert!(
        requests
            .iter()
            .all(|r| r["headers"]["webhook-id"] == m.as_str())
    );
    let statuses: Vec<u64> = requests
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [500, 500, 500, 200]);
    let times: Vec<f64> = requests.iter().map(|r| r["at"].as_f64().unwrap()).collect();
    for (i, scheduled) in [0.3, 0.6, 0.9].iter().enumerate() {
        let gap = times[i + 1] - times[i];
        assert!(
            gap >= scheduled * 0.9 - 0.02 && gap <= scheduled * 1.1 + 0.5,
            "retry {} came after {gap:.3}s, scheduled {scheduled}s ±10%",
            i + 1
        );
    }
    let r = api.call(
        "GET",
        &format!("/v1/webhooks/endpoints/{ep}/attempts?message_id={m}"),
        &key,
        None,
    );
    let outcomes: Vec<(String, Value)> = r.json()["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|a| {
            (
                a["outcome"].as_str().unwrap().to_string(),
                a["status_code"].clone(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("failure".to_string(), json!(500)),
            ("failure".to_string(), json!(500)),
            ("failure".to_string(), json!(500)),
            ("success".to_string(), json!(200)),
        ]
    );

    // A receiver failing more often than the schedule allows: the delivery fails
    // for good after 5 attempts; replaying "failed since" sends it once more.
    let started = api.call("GET", "/v1/auth/whoami", &key, None);
    assert_eq!(started.status, 200);
    let since = chrono_now_minus_minutes(1);
    let (ep5, _) = endpoint(&api, &key, json!({"url": receiver.url("fail/5/c")}));
    let m5 = send_test(&api, &key, &ep5);
    wait_until("five failed attempts", Duration::from_secs(20), || {
        receiver.requests("c").len() >= 5
    });
    wait_until(
        "the delivery marked failed",
        Duration::from_secs(10),
        || {
            let r = api.call(
                "POST",
                &format!("/v1/webhooks/endpoints/{ep5}/replay"),
                &key,
                Some(json!({"since": since})),
            );
            r.status == 202 && r.json()["replayed"] == 1
        },
    );
    wait_until("the replayed delivery", Duration::from_secs(20), || {
        receiver.requests("c").len() >= 6
    });
    let requests = receiver.requests("c");
    assert_eq!(requests[5]["status"], 200);
    assert_eq!(
        requests[5]["headers"]["webhook-id"],
        m5.as_str(),
        "same id on replay"
    );
    // Replaying one message by id.
    let r = api.call(
        "POST",
        &format!("/v1/webhooks/endpoints/{ep5}/replay"),
        &key,
        Some(json!({"message_id": m5})),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    wait_until("the replay by id", Duration::from_secs(20), || {
        receiver.requests("c").len() >= 7
    });
    let r = api.call(
        "POST",
        &format!("/v1/webhooks/endpoints/{ep5}/replay"),
        &key,
        Some(json!({"message_id": "msg_nope"})),
    );
    assert_eq!(r.status, 404, "{}", r.body);

    // 429 with Retry-After: 1 waits a second, not the scheduled 300 ms.
    let (ra, _) = endpoint(&api, &key, json!({"url": receiver.url("retry-after/1/ra")}));
    send_test(&api, &key, &ra);
    wait_until(
        "the retry after Retry-After",
        Duration::from_secs(20),
        || receiver.requests("ra").len() >= 2,
    );
    let requests = receiver.requests("ra");
    let gap = requests[1]["at"].as_f64().unwrap() - requests[0]["at"].as_f64().unwrap();
    assert_eq!(requests[0]["status"], 429);
    assert!(gap >= 0.98, "Retry-After: 1 honoured, waited {gap:.3}s");
    api.stop();
}

#[test]
fn an_endpoint_failing_for_too_long_is_disabled_with_an_operational_event() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let api = ApiProcess::start(
        &sqlite_url(&dir),
        &env_with(FAST, &[("VERIFLOW_WEBHOOKS__DISABLE_AFTER", "1s")]),
    );
    let key = tenant(&api, "acme");
    let (_watcher, _) = endpoint(
        &api,
        &key,
        json!({"url": receiver.url("ok/ops"), "event_types": ["endpoint.disabled"]}),
    );
    let (failing, _) = endpoint(&api, &key, json!({"url": receiver.url("fail/100/down")}));
    send_test(&api, &key, &failing);
    let mut state = Value::Null;
    wait_until(
        "the failing endpoint disabled",
        Duration::from_secs(20),
        || {
            state = api
                .call(
                    "GET",
                    &format!("/v1/webhooks/endpoints/{failing}"),
                    &key,
                    None,
                )
                .json();
            state["enabled"] == false
        },
    );
    assert!(
        state["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("failing without a success"),
        "{state}"
    );
    assert!(state["failing_since"].is_string(), "{state}");
    wait_until(
        "the endpoint.disabled event",
        Duration::from_secs(20),
        || !receiver.requests("ops").is_empty(),
    );
    let attempts = receiver.requests("down").len();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        receiver.requests("down").len(),
        attempts,
        "no attempts once disabled"
    );

    // Enabling it again forgets the failure run; queued messages go out.
    let r = api.call(
        "PATCH",
        &format!("/v1/webhooks/endpoints/{failing}"),
        &key,
        Some(json!({"enabled": true, "url": receiver.url("ok/down")})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["failing_since"], Value::Null);
    let m = send_test(&api, &key, &failing);
    wait_until(
        "delivery after re-enabling",
        Duration::from_secs(20),
        || {
            receiver
                .requests("down")
                .iter()
                .any(|r| r["headers"]["webhook-id"] == m.as_str() && r["status"] == 200)
        },
    );
    api.stop();
}

/// Two instances sharing one PostgreSQL database split the work and never
/// deliver a message twice.
#[test]
fn two_instances_on_one_database_deliver_each_message_once() {
    let receiver = Receiver::start();
    let url = fresh_postgres_database();
    let a = ApiProcess::start(
        &url,
        &env_with(FAST, &[("VERIFLOW_WEBHOOKS__INSTANCE_ID", "a")]),
    );
    let b = ApiProcess::start(
        &url,
        &env_with(FAST, &[("VERIFLOW_WEBHOOKS__INSTANCE_ID", "b")]),
    );
    let key = tenant(&a, "acme");
    let (ep, _) = endpoint(&a, &key, json!({"url": receiver.url("slow/5/two")}));
    let mut accepted = BTreeSet::new();
    for i in 0..300 {
        let api = if i % 2 == 0 { &a } else { &b };
        accepted.insert(send_test(api, &key, &ep));
    }
    wait_until("every message delivered", Duration::from_secs(60), || {
        receiver.ids("two").len() >= accepted.len()
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(receiver.ids("two"), accepted);
    assert_eq!(
        receiver.requests("two").len(),
        accepted.len(),
        "no message delivered twice"
    );
    a.stop();
    b.stop();
}

fn chrono_now_minus_minutes(minutes: u64) -> String {
    let out = Command::new("date")
        .args([
            "-u",
            "-d",
            &format!("{minutes} minutes ago"),
            "+%Y-%m-%dT%H:%M:%SZ",
        ])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn kill_9_during_a_burst_loses_no_accepted_message() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir);
    let env = env_with(FAST, &[("VERIFLOW_WEBHOOKS__MAX_IN_FLIGHT", "4")]);
    let api = ApiProcess::start(&url, &env);
    let key = tenant(&api, "acme");
    let (ep, _) = endpoint(&api, &key, json!({"url": receiver.url("slow/100/k")}));
    let mut accepted = BTreeSet::new();
    for _ in 0..200 {
        accepted.insert(send_test(&api, &key, &ep));
    }
    wait_until("deliveries under way", Duration::from_secs(20), || {
        !receiver.ids("k").is_empty()
    });
    let before = receiver.ids("k").len();
    api.kill();
    assert!(
        before < accepted.len(),
        "the kill must come mid-burst ({before} of {} delivered)",
        accepted.len()
    );

    // Same database, same instance id: the leases of the killed run are freed.
    let api = ApiProcess::start(&url, &env);
    wait_until(
        "every accepted message delivered",
        Duration::from_secs(60),
        || receiver.ids("k").len() >= accepted.len(),
    );
    assert_eq!(receiver.ids("k"), accepted, "exactly the accepted messages");
    let duplicates = receiver.requests("k").len() - accepted.len();
    eprintln!("{duplicates} redelivered after the kill (at-least-once)");
    api.stop();
}

#[test]
fn a_hanging_endpoint_does_not_delay_a_healthy_one_and_rate_limits_hold() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let api = ApiProcess::start(
        &sqlite_url(&dir),
        &env_with(FAST, &[("VERIFLOW_WEBHOOKS__TIMEOUT", "10s")]),
    );
    let key = tenant(&api, "acme");
    let (hanging, _) = endpoint(&api, &key, json!({"url": receiver.url("hang/h")}));
    let (healthy, _) = endpoint(&api, &key, json!({"url": receiver.url("ok/g")}));
    for _ in 0..60 {
        send_test(&api, &key, &hanging);
    }
    wait_until("the hanging endpoint busy", Duration::from_secs(20), || {
        !receiver.requests("h").is_empty()
    });
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        let sent = Instant::now();
        let m = send_test(&api, &key, &healthy);
        wait_until("a healthy delivery", Duration::from_secs(10), || {
            receiver.ids("g").contains(&m)
        });
        worst = worst.max(sent.elapsed());
    }
    assert!(
        worst < Duration::from_millis(1000),
        "a healthy delivery took {worst:?} while another endpoint hung"
    );

    // 5 per second: 15 messages cannot arrive faster than ~2 s (burst of 5).
    let (limited, _) = endpoint(
        &api,
        &key,
        json!({"url": receiver.url("ok/r"), "rate_limit": 5}),
    );
    for _ in 0..15 {
        send_test(&api, &key, &limited);
    }
    wait_until(
        "the rate-limited deliveries",
        Duration::from_secs(20),
        || receiver.ids("r").len() >= 15,
    );
    let times: Vec<f64> = receiver
        .requests("r")
        .iter()
        .map(|r| r["at"].as_f64().unwrap())
        .collect();
    let span = times.last().unwrap() - times.first().unwrap();
    assert!(span >= 1.6, "15 deliveries at 5/s took only {span:.2}s");

    // The API's metrics name every tenant's endpoints: the operator's only.
    assert_eq!(http("GET", api.port, "/metrics").0, 401);
    let tenant_key = http_request(
        "GET",
        api.port,
        "/metrics",
        &[("authorization", &format!("Bearer {key}"))],
        None,
    );
    assert_eq!(tenant_key.status, 401, "a tenant's key is refused");
    let operator = format!("Bearer {OPERATOR}");
    let on_domain = http_request(
        "GET",
        api.port,
        "/metrics",
        &[
            ("authorization", &operator),
            ("host", "verify.acme-metrics.example"),
        ],
        None,
    );
    assert_eq!(on_domain.status, 200, "an unknown host is not a tenant's");
    let answer = http_request(
        "GET",
        api.port,
        "/metrics",
        &[("authorization", &operator)],
        None,
    );
    let (status, metrics) = (answer.status, answer.body.clone());
    assert_eq!(status, 200);
    assert!(
        metrics.contains(&format!(
            "veriflow_webhook_attempts_total{{endpoint=\"{healthy}\",outcome=\"success\"}} 20"
        )),
        "per-endpoint metrics:\n{metrics}"
    );
    assert!(metrics.contains("veriflow_webhook_attempt_duration_seconds"));
    api.kill();
}

#[test]
fn private_targets_are_refused_without_the_allow_list_even_at_send_time() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir);
    // Without the allow-list: literal private addresses and localhost are refused.
    let strict = ApiProcess::start(&url, &[]);
    let key = tenant(&strict, "acme");
    for target in [
        receiver.url("ok/x"),
        format!("http://localhost:{}/ok/x", receiver.port),
        "http://10.0.0.7/hook".to_string(),
        "http://169.254.169.254/latest/meta-data".to_string(),
        "http://[::1]:8080/hook".to_string(),
    ] {
        let r = strict.call(
            "POST",
            "/v1/webhooks/endpoints",
            &key,
            Some(json!({"url": target})),
        );
        assert_eq!(r.status, 422, "{target}: {}", r.body);
        assert_eq!(r.json()["code"], "url_refused", "{target}: {}", r.body);
    }
    strict.stop();

    // An endpoint saved while loopback was allowed is still checked when sending.
    let open = ApiProcess::start(&url, FAST);
    let (ep, _) = endpoint(&open, &key, json!({"url": receiver.url("ok/x")}));
    open.stop();
    let strict = ApiProcess::start(&url, &[("VERIFLOW_WEBHOOKS__POLL_INTERVAL", "20ms")]);
    send_test(&strict, &key, &ep);
    let mut attempts = Vec::new();
    wait_until("a refused attempt", Duration::from_secs(20), || {
        let r = strict.call(
            "GET",
            &format!("/v1/webhooks/endpoints/{ep}/attempts"),
            &key,
            None,
        );
        attempts = r.json()["attempts"].as_array().cloned().unwrap_or_default();
        !attempts.is_empty()
    });
    assert_eq!(attempts[0]["outcome"], "blocked", "{attempts:?}");
    assert!(
        receiver.requests("x").is_empty(),
        "nothing reached the private address"
    );
    strict.stop();
}

#[test]
fn endpoint_management_validates_and_410_disables() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let api = ApiProcess::start(&sqlite_url(&dir), FAST);
    let key = tenant(&api, "acme");
    for (body, what) in [
        (json!({"url": "ftp://example.com/x"}), "scheme"),
        (
            json!({"url": receiver.url("ok/v"), "event_types": ["nope"]}),
            "unknown type",
        ),
        (
            json!({"url": receiver.url("ok/v"), "filter": "country in BR"}),
            "filter syntax",
        ),
        (
            json!({"url": receiver.url("ok/v"), "headers": {"webhook-id": "x"}}),
            "reserved header",
        ),
        (
            json!({"url": receiver.url("ok/v"), "secret": "nope"}),
            "secret",
        ),
        (
            json!({"url": receiver.url("ok/v"), "rate_limit": 1000000}),
            "rate limit",
        ),
    ] {
        let r = api.call("POST", "/v1/webhooks/endpoints", &key, Some(body));
        assert_eq!(r.status, 422, "{what}: {}", r.body);
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
    }
    let r = api.call(
        "POST",
        "/v1/webhooks/endpoints",
        &key,
        Some(json!({"url": receiver.url("ok/v"), "filter": "country in BR"})),
    );
    assert!(
        r.json()["detail"].as_str().unwrap().contains("column 12"),
        "{}",
        r.body
    );

    // List, update, disable, delete.
    let (ep, _) = endpoint(&api, &key, json!({"url": receiver.url("ok/v")}));
    let r = api.call(
        "PATCH",
        &format!("/v1/webhooks/endpoints/{ep}"),
        &key,
        Some(json!({"event_types": ["kpi.alert"], "filter": "severity == 'critical'", "enabled": false})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["enabled"], false);
    assert_eq!(r.json()["filter"], "severity == 'critical'");
    let r = api.call("GET", "/v1/webhooks/endpoints", &key, None);
    assert_eq!(r.json()["endpoints"].as_array().unwrap().len(), 1);
    let r = api.call(
        "DELETE",
        &format!("/v1/webhooks/endpoints/{ep}"),
        &key,
        None,
    );
    assert_eq!(r.status, 204);
    let r = api.call("GET", &format!("/v1/webhooks/endpoints/{ep}"), &key, None);
    assert_eq!(r.status, 404);

    // 410 Gone disables the endpoint, and a listener for endpoint.disabled hears it.
    let (watcher, _) = endpoint(
        &api,
        &key,
        json!({"url": receiver.url("ok/w"), "event_types": ["endpoint.disabled"]}),
    );
    let (gone, _) = endpoint(&api, &key, json!({"url": receiver.url("gone/z")}));
    send_test(&api, &key, &gone);
    wait_until("the endpoint disabled", Duration::from_secs(20), || {
        let r = api.call("GET", &format!("/v1/webhooks/endpoints/{gone}"), &key, None);
        r.json()["enabled"] == false
    });
    assert_eq!(receiver.requests("z").len(), 1, "no retry after 410");
    wait_until(
        "the endpoint.disabled event",
        Duration::from_secs(20),
        || !receiver.requests("w").is_empty(),
    );
    let body: Value =
        serde_json::from_str(receiver.requests("w")[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["type"], "endpoint.disabled");
    assert_eq!(body["data"]["endpoint_id"], gone.as_str());
    let _ = watcher;
    api.stop();
}

/// The pipeline's outcomes reach tenants' endpoints through `veriflow run`'s
/// fan-out, routed by event type and filter.
#[test]
fn pipeline_outcomes_fan_out_to_filtered_endpoints() {
    let receiver = Receiver::start();
    let Scenario {
        d,
        events,
        truth,
        dir: _simulated,
    } = Scenario::new(
        "webhook-fanout",
        &["--rate", "2", "--duration", "2m", "--seed", "11"],
    );
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_url(&dir);
    let env = env_with(
        FAST,
        &[
            ("VERIFLOW_API__LISTEN", "127.0.0.1:0"),
            ("VERIFLOW_API__DATABASE_URL", db.as_str()),
            ("VERIFLOW_API__OPERATOR_TOKEN", OPERATOR),
            ("VERIFLOW_PIPELINE__IDLE_TIMEOUT", "2s"),
        ],
    );
    let mut child = d.spawn(&env, Stdio::piped());
    let rx = stderr_lines(&mut child);
    let port = api_port_from_log(&rx);
    let call = |method: &str, path: &str, key: &str, body: Option<Value>| {
        api_call(port, method, path, key, body)
    };

    let tenants: BTreeSet<String> = truth
        .iter()
        .map(|t| t["tenant_id"].as_str().unwrap().to_string())
        .collect();
    let mut keys = BTreeMap::new();
    for t in &tenants {
        let r = call(
            "POST",
            "/v1/tenants",
            OPERATOR,
            Some(json!({"id": t, "name": t})),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        let key = r.json()["admin_key"]["key"].as_str().unwrap().to_string();
        for (name, types, filter) in [
            (
                format!("approved-{t}"),
                json!(["verification.approved"]),
                Some(r#"country in ["BR", "MX"]"#),
            ),
            (
                format!("expired-{t}"),
                json!(["verification.expired"]),
                None,
            ),
        ] {
            let r = call(
                "POST",
                "/v1/webhooks/endpoints",
                &key,
                Some(
                    json!({"url": receiver.url(&format!("ok/{name}")), "event_types": types, "filter": filter}),
                ),
            );
            assert_eq!(r.status, 201, "{}", r.body);
        }
        keys.insert(t.clone(), key);
    }

    produce_events(&d.brokers, &d.input, &events, 0, None);
    let mut expected: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for t in &truth {
        let tenant = t["tenant_id"].as_str().unwrap();
        let id = t["verification_id"].as_str().unwrap().to_string();
        match (
            t["outcome"].as_str().unwrap(),
            t["country"].as_str().unwrap(),
        ) {
            ("approved", "BR" | "MX") => expected
                .entry(format!("approved-{tenant}"))
                .or_default()
                .insert(id),
            ("expired", _) => expected
                .entry(format!("expired-{tenant}"))
                .or_default()
                .insert(id),
            _ => false,
        };
    }
    let received = |name: &str| -> BTreeSet<String> {
        receiver
            .requests(name)
            .iter()
            .map(|r| {
                let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
                body["data"]["verification_id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    let total: usize = expected.values().map(BTreeSet::len).sum();
    assert!(
        total > 20,
        "the scenario yields deliveries to check ({total})"
    );
    wait_until("every expected delivery", Duration::from_secs(120), || {
        expected
            .iter()
            .all(|(name, ids)| received(name).len() >= ids.len())
    });
    std::thread::sleep(Duration::from_millis(500));
    for t in &tenants {
        for name in [format!("approved-{t}"), format!("expired-{t}")] {
            let want = expected.get(&name).cloned().unwrap_or_default();
            assert_eq!(received(&name), want, "{name}: filtered deliveries");
            let bodies = receiver.requests(&name);
            for r in &bodies {
                let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
                let ty = if name.starts_with("approved") {
                    "verification.approved"
                } else {
                    "verification.expired"
                };
                assert_eq!(body["type"], ty);
                assert_eq!(body["data"]["tenant_id"], t.as_str());
            }
        }
    }
    stop_gracefully(child);
}
