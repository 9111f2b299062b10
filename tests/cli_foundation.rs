//! Black-box tests of the foundation commands: init, info, journal verify/rebuild, logs show,
//! the schema check, the bucket lock, completions and man pages.

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

fn init(bucket: &Path) {
    maand(bucket)
        .arg("init")
        .assert()
        .success()
        .stdout(predicate::str::contains("maand bucket initialized"));
}

fn tree(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if path.is_dir() {
                out.push(format!("{rel}/"));
                walk(root, &path, out);
            } else {
                out.push(rel);
            }
        }
    }
    walk(root, root, &mut out);
    out.retain(|p| !p.starts_with("data/maand.db-")); // WAL side files come and go
    out.retain(|p| !p.starts_with("logs/") || p == "logs/"); // the log-file projection, checked apart
    out.sort();
    out
}

fn sqlite(db: &Path, sql: &str) -> String {
    let out = std::process::Command::new("sqlite3")
        .arg(db)
        .arg(sql)
        .output()
        .expect("sqlite3 CLI installed");
    assert!(
        out.status.success(),
        "sqlite3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn init_creates_exactly_the_documented_tree() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    assert_eq!(
        tree(dir.path()),
        [
            "data/",
            "data/maand.db",
            "data/maand.lock",
            "logs/",
            "maand.conf",
            "secrets/",
            "secrets/ca.crt",
            "secrets/ca.key",
            "secrets/kv.key",
            "tmp/",
            "workspace/",
            "workspace/bucket.conf",
            "workspace/jobs/",
            "workspace/workers.json",
        ]
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("workspace/workers.json")).unwrap(),
        "[]\n"
    );
    let bucket_conf = std::fs::read_to_string(dir.path().join("workspace/bucket.conf")).unwrap();
    assert!(
        bucket_conf.contains("port_min = \"30000\"")
            && bucket_conf.contains("port_max = \"39999\"")
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("secrets/kv.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        std::fs::metadata(dir.path().join("secrets/kv.key"))
            .unwrap()
            .len(),
        32
    );
}

#[test]
fn second_init_keeps_bucket_id_ca_and_edited_files() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let db = dir.path().join("data/maand.db");
    let id_before = sqlite(&db, "SELECT bucket_id FROM bucket");
    let ca_before = std::fs::read(dir.path().join("secrets/ca.crt")).unwrap();
    std::fs::write(dir.path().join("maand.conf"), "ssh_user = \"ops\"\n").unwrap();
    maand(dir.path())
        .arg("init")
        .assert()
        .success()
        .stdout(predicate::str::contains("up to date"));
    assert_eq!(sqlite(&db, "SELECT bucket_id FROM bucket"), id_before);
    assert_eq!(
        std::fs::read(dir.path().join("secrets/ca.crt")).unwrap(),
        ca_before
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("maand.conf")).unwrap(),
        "ssh_user = \"ops\"\n"
    );
}

#[test]
fn info_shows_identity_and_journal_position_in_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    maand(dir.path()).arg("info").assert().success().stdout(
        predicate::str::contains("Bucket ID").and(predicate::str::contains("Update Sequence")),
    );
    let out = maand(dir.path())
        .args(["info", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let info: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(info["update_seq"], 0);
    // init recorded run_started, bucket_initialized, run_finished.
    assert_eq!(info["journal_head"], 3);
    assert_eq!(info["projected_seq"], 3);
}

#[test]
fn commands_outside_a_bucket_say_how_to_create_one() {
    let dir = tempfile::tempdir().unwrap();
    maand(dir.path()).arg("info").assert().failure().stderr(
        predicate::str::contains("not a maand bucket").and(predicate::str::contains("maand init")),
    );
}

#[test]
fn an_older_schema_asks_for_init_and_a_newer_one_for_an_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let db = dir.path().join("data/maand.db");
    let latest: u32 = sqlite(&db, "PRAGMA user_version").trim().parse().unwrap();
    sqlite(&db, &format!("PRAGMA user_version = {}", latest + 1));
    maand(dir.path())
        .arg("info")
        .assert()
        .failure()
        .stderr(predicate::str::contains("upgrade maand"));
    if latest > 1 {
        sqlite(&db, &format!("PRAGMA user_version = {}", latest - 1));
        maand(dir.path())
            .arg("info")
            .assert()
            .failure()
            .stderr(predicate::str::contains("run `maand init` to upgrade"));
    }
}

