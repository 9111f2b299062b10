//! Behaviour of the certs module as a whole: CA, issuance, chain, SANs, status, renewal.

use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::sync::OnceLock;

use rand::rngs::StdRng;
use rand::SeedableRng;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use super::*;

const NOW: OffsetDateTime = datetime!(2025-03-01 12:00 UTC);
const BUCKET_ID: &str = "0b6f3d2e-5a41-4c3e-9d1b-7f2a8c9e1d00";

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// One CA for the whole test binary; RSA key generation is the slow part of these tests.
fn ca() -> &'static BucketCa {
    static CA: OnceLock<BucketCa> = OnceLock::new();
    CA.get_or_init(|| BucketCa::generate(BUCKET_ID, MIN_KEY_BITS, NOW, &mut rng(1)).unwrap())
}

/// A second, unrelated CA.
fn other_ca() -> &'static BucketCa {
    static CA: OnceLock<BucketCa> = OnceLock::new();
    CA.get_or_init(|| BucketCa::generate("other", MIN_KEY_BITS, NOW, &mut rng(2)).unwrap())
}

fn definition(common_name: &str, one: bool, pkcs8: bool) -> CertDefinition {
    CertDefinition::new(
        "tls",
        CertSubject::with_common_name(common_name),
        one,
        pkcs8,
    )
    .unwrap()
}

fn per_worker() -> CertDefinition {
    definition("api.internal", false, false)
}

fn worker(ip: &str, hostname: Option<&str>) -> WorkerAddress {
    WorkerAddress {
        ip: ip.parse().unwrap(),
        hostname: hostname.map(str::to_string),
    }
}

/// A leaf for one worker, valid 60 days from [`NOW`]; shared by the tests that only read it.
fn leaf() -> &'static IssuedCert {
    static LEAF: OnceLock<IssuedCert> = OnceLock::new();
    LEAF.get_or_init(|| {
        issue(
            ca(),
            &per_worker(),
            &[worker("127.9.0.1", Some("node-a"))],
            60,
            NOW,
            &mut rng(3),
        )
        .unwrap()
    })
}

fn der(pem: &str) -> Vec<u8> {
    x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .unwrap()
        .1
        .contents
}

fn with_cert<T>(pem: &str, check: impl FnOnce(&X509Certificate<'_>) -> T) -> T {
    let der = der(pem);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    check(&cert)
}

fn pem_label(pem: &str) -> &str {
    key::pem_label(pem).unwrap()
}

struct Sans {
    ips: Vec<IpAddr>,
    dns: Vec<String>,
}

fn sans(pem: &str) -> Sans {
    with_cert(pem, |cert| {
        let mut found = Sans {
            ips: vec![],
            dns: vec![],
        };
        let extension = cert.subject_alternative_name().unwrap().unwrap();
        for name in &extension.value.general_names {
            match name {
                GeneralName::IPAddress(bytes) => {
                    let octets: [u8; 4] = (*bytes).try_into().unwrap();
                    found.ips.push(IpAddr::from(octets));
                }
                GeneralName::DNSName(dns) => found.dns.push(dns.to_string()),
                other => panic!("unexpected SAN {other:?}"),
            }
        }
        found
    })
}

// ---- bucket CA -------------------------------------------------------------------------

#[test]
fn generated_ca_is_a_self_signed_authority_named_after_the_bucket() {
    with_cert(ca().cert_pem(), |cert| {
        let cn = cert.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), BUCKET_ID);
        assert_eq!(cert.issuer(), cert.subject());
        assert!(cert.basic_constraints().unwrap().unwrap().value.ca);
        assert!(cert.key_usage().unwrap().unwrap().value.key_cert_sign());
        cert.verify_signature(None).unwrap();
        assert_eq!(
            cert.validity().not_after.to_datetime(),
            NOW + Duration::days(3650)
        );
        assert!(cert.validity().not_before.to_datetime() <= NOW);
    });
    assert_eq!(ca().not_after(), NOW + Duration::days(CA_VALIDITY_DAYS));
}

#[test]
fn generated_ca_key_is_pkcs1_rsa() {
    assert_eq!(pem_label(ca().key_pem()), "RSA PRIVATE KEY");
}

#[test]
fn ca_loads_back_from_its_pems_with_the_same_fingerprint() {
    let loaded = BucketCa::load(ca().cert_pem(), ca().key_pem()).unwrap();
    assert_eq!(loaded.fingerprint(), ca().fingerprint());
    assert_eq!(ca_fingerprint(ca().cert_pem()).unwrap(), ca().fingerprint());
    assert_eq!(ca().fingerprint().as_str().len(), 64);
    assert_ne!(ca().fingerprint(), other_ca().fingerprint());
}

