//! InfluxDB v2 write API sink: batched, gzipped line protocol over HTTP, retried
//! with backoff, bounded, and observable.
//!
//! Why not the `influxdb2` crate: it brings a second, older HTTP stack (reqwest
//! 0.11 / hyper 0.14) next to the one the project uses, and its write call hides
//! what this sink is about: which failures to retry, honouring `Retry-After`, and
//! telling the caller when to slow down. Line protocol is small (see
//! [`line_protocol`]); we write it ourselves over the project's reqwest.
//!
//! Guarantees: a point handed to [`InfluxSink::send`] stays queued until the
//! server accepts its batch (2xx), and is retried forever on connection errors,
//! 5xx and 429, with exponential backoff capped at `max_backoff`. A 4xx other than
//! 429 means the batch itself is wrong: it is dropped, loudly (error log and the
//! `rejected` counter), since retrying cannot help. Memory is bounded by the
//! caller: [`InfluxSink::pressure`] turns true once `buffer_points` are queued, and
//! the engine stops taking input until it clears (back-pressure, not loss). Writes
//! are idempotent: InfluxDB keeps one value per series and timestamp, so a retried
//! or re-emitted point overwrites itself.

pub mod line_protocol;

use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use line_protocol::{FieldValue, Point};
use serde::{Deserialize, Serialize};
use veriflow_common::config::{ConfigError, Validate, duration, ensure};

/// `[influx]`: where KPI, forecast and alert points go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InfluxConfig {
    /// Base URL, e.g. `http://127.0.0.1:8086`; `/api/v2/write` is appended.
    /// Empty: no InfluxDB, so no KPIs are computed.
    pub url: String,
    pub org: String,
    pub bucket: String,
    /// API token (`Authorization: Token …`); empty sends none.
    pub token: String,
    /// Points per HTTP request at most.
    pub batch_points: usize,
    /// Queued points at which [`InfluxSink::pressure`] turns true.
    pub buffer_points: usize,
    /// Per-request timeout.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Longest wait between retries.
    #[serde(with = "duration")]
    pub max_backoff: Duration,
}

impl Validate for InfluxConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let base = self.url.trim_end_matches('/');
        ensure(
            self.url.is_empty() || base.starts_with("http://") || base.starts_with("https://"),
            "url",
            format!(
                "{:?} must start with http:// or https:// (or be empty: no KPIs)",
                self.url
            ),
        )?;
        ensure(self.batch_points > 0, "batch_points", "must be positive")?;
        ensure(self.buffer_points > 0, "buffer_points", "must be positive")?;
        ensure(!self.timeout.is_zero(), "timeout", "must be positive")
    }
}

