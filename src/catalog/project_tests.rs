//! One test per event kind: what applying it does to the projections.

use super::*;
use crate::events::*;
use rusqlite::Connection;

fn catalog() -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("maand.db");
    let mut conn = crate::bucket::open(&path).unwrap();
    crate::bucket::migrate(&mut conn, &path).unwrap();
    (dir, conn)
}

fn started(command: &str) -> Event {
    Event::RunStarted(RunStarted {
        command: command.into(),
        argv: vec!["maand".into(), command.into()],
        maand_version: "0.1.0".into(),
        user: "ops".into(),
        host: "box".into(),
        pid: 9,
    })
}

#[test]
fn run_started_adds_an_unfinished_run() {
    let (_dir, mut conn) = catalog();
    commit(&mut conn, "r1", 1000, &[started("build")], &[]).unwrap();
    let runs = read::runs(&conn).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(
        (
            runs[0].run_id.as_str(),
            runs[0].command.as_str(),
            runs[0].started_ms
        ),
        ("r1", "build", 1000)
    );
    assert_eq!(runs[0].outcome, None);
}

#[test]
fn run_finished_records_outcome_duration_and_error_on_its_run() {
    let (_dir, mut conn) = catalog();
    commit(&mut conn, "r1", 1000, &[started("build")], &[]).unwrap();
    let finished = Event::RunFinished(RunFinished {
        outcome: RunOutcome::Failed,
        duration_ms: 250,
        error: Some("workspace/workers.json: bad".into()),
    });
    commit(&mut conn, "r1", 1250, &[finished], &[]).unwrap();
    let run = &read::runs(&conn).unwrap()[0];
    assert_eq!(run.outcome.as_deref(), Some("failed"));
    assert_eq!(run.duration_ms, Some(250));
    assert_eq!(run.finished_ms, Some(1250));
    assert_eq!(run.error.as_deref(), Some("workspace/workers.json: bad"));
}

#[test]
fn bucket_initialized_sets_identity_with_update_seq_zero() {
    let (_dir, mut conn) = catalog();
    let init = Event::BucketInitialized(BucketInitialized {
        bucket_id: "b-1".into(),
        schema_version: 1,
        ca_fingerprint: "fp".into(),
    });
    commit(&mut conn, "r1", 1000, &[started("init"), init], &[]).unwrap();
    let info = read::bucket_info(&conn).unwrap().unwrap();
    assert_eq!(info.bucket_id, "b-1");
    assert_eq!(info.update_seq, 0);
    assert_eq!(info.journal_head, 2);
    assert_eq!(info.projected_seq, 2);
}

#[test]
fn bucket_upgraded_changes_only_the_schema_version() {
    let (_dir, mut conn) = catalog();
    let init = Event::BucketInitialized(BucketInitialized {
        bucket_id: "b-1".into(),
        schema_version: 1,
        ca_fingerprint: "fp".into(),
    });
    let upgraded = Event::BucketUpgraded(BucketUpgraded {
        from_schema: 1,
        to_schema: 2,
    });
    commit(&mut conn, "r1", 1000, &[init, upgraded], &[]).unwrap();
    let info = read::bucket_info(&conn).unwrap().unwrap();
    assert_eq!((info.bucket_id.as_str(), info.schema_version), ("b-1", 2));
}

#[test]
fn blobs_are_stored_once_by_content_hash() {
    let (_dir, mut conn) = catalog();
    let blob = Blob::of(b"hello".to_vec());
    commit(
        &mut conn,
        "r1",
        1,
        &[started("build")],
        std::slice::from_ref(&blob),
    )
    .unwrap();
    commit(
        &mut conn,
        "r1",
        2,
        &[started("build")],
        std::slice::from_ref(&blob),
    )
    .unwrap();
    let count: i64 = conn
        .query_row("SELECT count(*) FROM blobs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, 1);
    assert_eq!(
        blob.hash,
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    );
}
