//! The delivery engine: claims due deliveries, sends them through per-endpoint
//! workers, and writes every attempt's outcome back.
//!
//! Three kinds of task:
//! - the **claimer** leases due rows (skipping endpoints whose queue here is
//!   full), fetches their bodies and hands each to its endpoint's worker; it
//!   also renews this instance's leases and refreshes the queue-depth gauges;
//! - one **worker per endpoint** applies the endpoint's rate limit and runs at
//!   most `max_in_flight` requests at once, each bounded by the timeout, so a
//!   hanging endpoint only ever ties up its own slots;
//! - the **writer** batches outcomes into one transaction (attempt rows, next
//!   state, lease cleared) and disables endpoints failing for too long.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{Semaphore, mpsc, watch};
use veriflow_connectors::webhooks::client::{Outgoing, SendError};

use super::schedule::jitter_unit;
use super::{Event, Webhooks};
use crate::store::{AttemptRecord, Claimed, EndpointRow, NextState, OutcomeWrite, now_ms};
use crate::time::rfc3339;
use crate::usage::Counter;

/// How long a worker trusts its copy of the endpoint (URL, secrets, limits).
const ENDPOINT_TTL: Duration = Duration::from_secs(1);
/// Outcomes written per transaction at most.
const WRITE_BATCH: usize = 1000;

/// Stops the engine when asked or dropped.
pub struct EngineHandle {
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl EngineHandle {
    /// Stops claiming, lets in-flight requests finish (bounded by the timeout)
    /// and writes their outcomes.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for EngineHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// A claimed delivery with its body, on its way to a worker.
struct Job {
    claimed: Claimed,
    event_type: String,
    payload: Arc<str>,
}

struct WorkerSlot {
    jobs: mpsc::UnboundedSender<Job>,
    /// Jobs handed over and not yet written back (shared with the worker).
    load: Arc<AtomicUsize>,
    last_used: Instant,
}

/// A worker idle this long is dropped (its endpoint went quiet or away).
const WORKER_IDLE: Duration = Duration::from_secs(600);

pub(super) fn start(hooks: Webhooks) -> EngineHandle {
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(run(hooks, stopped));
    EngineHandle {
        stop,
        task: Some(task),
    }
}

async fn run(hooks: Webhooks, mut stopped: watch::Receiver<bool>) {
    let inner = &hooks.inner;
    let config = &inner.config;
    let owner = config.instance_id.clone();
    match inner.store.release_leases(&owner).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(deliveries = n, "released the previous run's webhook leases"),
        Err(e) => tracing::warn!(error = %e, "releasing old webhook leases failed; they expire"),
    }
    let (outcomes_tx, outcomes_rx) = mpsc::unbounded_channel::<(OutcomeWrite, Arc<AtomicUsize>)>();
    let writer = tokio::spawn(write_outcomes(hooks.clone(), outcomes_rx));
    let mut workers: HashMap<String, WorkerSlot> = HashMap::new();
    let mut worker_tasks = tokio::task::JoinSet::new();
    let mut last_renewal = Instant::now();
    let mut last_depths: Option<Instant> = None;
    tracing::info!(instance = %owner, "webhook delivery engine started");

    loop {
        // Claim until nothing more is due (or every endpoint with work is busy).
        loop {
            let busy: Vec<String> = workers
                .iter()
                .filter(|(_, w)| w.load.load(Ordering::Relaxed) >= config.queue_per_endpoint)
                .map(|(id, _)| id.clone())
                .collect();
            let now = now_ms();
            let lease_until = now + config.lease.as_millis() as i64;
            let claimed = match inner
                .store
                .claim_due(&owner, now, lease_until, config.claim_batch as i64, &busy)
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming webhook deliveries failed; retrying");
                    break;
                }
            };
            let full_batch = claimed.len() >= config.claim_batch;
            if claimed.is_empty() {
                break;
            }
            let ids: Vec<String> = claimed.iter().map(|c| c.message_id.clone()).collect();
            let bodies: HashMap<String, (String, Arc<str>)> = match inner.store.messages(&ids).await
            {
                Ok(rows) => rows
                    .into_iter()
                    .map(|m| (m.id, (m.event_type, Arc::from(m.payload))))
                    .collect(),
                Err(e) => {
                    // The leases expire and the rows are claimed again.
                    tracing::warn!(error = %e, "reading webhook messages failed");
                    break;
                }
            };
            for c in claimed {
                let Some((event_type, payload)) = bodies.get(&c.message_id).cloned() else {
                    continue;
                };
                let slot = workers.entry(c.endpoint_id.clone()).or_insert_with(|| {
                    let (jobs, rx) = mpsc::unbounded_channel();
                    let load = Arc::new(AtomicUsize::new(0));
                    worker_tasks.spawn(endpoint_worker(
                        hooks.clone(),
                        c.endpoint_id.clone(),
                        rx,
                        load.clone(),
                        outcomes_tx.clone(),
                    ));
                    WorkerSlot {
                        jobs,
                        load,
                        last_used: Instant::now(),
                    }
                });
                slot.last_used = Instant::now();
                slot.load.fetch_add(1, Ordering::Relaxed);
                let job = Job {
                    claimed: c,
                    event_type,
                    payload,
                };
                if slot.jobs.send(job).is_err() {
                    // The worker ended (it only does at shutdown); the lease expires.
                    slot.load.fetch_sub(1, Ordering::Relaxed);
                }
            }
            if !full_batch {
                break;
            }
        }
        // Idle workers are dropped so endpoints that went quiet cost nothing.
        workers.retain(|_, w| {
            w.load.load(Ordering::Relaxed) > 0 || w.last_used.elapsed() < WORKER_IDLE
        });
        while worker_tasks.try_join_next().is_some() {}

