//! Issuing a job's leaf certificate from its manifest definition, signed by the bucket CA.
//! Pure apart from the injected clock and random source; never stores what it issues.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use super::authority::{random_serial, CLOCK_SKEW_ALLOWANCE};
use super::definition::CertSubject;
use super::{key, BucketCa, CertDefinition, CertError};

/// RSA modulus size of leaf certificate keys.
pub const LEAF_KEY_BITS: usize = 2048;

/// A worker that will hold a certificate: its IP (always a SAN) and, when `workers.json`
/// names one, its hostname (a DNS SAN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerAddress {
    pub ip: IpAddr,
    pub hostname: Option<String>,
}

/// A freshly issued leaf certificate and its private key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedCert {
    pub cert_pem: String,
    /// `RSA PRIVATE KEY` or `PRIVATE KEY` depending on the definition's `pkcs8`.
    pub key_pem: String,
    pub not_after: OffsetDateTime,
}

impl fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCert")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// Issues the certificate `definition` describes for `holders`, valid for `ttl_days` from
/// `now` (cut short at the CA's own expiry).
///
/// `holders` is the allocation's single worker for a per-worker cert (`one: false`), or every
/// allocated worker for a shared cert (`one: true`). Subject alternative names are
/// `127.0.0.1`, each holder's IP, `localhost`, each holder's hostname, and the common name
/// when it is a DNS name. The cert may be used by servers and by clients.
pub fn issue<R: rand::CryptoRng + ?Sized>(
    ca: &BucketCa,
    definition: &CertDefinition,
    holders: &[WorkerAddress],
    ttl_days: u32,
    now: OffsetDateTime,
    rng: &mut R,
) -> Result<IssuedCert, CertError> {
    let name = definition.name();
    if holders.is_empty() {
        return Err(CertError::NoHolders {
            name: name.to_string(),
        });
    }
    if !definition.one() && holders.len() > 1 {
        return Err(CertError::PerWorkerCertForManyWorkers {
            name: name.to_string(),
            count: holders.len(),
        });
    }
    if ttl_days == 0 {
        return Err(CertError::ZeroTtl {
            name: name.to_string(),
        });
    }
    if ca.not_after() <= now {
        return Err(CertError::CaExpired {
            name: name.to_string(),
            ca_not_after: ca.not_after(),
        });
    }
    let signing_error = |e: rcgen::Error| CertError::Signing {
        name: name.to_string(),
        reason: e.to_string(),
    };

    let generated = key::generate(LEAF_KEY_BITS, definition.key_encoding(), rng)?;
    let not_after = (now + Duration::days(i64::from(ttl_days))).min(ca.not_after());
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(definition.subject());
    params.subject_alt_names = subject_alt_names(definition, holders)?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - CLOCK_SKEW_ALLOWANCE;
    params.not_after = not_after;
    params.serial_number = Some(random_serial(rng));

    let issuer =
        Issuer::from_ca_cert_der(&ca.cert_der().into(), ca.signing_key()).map_err(signing_error)?;
    let cert = params
        .signed_by(&generated.signing, &issuer)
        .map_err(signing_error)?;
    Ok(IssuedCert {
        cert_pem: cert.pem(),
        key_pem: generated.pem,
        not_after,
    })
}

fn distinguished_name(subject: &CertSubject) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    let optional = [
        (DnType::CountryName, &subject.country),
        (DnType::StateOrProvinceName, &subject.province),
        (DnType::LocalityName, &subject.locality),
        (DnType::OrganizationName, &subject.organization),
        (DnType::OrganizationalUnitName, &subject.organizational_unit),
    ];
    for (kind, value) in optional {
        if let Some(value) = value {
            dn.push(kind, value.as_str());
        }
    }
    dn.push(DnType::CommonName, subject.common_name.as_str());
    dn
}

fn subject_alt_names(
    definition: &CertDefinition,
    holders: &[WorkerAddress],
) -> Result<Vec<SanType>, CertError> {
    let mut ips = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
    let mut dns_names = vec!["localhost".to_string()];
    for holder in holders {
        if !ips.contains(&holder.ip) {
            ips.push(holder.ip);
        }
        if let Some(hostname) = &holder.hostname {
            let hostname = hostname.to_ascii_lowercase();
            if is_dns_name(&hostname) && !dns_names.contains(&hostname) {
                dns_names.push(hostname);
            }
        }
    }
    let common_name = definition.subject().common_name.to_ascii_lowercase();
    if is_dns_name(&common_name) && !dns_names.contains(&common_name) {
        dns_names.push(common_name);
    }
    let mut sans: Vec<SanType> = ips.into_iter().map(SanType::IpAddress).collect();
    for name in dns_names {
        let ia5 =
            rcgen::string::Ia5String::try_from(name.as_str()).map_err(|e| CertError::Signing {
                name: definition.name().to_string(),
                reason: e.to_string(),
            })?;
        sans.push(SanType::DnsName(ia5));
    }
    Ok(sans)
}

/// A host name usable as a DNS SAN: dot-separated labels of letters, digits and inner
/// hyphens, optionally led by a `*.` wildcard label; an IP address is not one.
fn is_dns_name(name: &str) -> bool {
    let name = name.strip_prefix("*.").unwrap_or(name);
    name.parse::<IpAddr>().is_err()
        && !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}
