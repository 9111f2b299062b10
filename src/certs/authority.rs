//! The bucket certificate authority: creating it, loading an existing pair, its fingerprint,
//! and the `secrets/ca.crt` / `secrets/ca.key` files. The only part of the module that
//! touches the disk, and only inside the directory it is given.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    PublicKeyData,
};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use super::key::{self, KeyEncoding};
use super::status;
use super::CertError;

/// RSA modulus size of a newly created bucket CA key.
pub const CA_KEY_BITS: usize = 4096;
/// Validity of a newly created bucket CA, in days (ten years).
pub const CA_VALIDITY_DAYS: i64 = 10 * 365;
/// File name of the CA certificate inside the bucket's `secrets/` directory.
pub const CA_CERT_FILE: &str = "ca.crt";
/// File name of the CA private key inside the bucket's `secrets/` directory.
pub const CA_KEY_FILE: &str = "ca.key";
/// Organization written into the subject of a CA that maand creates.
const CA_ORGANIZATION: &str = "maand bucket CA";
/// How far `not_before` is set back from `now`, so hosts whose clocks lag a little still
/// accept a certificate issued moments ago.
pub(crate) const CLOCK_SKEW_ALLOWANCE: Duration = Duration::hours(1);

/// The bucket CA: its certificate and the private key that signs leaf certificates.
pub struct BucketCa {
    cert_pem: String,
    cert_der: Vec<u8>,
    key_pem: String,
    key: KeyPair,
    not_after: OffsetDateTime,
}

impl fmt::Debug for BucketCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BucketCa")
            .field("fingerprint", &self.fingerprint())
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// SHA-256 fingerprint (lowercase hex) of a CA certificate's DER encoding: the same value
/// `openssl x509 -noout -fingerprint -sha256` shows, without colons.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CaFingerprint(String);

impl CaFingerprint {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CaFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl BucketCa {
    /// Creates a self-signed CA for `bucket_id`: subject CN = the bucket id, RSA key of
    /// `key_bits` bits (use [`CA_KEY_BITS`]), valid for [`CA_VALIDITY_DAYS`] from `now`.
    pub fn generate<R: rand::CryptoRng + ?Sized>(
        bucket_id: &str,
        key_bits: usize,
        now: OffsetDateTime,
        rng: &mut R,
    ) -> Result<BucketCa, CertError> {
        let generated = key::generate(key_bits, KeyEncoding::Pkcs1, rng)?;
        let mut params = CertificateParams::default();
        let mut subject = DistinguishedName::new();
        subject.push(DnType::CommonName, bucket_id);
        subject.push(DnType::OrganizationName, CA_ORGANIZATION);
        params.distinguished_name = subject;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = now - CLOCK_SKEW_ALLOWANCE;
        params.not_after = now + Duration::days(CA_VALIDITY_DAYS);
        params.serial_number = Some(random_serial(rng));
        let cert = params
            .self_signed(&generated.signing)
            .map_err(|e| CertError::Signing {
                name: "ca".to_string(),
                reason: e.to_string(),
            })?;
        BucketCa::load(&cert.pem(), &generated.pem)
    }