#[test]
fn journal_verify_passes_on_a_fresh_bucket() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    maand(dir.path())
        .args(["journal", "verify"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("hash chain ok")
                .and(predicate::str::contains("projections equal")),
        );
}

#[test]
fn flipping_one_byte_of_an_event_fails_verify_naming_that_sequence() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    maand(dir.path()).arg("init").assert().success();
    let db = dir.path().join("data/maand.db");
    // Tampering needs the append-only triggers out of the way, as an attacker with the sqlite3
    // CLI would do.
    let triggers = sqlite(
        &db,
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'journal'",
    );
    for name in triggers.lines() {
        sqlite(&db, &format!("DROP TRIGGER {name}"));
    }
    sqlite(
        &db,
        "UPDATE journal SET payload = CAST(payload AS BLOB) || x'00' WHERE seq = 2",
    );
    maand(dir.path())
        .args(["journal", "verify"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("FAILED at event 2"));
}

#[test]
fn the_journal_refuses_updates_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let db = dir.path().join("data/maand.db");
    for sql in [
        "UPDATE journal SET kind = 'x' WHERE seq = 1",
        "DELETE FROM journal WHERE seq = 1",
    ] {
        let out = std::process::Command::new("sqlite3")
            .arg(&db)
            .arg(sql)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{sql} should be refused");
    }
}

#[test]
fn a_tampered_projection_is_reported_and_rebuild_restores_it() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let db = dir.path().join("data/maand.db");
    sqlite(&db, "UPDATE bucket SET update_seq = 41");
    maand(dir.path())
        .args(["journal", "verify"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("bucket: live only").and(predicate::str::contains("41")));
    maand(dir.path())
        .args(["journal", "rebuild"])
        .assert()
        .success()
        .stdout(predicate::str::contains("replayed"));
    maand(dir.path())
        .args(["journal", "verify"])
        .assert()
        .success();
    assert_eq!(sqlite(&db, "SELECT update_seq FROM bucket").trim(), "0");
}

#[test]
fn a_second_mutating_command_fails_at_once_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    // Hold the lock from another process the way a running maand would.
    let lock = dir.path().join("data/maand.lock");
    let mut holder = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import fcntl,sys,time\n\
             f=open(sys.argv[1],'r+'); fcntl.flock(f, fcntl.LOCK_EX)\n\
             f.truncate(0); f.write('{\"command\":\"maand deploy\",\"pid\":4242,\"started\":\"t\"}'); f.flush()\n\
             print('locked', flush=True); time.sleep(60)",
        )
        .arg(&lock)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "locked");
    let result = maand(dir.path())
        .args(["journal", "rebuild"])
        .assert()
        .failure();
    holder.kill().unwrap();
    holder.wait().unwrap();
    result
        .stderr(predicate::str::contains("maand deploy").and(predicate::str::contains("pid 4242")));
    // Reads never wait for the lock.
}

