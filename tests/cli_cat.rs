//! Black-box tests of `maand cat` and `maand job create`: a real bucket made by `maand init`,
//! a workspace written to disk, `maand build`, and KV changes a job command would make
//! committed through the library. Tables are compared with insta snapshots; the bucket id and
//! times are filtered out.

use assert_cmd::Command;
use maand::events::{Event, KvChange, KvChanged, KvValue};
use predicates::prelude::*;
use std::fs;
use std::path::{Path, PathBuf};

const SECRET: &str = "s3cret-plaintext";

fn maand(bucket: &Path) -> Command {
    let mut cmd = Command::cargo_bin("maand").unwrap();
    cmd.current_dir(bucket)
        .env_remove("MAAND_BUCKET")
        .env_remove("RUST_LOG");
    cmd
}

fn stdout(bucket: &Path, args: &[&str]) -> String {
    let out = maand(bucket).args(args).assert().success();
    String::from_utf8(out.get_output().stdout.clone()).unwrap()
}

fn stderr_of_failure(bucket: &Path, args: &[&str]) -> String {
    let out = maand(bucket).args(args).assert().failure();
    String::from_utf8(out.get_output().stderr.clone()).unwrap()
}

fn write(path: PathBuf, content: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

fn init() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    maand(dir.path()).arg("init").assert().success();
    dir
}

fn bucket_id(bucket: &Path) -> String {
    let info: serde_json::Value =
        serde_json::from_str(&stdout(bucket, &["info", "--json"])).unwrap();
    info["bucket_id"].as_str().unwrap().to_string()
}

/// Commits events the way a job command's KV writes would reach the catalog.
fn record(bucket: &Path, events: Vec<Event>) {
    let mut conn = maand::bucket::open(&bucket.join("data/maand.db")).unwrap();
    maand::catalog::commit(&mut conn, "test-run", 1, &events, &[]).unwrap();
}

fn kv(namespace: &str, changes: Vec<KvChange>) -> Event {
    Event::KvChanged(KvChanged {
        namespace: namespace.into(),
        changes,
    })
}

fn put(key: &str, value: KvValue) -> KvChange {
    KvChange::Put {
        key: key.into(),
        value,
    }
}

const WORKERS: &str = r#"[
  {"host": "127.9.0.1", "hostname": "node-a", "labels": ["api"], "memory": "4096 mb", "cpu": "2000 mhz", "tags": {"zone": "east"}},
  {"host": "127.9.0.2", "labels": ["api", "db"], "memory": "8192 mb", "tags": {"zone": "west", "rack": "r2"}},
  {"host": "127.9.0.3", "labels": ["db"]}
]"#;

const API_MANIFEST: &str = r#"{
  "version": "1.0.0",
  "selectors": ["api"],
  "resources": {"ports": {"api_http": {}}},
  "commands": {
    "command_wait": {
      "executed_on": ["pre_deploy"],
      "demands": {"job": "db", "command": "command_ready", "config": {"retries": 3}}
    }
  }
}"#;

const DB_MANIFEST: &str = r#"{
  "version": "2.0.0",
  "selectors": ["db"],
  "resources": {"ports": {"db_port": 5432}},
  "commands": {"command_ready": {"executed_on": ["cli"]}},
  "certs": {"tls": {"subject": {"common_name": "db.internal"}}}
}"#;

