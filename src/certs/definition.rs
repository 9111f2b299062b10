//! The `certs` entries of a job manifest: parsing and validating one entry into a
//! [`CertDefinition`], and its stable hash so a build can tell when a definition changed.
//! Never generates keys or certificates.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::key::KeyEncoding;
use super::CertError;

/// Longest subject attribute value accepted (the X.509 upper bound for a common name).
const MAX_ATTRIBUTE_LEN: usize = 64;
/// Longest cert name accepted; it becomes a file name and a KV key.
const MAX_NAME_LEN: usize = 64;
/// Cert name reserved for the bucket CA file placed next to the job's certs.
const RESERVED_NAME: &str = "ca";

/// Prefix of every certificate key in an allocation namespace
/// (`maand/job/<job>/worker/<ip>`); a build purges keys under it that no definition claims.
pub const CERTS_KV_PREFIX: &str = "certs/";
/// KV namespace that carries the bucket CA certificate to deploy.
pub const CA_KV_NAMESPACE: &str = "maand/worker";
/// KV key of the bucket CA certificate PEM in [`CA_KV_NAMESPACE`].
pub const CA_KV_KEY: &str = "certs/ca.crt";

/// One certificate a job declares under `certs` in its manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertDefinition {
    /// The key in the `certs` map; names the files `<name>.crt` / `<name>.key`.
    pub name: String,
    /// `true`: the key PEM is PKCS#8 (`PRIVATE KEY`); `false`: PKCS#1 (`RSA PRIVATE KEY`).
    pub pkcs8: bool,
    /// `true`: one cert and key shared by every allocation of the job;
    /// `false`: a separate cert and key per allocation.
    pub one: bool,
    pub subject: CertSubject,
}

/// Subject fields of a leaf certificate. Only `common_name` is required.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertSubject {
    pub common_name: String,
    #[serde(default)]
    pub organization: Option<String>,
    #[serde(default)]
    pub organizational_unit: Option<String>,
    /// Two-letter ISO 3166 country code.
    #[serde(default)]
    pub country: Option<String>,
    /// State or province.
    #[serde(default)]
    pub province: Option<String>,
    #[serde(default)]
    pub locality: Option<String>,
}

/// The shape of one `certs` entry in `manifest.json`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestCert {
    #[serde(default)]
    pkcs8: bool,
    #[serde(default)]
    one: bool,
    subject: CertSubject,
}

impl CertDefinition {
    /// Parses and validates the manifest entry `certs.<name>`.
    pub fn from_manifest(
        name: &str,
        entry: &serde_json::Value,
    ) -> Result<CertDefinition, CertError> {
        validate_name(name)?;
        let invalid = |reason: String| CertError::InvalidDefinition {
            name: name.to_string(),
            reason,
        };
        let ManifestCert {
            pkcs8,
            one,
            subject,
        } = ManifestCert::deserialize(entry).map_err(|e| invalid(e.to_string()))?;
        validate_subject(&subject).map_err(invalid)?;
        Ok(CertDefinition {
            name: name.to_string(),
            pkcs8,
            one,
            subject,
        })
    }

    /// KV key of the certificate PEM in an allocation namespace: `certs/<name>.crt`.
    pub fn cert_kv_key(&self) -> String {
        format!("{CERTS_KV_PREFIX}{}.crt", self.name)
    }

    /// KV key of the private key PEM in an allocation namespace: `certs/<name>.key`.
    pub fn key_kv_key(&self) -> String {
        format!("{CERTS_KV_PREFIX}{}.key", self.name)
    }

    /// How this definition's private keys are encoded.
    pub fn key_encoding(&self) -> KeyEncoding {
        if self.pkcs8 {
            KeyEncoding::Pkcs8
        } else {
            KeyEncoding::Pkcs1
        }
    }
}

