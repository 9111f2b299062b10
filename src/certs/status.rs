//! Reading stored certificates back: their expiry status for `maand cat certs`, and whether a
//! build must issue a replacement. Both use the same renewal window. Never issues anything.

use std::fmt;
use std::net::IpAddr;

use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use super::WorkerAddress;

/// Where a certificate stands relative to its expiry and its issuer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertStatus {
    /// Valid, signed by the CA, outside the renewal window.
    Ok,
    /// Inside the renewal window (`now >= not_after - certs_renewal_buffer`), not yet expired.
    Expiring,
    /// `now` is at or past `not_after`.
    Expired,
    /// Unusable; the reason says why.
    Invalid(InvalidCert),
}

/// Why a certificate is [`CertStatus::Invalid`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidCert {
    /// The stored text is not a PEM X.509 certificate.
    Unparsable,
    /// The CA certificate to check against could not be parsed.
    CaUnreadable,
    /// The signature does not verify against the CA's public key.
    NotSignedByCa,
}

impl fmt::Display for CertStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CertStatus::Ok => "ok",
            CertStatus::Expiring => "expiring",
            CertStatus::Expired => "expired",
            CertStatus::Invalid(_) => "invalid",
        })
    }
}

impl fmt::Display for InvalidCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InvalidCert::Unparsable => "not a PEM X.509 certificate",
            InvalidCert::CaUnreadable => "the CA certificate cannot be parsed",
            InvalidCert::NotSignedByCa => "not signed by the bucket CA",
        })
    }
}

/// What `maand cat certs` shows for one certificate. Fields that could not be read from the
/// certificate are `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub common_name: Option<String>,
    pub not_after: Option<OffsetDateTime>,
    /// Whole days from `now` until `not_after`, rounded down (negative once expired).
    pub days_left: Option<i64>,
    pub status: CertStatus,
}

/// Inspects `cert_pem` at `now`: subject CN, expiry, and status against the CA whose
/// certificate is `ca_cert_pem` (pass the CA's own PEM twice to inspect the CA).
pub fn inspect(
    cert_pem: &str,
    ca_cert_pem: &str,
    now: OffsetDateTime,
    renewal_buffer_days: u32,
) -> CertInfo {
    let Ok(der) = certificate_der(cert_pem) else {
        return CertInfo {
            common_name: None,
            not_after: None,
            days_left: None,
            status: CertStatus::Invalid(InvalidCert::Unparsable),
        };
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der) else {
        return CertInfo {
            common_name: None,
            not_after: None,
            days_left: None,
            status: CertStatus::Invalid(InvalidCert::Unparsable),
        };
    };
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string);
    let not_after = cert.validity().not_after.to_datetime();
    let status = match signed_by(&cert, ca_cert_pem) {
        Err(reason) => CertStatus::Invalid(reason),
        Ok(()) => expiry_status(not_after, now, renewal_buffer_days),
    };
    CertInfo {
        common_name,
        not_after: Some(not_after),
        days_left: Some(days_until(not_after, now)),
        status,
    }
}

fn signed_by(cert: &X509Certificate<'_>, ca_cert_pem: &str) -> Result<(), InvalidCert> {
    let ca_der = certificate_der(ca_cert_pem).map_err(|_| InvalidCert::CaUnreadable)?;
    let (_, ca) =
        x509_parser::parse_x509_certificate(&ca_der).map_err(|_| InvalidCert::CaUnreadable)?;
    if cert.issuer() != ca.subject() {
        return Err(InvalidCert::NotSignedByCa);
    }
    cert.verify_signature(Some(ca.public_key()))
        .map_err(|_| InvalidCert::NotSignedByCa)
}

/// Why a build must issue a new certificate in place of the stored one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenewalReason {
    /// No stored certificate or key.
    Missing,
    /// The bucket CA was replaced since the stored certificate was issued.
    CaChanged,
    /// The manifest definition changed since the stored certificate was issued.
    DefinitionChanged,
    /// The stored certificate cannot be parsed.
    Unreadable,
    /// A worker that holds the certificate is not among its IP addresses (a shared
    /// certificate after a worker joined the job).
    WorkerNotNamed { ip: IpAddr },
    /// The stored certificate expired at `not_after`.
    Expired { not_after: OffsetDateTime },
    /// The stored certificate expires at `not_after`, inside the renewal window.
    Expiring { not_after: OffsetDateTime },
}