/// init → `job create` → workspace edits → build → build again after 127.9.0.3 loses its `db`
/// label (removing that allocation) → KV writes of a job command: a multi-line variable, a
/// secret, and a variable put then deleted.
///
/// Result: api on 127.9.0.1 (active) and 127.9.0.2 (disabled by disabled.json); db on 127.9.0.2
/// (active) and 127.9.0.3 (removed); api demands db.
fn cluster() -> tempfile::TempDir {
    let dir = init();
    let root = dir.path();
    let ws = root.join("workspace");
    stdout(root, &["job", "create", "api", "--selectors", "api"]);
    stdout(root, &["job", "create", "db"]);
    write(ws.join("workers.json"), WORKERS);
    write(ws.join("jobs/api/manifest.json"), API_MANIFEST);
    write(
        ws.join("jobs/api/_modules/command_wait.py"),
        "def main():\n    pass\n",
    );
    write(ws.join("jobs/db/manifest.json"), DB_MANIFEST);
    write(
        ws.join("jobs/db/_modules/command_ready.py"),
        "def main():\n    pass\n",
    );
    write(
        ws.join("disabled.json"),
        r#"{"jobs": {"api": {"allocations": ["127.9.0.2"]}}}"#,
    );
    stdout(root, &["build"]);
    write(
        ws.join("workers.json"),
        &WORKERS.replace(
            r#""127.9.0.3", "labels": ["db"]"#,
            r#""127.9.0.3", "labels": []"#,
        ),
    );
    stdout(root, &["build"]);

    let key = maand::kv::secret::SecretKey::load(&root.join("secrets/kv.key")).unwrap();
    let sealed = maand::kv::secret::seal(
        &key,
        "secrets/job/api",
        "api_token",
        SECRET,
        &mut rand::rng(),
    )
    .unwrap();
    record(
        root,
        vec![
            kv(
                "vars/job/api",
                vec![put(
                    "banner",
                    KvValue::Plain("line one\nline two of a banner long enough to be cut".into()),
                )],
            ),
            kv(
                "secrets/job/api",
                vec![put("api_token", KvValue::Sealed(sealed.encode()))],
            ),
            kv(
                "vars/job/db",
                vec![put("old_setting", KvValue::Plain("x".into()))],
            ),
            kv(
                "vars/job/db",
                vec![KvChange::Delete {
                    key: "old_setting".into(),
                }],
            ),
        ],
    );
    dir
}

