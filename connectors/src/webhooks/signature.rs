//! Standard Webhooks v1 signatures (the scheme Svix uses), so receivers can verify
//! deliveries with the stock `standardwebhooks` or `svix` libraries unchanged.
//!
//! Secret: `whsec_` + base64 of random bytes; the HMAC key is the decoded bytes.
//! Signed content: `{webhook-id}.{webhook-timestamp}.{body}`; the
//! `webhook-signature` header is `v1,` + base64(HMAC-SHA256). During a secret
//! rotation the header carries one signature per active secret, separated by
//! spaces; a receiver accepts the message if any matches. Comparisons are
//! constant time.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

const PREFIX: &str = "whsec_";
/// Svix generates 24-byte secrets; 32 gives the full strength of SHA-256.
const SECRET_BYTES: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("a webhook secret must start with `whsec_` followed by base64")]
    BadSecret,
    #[error("no signature matches")]
    Mismatch,
}

/// A signing secret (the decoded key). Its `Debug` never shows the key.
#[derive(Clone)]
pub struct Secret {
    key: Vec<u8>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(whsec_…)")
    }
}

impl Secret {
    /// A new random secret from the operating system.
    pub fn generate() -> Secret {
        let mut key = vec![0u8; SECRET_BYTES];
        // The OS generator failing means the machine cannot produce secrets at all.
        getrandom::fill(&mut key).expect("the operating system's random generator failed");
        Secret { key }
    }

    /// Parses `whsec_<base64>`.
    pub fn parse(text: &str) -> Result<Secret, SignatureError> {
        let b64 = text.strip_prefix(PREFIX).ok_or(SignatureError::BadSecret)?;
        let key = STANDARD
            .decode(b64)
            .map_err(|_| SignatureError::BadSecret)?;
        if key.is_empty() {
            return Err(SignatureError::BadSecret);
        }
        Ok(Secret { key })
    }

    /// The `whsec_…` form, shown to the tenant once.
    pub fn expose(&self) -> String {
        format!("{PREFIX}{}", STANDARD.encode(&self.key))
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
        // HMAC accepts keys of any length.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize().into_bytes().to_vec()
    }

    /// `v1,<base64>` for one message.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        format!("v1,{}", STANDARD.encode(self.mac(id, timestamp, body)))
    }
}

/// The `webhook-signature` header for every active secret (rotation overlap).
pub fn signature_header(secrets: &[Secret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| s.sign(id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Checks a `webhook-signature` header against one secret, in constant time per
/// candidate. (Receivers use their own library; this is for our tests and tools.)
pub fn verify(
    secret: &Secret,
    id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
) -> Result<(), SignatureError> {
    let expected = secret.mac(id, timestamp, body);
    let matched = header
        .split(' ')
        .filter_map(|sig| sig.strip_prefix("v1,"))
        .filter_map(|b64| STANDARD.decode(b64).ok())
        .fold(false, |any, candidate| {
            any | bool::from(candidate.ct_eq(&expected))
        });
    if matched {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_standard_webhooks_reference_vector() {
        // From the Standard Webhooks specification's test vectors.
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = secret.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn rotation_headers_verify_with_either_secret() {
        let (old, new) = (Secret::generate(), Secret::generate());
        let header = signature_header(&[old.clone(), new.clone()], "msg_1", 1, b"{}");
        assert!(verify(&old, "msg_1", 1, b"{}", &header).is_ok());
        assert!(verify(&new, "msg_1", 1, b"{}", &header).is_ok());
        assert_eq!(
            verify(&Secret::generate(), "msg_1", 1, b"{}", &header),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&old, "msg_1", 2, b"{}", &header),
            Err(SignatureError::Mismatch)
        );
        assert!(
            format!("{old:?}").contains('…') && !format!("{old:?}").contains(&old.expose()[6..])
        );
        assert_eq!(
            Secret::parse("nope").unwrap_err(),
            SignatureError::BadSecret
        );
        assert_eq!(Secret::parse(&old.expose()).unwrap().expose(), old.expose());
    }
}