#[test]
fn ca_with_a_foreign_key_is_refused() {
    let err = BucketCa::load(ca().cert_pem(), other_ca().key_pem()).unwrap_err();
    assert!(matches!(err, CertError::CaKeyMismatch), "{err}");
}

#[test]
fn leaf_certificate_cannot_serve_as_ca() {
    let err = BucketCa::load(&leaf().cert_pem, &leaf().key_pem).unwrap_err();
    assert!(matches!(err, CertError::CaNotAuthority), "{err}");
}

#[test]
fn ca_from_garbage_is_refused() {
    assert!(matches!(
        BucketCa::load("not a pem", ca().key_pem()),
        Err(CertError::CaCertUnreadable(_))
    ));
    assert!(matches!(
        BucketCa::load(ca().key_pem(), ca().key_pem()),
        Err(CertError::CaCertUnreadable(_))
    ));
    assert!(BucketCa::load(ca().cert_pem(), "garbage").is_err());
}

#[test]
fn debug_output_hides_ca_key() {
    let shown = format!("{:?}", ca());
    assert!(!shown.contains("PRIVATE KEY"));
    assert!(shown.contains(ca().fingerprint().as_str()));
}

// ---- CA files --------------------------------------------------------------------------

#[test]
fn ca_files_round_trip_with_private_key_mode() {
    let dir = tempfile::tempdir().unwrap();
    assert!(read_bucket_ca(dir.path()).unwrap().is_none());
    write_bucket_ca(dir.path(), ca()).unwrap();
    let mode = |name: &str| {
        fs::metadata(dir.path().join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(CA_KEY_FILE), 0o600);
    assert_eq!(mode(CA_CERT_FILE), 0o644);
    let loaded = read_bucket_ca(dir.path()).unwrap().unwrap();
    assert_eq!(loaded.fingerprint(), ca().fingerprint());
    assert_eq!(loaded.key_pem(), ca().key_pem());
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "temporary files left behind: {names:?}");
}

#[test]
fn existing_ca_files_are_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    write_bucket_ca(dir.path(), ca()).unwrap();
    let err = write_bucket_ca(dir.path(), other_ca()).unwrap_err();
    assert!(matches!(err, CertError::CaExists { .. }), "{err}");
    let loaded = read_bucket_ca(dir.path()).unwrap().unwrap();
    assert_eq!(loaded.fingerprint(), ca().fingerprint());
}

#[test]
fn only_one_ca_file_present_is_an_error_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    write_bucket_ca(dir.path(), ca()).unwrap();
    fs::remove_file(dir.path().join(CA_KEY_FILE)).unwrap();
    let err = read_bucket_ca(dir.path()).unwrap_err();
    assert!(matches!(err, CertError::CaHalfPresent { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("ca.crt") && message.contains("ca.key"),
        "{message}"
    );
}

#[test]
fn ca_key_readable_by_others_is_refused_with_chmod_advice() {
    let dir = tempfile::tempdir().unwrap();
    write_bucket_ca(dir.path(), ca()).unwrap();
    let key_path = dir.path().join(CA_KEY_FILE);
    fs::set_permissions(&key_path, fs::Permissions::from_mode(0o644)).unwrap();
    let err = read_bucket_ca(dir.path()).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains(&key_path.display().to_string()),
        "{message}"
    );
    assert!(message.contains("chmod 600"), "{message}");
}

#[test]
fn replaced_ca_files_report_the_bucket_directory() {
    let dir = tempfile::tempdir().unwrap();
    write_bucket_ca(dir.path(), ca()).unwrap();
    fs::write(dir.path().join(CA_CERT_FILE), other_ca().cert_pem()).unwrap();
    let err = read_bucket_ca(dir.path()).unwrap_err();
    assert!(matches!(err, CertError::CaFile { .. }), "{err}");
    assert!(err.to_string().contains("does not belong"), "{err}");
}

// ---- issuing leaf certs ----------------------------------------------------------------

#[test]
fn issued_cert_chains_to_the_bucket_ca() {
    let ca_der = der(ca().cert_pem());
    let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
    with_cert(&leaf().cert_pem, |cert| {
        assert_eq!(cert.issuer(), ca_cert.subject());
        cert.verify_signature(Some(ca_cert.public_key())).unwrap();
        assert!(
            cert.verify_signature(None).is_err(),
            "leaf must not be self-signed"
        );
        let constraints = cert.basic_constraints().unwrap().map(|c| c.value.ca);
        assert_eq!(constraints, Some(false));
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth);
        let cn = cert.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), "api.internal");
    });
}

