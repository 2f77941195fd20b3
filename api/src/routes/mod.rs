//! The HTTP operations, one module per resource. Each handler is annotated with
//! `#[utoipa::path]` and registered through `utoipa_axum::routes!`, so the served
//! OpenAPI document is generated from the very routes the router serves.

pub mod health;
pub mod keys;
pub mod messages;
pub mod scoring;
pub mod sql;
pub mod templates;
pub mod tenants;
pub mod usage;
pub mod webhooks;

pub(crate) use crate::time::{parse_time, rfc3339};

/// Patterns shared by the OpenAPI schema and the validation code, so what the
/// document promises is exactly what the server accepts.
pub mod patterns {
    pub const TENANT_ID: &str = "^[a-z0-9][a-z0-9-]{1,62}$";
    pub const REGION: &str = "^[a-z0-9][a-z0-9-]{0,31}$";
    pub const DOMAIN: &str =
        "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$";
    pub const COLOR: &str = "^#[0-9a-fA-F]{6}$";
    pub const URL: &str = "^https?://[^\\s<>\"]+$";
    pub const NO_ANGLE: &str = "^[^<>]*$";
    pub const PROVIDER: &str = "^[A-Za-z0-9_.-]{1,64}$";
    pub const SERVICE: &str = "^[a-zA-Z][a-zA-Z0-9_-]{0,63}$";
    /// language[-script][-region][-variant…], as `unic-langid` parses it.
    pub const LOCALE: &str = "^[a-zA-Z]{2,3}(-[a-zA-Z]{4})?(-[a-zA-Z]{2}|-[0-9]{3})?(-[a-zA-Z0-9]{5,8}|-[0-9][a-zA-Z0-9]{3})*$";
    pub const NAME: &str = "^\\S(.*\\S)?$";
    /// E.164.
    pub const PHONE: &str = "^\\+[1-9][0-9]{6,14}$";
    /// ISO 3166-1 alpha-2 (the stream checks it is assigned).
    pub const COUNTRY: &str = "^[A-Z]{2}$";

    /// Whole-string match of one of the patterns above (compiled once each).
    pub fn matches(pattern: &'static str, value: &str) -> bool {
        use std::collections::HashMap;
        use std::sync::{LazyLock, Mutex};
        static CACHE: LazyLock<Mutex<HashMap<&'static str, regex_lite::Regex>>> =
            LazyLock::new(Default::default);
        let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        let re = cache.entry(pattern).or_insert_with(|| {
            // The patterns are constants of this module, checked by its tests.
            regex_lite::Regex::new(pattern).expect("valid pattern")
        });
        re.is_match(value)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn patterns_accept_and_refuse() {
            assert!(matches(TENANT_ID, "acme-1"));
            assert!(!matches(TENANT_ID, "Acme"));
            assert!(!matches(TENANT_ID, "a"));
            assert!(matches(DOMAIN, "verify.acme.com"));
            assert!(!matches(DOMAIN, "Verify.acme.com"));
            assert!(!matches(DOMAIN, "localhost"));
            assert!(matches(COLOR, "#1a2B3c"));
            assert!(!matches(COLOR, "red"));
            assert!(matches(URL, "https://cdn.acme.com/logo.png"));
            assert!(!matches(URL, "javascript:alert(1)"));
            assert!(matches(LOCALE, "pt-BR"));
            assert!(!matches(LOCALE, "p"));
            assert!(matches(NAME, "Acme Inc"));
            assert!(!matches(NAME, " Acme"));
            assert!(matches(NO_ANGLE, "body { color: red }"));
            assert!(!matches(NO_ANGLE, "</style><script>"));
            assert!(matches(PHONE, "+5511987654321"));
            assert!(!matches(PHONE, "+0511987654"));
            assert!(!matches(PHONE, "+55 11 98765"));
            assert!(matches(COUNTRY, "BR"));
            assert!(!matches(COUNTRY, "br"));
        }
    }
}
