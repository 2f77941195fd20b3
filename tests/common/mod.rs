//! Shared helpers for the end-to-end tests: the real broker, the third-party Kafka
//! client (`tests/kafka_client.py`, confluent-kafka), and the `veriflow` binary.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn veriflow() -> Command {
    Command::new(env!("CARGO_BIN_EXE_veriflow"))
}

/// The broker from the local stack; fails loudly when it is not there.
pub fn brokers() -> String {
    let brokers =
        std::env::var("VERIFLOW_TEST_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let addr = brokers.split(',').next().unwrap_or_default();
    let reachable = addr
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok());
    assert!(
        reachable,
        "no Kafka-compatible broker at {brokers}: start the stack with `scripts/stack.sh up` \
         (or set VERIFLOW_TEST_BROKERS)"
    );
    brokers
}

/// A name no other test (or earlier run against the same broker) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos % 1_000_000_000
    )
}

fn python_client(args: &[&str]) -> Output {
    let out = Command::new("python3")
        .arg(repo().join("tests/kafka_client.py"))
        .args(args)
        .output()
        .expect("python3 must be installed (with confluent-kafka: pip install confluent-kafka)");
    assert!(
        out.status.success(),
        "kafka_client.py {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn create_topic(brokers: &str, topic: &str, partitions: u32) {
    python_client(&[
        "create",
        "--brokers",
        brokers,
        "--topic",
        topic,
        "--partitions",
        &partitions.to_string(),
    ]);
}

/// Produces raw event lines (keyed by their `tenant_id`) with confluent-kafka.
pub fn produce_events(brokers: &str, topic: &str, file: &Path, skip: usize, limit: Option<usize>) {
    let file = file.to_string_lossy();
    let skip = skip.to_string();
    let limit = limit.map(|l| l.to_string());
    let mut args = vec![
        "produce",
        "--brokers",
        brokers,
        "--topic",
        topic,
        "--events",
        &file,
        "--skip",
        &skip,
    ];
    if let Some(limit) = &limit {
        args.extend(["--limit", limit]);
    }
    python_client(&args);
}

/// Produces `{"key", "value_b64"}` records with confluent-kafka.
pub fn produce_records(brokers: &str, topic: &str, records: &[(Option<&str>, Vec<u8>)]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.jsonl");
    let lines: Vec<String> = records
        .iter()
        .map(|(k, v)| {
            serde_json::json!({"key": k, "value_b64": base64::engine::general_purpose::STANDARD.encode(v)}).to_string()
        })
        .collect();
    std::fs::write(&path, lines.join("\n")).unwrap();
    python_client(&[
        "produce",
        "--brokers",
        brokers,
        "--topic",
        topic,
        &path.to_string_lossy(),
    ]);
}

/// A record read back by confluent-kafka.
#[derive(Debug, Clone)]
pub struct Consumed {
    pub key: Option<String>,
    pub value: Vec<u8>,
    pub headers: BTreeMap<String, String>,
    pub partition: i32,
    pub offset: i64,
}

impl Consumed {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.value).unwrap_or_else(|e| {
            panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.value))
        })
    }
}

/// Reads at least `count` records (failing after `timeout`), plus whatever else
/// arrives within `linger` — so that extra, duplicate records are seen too.
pub fn consume(
    brokers: &str,
    topic: &str,
    count: usize,
    timeout: Duration,
    linger: Duration,
) -> Vec<Consumed> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let out = python_client(&[
        "consume",
        "--brokers",
        brokers,
        "--topic",
        topic,
        "--count",
        &count.to_string(),
        "--timeout",
        &timeout.as_secs_f64().to_string(),
        "--linger",
        &linger.as_secs_f64().to_string(),
    ]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            let headers = v["headers_b64"]
                .as_object()
                .map(|h| {
                    h.iter()
                        .map(|(k, v)| {
                            let bytes = b64
                                .decode(v.as_str().unwrap_or_default())
                                .unwrap_or_default();
                            (k.clone(), String::from_utf8_lossy(&bytes).into_owned())
                        })
                        .collect()
                })
                .unwrap_or_default();
            Consumed {
                key: v["key"].as_str().map(str::to_owned),
                value: b64
                    .decode(v["value_b64"].as_str().unwrap_or_default())
                    .unwrap_or_default(),
                headers,
                partition: v["partition"].as_i64().unwrap_or(-1) as i32,
                offset: v["offset"].as_i64().unwrap_or(-1),
            }
        })
        .collect()
}

