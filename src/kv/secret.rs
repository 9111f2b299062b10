//! Encryption at rest for values in `secrets/job/<job>` namespaces (AES-256-GCM).
//!
//! Owns the bucket secret key (`secrets/kv.key`: 32 raw bytes, mode 0600), sealing a
//! plaintext into a [`SealedSecret`] bound to its namespace and key name, opening it again,
//! and the versioned text form stored in the database.
//!
//! It must never put a plaintext into an error, a `Debug` rendering or a log line, never
//! overwrite an existing key file, and never touch the database: callers store the
//! [`SealedSecret::encode`] text.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};

/// Length in bytes of a secret key (AES-256).
pub const SECRET_KEY_LEN: usize = 32;
/// Length in bytes of an AES-GCM nonce.
const NONCE_LEN: usize = 12;
/// Length in bytes of the AES-GCM authentication tag appended to every ciphertext.
const TAG_LEN: usize = 16;
/// Prefix of the version 1 text encoding of a sealed secret.
const ENCODING_V1: &str = "v1:";
/// Domain separator mixed into the associated data of every version 1 seal.
const AAD_DOMAIN_V1: &[u8] = b"maand kv secret v1";

/// Errors from loading keys and sealing or opening secrets. No variant carries a plaintext.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read secret key file {path}: {source}")]
    ReadKey { path: PathBuf, source: io::Error },
    #[error(
        "secret key file {path} is readable by group or others (mode {mode:03o}); \
         run `chmod 600 {path}` and retry"
    )]
    KeyPermissions { path: PathBuf, mode: u32 },
    #[error(
        "secret key file {path} holds {len} bytes but a key is exactly {SECRET_KEY_LEN} bytes; \
         restore the original kv.key of this bucket"
    )]
    KeyLength { path: PathBuf, len: usize },
    #[error(
        "secret key file {path} already exists; refusing to overwrite it \
         (every stored secret depends on it)"
    )]
    KeyExists { path: PathBuf },
    #[error("cannot write secret key file {path}: {source}")]
    WriteKey { path: PathBuf, source: io::Error },
    #[error(
        "stored secret is not in a known encoding (expected `{ENCODING_V1}` followed by hex); \
         it was not written by this version of maand or was edited by hand"
    )]
    Encoding,
    #[error(
        "secret `{key}` in namespace `{namespace}` cannot be decrypted: the bucket kv.key is \
         not the one it was sealed with, or the stored value was altered or copied from \
         another key"
    )]
    Unauthentic { namespace: String, key: String },
    #[error("secret `{key}` in namespace `{namespace}` decrypted to bytes that are not UTF-8")]
    NotUtf8 { namespace: String, key: String },
    #[error("secret `{key}` in namespace `{namespace}` could not be encrypted")]
    Seal { namespace: String, key: String },
}

