//! Sending one signed webhook request to a tenant's URL, safely.
//!
//! The URL comes from a tenant, so the client must not become a way into our own
//! network (SSRF). Every address is checked *at connect time*, after DNS: the
//! resolver handed to reqwest drops non-global addresses, so a name that
//! resolves to `10.0.0.5` (or re-binds to it after being checked once) is never
//! connected to. IP-literal URLs skip DNS in reqwest, so they are checked before
//! the request is built. Redirects are not followed (a 3xx is just a failed
//! attempt) and proxies from the environment are ignored, because either would
//! take the request somewhere the check did not see. An allow-list of networks
//! opens chosen private ranges for tests and internal deployments.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::signature::{Secret, signature_header};

/// Bytes of a response body kept for the attempts log.
pub const RESPONSE_EXCERPT_BYTES: usize = 1024;
/// Bytes of a response body read at most (to keep the connection reusable).
const RESPONSE_READ_LIMIT: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Per-attempt limit, connection included.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Networks that may be reached although not global (e.g. `127.0.0.0/8`).
    pub allow_networks: Vec<IpNet>,
    /// Refuse `http://` URLs.
    pub https_only: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(5),
            allow_networks: Vec::new(),
            https_only: false,
        }
    }
}

/// Why a request was not sent or got no HTTP answer.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SendError {
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    #[error("blocked: {0}")]
    Blocked(String),
    #[error("timed out")]
    Timeout,
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("request failed: {0}")]
    Other(String),
}

/// What the receiver answered.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// `Retry-After`, when sent: delta-seconds, or an HTTP-date as the wait
    /// from now (RFC 9110 §10.2.3).
    pub retry_after: Option<Duration>,
    /// The first [`RESPONSE_EXCERPT_BYTES`] of the body, lossily decoded.
    pub excerpt: String,
}

/// The outcome of one attempt, with its duration.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub result: Result<Answer, SendError>,
    pub latency: Duration,
}

/// One webhook message to send to one endpoint.
pub struct Outgoing<'a> {
    pub url: &'a str,
    pub id: &'a str,
    /// Unix seconds, signed along with the body.
    pub timestamp: i64,
    pub body: &'a [u8],
    /// The active secrets (two during a rotation): one signature each.
    pub secrets: &'a [Secret],
    /// The endpoint's own headers; never the `webhook-*` ones (validated upstream).
    pub headers: &'a [(String, String)],
}

/// Which addresses may be connected to.
#[derive(Debug, Clone, Default)]
pub struct AddressGuard {
    allow: Vec<IpNet>,
}

impl AddressGuard {
    pub fn new(allow: Vec<IpNet>) -> AddressGuard {
        AddressGuard { allow }
    }

    pub fn check(&self, ip: IpAddr) -> Result<(), SendError> {
        if is_global(ip) || self.allow.iter().any(|net| net.contains(&ip)) {
            Ok(())
        } else {
            Err(SendError::Blocked(format!(
                "{ip} is not a public address (allow it with webhooks.allow_networks)"
            )))
        }
    }

