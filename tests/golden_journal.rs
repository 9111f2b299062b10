//! Golden journals: journals written by earlier versions of maand, committed under
//! `tests/golden/<version>/<name>/`, that every later version must read, verify and replay to the
//! projections committed beside them.
//!
//! Each directory holds `journal.jsonl` (one stored row per line: every column, bytes in hex,
//! plus `decoded`, the writer's rendering of the event for reviewers — never read here),
//! `blobs.jsonl` (the content-addressed blobs the events refer to) and `projections.txt`
//! (every projection row after a replay, as `catalog::projection_dump` renders it).
//!
//! The rule: a golden directory is never edited. An event schema change adds a new version
//! with an upcast in `Event::decode` (so the old rows still replay to the same projections)
//! and a new golden directory written by `write_golden_journals` (ignored; run it with
//! `MAAND_GOLDEN_OUT=tests/golden/<new version> cargo test --test golden_journal -- --ignored`).
//! `every_event_kind_and_version_has_a_golden_journal` fails until that directory exists.

use maand::catalog::{self, Blob};
use maand::events::*;
use rusqlite::{Connection, TransactionBehavior};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn golden_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Every `tests/golden/<version>/<name>/` holding a `journal.jsonl`.
fn golden_dirs() -> Vec<PathBuf> {
    let subdirs = |dir: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.is_dir())
            .collect()
    };
    let mut dirs: Vec<PathBuf> = subdirs(&golden_root())
        .iter()
        .flat_map(|version| subdirs(version))
        .filter(|path| path.join("journal.jsonl").is_file())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no golden journal under tests/golden");
    dirs
}

/// A fresh, migrated catalog database in a temporary directory.
fn empty_catalog() -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("maand.db");
    let mut conn = maand::bucket::open(&path).unwrap();
    maand::bucket::migrate(&mut conn, &path).unwrap();
    (dir, conn)
}

fn hex32(value: &Value, field: &str) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(value[field].as_str().unwrap(), &mut bytes).unwrap();
    bytes
}

fn read_rows(dir: &Path) -> Vec<journal::StoredEvent> {
    std::fs::read_to_string(dir.join("journal.jsonl"))
        .unwrap()
        .lines()
        .map(|line| {
            let row: Value = serde_json::from_str(line).unwrap();
            journal::StoredEvent {
                seq: row["seq"].as_u64().unwrap(),
                run_id: row["run_id"].as_str().unwrap().to_string(),
                time_ms: row["time_ms"].as_i64().unwrap(),
                kind: row["kind"].as_str().unwrap().to_string(),
                schema_version: row["schema_version"].as_u64().unwrap() as u16,
                payload: hex::decode(row["payload"].as_str().unwrap()).unwrap(),
                prev_hash: hex32(&row, "prev_hash"),
                hash: hex32(&row, "hash"),
            }
        })
        .collect()
}

