//! Tenants' webhooks: fan-out of events to matching endpoints, a durable queue
//! in the API's database, and the delivery engine.
//!
//! ```text
//! publish(events) ──► match endpoints (type + filter) ──► webhook_messages
//!                                                          webhook_deliveries (pending)
//! engine: claim due rows (lease) ──► per-endpoint worker (rate limit, bounded
//!         concurrency, timeout) ──► signed POST ──► writer: attempt row + next state
//! ```
//!
//! Invariants:
//! - A message is in the database before `publish` returns; nothing is only in
//!   memory. A crash loses at most leases, which are released at the next start
//!   (same `instance_id`) or expire.
//! - One message id per event and tenant, derived from the event's own id, so
//!   publishing the same event twice queues it once, and every retry carries the
//!   same `webhook-id`.
//! - An endpoint's work never waits on another endpoint's: each has its own
//!   worker, in-flight limit and rate limiter, and the claimer skips endpoints
//!   whose in-memory queue is full.

pub mod catalog;
pub mod crypto;
mod engine;
pub mod filter;
pub mod metrics;
pub mod schedule;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use veriflow_common::config::{
    ConfigError, Validate, duration, duration_list, empty_as_none, ensure,
};
use veriflow_connectors::webhooks::client::{ClientConfig, WebhookClient};

pub use engine::EngineHandle;

use crate::store::{EndpointRow, FanOutProgress, NewMessage, Store, StoreError, now_ms};
use crate::usage::Usage;
use crypto::{CryptoError, SecretBox};
use filter::Filter;
use metrics::WebhookMetrics;
use schedule::RetrySchedule;

pub use catalog::EVENT_TYPES;

/// `[webhooks]`: delivery of events to tenants' endpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Run the delivery engine in this process (`veriflow api` and `veriflow run`).
    pub enabled: bool,
    /// `veriflow run` fans the pipeline's outcomes, alerts and fraud flags out
    /// to webhooks (needs the API: its database holds the queue).
    pub fan_out: bool,
    /// This instance's lease owner name; unique among instances sharing a
    /// database, stable across restarts (so a restart frees its own leases).
    /// Empty: the host name and `api.listen`.
    pub instance_id: String,
    /// Base64 of 32 bytes encrypting stored secrets; empty: `key_file` (created
    /// when missing).
    #[serde(with = "empty_as_none")]
    pub encryption_key: Option<String>,
    pub key_file: PathBuf,
    /// The wait after each failed attempt (Svix's schedule by default).
    #[serde(with = "duration_list")]
    pub retry_schedule: Vec<Duration>,
    /// 0.2 spreads each wait over ±20 %.
    pub retry_jitter: f64,
    #[serde(with = "duration")]
    pub timeout: Duration,
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
    /// Concurrent requests per endpoint.
    pub max_in_flight: usize,
    /// Deliveries an instance holds per endpoint (queued + in flight).
    pub queue_per_endpoint: usize,
    /// Rows claimed per query.
    pub claim_batch: usize,
    /// How often due deliveries are looked for when nothing wakes the engine.
    #[serde(with = "duration")]
    pub poll_interval: Duration,
    /// How long a claim holds; renewed while the instance lives.
    #[serde(with = "duration")]
    pub lease: Duration,
    /// An endpoint failing without a success for this long is disabled.
    #[serde(with = "duration")]
    pub disable_after: Duration,
    /// Networks reachable although not public (tests, internal deployments):
    /// CIDR networks or single addresses.
    #[serde(deserialize_with = "networks", serialize_with = "networks_text")]
    pub allow_networks: Vec<ipnet::IpNet>,
    pub https_only: bool,
    /// Default overlap of old and new secret after a rotation.
    #[serde(with = "duration")]
    pub rotation_overlap: Duration,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        let schedule = RetrySchedule::svix();
        WebhooksConfig {
            enabled: true,
            fan_out: true,
            instance_id: String::new(),
            encryption_key: None,
            key_file: PathBuf::from("var/webhooks.key"),
            retry_schedule: schedule.delays,
            retry_jitter: schedule.jitter,
            timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(5),
            max_in_flight: 32,
            queue_per_endpoint: 4000,
            claim_batch: 2000,
            poll_interval: Duration::from_millis(250),
            lease: Duration::from_secs(60),
            disable_after: Duration::from_secs(5 * 24 * 3600),
            allow_networks: Vec::new(),
            https_only: false,
            rotation_overlap: Duration::from_secs(24 * 3600),
        }
    }
}