        if last_renewal.elapsed() >= config.lease / 3 {
            let until = now_ms() + config.lease.as_millis() as i64;
            if let Err(e) = inner.store.renew_leases(&owner, until).await {
                tracing::warn!(error = %e, "renewing webhook leases failed");
            }
            last_renewal = Instant::now();
        }
        if last_depths.is_none_or(|at| at.elapsed() >= Duration::from_secs(5)) {
            if let Ok(depths) = inner.store.pending_depths().await {
                inner.metrics.set_queue_depths(&depths);
            }
            last_depths = Some(Instant::now());
        }

        tokio::select! {
            _ = inner.wake.notified() => {}
            _ = tokio::time::sleep(config.poll_interval) => {}
            _ = stopped.changed() => break,
        }
        if *stopped.borrow() {
            break;
        }
    }
    // Closing the job channels ends the workers once their requests finish.
    drop(workers);
    while worker_tasks.join_next().await.is_some() {}
    drop(outcomes_tx);
    let _ = writer.await;
    tracing::info!("webhook delivery engine stopped");
}

/// The endpoint as the worker last read it, with what is derived from it.
struct EndpointView {
    row: EndpointRow,
    headers: Arc<Vec<(String, String)>>,
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
    read_at: Instant,
    /// [`Webhooks::generation`] when read.
    generation: u64,
}

