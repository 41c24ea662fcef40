//! Secrets at rest: envelope encryption under a key the operator provides.
//!
//! A tenant's storage access keys must be kept in the catalog, but a copy of the database (a
//! backup of it, a replica, a support dump) must not reveal them. Each secret is encrypted with a
//! fresh data key (AES-256-GCM), and the data key is encrypted ("wrapped") with the operator's
//! [`EnvelopeKey`]. The sealed text carries the key's fingerprint, so opening with another key
//! fails with a message that says which key is needed, and it is bound to a context string (e.g.
//! `storage:42:secret_access_key`), so a sealed value copied onto another row does not open.
//!
//! Format: `v1.{fingerprint}.{wrapped data key}.{ciphertext}`, each binary field base64 (URL
//! alphabet, unpadded) of `nonce || ciphertext-with-tag`. Pure computation; the randomness comes
//! from the operating system.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

const VERSION: &str = "v1";
const NONCE_LEN: usize = 12;

/// Why a secret could not be sealed or opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    /// The operator's key is not 32 bytes of base64.
    #[error(
        "the envelope key must be 32 random bytes in base64 (e.g. `head -c 32 /dev/urandom | base64`): {0}"
    )]
    BadKey(String),
    /// The sealed text is not in the expected format.
    #[error("the sealed secret is malformed ({0}); it was not written by this version of Coffer")]
    Malformed(&'static str),
    /// The secret was sealed under another envelope key.
    #[error(
        "the secret was sealed with envelope key {sealed_with}, but the configured key is {configured}: configure the key it was sealed with, or set the secret again"
    )]
    WrongKey {
        /// Fingerprint of the key the secret was sealed with.
        sealed_with: String,
        /// Fingerprint of the configured key.
        configured: String,
    },
    /// Authentication failed: the data was altered, or it belongs to another context.
    #[error(
        "the sealed secret does not open: it was altered or belongs to another record (context {0:?})"
    )]
    Tampered(String),
}

/// The operator's key-encryption key. `Debug` shows only its fingerprint.
#[derive(Clone)]
pub struct EnvelopeKey {
    cipher: Aes256Gcm,
    fingerprint: String,
}

impl std::fmt::Debug for EnvelopeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvelopeKey")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl EnvelopeKey {
    /// A key from 32 bytes in base64 (standard or URL alphabet; surrounding whitespace ignored).
    pub fn from_base64(text: &SecretString) -> Result<Self, SealError> {
        let trimmed = text.expose_secret().trim();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(trimmed)
            .or_else(|_| URL_SAFE_NO_PAD.decode(trimmed.trim_end_matches('=')))
            .map_err(|e| SealError::BadKey(e.to_string()))?;
        if bytes.len() != 32 {
            return Err(SealError::BadKey(format!(
                "it decodes to {} bytes",
                bytes.len()
            )));
        }
        Self::from_bytes(&bytes)
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, SealError> {
        let fingerprint = hex::encode(&Sha256::digest(bytes)[..8]);
        let cipher =
            Aes256Gcm::new_from_slice(bytes).map_err(|e| SealError::BadKey(e.to_string()))?;
        Ok(EnvelopeKey {
            cipher,
            fingerprint,
        })
    }

    /// A short, non-secret identifier of the key (first 8 bytes of its SHA-256, hex).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Encrypts `secret` for the record named by `context`.
    pub fn seal(&self, secret: &SecretString, context: &str) -> String {
        let data_key = Aes256Gcm::generate_key(OsRng);
        let wrapped = encrypt(&self.cipher, &data_key[..], context);
        let sealed = encrypt(
            &Aes256Gcm::new(&data_key),
            secret.expose_secret().as_bytes(),
            context,
        );
        format!(
            "{VERSION}.{}.{}.{}",
            self.fingerprint,
            URL_SAFE_NO_PAD.encode(wrapped),
            URL_SAFE_NO_PAD.encode(sealed)
        )
    }

    /// Decrypts what [`EnvelopeKey::seal`] produced for the same `context`.
    pub fn open(&self, sealed: &str, context: &str) -> Result<SecretString, SealError> {
        let mut fields = sealed.split('.');
        let (Some(VERSION), Some(fingerprint), Some(wrapped), Some(body), None) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            return Err(SealError::Malformed(
                "expected v1.<key>.<data key>.<secret>",
            ));
        };
        if fingerprint != self.fingerprint {
            return Err(SealError::WrongKey {
                sealed_with: fingerprint.to_owned(),
                configured: self.fingerprint.clone(),
            });
        }
        let tampered = || SealError::Tampered(context.to_owned());
        let wrapped = URL_SAFE_NO_PAD
            .decode(wrapped)
            .map_err(|_| SealError::Malformed("data key is not base64"))?;
        let body = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| SealError::Malformed("secret is not base64"))?;
        let data_key = decrypt(&self.cipher, &wrapped, context).ok_or_else(tampered)?;
        let cipher = Aes256Gcm::new_from_slice(&data_key).map_err(|_| tampered())?;
        let plain = decrypt(&cipher, &body, context).ok_or_else(tampered)?;
        String::from_utf8(plain)
            .map(SecretString::from)
            .map_err(|_| tampered())
    }
}