impl WebhooksConfig {
    pub fn schedule(&self) -> RetrySchedule {
        RetrySchedule {
            delays: self.retry_schedule.clone(),
            jitter: self.retry_jitter,
        }
    }

    /// `instance_id`, or the host name and `listen` when it is empty.
    pub fn instance_id_for(&self, listen: Option<&str>) -> String {
        if self.instance_id.is_empty() {
            format!("{}/{}", default_instance_id(), listen.unwrap_or("off"))
        } else {
            self.instance_id.clone()
        }
    }
}

impl Validate for WebhooksConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        ensure(
            (0.0..1.0).contains(&self.retry_jitter),
            "retry_jitter",
            "must be in [0, 1)",
        )?;
        ensure(self.max_in_flight > 0, "max_in_flight", "must be positive")?;
        ensure(self.claim_batch > 0, "claim_batch", "must be positive")?;
        ensure(
            self.queue_per_endpoint > 0,
            "queue_per_endpoint",
            "must be positive",
        )?;
        ensure(
            self.lease >= Duration::from_secs(1),
            "lease",
            "must be at least 1s",
        )?;
        ensure(!self.timeout.is_zero(), "timeout", "must be positive")?;
        ensure(
            !self.poll_interval.is_zero(),
            "poll_interval",
            "must be positive",
        )?;
        if let Some(key) = &self.encryption_key {
            crypto::SecretBox::from_base64(key)
                .map_err(|e| ConfigError::new("encryption_key", e.to_string()))?;
        }
        Ok(())
    }
}

/// CIDR networks or single addresses (a /32 or /128), as a list or one
/// comma-separated string.
fn networks<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<ipnet::IpNet>, D::Error> {
    let items: Vec<String> = veriflow_common::config::string_list::deserialize(d)?;
    items
        .iter()
        .map(|n| {
            n.parse::<ipnet::IpNet>()
                .or_else(|_| n.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    serde::de::Error::custom(format!("{n:?} is not a CIDR network or an address"))
                })
        })
        .collect()
}

fn networks_text<S: serde::Serializer>(v: &[ipnet::IpNet], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|n| n.to_string()))
}

/// The host name: unique per machine, stable across restarts.
pub fn default_instance_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "veriflow".into())
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("the webhook HTTP client cannot start: {0}")]
    Client(String),
}

/// An event to fan out.
#[derive(Debug, Clone)]
pub struct Event {
    /// Stable identity of the event (an outcome id, an alert id): the message id
    /// derives from it.
    pub id: String,
    /// `*` goes to every tenant with a matching endpoint (platform-wide events
    /// such as a degraded route).
    pub tenant_id: String,
    pub event_type: String,
    /// RFC 3339.
    pub timestamp: String,
    pub data: Value,
}

/// The message id (`webhook-id`) of an event for a tenant.
pub fn message_id(event_id: &str, tenant: &str) -> String {
    let digest = Sha256::digest(format!("{event_id}\n{tenant}").as_bytes());
    let hex: String = digest[..13].iter().map(|b| format!("{b:02x}")).collect();
    format!("msg_{hex}")
}

/// The body sent, exactly: `{"type", "timestamp", "data"}`.
pub fn payload(event: &Event) -> String {
    serde_json::json!({
        "type": event.event_type,
        "timestamp": event.timestamp,
        "data": event.data,
    })
    .to_string()
}

