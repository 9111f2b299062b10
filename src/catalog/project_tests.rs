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

fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

fn text(conn: &Connection, sql: &str) -> String {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

fn worker(host: &str, labels: &[&str]) -> Event {
    Event::WorkerUpserted(WorkerRecord {
        host: host.into(),
        worker_id: format!("id-{host}"),
        hostname: None,
        labels: labels.iter().map(|l| l.to_string()).collect(),
        memory_mb: Some(1024),
        cpu_mhz: None,
        tags: vec![("zone".into(), "a".into())],
        position: 0,
    })
}

fn job(name: &str, files: &[&str]) -> Event {
    Event::JobUpserted(Box::new(JobRecord {
        name: name.into(),
        job_id: format!("id-{name}"),
        version: "1.0.0".into(),
        version_declared: true,
        selectors: vec!["worker".into()],
        max_concurrent_upgrades: 1,
        max_concurrent_starts: 0,
        min_allocations_count: 0,
        restart_policy: "always".into(),
        restart_globs: vec![],
        min_memory_mb: 0,
        max_memory_mb: 0,
        current_memory_mb: 0,
        min_cpu_mhz: 0,
        max_cpu_mhz: 0,
        current_cpu_mhz: 0,
        resources_source: "manifest".into(),
        deployment_seq: 0,
        health_check: None,
        commands: vec![JobCommandRecord {
            name: "command_x".into(),
            event: "cli".into(),
            script: "_modules/command_x.py".into(),
            demand_job: String::new(),
            demand_command: String::new(),
            demand_config: "{}".into(),
        }],
        certs: vec![],
        files: files
            .iter()
            .map(|p| JobFileRecord {
                path: p.to_string(),
                hash: "h".into(),
                size: 1,
                executable: false,
            })
            .collect(),
        files_hash: "fh".into(),
    }))
}

fn allocation(job: &str, worker: &str, removed: bool) -> Event {
    Event::AllocationUpserted(AllocationRecord {
        alloc_id: format!("{job}@{worker}"),
        job: job.into(),
        worker_ip: worker.into(),
        disabled: false,
        removed,
        new_version: "1.0.0".into(),
        deployment_seq: 0,
    })
}

#[test]
fn worker_upserted_then_removed() {
    let (_dir, mut conn) = catalog();
    commit(
        &mut conn,
        "r",
        1,
        &[worker("127.9.0.1", &["worker", "web"])],
        &[],
    )
    .unwrap();
    assert_eq!(
        text(&conn, "SELECT labels FROM workers"),
        r#"["worker","web"]"#
    );
    assert_eq!(text(&conn, "SELECT tags FROM workers"), r#"{"zone":"a"}"#);
    commit(
        &mut conn,
        "r",
        2,
        &[Event::WorkerRemoved(WorkerRemoved {
            host: "127.9.0.1".into(),
        })],
        &[],
    )
    .unwrap();
    assert_eq!(count(&conn, "SELECT count(*) FROM workers"), 0);
}

#[test]
fn job_upserted_replaces_its_files_and_commands_and_job_removed_drops_them() {
    let (_dir, mut conn) = catalog();
    commit(&mut conn, "r", 1, &[job("api", &["Makefile", "a"])], &[]).unwrap();
    commit(&mut conn, "r", 2, &[job("api", &["Makefile"])], &[]).unwrap();
    assert_eq!(
        count(&conn, "SELECT count(*) FROM job_files WHERE job = 'api'"),
        1
    );
    assert_eq!(
        count(&conn, "SELECT count(*) FROM job_commands WHERE job = 'api'"),
        1
    );
    assert_eq!(count(&conn, "SELECT length(record_hash) FROM jobs"), 64);
    commit(
        &mut conn,
        "r",
        3,
        &[Event::JobRemoved(JobRemoved { name: "api".into() })],
        &[],
    )
    .unwrap();
    for table in ["jobs", "job_files", "job_commands", "job_certs"] {
        assert_eq!(
            count(&conn, &format!("SELECT count(*) FROM {table}")),
            0,
            "{table}"
        );
    }
}

#[test]
fn port_assigned_then_released() {
    let (_dir, mut conn) = catalog();
    let assigned = Event::PortAssigned(PortAssigned {
        job: "api".into(),
        name: "http".into(),
        port: 30000,
        from_pool: true,
    });
    commit(&mut conn, "r", 1, &[assigned], &[]).unwrap();
    assert_eq!(count(&conn, "SELECT port FROM job_ports"), 30000);
    commit(
        &mut conn,
        "r",
        2,
        &[Event::PortReleased(PortReleased {
            job: "api".into(),
            name: "http".into(),
        })],
        &[],
    )
    .unwrap();
    assert_eq!(count(&conn, "SELECT count(*) FROM job_ports"), 0);
}

#[test]
fn allocation_upserted_changes_flags_in_place_and_marks_the_catalog_position() {
    let (_dir, mut conn) = catalog();
    let init = Event::BucketInitialized(BucketInitialized {
        bucket_id: "b".into(),
        schema_version: 1,
        ca_fingerprint: "f".into(),
    });
    commit(
        &mut conn,
        "r",
        1,
        &[init, allocation("api", "127.9.0.1", false)],
        &[],
    )
    .unwrap();
    commit(
        &mut conn,
        "r",
        2,
        &[allocation("api", "127.9.0.1", true)],
        &[],
    )
    .unwrap();
    assert_eq!(count(&conn, "SELECT removed FROM allocations"), 1);
    assert_eq!(count(&conn, "SELECT catalog_seq FROM bucket"), 3);
}

#[test]
fn kv_changed_keeps_seven_versions_and_deletion_is_a_version() {
    let (_dir, mut conn) = catalog();
    for i in 0..9 {
        let put = Event::KvChanged(KvChanged {
            namespace: "vars/job/api".into(),
            changes: vec![KvChange::Put {
                key: "k".into(),
                value: KvValue::Plain(format!("v{i}")),
            }],
        });
        commit(&mut conn, "r", i, &[put], &[]).unwrap();
    }
    assert_eq!(count(&conn, "SELECT count(*) FROM kv"), 7);
    assert_eq!(count(&conn, "SELECT min(version) FROM kv"), 3);
    let delete = Event::KvChanged(KvChanged {
        namespace: "vars/job/api".into(),
        changes: vec![KvChange::Delete { key: "k".into() }],
    });
    commit(&mut conn, "r", 10, &[delete], &[]).unwrap();
    assert_eq!(
        count(
            &conn,
            "SELECT deleted FROM kv ORDER BY version DESC LIMIT 1"
        ),
        1
    );
    let sealed = Event::KvChanged(KvChanged {
        namespace: "secrets/job/api".into(),
        changes: vec![KvChange::Put {
            key: "s".into(),
            value: KvValue::Sealed("v1:00".into()),
        }],
    });
    commit(&mut conn, "r", 11, &[sealed], &[]).unwrap();
    assert_eq!(
        count(
            &conn,
            "SELECT sealed FROM kv WHERE namespace = 'secrets/job/api'"
        ),
        1
    );
}

#[test]
fn kv_purged_drops_every_version_of_the_key() {
    let (_dir, mut conn) = catalog();
    let put = |v: &str| {
        Event::KvChanged(KvChanged {
            namespace: "n".into(),
            changes: vec![KvChange::Put {
                key: "k".into(),
                value: KvValue::Plain(v.into()),
            }],
        })
    };
    commit(&mut conn, "r", 1, &[put("a"), put("b")], &[]).unwrap();
    commit(
        &mut conn,
        "r",
        2,
        &[Event::KvPurged(KvPurged {
            keys: vec![("n".into(), "k".into())],
        })],
        &[],
    )
    .unwrap();
    assert_eq!(count(&conn, "SELECT count(*) FROM kv"), 0);
}

#[test]
fn command_events_and_deploy_skips_change_no_projection() {
    let (_dir, mut conn) = catalog();
    let before: Vec<i64> = PROJECTION_TABLES
        .iter()
        .map(|t| count(&conn, &format!("SELECT count(*) FROM {t}")))
        .collect();
    let events = [
        Event::CommandStarted(CommandStarted {
            worker: "w".into(),
            job: None,
            phase: "p".into(),
            action: "a".into(),
            command: "c".into(),
        }),
        Event::CommandOutput(CommandOutput {
            worker: "w".into(),
            job: None,
            phase: "p".into(),
            stream: Stream::Stdout,
            line: "l".into(),
        }),
        Event::CommandFinished(CommandFinished {
            worker: "w".into(),
            job: None,
            phase: "p".into(),
            action: "a".into(),
            exit_code: Some(0),
            duration_ms: 1,
            error: None,
        }),
        Event::DeploySkipped(DeploySkipped {
            job: "j".into(),
            reason: "already_promoted".into(),
        }),
    ];
    commit(&mut conn, "r", 1, &events, &[]).unwrap();
    let after: Vec<i64> = PROJECTION_TABLES
        .iter()
        .map(|t| count(&conn, &format!("SELECT count(*) FROM {t}")))
        .collect();
    assert_eq!(before, after);
    assert_eq!(read::bucket_info(&conn).unwrap(), None);
}

fn step(index: u32, kind: StepKind) -> PlannedStep {
    PlannedStep {
        index,
        wave: 1,
        job: Some("api".into()),
        worker: Some("127.9.0.1".into()),
        batch: index,
        kind,
    }
}

#[test]
fn a_deploy_plan_its_steps_and_its_end_are_projected() {
    let (_dir, mut conn) = catalog();
    let init = Event::BucketInitialized(BucketInitialized {
        bucket_id: "b".into(),
        schema_version: 1,
        ca_fingerprint: "f".into(),
    });
    let plan = Event::DeployPlanned(Box::new(DeployPlanned {
        deploy_id: "d".into(),
        catalog_seq: 0,
        update_seq: 1,
        flags: DeployFlags::default(),
        steps: vec![
            step(
                0,
                StepKind::Sync {
                    alloc_id: "a".into(),
                    tree_hash: "t".into(),
                    transfer: true,
                },
            ),
            step(
                1,
                StepKind::Lifecycle {
                    alloc_id: "a".into(),
                    target: "start".into(),
                },
            ),
            step(
                2,
                StepKind::Promote {
                    alloc_ids: vec!["a".into()],
                },
            ),
            step(3, StepKind::Finalize),
        ],
    }));
    commit(
        &mut conn,
        "r",
        1,
        &[
            init,
            Event::UpdateSeqBumped(UpdateSeqBumped { update_seq: 1 }),
            plan,
        ],
        &[],
    )
    .unwrap();
    assert_eq!(count(&conn, "SELECT update_seq FROM bucket"), 1);
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM deploy_steps WHERE status = 'pending'"
        ),
        4
    );
    let label = StepLabel {
        job: None,
        worker: None,
        action: "x".into(),
    };
    let events = [
        Event::StepStarted(StepStarted {
            deploy_id: "d".into(),
            index: 0,
            step: label.clone(),
        }),
        Event::StepSucceeded(StepSucceeded {
            deploy_id: "d".into(),
            index: 0,
            step: label.clone(),
            note: None,
        }),
        Event::StepFailed(StepFailed {
            deploy_id: "d".into(),
            index: 1,
            step: label.clone(),
            error: "boom".into(),
        }),
        Event::StepSkipped(StepSkipped {
            deploy_id: "d".into(),
            index: 2,
            step: label,
            reason: "earlier".into(),
        }),
        Event::DeployFinished(DeployFinished {
            deploy_id: "d".into(),
            outcome: RunOutcome::Failed,
            failed_jobs: vec!["api".into()],
        }),
    ];
    commit(&mut conn, "r", 2, &events, &[]).unwrap();
    let statuses: Vec<String> = (0..4)
        .map(|i| {
            text(
                &conn,
                &format!("SELECT status FROM deploy_steps WHERE idx = {i}"),
            )
        })
        .collect();
    assert_eq!(statuses, ["succeeded", "failed", "skipped", "pending"]);
    assert_eq!(
        text(&conn, "SELECT detail FROM deploy_steps WHERE idx = 1"),
        "boom"
    );
    assert_eq!(
        text(&conn, "SELECT status || ' ' || failed FROM deploys"),
        r#"failed ["api"]"#
    );
}

