//! Black-box tests of what lets a bucket written for the Go maand build here: its old
//! manifest field names (with their warning), `health_check` blocks without probes, the KV the
//! Go maand writes for jobs without allocations and for `vars/bucket`, and certificate
//! subject attributes beyond the common name. Workers are never contacted.

use assert_cmd::Command;
use predicates::prelude::*;
use std::path::Path;

fn maand(bucket: &Path) -> Command {
    let mut cmd = Command::cargo_bin("maand").unwrap();
    cmd.current_dir(bucket)
        .env_remove("MAAND_BUCKET")
        .env_remove("RUST_LOG");
    cmd
}

fn write(root: &Path, path: &str, text: &str) {
    let path = root.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn sqlite(db: &Path, sql: &str) -> String {
    let out = std::process::Command::new("sqlite3")
        .arg(db)
        .arg(sql)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn journal_head(bucket: &Path) -> String {
    sqlite(
        &bucket.join("data/maand.db"),
        "SELECT coalesce(max(seq), 0) FROM journal",
    )
}

/// An initialized bucket with two workers labelled `web`.
fn bucket() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    maand(dir.path()).arg("init").assert().success();
    write(
        dir.path(),
        "workspace/workers.json",
        r#"[{"host": "127.0.0.1", "labels": ["web"]}, {"host": "127.0.0.2", "labels": ["web"]}]"#,
    );
    dir
}

/// A job with `manifest`, a Makefile and `_modules/<command>.py` for each command.
fn job(bucket: &Path, name: &str, manifest: &str, commands: &[&str]) {
    write(
        bucket,
        &format!("workspace/jobs/{name}/manifest.json"),
        manifest,
    );
    write(
        bucket,
        &format!("workspace/jobs/{name}/Makefile"),
        "start:\n\t@true\n",
    );
    for command in commands {
        write(
            bucket,
            &format!("workspace/jobs/{name}/_modules/{command}.py"),
            "print('ok')\n",
        );
    }
}

/// `maand cat kv get NS KEY`.
fn kv(bucket: &Path, namespace: &str, key: &str) -> String {
    let out = maand(bucket)
        .args(["cat", "kv", "get", namespace, key])
        .assert()
        .success();
    String::from_utf8(out.get_output().stdout.clone())
        .unwrap()
        .trim_end()
        .to_string()
}

#[test]
fn old_parallel_counts_take_effect_and_warn_once_per_manifest() {
    let dir = bucket();
    job(
        dir.path(),
        "web",
        r#"{"selectors": ["web"], "deploy_parallel_count": 2, "update_parallel_count": 3}"#,
        &[],
    );
    let out = maand(dir.path()).arg("build").assert().success();
    let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    for part in [
        "workspace/jobs/web/manifest.json",
        "deploy_parallel_count (now max_concurrent_starts)",
        "update_parallel_count (now max_concurrent_upgrades)",
    ] {
        assert!(warnings[0].contains(part), "{stderr}");
    }
    assert_eq!(
        sqlite(
            &dir.path().join("data/maand.db"),
            "SELECT max_concurrent_starts || ',' || max_concurrent_upgrades FROM jobs WHERE name = 'web'"
        ),
        "2,3"
    );
}

#[test]
fn current_field_names_build_without_warnings() {
    let dir = bucket();
    job(
        dir.path(),
        "web",
        r#"{"selectors": ["web"], "max_concurrent_starts": 2, "max_concurrent_upgrades": 3}"#,
        &[],
    );
    maand(dir.path())
        .arg("build")
        .assert()
        .success()
        .stderr(predicate::str::contains("warning").not());
}

#[test]
fn both_names_of_one_setting_fail_the_build_naming_both_and_record_nothing() {
    let dir = bucket();
    job(
        dir.path(),
        "web",
        r#"{"selectors": ["web"], "max_concurrent_starts": 2, "deploy_parallel_count": 2}"#,
        &[],
    );
    let head = journal_head(dir.path());
    maand(dir.path())
        .arg("build")
        .assert()
        .failure()
        .stderr(predicate::str::contains("workspace/jobs/web/manifest.json"))
        .stderr(predicate::str::contains(
            "both max_concurrent_starts and deploy_parallel_count are set",
        ));
    assert_eq!(
        sqlite(
            &dir.path().join("data/maand.db"),
            "SELECT count(*) FROM jobs"
        ),
        "0"
    );
    // Only the failed run's start and end.
    assert_eq!(
        journal_head(dir.path()).parse::<u64>().unwrap(),
        head.parse::<u64>().unwrap() + 2
    );
}

#[test]
fn health_check_without_probes_builds_when_a_health_check_command_exists() {
    let dir = bucket();
    job(
        dir.path(),
        "web",
        r#"{"selectors": ["web"],
            "health_check": {"timeout_seconds": 7, "wait": {"attempts": 4, "interval_seconds": 2}},
            "commands": {"command_health": {"executed_on": ["health_check"]}}}"#,
        &["command_health"],
    );
    maand(dir.path()).arg("build").assert().success();
    let stored = sqlite(
        &dir.path().join("data/maand.db"),
        "SELECT health_check FROM jobs WHERE name = 'web'",
    );
    let stored: serde_json::Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(
        stored,
        serde_json::json!({"checks": [], "timeout_seconds": 7, "wait": {"attempts": 4, "interval_seconds": 2}})
    );
}

