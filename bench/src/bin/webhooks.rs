//! Webhook delivery benchmark: deliveries per second to a local receiver and
//! the latency from publishing an event to its arrival, through the whole
//! engine (durable queue in the database, leases, signing, per-endpoint
//! workers, attempt log). The baseline, run side by side, is the bare signed
//! HTTP client posting the same bodies to the same receiver with the same
//! concurrency: what the engine costs on top of HTTP itself.
//!
//! ```text
//! bench/run.sh webhooks --messages 20000 --endpoints 4
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::http::HeaderMap;
use axum::routing::post;
use clap::Parser;
use veriflow_api::store::{EndpointRow, Store, TenantRow};
use veriflow_api::webhooks::{Event, Webhooks, WebhooksConfig, message_id};
use veriflow_connectors::webhooks::client::{ClientConfig, Outgoing, WebhookClient};
use veriflow_connectors::webhooks::signature::Secret;

#[derive(Parser)]
struct Args {
    /// Events to publish (each goes to every endpoint).
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    /// Endpoints of the tenant, all on the local receiver.
    #[arg(long, default_value_t = 1)]
    endpoints: usize,
    /// Concurrent requests per endpoint (engine and baseline).
    #[arg(long, default_value_t = 32)]
    in_flight: usize,
    /// Rows claimed per query (webhooks.claim_batch).
    #[arg(long, default_value_t = 2000)]
    claim_batch: usize,
    /// Deliveries held per endpoint (webhooks.queue_per_endpoint).
    #[arg(long, default_value_t = 4000)]
    queue: usize,
    /// Events published per second (in batches every 10 ms); 0 publishes as
    /// fast as possible, which measures throughput but makes latency mostly
    /// queueing.
    #[arg(long, default_value_t = 0)]
    rate: usize,
    /// The queue's database; a temporary SQLite file when absent.
    #[arg(long)]
    database_url: Option<String>,
}

type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    // The receiver runs on a runtime of its own, as another process would.
    let arrivals: Arrivals = Arc::default();
    let port = start_receiver(arrivals.clone())?;
    let url = format!("http://127.0.0.1:{port}/hook");
    println!(
        "webhooks: {} messages × {} endpoint(s), {} in flight per endpoint, published {}, receiver on :{port}",
        args.messages,
        args.endpoints,
        args.in_flight,
        if args.rate == 0 {
            "at once".to_string()
        } else {
            format!("at {}/s", args.rate)
        }
    );

    let total = args.messages * args.endpoints;
    let baseline = baseline(&url, total, args.in_flight * args.endpoints, &arrivals).await?;
    println!(
        "  baseline (signed HTTP client alone): {:>9.0} deliveries/s",
        baseline
    );
    arrivals.lock().unwrap().clear();

    let dir = tempfile::tempdir()?;
    let database = args
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}/bench.db", dir.path().display()));
    let store = Store::connect(&database)
        .await
        .context("connecting the store")?;
    let config = WebhooksConfig {
        encryption_key: Some("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into()),
        allow_networks: vec!["127.0.0.0/8".parse()?],
        max_in_flight: args.in_flight,
        claim_batch: args.claim_batch,
        queue_per_endpoint: args.queue,
        instance_id: format!("bench-{}", std::process::id()),
        ..WebhooksConfig::default()
    };
    let hooks = Webhooks::new(store.clone(), config, Arc::default())?;
    let now = veriflow_api::store::now_ms();
    store
        .create_tenant(&TenantRow {
            id: "bench".into(),
            name: "bench".into(),
            region: "local".into(),
            settings: "{}".into(),
            domains: Vec::new(),
            created_at: now,
            updated_at: now,
        })
        .await?;
    for i in 0..args.endpoints {
        let id = format!("ep_bench{i}");
        store
            .insert_endpoint(&EndpointRow {
                secret: hooks.secrets().seal(&id, &Secret::generate().expose()),
                id,
                tenant_id: "bench".into(),
                url: format!("{url}/{i}"),
                description: String::new(),
                event_types: Vec::new(),
                filter: None,
                rate_limit: None,
                headers: Vec::new(),
                previous_secret: None,
                previous_secret_until: None,
                enabled: true,
                disabled_reason: None,
                failing_since: None,
                created_at: now,
                updated_at: now,
            })
            .await?;
    }
    let engine = hooks.start_engine();

    let mut published: HashMap<String, Instant> = HashMap::with_capacity(args.messages);
    let start = Instant::now();
    let per_tick = if args.rate == 0 {
        500
    } else {
        (args.rate / 100).max(1)
    };
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    for chunk in (0..args.messages).collect::<Vec<_>>().chunks(per_tick) {
        if args.rate > 0 {
            tick.tick().await;
        }
        let events: Vec<Event> = chunk
            .iter()
            .map(|i| Event {
                id: format!("bench-{i}"),
                tenant_id: "bench".into(),
                event_type: "verification.approved".into(),
                timestamp: "2026-11-25T00:00:00.000Z".into(),
                data: serde_json::json!({"verification_id": format!("v{i}"), "country": "BR"}),
            })
            .collect();
        hooks.publish(&events).await?;
        let at = Instant::now();
        for e in &events {
            published.insert(message_id(&e.id, "bench"), at);
        }
    }
    let publish_time = start.elapsed();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let n = arrivals.lock().unwrap().len();
        if n >= total {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "only {n} of {total} arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = start.elapsed();
    engine.stop().await;

    let arrivals = arrivals.lock().unwrap();
    let mut latencies: Vec<Duration> = arrivals
        .iter()
        .filter_map(|(key, at)| {
            let id = key.split('/').next()?;
            published.get(id).map(|p| at.saturating_duration_since(*p))
        })
        .collect();
    latencies.sort();
    let pct = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q) as usize];
    let rate = total as f64 / elapsed.as_secs_f64();
    println!(
        "  engine (queue in {}, signed, logged): {:>9.0} deliveries/s ({:.2}× the baseline; publishing took {:.2}s)",
        if args.database_url.is_some() {
            "the given database"
        } else {
            "SQLite"
        },
        rate,
        rate / baseline,
        publish_time.as_secs_f64()
    );
    println!(
        "  event → delivery latency: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    Ok(())
}

