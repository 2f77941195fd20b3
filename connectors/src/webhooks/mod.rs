//! Webhook delivery building blocks: Standard Webhooks signatures
//! ([`signature`]) and the SSRF-guarded HTTP client that sends one attempt
//! ([`client`]). Queueing, retries and fan-out live with the endpoints they
//! serve, in `veriflow-api`'s `webhooks` module.

pub mod client;
pub mod signature;
pub mod special;