/// Snapshots `maand <args>` with the bucket id, times and PEM bodies replaced.
fn snapshot(bucket: &Path, name: &str, args: &[&str]) {
    let out = stdout(bucket, args);
    let id = bucket_id(bucket);
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(&id, "[bucket-id]");
    settings.add_filter(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", "[time]");
    settings.add_filter(r"-----BEGIN CERTIFICATE-----\\n\S*", "[pem]");
    settings.set_description(format!("maand {}", args.join(" ")));
    settings.bind(|| insta::assert_snapshot!(name, out));
}

#[test]
fn every_table_after_init_build_and_job_command_writes() {
    let dir = cluster();
    let root = dir.path();
    let cases: &[(&str, &[&str])] = &[
        ("workers", &["cat", "workers"]),
        ("jobs", &["cat", "jobs"]),
        ("allocations", &["cat", "allocations"]),
        (
            "allocations_filtered",
            &[
                "cat",
                "allocations",
                "--jobs",
                "api,db",
                "--workers",
                "127.9.0.2",
            ],
        ),
        ("deployments", &["cat", "deployments"]),
        ("deployments_active", &["cat", "deployments", "--active"]),
        ("job_commands", &["cat", "job_commands"]),
        ("job_ports", &["cat", "job_ports", "--jobs", "db"]),
        ("certs", &["cat", "certs"]),
        (
            "certs_db_on_one_worker",
            &["cat", "certs", "--jobs", "db", "--workers", "127.9.0.2"],
        ),
        ("kv", &["cat", "kv"]),
        ("kv_api_active", &["cat", "kv", "--jobs", "api", "--active"]),
        ("kv_deleted", &["cat", "kv", "--deleted"]),
    ];
    for (name, args) in cases {
        snapshot(root, name, args);
    }
}

/// The alloc_id of `job` on `worker_ip`, from `cat allocations --json`.
fn alloc_id(bucket: &Path, job: &str, worker_ip: &str) -> String {
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&stdout(bucket, &["cat", "allocations", "--json"])).unwrap();
    rows.iter()
        .find(|r| r["job"] == job && r["worker_ip"] == worker_ip)
        .unwrap()["alloc_id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn deployments_show_what_a_deploy_staged_and_promoted() {
    let dir = cluster();
    let root = dir.path();
    let staged = |job: &str, worker_ip: &str, hash: &str| {
        Event::AllocationStaged(maand::events::AllocationStaged {
            alloc_id: alloc_id(root, job, worker_ip),
            job: job.into(),
            worker_ip: worker_ip.into(),
            tree_hash: hash.repeat(64),
            files: vec![("Makefile".into(), "0".repeat(64))],
        })
    };
    let promoted = |job: &str, worker_ip: &str, version: &str| {
        Event::AllocationPromoted(maand::events::AllocationPromoted {
            alloc_id: alloc_id(root, job, worker_ip),
            version: version.into(),
        })
    };
    // db on 127.9.0.2 is in sync; api on 127.9.0.1 got new content after its promotion; the
    // disabled api on 127.9.0.2 was staged but never promoted.
    record(
        root,
        vec![
            staged("db", "127.9.0.2", "a"),
            promoted("db", "127.9.0.2", "2.0.0"),
            staged("api", "127.9.0.1", "b"),
            promoted("api", "127.9.0.1", "1.0.0"),
            staged("api", "127.9.0.1", "c"),
            staged("api", "127.9.0.2", "d"),
        ],
    );
    snapshot(root, "deployments_after_deploy", &["cat", "deployments"]);
}

#[test]
fn a_fresh_bucket_lists_headers_and_the_ca() {
    let dir = init();
    snapshot(dir.path(), "empty_allocations", &["cat", "allocations"]);
    snapshot(dir.path(), "empty_certs", &["cat", "certs"]);
}

#[test]
fn json_output_is_an_array_of_objects_for_every_listing() {
    let dir = cluster();
    let root = dir.path();
    let listings: &[(&[&str], &[&str])] = &[
        (
            &["workers"],
            &["host", "worker_id", "labels", "zone", "tags"],
        ),
        (
            &["jobs"],
            &["name", "version", "deployment_seq", "disabled"],
        ),
        (
            &["allocations"],
            &["alloc_id", "job", "worker_ip", "zone", "removed"],
        ),
        (
            &["deployments"],
            &[
                "current_hash",
                "previous_hash",
                "current_version",
                "new_version",
                "rollout",
            ],
        ),
        (
            &["job_commands"],
            &["job", "name", "event", "demand_job", "demand_config"],
        ),
        (&["job_ports"], &["job", "name", "port", "assigned"]),
        (
            &["certs"],
            &[
                "scope",
                "cert",
                "common_name",
                "not_after",
                "days_left",
                "status",
            ],
        ),
        (
            &["kv"],
            &["namespace", "key", "version", "deleted", "sealed", "value"],
        ),
    ];
    for (command, fields) in listings {
        let mut args = vec!["cat"];
        args.extend_from_slice(command);
        args.push("--json");
        let out = stdout(root, &args);
        let rows: Vec<serde_json::Map<String, serde_json::Value>> =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{command:?}: {e}\n{out}"));
        assert!(!rows.is_empty(), "{command:?} listed nothing");
        for field in *fields {
            assert!(rows[0].contains_key(*field), "{command:?} lacks {field}");
        }
    }
    let deployments: serde_json::Value =
        serde_json::from_str(&stdout(root, &["cat", "deployments", "--json"])).unwrap();
    assert_eq!(deployments[0]["current_hash"], serde_json::Value::Null);
    let commands: serde_json::Value = serde_json::from_str(&stdout(
        root,
        &["cat", "job_commands", "--json", "--jobs", "api"],
    ))
    .unwrap();
    assert_eq!(commands[0]["demand_config"]["retries"], 3);
}

#[test]
fn unknown_jobs_and_workers_in_filters_are_errors_naming_them() {
    let dir = cluster();
    let root = dir.path();
    let jobs = "known: api, db)";
    let workers = "known: 127.9.0.1, 127.9.0.2, 127.9.0.3)";
    let cases: &[(&[&str], &str, &str)] = &[
        (
            &["cat", "allocations", "--jobs", "api,dbb"],
            "unknown job dbb:",
            jobs,
        ),
        (
            &["cat", "deployments", "--workers", "127.9.0.9"],
            "unknown worker 127.9.0.9:",
            workers,
        ),
        (
            &["cat", "certs", "--jobs", "nope"],
            "unknown job nope:",
            jobs,
        ),
        (
            &["cat", "job_ports", "--jobs", "apii"],
            "unknown job apii:",
            jobs,
        ),
        (
            &["cat", "job_commands", "--jobs", "x,y"],
            "unknown jobs x, y:",
            jobs,
        ),
        (
            &["cat", "kv", "--jobs", "vault"],
            "unknown job vault:",
            jobs,
        ),
        (
            &["cat", "kv", "--workers", "127.9.0.1,10.1.1.1"],
            "unknown worker 10.1.1.1:",
            workers,
        ),
    ];
    for (args, named, known) in cases {
        let err = stderr_of_failure(root, args);
        assert!(err.contains(named), "{args:?}: {err}");
        assert!(err.contains(known), "{args:?}: {err}");
    }
}

#[test]
fn kv_get_prints_a_value_in_full() {
    let dir = cluster();
    let root = dir.path();
    assert_eq!(
        stdout(root, &["cat", "kv", "get", "vars/job/api", "banner"]),
        "line one\nline two of a banner long enough to be cut\n"
    );
    assert_eq!(
        stdout(root, &["cat", "kv", "get", "maand/bucket", "bucket_id"]),
        format!("{}\n", bucket_id(root))
    );
    let pem = stdout(
        root,
        &[
            "cat",
            "kv",
            "get",
            "maand/job/db/worker/127.9.0.2",
            "certs/tls.crt",
        ],
    );
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"), "{pem}");
}

#[test]
fn a_secret_needs_reveal_and_reveal_decrypts_it() {
    let dir = cluster();
    let root = dir.path();
    let err = stderr_of_failure(root, &["cat", "kv", "get", "secrets/job/api", "api_token"]);
    assert!(err.contains("--reveal"), "{err}");
    assert!(!err.contains(SECRET));
    assert_eq!(
        stdout(
            root,
            &[
                "cat",
                "kv",
                "get",
                "--reveal",
                "secrets/job/api",
                "api_token"
            ]
        ),
        format!("{SECRET}\n")
    );
}

#[test]
fn listings_never_show_a_secret_or_its_ciphertext() {
    let dir = cluster();
    let root = dir.path();
    for args in [
        &["cat", "kv"][..],
        &["cat", "kv", "--json"],
        &["cat", "kv", "--jobs", "api", "--json"],
    ] {
        let out = stdout(root, args);
        assert!(!out.contains(SECRET), "{args:?} leaked the secret");
        assert!(!out.contains("v1:"), "{args:?} shows ciphertext");
        assert!(!out.contains("PRIVATE KEY"), "{args:?} shows a private key");
    }
}

#[test]
fn kv_get_explains_missing_and_deleted_keys() {
    let dir = cluster();
    let root = dir.path();
    let err = stderr_of_failure(root, &["cat", "kv", "get", "vars/job/db", "old_setting"]);
    assert!(err.contains("deleted (version 2)"), "{err}");
    let err = stderr_of_failure(root, &["cat", "kv", "get", "vars/job/db", "never"]);
    assert!(err.contains("no key `never`"), "{err}");
}

#[test]
fn kv_active_and_deleted_exclude_each_other() {
    let dir = cluster();
    maand(dir.path())
        .args(["cat", "kv", "--active", "--deleted"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("cannot be used with"));
}

#[test]
fn info_counts_workers_jobs_and_allocations() {
    let dir = cluster();
    let info: serde_json::Value =
        serde_json::from_str(&stdout(dir.path(), &["info", "--json"])).unwrap();
    assert_eq!(
        (&info["workers"], &info["jobs"], &info["allocations"]),
        (&3.into(), &2.into(), &4.into())
    );
    let text = stdout(dir.path(), &["info"]);
    assert!(text.contains("Number of Allocations"), "{text}");
}

#[test]
fn job_create_scaffolds_a_job_that_builds() {
    let dir = init();
    let root = dir.path();
    write(
        root.join("workspace/workers.json"),
        r#"[{"host": "127.9.0.1", "labels": ["edge"]}]"#,
    );
    maand(root)
        .args(["job", "create", "web", "--selectors", "edge"])
        .assert()
        .success()
        .stdout(predicate::str::contains("workspace/jobs/web/"));
    let manifest: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(root.join("workspace/jobs/web/manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["version"], "1.0.0");
    assert_eq!(manifest["selectors"], serde_json::json!(["edge"]));
    stdout(root, &["build"]);
    assert!(stdout(root, &["cat", "allocations"]).contains("web"));
}

#[test]
fn job_create_records_no_event() {
    let dir = init();
    let root = dir.path();
    let before = stdout(root, &["info", "--json"]);
    stdout(root, &["job", "create", "web"]);
    assert_eq!(stdout(root, &["info", "--json"]), before);
}

#[test]
fn job_create_refuses_an_existing_directory_and_an_invalid_name() {
    let dir = init();
    let root = dir.path();
    stdout(root, &["job", "create", "web"]);
    fs::write(root.join("workspace/jobs/web/manifest.json"), "{}").unwrap();
    let err = stderr_of_failure(root, &["job", "create", "web"]);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(
        fs::read_to_string(root.join("workspace/jobs/web/manifest.json")).unwrap(),
        "{}"
    );
    let err = stderr_of_failure(root, &["job", "create", "Web"]);
    assert!(err.contains("not a valid job name"), "{err}");
    let err = stderr_of_failure(root, &["job", "create", "logs"]);
    assert!(err.contains("reserved"), "{err}");
    assert!(!root.join("workspace/jobs/Web").exists());
}

/// Stops the scaffold's service if a test fails while it runs.
struct Running<'a>(&'a Path);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new("make")
            .arg("stop")
            .current_dir(self.0)
            .output();
    }
}

fn make(dir: &Path, target: &str) -> (bool, String) {
    let out = std::process::Command::new("make")
        .args(["--no-print-directory", target])
        .current_dir(dir)
        .output()
        .expect("make installed");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn the_scaffold_makefile_runs_the_lifecycle_like_a_worker_would() {
    let dir = init();
    stdout(dir.path(), &["job", "create", "svc"]);
    // A worker's job directory holds the synced files; run the targets in a copy of it.
    let worker_dir = tempfile::tempdir().unwrap();
    let job = worker_dir.path();
    fs::copy(
        dir.path().join("workspace/jobs/svc/Makefile"),
        job.join("Makefile"),
    )
    .unwrap();

    assert!(!make(job, "status").0, "nothing runs before start");
    let _guard = Running(job);
    let (ok, out) = make(job, "start");
    assert!(ok && out.contains("svc: started"), "{out}");
    let pid = fs::read_to_string(job.join("data/svc.pid")).unwrap();
    assert!(job.join("logs/svc.log").is_file());
    let (ok, out) = make(job, "status");
    assert!(
        ok && out.contains(&format!("running (pid {})", pid.trim())),
        "{out}"
    );
    let (ok, out) = make(job, "start");
    assert!(ok && out.contains("already running"), "{out}");

    let (ok, out) = make(job, "restart");
    assert!(
        ok && out.contains("stopped") && out.contains("started"),
        "{out}"
    );
    let restarted = fs::read_to_string(job.join("data/svc.pid")).unwrap();
    assert_ne!(restarted, pid);
    let (ok, out) = make(job, "reload");
    assert!(ok && out.contains("started"), "{out}");

    let (ok, out) = make(job, "stop");
    assert!(ok && out.contains("svc: stopped"), "{out}");
    assert!(!job.join("data/svc.pid").exists());
    let (ok, out) = make(job, "status");
    assert!(!ok && out.contains("not running"), "{out}");
    let (ok, out) = make(job, "stop");
    assert!(ok && out.contains("not running"), "{out}");
}