/// The bucket's AES-256 key for secrets. Its `Debug` form never shows the key bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey([u8; SECRET_KEY_LEN]);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl SecretKey {
    /// A fresh random key drawn from `rng`.
    pub fn generate<R: rand::CryptoRng + ?Sized>(rng: &mut R) -> SecretKey {
        let mut bytes = [0u8; SECRET_KEY_LEN];
        rng.fill_bytes(&mut bytes);
        SecretKey(bytes)
    }

    /// Reads the key at `path`, refusing a file that group or others may access and a file
    /// that is not exactly [`SECRET_KEY_LEN`] bytes long.
    pub fn load(path: &Path) -> Result<SecretKey, SecretError> {
        let read_error = |source| SecretError::ReadKey {
            path: path.to_path_buf(),
            source,
        };
        let mode = fs::metadata(path).map_err(read_error)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(SecretError::KeyPermissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        let bytes = fs::read(path).map_err(read_error)?;
        let bytes: [u8; SECRET_KEY_LEN] =
            bytes
                .as_slice()
                .try_into()
                .map_err(|_| SecretError::KeyLength {
                    path: path.to_path_buf(),
                    len: bytes.len(),
                })?;
        Ok(SecretKey(bytes))
    }

    /// Writes this key to `path` with mode 0600. The file appears complete or not at all
    /// (written to a temporary file in the same directory, then linked into place), and an
    /// existing file at `path` is never replaced.
    pub fn write_new(&self, path: &Path) -> Result<(), SecretError> {
        let write_error = |source| SecretError::WriteKey {
            path: path.to_path_buf(),
            source,
        };
        if path.exists() {
            return Err(SecretError::KeyExists {
                path: path.to_path_buf(),
            });
        }
        let dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let temp = dir.join(format!(
            ".kv.key.{}.{:016x}.tmp",
            std::process::id(),
            rand::random::<u64>()
        ));
        let result = write_file_then_link(&temp, path, &self.0);
        // The temporary name is only a staging point; it is gone whether or not linking worked.
        let _ = fs::remove_file(&temp);
        match result {
            Ok(()) => sync_dir(dir).map_err(write_error),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.exists() => {
                Err(SecretError::KeyExists {
                    path: path.to_path_buf(),
                })
            }
            Err(e) => Err(write_error(e)),
        }
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&self.0.into())
    }
}

/// Writes `bytes` to a new file `temp` (mode 0600, flushed to disk), then links it to `path`.
/// Linking fails with `AlreadyExists` instead of replacing an existing `path`.
fn write_file_then_link(temp: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(temp)?;
    // `mode` is filtered by the umask; a private key must end up 0600 whatever the umask is.
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::hard_link(temp, path)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dir)?
        .sync_all()
}

/// A secret value encrypted for one namespace and key name.
///
/// Its `Debug` form shows only lengths; [`SealedSecret::encode`] gives the stored text.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSecret {
    nonce: [u8; NONCE_LEN],
    /// Ciphertext followed by the authentication tag.
    ciphertext: Vec<u8>,
}

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedSecret")
            .field("ciphertext_len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

impl SealedSecret {
    /// The stored form: `v1:` followed by lowercase hex of `nonce || ciphertext || tag`.
    pub fn encode(&self) -> String {
        let mut raw = Vec::with_capacity(NONCE_LEN + self.ciphertext.len());
        raw.extend_from_slice(&self.nonce);
        raw.extend_from_slice(&self.ciphertext);
        format!("{ENCODING_V1}{}", hex::encode(raw))
    }

    /// Parses the stored form written by [`SealedSecret::encode`].
    pub fn decode(text: &str) -> Result<SealedSecret, SecretError> {
        let hex_part = text
            .strip_prefix(ENCODING_V1)
            .ok_or(SecretError::Encoding)?;
        let raw = hex::decode(hex_part).map_err(|_| SecretError::Encoding)?;
        if raw.len() < NONCE_LEN + TAG_LEN {
            return Err(SecretError::Encoding);
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        Ok(SealedSecret {
            nonce: nonce.try_into().map_err(|_| SecretError::Encoding)?,
            ciphertext: ciphertext.to_vec(),
        })
    }
}

impl fmt::Display for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

impl FromStr for SealedSecret {
    type Err = SecretError;

    fn from_str(text: &str) -> Result<SealedSecret, SecretError> {
        SealedSecret::decode(text)
    }
}

/// Associated data binding a ciphertext to where it is stored. Each part is length-prefixed
/// so that no two (namespace, key) pairs produce the same bytes.
fn associated_data(namespace: &str, key_name: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_DOMAIN_V1.len() + 16 + namespace.len() + key_name.len());
    aad.extend_from_slice(AAD_DOMAIN_V1);
    for part in [namespace, key_name] {
        aad.extend_from_slice(&(part.len() as u64).to_be_bytes());
        aad.extend_from_slice(part.as_bytes());
    }
    aad
}

/// Encrypts `plaintext` for `key_name` in `namespace`, drawing a fresh nonce from
/// `nonce_source`. The result opens only with the same key, namespace and key name.
pub fn seal<R: rand::CryptoRng + ?Sized>(
    key: &SecretKey,
    namespace: &str,
    key_name: &str,
    plaintext: &str,
    nonce_source: &mut R,
) -> Result<SealedSecret, SecretError> {
    let mut nonce = [0u8; NONCE_LEN];
    nonce_source.fill_bytes(&mut nonce);
    let aad = associated_data(namespace, key_name);
    let ciphertext = key
        .cipher()
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext.as_bytes(),
                aad: &aad,
            },
        )
        .map_err(|_| SecretError::Seal {
            namespace: namespace.to_string(),
            key: key_name.to_string(),
        })?;
    Ok(SealedSecret { nonce, ciphertext })
}

