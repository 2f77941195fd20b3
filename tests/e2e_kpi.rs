//! KPIs end to end: simulated events through the broker, `veriflow run`, the KPI
//! SQL, the InfluxDB v2 write API of VictoriaMetrics, read back and compared with
//! counts computed independently from the simulator's ground truth.

mod common;

use std::collections::BTreeMap;
use std::io::BufRead;
use std::net::{TcpListener, TcpStream};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use serde_json::Value;

const RUN_TIMEOUT: Duration = Duration::from_secs(180);

/// (window start, tenant, country, provider, channel) → (requests, sent, approved, expired)
type Expected = BTreeMap<(i64, String, String, String, String), [i64; 4]>;

/// The KPI counts the truth implies: each verification in the minute of its
/// request, under its first attempt's provider ("none" if never sent).
fn expected_from_truth(truth: &[Value]) -> Expected {
    let mut out = Expected::new();
    for t in truth {
        let at =
            veriflow_pipelines::time::parse_rfc3339(t["requested_at"].as_str().unwrap()).unwrap();
        let window = at.div_euclid(60_000) * 60_000;
        let provider = t["providers"]
            .as_array()
            .and_then(|p| p.first())
            .and_then(Value::as_str)
            .unwrap_or("none");
        let key = (
            window,
            t["tenant_id"].as_str().unwrap().to_string(),
            t["country"].as_str().unwrap().to_string(),
            provider.to_string(),
            t["channel"].as_str().unwrap().to_string(),
        );
        let e = out.entry(key).or_default();
        e[0] += 1;
        e[1] += t["attempts"].as_i64().unwrap();
        e[2] += i64::from(t["outcome"] == "approved");
        e[3] += i64::from(t["outcome"] == "expired");
    }
    out
}

/// The KPI series read back: same key → [requests, sent, approved, expired], each
/// series having exactly one sample per window (nothing written twice).
fn read_back(measurement: &str) -> Expected {
    let mut out = Expected::new();
    for (name, labels, samples) in vm_export(&format!("{measurement}_")) {
        let field = match name.strip_prefix(&format!("{measurement}_")) {
            Some("requests") => 0,
            Some("sent") => 1,
            Some("approved") => 2,
            Some("expired") => 3,
            _ => continue,
        };
        let mut seen = std::collections::BTreeSet::new();
        for (t, v) in samples {
            assert!(seen.insert(t), "{name} {labels:?} written twice at {t}");
            let key = (
                t,
                labels["tenant"].clone(),
                labels["country"].clone(),
                labels["provider"].clone(),
                labels["channel"].clone(),
            );
            out.entry(key).or_default()[field] = v as i64;
        }
    }
    out
}

