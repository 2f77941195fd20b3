//! API key format, generation and verification.
//!
//! A key reads `vf_<id>_<secret>`: the id (12 hex digits) finds the stored record
//! without scanning, the secret (32 random bytes, base64url) is checked against its
//! stored SHA-256. A fast hash is right here: the secret has 256 bits of entropy, so
//! there is nothing for a slow password hash to protect; comparisons are constant
//! time.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const PREFIX: &str = "vf_";
const ID_BYTES: usize = 6;
const SECRET_BYTES: usize = 32;

/// A freshly generated key: shown once, then only its hash is kept.
pub struct NewKey {
    pub id: String,
    pub token: String,
    pub secret_hash: String,
}

/// Random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The OS generator failing means the machine cannot produce secrets at all.
    getrandom::fill(&mut bytes).expect("the operating system's random generator failed");
    bytes
}

pub fn generate() -> NewKey {
    let id = hex(&random_bytes::<ID_BYTES>());
    let secret = URL_SAFE_NO_PAD.encode(random_bytes::<SECRET_BYTES>());
    NewKey {
        token: format!("{PREFIX}{id}_{secret}"),
        secret_hash: hash_secret(&secret),
        id,
    }
}

/// Splits a presented token into (id, secret); `None` if it is not shaped like a key.
pub fn parse(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let id_ok = id.len() == ID_BYTES * 2 && id.bytes().all(|b| b.is_ascii_hexdigit());
    (id_ok && !secret.is_empty()).then_some((id, secret))
}

pub fn hash_secret(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// Constant-time check of a presented secret against a stored hash.
pub fn verify(secret: &str, stored_hash: &str) -> bool {
    hash_secret(secret)
        .as_bytes()
        .ct_eq(stored_hash.as_bytes())
        .into()
}

/// Constant-time equality of two tokens (the operator token), hashed first so the
/// comparison does not leak the length either.
pub fn tokens_equal(presented: &str, expected: &str) -> bool {
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.ct_eq(&b).into()
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_verify() {
        let key = generate();
        let (id, secret) = parse(&key.token).expect("parses");
        assert_eq!(id, key.id);
        assert!(verify(secret, &key.secret_hash));
        assert!(!verify("other", &key.secret_hash));
        assert_ne!(generate().token, key.token);
    }

    #[test]
    fn malformed_tokens_do_not_parse() {
        for bad in [
            "",
            "vf_",
            "vf_abc_def",
            "xx_0123456789ab_s",
            "vf_0123456789ab_",
            "vf_0123456789zz_s",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn token_comparison() {
        assert!(tokens_equal("abc", "abc"));
        assert!(!tokens_equal("abc", "abd"));
        assert!(!tokens_equal("abc", "abcd"));
    }
}