fn validate_name(name: &str) -> Result<(), CertError> {
    let invalid = |reason| CertError::InvalidCertName {
        name: name.to_string(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("it is empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(invalid("it is longer than 64 characters"));
    }
    if name.starts_with('.') {
        return Err(invalid("it starts with `.`"));
    }
    if name == RESERVED_NAME {
        return Err(invalid("`ca` is reserved for the bucket CA certificate"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(invalid("it contains a character outside the allowed set"));
    }
    Ok(())
}

fn validate_subject(subject: &CertSubject) -> Result<(), String> {
    let attributes = [
        ("common_name", Some(&subject.common_name)),
        ("organization", subject.organization.as_ref()),
        ("organizational_unit", subject.organizational_unit.as_ref()),
        ("country", subject.country.as_ref()),
        ("province", subject.province.as_ref()),
        ("locality", subject.locality.as_ref()),
    ];
    for (field, value) in attributes {
        let Some(value) = value else { continue };
        if value.trim().is_empty() {
            return Err(format!("subject.{field} is empty"));
        }
        if value.chars().count() > MAX_ATTRIBUTE_LEN {
            return Err(format!(
                "subject.{field} is longer than {MAX_ATTRIBUTE_LEN} characters"
            ));
        }
        if value.chars().any(char::is_control) {
            return Err(format!("subject.{field} contains a control character"));
        }
    }
    if let Some(country) = &subject.country {
        if country.len() != 2 || !country.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(format!(
                "subject.country `{country}` is not a two-letter country code"
            ));
        }
    }
    Ok(())
}

/// A stable SHA-256 (hex) over every field of `definition`. It changes exactly when the
/// definition changes and does not depend on field order in the manifest or on how this
/// struct is laid out.
pub fn definition_hash(definition: &CertDefinition) -> String {
    let CertDefinition {
        name,
        pkcs8,
        one,
        subject:
            CertSubject {
                common_name,
                organization,
                organizational_unit,
                country,
                province,
                locality,
            },
    } = definition;
    let mut hasher = Sha256::new();
    hasher.update(b"maand cert definition v1\0");
    let mut field = |tag: &str, value: Option<&str>| {
        hasher.update(tag.as_bytes());
        match value {
            None => hasher.update([0u8]),
            Some(value) => {
                hasher.update([1u8]);
                hasher.update((value.len() as u64).to_be_bytes());
                hasher.update(value.as_bytes());
            }
        }
    };
    field("name", Some(name));
    field("pkcs8", Some(if *pkcs8 { "true" } else { "false" }));
    field("one", Some(if *one { "true" } else { "false" }));
    field("common_name", Some(common_name));
    field("organization", organization.as_deref());
    field("organizational_unit", organizational_unit.as_deref());
    field("country", country.as_deref());
    field("province", province.as_deref());
    field("locality", locality.as_deref());
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(name: &str, entry: serde_json::Value) -> Result<CertDefinition, CertError> {
        CertDefinition::from_manifest(name, &entry)
    }

    #[test]
    fn omitted_flags_default_to_per_worker_pkcs1() {
        let def = parse(
            "tls",
            json!({ "subject": { "common_name": "api.internal" } }),
        )
        .unwrap();
        assert!(!def.one);
        assert!(!def.pkcs8);
        assert_eq!(def.key_encoding(), KeyEncoding::Pkcs1);
        assert_eq!(def.subject.common_name, "api.internal");
    }

    #[test]
    fn kv_keys_follow_the_cert_name() {
        let def = parse("tls", json!({ "subject": { "common_name": "a" } })).unwrap();
        assert_eq!(def.cert_kv_key(), "certs/tls.crt");
        assert_eq!(def.key_kv_key(), "certs/tls.key");
    }

    #[test]
    fn all_documented_fields_are_read() {
        let def = parse(
            "client",
            json!({
                "pkcs8": true,
                "one": true,
                "subject": {
                    "common_name": "api-cluster",
                    "organization": "Acme",
                    "organizational_unit": "Ops",
                    "country": "DE",
                    "province": "Berlin",
                    "locality": "Berlin"
                }
            }),
        )
        .unwrap();
        assert!(def.one && def.pkcs8);
        assert_eq!(def.key_encoding(), KeyEncoding::Pkcs8);
        assert_eq!(def.subject.organization.as_deref(), Some("Acme"));
        assert_eq!(def.subject.country.as_deref(), Some("DE"));
    }

    #[test]
    fn subject_without_common_name_is_refused() {
        let err = parse("tls", json!({ "subject": {} })).unwrap_err();
        assert!(err.to_string().contains("common_name"), "{err}");
        assert!(err.to_string().contains("`tls`"), "{err}");
    }

    #[test]
    fn missing_subject_and_unknown_fields_are_refused() {
        assert!(parse("tls", json!({ "one": true })).is_err());
        let err = parse(
            "tls",
            json!({ "subject": { "common_name": "a", "comon_name": "b" } }),
        )
        .unwrap_err();
        assert!(err.to_string().contains("comon_name"), "{err}");
        assert!(parse(
            "tls",
            json!({ "subject": { "common_name": "a" }, "ttl": 3 })
        )
        .is_err());
    }

    #[test]
    fn bad_subject_values_are_refused() {
        for subject in [
            json!({ "common_name": "" }),
            json!({ "common_name": "x".repeat(65) }),
            json!({ "common_name": "a\nb" }),
            json!({ "common_name": "a", "country": "Germany" }),
        ] {
            assert!(
                parse("tls", json!({ "subject": subject })).is_err(),
                "{subject}"
            );
        }
    }

    #[test]
    fn cert_names_that_cannot_be_file_names_are_refused() {
        let subject = json!({ "subject": { "common_name": "a" } });
        for name in ["", "ca", "../x", ".hidden", "a b", "a/b"] {
            let err = parse(name, subject.clone()).unwrap_err();
            assert!(
                matches!(err, CertError::InvalidCertName { .. }),
                "{name:?} gave {err}"
            );
        }
        assert!(parse("server-tls_1.v2", subject).is_ok());
    }

    #[test]
    fn hash_is_stable_and_ignores_manifest_field_order() {
        let a = parse(
            "tls",
            json!({ "one": true, "subject": { "common_name": "x" } }),
        )
        .unwrap();
        let b = parse(
            "tls",
            json!({ "subject": { "common_name": "x" }, "one": true }),
        )
        .unwrap();
        assert_eq!(definition_hash(&a), definition_hash(&b));
        assert_eq!(definition_hash(&a).len(), 64);
    }

    #[test]
    fn hash_changes_with_every_field() {
        let base = parse("tls", json!({ "subject": { "common_name": "x" } })).unwrap();
        let mut variants = vec![base.clone()];
        let mut push = |change: &dyn Fn(&mut CertDefinition)| {
            let mut def = base.clone();
            change(&mut def);
            variants.push(def);
        };
        push(&|d| d.name = "tls2".into());
        push(&|d| d.pkcs8 = true);
        push(&|d| d.one = true);
        push(&|d| d.subject.common_name = "y".into());
        push(&|d| d.subject.organization = Some("o".into()));
        push(&|d| d.subject.organizational_unit = Some("o".into()));
        push(&|d| d.subject.country = Some("DE".into()));
        push(&|d| d.subject.province = Some("o".into()));
        push(&|d| d.subject.locality = Some("o".into()));
        let hashes: std::collections::BTreeSet<_> = variants.iter().map(definition_hash).collect();
        assert_eq!(hashes.len(), variants.len());
    }
}