#[test]
fn issued_key_matches_the_certificate() {
    let key = key::signing_key_from_pem(&leaf().key_pem).unwrap();
    with_cert(&leaf().cert_pem, |cert| {
        assert_eq!(
            cert.public_key().subject_public_key.data.as_ref(),
            rcgen::PublicKeyData::der_bytes(&key)
        );
    });
}

#[test]
fn per_worker_cert_names_loopback_the_worker_and_the_common_name() {
    let found = sans(&leaf().cert_pem);
    let ips: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap(), "127.9.0.1".parse().unwrap()];
    assert_eq!(found.ips, ips);
    assert_eq!(found.dns, ["localhost", "node-a", "api.internal"]);
}

#[test]
fn shared_cert_names_every_allocated_worker() {
    let def = definition("api-cluster", true, false);
    let holders = [
        worker("127.9.0.1", None),
        worker("127.9.0.2", Some("Node-B")),
        worker("127.9.0.3", None),
    ];
    let issued = issue(ca(), &def, &holders, 60, NOW, &mut rng(4)).unwrap();
    let found = sans(&issued.cert_pem);
    let ips: Vec<String> = found.ips.iter().map(ToString::to_string).collect();
    assert_eq!(ips, ["127.0.0.1", "127.9.0.1", "127.9.0.2", "127.9.0.3"]);
    assert_eq!(found.dns, ["localhost", "node-b", "api-cluster"]);
}

#[test]
fn common_name_that_is_not_a_host_name_is_not_a_san() {
    let def = definition("My Service", false, false);
    let issued = issue(
        ca(),
        &def,
        &[worker("127.9.0.1", None)],
        60,
        NOW,
        &mut rng(5),
    )
    .unwrap();
    assert_eq!(sans(&issued.cert_pem).dns, ["localhost"]);
}

#[test]
fn pkcs8_flag_chooses_the_key_encoding() {
    assert_eq!(pem_label(&leaf().key_pem), "RSA PRIVATE KEY");
    let def = definition("a", false, true);
    let issued = issue(
        ca(),
        &def,
        &[worker("127.9.0.1", None)],
        60,
        NOW,
        &mut rng(6),
    )
    .unwrap();
    assert_eq!(pem_label(&issued.key_pem), "PRIVATE KEY");
}

#[test]
fn other_subject_fields_reach_the_certificate() {
    let subject = CertSubject {
        common_name: "a".into(),
        organization: Some("Acme".into()),
        organizational_unit: Some("Ops".into()),
        country: Some("DE".into()),
        province: Some("Berlin".into()),
        locality: Some("Mitte".into()),
    };
    let def = CertDefinition::new("tls", subject, false, false).unwrap();
    let issued = issue(
        ca(),
        &def,
        &[worker("127.9.0.1", None)],
        60,
        NOW,
        &mut rng(7),
    )
    .unwrap();
    with_cert(&issued.cert_pem, |cert| {
        let text = cert.subject().to_string();
        for part in ["CN=a", "O=Acme", "OU=Ops", "C=DE", "ST=Berlin", "L=Mitte"] {
            assert!(text.contains(part), "{part} missing from {text}");
        }
    });
}

#[test]
fn lifetime_is_ttl_days_from_now() {
    assert_eq!(leaf().not_after, NOW + Duration::days(60));
    with_cert(&leaf().cert_pem, |cert| {
        assert_eq!(cert.validity().not_after.to_datetime(), leaf().not_after);
        assert!(cert.validity().not_before.to_datetime() <= NOW);
    });
}

#[test]
fn lifetime_never_outlasts_the_ca() {
    let late = ca().not_after() - Duration::days(5);
    let issued = issue(
        ca(),
        &per_worker(),
        &[worker("127.9.0.1", None)],
        60,
        late,
        &mut rng(8),
    )
    .unwrap();
    assert_eq!(issued.not_after, ca().not_after());
}

#[test]
fn expired_ca_issues_nothing() {
    let after = ca().not_after() + Duration::days(1);
    let err = issue(
        ca(),
        &per_worker(),
        &[worker("127.9.0.1", None)],
        60,
        after,
        &mut rng(9),
    )
    .unwrap_err();
    assert!(matches!(err, CertError::CaExpired { .. }), "{err}");
}

