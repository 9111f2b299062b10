//! Replaying the journal: rebuilding the live projections, and checking that replay from zero
//! reproduces them exactly.

use super::{apply, decode_stored, CatalogError, PROJECTION_TABLES};
use rusqlite::{Connection, TransactionBehavior};

/// What a rebuild did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuildReport {
    pub events: u64,
}

/// Deletes every projection row and replays the whole journal, in one transaction.
pub fn rebuild(conn: &mut Connection) -> Result<RebuildReport, CatalogError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for table in PROJECTION_TABLES {
        tx.execute(&format!("DELETE FROM {table}"), [])?;
    }
    tx.execute("UPDATE projection_state SET last_seq = 0 WHERE id = 1", [])?;
    let events = replay(&tx, &tx)?;
    tx.commit()?;
    Ok(RebuildReport { events })
}

/// Applies every journal event of `source` to the projections reachable through `target`.
fn replay(source: &Connection, target: &rusqlite::Transaction) -> Result<u64, CatalogError> {
    replay_through(source, target, u64::MAX)
}

/// Applies the journal events of `source` up to and including `last_seq`.
fn replay_through(
    source: &Connection,
    target: &rusqlite::Transaction,
    last_seq: u64,
) -> Result<u64, CatalogError> {
    let mut count = 0;
    for stored in journal::events_from(source, 0) {
        let stored = stored?;
        if stored.seq > last_seq {
            break;
        }
        let (meta, event) = decode_stored(&stored)?;
        apply(target, &meta, &event)?;
        count += 1;
    }
    Ok(count)
}

/// A scratch in-memory catalog holding the projections as they were right after event
/// `last_seq`: time travel for `maand cat --at`.
pub fn catalog_at(conn: &Connection, last_seq: u64) -> Result<Connection, CatalogError> {
    let mut scratch = Connection::open_in_memory()?;
    crate::bucket::migrate(&mut scratch, std::path::Path::new(":memory:"))
        .map_err(|e| CatalogError::Scratch(e.to_string()))?;
    let tx = scratch.transaction()?;
    replay_through(conn, &tx, last_seq)?;
    tx.commit()?;
    Ok(scratch)
}

/// Rows of one projection table that differ between the live database and a replay from zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDiff {
    pub table: String,
    /// Rows present live but not produced by replay (rendered as JSON arrays).
    pub only_live: Vec<String>,
    /// Rows produced by replay but missing live.
    pub only_replayed: Vec<String>,
}

/// Replays the journal into a scratch in-memory database and compares every projection table
/// with the live one. An empty result means the projections are exactly what the journal says.
pub fn diff_with_replay(conn: &Connection) -> Result<Vec<TableDiff>, CatalogError> {
    let live_path = conn
        .path()
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .ok_or_else(|| CatalogError::Scratch("the live catalog is an in-memory database".into()))?;
    let mut scratch = Connection::open_in_memory()?;
    crate::bucket::migrate(&mut scratch, std::path::Path::new(":memory:"))
        .map_err(|e| CatalogError::Scratch(e.to_string()))?;
    {
        let tx = scratch.transaction()?;
        replay(conn, &tx)?;
        tx.commit()?;
    }
    scratch.execute(
        "ATTACH DATABASE ?1 AS live",
        [crate::bucket::read_only_uri(std::path::Path::new(
            &live_path,
        ))],
    )?;
    let mut diffs = Vec::new();
    for table in PROJECTION_TABLES {
        let only_live = rows_of(
            &scratch,
            &format!("SELECT * FROM live.{table} EXCEPT SELECT * FROM main.{table}"),
        )?;
        let only_replayed = rows_of(
            &scratch,
            &format!("SELECT * FROM main.{table} EXCEPT SELECT * FROM live.{table}"),
        )?;
        if !only_live.is_empty() || !only_replayed.is_empty() {
            diffs.push(TableDiff {
                table: table.to_string(),
                only_live,
                only_replayed,
            });
        }
    }
    Ok(diffs)
}

/// Every row of every projection table as `table<TAB>row`, rows rendered as JSON arrays,
/// sorted: a stable text picture of the catalog for golden files and cross-host comparison.
pub fn projection_dump(conn: &Connection) -> Result<Vec<String>, CatalogError> {
    let mut lines = Vec::new();
    for table in PROJECTION_TABLES {
        let mut rows = rows_of(conn, &format!("SELECT * FROM {table}"))?;
        rows.sort_unstable();
        lines.extend(rows.into_iter().map(|row| format!("{table}\t{row}")));
    }
    Ok(lines)
}