    /// Checks a URL's host when it is an IP literal or `localhost`, which needs
    /// no DNS to be known private. Other names are checked after resolution.
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), SendError> {
        self.check_literal(url)?;
        let host = url.host_str().unwrap_or_default();
        if host.eq_ignore_ascii_case("localhost") || host.ends_with(".localhost") {
            return self.check(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        Ok(())
    }

    /// Checks an IP-literal host, which reqwest connects to without asking the
    /// resolver.
    fn check_literal(&self, url: &reqwest::Url) -> Result<(), SendError> {
        let host = url
            .host_str()
            .ok_or_else(|| SendError::InvalidUrl("the URL has no host".into()))?;
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        match literal.parse::<IpAddr>() {
            Ok(ip) => self.check(ip),
            Err(_) => Ok(()),
        }
    }
}

pub use super::special::is_global;

/// reqwest's resolver hook: system DNS, then only addresses the guard allows.
struct GuardedResolver {
    guard: Arc<AddressGuard>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.guard.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed = screen(&host, resolved, &guard)?;
            let addrs: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// What DNS answered for `host`, with every address the guard refuses
/// taken out; an error naming the refusal when nothing is left.
fn screen(
    host: &str,
    resolved: Vec<SocketAddr>,
    guard: &AddressGuard,
) -> Result<Vec<SocketAddr>, String> {
    let mut refused = None;
    let allowed: Vec<SocketAddr> = resolved
        .into_iter()
        .filter(|addr| match guard.check(addr.ip()) {
            Ok(()) => true,
            Err(e) => {
                refused.get_or_insert(e);
                false
            }
        })
        .collect();
    if allowed.is_empty() {
        return Err(match refused {
            Some(e) => format!("{host} resolves to a refused address: {e}"),
            None => format!("{host} has no address"),
        });
    }
    Ok(allowed)
}

/// Sends webhook requests: one connection pool for all endpoints.
#[derive(Clone)]
pub struct WebhookClient {
    http: reqwest::Client,
    guard: Arc<AddressGuard>,
    https_only: bool,
}

impl WebhookClient {
    pub fn new(config: &ClientConfig) -> Result<WebhookClient, SendError> {
        let guard = Arc::new(AddressGuard::new(config.allow_networks.clone()));
        let http = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver {
                guard: guard.clone(),
            }))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .https_only(config.https_only)
            .user_agent(concat!("veriflow-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SendError::Other(e.to_string()))?;
        Ok(WebhookClient {
            http,
            guard,
            https_only: config.https_only,
        })
    }

    /// Checks what can be checked without sending: syntax, scheme, literal
    /// addresses. For validating an endpoint when it is created.
    pub fn check_url(&self, url: &str) -> Result<reqwest::Url, SendError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| SendError::InvalidUrl(e.to_string()))?;
        match parsed.scheme() {
            "https" => {}
            "http" if !self.https_only => {}
            "http" => {
                return Err(SendError::InvalidUrl(
                    "only https:// URLs are accepted (webhooks.https_only)".into(),
                ));
            }
            other => {
                return Err(SendError::InvalidUrl(format!(
                    "scheme {other}: is not http or https"
                )));
            }
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(SendError::InvalidUrl(
                "credentials in the URL are not accepted; use custom headers".into(),
            ));
        }
        self.guard.check_url(&parsed)?;
        Ok(parsed)
    }

    /// One attempt: POST, signed with every secret given.
    pub async fn send(&self, out: &Outgoing<'_>) -> Attempt {
        let start = Instant::now();
        let result = self.try_send(out).await;
        Attempt {
            result,
            latency: start.elapsed(),
        }
    }

    async fn try_send(&self, out: &Outgoing<'_>) -> Result<Answer, SendError> {
        let url = reqwest::Url::parse(out.url).map_err(|e| SendError::InvalidUrl(e.to_string()))?;
        // Names (`localhost` included) are checked by the resolver, at connect time.
        self.guard.check_literal(&url)?;
        let mut headers = HeaderMap::with_capacity(out.headers.len() + 4);
        for (name, value) in out.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.insert(name, value);
            }
        }
        let signature = signature_header(out.secrets, out.id, out.timestamp, out.body);
        let fixed = [
            ("content-type", "application/json".to_string()),
            ("webhook-id", out.id.to_string()),
            ("webhook-timestamp", out.timestamp.to_string()),
            ("webhook-signature", signature),
        ];
        for (name, value) in fixed {
            let value =
                HeaderValue::from_str(&value).map_err(|e| SendError::Other(e.to_string()))?;
            headers.insert(name, value);
        }
        let response = self
            .http
            .post(url)
            .headers(headers)
            .body(out.body.to_vec())
            .send()
            .await
            .map_err(classify)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry_after(v, std::time::SystemTime::now()));
        let mut response = response;
        let mut body = Vec::new();
        // A body that fails half-way still leaves the status, which decides.
        while body.len() < RESPONSE_READ_LIMIT {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                _ => break,
            }
        }
        body.truncate(RESPONSE_EXCERPT_BYTES);
        Ok(Answer {
            status,
            retry_after,
            excerpt: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

fn classify(e: reqwest::Error) -> SendError {
    if e.is_timeout() {
        return SendError::Timeout;
    }
    // The resolver's refusal surfaces as a connect error; keep its words.
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text = s.to_string();
        source = s.source();
    }
    if text.contains("refused address") {
        return SendError::Blocked(text);
    }
    if e.is_connect() {
        SendError::Connect(text)
    } else {
        SendError::Other(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn non_global_addresses_are_recognised() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "2001:db8::1",
            // IPv4-mapped: "not globally reachable" in the IANA registry.
            "::ffff:1.1.1.1",
        ] {
            assert!(!is_global(ip(private)), "{private} must not be global");
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
        ] {
            assert!(is_global(ip(public)), "{public} is global");
        }
    }

    /// The same verdicts after DNS: a name that resolves into any entry
    /// that is not globally reachable is refused, one that also has a
    /// public address keeps only that one.
    #[test]
    fn resolved_addresses_are_screened_entry_by_entry() {
        use super::super::special::{IPV4_REGISTRY, IPV6_REGISTRY};
        let guard = AddressGuard::new(Vec::new());
        let public: SocketAddr = "8.8.8.8:0".parse().unwrap();
        for (net, global, what) in IPV4_REGISTRY.iter().chain(IPV6_REGISTRY) {
            let net: ipnet::IpNet = net.parse().unwrap();
            let addr = SocketAddr::new(net.network(), 0);
            if super::super::special::is_global(addr.ip()) != *global {
                continue; // decided by a more specific entry
            }
            let alone = screen("evil.example", vec![addr], &guard);
            assert_eq!(alone.is_ok(), *global, "{what} {addr}: {alone:?}");
            let mixed = screen("mixed.example", vec![addr, public], &guard).unwrap();
            assert_eq!(mixed.contains(&addr), *global, "{what}");
            assert!(mixed.contains(&public));
        }
    }

    #[tokio::test]
    async fn names_resolve_before_the_check() {
        // The system resolver's loopback name, through the real resolver hook.
        let resolver = GuardedResolver {
            guard: Arc::new(AddressGuard::new(Vec::new())),
        };
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        let err = reqwest::dns::Resolve::resolve(&resolver, name)
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("refused address"), "{err}");
    }

    #[test]
    fn the_allow_list_opens_chosen_networks_only() {
        let guard = AddressGuard::new(vec!["127.0.0.0/8".parse().unwrap()]);
        assert!(guard.check(ip("127.0.0.1")).is_ok());
        assert!(guard.check(ip("10.0.0.1")).is_err());
        assert!(AddressGuard::default().check(ip("127.0.0.1")).is_err());
    }

    #[test]
    fn literal_and_localhost_urls_are_refused_before_sending() {
        let client = WebhookClient::new(&ClientConfig::default()).unwrap();
        for url in [
            "http://127.0.0.1:8080/hook",
            "http://[::1]/hook",
            "http://localhost/hook",
            "https://169.254.169.254/latest/meta-data",
        ] {
            assert!(
                matches!(client.check_url(url), Err(SendError::Blocked(_))),
                "{url} must be blocked"
            );
        }
        assert!(client.check_url("https://hooks.example.com/x").is_ok());
        assert!(matches!(
            client.check_url("ftp://example.com/"),
            Err(SendError::InvalidUrl(_))
        ));
        assert!(matches!(
            client.check_url("https://user:pw@example.com/"),
            Err(SendError::InvalidUrl(_))
        ));
        let strict = WebhookClient::new(&ClientConfig {
            https_only: true,
            ..ClientConfig::default()
        })
        .unwrap();
        assert!(strict.check_url("http://example.com/").is_err());
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_at_connect_time() {
        // Sending checks only IP literals up front: the refusal of a name must
        // come from the resolver, after DNS.
        let client = WebhookClient::new(&ClientConfig::default()).unwrap();
        let secrets = [Secret::generate()];
        let attempt = client
            .send(&Outgoing {
                url: "http://localhost:9/hook",
                id: "msg_1",
                timestamp: 0,
                body: b"{}",
                secrets: &secrets,
                headers: &[],
            })
            .await;
        match attempt.result {
            Err(SendError::Blocked(reason)) => {
                assert!(reason.contains("is not a public address"), "{reason}")
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
}

/// A `Retry-After` value as a wait from `now`: delta-seconds (`120`) or an
/// HTTP-date (`Wed, 21 Oct 2026 07:28:00 GMT`, and the obsolete forms
/// `httpdate` reads); a date in the past is no wait. `None` when it is
/// neither.
pub fn retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod retry_after_tests {
    use super::*;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    #[test]
    fn both_forms_are_read() {
        let now = UNIX_EPOCH + Duration::from_secs(1_792_567_680); // 2026-10-21T07:28:00Z
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            retry_after("Wed, 21 Oct 2026 07:30:00 GMT", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            retry_after("Wednesday, 21-Oct-26 07:29:00 GMT", now),
            Some(Duration::from_secs(60)),
            "RFC 850 form"
        );
        assert_eq!(
            retry_after("Wed Oct 21 07:28:30 2026", now),
            Some(Duration::from_secs(30)),
            "asctime"
        );
        assert_eq!(
            retry_after("Tue, 20 Oct 2026 07:28:00 GMT", now),
            Some(Duration::ZERO),
            "past"
        );
        assert_eq!(retry_after("-5", now), None);
        assert_eq!(retry_after("soon", now), None);
        let _ = SystemTime::now();
    }
}