#[test]
fn holder_list_must_fit_the_definition() {
    let two = [worker("127.9.0.1", None), worker("127.9.0.2", None)];
    let err = issue(ca(), &per_worker(), &two, 60, NOW, &mut rng(10)).unwrap_err();
    assert!(matches!(
        err,
        CertError::PerWorkerCertForManyWorkers { count: 2, .. }
    ));
    let err = issue(ca(), &per_worker(), &[], 60, NOW, &mut rng(10)).unwrap_err();
    assert!(matches!(err, CertError::NoHolders { .. }));
    let err = issue(ca(), &per_worker(), &two[..1], 0, NOW, &mut rng(10)).unwrap_err();
    assert!(matches!(err, CertError::ZeroTtl { .. }));
}

#[test]
fn same_inputs_issue_the_same_certificate() {
    let holders = [worker("127.9.0.1", Some("node-a"))];
    let again = issue(ca(), &per_worker(), &holders, 60, NOW, &mut rng(3)).unwrap();
    assert_eq!(&again, leaf());
    let different = issue(ca(), &per_worker(), &holders, 60, NOW, &mut rng(33)).unwrap();
    assert_ne!(different.key_pem, leaf().key_pem);
}

#[test]
fn debug_output_hides_leaf_key() {
    assert!(!format!("{:?}", leaf()).contains("PRIVATE KEY"));
}

// ---- inspection ------------------------------------------------------------------------

#[test]
fn inspect_reports_common_name_expiry_and_days_left() {
    let info = inspect(&leaf().cert_pem, ca().cert_pem(), NOW, 10);
    assert_eq!(info.common_name.as_deref(), Some("api.internal"));
    assert_eq!(info.not_after, Some(NOW + Duration::days(60)));
    assert_eq!(info.days_left, Some(60));
    assert_eq!(info.status, CertStatus::Ok);
}

#[test]
fn status_moves_from_ok_to_expiring_to_expired() {
    let not_after = leaf().not_after;
    let at =
        |now: OffsetDateTime, buffer: u32| inspect(&leaf().cert_pem, ca().cert_pem(), now, buffer);
    let cases = [
        (not_after - Duration::days(11), 10, CertStatus::Ok, 11),
        (not_after - Duration::days(10), 10, CertStatus::Expiring, 10),
        (
            not_after - Duration::seconds(1),
            10,
            CertStatus::Expiring,
            0,
        ),
        (not_after - Duration::seconds(1), 0, CertStatus::Ok, 0),
        (not_after, 0, CertStatus::Expired, 0),
        (not_after, 10, CertStatus::Expired, 0),
        (not_after + Duration::hours(1), 0, CertStatus::Expired, -1),
        (not_after + Duration::days(3), 0, CertStatus::Expired, -3),
        (NOW, 60, CertStatus::Expiring, 60),
        (NOW, 90, CertStatus::Expiring, 60),
    ];
    for (now, buffer, status, days_left) in cases {
        let info = at(now, buffer);
        assert_eq!(info.status, status, "at {now} with buffer {buffer}");
        assert_eq!(
            info.days_left,
            Some(days_left),
            "at {now} with buffer {buffer}"
        );
    }
}

#[test]
fn unparsable_pem_is_invalid() {
    for pem in ["", "garbage", ca().key_pem()] {
        let info = inspect(pem, ca().cert_pem(), NOW, 10);
        assert_eq!(info.status, CertStatus::Invalid(InvalidCert::Unparsable));
        assert_eq!(info.status.to_string(), "invalid");
        assert_eq!(info.common_name, None);
    }
}

#[test]
fn cert_from_another_ca_is_invalid_but_still_described() {
    let foreign = issue(
        other_ca(),
        &per_worker(),
        &[worker("127.9.0.1", None)],
        60,
        NOW,
        &mut rng(11),
    )
    .unwrap();
    let info = inspect(&foreign.cert_pem, ca().cert_pem(), NOW, 10);
    assert_eq!(info.status, CertStatus::Invalid(InvalidCert::NotSignedByCa));
    assert_eq!(info.common_name.as_deref(), Some("api.internal"));
    assert_eq!(info.days_left, Some(60));
}

#[test]
fn unreadable_ca_makes_every_cert_invalid() {
    let info = inspect(&leaf().cert_pem, "garbage", NOW, 10);
    assert_eq!(info.status, CertStatus::Invalid(InvalidCert::CaUnreadable));
}

#[test]
fn ca_inspects_against_itself() {
    let info = inspect(ca().cert_pem(), ca().cert_pem(), NOW, 10);
    assert_eq!(info.status, CertStatus::Ok);
    assert_eq!(info.common_name.as_deref(), Some(BUCKET_ID));
    assert_eq!(info.days_left, Some(3650));
}