/// [`read_back`], retried until `count` keys are there (VictoriaMetrics makes new
/// series searchable shortly after ingestion) or 30 s have passed.
fn read_back_all(measurement: &str, count: usize) -> Expected {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = read_back(measurement);
        if got.len() >= count || std::time::Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A KPI directory with the built-in query under a measurement name no other run
/// uses (VictoriaMetrics outlives test runs), plus a user-added query.
fn kpi_dir(dir: &std::path::Path, measurement: &str) {
    let builtin = std::fs::read_to_string(repo().join("sql/kpi/veriflow_kpi.sql")).unwrap();
    std::fs::write(dir.join(format!("{measurement}.sql")), &builtin).unwrap();
    // The same query over hopping windows: the last 5 minutes, every minute.
    std::fs::write(
        dir.join(format!("{measurement}_5m.sql")),
        format!("-- window: 5m every 1m\n{builtin}"),
    )
    .unwrap();
    std::fs::write(
        dir.join(format!("{measurement}_by_channel.sql")),
        "-- a user's own KPI: requests per tenant and channel\n\
         SELECT window_start AS time, tenant, channel, count(*) AS requests\n\
         FROM verifications GROUP BY window_start, tenant, channel\n",
    )
    .unwrap();
}

#[test]
fn kpi_points_equal_the_ground_truth_and_user_sql_adds_a_series() {
    let s = Scenario::new(
        "kpi",
        &[
            "--rate",
            "5",
            "--duration",
            "8m",
            "--seed",
            "21",
            "--duplicate-share",
            "0.03",
        ],
    );
    let expected = expected_from_truth(&s.truth);
    assert!(
        s.truth.len() > 1500 && expected.len() > 100,
        "{} series-windows",
        expected.len()
    );
    produce_events(&s.d.brokers, &s.d.input, &s.events, 0, None);
    let measurement = unique("vf_kpi").replace('-', "_");
    let sql = s.dir.path().join("sql");
    std::fs::create_dir(&sql).unwrap();
    kpi_dir(&sql, &measurement);
    let vm = format!("http://{}", victoria_metrics());
    s.d.run_until_end(
        &[
            ("VERIFLOW_INFLUX__URL", &vm),
            ("VERIFLOW_KPI__SQL_DIR", sql.to_str().unwrap()),
            ("VERIFLOW_KPI__PROVISIONAL", "false"),
        ],
        RUN_TIMEOUT,
    );
    let got = read_back_all(&measurement, expected.len());
    assert_eq!(got.len(), expected.len(), "series × windows");
    for (key, want) in &expected {
        assert_eq!(got.get(key), Some(want), "{key:?}");
    }
    // Hopping windows: each 5 minutes ending on every minute boundary after the
    // data starts, until the last window's data; their counts are sums over the
    // tumbling windows inside (timestamped at the hopping window's start).
    let first = expected.keys().map(|k| k.0).min().unwrap();
    let last = expected.keys().map(|k| k.0).max().unwrap();
    let mut hopping = Expected::new();
    let mut end = first + 60_000;
    while end - 300_000 <= last {
        for ((w, tenant, country, provider, channel), v) in &expected {
            if (end - 300_000..end).contains(w) {
                let e = hopping
                    .entry((
                        end - 300_000,
                        tenant.clone(),
                        country.clone(),
                        provider.clone(),
                        channel.clone(),
                    ))
                    .or_default();
                for i in 0..4 {
                    e[i] += v[i];
                }
            }
        }
        end += 60_000;
    }
    let got_hopping = read_back_all(&format!("{measurement}_5m"), hopping.len());
    assert_eq!(got_hopping.len(), hopping.len(), "hopping series × windows");
    for (key, want) in &hopping {
        assert_eq!(got_hopping.get(key), Some(want), "hopping {key:?}");
    }
    // The user's file: its own measurement, per tenant and channel.
    let mine = vm_export(&format!("{measurement}_by_channel_requests"));
    let total: f64 = mine
        .iter()
        .flat_map(|(_, _, s)| s.iter().map(|(_, v)| v))
        .sum();
    assert_eq!(total as usize, s.truth.len());
    assert!(
        mine.iter()
            .all(|(_, l, _)| l.contains_key("channel") && !l.contains_key("country"))
    );
}

/// A TCP relay to VictoriaMetrics that refuses connections while down.
fn relay(up: Arc<AtomicBool>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let target = victoria_metrics();
    std::thread::spawn(move || {
        for client in listener.incoming().map_while(Result::ok) {
            if !up.load(Ordering::SeqCst) {
                continue; // dropped: connection reset
            }
            let Ok(server) = TcpStream::connect(&target) else {
                continue;
            };
            let (mut c_read, mut s_write) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (mut s_read, mut c_write) = (server, client);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c_read, &mut s_write);
                let _ = s_write.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s_read, &mut c_write);
                let _ = c_write.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    port
}

#[test]
fn influx_down_pauses_input_and_loses_nothing_when_it_returns() {
    // Longer than the TTL, so windows become final (and points queue up) while
    // input is still being read.
    let s = Scenario::new(
        "kpi-down",
        &["--rate", "2", "--duration", "25m", "--seed", "23"],
    );
    let expected = expected_from_truth(&s.truth);
    produce_events(&s.d.brokers, &s.d.input, &s.events, 0, None);
    let measurement = unique("vf_kpi_down").replace('-', "_");
    let sql = s.dir.path().join("sql");
    std::fs::create_dir(&sql).unwrap();
    kpi_dir(&sql, &measurement);
    let up = Arc::new(AtomicBool::new(false));
    let url = format!("http://127.0.0.1:{}", relay(up.clone()));
    let mut child =
        s.d.command(&[
            ("VERIFLOW_INFLUX__URL", &url),
            ("VERIFLOW_INFLUX__BUFFER_POINTS", "20"),
            ("VERIFLOW_INFLUX__MAX_BACKOFF", "300ms"),
            ("VERIFLOW_KPI__SQL_DIR", sql.to_str().unwrap()),
            ("VERIFLOW_KPI__PROVISIONAL", "false"),
        ])
        .arg("--until-end")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    // Down for longer than the buffer: the engine says so and stops reading.
    let mut log = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !log.iter().any(|l: &String| l.contains("input paused")) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => log.push(line),
            Err(_) => panic!("no back-pressure reported:\n{}", log.join("\n")),
        }
    }
    assert!(
        log.iter().any(|l| l.contains("InfluxDB write failed")),
        "{}",
        log.join("\n")
    );
    // (Not read back while down: VictoriaMetrics caches an empty series lookup for a
    // while, which would hide the points written after.)
    // InfluxDB returns: the engine resumes and finishes; every point arrives once.
    up.store(true, Ordering::SeqCst);
    let deadline = std::time::Instant::now() + RUN_TIMEOUT;
    let status = loop {
        log.extend(rx.try_iter());
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let tail = log.len().saturating_sub(40);
            panic!(
                "did not finish after InfluxDB returned:\n{}",
                log[tail..].join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    log.extend(rx.try_iter());
    assert!(status.success(), "{}", log.join("\n"));
    assert!(
        log.iter().any(|l| l.contains("input resumed")),
        "{}",
        log.join("\n")
    );
    let got = read_back_all(&measurement, expected.len());
    assert_eq!(got.len(), expected.len());
    for (key, want) in &expected {
        assert_eq!(got.get(key), Some(want), "{key:?}");
    }
}

#[test]
fn a_pumping_attack_raises_an_alert_on_the_topic_and_in_influx() {
    let s = Scenario::new(
        "kpi-alert",
        &[
            "--rate",
            "6",
            "--duration",
            "20m",
            "--seed",
            "32",
            "--fraud-share",
            "0.05",
        ],
    );
    let attacked: std::collections::BTreeSet<(String, String)> = s
        .truth
        .iter()
        .filter(|t| t["is_fraud"] == true)
        .map(|t| {
            (
                t["tenant_id"].as_str().unwrap().to_string(),
                t["country"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(!attacked.is_empty(), "the stream has an attack");
    produce_events(&s.d.brokers, &s.d.input, &s.events, 0, None);
    let alerts_topic = format!("{}.alerts", s.d.input);
    let vm = format!("http://{}", victoria_metrics());
    s.d.run_until_end(
        &[
            ("VERIFLOW_INFLUX__URL", &vm),
            ("VERIFLOW_TOPICS__ALERTS", &alerts_topic),
        ],
        RUN_TIMEOUT,
    );
    let records = consume(
        &s.d.brokers,
        &alerts_topic,
        1,
        Duration::from_secs(30),
        Duration::from_secs(3),
    );
    let drops: Vec<Value> = records
        .iter()
        .map(|r| r.json())
        .filter(|a| a["data"]["rule"] == "conversion_drop")
        .collect();
    assert!(
        !drops.is_empty(),
        "no conversion_drop among {} alerts",
        records.len()
    );
    for a in &drops {
        assert_eq!(a["type"], "kpi.alert");
        let key = (
            a["data"]["tenant"].as_str().unwrap().to_string(),
            a["data"]["country"].as_str().unwrap().to_string(),
        );
        assert!(
            attacked.contains(&key),
            "alert for {key:?}, which was not attacked: {a}"
        );
    }
    // The same firings as veriflow_alert points, tagged by tenant, rule and severity.
    let id = drops[0]["data"]["alert_id"].as_str().unwrap().to_string();
    let tenant = drops[0]["data"]["tenant"].as_str().unwrap().to_string();
    let found = || {
        vm_export("veriflow_alert_value").iter().any(|(_, l, _)| {
            l.get("tenant") == Some(&tenant)
                && l.get("rule").map(String::as_str) == Some("conversion_drop")
                && l.get("severity").map(String::as_str) == Some("critical")
        })
    };
    // New series become searchable shortly after ingestion.
    wait_until(
        &format!("the veriflow_alert point of {id}"),
        Duration::from_secs(30),
        found,
    );
}

#[test]
fn forecasts_land_in_influx_with_intervals() {
    // 50 minutes from the top of an hour: that hour completes when the stream
    // ends and is forecast once (no two forecasts of one hour to tell apart).
    // A start hour no other run uses (VictoriaMetrics keeps every run's points),
    // so the series read back are this run's.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let start_ms = 1_577_836_800_000 + (nanos % 40_000) as i64 * 3_600_000; // 2020-01-01 on
    let start = veriflow_pipelines::time::format_rfc3339(start_ms);
    let s = Scenario::new(
        "kpi-forecast",
        &[
            "--rate",
            "1",
            "--duration",
            "50m",
            "--seed",
            "41",
            "--fraud-share",
            "0",
            "--start",
            &start,
        ],
    );
    produce_events(&s.d.brokers, &s.d.input, &s.events, 0, None);
    let vm = format!("http://{}", victoria_metrics());
    s.d.run_until_end(&[("VERIFLOW_INFLUX__URL", &vm)], RUN_TIMEOUT);
    let tenant = s.truth[0]["tenant_id"].as_str().unwrap().to_string();
    let country = s.truth[0]["country"].as_str().unwrap().to_string();
    let series = |field: &str| -> Vec<(i64, f64)> {
        vm_export(&format!("veriflow_forecast_{field}"))
            .into_iter()
            .filter(|(name, l, _)| {
                name == &format!("veriflow_forecast_{field}")
                    && l.get("tenant") == Some(&tenant)
                    && l.get("country") == Some(&country)
                    && l.get("metric").map(String::as_str) == Some("requests_per_hour")
            })
            .flat_map(|(_, _, samples)| samples)
            .filter(|(t, _)| *t >= start_ms && *t < start_ms + 30 * 3_600_000)
            .collect()
    };
    wait_until("the forecast points", Duration::from_secs(30), || {
        series("horizon_s").len() >= 24
    });
    let value = series("value");
    let lower = series("lower");
    let upper = series("upper");
    let horizon = series("horizon_s");
    assert!(
        value.len() >= 24,
        "{} forecast points for {tenant}/{country}",
        value.len()
    );
    let first_target = value.iter().map(|(t, _)| *t).min().unwrap();
    assert_eq!(first_target % 3_600_000, 0, "targets are hour starts");
    for (t, v) in &value {
        let lo = lower.iter().find(|(x, _)| x == t).map(|(_, v)| *v).unwrap();
        let hi = upper.iter().find(|(x, _)| x == t).map(|(_, v)| *v).unwrap();
        assert!(lo <= *v && *v <= hi && lo >= 0.0, "{lo} <= {v} <= {hi}");
    }
    let horizons: std::collections::BTreeSet<i64> =
        horizon.iter().map(|(_, h)| *h as i64).collect();
    assert!(
        horizons.contains(&0) && horizons.contains(&(23 * 3600)),
        "{horizons:?}"
    );
}

/// The README's KPI query, run as written (under a measurement of its own)
/// against VictoriaMetrics after a run with the default KPI settings, equals
/// the ground truth: nothing counted twice on the stack's server.
#[test]
fn the_readmes_kpi_query_answers_the_ground_truth() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = readme
        .split("## KPIs into InfluxDB")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .unwrap();
    let param = |name: &str| -> String {
        let marker = format!("--data-urlencode '{name}=");
        let start = section.find(&marker).expect("the README's query") + marker.len();
        section[start..].split('\'').next().unwrap().to_owned()
    };
    let (time, query) = (param("time"), param("query"));
    assert!(query.contains("veriflow_kpi_requests"), "{query}");
    // The README's stream: "Run it against Kafka" simulates from the default
    // start; here 20 minutes at 5/s.
    let s = Scenario::new(
        "readme-kpi",
        &["--rate", "5", "--duration", "20m", "--seed", "3"],
    );
    produce_events(&s.d.brokers, &s.d.input, &s.events, 0, None);
    let measurement = unique("vf_readme").replace('-', "_");
    let sql = s.dir.path().join("sql");
    std::fs::create_dir(&sql).unwrap();
    std::fs::write(
        sql.join(format!("{measurement}.sql")),
        std::fs::read_to_string(repo().join("sql/kpi/veriflow_kpi.sql")).unwrap(),
    )
    .unwrap();
    let vm = format!("http://{}", victoria_metrics());
    // Defaults otherwise: the documented path, provisional emissions included.
    s.d.run_until_end(
        &[
            ("VERIFLOW_INFLUX__URL", &vm),
            ("VERIFLOW_KPI__SQL_DIR", sql.to_str().unwrap()),
        ],
        RUN_TIMEOUT,
    );
    let mut want: BTreeMap<String, f64> = BTreeMap::new();
    for t in &s.truth {
        *want
            .entry(t["tenant_id"].as_str().unwrap().to_owned())
            .or_default() += 1.0;
    }
    let query = query.replace("veriflow_kpi_requests", &format!("{measurement}_requests"));
    let mut got = BTreeMap::new();
    wait_until(
        "the query to see every tenant",
        Duration::from_secs(30),
        || {
            let _ = http_request("GET", vm_port(), "/internal/force_flush", &[], None);
            let url = format!(
                "/api/v1/query?time={}&query={}",
                urlencode(&time),
                urlencode(&query)
            );
            let answer = http_request("GET", vm_port(), &url, &[], None);
            let v: Value = serde_json::from_str(&answer.body).unwrap_or(Value::Null);
            got = v["data"]["result"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    (
                        r["metric"]["tenant"].as_str().unwrap_or("").to_owned(),
                        r["value"][1]
                            .as_str()
                            .unwrap_or("0")
                            .parse::<f64>()
                            .unwrap_or(0.0),
                    )
                })
                .collect();
            got == want
        },
    );
    assert_eq!(got, want, "requests per tenant from the README's query");
}

fn vm_port() -> u16 {
    victoria_metrics()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8428)
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
