//! Black-box tests of `maand build`: a good multi-job workspace end to end, and one bad
//! workspace per documented error kind (each must fail, name the file, and change nothing).

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

/// `maand cat kv get NAMESPACE KEY`, as an operator reads a key (peer lists are derived on
/// read, so the kv table alone does not hold them).
fn kv_get(bucket: &Path, namespace: &str, key: &str) -> String {
    let out = maand(bucket)
        .args(["cat", "kv", "get", namespace, key])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn sqlite(db: &Path, sql: &str) -> String {
    let out = std::process::Command::new("sqlite3")
        .arg(db)
        .arg(sql)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// An initialized bucket with three workers and two jobs that build cleanly.
fn good_bucket() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    maand(dir.path()).arg("init").assert().success();
    write(
        dir.path(),
        "workspace/workers.json",
        r#"[
  {"host": "127.9.0.1", "labels": ["web"], "memory": "2 gb", "cpu": "2 ghz", "tags": {"zone": "a"}},
  {"host": "127.9.0.2", "labels": ["web", "db"], "memory": "2 gb", "cpu": "2 ghz"},
  {"host": "127.9.0.3", "labels": ["db"], "memory": "2 gb", "cpu": "2 ghz"}
]"#,
    );
    write(
        dir.path(),
        "workspace/jobs/db/manifest.json",
        r#"{"version": "2.1", "selectors": ["db"], "resources": {"memory": {"min": "256 mb", "max": "1 gb"}, "ports": {"db_port": {}}},
            "commands": {"command_schema": {"executed_on": ["cli"]}}}"#,
    );
    write(
        dir.path(),
        "workspace/jobs/db/Makefile",
        "start:\n\t@echo start\n",
    );
    write(
        dir.path(),
        "workspace/jobs/db/_modules/command_schema.py",
        "print('schema')\n",
    );
    write(
        dir.path(),
        "workspace/jobs/web/manifest.json",
        r#"{"version": "1.0.0", "selectors": ["web"], "resources": {"ports": {"web_port": {}}},
            "commands": {"command_migrate": {"executed_on": ["cli"], "demands": {"job": "db", "command": "command_schema", "config": {"min_version": "2.0.0"}}}}}"#,
    );
    write(
        dir.path(),
        "workspace/jobs/web/Makefile",
        "start:\n\t@echo start\n",
    );
    write(
        dir.path(),
        "workspace/jobs/web/_modules/command_migrate.py",
        "print('migrate')\n",
    );
    write(
        dir.path(),
        "workspace/bucket.jobs.conf",
        "[db]\nmemory = \"512 mb\"\nflavour = \"small\"\n",
    );
    write(
        dir.path(),
        "workspace/jobs/web/vars.toml",
        "greeting = \"hello\"\n",
    );
    dir
}

#[test]
fn a_good_workspace_builds_places_and_a_second_build_records_nothing() {
    let dir = good_bucket();
    maand(dir.path())
        .arg("build")
        .assert()
        .success()
        .stdout(predicate::str::contains("recorded"));
    let db = dir.path().join("data/maand.db");
    assert_eq!(
        sqlite(
            &db,
            "SELECT job || '@' || worker_ip FROM allocations WHERE removed = 0 ORDER BY 1"
        ),
        "db@127.9.0.2\ndb@127.9.0.3\nweb@127.9.0.1\nweb@127.9.0.2"
    );
    assert_eq!(
        sqlite(
            &db,
            "SELECT name || '=' || deployment_seq FROM jobs ORDER BY 1"
        ),
        "db=0\nweb=1"
    );
    assert_eq!(
        sqlite(
            &db,
            "SELECT name || '=' || port FROM job_ports ORDER BY port"
        ),
        "db_port=30000\nweb_port=30001"
    );
    assert_eq!(
        sqlite(
            &db,
            "SELECT current_memory_mb || ' ' || resources_source FROM jobs WHERE name = 'db'"
        ),
        "512 bucket.jobs.conf"
    );
    let kv = |ns: &str, key: &str| {
        sqlite(&db, &format!("SELECT value FROM kv WHERE namespace = '{ns}' AND key = '{key}' ORDER BY version DESC LIMIT 1"))
    };
    assert_eq!(kv("maand/job/db", "workers"), "127.9.0.2,127.9.0.3");
    assert_eq!(
        kv_get(dir.path(), "maand/job/db/worker/127.9.0.2", "peer_workers"),
        "127.9.0.3"
    );
    assert_eq!(
        kv("maand/job/db/worker/127.9.0.3", "db_allocation_index"),
        "1"
    );
    assert_eq!(kv("maand/bucket", "web_port"), "30001");
    assert_eq!(kv("vars/bucket/job/db", "flavour"), "small");
    assert_eq!(kv("vars/job/web", "greeting"), "hello");
    assert_eq!(kv("maand/worker/127.9.0.1/tags", "zone"), "a");
    let head = sqlite(&db, "SELECT max(seq) FROM journal");
    maand(dir.path())
        .arg("build")
        .assert()
        .success()
        .stdout(predicate::str::contains("already matches"));
    // Only the second run's own two events were added.
    assert_eq!(
        sqlite(&db, "SELECT max(seq) FROM journal")
            .parse::<u64>()
            .unwrap(),
        head.parse::<u64>().unwrap() + 2
    );
    maand(dir.path())
        .args(["journal", "verify"])
        .assert()
        .success();
}