#[test]
fn an_allocation_is_staged_promoted_stopped_cleared_and_purged() {
    let (_dir, mut conn) = catalog();
    let staged = |hash: &str| {
        Event::AllocationStaged(AllocationStaged {
            alloc_id: "a".into(),
            job: "api".into(),
            worker_ip: "127.9.0.1".into(),
            tree_hash: hash.into(),
            files: vec![("Makefile".into(), "h".into())],
        })
    };
    commit(
        &mut conn,
        "r",
        1,
        &[allocation("api", "127.9.0.1", false), staged("t1")],
        &[],
    )
    .unwrap();
    assert_eq!(text(&conn, "SELECT current_hash || ' ' || COALESCE(previous_hash, '-') || ' ' || current_version FROM deployments"), "t1 - 0.0.0");
    commit(
        &mut conn,
        "r",
        2,
        &[Event::AllocationPromoted(AllocationPromoted {
            alloc_id: "a".into(),
            version: "1.0.0".into(),
        })],
        &[],
    )
    .unwrap();
    assert_eq!(text(&conn, "SELECT previous_hash || ' ' || current_version || ' ' || previous_files FROM deployments"), r#"t1 1.0.0 {"Makefile":"h"}"#);
    commit(
        &mut conn,
        "r",
        3,
        &[
            staged("t2"),
            Event::AllocationStopped(AllocationStopped {
                alloc_id: "a".into(),
            }),
        ],
        &[],
    )
    .unwrap();
    assert_eq!(
        text(
            &conn,
            "SELECT current_hash || ' ' || previous_hash || ' ' || stopped FROM deployments"
        ),
        "t2 t1 1"
    );
    commit(
        &mut conn,
        "r",
        4,
        &[Event::AllocationHashCleared(AllocationHashCleared {
            alloc_id: "a".into(),
        })],
        &[],
    )
    .unwrap();
    assert_eq!(count(&conn, "SELECT count(*) FROM deployments"), 0);
    let purged = Event::AllocationPurged(AllocationPurged {
        alloc_id: "api@127.9.0.1".into(),
        job: "api".into(),
        worker_ip: "127.9.0.1".into(),
    });
    commit(&mut conn, "r", 5, &[purged], &[]).unwrap();
    assert_eq!(count(&conn, "SELECT count(*) FROM allocations"), 0);
}

#[test]
fn health_checked_keeps_the_latest_result_and_marks_the_hash_row() {
    let (_dir, mut conn) = catalog();
    let alloc_id = "api@127.9.0.1";
    let staged = Event::AllocationStaged(AllocationStaged {
        alloc_id: alloc_id.into(),
        job: "api".into(),
        worker_ip: "127.9.0.1".into(),
        tree_hash: "t1".into(),
        files: vec![],
    });
    let checked = |healthy: bool, attempt: u32| {
        Event::HealthChecked(HealthChecked {
            alloc_id: alloc_id.into(),
            job: "api".into(),
            worker_ip: "127.9.0.1".into(),
            healthy,
            detail: format!("attempt {attempt}"),
            attempt,
        })
    };
    let latest = |conn: &Connection| {
        text(
            conn,
            "SELECT h.healthy || ' ' || h.attempt || ' ' || h.detail || ' ' || h.run_id || ' ' || d.health_failed
             FROM health h JOIN deployments d USING (alloc_id)",
        )
    };
    commit(
        &mut conn,
        "r1",
        1,
        &[allocation("api", "127.9.0.1", false), staged],
        &[],
    )
    .unwrap();
    commit(&mut conn, "r1", 2, &[checked(false, 1)], &[]).unwrap();
    assert_eq!(latest(&conn), "0 1 attempt 1 r1 1");
    commit(&mut conn, "r2", 3, &[checked(true, 2)], &[]).unwrap();
    assert_eq!(latest(&conn), "1 2 attempt 2 r2 0");
    assert_eq!(count(&conn, "SELECT count(*) FROM health"), 1);
    commit(&mut conn, "r3", 4, &[checked(false, 1)], &[]).unwrap();
    // A promote clears the mark (new content deserves a new check); the health row stays.
    commit(
        &mut conn,
        "r3",
        5,
        &[Event::AllocationPromoted(AllocationPromoted {
            alloc_id: alloc_id.into(),
            version: "1.0.0".into(),
        })],
        &[],
    )
    .unwrap();
    assert_eq!(latest(&conn), "0 1 attempt 1 r3 0");
    let purged = Event::AllocationPurged(AllocationPurged {
        alloc_id: alloc_id.into(),
        job: "api".into(),
        worker_ip: "127.9.0.1".into(),
    });
    commit(&mut conn, "r3", 6, &[purged], &[]).unwrap();
    assert_eq!(count(&conn, "SELECT count(*) FROM health"), 0);
}

#[test]
fn health_checked_without_a_hash_row_records_only_the_result() {
    let (_dir, mut conn) = catalog();
    let checked = Event::HealthChecked(HealthChecked {
        alloc_id: "a".into(),
        job: "api".into(),
        worker_ip: "127.9.0.1".into(),
        healthy: false,
        detail: "tcp http_port (8080): connection refused".into(),
        attempt: 3,
    });
    commit(&mut conn, "r", 1, &[checked], &[]).unwrap();
    assert_eq!(count(&conn, "SELECT count(*) FROM deployments"), 0);
    assert_eq!(count(&conn, "SELECT attempt FROM health"), 3);
}

#[test]
fn run_abandoned_closes_an_open_run_and_leaves_a_finished_one_alone() {
    let (_dir, mut conn) = catalog();
    commit(&mut conn, "dead", 1, &[started("deploy")], &[]).unwrap();
    commit(&mut conn, "done", 2, &[started("build")], &[]).unwrap();
    let finished = Event::RunFinished(RunFinished {
        outcome: RunOutcome::Succeeded,
        duration_ms: 1,
        error: None,
    });
    commit(&mut conn, "done", 3, &[finished], &[]).unwrap();
    let abandon = |run: &str| {
        Event::RunAbandoned(RunAbandoned {
            run_id: run.into(),
            command: "deploy".into(),
            pid: 9,
        })
    };
    commit(
        &mut conn,
        "next",
        4,
        &[abandon("dead"), abandon("done")],
        &[],
    )
    .unwrap();
    let runs = read::runs(&conn).unwrap();
    let outcome = |id: &str| {
        runs.iter()
            .find(|r| r.run_id == id)
            .unwrap()
            .outcome
            .clone()
    };
    assert_eq!(outcome("dead").as_deref(), Some("abandoned"));
    assert_eq!(outcome("done").as_deref(), Some("succeeded"));
}

#[test]
fn bucket_imported_keeps_the_go_bucket_id_and_update_seq() {
    let (_dir, mut conn) = catalog();
    let imported = Event::BucketImported(BucketImported {
        bucket_id: "go-id".into(),
        update_seq: 7,
        schema_version: crate::bucket::LATEST_SCHEMA,
        ca_fingerprint: "ab".into(),
        go_schema_version: 1,
        kept_copy: "data/go-maand.db".into(),
        source_sha256: "cd".into(),
    });
    commit(&mut conn, "r", 42, &[imported], &[]).unwrap();
    assert_eq!(
        text(
            &conn,
            "SELECT bucket_id || ' ' || update_seq || ' ' || ca_fingerprint || ' ' || initialized_ms FROM bucket"
        ),
        "go-id 7 ab 42"
    );
}

#[test]
fn kv_imported_numbers_versions_in_order_with_their_go_times_and_keeps_seven() {
    let (_dir, mut conn) = catalog();
    let version = |value: Option<&str>, time_ms: i64| ImportedKvVersion {
        value: value.map(|v| KvValue::Plain(v.into())),
        time_ms,
    };
    let imported = Event::KvImported(KvImported {
        namespace: "vars/job/api".into(),
        key: "k".into(),
        versions: vec![
            version(Some("a"), 1000),
            version(None, 2000),
            version(Some("b"), 3000),
        ],
    });
    commit(&mut conn, "r", 99, &[imported], &[]).unwrap();
    assert_eq!(
        text(
            &conn,
            "SELECT group_concat(version || ':' || value || ':' || deleted || ':' || time_ms, ' ') FROM (SELECT * FROM kv ORDER BY version)"
        ),
        "1:a:0:1000 2::1:2000 3:b:0:3000"
    );
    let many = Event::KvImported(KvImported {
        namespace: "vars/job/api".into(),
        key: "many".into(),
        versions: (0..9).map(|i| version(Some("v"), i)).collect(),
    });
    commit(&mut conn, "r", 100, &[many], &[]).unwrap();
    assert_eq!(
        text(
            &conn,
            "SELECT count(*) || ' ' || min(version) FROM kv WHERE key = 'many'"
        ),
        "7 3"
    );
}

#[test]
fn allocation_adopted_is_promoted_by_the_go_hash_until_our_first_promote() {
    let (_dir, mut conn) = catalog();
    let adopted = Event::AllocationAdopted(AllocationAdopted {
        alloc_id: "a".into(),
        job: "api".into(),
        worker_ip: "127.0.0.1".into(),
        version: "1.2.0".into(),
        go_hash: "md5".into(),
    });
    commit(&mut conn, "r", 1, &[adopted], &[]).unwrap();
    assert_eq!(
        text(
            &conn,
            "SELECT current_hash || ' ' || previous_hash || ' ' || current_version || ' ' || adopted FROM deployments"
        ),
        "md5 md5 1.2.0 1"
    );
    let staged = Event::AllocationStaged(AllocationStaged {
        alloc_id: "a".into(),
        job: "api".into(),
        worker_ip: "127.0.0.1".into(),
        tree_hash: "ours".into(),
        files: vec![],
    });
    let promoted = Event::AllocationPromoted(AllocationPromoted {
        alloc_id: "a".into(),
        version: "1.2.0".into(),
    });
    commit(&mut conn, "r", 2, &[staged, promoted], &[]).unwrap();
    assert_eq!(
        text(
            &conn,
            "SELECT previous_hash || ' ' || adopted FROM deployments"
        ),
        "ours 0"
    );
}
