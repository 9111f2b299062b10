//! `maand init` on a bucket of the Go maand: the database the Go maand leaves (written from
//! scratch by `support::go_bucket`) is imported in place, nothing or everything; `maand info`
//! says what it is.

mod support;

use std::path::Path;
use support::bucket::{run_maand, run_maand_ok};
use support::go_bucket::{go_seal, write_go_db, GoBucketSpec, GoJobSpec, GoKv, GoWorkerSpec};

const BUCKET_ID: &str = "5b0e7f63-1f7c-4a44-9d53-2a1c0c6f3e11";

/// A directory laid out as a Go bucket: secrets (CA, kv.key) and workspace from a fresh
/// `maand init`, then `data/maand.db` replaced by a Go database built from `spec`.
fn go_bucket_dir(spec: &GoBucketSpec) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    run_maand_ok(dir.path(), &["init"]);
    for name in ["maand.db", "maand.db-wal", "maand.db-shm", "maand.lock"] {
        let _ = std::fs::remove_file(dir.path().join("data").join(name));
    }
    std::fs::remove_dir_all(dir.path().join("logs")).unwrap();
    std::fs::create_dir(dir.path().join("logs")).unwrap();
    write_go_db(&dir.path().join("data/maand.db"), spec);
    dir
}

fn kv_key(dir: &Path) -> [u8; 32] {
    std::fs::read(dir.join("secrets/kv.key"))
        .unwrap()
        .try_into()
        .unwrap()
}

fn kv(namespace: &str, key: &str, value: &str, version: i64, created: i64) -> GoKv {
    GoKv {
        namespace: namespace.into(),
        key: key.into(),
        value: value.into(),
        version,
        created,
        deleted: false,
    }
}

/// Two workers, one job on both (deployed), KV history with a deletion and a revival, and
/// secrets sealed with `seal` (the Go format under the bucket's kv.key unless a test says
/// otherwise).
fn spec(seal: &dyn Fn(&str) -> String) -> GoBucketSpec {
    let manifest = r#"{"version": "1.4.0", "selectors": ["web"], "restart_policy": "reload", "resources": {"ports": {"http": {}}}}"#;
    let mut deleted = kv("vars/job/web", "greeting", "hi", 3, 1_700_000_200);
    deleted.deleted = true;
    GoBucketSpec {
        bucket_id: BUCKET_ID.into(),
        update_seq: 7,
        schema_version: 1,
        workers: vec![
            GoWorkerSpec {
                ip: "127.31.0.1".into(),
                labels: vec!["web".into()],
                tags: vec![("zone".into(), "a".into())],
                memory_mb: "2048".into(),
            },
            GoWorkerSpec {
                ip: "127.31.0.2".into(),
                labels: vec!["web".into(), "db".into()],
                tags: vec![],
                memory_mb: "4096".into(),
            },
        ],
        jobs: vec![GoJobSpec {
            name: "web".into(),
            version: "1.4.0".into(),
            selectors: vec!["web".into()],
            files: vec![
                ("manifest.json".into(), manifest.as_bytes().to_vec()),
                ("Makefile".into(), b"start:\n\t@true\n".to_vec()),
                ("bin/run.sh".into(), b"#!/bin/sh\nexec true\n".to_vec()),
            ],
            ports: vec![("http".into(), 31080)],
            certs: vec!["tls".into()],
        }],
        deployed: vec![
            ("web".into(), "127.31.0.1".into(), "1.4.0".into()),
            ("web".into(), "127.31.0.2".into(), "1.3.0".into()),
        ],
        kv: vec![
            kv("maand/bucket", "bucket_id", BUCKET_ID, 1, 1_700_000_000),
            kv("vars/job/web", "greeting", "hello", 1, 1_700_000_000),
            kv("vars/job/web", "greeting", "hi", 2, 1_700_000_100),
            deleted,
            kv("vars/job/web", "greeting", "again", 1, 1_700_000_300),
            kv(
                "secrets/job/web",
                "password",
                &seal("first-pass"),
                1,
                1_700_000_000,
            ),
            kv(
                "secrets/job/web",
                "password",
                &seal("second-pass"),
                2,
                1_700_000_400,
            ),
            kv("secrets/job/web", "token", &seal("t0k3n"), 1, 1_700_000_500),
        ],
    }
}