fn rows_of(conn: &Connection, sql: &str) -> Result<Vec<String>, CatalogError> {
    let mut stmt = conn.prepare(sql)?;
    let columns = stmt.column_count();
    let rows = stmt.query_map([], |row| {
        let values = (0..columns)
            .map(|i| {
                Ok(match row.get_ref(i)? {
                    rusqlite::types::ValueRef::Null => serde_json::Value::Null,
                    rusqlite::types::ValueRef::Integer(v) => v.into(),
                    rusqlite::types::ValueRef::Real(v) => v.into(),
                    rusqlite::types::ValueRef::Text(v) => {
                        String::from_utf8_lossy(v).into_owned().into()
                    }
                    rusqlite::types::ValueRef::Blob(v) => hex::encode(v).into(),
                })
            })
            .collect::<rusqlite::Result<Vec<serde_json::Value>>>()?;
        Ok(serde_json::Value::Array(values).to_string())
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::commit;
    use crate::events::*;
    use proptest::prelude::*;

    fn fresh_catalog(dir: &std::path::Path) -> Connection {
        let path = dir.join("maand.db");
        let mut conn = crate::bucket::open(&path).unwrap();
        crate::bucket::migrate(&mut conn, &path).unwrap();
        conn
    }

    fn arb_event() -> impl Strategy<Value = Event> {
        prop_oneof![
            (
                "[a-z ]{0,12}",
                prop::collection::vec("[ -~]{0,8}", 0..4),
                any::<u32>()
            )
                .prop_map(|(command, argv, pid)| {
                    Event::RunStarted(RunStarted {
                        command,
                        argv,
                        maand_version: "0.1.0".into(),
                        user: "u".into(),
                        host: "h".into(),
                        pid,
                    })
                }),
            (
                any::<bool>(),
                any::<u32>(),
                proptest::option::of("[ -~]{0,16}")
            )
                .prop_map(|(ok, ms, error)| {
                    Event::RunFinished(RunFinished {
                        outcome: if ok {
                            RunOutcome::Succeeded
                        } else {
                            RunOutcome::Failed
                        },
                        duration_ms: ms as u64,
                        error,
                    })
                }),
            ("[0-9a-f]{8}", "[0-9a-f]{8}").prop_map(|(bucket_id, ca_fingerprint)| {
                Event::BucketInitialized(BucketInitialized {
                    bucket_id,
                    schema_version: 1,
                    ca_fingerprint,
                })
            }),
            (0u32..5, 0u32..5).prop_map(|(from_schema, to_schema)| Event::BucketUpgraded(
                BucketUpgraded {
                    from_schema,
                    to_schema
                }
            )),
            ("[0-9a-f]{8}", 0u64..100).prop_map(|(bucket_id, update_seq)| {
                Event::BucketImported(BucketImported {
                    bucket_id,
                    update_seq,
                    schema_version: 5,
                    ca_fingerprint: "ff".into(),
                    go_schema_version: 1,
                    kept_copy: "data/go-maand.db".into(),
                    source_sha256: "00".into(),
                })
            }),
            (
                "[ab]",
                prop::collection::vec((proptest::option::of("[ -~]{0,4}"), 0i64..1_000_000), 1..10)
            )
                .prop_map(|(key, versions)| {
                    Event::KvImported(KvImported {
                        namespace: "vars/job/x".into(),
                        key,
                        versions: versions
                            .into_iter()
                            .map(|(value, time_ms)| ImportedKvVersion {
                                value: value.map(KvValue::Plain),
                                time_ms,
                            })
                            .collect(),
                    })
                }),
            ("[ab]", "[0-9]\\.[0-9]\\.[0-9]").prop_map(|(alloc_id, version)| {
                Event::AllocationAdopted(AllocationAdopted {
                    alloc_id,
                    job: "j".into(),
                    worker_ip: "127.0.0.1".into(),
                    version,
                    go_hash: "d41d8cd98f00b204e9800998ecf8427e".into(),
                })
            }),
        ]
    }

    /// Batches of (run index, time, events); the run index picks one of three run ids.
    fn arb_history() -> impl Strategy<Value = Vec<(usize, i64, Vec<Event>)>> {
        prop::collection::vec(
            (
                0usize..3,
                0i64..1_000_000,
                prop::collection::vec(arb_event(), 1..5),
            ),
            1..12,
        )
    }

    fn dump(conn: &Connection) -> Vec<(String, Vec<String>)> {
        PROJECTION_TABLES
            .iter()
            .map(|t| {
                (
                    t.to_string(),
                    rows_of(conn, &format!("SELECT * FROM {t} ORDER BY 1")).unwrap(),
                )
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        #[test]
        fn incremental_projections_equal_a_replay_from_zero(history in arb_history()) {
            let dir = tempfile::tempdir().unwrap();
            let mut conn = fresh_catalog(dir.path());
            let runs = ["run-a", "run-b", "run-c"];
            for (run, time_ms, events) in &history {
                commit(&mut conn, runs[*run], *time_ms, events, &[]).unwrap();
            }
            prop_assert_eq!(diff_with_replay(&conn).unwrap(), vec![]);
            let incremental = dump(&conn);
            rebuild(&mut conn).unwrap();
            prop_assert_eq!(dump(&conn), incremental);
        }
    }

    #[test]
    fn a_projection_edited_behind_maands_back_is_reported_and_rebuild_repairs_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = fresh_catalog(dir.path());
        let init = Event::BucketInitialized(BucketInitialized {
            bucket_id: "b1".into(),
            schema_version: 1,
            ca_fingerprint: "fp".into(),
        });
        commit(&mut conn, "r", 5, &[init], &[]).unwrap();
        conn.execute("UPDATE bucket SET update_seq = 99", [])
            .unwrap();
        let diffs = diff_with_replay(&conn).unwrap();
        assert_eq!(diffs.len(), 1);
        assert_eq!(diffs[0].table, "bucket");
        assert_eq!(diffs[0].only_live.len(), 1);
        assert!(diffs[0].only_live[0].contains("99"));
        rebuild(&mut conn).unwrap();
        assert!(diff_with_replay(&conn).unwrap().is_empty());
    }
}