struct CompiledEndpoint {
    id: String,
    event_types: Vec<String>,
    filter: Option<Filter>,
}

impl CompiledEndpoint {
    fn wants(&self, event: &Event) -> bool {
        (self.event_types.is_empty() || self.event_types.contains(&event.event_type))
            && self.filter.as_ref().is_none_or(|f| f.matches(&event.data))
    }
}

/// Enabled endpoints by tenant, reloaded after a change in this process or
/// when older than [`ROUTING_TTL`] (changes made by other instances).
#[derive(Default)]
struct Routing {
    loaded: Option<Instant>,
    /// [`Webhooks::generation`] when loaded.
    generation: u64,
    by_tenant: HashMap<String, Vec<CompiledEndpoint>>,
}

const ROUTING_TTL: Duration = Duration::from_secs(1);

/// The webhook service: publishing, secrets, and the engine's shared parts.
#[derive(Clone)]
pub struct Webhooks {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    config: WebhooksConfig,
    /// `config`'s retry schedule, built once.
    schedule: RetrySchedule,
    client: WebhookClient,
    secrets: SecretBox,
    wake: Notify,
    metrics: WebhookMetrics,
    usage: Arc<Usage>,
    routing: tokio::sync::Mutex<Routing>,
    /// Bumped when endpoints change in this process, so the fan-out routing and
    /// the delivery workers re-read them at once (other instances re-read
    /// within a second).
    generation: std::sync::atomic::AtomicU64,
}

impl Webhooks {
    pub fn new(
        store: Store,
        config: WebhooksConfig,
        usage: Arc<Usage>,
    ) -> Result<Webhooks, WebhookError> {
        let secrets = match &config.encryption_key {
            Some(key) => SecretBox::from_base64(key)?,
            None => SecretBox::from_key_file(&config.key_file)?,
        };
        let client = WebhookClient::new(&ClientConfig {
            timeout: config.timeout,
            connect_timeout: config.connect_timeout,
            allow_networks: config.allow_networks.clone(),
            https_only: config.https_only,
        })
        .map_err(|e| WebhookError::Client(e.to_string()))?;
        Ok(Webhooks {
            inner: Arc::new(Inner {
                store,
                schedule: config.schedule(),
                config,
                client,
                secrets,
                wake: Notify::new(),
                metrics: WebhookMetrics::default(),
                usage,
                routing: Default::default(),
                generation: Default::default(),
            }),
        })
    }

    pub fn config(&self) -> &WebhooksConfig {
        &self.inner.config
    }

    pub fn client(&self) -> &WebhookClient {
        &self.inner.client
    }

    pub fn secrets(&self) -> &SecretBox {
        &self.inner.secrets
    }

    pub fn metrics(&self) -> &WebhookMetrics {
        &self.inner.metrics
    }

