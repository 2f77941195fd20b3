//! The InfluxDB sink against a real v2 write endpoint: VictoriaMetrics from the
//! stack (`scripts/stack.sh up`), read back through its export API. Outages are
//! made by a TCP relay in front of it that refuses connections while "down".

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use veriflow_connectors::influx::{FieldValue, InfluxConfig, InfluxSink, Point};

fn vm_addr() -> String {
    std::env::var("VERIFLOW_TEST_VM").unwrap_or_else(|_| "127.0.0.1:8428".into())
}

/// A raw HTTP/1.1 exchange with VictoriaMetrics.
fn vm(method: &str, path: &str, body: &str) -> String {
    let addr = vm_addr();
    let mut s = TcpStream::connect(&addr).unwrap_or_else(|e| {
        panic!(
            "VictoriaMetrics is not reachable at {addr} ({e}); start it with `scripts/stack.sh up`"
        )
    });
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: vm\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// Every exported series whose name starts with `prefix`: (name, labels, values, timestamps).
fn export(prefix: &str) -> Vec<Value> {
    vm("GET", "/internal/force_flush", "");
    let body = vm(
        "POST",
        "/api/v1/export",
        &format!("match[]={{__name__=~\"{prefix}.*\"}}"),
    );
    body.lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}_{}_{n}", std::process::id())
}

fn config(url: String) -> InfluxConfig {
    InfluxConfig {
        url,
        org: "veriflow".into(),
        bucket: "test".into(),
        token: "secret-token".into(),
        batch_points: 50,
        buffer_points: 200,
        timeout: Duration::from_secs(5),
        max_backoff: Duration::from_millis(200),
    }
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A TCP relay to VictoriaMetrics that can be switched off: while down it accepts
/// and drops connections, as a crashed or restarting server would look.
struct Relay {
    port: u16,
    up: Arc<AtomicBool>,
}

impl Relay {
    fn start() -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let flag = up.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                if !flag.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(vm_addr()) else {
                    continue;
                };
                let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (mut c, mut s) = (client, server);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c, &mut s2);
                    let _ = s2.shutdown(std::net::Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s, &mut c2);
                    let _ = c2.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Relay { port, up }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn points(measurement: &str, n: usize, start_ms: i64) -> Vec<Point> {
    (0..n)
        .map(|i| {
            Point::new(measurement, start_ms + i as i64 * 60_000)
                .tag("tenant", "acme")
                .tag("country", if i % 2 == 0 { "BR" } else { "MX" })
                .field("requests", FieldValue::Int(i as i64))
                .field("conversion_rate", FieldValue::Float(i as f64 / 100.0))
        })
        .collect()
}

/// (country, timestamp) → requests, from the export.
fn requests_by_key(measurement: &str) -> std::collections::BTreeMap<(String, i64), Vec<f64>> {
    let mut out = std::collections::BTreeMap::<(String, i64), Vec<f64>>::new();
    for s in export(&format!("{measurement}_requests")) {
        let country = s["metric"]["country"].as_str().unwrap().to_string();
        assert_eq!(s["metric"]["tenant"], "acme");
        let values = s["values"].as_array().unwrap();
        let times = s["timestamps"].as_array().unwrap();
        for (v, t) in values.iter().zip(times) {
            out.entry((country.clone(), t.as_i64().unwrap()))
                .or_default()
                .push(v.as_f64().unwrap());
        }
    }
    out
}

#[test]
fn points_are_written_in_batches_and_read_back() {
    let m = unique("vf_sink");
    let mut sink = InfluxSink::start(config(format!("http://{}", vm_addr()))).unwrap();
    let start = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    sink.send(points(&m, 120, start));
    assert!(sink.flush(Duration::from_secs(30)), "flushed");
    assert_eq!(sink.stats().written.load(Ordering::Relaxed), 120);
    assert_eq!(
        sink.stats().batches.load(Ordering::Relaxed),
        3,
        "50 + 50 + 20"
    );
    let got = requests_by_key(&m);
    assert_eq!(got.len(), 120);
    for i in 0..120i64 {
        let country = if i % 2 == 0 { "BR" } else { "MX" };
        assert_eq!(
            got[&(country.to_string(), start + i * 60_000)],
            vec![i as f64]
        );
    }
    let rates = export(&format!("{m}_conversion_rate"));
    assert_eq!(rates.len(), 2);
    assert!(sink.close(Duration::from_secs(5)));
}

#[test]
fn an_outage_loses_nothing_and_back_pressure_shows() {
    let relay = Relay::start();
    let m = unique("vf_outage");
    let mut sink = InfluxSink::start(config(relay.url())).unwrap();
    let start = 1_767_225_600_000;
    relay.up.store(false, Ordering::SeqCst);
    sink.send(points(&m, 150, start));
    wait_until("retries during the outage", Duration::from_secs(10), || {
        sink.stats().retries.load(Ordering::Relaxed) >= 3
    });
    assert!(sink.stats().down.load(Ordering::Relaxed));
    assert!(sink.stats().last_error().is_some());
    assert!(!sink.pressure(), "150 queued < 200 buffer");
    // More than the buffer while down: the sink says so instead of growing silently.
    sink.send(points(&m, 100, start + 150 * 60_000));
    assert!(sink.pressure());
    assert_eq!(sink.queued(), 250);
    assert!(
        !sink.flush(Duration::from_millis(300)),
        "cannot flush while down"
    );
    assert!(requests_by_key(&m).is_empty());
    // The server returns: everything arrives, exactly once per series and time.
    relay.up.store(true, Ordering::SeqCst);
    assert!(
        sink.flush(Duration::from_secs(30)),
        "flushed after the outage"
    );
    assert!(!sink.pressure());
    assert!(!sink.stats().down.load(Ordering::Relaxed));
    let got = requests_by_key(&m);
    assert_eq!(got.len(), 250);
    assert!(got.values().all(|v| v.len() == 1), "no point written twice");
    assert_eq!(sink.stats().written.load(Ordering::Relaxed), 250);
    assert_eq!(sink.stats().rejected.load(Ordering::Relaxed), 0);
    sink.close(Duration::from_secs(5));
}

#[test]
fn a_malformed_batch_is_rejected_loudly_not_retried_forever() {
    // A 4xx other than 429 cannot be fixed by retrying: counted, logged, dropped.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut c in listener.incoming().map_while(Result::ok) {
            let mut buf = [0u8; 65536];
            let _ = c.read(&mut buf);
            let body = r#"{"code":"invalid","message":"unable to parse"}"#;
            let _ = write!(
                c,
                "HTTP/1.1 400 Bad Request\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let sink = InfluxSink::start(config(format!("http://127.0.0.1:{port}"))).unwrap();
    sink.send(points("m", 10, 0));
    assert!(sink.flush(Duration::from_secs(10)));
    assert_eq!(sink.stats().rejected.load(Ordering::Relaxed), 10);
    assert!(
        sink.stats()
            .last_error()
            .unwrap()
            .contains("unable to parse")
    );
    assert_eq!(sink.stats().retries.load(Ordering::Relaxed), 0);
}

#[test]
fn a_bad_url_is_refused_at_start() {
    let err = InfluxSink::start(config("127.0.0.1:8428".into()))
        .err()
        .unwrap();
    assert!(err.to_string().contains("http://"), "{err}");
}
