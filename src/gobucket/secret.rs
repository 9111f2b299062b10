//! The Go maand's encrypted value format: `enc:v1:` followed by standard base64 of a 12-byte
//! nonce and the AES-256-GCM ciphertext with its tag, under the 32 bytes of `secrets/kv.key`
//! and no associated data. Opening only: values are re-sealed in our format (bound to their
//! namespace and key name) by the import.

use crate::kv::secret::{open_unbound_go, SecretKey};
use base64::Engine;

/// Prefix of an encrypted Go value.
pub const GO_SEALED_PREFIX: &str = "enc:v1:";

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Why a Go value could not be opened (never containing the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GoSecretError {
    /// Not `enc:v1:` + base64 of at least a nonce and a tag.
    Encoding,
    /// The key is not the one it was sealed with, or the bytes were altered.
    Unauthentic,
    NotUtf8,
}

impl std::fmt::Display for GoSecretError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GoSecretError::Encoding => {
                "it is not `enc:v1:` followed by base64 of a nonce and a ciphertext"
            }
            GoSecretError::Unauthentic => {
                "kv.key is not the key it was encrypted with, or the stored value was altered"
            }
            GoSecretError::NotUtf8 => "it decrypts to bytes that are not UTF-8",
        })
    }
}

/// Whether a stored Go value is encrypted.
pub fn is_sealed(value: &str) -> bool {
    value.starts_with(GO_SEALED_PREFIX)
}

/// Decrypts a value the Go maand encrypted.
pub fn open(key: &SecretKey, stored: &str) -> Result<String, GoSecretError> {
    let encoded = stored
        .strip_prefix(GO_SEALED_PREFIX)
        .ok_or(GoSecretError::Encoding)?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| GoSecretError::Encoding)?;
    if raw.len() < NONCE_LEN + TAG_LEN {
        return Err(GoSecretError::Encoding);
    }
    let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
    let nonce: &[u8; NONCE_LEN] = nonce.try_into().map_err(|_| GoSecretError::Encoding)?;
    let plaintext = open_unbound_go(key, nonce, ciphertext).ok_or(GoSecretError::Unauthentic)?;
    String::from_utf8(plaintext).map_err(|_| GoSecretError::NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes_gcm::aead::Aead;
    use aes_gcm::{Aes256Gcm, KeyInit, Nonce};

    /// Encrypts as the Go maand does (a test-side oracle of the format).
    fn go_seal(key: &[u8; 32], nonce: [u8; 12], plaintext: &str) -> String {
        let cipher = Aes256Gcm::new(key.into());
        let mut raw = nonce.to_vec();
        raw.extend(
            cipher
                .encrypt(Nonce::from_slice(&nonce), plaintext.as_bytes())
                .unwrap(),
        );
        format!(
            "{GO_SEALED_PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    fn key(byte: u8) -> (SecretKey, [u8; 32]) {
        let bytes = [byte; 32];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.key");
        std::fs::write(&path, bytes).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        (SecretKey::load(&path).unwrap(), bytes)
    }

    #[test]
    fn a_go_value_opens_with_the_key_it_was_sealed_with() {
        let (key, bytes) = key(7);
        let stored = go_seal(&bytes, [3; 12], "s3cret pa55");
        assert!(is_sealed(&stored));
        assert_eq!(open(&key, &stored).unwrap(), "s3cret pa55");
    }

    #[test]
    fn another_key_or_altered_bytes_or_bad_encoding_are_refused() {
        let (_, bytes) = key(7);
        let (other, _) = key(8);
        let stored = go_seal(&bytes, [3; 12], "x");
        assert_eq!(open(&other, &stored), Err(GoSecretError::Unauthentic));
        assert_eq!(open(&other, "enc:v1:!!"), Err(GoSecretError::Encoding));
        assert_eq!(open(&other, "enc:v1:AAAA"), Err(GoSecretError::Encoding));
        assert_eq!(open(&other, "plain"), Err(GoSecretError::Encoding));
    }
}
