//! What build needs to know about the current catalog, read in one pass per table.

use crate::catalog::CatalogError;
use crate::events::{AllocationRecord, WorkerRecord};
use rusqlite::Connection;
use std::collections::BTreeMap;

/// The current value of one KV key (its highest version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvCurrent {
    pub value: String,
    pub sealed: bool,
    pub deleted: bool,
}

/// The catalog as build compares against it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogSnapshot {
    pub bucket_id: String,
    pub workers: BTreeMap<String, WorkerRecord>,
    /// Job name → fingerprint of its last recorded `JobRecord`.
    pub job_hashes: BTreeMap<String, String>,
    /// (job, cert name) → definition hash recorded for it.
    pub cert_definitions: BTreeMap<(String, String), String>,
    /// (job, port name) → (port, from the pool).
    pub ports: BTreeMap<(String, String), (u16, bool)>,
    /// (job, worker host) → allocation.
    pub allocations: BTreeMap<(String, String), AllocationRecord>,
    /// namespace → key → current value.
    pub kv: BTreeMap<String, BTreeMap<String, KvCurrent>>,
}

impl CatalogSnapshot {
    pub fn load(conn: &Connection) -> Result<CatalogSnapshot, CatalogError> {
        let mut snapshot = CatalogSnapshot {
            bucket_id: crate::catalog::read::bucket_id(conn)?.unwrap_or_default(),
            ..CatalogSnapshot::default()
        };
        let mut stmt = conn.prepare("SELECT host, worker_id, hostname, labels, memory_mb, cpu_mhz, tags, position FROM workers")?;
        let rows = stmt.query_map([], |row| {
            let labels: String = row.get(3)?;
            let tags: String = row.get(6)?;
            let tags: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&tags).unwrap_or_default();
            Ok(WorkerRecord {
                host: row.get(0)?,
                worker_id: row.get(1)?,
                hostname: row.get(2)?,
                labels: serde_json::from_str(&labels).unwrap_or_default(),
                memory_mb: row.get::<_, Option<i64>>(4)?.map(|v| v as u64),
                cpu_mhz: row.get::<_, Option<i64>>(5)?.map(|v| v as u64),
                tags: tags
                    .into_iter()
                    .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_string()))
                    .collect(),
                position: row.get(7)?,
            })
        })?;
        for worker in rows {
            let worker = worker?;
            snapshot.workers.insert(worker.host.clone(), worker);
        }
        let mut stmt = conn.prepare("SELECT name, record_hash FROM jobs")?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
            let (name, hash) = row?;
            snapshot.job_hashes.insert(name, hash);
        }
        let mut stmt = conn.prepare("SELECT job, name, definition_hash FROM job_certs")?;
        for row in stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })? {
            let (job, name, hash) = row?;
            snapshot.cert_definitions.insert((job, name), hash);
        }
        let mut stmt = conn.prepare("SELECT job, name, port, assigned FROM job_ports")?;
        for row in stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, u16>(2)?,
                r.get::<_, bool>(3)?,
            ))
        })? {
            let (job, name, port, from_pool) = row?;
            snapshot.ports.insert((job, name), (port, from_pool));
        }
        let mut stmt = conn.prepare(
            "SELECT alloc_id, job, worker_ip, disabled, removed, new_version, deployment_seq FROM allocations",
        )?;
        for row in stmt.query_map([], |r| {
            Ok(AllocationRecord {
                alloc_id: r.get(0)?,
                job: r.get(1)?,
                worker_ip: r.get(2)?,
                disabled: r.get(3)?,
                removed: r.get(4)?,
                new_version: r.get(5)?,
                deployment_seq: r.get(6)?,
            })
        })? {
            let allocation = row?;
            snapshot.allocations.insert(
                (allocation.job.clone(), allocation.worker_ip.clone()),
                allocation,
            );
        }
        for entry in crate::catalog::read::current_kv(conn)? {
            let current = KvCurrent {
                value: entry.value,
                sealed: entry.sealed,
                deleted: entry.deleted,
            };
            snapshot
                .kv
                .entry(entry.namespace)
                .or_default()
                .insert(entry.key, current);
        }
        Ok(snapshot)
    }

    /// The current, not deleted value of a key.
    pub fn kv_value(&self, namespace: &str, key: &str) -> Option<&KvCurrent> {
        self.kv.get(namespace)?.get(key).filter(|c| !c.deleted)
    }
}
