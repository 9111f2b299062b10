//! Black-box tests of damaged state: bytes changed below the hash chain (index pages, a stored
//! job file, a truncated file) are found by `maand journal verify` with the damaged object
//! named, deploy refuses to ship a damaged file, and `maand journal rebuild --salvage` recovers
//! what the journal allows.

use assert_cmd::Command;
use predicates::prelude::*;
use std::io::{Seek, SeekFrom, Write};
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
        .expect("sqlite3 CLI installed");
    assert!(
        out.status.success(),
        "sqlite3 {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A built bucket with two workers and one job, its database checkpointed (no WAL left).
fn built_bucket() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    maand(dir.path()).arg("init").assert().success();
    write(
        dir.path(),
        "workspace/workers.json",
        r#"[{"host": "127.20.0.1", "labels": ["web"]}, {"host": "127.20.0.2", "labels": ["web"]}]"#,
    );
    write(
        dir.path(),
        "workspace/jobs/web/manifest.json",
        r#"{"version": "1.0", "selectors": ["web"]}"#,
    );
    write(
        dir.path(),
        "workspace/jobs/web/Makefile",
        "start:\n\t@echo start\nstop:\n\t@echo stop\nrestart:\n\t@echo restart\n",
    );
    maand(dir.path()).arg("build").assert().success();
    sqlite(&db(dir.path()), "PRAGMA wal_checkpoint(TRUNCATE)");
    dir
}

fn db(bucket: &Path) -> std::path::PathBuf {
    bucket.join("data/maand.db")
}

/// Overwrites page `page` (1-based) of the database file with pseudo-random bytes.
fn scramble_page(db: &Path, page: u64, seed: u64) {
    let page_size: u64 = sqlite(db, "PRAGMA page_size").parse().unwrap();
    let mut state = seed | 1;
    let bytes: Vec<u8> = (0..page_size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let mut file = std::fs::OpenOptions::new().write(true).open(db).unwrap();
    file.seek(SeekFrom::Start((page - 1) * page_size)).unwrap();
    file.write_all(&bytes).unwrap();
}

#[test]
fn random_bytes_in_an_index_page_fail_verify_and_salvage_recovers_everything() {
    let dir = built_bucket();
    let before = maand(dir.path())
        .args(["cat", "allocations", "--json"])
        .output()
        .unwrap()
        .stdout;
    let root: u64 = sqlite(
        &db(dir.path()),
        "SELECT rootpage FROM sqlite_master WHERE name = 'journal_by_kind'",
    )
    .parse()
    .unwrap();
    scramble_page(&db(dir.path()), root, 7);

    maand(dir.path())
        .args(["journal", "verify"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("the database file is damaged"))
        .stdout(predicate::str::contains("journal rebuild --salvage"));

    maand(dir.path())
        .args(["journal", "rebuild", "--salvage"])
        .assert()
        .success()
        .stdout(predicate::str::contains("salvaged"))
        .stdout(predicate::str::contains("maand.db.damaged-"));
    maand(dir.path())
        .args(["journal", "verify"])
        .assert()
        .success()
        .stdout(predicate::str::contains("projections equal a replay"));
    let after = maand(dir.path())
        .args(["cat", "allocations", "--json"])
        .output()
        .unwrap()
        .stdout;
    assert_eq!(before, after, "the salvaged catalog equals the original");
    let kept: Vec<_> = std::fs::read_dir(dir.path().join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("maand.db.damaged-"))
        .collect();
    assert!(!kept.is_empty(), "the damaged file is kept aside");
}

#[test]
fn one_changed_byte_in_a_stored_job_file_is_named_and_never_shipped() {
    let dir = built_bucket();
    let hash = sqlite(
        &db(dir.path()),
        "SELECT hash FROM job_files WHERE job = 'web' AND path = 'Makefile'",
    );
    sqlite(
        &db(dir.path()),
        &format!(
            "UPDATE blobs SET content = CAST(replace(CAST(content AS TEXT), 'start:', 'stbrt:') AS BLOB) WHERE hash = '{hash}'"
        ),
    );

    maand(dir.path())
        .args(["journal", "verify"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains(format!("blob {hash} is damaged")));
    maand(dir.path())
        .args(["deploy", "--dry-run"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("job web: file Makefile"))
        .stderr(predicate::str::contains(format!("blob {hash} is damaged")));

    maand(dir.path())
        .args(["journal", "rebuild", "--salvage"])
        .assert()
        .success()
        .stdout(predicate::str::contains("1 damaged blob(s) were dropped"));
    maand(dir.path()).arg("build").assert().success();
    maand(dir.path())
        .args(["journal", "verify"])
        .assert()
        .success();
    maand(dir.path())
        .args(["deploy", "--dry-run"])
        .assert()
        .success();
}

/// A bucket built four times (a journal spread over several table pages), checkpointed.
fn bucket_with_history() -> tempfile::TempDir {
    let dir = built_bucket();
    for version in 2..=4 {
        write(
            dir.path(),
            "workspace/jobs/web/manifest.json",
            &format!(r#"{{"version": "1.{version}", "selectors": ["web"]}}"#),
        );
        maand(dir.path()).arg("build").assert().success();
    }
    sqlite(&db(dir.path()), "PRAGMA wal_checkpoint(TRUNCATE)");
    dir
}

fn data_files(bucket: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(bucket.join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !name.ends_with("-wal") && !name.ends_with("-shm"))
        .collect();
    names.sort();
    names
}

#[test]
fn a_truncated_file_is_reported_damaged_and_salvage_changes_nothing() {
    let dir = bucket_with_history();
    let len = std::fs::metadata(db(dir.path())).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(db(dir.path()))
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let damaged = std::fs::read(db(dir.path())).unwrap();

    maand(dir.path())
        .args(["journal", "verify"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "journal verify: FAILED: the database file is damaged",
        ));
    maand(dir.path())
        .args(["journal", "rebuild", "--salvage"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("nothing was changed"))
        .stdout(predicate::str::contains(
            "restore data/maand.db from a backup",
        ));
    assert_eq!(std::fs::read(db(dir.path())).unwrap(), damaged);
    assert_eq!(data_files(dir.path()), ["maand.db", "maand.lock"]);
}

#[test]
fn random_bytes_in_a_journal_page_name_the_lost_sequence_range() {
    let dir = bucket_with_history();
    let leaves: Vec<u64> = sqlite(
        &db(dir.path()),
        "SELECT pageno FROM dbstat WHERE name = 'journal' AND pagetype = 'leaf' ORDER BY pageno",
    )
    .lines()
    .map(|l| l.parse().unwrap())
    .collect();
    assert!(
        leaves.len() >= 3,
        "the journal spans several pages: {leaves:?}"
    );
    scramble_page(&db(dir.path()), leaves[1], 11);
    let damaged = std::fs::read(db(dir.path())).unwrap();

    maand(dir.path())
        .args(["journal", "verify"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("FAILED"));
    let out = maand(dir.path())
        .args(["journal", "rebuild", "--salvage"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("the journal itself is damaged: event(s) ")
            && stdout.contains("cannot be read"),
        "names the lost range: {stdout}"
    );
    assert!(
        stdout.contains("data/maand.db was left as it is"),
        "{stdout}"
    );
    assert_eq!(std::fs::read(db(dir.path())).unwrap(), damaged);
    let files = data_files(dir.path());
    assert!(
        files.iter().any(|f| f.starts_with("maand.db.salvage-")),
        "the readable part is kept aside: {files:?}"
    );
}