/// Decrypts a value the Go maand sealed under the same 32-byte key: AES-256-GCM over
/// `ciphertext` (tag appended) with `nonce` and no associated data. Only the import of a Go
/// bucket uses it, to re-seal each value bound to its namespace and key name. `None` when the
/// key is not the one it was sealed with or the bytes were altered.
pub fn open_unbound_go(
    key: &SecretKey,
    nonce: &[u8; NONCE_LEN],
    ciphertext: &[u8],
) -> Option<Vec<u8>> {
    key.cipher()
        .decrypt(Nonce::from_slice(nonce), ciphertext)
        .ok()
}

/// Decrypts a secret stored as `key_name` in `namespace`. Fails when the key differs, the
/// ciphertext was altered, or it was sealed for another namespace or key name.
pub fn open(
    key: &SecretKey,
    namespace: &str,
    key_name: &str,
    sealed: &SealedSecret,
) -> Result<String, SecretError> {
    let aad = associated_data(namespace, key_name);
    let plaintext = key
        .cipher()
        .decrypt(
            Nonce::from_slice(&sealed.nonce),
            Payload {
                msg: &sealed.ciphertext,
                aad: &aad,
            },
        )
        .map_err(|_| SecretError::Unauthentic {
            namespace: namespace.to_string(),
            key: key_name.to_string(),
        })?;
    String::from_utf8(plaintext).map_err(|_| SecretError::NotUtf8 {
        namespace: namespace.to_string(),
        key: key_name.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    const NS: &str = "secrets/job/api";

    fn rng(seed: u64) -> StdRng {
        StdRng::seed_from_u64(seed)
    }

    fn key(seed: u64) -> SecretKey {
        SecretKey::generate(&mut rng(seed))
    }

    proptest! {
        #[test]
        fn seal_then_open_returns_the_plaintext(plaintext in any::<String>(), seed in any::<u64>()) {
            let key = key(1);
            let sealed = seal(&key, NS, "db_password", &plaintext, &mut rng(seed)).unwrap();
            let stored = SealedSecret::decode(&sealed.encode()).unwrap();
            prop_assert_eq!(open(&key, NS, "db_password", &stored).unwrap(), plaintext);
        }
    }

    #[test]
    fn encoding_is_versioned_hex_without_plaintext() {
        let sealed = seal(&key(1), NS, "db_password", "s3cret", &mut rng(2)).unwrap();
        let text = sealed.encode();
        assert!(text.starts_with("v1:"));
        assert!(text[3..].chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(text.len(), 3 + 2 * (NONCE_LEN + "s3cret".len() + TAG_LEN));
        assert!(!text.contains("s3cret"));
        assert!(!format!("{sealed:?}").contains("s3cret"));
        assert_eq!(text.parse::<SealedSecret>().unwrap(), sealed);
    }

    #[test]
    fn fresh_nonce_makes_each_seal_different() {
        let key = key(1);
        let a = seal(&key, NS, "k", "same", &mut rng(2)).unwrap();
        let b = seal(&key, NS, "k", "same", &mut rng(3)).unwrap();
        assert_ne!(a.encode(), b.encode());
    }

    #[test]
    fn ciphertext_moved_to_another_namespace_does_not_open() {
        let key = key(1);
        let sealed = seal(&key, NS, "db_password", "s3cret", &mut rng(2)).unwrap();
        let err = open(&key, "secrets/job/web", "db_password", &sealed).unwrap_err();
        assert!(matches!(err, SecretError::Unauthentic { .. }));
        assert!(!err.to_string().contains("s3cret"));
    }

    #[test]
    fn ciphertext_moved_to_another_key_does_not_open() {
        let key = key(1);
        let sealed = seal(&key, NS, "db_password", "s3cret", &mut rng(2)).unwrap();
        let err = open(&key, NS, "admin_password", &sealed).unwrap_err();
        assert!(matches!(err, SecretError::Unauthentic { .. }));
    }

    #[test]
    fn boundary_between_namespace_and_key_is_bound() {
        let key = key(1);
        let sealed = seal(&key, "secrets/job/a", "b", "s3cret", &mut rng(2)).unwrap();
        assert!(open(&key, "secrets/job/ab", "", &sealed).is_err());
        assert!(open(&key, "secrets/job/", "ab", &sealed).is_err());
    }

    #[test]
    fn tampered_ciphertext_does_not_open() {
        let key = key(1);
        let text = seal(&key, NS, "k", "s3cret", &mut rng(2)).unwrap().encode();
        for position in 3..text.len() {
            let mut tampered = text.clone().into_bytes();
            tampered[position] = if tampered[position] == b'0' {
                b'1'
            } else {
                b'0'
            };
            let tampered = SealedSecret::decode(std::str::from_utf8(&tampered).unwrap()).unwrap();
            assert!(
                matches!(
                    open(&key, NS, "k", &tampered),
                    Err(SecretError::Unauthentic { .. })
                ),
                "flipping hex digit {position} went unnoticed"
            );
        }
    }

    #[test]
    fn wrong_key_does_not_open() {
        let sealed = seal(&key(1), NS, "k", "s3cret", &mut rng(2)).unwrap();
        let err = open(&key(9), NS, "k", &sealed).unwrap_err();
        assert!(matches!(err, SecretError::Unauthentic { .. }));
        assert!(err.to_string().contains("kv.key"));
    }

    #[test]
    fn malformed_stored_text_is_rejected() {
        for text in ["", "v2:00", "v1:zz", "v1:00ff", "s3cret"] {
            assert!(
                matches!(SealedSecret::decode(text), Err(SecretError::Encoding)),
                "{text:?}"
            );
        }
    }

    #[test]
    fn written_key_loads_back_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.key");
        let key = key(1);
        key.write_new(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(fs::read(&path).unwrap().len(), SECRET_KEY_LEN);
        assert_eq!(SecretKey::load(&path).unwrap(), key);
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temporary file left behind");
    }

    #[test]
    fn existing_key_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.key");
        key(1).write_new(&path).unwrap();
        let err = key(2).write_new(&path).unwrap_err();
        assert!(matches!(err, SecretError::KeyExists { .. }));
        assert_eq!(SecretKey::load(&path).unwrap(), key(1));
    }

    #[test]
    fn key_readable_by_others_is_refused_with_chmod_advice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.key");
        key(1).write_new(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let err = SecretKey::load(&path).unwrap_err();
        assert!(matches!(
            err,
            SecretError::KeyPermissions { mode: 0o640, .. }
        ));
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()));
        assert!(message.contains("chmod 600"));
    }

    #[test]
    fn key_of_wrong_length_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.key");
        fs::write(&path, [7u8; 31]).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let err = SecretKey::load(&path).unwrap_err();
        assert!(matches!(err, SecretError::KeyLength { len: 31, .. }));
    }

    #[test]
    fn missing_key_file_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.key");
        let err = SecretKey::load(&path).unwrap_err();
        assert!(err.to_string().contains(&path.display().to_string()));
    }

    #[test]
    fn debug_output_hides_key_bytes() {
        let key = SecretKey([0xab; SECRET_KEY_LEN]);
        assert!(!format!("{key:?}").contains("ab"));
    }
}