#[test]
fn status_names_match_the_cat_certs_column() {
    let names: Vec<String> = [
        CertStatus::Ok,
        CertStatus::Expiring,
        CertStatus::Expired,
        CertStatus::Invalid(InvalidCert::NotSignedByCa),
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    assert_eq!(names, ["ok", "expiring", "expired", "invalid"]);
}

// ---- renewal decisions -----------------------------------------------------------------

#[test]
fn renewal_decisions() {
    let pem = leaf().cert_pem.as_str();
    let not_after = leaf().not_after;
    let fresh = NOW + Duration::days(1);
    let holders = [worker("127.9.0.1", Some("node-a"))];
    type Case<'a> = (
        &'a str,
        Option<&'a str>,
        bool,
        bool,
        OffsetDateTime,
        u32,
        Option<RenewalReason>,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            "unchanged and fresh is kept",
            Some(pem),
            false,
            false,
            fresh,
            10,
            None,
        ),
        (
            "missing cert or key",
            None,
            false,
            false,
            fresh,
            10,
            Some(RenewalReason::Missing),
        ),
        (
            "missing wins over other reasons",
            None,
            true,
            true,
            fresh,
            10,
            Some(RenewalReason::Missing),
        ),
        (
            "ca replaced",
            Some(pem),
            true,
            false,
            fresh,
            10,
            Some(RenewalReason::CaChanged),
        ),
        (
            "ca replaced wins over definition",
            Some(pem),
            true,
            true,
            fresh,
            10,
            Some(RenewalReason::CaChanged),
        ),
        (
            "definition edited",
            Some(pem),
            false,
            true,
            fresh,
            10,
            Some(RenewalReason::DefinitionChanged),
        ),
        (
            "unparsable stored cert",
            Some("garbage"),
            false,
            false,
            fresh,
            10,
            Some(RenewalReason::Unreadable),
        ),
        (
            "just outside the buffer",
            Some(pem),
            false,
            false,
            not_after - Duration::days(10) - Duration::seconds(1),
            10,
            None,
        ),
        (
            "entering the buffer",
            Some(pem),
            false,
            false,
            not_after - Duration::days(10),
            10,
            Some(RenewalReason::Expiring { not_after }),
        ),
        (
            "zero buffer keeps until expiry",
            Some(pem),
            false,
            false,
            not_after - Duration::seconds(1),
            0,
            None,
        ),
        (
            "zero buffer renews at expiry",
            Some(pem),
            false,
            false,
            not_after,
            0,
            Some(RenewalReason::Expired { not_after }),
        ),
        (
            "long expired",
            Some(pem),
            false,
            false,
            not_after + Duration::days(30),
            10,
            Some(RenewalReason::Expired { not_after }),
        ),
        (
            "buffer at least the ttl renews every build",
            Some(pem),
            false,
            false,
            NOW,
            60,
            Some(RenewalReason::Expiring { not_after }),
        ),
    ];
    for (label, stored, ca_changed, def_changed, now, buffer, expected) in cases {
        assert_eq!(
            needs_renewal(stored, &holders, ca_changed, def_changed, now, buffer),
            expected,
            "{label}"
        );
    }
}

#[test]
fn shared_cert_is_renewed_when_a_worker_joins() {
    let def = definition("c", true, false);
    let first = [worker("127.9.0.1", None), worker("127.9.0.2", None)];
    let issued = issue(ca(), &def, &first, 60, NOW, &mut rng(12)).unwrap();
    assert_eq!(
        needs_renewal(Some(&issued.cert_pem), &first, false, false, NOW, 10),
        None
    );
    assert_eq!(
        needs_renewal(Some(&issued.cert_pem), &first[1..], false, false, NOW, 10),
        None,
        "a worker leaving does not force a new cert"
    );
    let joined = [
        first[0].clone(),
        first[1].clone(),
        worker("127.9.0.3", None),
    ];
    assert_eq!(
        needs_renewal(Some(&issued.cert_pem), &joined, false, false, NOW, 10),
        Some(RenewalReason::WorkerNotNamed {
            ip: "127.9.0.3".parse().unwrap()
        })
    );
}

#[test]
fn renewal_reasons_read_as_sentences() {
    assert_eq!(
        RenewalReason::CaChanged.to_string(),
        "the bucket CA changed"
    );
    let expiring = RenewalReason::Expiring {
        not_after: leaf().not_after,
    };
    assert!(expiring.to_string().contains("renewal window"));
}