    /// Loads a CA from its certificate PEM and private key PEM (`RSA PRIVATE KEY` or
    /// `PRIVATE KEY`), checking that the certificate is a CA and the key belongs to it.
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<BucketCa, CertError> {
        let cert_der = certificate_der(cert_pem)?;
        let (_, cert) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|e| CertError::CaCertUnreadable(e.to_string()))?;
        let is_ca = cert
            .basic_constraints()
            .map_err(|e| CertError::CaCertUnreadable(e.to_string()))?
            .is_some_and(|constraints| constraints.value.ca);
        if !is_ca {
            return Err(CertError::CaNotAuthority);
        }
        let key = key::signing_key_from_pem(key_pem)?;
        if cert.public_key().subject_public_key.data.as_ref() != key.der_bytes() {
            return Err(CertError::CaKeyMismatch);
        }
        let not_after = cert.validity().not_after.to_datetime();
        Ok(BucketCa {
            cert_pem: cert_pem.to_string(),
            cert_der,
            key_pem: key_pem.to_string(),
            key,
            not_after,
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// Fingerprint of the CA certificate; a build compares it with the one recorded at the
    /// last build to detect a replaced CA.
    pub fn fingerprint(&self) -> CaFingerprint {
        fingerprint_der(&self.cert_der)
    }

    pub(crate) fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    pub(crate) fn signing_key(&self) -> &KeyPair {
        &self.key
    }
}

/// Fingerprint of a CA certificate given as PEM, without needing its private key.
pub fn ca_fingerprint(cert_pem: &str) -> Result<CaFingerprint, CertError> {
    Ok(fingerprint_der(&certificate_der(cert_pem)?))
}

fn fingerprint_der(der: &[u8]) -> CaFingerprint {
    CaFingerprint(hex::encode(Sha256::digest(der)))
}

/// DER of the first `CERTIFICATE` block of `pem`.
fn certificate_der(pem: &str) -> Result<Vec<u8>, CertError> {
    status::certificate_der(pem).map_err(CertError::CaCertUnreadable)
}

/// A random positive 127-bit serial number.
pub(crate) fn random_serial<R: rand::CryptoRng + ?Sized>(rng: &mut R) -> rcgen::SerialNumber {
    let mut bytes = [0u8; 16];
    rng.fill_bytes(&mut bytes);
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    rcgen::SerialNumber::from_slice(&bytes)
}

/// Reads the bucket CA from `secrets_dir`. `Ok(None)` when neither file exists; an error
/// when only one does, when `ca.key` is readable by group or others, or when the pair is
/// unusable.
pub fn read_bucket_ca(secrets_dir: &Path) -> Result<Option<BucketCa>, CertError> {
    let cert_path = secrets_dir.join(CA_CERT_FILE);
    let key_path = secrets_dir.join(CA_KEY_FILE);
    match (cert_path.exists(), key_path.exists()) {
        (false, false) => return Ok(None),
        (true, false) => {
            return Err(CertError::CaHalfPresent {
                present: cert_path,
                missing: key_path,
            })
        }
        (false, true) => {
            return Err(CertError::CaHalfPresent {
                present: key_path,
                missing: cert_path,
            })
        }
        (true, true) => {}
    }
    let read = |path: &PathBuf| {
        fs::read_to_string(path).map_err(|source| CertError::ReadFile {
            path: path.clone(),
            source,
        })
    };
    let mode = fs::metadata(&key_path)
        .map_err(|source| CertError::ReadFile {
            path: key_path.clone(),
            source,
        })?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(CertError::KeyPermissions {
            path: key_path,
            mode,
        });
    }
    let cert_pem = read(&cert_path)?;
    let key_pem = read(&key_path)?;
    BucketCa::load(&cert_pem, &key_pem)
        .map(Some)
        .map_err(|source| CertError::CaFile {
            path: secrets_dir.to_path_buf(),
            source: Box::new(source),
        })
}

/// Writes `ca` into `secrets_dir` as `ca.key` (mode 0600) and `ca.crt` (mode 0644). Each
/// file appears complete or not at all, and neither file is ever overwritten.
pub fn write_bucket_ca(secrets_dir: &Path, ca: &BucketCa) -> Result<(), CertError> {
    let cert_path = secrets_dir.join(CA_CERT_FILE);
    let key_path = secrets_dir.join(CA_KEY_FILE);
    for path in [&cert_path, &key_path] {
        if path.exists() {
            return Err(CertError::CaExists { path: path.clone() });
        }
    }
    write_new_file(&key_path, ca.key_pem().as_bytes(), 0o600)?;
    write_new_file(&cert_path, ca.cert_pem().as_bytes(), 0o644)?;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(secrets_dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|source| CertError::WriteFile {
            path: secrets_dir.to_path_buf(),
            source,
        })
}

/// Writes `bytes` to a temporary file next to `path`, flushes it, then links it to `path`;
/// linking refuses to replace an existing file.
fn write_new_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CertError> {
    let file_name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = path.with_file_name(format!(
        ".{file_name}.{}.{:016x}.tmp",
        std::process::id(),
        rand::random::<u64>()
    ));
    let result = (|| -> io::Result<()> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)?;
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::hard_link(&temp, path)
    })();
    // The temporary name is only a staging point; it goes whether or not linking worked.
    let _ = fs::remove_file(&temp);
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.exists() => {
            Err(CertError::CaExists {
                path: path.to_path_buf(),
            })
        }
        Err(source) => Err(CertError::WriteFile {
            path: path.to_path_buf(),
            source,
        }),
    }
}