    /// Endpoints changed: the next publish and delivery re-read them.
    pub fn endpoints_changed(&self) {
        self.inner
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::Release);
    }

    fn generation(&self) -> u64 {
        self.inner
            .generation
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Starts the delivery engine on the current tokio runtime.
    pub fn start_engine(&self) -> EngineHandle {
        engine::start(self.clone())
    }

    /// Fans events out to the endpoints that want them and queues the
    /// deliveries durably. Returns how many deliveries were queued (events
    /// published before add none).
    pub async fn publish(&self, events: &[Event]) -> Result<usize, WebhookError> {
        self.publish_with_progress(events, &[]).await
    }

    /// [`Webhooks::publish`], recording a fan-out consumer's read position in
    /// the same transaction.
    pub async fn publish_with_progress(
        &self,
        events: &[Event],
        progress: &[FanOutProgress],
    ) -> Result<usize, WebhookError> {
        let messages = {
            let mut routing = self.inner.routing.lock().await;
            // Read before loading: a change made meanwhile triggers another load.
            let generation = self.generation();
            if routing.generation != generation
                || routing.loaded.is_none_or(|at| at.elapsed() > ROUTING_TTL)
            {
                *routing = self.load_routing(generation).await?;
            }
            let mut messages = Vec::new();
            for event in events {
                let tenants: Vec<&String> = if event.tenant_id == "*" {
                    routing.by_tenant.keys().collect()
                } else {
                    vec![&event.tenant_id]
                };
                for tenant in tenants {
                    let endpoints: Vec<String> = routing
                        .by_tenant
                        .get(tenant)
                        .into_iter()
                        .flatten()
                        .filter(|e| e.wants(event))
                        .map(|e| e.id.clone())
                        .collect();
                    if endpoints.is_empty() {
                        continue;
                    }
                    messages.push(NewMessage {
                        id: message_id(&event.id, tenant),
                        tenant_id: tenant.clone(),
                        event_type: event.event_type.clone(),
                        payload: payload(event),
                        endpoints,
                    });
                }
            }
            messages
        };
        self.enqueue_with_progress(&messages, progress).await
    }

    /// Queues messages whose endpoints are already chosen (tests, operational
    /// events, the API's `test` call).
    pub async fn enqueue(&self, messages: &[NewMessage]) -> Result<usize, WebhookError> {
        self.enqueue_with_progress(messages, &[]).await
    }

    async fn enqueue_with_progress(
        &self,
        messages: &[NewMessage],
        progress: &[FanOutProgress],
    ) -> Result<usize, WebhookError> {
        if messages.is_empty() && progress.is_empty() {
            return Ok(0);
        }
        let queued = self
            .inner
            .store
            .enqueue(messages, now_ms(), progress)
            .await?;
        if queued > 0 {
            self.inner.wake.notify_one();
        }
        Ok(queued)
    }

    /// Where a fan-out consumer left off in `topic`, per partition.
    pub async fn fanout_offsets(
        &self,
        consumer: &str,
        topic: &str,
    ) -> Result<Vec<(i32, i64)>, WebhookError> {
        Ok(self.inner.store.fanout_offsets(consumer, topic).await?)
    }

    /// Wakes the engine (after a replay).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    async fn load_routing(&self, generation: u64) -> Result<Routing, WebhookError> {
        let mut by_tenant: HashMap<String, Vec<CompiledEndpoint>> = HashMap::new();
        for e in self.inner.store.enabled_endpoints().await? {
            let filter = match e.filter.as_deref().map(Filter::parse).transpose() {
                Ok(f) => f,
                Err(err) => {
                    // Validated when saved; a bad stored filter matches nothing.
                    tracing::error!(endpoint = %e.id, error = %err, "stored filter does not parse; endpoint skipped");
                    continue;
                }
            };
            by_tenant
                .entry(e.tenant_id.clone())
                .or_default()
                .push(CompiledEndpoint {
                    id: e.id,
                    event_types: e.event_types,
                    filter,
                });
        }
        Ok(Routing {
            loaded: Some(Instant::now()),
            generation,
            by_tenant,
        })
    }

    /// The secrets to sign with now: the current one, plus the previous one
    /// during a rotation's overlap.
    pub fn signing_secrets(
        &self,
        endpoint: &EndpointRow,
        now: i64,
    ) -> Result<Vec<veriflow_connectors::webhooks::signature::Secret>, WebhookError> {
        use veriflow_connectors::webhooks::signature::Secret;
        let mut out = Vec::with_capacity(2);
        let open = |stored: &str| -> Result<Secret, WebhookError> {
            let text = self.inner.secrets.open(&endpoint.id, stored)?;
            Secret::parse(&text).map_err(|_| WebhookError::Crypto(CryptoError::Undecryptable))
        };
        out.push(open(&endpoint.secret)?);
        if let (Some(previous), Some(until)) =
            (&endpoint.previous_secret, endpoint.previous_secret_until)
            && until > now
        {
            out.push(open(previous)?);
        }
        Ok(out)
    }
}