impl Default for InfluxConfig {
    fn default() -> Self {
        InfluxConfig {
            url: String::new(),
            org: "veriflow".into(),
            bucket: "veriflow".into(),
            token: String::new(),
            batch_points: 5000,
            buffer_points: 100_000,
            timeout: Duration::from_secs(10),
            max_backoff: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InfluxError {
    #[error("influx.url {url:?} must start with http:// or https://")]
    BadUrl { url: String },
    #[error("building the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("starting the InfluxDB writer thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Counters for /metrics and logs.
#[derive(Default)]
pub struct InfluxStats {
    pub written: AtomicU64,
    pub batches: AtomicU64,
    pub retries: AtomicU64,
    pub rejected: AtomicU64,
    /// True while the last attempt failed with a retryable error.
    pub down: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl InfluxStats {
    pub fn last_error(&self) -> Option<String> {
        lock(&self.last_error).clone()
    }
}

struct State {
    /// Points not yet accepted; the writer's current batch is at the front and
    /// leaves only once accepted (or rejected).
    queue: VecDeque<Point>,
    closing: bool,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    stats: InfluxStats,
    buffer_points: usize,
    /// `state.queue.len()`, mirrored after every change so the producer's
    /// per-record pressure check takes no lock.
    queued: AtomicUsize,
}

/// A cheap, lock-free view of the sink's backlog, for the engine's input loop.
#[derive(Clone)]
pub struct Backlog(Arc<Shared>);

impl Backlog {
    /// The queued points while they reach `buffer_points` (stop producing).
    pub fn pressing(&self) -> Option<usize> {
        let queued = self.0.queued.load(Ordering::Relaxed);
        (queued >= self.0.buffer_points).then_some(queued)
    }
}

pub struct InfluxSink {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    endpoint: String,
}

impl InfluxSink {
    pub fn start(config: InfluxConfig) -> Result<InfluxSink, InfluxError> {
        let base = config.url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(InfluxError::BadUrl {
                url: config.url.clone(),
            });
        }
        let endpoint = format!("{base}/api/v2/write");
        let client = reqwest::blocking::Client::builder()
            .timeout(config.timeout)
            .build()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                closing: false,
            }),
            changed: Condvar::new(),
            stats: InfluxStats::default(),
            buffer_points: config.buffer_points.max(1),
            queued: AtomicUsize::new(0),
        });
        let writer = Writer {
            shared: shared.clone(),
            client,
            endpoint: endpoint.clone(),
            config,
        };
        let thread = std::thread::Builder::new()
            .name("influx-writer".into())
            .spawn(move || writer.run())?;
        Ok(InfluxSink {
            shared,
            thread: Some(thread),
            endpoint,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Queues points; never blocks. Check [`pressure`](Self::pressure) to bound memory.
    pub fn send(&self, points: impl IntoIterator<Item = Point>) {
        let mut state = lock(&self.shared.state);
        let before = state.queue.len();
        state.queue.extend(points);
        if state.queue.len() != before {
            self.shared
                .queued
                .store(state.queue.len(), Ordering::Relaxed);
            self.shared.changed.notify_all();
        }
    }

    /// True while `buffer_points` or more are queued: stop producing.
    pub fn pressure(&self) -> bool {
        self.backlog().pressing().is_some()
    }

    pub fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::Relaxed)
    }

    /// A handle to watch the backlog without holding the sink.
    pub fn backlog(&self) -> Backlog {
        Backlog(self.shared.clone())
    }

    pub fn stats(&self) -> &InfluxStats {
        &self.shared.stats
    }

    /// Waits until everything queued so far is written (or rejected); false on
    /// timeout.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = lock(&self.shared.state);
        while !state.queue.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        true
    }

