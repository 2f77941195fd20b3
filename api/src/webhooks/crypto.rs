//! Signing secrets at rest: encrypted, since signing needs them back.
//!
//! XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`) with a random 24-byte
//! nonce per value and the endpoint id as associated data, so a ciphertext
//! copied onto another endpoint's row does not decrypt. Stored form:
//! `v1:` + base64(nonce ‖ ciphertext). The 32-byte key comes from
//! `webhooks.encryption_key`, or from a key file created on first start; every
//! instance sharing a database needs the same key.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

const VERSION: &str = "v1:";
const NONCE_BYTES: usize = 24;
pub const KEY_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("webhooks.encryption_key must be base64 of {KEY_BYTES} bytes")]
    BadKey,
    #[error("reading or creating the key file {path}: {source}")]
    KeyFile {
        path: String,
        source: std::io::Error,
    },
    #[error("a stored webhook secret cannot be decrypted (wrong webhooks.encryption_key?)")]
    Undecryptable,
}

#[derive(Clone)]
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(…)")
    }
}

impl SecretBox {
    pub fn from_base64(key: &str) -> Result<SecretBox, CryptoError> {
        let bytes = STANDARD
            .decode(key.trim())
            .map_err(|_| CryptoError::BadKey)?;
        Self::from_bytes(&bytes)
    }

    fn from_bytes(bytes: &[u8]) -> Result<SecretBox, CryptoError> {
        if bytes.len() != KEY_BYTES {
            return Err(CryptoError::BadKey);
        }
        let cipher = XChaCha20Poly1305::new_from_slice(bytes).map_err(|_| CryptoError::BadKey)?;
        Ok(SecretBox { cipher })
    }

    /// Reads the key file, creating it (mode 0600) with a random key if missing.
    pub fn from_key_file(path: &Path) -> Result<SecretBox, CryptoError> {
        let error = |source| CryptoError::KeyFile {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_base64(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent()
                    && !dir.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(dir).map_err(error)?;
                }
                let mut key = [0u8; KEY_BYTES];
                getrandom::fill(&mut key).map_err(|e| error(std::io::Error::other(e)))?;
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                use std::io::Write;
                let mut file = options.open(path).map_err(error)?;
                file.write_all(STANDARD.encode(key).as_bytes())
                    .map_err(error)?;
                Self::from_bytes(&key)
            }
            Err(e) => Err(error(e)),
        }
    }

    pub fn seal(&self, context: &str, plaintext: &str) -> String {
        let mut nonce = [0u8; NONCE_BYTES];
        // The OS generator failing means the machine cannot produce secrets at all.
        getrandom::fill(&mut nonce).expect("the operating system's random generator failed");
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            // Encryption fails only for inputs over 256 GiB.
            .expect("encrypting a short secret");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{VERSION}{}", STANDARD.encode(out))
    }

    pub fn open(&self, context: &str, stored: &str) -> Result<String, CryptoError> {
        let bytes = stored
            .strip_prefix(VERSION)
            .and_then(|b64| STANDARD.decode(b64).ok())
            .filter(|b| b.len() > NONCE_BYTES)
            .ok_or(CryptoError::Undecryptable)?;
        let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Undecryptable)?;
        String::from_utf8(plain).map_err(|_| CryptoError::Undecryptable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_context() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/webhooks.key");
        let a = SecretBox::from_key_file(&path).unwrap();
        let again = SecretBox::from_key_file(&path).unwrap();
        let sealed = a.seal("ep_1", "whsec_abc");
        assert!(!sealed.contains("whsec_abc"));
        assert_ne!(sealed, a.seal("ep_1", "whsec_abc"), "fresh nonce each time");
        assert_eq!(again.open("ep_1", &sealed).unwrap(), "whsec_abc");
        assert!(a.open("ep_2", &sealed).is_err(), "bound to its endpoint");
        let other = SecretBox::from_base64(&STANDARD.encode([7u8; KEY_BYTES])).unwrap();
        assert!(other.open("ep_1", &sealed).is_err());
        assert!(SecretBox::from_base64("c2hvcnQ=").is_err());
    }
}