impl fmt::Display for RenewalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RenewalReason::Missing => f.write_str("no stored certificate"),
            RenewalReason::CaChanged => f.write_str("the bucket CA changed"),
            RenewalReason::DefinitionChanged => f.write_str("the manifest definition changed"),
            RenewalReason::Unreadable => f.write_str("the stored certificate is unreadable"),
            RenewalReason::WorkerNotNamed { ip } => {
                write!(f, "worker {ip} is not among the certificate's addresses")
            }
            RenewalReason::Expired { not_after } => write!(f, "it expired on {not_after}"),
            RenewalReason::Expiring { not_after } => {
                write!(f, "it expires on {not_after}, inside the renewal window")
            }
        }
    }
}

/// Decides whether a build replaces a stored certificate. `stored_cert_pem` is `None` when
/// the certificate or its key is missing; `holders` are the workers the certificate is for
/// (as passed to [`issue`](super::issue)). `None` means the stored pair is kept as is.
///
/// Reasons are checked in this order: missing, CA changed, definition changed, unreadable,
/// a holder's IP not in the certificate, expired, expiring.
pub fn needs_renewal(
    stored_cert_pem: Option<&str>,
    holders: &[WorkerAddress],
    ca_changed: bool,
    definition_changed: bool,
    now: OffsetDateTime,
    renewal_buffer_days: u32,
) -> Option<RenewalReason> {
    let Some(pem) = stored_cert_pem else {
        return Some(RenewalReason::Missing);
    };
    if ca_changed {
        return Some(RenewalReason::CaChanged);
    }
    if definition_changed {
        return Some(RenewalReason::DefinitionChanged);
    }
    let Ok(der) = certificate_der(pem) else {
        return Some(RenewalReason::Unreadable);
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der) else {
        return Some(RenewalReason::Unreadable);
    };
    let named = ip_addresses(&cert);
    if let Some(holder) = holders.iter().find(|holder| !named.contains(&holder.ip)) {
        return Some(RenewalReason::WorkerNotNamed { ip: holder.ip });
    }
    let not_after = cert.validity().not_after.to_datetime();
    match expiry_status(not_after, now, renewal_buffer_days) {
        CertStatus::Expired => Some(RenewalReason::Expired { not_after }),
        CertStatus::Expiring => Some(RenewalReason::Expiring { not_after }),
        CertStatus::Ok | CertStatus::Invalid(_) => None,
    }
}

/// The IP addresses among a certificate's subject alternative names.
fn ip_addresses(cert: &X509Certificate<'_>) -> Vec<IpAddr> {
    let Ok(Some(extension)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    extension
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Expiry status of a certificate valid until `not_after`: expired at or after `not_after`,
/// expiring from `renewal_buffer_days` before it (never, when the buffer is 0).
fn expiry_status(
    not_after: OffsetDateTime,
    now: OffsetDateTime,
    renewal_buffer_days: u32,
) -> CertStatus {
    if now >= not_after {
        CertStatus::Expired
    } else if now >= not_after - Duration::days(i64::from(renewal_buffer_days)) {
        // With a zero buffer this branch is unreachable: `now < not_after` here.
        CertStatus::Expiring
    } else {
        CertStatus::Ok
    }
}

fn days_until(not_after: OffsetDateTime, now: OffsetDateTime) -> i64 {
    (not_after - now).whole_seconds().div_euclid(86_400)
}

/// DER of the first PEM block of `pem`, which must be a `CERTIFICATE`; the error says why not.
pub(crate) fn certificate_der(pem: &str) -> Result<Vec<u8>, String> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| e.to_string())?;
    if block.label != "CERTIFICATE" {
        return Err(format!(
            "found a `{}` PEM block where a CERTIFICATE was expected",
            block.label
        ));
    }
    Ok(block.contents)
}