#[test]
fn removing_a_worker_marks_its_allocations_removed_and_keeps_the_rest() {
    let dir = good_bucket();
    maand(dir.path()).arg("build").assert().success();
    write(
        dir.path(),
        "workspace/workers.json",
        r#"[{"host": "127.9.0.1", "labels": ["web"], "memory": "2 gb", "cpu": "2 ghz"},
            {"host": "127.9.0.2", "labels": ["web", "db"], "memory": "2 gb", "cpu": "2 ghz"}]"#,
    );
    maand(dir.path()).arg("build").assert().success();
    let db = dir.path().join("data/maand.db");
    assert_eq!(
        sqlite(
            &db,
            "SELECT removed FROM allocations WHERE job = 'db' AND worker_ip = '127.9.0.3'"
        ),
        "1"
    );
    assert_eq!(sqlite(&db, "SELECT count(*) FROM workers"), "2");
    assert_eq!(
        sqlite(&db, "SELECT value FROM kv WHERE namespace = 'maand/job/db' AND key = 'workers' ORDER BY version DESC LIMIT 1"),
        "127.9.0.2"
    );
    maand(dir.path())
        .args(["journal", "verify"])
        .assert()
        .success();
}

#[test]
fn disabled_allocations_stay_placed_but_leave_the_active_worker_lists() {
    let dir = good_bucket();
    write(
        dir.path(),
        "workspace/disabled.json",
        r#"{"jobs": {"db": {"allocations": ["127.9.0.3"]}}}"#,
    );
    maand(dir.path()).arg("build").assert().success();
    let db = dir.path().join("data/maand.db");
    assert_eq!(sqlite(&db, "SELECT disabled || removed FROM allocations WHERE job = 'db' AND worker_ip = '127.9.0.3'"), "10");
    assert_eq!(
        sqlite(&db, "SELECT value FROM kv WHERE namespace = 'maand/job/db' AND key = 'workers' ORDER BY version DESC LIMIT 1"),
        "127.9.0.2"
    );
    assert_eq!(
        kv_get(dir.path(), "maand/job/db/worker/127.9.0.2", "peer_workers"),
        "127.9.0.3"
    );
}

#[test]
fn certificates_are_issued_per_allocation_with_sealed_keys_and_kept_on_rebuild() {
    let dir = good_bucket();
    write(
        dir.path(),
        "workspace/jobs/db/manifest.json",
        r#"{"version": "2.1", "selectors": ["db"], "resources": {"ports": {"db_port": {}}},
            "commands": {"command_schema": {"executed_on": ["cli"]}},
            "certs": {"tls": {"subject": {"common_name": "db.internal"}}}}"#,
    );
    maand(dir.path()).arg("build").assert().success();
    let db = dir.path().join("data/maand.db");
    let cert = |ip: &str| {
        sqlite(&db, &format!("SELECT value FROM kv WHERE namespace = 'maand/job/db/worker/{ip}' AND key = 'certs/tls.crt'"))
    };
    assert!(cert("127.9.0.2").starts_with("-----BEGIN CERTIFICATE-----"));
    assert_ne!(cert("127.9.0.2"), cert("127.9.0.3"));
    let key = sqlite(&db, "SELECT sealed || ' ' || substr(value, 1, 3) FROM kv WHERE namespace = 'maand/job/db/worker/127.9.0.2' AND key = 'certs/tls.key'");
    assert_eq!(key, "1 v1:");
    assert_eq!(
        sqlite(
            &db,
            "SELECT count(*) FROM journal WHERE payload LIKE '%PRIVATE KEY%'"
        ),
        "0"
    );
    maand(dir.path())
        .arg("build")
        .assert()
        .success()
        .stdout(predicate::str::contains("already matches"));
}

