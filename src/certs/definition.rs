//! What a job declares about one certificate ([`CertDefinition`], built from the workspace's
//! parsed manifest `certs` entry and validated here), where its PEMs live in KV, and its
//! stable hash so a build can tell when a definition changed. Never parses manifest JSON
//! (the workspace module does) and never generates keys or certificates.

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

/// One certificate a job declares under `certs` in its manifest. Built with
/// [`CertDefinition::new`], which checks the name and subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertDefinition {
    name: String,
    subject: CertSubject,
    one: bool,
    pkcs8: bool,
}

/// Subject fields of a leaf certificate: `common_name` and the optional X.509 attributes a
/// manifest's `subject` may set (absent unless given).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CertSubject {
    pub common_name: String,
    pub organization: Option<String>,
    pub organizational_unit: Option<String>,
    /// Two-letter ISO 3166 country code.
    pub country: Option<String>,
    /// State or province.
    pub province: Option<String>,
    pub locality: Option<String>,
}

/// Why a subject attribute is refused: the manifest field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectProblem {
    /// The manifest field under `subject` (`common_name`, `country`, ...).
    pub field: String,
    /// What is wrong, naming the field.
    pub reason: String,
}

impl CertSubject {
    /// A subject with only a common name.
    pub fn with_common_name(common_name: &str) -> CertSubject {
        CertSubject {
            common_name: common_name.to_string(),
            ..CertSubject::default()
        }
    }

    /// Checks every attribute: 1 to 64 characters, no control characters; `country` is two
    /// letters.
    pub fn validate(&self) -> Result<(), SubjectProblem> {
        let attributes = [
            ("common_name", Some(&self.common_name)),
            ("organization", self.organization.as_ref()),
            ("organizational_unit", self.organizational_unit.as_ref()),
            ("country", self.country.as_ref()),
            ("province", self.province.as_ref()),
            ("locality", self.locality.as_ref()),
        ];
        let problem = |field: &str, reason: String| SubjectProblem {
            field: field.to_string(),
            reason,
        };
        for (field, value) in attributes {
            let Some(value) = value else { continue };
            if value.trim().is_empty() {
                return Err(problem(field, format!("subject.{field} is empty")));
            }
            if value.chars().count() > MAX_ATTRIBUTE_LEN {
                return Err(problem(
                    field,
                    format!("subject.{field} is longer than {MAX_ATTRIBUTE_LEN} characters"),
                ));
            }
            if value.chars().any(char::is_control) {
                return Err(problem(
                    field,
                    format!("subject.{field} contains a control character"),
                ));
            }
        }
        if let Some(country) = &self.country {
            if country.len() != 2 || !country.chars().all(|c| c.is_ascii_alphabetic()) {
                return Err(problem(
                    "country",
                    format!("subject.country `{country}` is not a two-letter country code"),
                ));
            }
        }
        Ok(())
    }
}

impl CertDefinition {
    /// Validates and builds the definition of cert `name`. `one`: one cert and key shared by
    /// every allocation of the job (else one per allocation); `pkcs8`: key PEM is PKCS#8
    /// `PRIVATE KEY` (else PKCS#1 `RSA PRIVATE KEY`).
    pub fn new(
        name: &str,
        subject: CertSubject,
        one: bool,
        pkcs8: bool,
    ) -> Result<CertDefinition, CertError> {
        validate_name(name)?;
        subject
            .validate()
            .map_err(|problem| CertError::InvalidDefinition {
                name: name.to_string(),
                reason: problem.reason,
            })?;
        Ok(CertDefinition {
            name: name.to_string(),
            subject,
            one,
            pkcs8,
        })
    }

