//! `veriflow api` as a user runs it: a real process, real HTTP on loopback, an
//! SQLite file or the stack's PostgreSQL, and schemathesis fuzzing the served
//! OpenAPI document.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use serde_json::json;

const OPERATOR: &str = "test-operator-token";

struct ApiProcess {
    child: Child,
    port: u16,
    log: mpsc::Receiver<String>,
}

impl ApiProcess {
    /// Starts `veriflow api` on a free port and waits until it listens.
    fn start(database_url: &str, extra_env: &[(&str, &str)]) -> ApiProcess {
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
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
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

    fn call(
        &self,
        method: &str,
        path: &str,
        key: &str,
        body: Option<serde_json::Value>,
    ) -> HttpResponse {
        let body = body.map(|b| b.to_string());
        http_request(
            method,
            self.port,
            path,
            &[("x-api-key", key)],
            body.as_deref(),
        )
    }

    /// SIGTERM: drains, flushes usage counters, exits 0.
    fn stop(self) -> String {
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
fn fresh_postgres_database() -> String {
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

/// Creates a tenant, uses its key, restarts, and finds everything still there.
fn serves_and_persists(database_url: &str) {
    let api = ApiProcess::start(database_url, &[]);
    let r = api.call(
        "POST",
        "/v1/tenants",
        OPERATOR,
        Some(
            json!({"id": "acme", "name": "Acme", "domains": ["verify.acme.com"],
                    "branding": {"primary_color": "#FF0000"}}),
        ),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(r.header("x-request-id").is_some());
    let key = r.json()["admin_key"]["key"].as_str().unwrap().to_string();
    let render =
        json!({"service": "login", "locale": "ar", "variables": {"code": "4821", "minutes": 2}});
    let r = api.call("POST", "/v1/templates/render", &key, Some(render.clone()));
    assert_eq!(r.status, 200, "{}", r.body);
    let first = r.json();
    assert_eq!(first["direction"], "rtl");
    assert!(first["text"].as_str().unwrap().contains("دقيقتين"));
    assert_eq!(first["branding"]["primary_color"], "#FF0000");
    // Host-based resolution over a real socket.
    let r = http_request(
        "GET",
        api.port,
        "/v1/auth/whoami",
        &[("host", "verify.acme.com"), ("x-api-key", OPERATOR)],
        None,
    );
    assert_eq!(r.json()["tenant"], "acme");
    let r = api.call("GET", "/v1/nope", &key, None);
    assert_eq!(r.status, 404);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let log = api.stop();
    // Structured access log: one line per request with route, status and tenant.
    assert!(
        log.contains("route=/v1/templates/render status=200") && log.contains("tenant=\"acme\""),
        "{log}"
    );

    // Restart on the same database: tenant, key and the usage counted before the
    // stop (flushed at shutdown) are all there.
    let api = ApiProcess::start(database_url, &[]);
    let r = api.call("POST", "/v1/templates/render", &key, Some(render));
    assert_eq!(r.json(), first);
    let usage = api.call("GET", "/v1/usage", &key, None).json();
    assert_eq!(usage["requests"], 4, "{usage}"); // render, whoami, render, usage
    api.stop();
}

#[test]
fn api_on_sqlite_serves_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    serves_and_persists(&format!("sqlite://{}/state/api.db", dir.path().display()));
}

#[test]
fn api_on_postgres_serves_and_persists() {
    serves_and_persists(&fresh_postgres_database());
}

#[test]
fn bad_database_url_is_a_clear_error() {
    let out = veriflow()
        .args([
            "api",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            "mysql://x",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("mysql://x") && err.contains("sqlite://"),
        "{err}"
    );
}

/// schemathesis (the schema-driven fuzzer users and reviewers run) generates
/// requests from /openapi.json, valid and invalid, and checks every response
/// against the document: no 5xx, documented status codes, content types and
/// schemas, invalid input refused. `positive_data_acceptance` is left out: some
/// schema-valid bodies are semantically invalid (a Fluent override that does
/// not parse) and rightly answer 422.
#[test]
fn api_conforms_to_its_openapi_document_under_fuzzing() {
    let dir = tempfile::tempdir().unwrap();
    let api = ApiProcess::start(
        &format!("sqlite://{}/api.db", dir.path().display()),
        &[
            ("VERIFLOW_API__RATE_LIMIT_PER_SECOND", "100000"),
            ("VERIFLOW_API__RATE_LIMIT_BURST", "100000"),
        ],
    );
    let r = api.call(
        "POST",
        "/v1/tenants",
        OPERATOR,
        Some(json!({"id": "acme", "name": "Acme"})),
    );
    let key = r.json()["admin_key"]["key"].as_str().unwrap().to_string();
    // As a module: a fresh pip install may not have put the script on PATH.
    let out = Command::new("python3")
        .current_dir(dir.path())
        .args([
            "-m",
            "schemathesis.cli",
            "run",
            &format!("http://127.0.0.1:{}/openapi.json", api.port),
            "-H",
            &format!("x-api-key: {key}"),
            "--max-examples",
            "30",
            "--seed",
            "1",
            "--exclude-checks",
            "positive_data_acceptance",
        ])
        .env("NO_COLOR", "1")
        .output()
        .expect("schemathesis must be installed (scripts/setup.sh: pip install schemathesis)");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{report}"
    );
    assert!(report.contains("Tested:"), "{report}");
    api.stop();
}