#[test]
fn logs_show_lists_runs_in_every_format_with_filters() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    maand(dir.path())
        .args(["journal", "rebuild"])
        .assert()
        .success();
    let raw = maand(dir.path())
        .args(["logs", "show"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let raw = String::from_utf8(raw).unwrap();
    assert_eq!(raw.lines().count(), 5, "{raw}");
    assert!(raw.lines().next().unwrap().contains("event=run_started"));
    assert!(raw.contains("event=bucket_initialized") && raw.contains("maand=\"journal rebuild\""));

    let json = maand(dir.path())
        .args([
            "logs",
            "show",
            "--format",
            "json",
            "--event",
            "run_finished",
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let lines: Vec<serde_json::Value> = String::from_utf8(json)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|l| l["outcome"] == "succeeded"));

    let tail = maand(dir.path())
        .args(["logs", "show", "--tail", "1"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let tail = String::from_utf8(tail).unwrap();
    assert_eq!(tail.lines().count(), 1);
    assert!(tail.contains("maand=\"journal rebuild\"") && tail.contains("event=run_finished"));

    let human = maand(dir.path())
        .args(["logs", "show", "--format", "human"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let human = String::from_utf8(human).unwrap();
    assert!(
        human.contains("  init  run=") && human.contains("  journal rebuild  run="),
        "{human}"
    );
}

#[test]
fn completions_and_man_pages_are_generated() {
    let dir = tempfile::tempdir().unwrap();
    maand(dir.path())
        .args(["completions", "bash"])
        .assert()
        .success()
        .stdout(predicate::str::contains("_maand"));
    maand(dir.path())
        .args(["man", "--out", "man"])
        .assert()
        .success();
    assert!(dir.path().join("man/maand.1").is_file());
    assert!(dir.path().join("man/maand-init.1").is_file());
}

/// Runs maand as the unprivileged user `nobody` (setpriv drops root's rights).
fn maand_as_nobody(bucket: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            env!("CARGO_BIN_EXE_maand"),
        ])
        .args(args)
        .current_dir(bucket)
        .env_remove("MAAND_BUCKET")
        .env_remove("RUST_LOG")
        .output()
        .expect("setpriv (util-linux) runs")
}

#[test]
fn a_bucket_this_user_may_only_read_answers_reads_and_refuses_writes() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    init(dir.path());
    std::fs::write(
        dir.path().join("workspace/workers.json"),
        r#"[{"host": "127.20.0.1", "labels": ["web"]}]"#,
    )
    .unwrap();
    maand(dir.path()).arg("build").assert().success();
    let db = dir.path().join("data/maand.db");
    let before = std::fs::read(&db).unwrap();

    for args in [
        &["info"][..],
        &["cat", "workers"],
        &["journal", "verify"],
        &["logs", "show"],
    ] {
        let out = maand_as_nobody(dir.path(), args);
        assert!(
            out.status.success(),
            "maand {args:?} as a read-only user: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = maand_as_nobody(dir.path(), &["build"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("maand.lock"), "names the file: {stderr}");
    assert!(stderr.contains("Permission denied"), "{stderr}");
    assert_eq!(std::fs::read(&db).unwrap(), before, "nothing changed");
}

#[test]
fn init_refuses_a_new_identity_where_an_earlier_bucket_left_its_traces() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let db = dir.path().join("data/maand.db");
    let old_id = sqlite(&db, "SELECT bucket_id FROM bucket")
        .trim()
        .to_string();
    // The catalog is lost; secrets and logs remain.
    for side in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{side}", db.display()));
    }
    let ca_before = std::fs::read(dir.path().join("secrets/ca.crt")).unwrap();
    maand(dir.path())
        .arg("init")
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "holds traces of an earlier bucket",
        ))
        .stderr(predicate::str::contains("secrets/ca.crt"))
        .stderr(predicate::str::contains(format!("/opt/worker/{old_id}/")))
        .stderr(predicate::str::contains(
            "restore data/maand.db from a backup",
        ));
    assert!(!db.exists(), "no new catalog was created");
    assert_eq!(
        std::fs::read(dir.path().join("secrets/ca.crt")).unwrap(),
        ca_before
    );
}

#[test]
fn init_refuses_to_replace_a_missing_kv_key_while_sealed_values_need_it() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    std::fs::write(
        dir.path().join("workspace/workers.json"),
        r#"[{"host": "127.20.0.1", "labels": ["db"]}]"#,
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("workspace/jobs/db")).unwrap();
    std::fs::write(
        dir.path().join("workspace/jobs/db/manifest.json"),
        r#"{"version": "1", "selectors": ["db"], "certs": {"tls": {"subject": {"common_name": "db"}}}}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("workspace/jobs/db/Makefile"),
        "start:\n\ttrue\n",
    )
    .unwrap();
    maand(dir.path()).arg("build").assert().success();
    std::fs::remove_file(dir.path().join("secrets/kv.key")).unwrap();
    maand(dir.path())
        .arg("init")
        .assert()
        .failure()
        .stderr(predicate::str::contains("kv.key is missing"))
        .stderr(predicate::str::contains(
            "Restore secrets/kv.key from a backup",
        ));
    assert!(
        !dir.path().join("secrets/kv.key").exists(),
        "no new key written"
    );

    // Without anything sealed, a lost key is simply made anew.
    let fresh = tempfile::tempdir().unwrap();
    init(fresh.path());
    std::fs::remove_file(fresh.path().join("secrets/kv.key")).unwrap();
    maand(fresh.path()).arg("init").assert().success();
    assert!(fresh.path().join("secrets/kv.key").exists());
}
