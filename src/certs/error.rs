//! Errors of the certificate module. Messages say which file, cert or field is at fault and
//! what to do; none of them carries private key material.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while creating, loading or issuing certificates.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("RSA keys must be at least {min} bits; {bits} was requested", min = super::key::MIN_KEY_BITS)]
    KeyTooSmall { bits: usize },
    #[error("could not generate an RSA private key: {0}")]
    KeyGeneration(String),
    #[error("the private key is not PEM (expected a `-----BEGIN ... PRIVATE KEY-----` block)")]
    KeyNotPem,
    #[error(
        "private keys of type `{label}` are not supported; provide an `RSA PRIVATE KEY` \
         (PKCS#1) or a `PRIVATE KEY` (PKCS#8), e.g. `openssl pkcs8 -topk8 -nocrypt -in <key>`"
    )]
    KeyUnsupported { label: String },
    #[error("the private key could not be read: {0}")]
    KeyUnreadable(String),
    #[error("the bucket CA certificate is not a readable PEM certificate: {0}")]
    CaCertUnreadable(String),
    #[error(
        "the bucket CA certificate is not a certificate authority (basic constraints lack CA:TRUE)"
    )]
    CaNotAuthority,
    #[error("the bucket CA private key does not belong to the bucket CA certificate")]
    CaKeyMismatch,
    #[error("bucket CA {path}: {source}")]
    CaFile {
        path: PathBuf,
        #[source]
        source: Box<CertError>,
    },
    #[error("cannot read {path}: {source}")]
    ReadFile { path: PathBuf, source: io::Error },
    #[error("cannot write {path}: {source}")]
    WriteFile { path: PathBuf, source: io::Error },
    #[error(
        "{present} exists but {missing} does not; the bucket CA needs both files: restore \
         {missing}, or remove {present} if no certificate was ever issued from it"
    )]
    CaHalfPresent { present: PathBuf, missing: PathBuf },
    #[error("{path} already exists; refusing to overwrite the bucket CA")]
    CaExists { path: PathBuf },
    #[error(
        "{path} is readable by group or others (mode {mode:03o}); run `chmod 600 {path}` and retry"
    )]
    KeyPermissions { path: PathBuf, mode: u32 },
    #[error(
        "cert name `{name}` in manifest `certs` is invalid: {reason}; use letters, digits, \
         `-`, `_` or `.` (it becomes <name>.crt and <name>.key)"
    )]
    InvalidCertName { name: String, reason: &'static str },
    #[error("cert `{name}` in manifest `certs` is invalid: {reason}")]
    InvalidDefinition { name: String, reason: String },
    #[error("cert `{name}`: no worker to issue it for")]
    NoHolders { name: String },
    #[error(
        "cert `{name}` is per worker (`one` is false) but was requested for {count} workers; \
         issue it once per allocation"
    )]
    PerWorkerCertForManyWorkers { name: String, count: usize },
    #[error("cert `{name}`: a lifetime of 0 days was requested; certs_ttl must be at least 1")]
    ZeroTtl { name: String },
    #[error(
        "cert `{name}`: the bucket CA expired on {ca_not_after}; install a new CA and rebuild"
    )]
    CaExpired {
        name: String,
        ca_not_after: time::OffsetDateTime,
    },
    #[error("cert `{name}` could not be signed: {reason}")]
    Signing { name: String, reason: String },
}
