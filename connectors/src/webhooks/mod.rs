//! Webhook delivery building blocks. So far: Standard Webhooks signatures
//! ([`signature`]); the durable delivery engine arrives with its issue.

pub mod signature;