/// Writes `files` over a good bucket, builds, and expects a failure mentioning every needle,
/// with the catalog unchanged (only the failed run's two events appended).
fn expect_build_error(files: &[(&str, &str)], needles: &[&str]) {
    let dir = good_bucket();
    for (path, text) in files {
        write(dir.path(), path, text);
    }
    let db = dir.path().join("data/maand.db");
    let head: u64 = sqlite(&db, "SELECT max(seq) FROM journal").parse().unwrap();
    let mut assertion = maand(dir.path()).arg("build").assert().failure();
    for needle in needles {
        assertion = assertion.stderr(predicate::str::contains(*needle));
    }
    assert_eq!(
        sqlite(&db, "SELECT max(seq) FROM journal")
            .parse::<u64>()
            .unwrap(),
        head + 2
    );
    assert_eq!(
        sqlite(
            &db,
            "SELECT outcome FROM runs ORDER BY started_seq DESC LIMIT 1"
        ),
        "failed"
    );
    assert_eq!(sqlite(&db, "SELECT count(*) FROM allocations"), "0");
}

#[test]
fn duplicate_worker_host_is_rejected() {
    expect_build_error(
        &[(
            "workspace/workers.json",
            r#"[{"host": "127.9.0.1"}, {"host": "127.9.0.1"}]"#,
        )],
        &[
            "workspace/workers.json",
            "ErrInvalidWorkerJSON",
            "127.9.0.1",
        ],
    );
}

#[test]
fn hostile_worker_host_and_label_are_rejected() {
    expect_build_error(
        &[(
            "workspace/workers.json",
            r#"[{"host": "127.9.0.1;rm -rf /", "labels": ["$(reboot)"]}]"#,
        )],
        &["workspace/workers.json", "127.9.0.1;rm -rf /", "$(reboot)"],
    );
}

#[test]
fn missing_makefile_is_rejected() {
    let dir = good_bucket();
    std::fs::remove_file(dir.path().join("workspace/jobs/web/Makefile")).unwrap();
    maand(dir.path()).arg("build").assert().failure().stderr(
        predicate::str::contains("workspace/jobs/web").and(predicate::str::contains("Makefile")),
    );
}

#[test]
fn unknown_demand_is_rejected() {
    expect_build_error(
        &[(
            "workspace/jobs/web/manifest.json",
            r#"{"version": "1.0.0", "selectors": ["web"], "commands": {"command_migrate": {"executed_on": ["cli"], "demands": {"job": "nope", "command": "command_x"}}}}"#,
        )],
        &[
            "workspace/jobs/web/manifest.json",
            "ErrInvalidJobCommandDemand",
            "nope",
        ],
    );
}

#[test]
fn missing_version_on_a_demand_participant_is_rejected() {
    expect_build_error(
        &[(
            "workspace/jobs/web/manifest.json",
            r#"{"selectors": ["web"], "commands": {"command_migrate": {"executed_on": ["cli"], "demands": {"job": "db", "command": "command_schema"}}}}"#,
        )],
        &["ErrInvalidJobVersion", "workspace/jobs/web/manifest.json"],
    );
}

#[test]
fn demand_version_out_of_range_is_rejected() {
    expect_build_error(
        &[(
            "workspace/jobs/web/manifest.json",
            r#"{"version": "1.0.0", "selectors": ["web"], "commands": {"command_migrate": {"executed_on": ["cli"], "demands": {"job": "db", "command": "command_schema", "config": {"min_version": 3}}}}}"#,
        )],
        &["ErrJobCommandDemandVersionMismatch", "2.1.0"],
    );
}

#[test]
fn circular_demands_are_rejected_naming_the_cycle() {
    expect_build_error(
        &[(
            "workspace/jobs/db/manifest.json",
            r#"{"version": "2.1", "selectors": ["db"], "commands": {"command_schema": {"executed_on": ["cli"], "demands": {"job": "web", "command": "command_migrate"}}}}"#,
        )],
        &["ErrCircularJobCommandDependency", "db", "web"],
    );
}

#[test]
fn bad_port_name_value_and_range_are_rejected() {
    expect_build_error(
        &[(
            "workspace/jobs/web/manifest.json",
            r#"{"version": "1.0.0", "selectors": ["web"], "resources": {"ports": {"Web-Port": {}, "admin_port": 70000}}}"#,
        )],
        &["ErrPortKeyFormat", "ErrInvalidManifestPort", "70000"],
    );
    expect_build_error(
        &[(
            "workspace/bucket.conf",
            "port_min = \"40000\"\nport_max = \"30000\"\n",
        )],
        &["ErrInvalidPortRange"],
    );
}

#[test]
fn an_exhausted_port_pool_is_rejected() {
    expect_build_error(
        &[(
            "workspace/bucket.conf",
            "port_min = \"30000\"\nport_max = \"30000\"\n",
        )],
        &["ErrPortRangeExhausted", "workspace/bucket.conf"],
    );
}