async fn endpoint_worker(
    hooks: Webhooks,
    endpoint_id: String,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    load: Arc<AtomicUsize>,
    outcomes: mpsc::UnboundedSender<(OutcomeWrite, Arc<AtomicUsize>)>,
) {
    let inner = &hooks.inner;
    let slots = Arc::new(Semaphore::new(inner.config.max_in_flight.max(1)));
    let mut view: Option<EndpointView> = None;
    let mut requests = tokio::task::JoinSet::new();
    while let Some(job) = jobs.recv().await {
        while requests.try_join_next().is_some() {}
        let generation = hooks.generation();
        if view
            .as_ref()
            .is_none_or(|v| v.read_at.elapsed() > ENDPOINT_TTL || v.generation != generation)
        {
            view = match inner.store.endpoint_by_id(&endpoint_id).await {
                Ok(Some(row)) => Some(make_view(row, view.take(), generation)),
                Ok(None) => None,
                Err(e) => {
                    tracing::warn!(endpoint = %endpoint_id, error = %e, "reading the endpoint failed");
                    view
                }
            };
        }
        let Some(current) = view.as_ref().filter(|v| v.row.enabled) else {
            // Deleted or disabled meanwhile: leave the row to its lease.
            load.fetch_sub(1, Ordering::Relaxed);
            continue;
        };
        if let Some(limiter) = &current.limiter {
            limiter.until_ready().await;
        }
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let hooks = hooks.clone();
        let row = current.row.clone();
        let headers = current.headers.clone();
        let outcomes = outcomes.clone();
        let load = load.clone();
        requests.spawn(async move {
            let outcome = deliver(&hooks, &row, &headers, job).await;
            drop(permit);
            let _ = outcomes.send((outcome, load));
        });
    }
    while requests.join_next().await.is_some() {}
}

fn make_view(row: EndpointRow, previous: Option<EndpointView>, generation: u64) -> EndpointView {
    let limiter = match (&previous, row.rate_limit) {
        (Some(p), Some(rate)) if p.row.rate_limit == Some(rate) => p.limiter.clone(),
        (_, Some(rate)) => NonZeroU32::new(rate.clamp(1, u32::MAX as i64) as u32)
            .map(|r| Arc::new(RateLimiter::direct(Quota::per_second(r)))),
        (_, None) => None,
    };
    EndpointView {
        headers: Arc::new(row.headers.clone()),
        row,
        limiter,
        read_at: Instant::now(),
        generation,
    }
}

/// One attempt of one delivery, and what happens next.
async fn deliver(
    hooks: &Webhooks,
    endpoint: &EndpointRow,
    headers: &[(String, String)],
    job: Job,
) -> OutcomeWrite {
    let inner = &hooks.inner;
    let now = now_ms();
    let c = &job.claimed;
    let attempt_id = format!(
        "atmpt_{}_{}",
        c.message_id.trim_start_matches("msg_"),
        c.attempts + 1
    );
    let attempt = match hooks.signing_secrets(endpoint, now) {
        Ok(secrets) => {
            inner
                .client
                .send(&Outgoing {
                    url: &endpoint.url,
                    id: &c.message_id,
                    timestamp: now / 1000,
                    body: job.payload.as_bytes(),
                    secrets: &secrets,
                    headers,
                })
                .await
        }
        Err(e) => veriflow_connectors::webhooks::client::Attempt {
            result: Err(SendError::Other(e.to_string())),
            latency: Duration::ZERO,
        },
    };
    let latency_ms = attempt.latency.as_millis() as i64;
    let (outcome, status_code, error, response, retry_after) = match &attempt.result {
        Ok(answer) if (200..300).contains(&answer.status) => (
            "success",
            Some(answer.status),
            None,
            Some(answer.excerpt.clone()),
            None,
        ),
        Ok(answer) => (
            "failure",
            Some(answer.status),
            Some(format!("HTTP {}", answer.status)),
            Some(answer.excerpt.clone()),
            answer.retry_after,
        ),
        Err(SendError::Timeout) => ("timeout", None, Some("timed out".into()), None, None),
        Err(SendError::Blocked(why)) => ("blocked", None, Some(why.clone()), None, None),
        Err(SendError::Connect(why)) => ("connect_error", None, Some(why.clone()), None, None),
        Err(e) => ("failure", None, Some(e.to_string()), None, None),
    };
    inner
        .metrics
        .attempt(&endpoint.id, outcome, attempt.latency.as_secs_f64());
    let next = if outcome == "success" {
        inner
            .usage
            .add(&endpoint.tenant_id, Counter::WebhooksSent, 1);
        NextState::Delivered
    } else if status_code == Some(410) {
        // The receiver says the endpoint is gone for good.
        disable(hooks, endpoint, "the endpoint answered 410 Gone").await;
        NextState::Failed
    } else {
        match inner
            .schedule
            .wait(c.step as usize, retry_after, jitter_unit())
        {
            Some(wait) => NextState::Retry {
                at: now_ms() + wait.as_millis() as i64,
                step: c.step + 1,
            },
            None => NextState::Failed,
        }
    };
    if outcome != "success" {
        tracing::debug!(endpoint = %endpoint.id, message = %c.message_id, event = %job.event_type, outcome, ?error, "webhook attempt failed");
    }
    OutcomeWrite {
        attempt: AttemptRecord {
            id: attempt_id,
            message_id: c.message_id.clone(),
            endpoint_id: endpoint.id.clone(),
            tenant_id: endpoint.tenant_id.clone(),
            attempted_at: now,
            status_code: status_code.map(i64::from),
            outcome: outcome.to_string(),
            error,
            latency_ms,
            response,
        },
        next,
    }
}