    /// Flushes (up to `timeout`) and stops the writer; false if points were left.
    pub fn close(&mut self, timeout: Duration) -> bool {
        let flushed = self.flush(timeout);
        let left = {
            let mut state = lock(&self.shared.state);
            state.closing = true;
            self.shared.changed.notify_all();
            state.queue.len()
        };
        if left > 0 {
            tracing::error!(
                points = left,
                endpoint = %self.endpoint,
                "stopping with points InfluxDB has not accepted; they are re-emitted \
                 from the last checkpoint on restart"
            );
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        flushed
    }
}

impl Drop for InfluxSink {
    fn drop(&mut self) {
        let mut state = lock(&self.shared.state);
        state.closing = true;
        self.shared.changed.notify_all();
    }
}

enum Attempt {
    Written,
    Retry {
        error: String,
        after: Option<Duration>,
    },
    Rejected {
        error: String,
    },
}

struct Writer {
    shared: Arc<Shared>,
    client: reqwest::blocking::Client,
    endpoint: String,
    config: InfluxConfig,
}

impl Writer {
    fn run(self) {
        let mut backoff = Duration::from_millis(100);
        let mut down_since: Option<Instant> = None;
        let mut last_report = Instant::now();
        loop {
            let batch: Vec<Point> = {
                let mut state = lock(&self.shared.state);
                while state.queue.is_empty() && !state.closing {
                    state = self
                        .shared
                        .changed
                        .wait(state)
                        .unwrap_or_else(|e| e.into_inner());
                }
                if state.queue.is_empty() || (state.closing && down_since.is_some()) {
                    return;
                }
                let n = state.queue.len().min(self.config.batch_points.max(1));
                state.queue.iter().take(n).cloned().collect()
            };
            let stats = &self.shared.stats;
            match self.write(&batch) {
                Attempt::Written => {
                    if let Some(since) = down_since.take() {
                        tracing::info!(
                            endpoint = %self.endpoint,
                            down_for = ?since.elapsed(),
                            "InfluxDB accepts writes again"
                        );
                    }
                    stats.down.store(false, Ordering::Relaxed);
                    stats
                        .written
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    stats.batches.fetch_add(1, Ordering::Relaxed);
                    backoff = Duration::from_millis(100);
                    self.done(batch.len());
                }
                Attempt::Rejected { error } => {
                    tracing::error!(
                        endpoint = %self.endpoint,
                        points = batch.len(),
                        %error,
                        "InfluxDB rejected a batch; it is dropped (retrying cannot fix it)"
                    );
                    *lock(&stats.last_error) = Some(error);
                    stats
                        .rejected
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    self.done(batch.len());
                }
                Attempt::Retry { error, after } => {
                    stats.retries.fetch_add(1, Ordering::Relaxed);
                    stats.down.store(true, Ordering::Relaxed);
                    let queued = lock(&self.shared.state).queue.len();
                    if down_since.is_none() || last_report.elapsed() >= Duration::from_secs(30) {
                        tracing::warn!(
                            endpoint = %self.endpoint,
                            %error,
                            queued,
                            buffer = self.shared.buffer_points,
                            "InfluxDB write failed; retrying with backoff (points stay queued)"
                        );
                        last_report = Instant::now();
                    }
                    down_since.get_or_insert_with(Instant::now);
                    *lock(&stats.last_error) = Some(error);
                    let wait = after.unwrap_or(backoff).min(self.config.max_backoff);
                    backoff = (backoff * 2).min(self.config.max_backoff);
                    // Sleep, but wake for close.
                    let state = lock(&self.shared.state);
                    let _ = self
                        .shared
                        .changed
                        .wait_timeout_while(state, wait, |s| !s.closing);
                }
            }
        }
    }

    fn done(&self, n: usize) {
        let mut state = lock(&self.shared.state);
        let n = n.min(state.queue.len());
        state.queue.drain(..n);
        self.shared
            .queued
            .store(state.queue.len(), Ordering::Relaxed);
        self.shared.changed.notify_all();
    }

    fn write(&self, batch: &[Point]) -> Attempt {
        let mut text = String::with_capacity(batch.len() * 128);
        for p in batch {
            p.write_line(&mut text);
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let body = match gz.write_all(text.as_bytes()).and_then(|_| gz.finish()) {
            Ok(body) => body,
            Err(e) => {
                return Attempt::Retry {
                    error: format!("gzip: {e}"),
                    after: None,
                };
            }
        };
        let mut request = self
            .client
            .post(&self.endpoint)
            .query(&[
                ("org", self.config.org.as_str()),
                ("bucket", self.config.bucket.as_str()),
                ("precision", "ms"),
            ])
            .header("content-type", "text/plain; charset=utf-8")
            .header("content-encoding", "gzip")
            .body(body);
        if !self.config.token.is_empty() {
            request = request.header("authorization", format!("Token {}", self.config.token));
        }
        match request.send() {
            Err(e) => Attempt::Retry {
                error: format!("{e}"),
                after: None,
            },
            Ok(response) => {
                let status = response.status();
                if status.is_success() {
                    return Attempt::Written;
                }
                let after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let body = response.text().unwrap_or_default();
                let error = format!(
                    "HTTP {status}: {}",
                    body.chars().take(300).collect::<String>()
                );
                if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
                    Attempt::Retry { error, after }
                } else {
                    Attempt::Rejected { error }
                }
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
