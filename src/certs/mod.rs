//! Bucket CA and per-job leaf certificates (rcgen, RSA keys).
//!
//! Owns creating and loading the bucket CA (`secrets/ca.crt`, `secrets/ca.key`), parsing the
//! manifest `certs` entries, issuing leaf certificates signed by the CA, deciding when a
//! stored certificate must be renewed, and inspecting certificates for `maand cat certs`.
//!
//! Everything here is a function of its inputs: the clock (`now`) and the random source are
//! passed in. It never opens the database, never prints, and touches the disk only in
//! [`read_bucket_ca`] / [`write_bucket_ca`]. Private keys never appear in errors or `Debug`.

mod authority;
mod definition;
mod error;
mod key;
mod leaf;
mod status;

pub use authority::{
    ca_fingerprint, read_bucket_ca, write_bucket_ca, BucketCa, CaFingerprint, CA_CERT_FILE,
    CA_KEY_BITS, CA_KEY_FILE, CA_VALIDITY_DAYS,
};
pub use definition::{
    definition_hash, CertDefinition, CertSubject, SubjectProblem, CA_KV_KEY, CA_KV_NAMESPACE,
    CERTS_KV_PREFIX,
};
pub use error::CertError;
pub use key::{KeyEncoding, MIN_KEY_BITS};
pub use leaf::{issue, IssuedCert, WorkerAddress, LEAF_KEY_BITS};
pub use status::{inspect, needs_renewal, CertInfo, CertStatus, InvalidCert, RenewalReason};

#[cfg(test)]
mod tests;