/// `nonce || AES-GCM(plain)` with `context` as associated data.
fn encrypt(cipher: &Aes256Gcm, plain: &[u8], context: &str) -> Vec<u8> {
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let payload = Payload {
        msg: plain,
        aad: context.as_bytes(),
    };
    // Encryption with a valid key and nonce cannot fail for inputs this small.
    let sealed = cipher.encrypt(&nonce, payload).unwrap_or_default();
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    out
}

fn decrypt(cipher: &Aes256Gcm, data: &[u8], context: &str) -> Option<Vec<u8>> {
    if data.len() < NONCE_LEN {
        return None;
    }
    let (nonce, body) = data.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
    let payload = Payload {
        msg: body,
        aad: context.as_bytes(),
    };
    cipher.decrypt(&Nonce::from(nonce), payload).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(byte: u8) -> EnvelopeKey {
        EnvelopeKey::from_bytes(&[byte; 32]).unwrap()
    }

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[test]
    fn a_sealed_secret_opens_with_its_key_and_context_only() {
        let k = key(7);
        let sealed = k.seal(&secret("wJalrXUtnFEMI/K7MDENG"), "storage:1:secret");
        assert!(!sealed.contains("wJalrXUtnFEMI"), "{sealed}");
        let opened = k.open(&sealed, "storage:1:secret").unwrap();
        assert_eq!(opened.expose_secret(), "wJalrXUtnFEMI/K7MDENG");
        assert_eq!(
            k.open(&sealed, "storage:2:secret").unwrap_err(),
            SealError::Tampered("storage:2:secret".to_owned())
        );
        assert!(matches!(
            key(8).open(&sealed, "storage:1:secret").unwrap_err(),
            SealError::WrongKey { .. }
        ));
    }

    #[test]
    fn sealing_twice_gives_different_texts() {
        let k = key(1);
        assert_ne!(k.seal(&secret("s"), "c"), k.seal(&secret("s"), "c"));
    }

    #[test]
    fn a_flipped_character_is_detected() {
        let k = key(3);
        let sealed = k.seal(&secret("the secret"), "c");
        let last = sealed.chars().last().unwrap();
        let flipped = format!(
            "{}{}",
            &sealed[..sealed.len() - 1],
            if last == 'A' { 'B' } else { 'A' }
        );
        assert!(k.open(&flipped, "c").is_err());
        assert!(matches!(
            k.open("v1.abc", "c").unwrap_err(),
            SealError::Malformed(_)
        ));
    }

    #[test]
    fn keys_must_be_32_bytes_and_never_print() {
        assert!(EnvelopeKey::from_base64(&secret("c2hvcnQ=")).is_err());
        let text = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
        let k = EnvelopeKey::from_base64(&secret(&format!("{text}\n"))).unwrap();
        let shown = format!("{k:?}");
        assert!(!shown.contains(&text) && shown.contains(k.fingerprint()));
    }
}