    /// The key in the manifest's `certs` map; names `<name>.crt` / `<name>.key`.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn subject(&self) -> &CertSubject {
        &self.subject
    }

    /// Whether one cert is shared by every allocation of the job.
    pub fn one(&self) -> bool {
        self.one
    }

    /// Whether the key PEM is PKCS#8.
    pub fn pkcs8(&self) -> bool {
        self.pkcs8
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

    fn subject(common_name: &str) -> CertSubject {
        CertSubject::with_common_name(common_name)
    }

    fn full_subject() -> CertSubject {
        CertSubject {
            common_name: "api-cluster".into(),
            organization: Some("Acme".into()),
            organizational_unit: Some("Ops".into()),
            country: Some("DE".into()),
            province: Some("Berlin".into()),
            locality: Some("Berlin".into()),
        }
    }

    #[test]
    fn flags_choose_sharing_and_key_encoding() {
        let def = CertDefinition::new("tls", subject("api.internal"), false, false).unwrap();
        assert!(!def.one());
        assert_eq!(def.key_encoding(), KeyEncoding::Pkcs1);
        assert_eq!(def.subject().common_name, "api.internal");
        let def = CertDefinition::new("client", full_subject(), true, true).unwrap();
        assert!(def.one() && def.pkcs8());
        assert_eq!(def.key_encoding(), KeyEncoding::Pkcs8);
        assert_eq!(def.name(), "client");
    }

    #[test]
    fn kv_keys_follow_the_cert_name() {
        let def = CertDefinition::new("tls", subject("a"), false, false).unwrap();
        assert_eq!(def.cert_kv_key(), "certs/tls.crt");
        assert_eq!(def.key_kv_key(), "certs/tls.key");
    }

    #[test]
    fn bad_subject_values_are_refused_naming_the_field() {
        let long = "x".repeat(65);
        let cases = [
            (subject(""), "subject.common_name"),
            (subject(&long), "subject.common_name"),
            (subject("a\nb"), "subject.common_name"),
            (
                CertSubject {
                    country: Some("Germany".into()),
                    ..subject("a")
                },
                "subject.country",
            ),
            (
                CertSubject {
                    organization: Some(" ".into()),
                    ..subject("a")
                },
                "subject.organization",
            ),
        ];
        for (subject, field) in cases {
            let err = CertDefinition::new("tls", subject.clone(), false, false).unwrap_err();
            let message = err.to_string();
            assert!(message.contains(field), "{subject:?}: {message}");
            assert!(message.contains("`tls`"), "{message}");
        }
    }

    #[test]
    fn cert_names_that_cannot_be_file_names_are_refused() {
        for name in ["", "ca", "../x", ".hidden", "a b", "a/b"] {
            let err = CertDefinition::new(name, subject("a"), false, false).unwrap_err();
            assert!(
                matches!(err, CertError::InvalidCertName { .. }),
                "{name:?} gave {err}"
            );
        }
        assert!(CertDefinition::new("server-tls_1.v2", subject("a"), false, false).is_ok());
    }

    #[test]
    fn hash_is_a_stable_sha256() {
        let def = CertDefinition::new("tls", subject("x"), true, false).unwrap();
        let again = CertDefinition::new("tls", subject("x"), true, false).unwrap();
        assert_eq!(definition_hash(&def), definition_hash(&again));
        assert_eq!(definition_hash(&def).len(), 64);
    }

    #[test]
    fn hash_changes_with_every_field() {
        let base = full_subject();
        let variants = [
            CertDefinition::new("tls", base.clone(), false, false),
            CertDefinition::new("tls2", base.clone(), false, false),
            CertDefinition::new("tls", base.clone(), true, false),
            CertDefinition::new("tls", base.clone(), false, true),
            CertDefinition::new("tls", subject("api-cluster"), false, false),
            CertDefinition::new(
                "tls",
                CertSubject {
                    common_name: "y".into(),
                    ..base.clone()
                },
                false,
                false,
            ),
            CertDefinition::new(
                "tls",
                CertSubject {
                    organization: Some("o".into()),
                    ..base.clone()
                },
                false,
                false,
            ),
            CertDefinition::new(
                "tls",
                CertSubject {
                    organizational_unit: Some("o".into()),
                    ..base.clone()
                },
                false,
                false,
            ),
            CertDefinition::new(
                "tls",
                CertSubject {
                    country: Some("FR".into()),
                    ..base.clone()
                },
                false,
                false,
            ),
            CertDefinition::new(
                "tls",
                CertSubject {
                    province: Some("o".into()),
                    ..base.clone()
                },
                false,
                false,
            ),
            CertDefinition::new(
                "tls",
                CertSubject {
                    locality: Some("o".into()),
                    ..base.clone()
                },
                false,
                false,
            ),
        ];
        let hashes: std::collections::BTreeSet<_> = variants
            .iter()
            .map(|def| definition_hash(def.as_ref().unwrap()))
            .collect();
        assert_eq!(hashes.len(), variants.len());
    }

    #[test]
    fn moving_a_value_between_optional_fields_changes_the_hash() {
        let a = CertSubject {
            organization: Some("o".into()),
            ..subject("x")
        };
        let b = CertSubject {
            organizational_unit: Some("o".into()),
            ..subject("x")
        };
        assert_ne!(
            definition_hash(&CertDefinition::new("tls", a, false, false).unwrap()),
            definition_hash(&CertDefinition::new("tls", b, false, false).unwrap())
        );
    }
}