#[test]
fn health_check_with_neither_probes_nor_command_is_refused_saying_so() {
    let dir = bucket();
    job(
        dir.path(),
        "web",
        r#"{"selectors": ["web"], "health_check": {"timeout_seconds": 7}}"#,
        &[],
    );
    maand(dir.path())
        .arg("build")
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "workspace/jobs/web/manifest.json: health_check.checks",
        ))
        .stderr(predicate::str::contains(
            "neither probes nor a health_check command",
        ));
}

#[test]
fn a_job_without_allocations_still_gets_its_job_and_bucket_job_keys() {
    let dir = bucket();
    job(
        dir.path(),
        "web",
        r#"{"version": "1.2.0", "selectors": ["web"]}"#,
        &[],
    );
    job(
        dir.path(),
        "orphan",
        r#"{"version": "3.0.0", "selectors": ["gpu"],
            "resources": {"memory": {"min": "128 mb", "max": "512 mb"}, "cpu": {"min": "100 mhz", "max": "900 mhz"}}}"#,
        &[],
    );
    write(
        dir.path(),
        "workspace/bucket.jobs.conf",
        "[orphan]\nmemory = \"256 mb\"\nflavour = \"large\"\n",
    );
    maand(dir.path()).arg("build").assert().success();
    let ns = "maand/job/orphan";
    let expected = [
        ("name", "orphan"),
        ("job_name", "orphan"),
        ("version", "3.0.0"),
        ("selectors", "gpu"),
        ("memory", "256"),
        ("cpu", "900"),
        ("min_memory_mb", "128"),
        ("max_memory_mb", "512"),
        ("min_cpu_mhz", "100"),
        ("max_cpu_mhz", "900"),
        ("workers", ""),
        ("workers_length", "0"),
        ("rollout_order", ""),
    ];
    for (key, value) in expected {
        assert_eq!(kv(dir.path(), ns, key), value, "{ns} {key}");
    }
    let job_id = kv(dir.path(), ns, "job_id");
    assert_eq!(job_id.len(), 36, "{job_id}");
    assert_eq!(kv(dir.path(), "vars/bucket/job/orphan", "flavour"), "large");
    assert_eq!(kv(dir.path(), "vars/bucket/job/orphan", "memory"), "256 mb");
    // The same keys as an allocated job has, minus the per-worker ones.
    let keys = |job: &str| {
        sqlite(
            &dir.path().join("data/maand.db"),
            &format!("SELECT group_concat(key, ',') FROM (SELECT DISTINCT key FROM kv WHERE namespace = 'maand/job/{job}' AND key NOT LIKE 'worker\\_%' ESCAPE '\\' ORDER BY key)"),
        )
    };
    assert_eq!(keys("orphan"), keys("web"));
    // A second build changes nothing.
    maand(dir.path())
        .arg("build")
        .assert()
        .success()
        .stdout(predicate::str::contains("already matches"));
}

#[test]
fn vars_bucket_carries_the_port_pool() {
    let dir = bucket();
    write(
        dir.path(),
        "workspace/bucket.conf",
        "port_min = \"31000\"\nport_max = \"31999\"\nenvironment = \"staging\"\n",
    );
    maand(dir.path()).arg("build").assert().success();
    assert_eq!(kv(dir.path(), "vars/bucket", "port_min"), "31000");
    assert_eq!(kv(dir.path(), "vars/bucket", "port_max"), "31999");
    assert_eq!(kv(dir.path(), "vars/bucket", "environment"), "staging");
}

#[test]
fn cert_subject_attributes_reach_the_issued_certificate() {
    let dir = bucket();
    job(
        dir.path(),
        "web",
        r#"{"selectors": ["web"], "certs": {"tls": {"subject": {"common_name": "web.internal",
            "organization": "Acme", "organizational_unit": "Ops", "country": "DE",
            "province": "Berlin", "locality": "Mitte"}}}}"#,
        &[],
    );
    maand(dir.path()).arg("build").assert().success();
    let pem = kv(
        dir.path(),
        "maand/job/web/worker/127.0.0.1",
        "certs/tls.crt",
    );
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    let cert = pem.parse_x509().unwrap();
    let subject = cert.subject().to_string();
    for part in [
        "CN=web.internal",
        "O=Acme",
        "OU=Ops",
        "C=DE",
        "ST=Berlin",
        "L=Mitte",
    ] {
        assert!(subject.contains(part), "{part} missing from {subject}");
    }
}

#[test]
fn a_bad_subject_attribute_fails_the_build_naming_it() {
    let dir = bucket();
    job(
        dir.path(),
        "web",
        r#"{"selectors": ["web"], "certs": {"tls": {"subject": {"common_name": "web", "country": "Germany"}}}}"#,
        &[],
    );
    maand(dir.path())
        .arg("build")
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "workspace/jobs/web/manifest.json: certs.tls.subject.country",
        ))
        .stderr(predicate::str::contains("two-letter country code"));
}