fn read_blobs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    std::fs::read_to_string(dir.join("blobs.jsonl"))
        .unwrap()
        .lines()
        .map(|line| {
            let blob: Value = serde_json::from_str(line).unwrap();
            (
                blob["hash"].as_str().unwrap().to_string(),
                hex::decode(blob["content"].as_str().unwrap()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn golden_journals_verify_and_replay_to_their_committed_projections() {
    for dir in golden_dirs() {
        let name = dir
            .strip_prefix(golden_root())
            .unwrap()
            .display()
            .to_string();
        let (_tmp, mut conn) = empty_catalog();
        {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .unwrap();
            for (hash, content) in read_blobs(&dir) {
                catalog::integrity::check_blob(&hash, &content)
                    .unwrap_or_else(|damage| panic!("{name}: blob {damage}"));
                tx.execute(
                    "INSERT INTO blobs (hash, size, content) VALUES (?1, ?2, ?3)",
                    rusqlite::params![hash, content.len() as i64, content],
                )
                .unwrap();
            }
            journal::append_chained(&tx, &read_rows(&dir))
                .unwrap_or_else(|error| panic!("{name}: {error}"));
            tx.commit().unwrap();
        }
        let report = journal::verify(&conn).unwrap();
        assert!(report.is_intact(), "{name}: {:?}", report.first_bad);
        catalog::rebuild(&mut conn).unwrap_or_else(|error| panic!("{name}: {error}"));
        let replayed = catalog::projection_dump(&conn).unwrap();
        let committed: Vec<String> = std::fs::read_to_string(dir.join("projections.txt"))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        if replayed != committed {
            let (committed, replayed) = (committed.join("\n"), replayed.join("\n"));
            let diff = similar::TextDiff::from_lines(committed.as_str(), replayed.as_str())
                .unified_diff()
                .header("committed", "replayed")
                .to_string();
            panic!("{name}: replaying the golden journal no longer gives its committed projections:\n{diff}");
        }
    }
}

#[test]
fn every_event_kind_and_version_has_a_golden_journal() {
    let covered: BTreeSet<(String, u16)> = golden_dirs()
        .iter()
        .flat_map(|dir| read_rows(dir))
        .map(|row| (row.kind, row.schema_version))
        .collect();
    let missing: Vec<String> = Event::KIND_VERSIONS
        .iter()
        .filter(|(kind, version)| !covered.contains(&(kind.to_string(), *version)))
        .map(|(kind, version)| format!("{kind} v{version}"))
        .collect();
    assert!(
        missing.is_empty(),
        "no golden journal holds {}: write a new golden directory (see the top of tests/golden_journal.rs), never edit an old one",
        missing.join(", ")
    );
}

/// Writes the golden journals of this version into `$MAAND_GOLDEN_OUT/<name>/`, refusing to
/// overwrite anything. Run by hand when an event schema changes (see the module comment).
#[test]
#[ignore = "writes golden files; run by hand with MAAND_GOLDEN_OUT set"]
fn write_golden_journals() {
    let out = PathBuf::from(std::env::var("MAAND_GOLDEN_OUT").expect("set MAAND_GOLDEN_OUT"));
    for (name, history) in [
        ("native", native_history()),
        ("imported", imported_history()),
    ] {
        let dir = out.join(name);
        assert!(
            !dir.exists(),
            "{} exists: golden files are never rewritten",
            dir.display()
        );
        std::fs::create_dir_all(&dir).unwrap();
        let (_tmp, mut conn) = empty_catalog();
        for run in &history {
            catalog::commit(&mut conn, run.id, run.time_ms, &run.events, &run.blobs).unwrap();
        }
        let mut journal_lines = String::new();
        for stored in journal::events_from(&conn, 0) {
            let stored = stored.unwrap();
            let (_, event) = catalog::decode_stored(&stored).unwrap();
            let row = json!({
                "seq": stored.seq,
                "run_id": stored.run_id,
                "time_ms": stored.time_ms,
                "kind": stored.kind,
                "schema_version": stored.schema_version,
                "payload": hex::encode(&stored.payload),
                "prev_hash": hex::encode(stored.prev_hash),
                "hash": hex::encode(stored.hash),
                "decoded": format!("{event:?}"),
            });
            journal_lines.push_str(&format!("{row}\n"));
        }
        let blobs: BTreeSet<(String, String)> = history
            .iter()
            .flat_map(|run| &run.blobs)
            .map(|blob| (blob.hash.clone(), hex::encode(&blob.content)))
            .collect();
        let blob_lines: String = blobs
            .iter()
            .map(|(hash, content)| format!("{}\n", json!({"hash": hash, "content": content})))
            .collect();
        let projections: String = catalog::projection_dump(&conn)
            .unwrap()
            .into_iter()
            .map(|line| line + "\n")
            .collect();
        std::fs::write(dir.join("journal.jsonl"), journal_lines).unwrap();
        std::fs::write(dir.join("blobs.jsonl"), blob_lines).unwrap();
        std::fs::write(dir.join("projections.txt"), projections).unwrap();
    }
}

/// One committed batch of a history: what `Run::record` would commit.
struct RunBatch {
    id: &'static str,
    time_ms: i64,
    events: Vec<Event>,
    blobs: Vec<Blob>,
}

const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

fn batch(id: &'static str, minute: i64, events: Vec<Event>) -> RunBatch {
    RunBatch {
        id,
        time_ms: T0 + minute * 60_000,
        events,
        blobs: Vec::new(),
    }
}

fn started(command: &str) -> Event {
    Event::RunStarted(RunStarted {
        command: command.into(),
        argv: vec!["maand".into(), command.into()],
        maand_version: "0.1.0".into(),
        user: "ops".into(),
        host: "operator-1".into(),
        pid: 4242,
    })
}

fn finished(outcome: RunOutcome, error: Option<&str>) -> Event {
    Event::RunFinished(RunFinished {
        outcome,
        duration_ms: 1500,
        error: error.map(str::to_string),
    })
}

fn worker(host: &str, position: u32, labels: &[&str]) -> Event {
    Event::WorkerUpserted(WorkerRecord {
        host: host.into(),
        worker_id: format!("worker-id-{position}"),
        hostname: Some(format!("node-{position}")),
        labels: labels.iter().map(|l| l.to_string()).collect(),
        memory_mb: Some(2048),
        cpu_mhz: Some(2400),
        tags: vec![("zone".into(), "a".into())],
        position,
    })
}

fn job(name: &str, files: &[(&str, &Blob)], commands: Vec<JobCommandRecord>) -> Event {
    Event::JobUpserted(Box::new(JobRecord {
        name: name.into(),
        job_id: format!("job-id-{name}"),
        version: "1.0.0".into(),
        version_declared: true,
        selectors: vec![name.into()],
        max_concurrent_upgrades: 1,
        max_concurrent_starts: 0,
        min_allocations_count: 1,
        restart_policy: "always".into(),
        restart_globs: vec!["*.conf".into()],
        min_memory_mb: 64,
        max_memory_mb: 512,
        current_memory_mb: 256,
        min_cpu_mhz: 100,
        max_cpu_mhz: 1000,
        current_cpu_mhz: 500,
        resources_source: "manifest".into(),
        deployment_seq: 1,
        health_check: Some("_modules/health.py".into()),
        commands,
        certs: vec![JobCertRecord {
            name: "server".into(),
            definition: "{\"subject\":\"api\"}".into(),
            definition_hash: "d1".into(),
        }],
        files: files
            .iter()
            .map(|(path, blob)| JobFileRecord {
                path: path.to_string(),
                hash: blob.hash.clone(),
                size: blob.content.len() as u64,
                executable: path.ends_with(".sh"),
            })
            .collect(),
        files_hash: format!("files-of-{name}"),
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
        deployment_seq: 1,
    })
}

fn label(action: &str) -> StepLabel {
    StepLabel {
        job: Some("api".into()),
        worker: Some("10.0.0.1".into()),
        action: action.into(),
    }
}

/// A bucket made by `maand init`: build, deploy, a killed deploy, a shrinking build.
/// Every event kind except the Go-import ones and `bucket_upgraded`.
fn native_history() -> Vec<RunBatch> {
    let makefile = Blob::of(b"start:\n\t./run.sh\n".to_vec());
    let run_sh = Blob::of(b"#!/bin/sh\nexec sleep 1000\n".to_vec());
    let db_makefile = Blob::of(b"start:\n\ttrue\n".to_vec());
    let api_alloc = "api@10.0.0.1";
    let plan = DeployPlanned {
        deploy_id: "deploy-1".into(),
        catalog_seq: 21,
        update_seq: 1,
        flags: DeployFlags {
            jobs: vec![],
            force: false,
            sync_only: false,
        },
        steps: vec![
            PlannedStep {
                index: 0,
                wave: 0,
                job: Some("api".into()),
                worker: Some("10.0.0.1".into()),
                batch: 0,
                kind: StepKind::Sync {
                    alloc_id: api_alloc.into(),
                    tree_hash: "tree-1".into(),
                    transfer: true,
                },
            },
            PlannedStep {
                index: 1,
                wave: 0,
                job: Some("api".into()),
                worker: None,
                batch: 0,
                kind: StepKind::Hook {
                    command: "command_pre".into(),
                    event: "pre_deploy".into(),
                    alloc_ids: vec![api_alloc.into()],
                    env: vec![("MODE".into(), "golden".into())],
                },
            },
            PlannedStep {
                index: 2,
                wave: 0,
                job: Some("api".into()),
                worker: Some("10.0.0.1".into()),
                batch: 0,
                kind: StepKind::Lifecycle {
                    alloc_id: api_alloc.into(),
                    target: "start".into(),
                },
            },
            PlannedStep {
                index: 3,
                wave: 0,
                job: Some("api".into()),
                worker: None,
                batch: 0,
                kind: StepKind::HealthGate {
                    alloc_ids: vec![api_alloc.into()],
                },
            },
            PlannedStep {
                index: 4,
                wave: 0,
                job: Some("api".into()),
                worker: None,
                batch: 0,
                kind: StepKind::Promote {
                    alloc_ids: vec![api_alloc.into()],
                },
            },
            PlannedStep {
                index: 5,
                wave: 1,
                job: None,
                worker: Some("10.0.0.2".into()),
                batch: 0,
                kind: StepKind::Finalize,
            },
        ],
    };
    let mut build = batch(
        "run-build-1",
        1,
        vec![
            started("build"),
            worker("10.0.0.1", 0, &["api"]),
            worker("10.0.0.2", 1, &["db"]),
            job(
                "api",
                &[("Makefile", &makefile), ("run.sh", &run_sh)],
                vec![JobCommandRecord {
                    name: "command_pre".into(),
                    event: "pre_deploy".into(),
                    script: "_modules/command_pre.py".into(),
                    demand_job: "db".into(),
                    demand_command: "command_ready".into(),
                    demand_config: "{\"wait\":true}".into(),
                }],
            ),
            job("db", &[("Makefile", &db_makefile)], vec![]),
            Event::PortAssigned(PortAssigned {
                job: "api".into(),
                name: "http_port".into(),
                port: 8080,
                from_pool: false,
            }),
            Event::PortAssigned(PortAssigned {
                job: "db".into(),
                name: "db_port".into(),
                port: 10_000,
                from_pool: true,
            }),
            allocation("api", "10.0.0.1", false),
            allocation("db", "10.0.0.2", false),
            Event::KvChanged(KvChanged {
                namespace: "vars/job/api".into(),
                changes: vec![
                    KvChange::Put {
                        key: "greeting".into(),
                        value: KvValue::Plain("hello".into()),
                    },
                    KvChange::Put {
                        key: "token".into(),
                        value: KvValue::Sealed("c2VhbGVkLWJ5dGVz".into()),
                    },
                    KvChange::Put {
                        key: "old".into(),
                        value: KvValue::Plain("gone soon".into()),
                    },
                ],
            }),
            Event::KvChanged(KvChanged {
                namespace: "vars/job/api".into(),
                changes: vec![KvChange::Delete { key: "old".into() }],
            }),
            Event::UpdateSeqBumped(UpdateSeqBumped { update_seq: 1 }),
            finished(RunOutcome::Succeeded, None),
        ],
    );
    build.blobs = vec![makefile, run_sh, db_makefile];
    vec![
        batch(
            "run-init-1",
            0,
            vec![
                started("init"),
                Event::BucketInitialized(BucketInitialized {
                    bucket_id: "golden-bucket-native".into(),
                    schema_version: 1,
                    ca_fingerprint: "ca-fingerprint".into(),
                }),
                finished(RunOutcome::Succeeded, None),
            ],
        ),
        build,
        batch(
            "run-deploy-1",
            2,
            vec![
                started("deploy"),
                Event::DeployPlanned(Box::new(plan)),
                Event::DeploySkipped(DeploySkipped {
                    job: "db".into(),
                    reason: "no change since the last deploy".into(),
                }),
                Event::StepStarted(StepStarted {
                    deploy_id: "deploy-1".into(),
                    index: 0,
                    step: label("sync"),
                }),
                Event::AllocationStaged(AllocationStaged {
                    alloc_id: api_alloc.into(),
                    job: "api".into(),
                    worker_ip: "10.0.0.1".into(),
                    tree_hash: "tree-1".into(),
                    files: vec![("Makefile".into(), "h-makefile".into())],
                }),
                Event::StepSucceeded(StepSucceeded {
                    deploy_id: "deploy-1".into(),
                    index: 0,
                    step: label("sync"),
                    note: Some("2 files".into()),
                }),
                Event::StepStarted(StepStarted {
                    deploy_id: "deploy-1".into(),
                    index: 1,
                    step: label("pre_deploy"),
                }),
                Event::CommandStarted(CommandStarted {
                    worker: "10.0.0.1".into(),
                    job: Some("api".into()),
                    phase: "job_command".into(),
                    action: "command_pre".into(),
                    command: "python3 _modules/command_pre.py".into(),
                }),
                Event::CommandOutput(CommandOutput {
                    worker: "10.0.0.1".into(),
                    job: Some("api".into()),
                    phase: "job_command".into(),
                    stream: Stream::Stdout,
                    line: "ready".into(),
                }),
                Event::CommandOutput(CommandOutput {
                    worker: "10.0.0.1".into(),
                    job: Some("api".into()),
                    phase: "job_command".into(),
                    stream: Stream::Stderr,
                    line: "warning: slow disk".into(),
                }),
                Event::CommandFinished(CommandFinished {
                    worker: "10.0.0.1".into(),
                    job: Some("api".into()),
                    phase: "job_command".into(),
                    action: "command_pre".into(),
                    exit_code: Some(0),
                    duration_ms: 120,
                    error: None,
                }),
                Event::StepSucceeded(StepSucceeded {
                    deploy_id: "deploy-1".into(),
                    index: 1,
                    step: label("pre_deploy"),
                    note: None,
                }),
                Event::StepStarted(StepStarted {
                    deploy_id: "deploy-1".into(),
                    index: 2,
                    step: label("start"),
                }),
                Event::StepSucceeded(StepSucceeded {
                    deploy_id: "deploy-1".into(),
                    index: 2,
                    step: label("start"),
                    note: None,
                }),
                Event::StepStarted(StepStarted {
                    deploy_id: "deploy-1".into(),
                    index: 3,
                    step: label("health_gate"),
                }),
                Event::HealthChecked(HealthChecked {
                    alloc_id: api_alloc.into(),
                    job: "api".into(),
                    worker_ip: "10.0.0.1".into(),
                    healthy: false,
                    detail: "tcp http_port (8080): connection refused".into(),
                    attempt: 1,
                }),
                Event::StepFailed(StepFailed {
                    deploy_id: "deploy-1".into(),
                    index: 3,
                    step: label("health_gate"),
                    error: "api is not healthy after 1 attempt".into(),
                }),
                Event::StepSkipped(StepSkipped {
                    deploy_id: "deploy-1".into(),
                    index: 4,
                    step: label("promote"),
                    reason: "the health gate of api failed".into(),
                }),
                Event::DeployFinished(DeployFinished {
                    deploy_id: "deploy-1".into(),
                    outcome: RunOutcome::Failed,
                    failed_jobs: vec!["api".into()],
                }),
                finished(RunOutcome::Failed, Some("deploy failed: api")),
            ],
        ),
        batch("run-deploy-killed", 3, vec![started("deploy")]),
        batch(
            "run-deploy-2",
            4,
            vec![
                started("deploy"),
                Event::RunAbandoned(RunAbandoned {
                    run_id: "run-deploy-killed".into(),
                    command: "deploy".into(),
                    pid: 4242,
                }),
                Event::HealthChecked(HealthChecked {
                    alloc_id: api_alloc.into(),
                    job: "api".into(),
                    worker_ip: "10.0.0.1".into(),
                    healthy: true,
                    detail: "tcp http_port (8080): open".into(),
                    attempt: 2,
                }),
                Event::AllocationPromoted(AllocationPromoted {
                    alloc_id: api_alloc.into(),
                    version: "1.0.0".into(),
                }),
                finished(
                    RunOutcome::Interrupted,
                    Some("interrupted by SIGINT or SIGTERM"),
                ),
            ],
        ),
        batch(
            "run-build-2",
            5,
            vec![
                started("build"),
                Event::WorkerRemoved(WorkerRemoved {
                    host: "10.0.0.2".into(),
                }),
                allocation("db", "10.0.0.2", true),
                Event::AllocationStopped(AllocationStopped {
                    alloc_id: "db@10.0.0.2".into(),
                }),
                Event::AllocationHashCleared(AllocationHashCleared {
                    alloc_id: "db@10.0.0.2".into(),
                }),
                Event::AllocationPurged(AllocationPurged {
                    alloc_id: "db@10.0.0.2".into(),
                    job: "db".into(),
                    worker_ip: "10.0.0.2".into(),
                }),
                Event::PortReleased(PortReleased {
                    job: "db".into(),
                    name: "db_port".into(),
                }),
                Event::JobRemoved(JobRemoved { name: "db".into() }),
                Event::KvPurged(KvPurged {
                    keys: vec![("vars/job/api".into(), "old".into())],
                }),
                Event::UpdateSeqBumped(UpdateSeqBumped { update_seq: 2 }),
                finished(RunOutcome::Succeeded, None),
            ],
        ),
    ]
}

/// A bucket imported from the Go maand, later upgraded: the import kinds and
/// `bucket_upgraded`.
fn imported_history() -> Vec<RunBatch> {
    let makefile = Blob::of(b"start:\n\tgo-run\n".to_vec());
    let mut import = batch(
        "run-import-1",
        0,
        vec![
            started("init"),
            Event::BucketImported(BucketImported {
                bucket_id: "golden-bucket-imported".into(),
                update_seq: 7,
                schema_version: 1,
                ca_fingerprint: "go-ca-fingerprint".into(),
                go_schema_version: 1,
                kept_copy: "data/go-maand.db".into(),
                source_sha256: "0f".repeat(32),
            }),
            worker("10.0.1.1", 0, &["legacy"]),
            job("legacy", &[("Makefile", &makefile)], vec![]),
            allocation("legacy", "10.0.1.1", false),
            Event::KvImported(KvImported {
                namespace: "vars/job/legacy".into(),
                key: "mode".into(),
                versions: vec![
                    ImportedKvVersion {
                        value: Some(KvValue::Plain("a".into())),
                        time_ms: T0 - 2_000,
                    },
                    ImportedKvVersion {
                        value: None,
                        time_ms: T0 - 1_000,
                    },
                    ImportedKvVersion {
                        value: Some(KvValue::Sealed("c2VjcmV0".into())),
                        time_ms: T0 - 500,
                    },
                ],
            }),
            Event::AllocationAdopted(AllocationAdopted {
                alloc_id: "legacy@10.0.1.1".into(),
                job: "legacy".into(),
                worker_ip: "10.0.1.1".into(),
                version: "0.9.0".into(),
                go_hash: "go-md5-hash".into(),
            }),
            finished(RunOutcome::Succeeded, None),
        ],
    );
    import.blobs = vec![makefile];
    vec![
        import,
        batch(
            "run-upgrade-1",
            1,
            vec![
                started("init"),
                Event::BucketUpgraded(BucketUpgraded {
                    from_schema: 1,
                    to_schema: 2,
                }),
                finished(RunOutcome::Succeeded, None),
            ],
        ),
    ]
}