fn sql(dir: &Path, query: &str) -> String {
    let out = std::process::Command::new("sqlite3")
        .arg(dir.join("data/maand.db"))
        .arg(query)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A bucket whose secrets are sealed with its own kv.key.
fn sealed_go_bucket() -> (tempfile::TempDir, Vec<u8>) {
    let scratch = go_bucket_dir(&spec(&|v| v.to_string()));
    let key = kv_key(scratch.path());
    let dir = go_bucket_dir(&spec(&|v| go_seal(&key, v)));
    // The secrets of `dir` must be sealed with `dir`'s key: reuse the key of `scratch`.
    std::fs::copy(
        scratch.path().join("secrets/kv.key"),
        dir.path().join("secrets/kv.key"),
    )
    .unwrap();
    let original = std::fs::read(dir.path().join("data/maand.db")).unwrap();
    (dir, original)
}

#[test]
fn info_and_other_commands_say_it_is_a_go_bucket_and_how_to_import_it() {
    let (dir, original) = sealed_go_bucket();
    for args in [&["info"][..], &["build"][..]] {
        let out = run_maand(dir.path(), args);
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(err.contains("bucket of the Go maand"), "{err}");
        assert!(err.contains("maand init"), "{err}");
    }
    assert_eq!(
        std::fs::read(dir.path().join("data/maand.db")).unwrap(),
        original
    );
}

#[test]
fn init_without_a_terminal_and_without_yes_refuses_and_changes_nothing() {
    let (dir, original) = sealed_go_bucket();
    let out = run_maand(dir.path(), &["init"]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(BUCKET_ID), "{stdout}");
    assert!(stdout.contains("data/go-maand.db"), "{stdout}");
    assert!(stderr(&out).contains("--yes"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(dir.path().join("data/maand.db")).unwrap(),
        original
    );
    assert!(!dir.path().join("data/go-maand.db").exists());
}

#[test]
fn init_yes_imports_identity_catalog_kv_history_secrets_and_deployment_state() {
    let (dir, original) = sealed_go_bucket();
    let path = dir.path();
    run_maand_ok(path, &["init", "--yes"]);

    // The Go database is kept, byte for byte.
    assert_eq!(
        std::fs::read(path.join("data/go-maand.db")).unwrap(),
        original
    );
    let info: serde_json::Value =
        serde_json::from_str(&run_maand_ok(path, &["info", "--json"])).unwrap();
    assert_eq!(info["bucket_id"], BUCKET_ID);
    assert_eq!(info["update_seq"], 7);
    assert_eq!(info["workers"], 2);
    assert_eq!(info["jobs"], 1);
    assert_eq!(info["allocations"], 2);

    assert_eq!(
        sql(path, "SELECT host, labels, memory_mb, tags FROM workers ORDER BY position"),
        "127.31.0.1|[\"web\",\"worker\"]|2048|{\"zone\":\"a\"}\n127.31.0.2|[\"db\",\"web\",\"worker\"]|4096|{}"
    );
    assert_eq!(
        sql(path, "SELECT version, restart_policy, selectors FROM jobs"),
        "1.4.0|reload|[\"web\"]"
    );
    assert_eq!(
        sql(path, "SELECT path, executable FROM job_files ORDER BY path"),
        "Makefile|0\nbin/run.sh|1\nmanifest.json|0"
    );
    assert_eq!(
        sql(path, "SELECT name, port, assigned FROM job_ports"),
        "http|31080|1"
    );
    assert_eq!(sql(path, "SELECT name FROM job_certs"), "tls");
    // Allocation ids are the ones `maand build` derives, so the first build keeps them.
    let ids = sql(path, "SELECT alloc_id FROM allocations ORDER BY worker_ip");
    assert_eq!(
        ids.lines().collect::<Vec<_>>(),
        [
            maand::build::alloc_id("web", "127.31.0.1"),
            maand::build::alloc_id("web", "127.31.0.2")
        ]
    );
    // Every KV version, in order, deletions included, with the Go maand's times.
    assert_eq!(
        sql(
            path,
            "SELECT version, value, deleted, time_ms FROM kv WHERE namespace = 'vars/job/web' ORDER BY version"
        ),
        "1|hello|0|1700000000000\n2|hi|0|1700000100000\n3||1|1700000200000\n4|again|0|1700000300000"
    );
    // Secrets are sealed in our format (bound to namespace and key) and open to the planted values.
    assert_eq!(
        sql(
            path,
            "SELECT count(*) FROM kv WHERE namespace = 'secrets/job/web' AND sealed = 1 AND value LIKE 'v1:%'"
        ),
        "3"
    );
    for (key, value) in [("password", "second-pass"), ("token", "t0k3n")] {
        let out = run_maand_ok(
            path,
            &["cat", "kv", "get", "secrets/job/web", key, "--reveal"],
        );
        assert!(out.contains(value), "{key}: {out}");
    }
    // Deployed allocations are adopted, with the version the Go maand promoted.
    assert_eq!(
        sql(
            path,
            "SELECT worker_ip, current_version, adopted FROM deployments ORDER BY worker_ip"
        ),
        "127.31.0.1|1.4.0|1\n127.31.0.2|1.3.0|1"
    );

    // The import is an ordinary part of the journal.
    run_maand_ok(path, &["journal", "verify"]);
    run_maand_ok(path, &["journal", "rebuild"]);
    run_maand_ok(path, &["journal", "verify"]);
    let logs = run_maand_ok(path, &["logs", "show"]);
    assert!(logs.contains("bucket_imported"), "{logs}");
    assert!(
        !logs.contains("second-pass"),
        "a secret leaked into the log"
    );
    let before = run_maand_ok(path, &["cat", "workers", "--at", "1"]);
    assert!(!before.contains("127.31.0.1"), "{before}");
    let head = sql(path, "SELECT max(seq) FROM journal");
    let after = run_maand_ok(path, &["cat", "workers", "--at", &head]);
    assert!(after.contains("127.31.0.1"), "{after}");
}

#[test]
fn a_second_init_after_an_import_changes_nothing() {
    let (dir, _) = sealed_go_bucket();
    run_maand_ok(dir.path(), &["init", "--yes"]);
    let head = sql(dir.path(), "SELECT max(seq) FROM journal");
    let kv_rows = sql(dir.path(), "SELECT count(*) FROM kv");
    let out = run_maand_ok(dir.path(), &["init"]);
    assert!(out.contains("up to date"), "{out}");
    assert_eq!(
        sql(
            dir.path(),
            &format!("SELECT count(*) FROM journal WHERE seq > {head} AND kind NOT IN ('run_started', 'run_finished')")
        ),
        "0"
    );
    assert_eq!(sql(dir.path(), "SELECT count(*) FROM kv"), kv_rows);
}

/// Runs `init --yes` expecting a refusal that names `needle` and leaves the bucket as it was.
fn refused_unchanged(dir: &Path, original: &[u8], needle: &str) {
    let out = run_maand(dir, &["init", "--yes"]);
    assert!(!out.status.success(), "import should have been refused");
    let err = stderr(&out);
    assert!(err.contains(needle), "{err}");
    assert!(err.contains("nothing was changed"), "{err}");
    assert!(
        std::fs::read(dir.join("data/maand.db")).unwrap() == original,
        "data/maand.db changed"
    );
    for leftover in ["data/go-maand.db", "data/maand.db.importing"] {
        assert!(!dir.join(leftover).exists(), "{leftover} was left behind");
    }
}

#[test]
fn an_unknown_go_schema_version_is_refused() {
    let mut spec = spec(&|v| v.to_string());
    spec.schema_version = 2;
    let dir = go_bucket_dir(&spec);
    let original = std::fs::read(dir.path().join("data/maand.db")).unwrap();
    refused_unchanged(dir.path(), &original, "schema_version 2");
}

#[test]
fn a_secret_sealed_under_another_key_is_refused_by_name() {
    let dir = go_bucket_dir(&spec(&|v| go_seal(&[9u8; 32], v)));
    let original = std::fs::read(dir.path().join("data/maand.db")).unwrap();
    refused_unchanged(
        dir.path(),
        &original,
        "secret `password` in namespace `secrets/job/web`",
    );
}

#[test]
fn a_truncated_database_is_refused() {
    let (dir, original) = sealed_go_bucket();
    let truncated = &original[..original.len() / 2];
    std::fs::write(dir.path().join("data/maand.db"), truncated).unwrap();
    refused_unchanged(dir.path(), truncated, "damaged or truncated");
}

#[test]
fn kill_9_during_the_import_leaves_the_go_bucket_or_the_finished_import() {
    let (dir, original) = sealed_go_bucket();
    let path = dir.path();
    // Kill the import at increasing points; after each kill the bucket is either the
    // untouched Go bucket or completely imported, never anything in between.
    for delay_ms in [0u64, 2, 5, 10, 20, 40, 80] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_maand"))
            .args(["init", "--yes"])
            .current_dir(path)
            .env_remove("MAAND_BUCKET")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        child.wait().unwrap();
        let now = std::fs::read(path.join("data/maand.db")).unwrap();
        if now == original {
            continue;
        }
        run_maand_ok(path, &["journal", "verify"]);
        assert_eq!(
            sql(
                path,
                "SELECT count(*) FROM kv WHERE namespace = 'vars/job/web'"
            ),
            "4"
        );
        break;
    }
    // Whatever happened, one more init finishes (or keeps) the import.
    run_maand_ok(path, &["init", "--yes"]);
    run_maand_ok(path, &["journal", "verify"]);
    let info: serde_json::Value =
        serde_json::from_str(&run_maand_ok(path, &["info", "--json"])).unwrap();
    assert_eq!(info["bucket_id"], BUCKET_ID);
    assert_eq!(
        sql(
            path,
            "SELECT count(*) FROM kv WHERE namespace = 'vars/job/web'"
        ),
        "4"
    );
}

#[test]
fn leftovers_of_a_killed_import_do_not_stop_the_next_one() {
    let (dir, _) = sealed_go_bucket();
    std::fs::write(
        dir.path().join("data/maand.db.importing"),
        b"half a database",
    )
    .unwrap();
    std::fs::write(dir.path().join("data/go-maand.db"), b"half a copy").unwrap();
    run_maand_ok(dir.path(), &["init", "--yes"]);
    run_maand_ok(dir.path(), &["journal", "verify"]);
    assert!(!dir.path().join("data/maand.db.importing").exists());
}

/// A Makefile that appends every lifecycle target it runs to `data/events`.
const RECORDING_MAKEFILE: &str = "\
.PHONY: start stop restart reload
start:
\t@mkdir -p data && echo start >> data/events
stop:
\t@mkdir -p data && echo stop >> data/events
restart:
\t@mkdir -p data && echo restart >> data/events
reload:
\t@mkdir -p data && echo reload >> data/events
";

fn lifecycle_lines(
    cluster: &support::cluster::Cluster,
    bucket: &support::bucket::TestBucket,
    host: &str,
    job: &str,
) -> Vec<String> {
    cluster
        .ssh_ok(
            host,
            &format!("cat {}/jobs/{job}/data/events", bucket.remote_dir()),
        )
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_deployed_bucket_imported_from_the_go_format_redeploys_without_restarting_anything() {
    let cluster = support::cluster::Cluster::start(2);
    let bucket = support::bucket::TestBucket::new(&cluster, &[&["a"], &["a"]]);
    for job in ["one", "two"] {
        bucket.write(
            &format!("workspace/jobs/{job}/manifest.json"),
            r#"{"version": "1.0.0", "selectors": ["a"]}"#,
        );
        bucket.write(
            &format!("workspace/jobs/{job}/Makefile"),
            RECORDING_MAKEFILE,
        );
        bucket.write(&format!("workspace/jobs/{job}/app.conf"), "v1\n");
    }
    bucket.maand_ok(&["build"]);
    bucket.maand_ok(&["deploy"]);
    let update_seq = bucket.sql("SELECT update_seq FROM bucket");

    support::go_bucket::convert_to_go_bucket(bucket.path());
    bucket.maand_ok(&["init", "--yes"]);
    assert_eq!(bucket.sql("SELECT bucket_id FROM bucket"), bucket.bucket_id);
    assert_eq!(bucket.sql("SELECT update_seq FROM bucket"), update_seq);
    assert_eq!(
        bucket.sql("SELECT count(*) FROM deployments WHERE adopted = 1"),
        "4"
    );
    bucket.maand_ok(&["build"]);
    bucket.maand_ok(&["deploy"]);
    for host in cluster.hosts() {
        for job in ["one", "two"] {
            assert_eq!(
                lifecycle_lines(&cluster, &bucket, host, job),
                ["start"],
                "{job}@{host} ran a lifecycle target after the import"
            );
        }
    }
    assert_eq!(
        bucket.sql("SELECT count(*) FROM deployments WHERE adopted = 0 AND previous_hash = current_hash AND current_version = '1.0.0'"),
        "4"
    );
    bucket.maand_ok(&["journal", "verify"]);

    // After that first deploy the allocations are ordinary: a changed file restarts its job only.
    bucket.write("workspace/jobs/one/app.conf", "v2\n");
    bucket.maand_ok(&["build"]);
    bucket.maand_ok(&["deploy"]);
    for host in cluster.hosts() {
        assert_eq!(
            lifecycle_lines(&cluster, &bucket, host, "one"),
            ["start", "restart"]
        );
        assert_eq!(lifecycle_lines(&cluster, &bucket, host, "two"), ["start"]);
    }
}