/// Posts `total` signed bodies with `concurrency` requests in flight.
async fn baseline(
    url: &str,
    total: usize,
    concurrency: usize,
    arrivals: &Arrivals,
) -> anyhow::Result<f64> {
    let client = WebhookClient::new(&ClientConfig {
        allow_networks: vec!["127.0.0.0/8".parse()?],
        ..ClientConfig::default()
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let secrets = Arc::new(vec![Secret::generate()]);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, secrets, next, url) = (
            client.clone(),
            secrets.clone(),
            next.clone(),
            url.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let id = format!("base_{i}");
                let body = format!(r#"{{"type":"verification.approved","timestamp":"2026-11-25T00:00:00.000Z","data":{{"verification_id":"v{i}"}}}}"#);
                let _ = client
                    .send(&Outgoing {
                        url: &url,
                        id: &id,
                        timestamp: 1_764_000_000,
                        body: body.as_bytes(),
                        secrets: &secrets,
                        headers: &[],
                    })
                    .await;
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let elapsed = start.elapsed();
    let n = arrivals.lock().unwrap().len();
    anyhow::ensure!(n == total, "baseline: {n} of {total} arrived");
    Ok(total as f64 / elapsed.as_secs_f64())
}

fn start_receiver(arrivals: Arrivals) -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("receiver runtime");
        runtime.block_on(async move {
            let record = move |uri: axum::http::Uri, headers: HeaderMap| {
                let arrivals = arrivals.clone();
                async move {
                    let id = headers
                        .get("webhook-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    // One entry per (message, endpoint): the first arrival counts.
                    let key = format!("{id}/{}", uri.path());
                    arrivals
                        .lock()
                        .unwrap()
                        .entry(key)
                        .or_insert_with(Instant::now);
                    "ok"
                }
            };
            let app = Router::new().route("/{*path}", post(record));
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            axum::serve(listener, app).await.expect("receiver serves");
        });
    });
    Ok(port)
}