/// Topic and group names for one test's `veriflow run`.
pub struct Deployment {
    pub brokers: String,
    pub input: String,
    pub outcomes: String,
    pub features: String,
    pub scored: String,
    pub alerts: String,
    pub route_stats: String,
    pub dlq: String,
    pub late: String,
    pub group: String,
    pub checkpoints: tempfile::TempDir,
}

impl Deployment {
    pub fn new(name: &str) -> Self {
        let base = unique(name);
        Deployment {
            brokers: brokers(),
            input: format!("{base}.in"),
            outcomes: format!("{base}.outcomes"),
            features: format!("{base}.features"),
            scored: format!("{base}.scored"),
            alerts: format!("{base}.alerts"),
            route_stats: format!("{base}.route-stats"),
            dlq: format!("{base}.dlq"),
            late: format!("{base}.late"),
            group: format!("{base}.group"),
            checkpoints: tempfile::tempdir().unwrap(),
        }
    }

    /// `veriflow run` for this deployment, configured through the environment.
    pub fn command(&self, extra_env: &[(&str, &str)]) -> Command {
        let mut cmd = veriflow();
        cmd.arg("run")
            .arg("--brokers")
            .arg(&self.brokers)
            .arg("--group")
            .arg(&self.group);
        // A test that puts checkpoints elsewhere (an object store) says so in its env.
        if !extra_env
            .iter()
            .any(|(k, _)| *k == "VERIFLOW_CHECKPOINT__DIR")
        {
            cmd.arg("--checkpoint-dir").arg(self.checkpoints.path());
        }
        cmd.env("VERIFLOW_TOPICS__INPUT", &self.input)
            .env("VERIFLOW_TOPICS__OUTCOMES", &self.outcomes)
            .env("VERIFLOW_TOPICS__FEATURES", &self.features)
            .env("VERIFLOW_TOPICS__SCORED", &self.scored)
            .env("VERIFLOW_TOPICS__ALERTS", &self.alerts)
            .env("VERIFLOW_TOPICS__ROUTE_STATS", &self.route_stats)
            .env("VERIFLOW_TOPICS__DLQ", &self.dlq)
            .env("VERIFLOW_TOPICS__LATE", &self.late)
            .env("VERIFLOW_METRICS__LISTEN", "127.0.0.1:0")
            .env("VERIFLOW_API__LISTEN", "off")
            // The streams are historical: idle advance would jump them to today.
            // Tests that want it say so.
            .env("VERIFLOW_PIPELINE__IDLE_TIMEOUT", "off")
            .env("VERIFLOW_LOG", "info,rdkafka=warn");
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Starts `veriflow run` (no `--until-end`); stdout is discarded.
    pub fn spawn(&self, extra_env: &[(&str, &str)], stderr: impl Into<Stdio>) -> Child {
        self.command(extra_env)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn veriflow run")
    }

    /// Runs to the end of the input and returns its log.
    pub fn run_until_end(&self, extra_env: &[(&str, &str)], timeout: Duration) -> String {
        let child = self
            .command(extra_env)
            .arg("--until-end")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn veriflow run");
        let (status, log) = wait_with_timeout(child, timeout);
        assert!(status.success(), "veriflow run failed:\n{log}");
        log
    }
}

/// Waits for a child, killing it (and failing) after `timeout`. Returns its stderr.
pub fn wait_with_timeout(
    mut child: Child,
    timeout: Duration,
) -> (std::process::ExitStatus, String) {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut log = String::new();
            if let Some(mut err) = child.stderr.take() {
                use std::io::Read;
                let _ = err.read_to_string(&mut log);
            }
            return (status, log);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "timed out after {timeout:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `check` until it returns true or `timeout` passes.
pub fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `veriflow simulate` into `dir`; returns (events file, truth records).
pub fn simulate_to_file(dir: &Path, args: &[&str]) -> (PathBuf, Vec<Value>) {
    let events = dir.join("events.jsonl");
    let out = veriflow()
        .arg("simulate")
        .arg("--out")
        .arg(format!("file://{}", events.display()))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "simulate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let truth = read_json_lines(&dir.join("events.truth.jsonl"));
    (events, truth)
}

pub fn read_json_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Asserts one outcome per truth record, each agreeing on outcome, attempts,
/// providers and time to approve.
pub fn assert_outcomes_match_truth(outcomes: &[Consumed], truth: &[Value]) {
    let mut by_id: BTreeMap<String, Value> = BTreeMap::new();
    for o in outcomes {
        let v = o.json();
        let id = v["verification_id"].as_str().unwrap().to_owned();
        assert_eq!(
            o.key.as_deref(),
            v["tenant_id"].as_str(),
            "outcome key must be the tenant id"
        );
        assert!(
            by_id.insert(id.clone(), v).is_none(),
            "two outcomes for {id}"
        );
    }
    assert_eq!(by_id.len(), truth.len(), "one outcome per verification");
    let mut mismatches = Vec::new();
    for t in truth {
        let id = t["verification_id"].as_str().unwrap();
        let Some(o) = by_id.get(id) else {
            mismatches.push(format!("{id}: no outcome"));
            continue;
        };
        for (ours, theirs) in [
            ("outcome", "outcome"),
            ("attempts", "attempts"),
            ("providers", "providers"),
            ("time_to_approve_ms", "time_to_approve_ms"),
            ("tenant_id", "tenant_id"),
            ("country", "country"),
        ] {
            if o[ours] != t[theirs] {
                mismatches.push(format!("{id}: {ours} {} != truth {}", o[ours], t[theirs]));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches, first: {:#?}",
        mismatches.len(),
        &mismatches[..mismatches.len().min(10)]
    );
}

/// Asserts exactly one feature record per verification in the truth, each with the
/// contract's shape.
pub fn assert_one_feature_record_each(features: &[Consumed], truth: &[Value]) {
    let mut ids = std::collections::BTreeSet::new();
    for f in features {
        let v = f.json();
        assert!(v["features"].is_object(), "{v}");
        assert_eq!(v["schema_version"], 3);
        assert!(
            ids.insert(v["verification_id"].as_str().unwrap().to_owned()),
            "two feature records: {v}"
        );
    }
    let expected: std::collections::BTreeSet<String> = truth
        .iter()
        .map(|t| t["verification_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, expected, "one feature record per verification");
}

/// Sends a signal (`-TERM`, `-KILL`) to a child process.
pub fn signal(child: &Child, sig: &str) {
    let pid = child.id().to_string();
    let sent = Command::new("kill").args([sig, &pid]).status().unwrap();
    assert!(sent.success(), "kill {sig} {pid} failed");
}

/// SIGTERM, then wait: the engine must stop cleanly. Returns its stderr if piped.
pub fn stop_gracefully(child: Child) -> String {
    signal(&child, "-TERM");
    let (status, log) = wait_with_timeout(child, Duration::from_secs(60));
    assert!(status.success(), "graceful stop failed:\n{log}");
    log
}

/// SIGKILL, then wait; asserts the process died of it (it had not finished).
pub fn kill_hard(child: Child) {
    use std::os::unix::process::ExitStatusExt;
    signal(&child, "-KILL");
    let (status, _) = wait_with_timeout(child, Duration::from_secs(30));
    assert_eq!(status.signal(), Some(9), "killed by SIGKILL, not finished");
}

/// The partitions an instance owns at the end of its log: "partition assigned ...
/// partition=N" adds, "partitions revoked ... partitions=[..]" removes.
pub fn owned_partitions(log: &str) -> std::collections::BTreeSet<i32> {
    let mut owned = std::collections::BTreeSet::new();
    for line in log.lines() {
        if line.contains("partition assigned") {
            if let Some(p) = line
                .rsplit("partition=")
                .next()
                .and_then(|p| p.split_whitespace().next()?.parse().ok())
            {
                owned.insert(p);
            }
        } else if line.contains("partitions revoked")
            && let Some(list) = line.rsplit("partitions=[").next()
        {
            for p in list
                .trim_end_matches(']')
                .split(',')
                .filter_map(|p| p.trim().parse::<i32>().ok())
            {
                owned.remove(&p);
            }
        }
    }
    owned
}

/// A bare HTTP/1.1 request on loopback: (status, body).
pub fn http(method: &str, port: u16, path: &str) -> (u16, String) {
    let r = http_request(method, port, path, &[], None);
    (r.status, r.body)
}

pub struct HttpResponse {
    /// 0 when the connection failed.
    pub status: u16,
    /// Header lines, lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// An HTTP/1.1 request on loopback with headers and an optional JSON body.
pub fn http_request(
    method: &str,
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    json_body: Option<&str>,
) -> HttpResponse {
    use std::io::{Read, Write};
    let failed = HttpResponse {
        status: 0,
        headers: Vec::new(),
        body: String::new(),
    };
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return failed;
    };
    let body = json_body.unwrap_or("");
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str("Host: localhost\r\n");
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if json_body.is_some() {
        head.push_str("Content-Type: application/json\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(body.as_bytes());
    let mut response = String::new();
    let _ = s.read_to_string(&mut response);
    let Some((head, body)) = response.split_once("\r\n\r\n") else {
        return failed;
    };
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    HttpResponse {
        status,
        headers,
        body: body.to_string(),
    }
}

/// A deployment with a simulated stream ready to produce: the usual test setup.
pub struct Scenario {
    pub d: Deployment,
    /// Holds the events and truth files; kept alive as long as the scenario.
    pub dir: tempfile::TempDir,
    pub events: PathBuf,
    pub truth: Vec<Value>,
}

impl Scenario {
    /// Simulates with `sim_args` and creates the deployment's 4-partition input topic.
    pub fn new(name: &str, sim_args: &[&str]) -> Self {
        let d = Deployment::new(name);
        let dir = tempfile::tempdir().unwrap();
        let (events, truth) = simulate_to_file(dir.path(), sim_args);
        create_topic(&d.brokers, &d.input, 4);
        Scenario {
            d,
            dir,
            events,
            truth,
        }
    }
}

/// VictoriaMetrics from the stack (the InfluxDB v2 write endpoint in tests).
pub fn victoria_metrics() -> String {
    let addr = std::env::var("VERIFLOW_TEST_VM").unwrap_or_else(|_| "127.0.0.1:8428".into());
    assert!(
        TcpStream::connect(&addr).is_ok(),
        "VictoriaMetrics is not reachable at {addr}: start the stack with `scripts/stack.sh up`"
    );
    addr
}

/// One exported series: metric name, labels, [(timestamp ms, value)].
pub type VmSeries = (String, BTreeMap<String, String>, Vec<(i64, f64)>);

/// Every raw sample of the series whose metric name starts with `prefix`, from
/// VictoriaMetrics' export API.
pub fn vm_export(prefix: &str) -> Vec<VmSeries> {
    use std::io::{Read, Write};
    let addr = victoria_metrics();
    let raw = |method: &str, path: &str, body: &str| {
        let mut s = TcpStream::connect(&addr).unwrap();
        // HTTP/1.0: a plain body, no chunked encoding.
        write!(
            s,
            "{method} {path} HTTP/1.0\r\nHost: vm\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default()
    };
    raw("GET", "/internal/force_flush", "");
    let body = raw(
        "POST",
        "/api/v1/export",
        &format!("match[]={{__name__=~\"{prefix}.*\"}}"),
    );
    body.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let mut labels = BTreeMap::new();
            for (k, val) in v["metric"].as_object().unwrap() {
                labels.insert(k.clone(), val.as_str().unwrap_or_default().to_string());
            }
            let name = labels.remove("__name__").unwrap_or_default();
            let samples = v["timestamps"]
                .as_array()
                .unwrap()
                .iter()
                .zip(v["values"].as_array().unwrap())
                .map(|(t, x)| (t.as_i64().unwrap(), x.as_f64().unwrap()))
                .collect();
            (name, labels, samples)
        })
        .collect()
}

/// The operator token `ApiProcess` starts with.
pub const OPERATOR: &str = "test-operator-token";

/// `veriflow api` as a real process on a free port.
pub struct ApiProcess {
    pub child: Child,
    pub port: u16,
    pub log: mpsc::Receiver<String>,
}

impl ApiProcess {
    /// Starts `veriflow api` on a free port and waits until it listens.
    pub fn start(database_url: &str, extra_env: &[(&str, &str)]) -> ApiProcess {
        let mut child = veriflow()
            .args([
                "api",
                "--listen",
                "127.0.0.1:0",
                "--database-url",
                database_url,
            ])
            .env("VERIFLOW_API__OPERATOR_TOKEN", OPERATOR)
            .envs(extra_env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn veriflow api");
        let rx = stderr_lines(&mut child);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.split("veriflow API on http://").nth(1) {
                        let port = rest
                            .split('/')
                            .next()
                            .and_then(|a| a.rsplit(':').next())
                            .and_then(|p| p.parse().ok())
                            .expect("port in the start line");
                        return ApiProcess {
                            child,
                            port,
                            log: rx,
                        };
                    }
                    seen.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("veriflow api did not start:\n{}", seen.join("\n"));
                }
            }
        }
    }

    pub fn call(
        &self,
        method: &str,
        path: &str,
        key: &str,
        body: Option<serde_json::Value>,
    ) -> HttpResponse {
        api_call(self.port, method, path, key, body)
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM: drains, flushes usage counters, exits 0.
    pub fn stop(self) -> String {
        signal(&self.child, "-TERM");
        let (status, _) = wait_with_timeout(self.child, Duration::from_secs(30));
        let log: Vec<String> = self.log.try_iter().collect();
        assert!(
            status.success(),
            "veriflow api did not stop cleanly:\n{}",
            log.join("\n")
        );
        log.join("\n")
    }
}

/// A fresh database on the stack's PostgreSQL, via psql.
pub fn fresh_postgres_database() -> String {
    let admin = std::env::var("VERIFLOW_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:55432/postgres".into());
    let name = unique("vf_cli").replace('-', "_");
    let out = Command::new("psql")
        .args([
            admin.as_str(),
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            &format!("CREATE DATABASE {name}"),
        ])
        .output()
        .expect("psql must be installed (Debian postgresql-client)");
    assert!(
        out.status.success(),
        "PostgreSQL is not reachable at {admin}; start it with `scripts/stack.sh up`: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!("{}/{name}", admin.rsplit_once('/').unwrap().0)
}

/// A request to veriflow's API on `port` with an API key (or the operator token).
pub fn api_call(
    port: u16,
    method: &str,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> HttpResponse {
    let body = body.map(|b| b.to_string());
    http_request(method, port, path, &[("x-api-key", key)], body.as_deref())
}

/// The port of the API `veriflow run` serves beside the pipeline
/// (`api.listen = "127.0.0.1:0"`), from its start log line.
pub fn api_port_from_log(lines: &mpsc::Receiver<String>) -> u16 {
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("veriflow run did not start its API");
        if line.contains("API listening") {
            let addr = line
                .split("addr=")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .expect("addr= in the API start line");
            return addr
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .expect("a port in the API address");
        }
    }
}

/// The lines a child writes to its (piped) stderr, as they come.
pub fn stderr_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stderr = child.stderr.take().expect("stderr must be piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// schemathesis against the API on `port` (its /openapi.json) with a tenant
/// key: generated requests, valid and invalid, each response checked against
/// the document (no 5xx, documented statuses, content types and schemas,
/// invalid input refused). `positive_data_acceptance` is left out: some
/// schema-valid bodies are semantically invalid (a Fluent override that does
/// not parse) and rightly answer 422. Panics with the report on findings.
pub fn schemathesis(port: u16, key: &str, extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    // As a module: a fresh pip install may not have put the script on PATH.
    let out = Command::new("python3")
        .current_dir(dir.path())
        .args([
            "-m",
            "schemathesis.cli",
            "run",
            &format!("http://127.0.0.1:{port}/openapi.json"),
            "-H",
            &format!("x-api-key: {key}"),
            "--max-examples",
            "30",
            "--seed",
            "1",
            "--exclude-checks",
            "positive_data_acceptance",
        ])
        .args(extra)
        .env("NO_COLOR", "1")
        .output()
        .expect("schemathesis must be installed (scripts/setup.sh: pip install schemathesis)");
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{report}"
    );
    assert!(report.contains("Tested:"), "{report}");
    report
}

/// Trains models on 40 simulated minutes (seed 21) into `dir/models/<version>`.
pub fn trained(dir: &std::path::Path, version: &str) -> std::path::PathBuf {
    let history = dir.join(format!("history-{version}"));
    std::fs::create_dir_all(&history).unwrap();
    let (events, _) = simulate_to_file(
        &history,
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
        .args(["--version", version, "--epochs", "150"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "train failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join("models").join(version)
}