/// Disables an endpoint and tells the tenant's other endpoints that listen for
/// `endpoint.disabled`.
async fn disable(hooks: &Webhooks, endpoint: &EndpointRow, reason: &str) {
    let inner = &hooks.inner;
    let now = now_ms();
    match inner
        .store
        .disable_endpoint(&endpoint.id, reason, now)
        .await
    {
        Ok(true) => {
            tracing::warn!(endpoint = %endpoint.id, tenant = %endpoint.tenant_id, reason, "webhook endpoint disabled");
            inner.metrics.endpoint_disabled();
            hooks.endpoints_changed();
            let event = Event {
                id: format!("endpoint.disabled/{}/{now}", endpoint.id),
                tenant_id: endpoint.tenant_id.clone(),
                event_type: "endpoint.disabled".into(),
                timestamp: rfc3339(now),
                data: serde_json::json!({
                    "endpoint_id": endpoint.id,
                    "url": endpoint.url,
                    "reason": reason,
                    "failing_since": endpoint.failing_since.map(rfc3339),
                }),
            };
            if let Err(e) = hooks.publish(&[event]).await {
                tracing::warn!(error = %e, "queueing the endpoint.disabled event failed");
            }
        }
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(endpoint = %endpoint.id, error = %e, "disabling the endpoint failed")
        }
    }
}

async fn write_outcomes(
    hooks: Webhooks,
    mut rx: mpsc::UnboundedReceiver<(OutcomeWrite, Arc<AtomicUsize>)>,
) {
    let inner = &hooks.inner;
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    let mut loads = Vec::with_capacity(WRITE_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first.0);
        loads.push(first.1);
        while batch.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok((o, l)) => {
                    batch.push(o);
                    loads.push(l);
                }
                Err(_) => break,
            }
        }
        let disable_before = now_ms() - inner.config.disable_after.as_millis() as i64;
        let mut backoff = Duration::from_millis(100);
        let failing = loop {
            match inner
                .store
                .record_outcomes(&batch, now_ms(), disable_before)
                .await
            {
                Ok(failing) => break failing,
                Err(e) => {
                    // Keep the outcomes: leases hold the rows meanwhile.
                    tracing::warn!(error = %e, outcomes = batch.len(), "writing webhook outcomes failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
        for load in loads.drain(..) {
            load.fetch_sub(1, Ordering::Relaxed);
        }
        batch.clear();
        if !failing.is_empty() {
            let days = inner.config.disable_after.as_secs_f64() / 86_400.0;
            for id in failing {
                if let Ok(Some(endpoint)) = inner.store.endpoint_by_id(&id).await {
                    let reason = format!("failing without a success for {days:.2} days");
                    disable(&hooks, &endpoint, &reason).await;
                }
            }
        }
        // Slots freed: the claimer may have skipped these endpoints.
        inner.wake.notify_one();
    }
}