#[test]
fn too_few_allocations_are_rejected() {
    expect_build_error(
        &[(
            "workspace/jobs/web/manifest.json",
            r#"{"version": "1.0.0", "selectors": ["web"], "min_allocations_count": 3}"#,
        )],
        &[
            "ErrInsufficientAllocations",
            "workspace/jobs/web/manifest.json",
        ],
    );
}

#[test]
fn reservations_beyond_worker_capacity_are_rejected() {
    expect_build_error(
        &[
            ("workspace/bucket.jobs.conf", "[db]\nmemory = \"1 gb\"\n"),
            (
                "workspace/workers.json",
                r#"[{"host": "127.9.0.2", "labels": ["web", "db"], "memory": "512 mb", "cpu": "2 ghz"}, {"host": "127.9.0.3", "labels": ["db"]}]"#,
            ),
        ],
        &[
            "ErrInsufficientResource",
            "127.9.0.2",
            "must declare memory",
        ],
    );
}

#[test]
fn post_build_hooks_run_after_the_catalog_commit_and_fail_the_build_when_they_fail() {
    let dir = good_bucket();
    write(
        dir.path(),
        "workspace/jobs/db/manifest.json",
        r#"{"version": "2.1", "selectors": ["db"], "resources": {"memory": {"min": "256 mb", "max": "1 gb"}, "ports": {"db_port": {}}},
            "commands": {"command_schema": {"executed_on": ["cli", "post_build"]}}}"#,
    );
    write(
        dir.path(),
        "workspace/jobs/db/_modules/command_schema.py",
        "import maand\nmaand.put_job_variable('built_on_' + maand.allocation_ip(), 'yes').raise_for_status()\n",
    );
    maand(dir.path())
        .arg("build")
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "post_build: command_schema of job db ran on 2 allocation(s)",
        ));
    let db = dir.path().join("data/maand.db");
    assert_eq!(
        sqlite(
            &db,
            "SELECT group_concat(key) FROM (SELECT key FROM kv WHERE namespace = 'vars/job/db' AND key LIKE 'built_on_%' ORDER BY key)"
        ),
        "built_on_127.9.0.2,built_on_127.9.0.3"
    );

    write(
        dir.path(),
        "workspace/jobs/db/_modules/command_schema.py",
        "import sys\nsys.exit(2)\n",
    );
    maand(dir.path()).arg("build").assert().failure().stderr(
        predicate::str::contains("post_build failed").and(predicate::str::contains("exit code 2")),
    );
    // The catalog commit of the failed build stays: the new script is the catalog's.
    assert_eq!(
        sqlite(
            &db,
            "SELECT count(*) FROM job_files f JOIN blobs b ON b.hash = f.hash WHERE f.job = 'db' AND f.path = '_modules/command_schema.py' AND CAST(b.content AS TEXT) LIKE '%exit(2)%'"
        ),
        "1"
    );
}

#[test]
fn symlink_leaving_the_job_directory_is_rejected() {
    let dir = good_bucket();
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("workspace/jobs/web/passwd"))
        .unwrap();
    maand(dir.path())
        .arg("build")
        .assert()
        .failure()
        .stderr(predicate::str::contains("/etc/passwd"));
}

#[test]
fn cat_at_an_earlier_run_shows_the_allocations_of_that_time() {
    let dir = good_bucket();
    maand(dir.path()).arg("build").assert().success();
    let db = dir.path().join("data/maand.db");
    let first_build = sqlite(
        &db,
        "SELECT run_id FROM runs WHERE command = 'build' ORDER BY started_seq LIMIT 1",
    );
    write(
        dir.path(),
        "workspace/workers.json",
        r#"[{"host": "127.9.0.1", "labels": ["web"], "memory": "2 gb", "cpu": "2 ghz"}]"#,
    );
    maand(dir.path()).arg("build").assert().success();
    let now = maand(dir.path())
        .args(["cat", "allocations", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let then = maand(dir.path())
        // Nine characters: with the dash, a prefix of only digits cannot read as a sequence.
        .args(["cat", "allocations", "--json", "--at", &first_build[..9]])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let removed = |json: &[u8]| -> usize {
        let rows: Vec<serde_json::Value> = serde_json::from_slice(json).unwrap();
        rows.iter().filter(|r| r["removed"] == true).count()
    };
    assert_eq!(removed(&then), 0);
    assert_eq!(removed(&now), 3);
    maand(dir.path())
        .args(["cat", "workers", "--at", "999999"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("the journal holds events 1 to"));
    // A run id prefix is matched literally: SQL wildcards match nothing.
    for wildcard in ["%", "_", &format!("{}%", &first_build[..4])] {
        maand(dir.path())
            .args(["cat", "workers", "--at", wildcard])
            .assert()
            .failure()
            .stderr(predicate::str::contains("no run id starts with that"));
    }
}
