//! Read models for `maand cat`: one typed row per catalog entry, in a stable order, with the
//! `--jobs` / `--workers` selection checked against the catalog so a misspelt name fails
//! instead of printing an empty table.
//!
//! Reads only: nothing here writes a table, takes the bucket lock, opens a secret or prints.
//! Sealed KV values never leave this module in list rows ([`KvRow`] has no field for them);
//! only [`kv_entry`] returns the sealed text, for `cat kv get --reveal` to open.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use time::OffsetDateTime;

use crate::certs::{self, CertStatus, CERTS_KV_PREFIX};
use crate::events::KvValue;
use crate::kv::access;
use crate::kv::peers::{self, PeerLists};

/// A catalog read that could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("catalog database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(
        "unknown {what} {names}: not in the catalog (known: {known}); check the spelling, \
         or run `maand build` if you just added it to the workspace"
    )]
    UnknownNames {
        /// `job`, `jobs`, `worker` or `workers`.
        what: String,
        /// The rejected names, comma-separated.
        names: String,
        /// What the catalog has, comma-separated (`none` when empty).
        known: String,
    },
    #[error(
        "catalog table `{table}`, row `{row}`: column `{column}` is not the JSON maand writes \
         ({reason}); run `maand journal verify`, then `maand journal rebuild`"
    )]
    StoredJson {
        table: &'static str,
        row: String,
        column: &'static str,
        reason: String,
    },
}

/// Which jobs and workers a listing is limited to. An empty list means "all".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    pub jobs: Vec<String>,
    /// Worker hosts (IPs), as in `workers.json`.
    pub workers: Vec<String>,
}

impl Selection {
    fn admits_job(&self, job: &str) -> bool {
        self.jobs.is_empty() || self.jobs.iter().any(|j| j == job)
    }

    fn admits_worker(&self, worker_ip: &str) -> bool {
        self.workers.is_empty() || self.workers.iter().any(|w| w == worker_ip)
    }

    /// Fails naming every selected job or worker the catalog does not know. A job is known
    /// when it is in `jobs` or still has allocation rows; a worker when it is in `workers` or
    /// still hosts allocation rows (removed ones included).
    pub fn check(&self, conn: &Connection) -> Result<(), TableError> {
        check_known(
            conn,
            "job",
            &self.jobs,
            "SELECT name FROM jobs UNION SELECT job FROM allocations ORDER BY 1",
        )?;
        check_known(
            conn,
            "worker",
            &self.workers,
            "SELECT host FROM workers UNION SELECT worker_ip FROM allocations ORDER BY 1",
        )
    }
}

fn check_known(
    conn: &Connection,
    what: &'static str,
    selected: &[String],
    known_sql: &str,
) -> Result<(), TableError> {
    if selected.is_empty() {
        return Ok(());
    }
    let known: Vec<String> = conn
        .prepare(known_sql)?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let unknown: Vec<&str> = selected
        .iter()
        .filter(|name| !known.contains(name))
        .map(String::as_str)
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    const SHOWN: usize = 20;
    let mut known_text = known
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if known.is_empty() {
        known_text = "none".to_string();
    } else if known.len() > SHOWN {
        known_text.push_str(&format!(", … ({} in all)", known.len()));
    }
    Err(TableError::UnknownNames {
        what: if unknown.len() == 1 {
            what.to_string()
        } else {
            format!("{what}s")
        },
        names: unknown.join(", "),
        known: known_text,
    })
}

fn parse_json<T: serde::de::DeserializeOwned>(
    table: &'static str,
    row: &str,
    column: &'static str,
    text: &str,
) -> Result<T, TableError> {
    serde_json::from_str(text).map_err(|e| TableError::StoredJson {
        table,
        row: row.to_string(),
        column,
        reason: e.to_string(),
    })
}

/// The `zone` tag of a worker, the one tag `cat` shows as a column of its own.
fn zone_of(tags: &BTreeMap<String, String>) -> Option<String> {
    tags.get("zone").cloned()
}

/// One worker of `workers.json` as the catalog holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkerRow {
    pub host: String,
    pub worker_id: String,
    pub hostname: Option<String>,
    pub labels: Vec<String>,
    pub memory_mb: Option<u64>,
    pub cpu_mhz: Option<u64>,
    /// `tags.zone`, when the worker has one.
    pub zone: Option<String>,
    pub tags: BTreeMap<String, String>,
    /// Index in `workers.json`.
    pub position: u32,
}

/// Every worker, in `workers.json` order.
pub fn workers(conn: &Connection) -> Result<Vec<WorkerRow>, TableError> {
    let mut stmt = conn.prepare(
        "SELECT host, worker_id, hostname, labels, memory_mb, cpu_mhz, tags, position
         FROM workers ORDER BY position, host",
    )?;
    let raw = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<i64>>(4)?,
                r.get::<_, Option<i64>>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, u32>(7)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    raw.into_iter()
        .map(
            |(host, worker_id, hostname, labels, memory_mb, cpu_mhz, tags, position)| {
                let labels = parse_json("workers", &host, "labels", &labels)?;
                let tags: BTreeMap<String, String> = parse_json("workers", &host, "tags", &tags)?;
                Ok(WorkerRow {
                    zone: zone_of(&tags),
                    host,
                    worker_id,
                    hostname,
                    labels,
                    memory_mb: memory_mb.map(|v| v as u64),
                    cpu_mhz: cpu_mhz.map(|v| v as u64),
                    tags,
                    position,
                })
            },
        )
        .collect()
}

/// One job as the last build recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobRow {
    pub name: String,
    pub job_id: String,
    pub version: String,
    pub selectors: Vec<String>,
    /// Deploy wave: jobs deploy in ascending `deployment_seq`.
    pub deployment_seq: u32,
    /// The job has allocations and every non-removed one is disabled.
    pub disabled: bool,
    pub max_concurrent_upgrades: u32,
    pub max_concurrent_starts: u32,
    pub min_allocations_count: u32,
    pub restart_policy: String,
    pub restart_globs: Vec<String>,
    /// Memory reserved on each worker hosting the job, in MB.
    pub memory_mb: u64,
    /// CPU reserved on each worker hosting the job, in MHz.
    pub cpu_mhz: u64,
    pub min_memory_mb: u64,
    pub max_memory_mb: u64,
    pub min_cpu_mhz: u64,
    pub max_cpu_mhz: u64,
    /// `manifest`, or the `bucket.jobs*.conf` file the reservation came from.
    pub resources_source: String,
    pub files_hash: String,
}

/// Every job, in deploy order (`deployment_seq`, then name).
pub fn jobs(conn: &Connection) -> Result<Vec<JobRow>, TableError> {
    let mut stmt = conn.prepare(
        "SELECT j.name, j.job_id, j.version, j.selectors, j.deployment_seq,
                j.max_concurrent_upgrades, j.max_concurrent_starts, j.min_allocations_count,
                j.restart_policy, j.restart_globs, j.current_memory_mb, j.current_cpu_mhz,
                j.min_memory_mb, j.max_memory_mb, j.min_cpu_mhz, j.max_cpu_mhz,
                j.resources_source, j.files_hash,
                (SELECT count(*) FROM allocations a WHERE a.job = j.name AND a.removed = 0),
                (SELECT count(*) FROM allocations a WHERE a.job = j.name AND a.removed = 0 AND a.disabled = 0)
         FROM jobs j ORDER BY j.deployment_seq, j.name",
    )?;
    let raw = stmt
        .query_map([], |r| {
            let name: String = r.get(0)?;
            let selectors: String = r.get(3)?;
            let restart_globs: String = r.get(9)?;
            let placed: i64 = r.get(18)?;
            let active: i64 = r.get(19)?;
            let row = JobRow {
                name,
                job_id: r.get(1)?,
                version: r.get(2)?,
                selectors: Vec::new(),
                deployment_seq: r.get(4)?,
                disabled: placed > 0 && active == 0,
                max_concurrent_upgrades: r.get(5)?,
                max_concurrent_starts: r.get(6)?,
                min_allocations_count: r.get(7)?,
                restart_policy: r.get(8)?,
                restart_globs: Vec::new(),
                memory_mb: r.get::<_, i64>(10)? as u64,
                cpu_mhz: r.get::<_, i64>(11)? as u64,
                min_memory_mb: r.get::<_, i64>(12)? as u64,
                max_memory_mb: r.get::<_, i64>(13)? as u64,
                min_cpu_mhz: r.get::<_, i64>(14)? as u64,
                max_cpu_mhz: r.get::<_, i64>(15)? as u64,
                resources_source: r.get(16)?,
                files_hash: r.get(17)?,
            };
            Ok((row, selectors, restart_globs))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    raw.into_iter()
        .map(|(mut row, selectors, restart_globs)| {
            row.selectors = parse_json("jobs", &row.name, "selectors", &selectors)?;
            row.restart_globs = parse_json("jobs", &row.name, "restart_globs", &restart_globs)?;
            Ok(row)
        })
        .collect()
}

/// One allocation: a job placed on a worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AllocationRow {
    pub alloc_id: String,
    pub job: String,
    pub worker_ip: String,
    /// The worker's `tags.zone` (none when the worker has no zone or left the catalog).
    pub zone: Option<String>,
    pub disabled: bool,
    pub removed: bool,
    pub new_version: String,
    pub deployment_seq: u32,
}

/// Allocations of the selected jobs on the selected workers, by job, then worker order.
pub fn allocations(
    conn: &Connection,
    selection: &Selection,
) -> Result<Vec<AllocationRow>, TableError> {
    selection.check(conn)?;
    let mut stmt = conn.prepare(
        "SELECT a.alloc_id, a.job, a.worker_ip, w.tags, a.disabled, a.removed, a.new_version,
                a.deployment_seq
         FROM allocations a LEFT JOIN workers w ON w.host = a.worker_ip
         ORDER BY a.job, w.position IS NULL, w.position, a.worker_ip",
    )?;
    let raw = stmt
        .query_map([], |r| {
            let row = AllocationRow {
                alloc_id: r.get(0)?,
                job: r.get(1)?,
                worker_ip: r.get(2)?,
                zone: None,
                disabled: r.get(4)?,
                removed: r.get(5)?,
                new_version: r.get(6)?,
                deployment_seq: r.get(7)?,
            };
            Ok((row, r.get::<_, Option<String>>(3)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    raw.into_iter()
        .filter(|(row, _)| {
            selection.admits_job(&row.job) && selection.admits_worker(&row.worker_ip)
        })
        .map(|(mut row, tags)| {
            if let Some(tags) = tags {
                let tags: BTreeMap<String, String> =
                    parse_json("workers", &row.worker_ip, "tags", &tags)?;
                row.zone = zone_of(&tags);
            }
            Ok(row)
        })
        .collect()
}

/// Where an allocation stands in its rollout, from its allocation flags and its hash row (the
/// `deployments` projection deploy maintains).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rollout {
    /// The allocation was removed from placement; deploy stops it, `gc` purges it.
    Removed,
    /// Drained by `disabled.json`, and what was last staged is what is promoted.
    Disabled,
    /// Drained by `disabled.json`, with staged content or a version not yet promoted; deploy
    /// promotes it without starting anything.
    DisabledRestart,
    /// Active and not running maand's content: never promoted, or stopped while disabled.
    /// The next deploy starts it.
    New,
    /// Active, and the staged tree or the catalog version differs from the promoted one. The
    /// next deploy applies the job's restart policy.
    Restart,
    /// Active, and the promoted tree and version are the staged ones. Deploy skips it.
    Promoted,
    /// Active, and a health check marked the promoted content as failing.
    HealthFailed,
    /// Active and imported from the Go maand, not deployed by this maand yet: the next deploy
    /// compares its staged tree with the worker's and restarts it only when they differ.
    Adopted,
}

impl Rollout {
    pub fn as_str(self) -> &'static str {
        match self {
            Rollout::Removed => "removed",
            Rollout::Disabled => "disabled",
            Rollout::DisabledRestart => "disabled_restart",
            Rollout::New => "new",
            Rollout::Restart => "restart",
            Rollout::Promoted => "promoted",
            Rollout::HealthFailed => "health_failed",
            Rollout::Adopted => "adopted",
        }
    }
}

/// One allocation's deploy state, for `maand cat deployments`.
///
/// The hash side is what the last deploy (or dry run) staged and promoted: it changes when a
/// deploy stages the catalog's content, not when a build records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeploymentRow {
    pub alloc_id: String,
    pub job: String,
    pub worker_ip: String,
    /// Hash of the tree last staged for the allocation (`None` before its first staging).
    pub current_hash: Option<String>,
    /// Hash of the tree promoted on the worker (`None` before its first promotion).
    pub previous_hash: Option<String>,
    /// Version promoted on the worker (`None` before its first promotion).
    pub current_version: Option<String>,
    /// Version the catalog wants on the worker.
    pub new_version: String,
    pub rollout: Rollout,
}

/// An allocation's row in the `deployments` projection.
struct HashRow {
    current_hash: String,
    previous_hash: Option<String>,
    current_version: String,
    health_failed: bool,
    stopped: bool,
    adopted: bool,
}

fn rollout(allocation: &AllocationRow, hashes: Option<&HashRow>) -> Rollout {
    let pending = |h: &HashRow| {
        h.previous_hash.as_deref() != Some(h.current_hash.as_str())
            || h.current_version != allocation.new_version
    };
    if allocation.removed {
        return Rollout::Removed;
    }
    if allocation.disabled {
        return match hashes {
            Some(h) if pending(h) => Rollout::DisabledRestart,
            _ => Rollout::Disabled,
        };
    }
    match hashes {
        None => Rollout::New,
        Some(h) if h.previous_hash.is_none() || h.stopped => Rollout::New,
        Some(h) if h.health_failed => Rollout::HealthFailed,
        Some(h) if h.adopted => Rollout::Adopted,
        Some(h) if pending(h) => Rollout::Restart,
        Some(_) => Rollout::Promoted,
    }
}

/// Rollout state of the selected allocations; with `active_only`, only allocations deploy
/// would target (neither removed nor disabled).
pub fn deployments(
    conn: &Connection,
    selection: &Selection,
    active_only: bool,
) -> Result<Vec<DeploymentRow>, TableError> {
    let allocations = allocations(conn, selection)?;
    let mut stmt = conn.prepare(
        "SELECT alloc_id, current_hash, previous_hash, current_version, health_failed, stopped, adopted
         FROM deployments",
    )?;
    let hashes: BTreeMap<String, HashRow> = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                HashRow {
                    current_hash: r.get(1)?,
                    previous_hash: r.get(2)?,
                    current_version: r.get(3)?,
                    health_failed: r.get(4)?,
                    stopped: r.get(5)?,
                    adopted: r.get(6)?,
                },
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(allocations
        .into_iter()
        .filter(|a| !active_only || (!a.removed && !a.disabled))
        .map(|a| {
            let row = hashes.get(&a.alloc_id);
            let promoted = row.filter(|h| h.previous_hash.is_some());
            DeploymentRow {
                rollout: rollout(&a, row),
                current_hash: row.map(|h| h.current_hash.clone()),
                previous_hash: row.and_then(|h| h.previous_hash.clone()),
                current_version: promoted.map(|h| h.current_version.clone()),
                alloc_id: a.alloc_id,
                job: a.job,
                worker_ip: a.worker_ip,
                new_version: a.new_version,
            }
        })
        .collect())
}

/// One `(command, executed_on)` pair of a job manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobCommandRow {
    pub job: String,
    pub name: String,
    /// The event the command runs on (`post_build`, `cli`, ...).
    pub event: String,
    /// Path of the script inside the job directory.
    pub script: String,
    /// Upstream job the command demands (empty when none).
    pub demand_job: String,
    pub demand_command: String,
    pub demand_config: serde_json::Value,
}

/// Commands of the selected jobs, by job, name and event. Workers in the selection are
/// checked but do not restrict commands (commands belong to jobs, not workers).
pub fn job_commands(
    conn: &Connection,
    selection: &Selection,
) -> Result<Vec<JobCommandRow>, TableError> {
    selection.check(conn)?;
    let mut stmt = conn.prepare(
        "SELECT job, name, event, script, demand_job, demand_command, demand_config
         FROM job_commands ORDER BY job, name, event",
    )?;
    let raw = stmt
        .query_map([], |r| {
            Ok((
                JobCommandRow {
                    job: r.get(0)?,
                    name: r.get(1)?,
                    event: r.get(2)?,
                    script: r.get(3)?,
                    demand_job: r.get(4)?,
                    demand_command: r.get(5)?,
                    demand_config: serde_json::Value::Null,
                },
                r.get::<_, String>(6)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    raw.into_iter()
        .filter(|(row, _)| selection.admits_job(&row.job))
        .map(|(mut row, config)| {
            let id = format!("{}/{}/{}", row.job, row.name, row.event);
            row.demand_config = parse_json("job_commands", &id, "demand_config", &config)?;
            Ok(row)
        })
        .collect()
}

/// One named port of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobPortRow {
    pub job: String,
    pub name: String,
    pub port: u16,
    /// Picked from the `bucket.conf` pool (`{}` in the manifest) rather than fixed there.
    pub assigned: bool,
}

/// Ports of the selected jobs, by job and port name.
pub fn job_ports(conn: &Connection, selection: &Selection) -> Result<Vec<JobPortRow>, TableError> {
    selection.check(conn)?;
    let mut stmt =
        conn.prepare("SELECT job, name, port, assigned FROM job_ports ORDER BY job, name")?;
    let rows = stmt
        .query_map([], |r| {
            Ok(JobPortRow {
                job: r.get(0)?,
                name: r.get(1)?,
                port: r.get(2)?,
                assigned: r.get(3)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows
        .into_iter()
        .filter(|row| selection.admits_job(&row.job))
        .collect())
}

/// Which current KV versions a listing shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KvState {
    /// Every key, deleted or not.
    #[default]
    All,
    /// Keys whose current version is a value.
    Active,
    /// Keys whose current version is a deletion.
    Deleted,
}

/// The current (highest) version of one KV key, as listed by `maand cat kv`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KvRow {
    pub namespace: String,
    pub key: String,
    pub version: u64,
    /// The current version is a deletion.
    pub deleted: bool,
    /// The value is a secret encrypted with the bucket's `kv.key`.
    pub sealed: bool,
    /// The plaintext value; `None` for a sealed value or a deletion.
    pub value: Option<String>,
}

/// Current version of every key in `namespaces` (every namespace when `None`), filtered by
/// `state`, by namespace and key. Peer lists are derived from the lists they are cut from
/// (see [`peers`]), never taken from stored rows.
pub fn kv(
    conn: &Connection,
    namespaces: Option<&BTreeSet<String>>,
    state: KvState,
) -> Result<Vec<KvRow>, TableError> {
    let mut stmt = conn.prepare(
        "SELECT kv.namespace, kv.key, kv.version, kv.deleted, kv.sealed, kv.value
         FROM kv JOIN (SELECT namespace, key, max(version) AS version FROM kv GROUP BY namespace, key) cur
           ON cur.namespace = kv.namespace AND cur.key = kv.key AND cur.version = kv.version
         ORDER BY kv.namespace, kv.key",
    )?;
    let rows = stmt
        .query_map([], |r| {
            let deleted: bool = r.get(3)?;
            let sealed: bool = r.get(4)?;
            Ok(KvRow {
                namespace: r.get(0)?,
                key: r.get(1)?,
                version: r.get::<_, i64>(2)? as u64,
                deleted,
                sealed: sealed && !deleted,
                value: if sealed || deleted {
                    None
                } else {
                    Some(r.get(5)?)
                },
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let lists = PeerLists::from_values(rows.iter().filter_map(|row| {
        let value = row.value.as_deref()?;
        Some((row.namespace.as_str(), row.key.as_str(), value, row.version))
    }));
    let mut rows: Vec<KvRow> = rows
        .into_iter()
        .filter(|row| !peers::is_peer_list(&row.namespace, &row.key))
        .collect();
    rows.extend(
        lists
            .entries()
            .into_iter()
            .map(|(namespace, key, derived)| KvRow {
                namespace,
                key,
                version: derived.version,
                deleted: false,
                sealed: false,
                value: Some(derived.value),
            }),
    );
    rows.sort_by(|a, b| (&a.namespace, &a.key).cmp(&(&b.namespace, &b.key)));
    Ok(rows
        .into_iter()
        .filter(|row| namespaces.is_none_or(|set| set.contains(&row.namespace)))
        .filter(|row| match state {
            KvState::All => true,
            KvState::Active => !row.deleted,
            KvState::Deleted => row.deleted,
        })
        .collect())
}

/// The current version of one key, sealed text included (for `cat kv get`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEntry {
    pub version: u64,
    /// `None` when the current version is a deletion.
    pub value: Option<KvValue>,
}

/// The current version of `key` in `namespace`; `None` when the key never existed (or its
/// history was purged). A peer list is derived (see [`peers`]).
pub fn kv_entry(
    conn: &Connection,
    namespace: &str,
    key: &str,
) -> Result<Option<KvEntry>, TableError> {
    if peers::is_peer_list(namespace, key) {
        return Ok(peer_sources(conn, namespace)?
            .get(namespace, key)
            .map(|derived| KvEntry {
                version: derived.version,
                value: Some(KvValue::Plain(derived.value)),
            }));
    }
    Ok(conn
        .query_row(
            "SELECT version, value, sealed, deleted FROM kv
             WHERE namespace = ?1 AND key = ?2 ORDER BY version DESC LIMIT 1",
            params![namespace, key],
            |r| {
                let value: String = r.get(1)?;
                let sealed: bool = r.get(2)?;
                let deleted: bool = r.get(3)?;
                Ok(KvEntry {
                    version: r.get::<_, i64>(0)? as u64,
                    value: match (deleted, sealed) {
                        (true, _) => None,
                        (false, true) => Some(KvValue::Sealed(value)),
                        (false, false) => Some(KvValue::Plain(value)),
                    },
                })
            },
        )
        .optional()?)
}

/// The lists the peer keys of `namespace` are cut from: `maand/worker` and the worker's own
/// namespace, or every allocation namespace of the job.
fn peer_sources(conn: &Connection, namespace: &str) -> Result<PeerLists, TableError> {
    let (low, high) = match access::parse_allocation(namespace) {
        Some((job, _)) => {
            let prefix = format!("{}/worker/", access::job(job));
            let high = format!("{}/worker0", access::job(job));
            (prefix, high)
        }
        None => (access::WORKERS.to_string(), format!("{}0", access::WORKERS)),
    };
    let mut stmt = conn.prepare(
        "SELECT kv.namespace, kv.key, kv.version, kv.value
         FROM kv JOIN (SELECT namespace, key, max(version) AS version FROM kv
                       WHERE namespace >= ?1 AND namespace < ?2 GROUP BY namespace, key) cur
           ON cur.namespace = kv.namespace AND cur.key = kv.key AND cur.version = kv.version
         WHERE kv.deleted = 0 AND kv.sealed = 0",
    )?;
    let rows = stmt
        .query_map(params![low, high], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)? as u64,
                r.get::<_, String>(3)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(PeerLists::from_values(
        rows.iter()
            .filter(|(ns, key, ..)| peers::is_peer_source(ns, key))
            .map(|(ns, key, version, value)| (ns.as_str(), key.as_str(), value.as_str(), *version)),
    ))
}

/// The namespaces the selected allocations may read (see [`access`]): the union over every
/// non-removed allocation of the selected jobs on the selected workers. Each allocation's
/// upstream jobs are the `demand_job`s of its job's commands.
pub fn readable_namespaces(
    conn: &Connection,
    selection: &Selection,
) -> Result<BTreeSet<String>, TableError> {
    selection.check(conn)?;
    let mut upstream: BTreeMap<String, Vec<String>> = BTreeMap::new();
    {
        let mut stmt = conn.prepare(
            "SELECT DISTINCT job, demand_job FROM job_commands WHERE demand_job != '' ORDER BY 1, 2",
        )?;
        let pairs = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        for (job, demanded) in pairs {
            upstream.entry(job).or_default().push(demanded);
        }
    }
    let mut placed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    {
        let mut stmt =
            conn.prepare("SELECT job, worker_ip FROM allocations WHERE removed = 0 ORDER BY 1, 2")?;
        let pairs = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        for (job, worker_ip) in pairs {
            if selection.admits_job(&job) && selection.admits_worker(&worker_ip) {
                placed.entry(job).or_default().push(worker_ip);
            }
        }
    }
    Ok(placed
        .iter()
        .flat_map(|(job, worker_ips)| {
            let upstream = upstream.get(job).map(Vec::as_slice).unwrap_or_default();
            access::job_namespaces(job, worker_ips, upstream)
        })
        .collect())
}

/// A leaf certificate PEM found in an allocation namespace under `certs/<name>.crt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLeafCert {
    pub job: String,
    pub worker_ip: String,
    /// The manifest cert name (`tls` for `certs/tls.crt`).
    pub name: String,
    /// The stored text; sealed text when someone stored it sealed (it then inspects as invalid).
    pub pem: String,
}

/// Current, non-deleted leaf certificates of the selected jobs on the selected workers, by
/// job, worker and name.
pub fn leaf_certs(
    conn: &Connection,
    selection: &Selection,
) -> Result<Vec<StoredLeafCert>, TableError> {
    selection.check(conn)?;
    let mut stmt = conn.prepare(
        "SELECT kv.namespace, kv.key, kv.value
         FROM kv JOIN (SELECT namespace, key, max(version) AS version FROM kv
                       WHERE namespace LIKE 'maand/job/%/worker/%' GROUP BY namespace, key) cur
           ON cur.namespace = kv.namespace AND cur.key = kv.key AND cur.version = kv.version
         WHERE kv.deleted = 0
         ORDER BY kv.namespace, kv.key",
    )?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut certs: Vec<StoredLeafCert> = rows
        .into_iter()
        .filter_map(|(namespace, key, pem)| {
            let (job, worker_ip) = access::parse_allocation(&namespace)?;
            let name = key.strip_prefix(CERTS_KV_PREFIX)?.strip_suffix(".crt")?;
            (!name.is_empty() && !name.contains('/')).then(|| StoredLeafCert {
                job: job.to_string(),
                worker_ip: worker_ip.to_string(),
                name: name.to_string(),
                pem,
            })
        })
        .filter(|c| selection.admits_job(&c.job) && selection.admits_worker(&c.worker_ip))
        .collect();
    certs.sort_by(|a, b| (&a.job, &a.worker_ip, &a.name).cmp(&(&b.job, &b.worker_ip, &b.name)));
    Ok(certs)
}

/// Whether a certificate row is the bucket CA or a job's leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CertScope {
    Ca,
    Job,
}

impl CertScope {
    pub fn as_str(self) -> &'static str {
        match self {
            CertScope::Ca => "ca",
            CertScope::Job => "job",
        }
    }
}

/// One certificate with its expiry status, for `maand cat certs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertRow {
    pub scope: CertScope,
    /// `None` for the CA.
    pub job: Option<String>,
    /// `None` for the CA.
    pub worker: Option<String>,
    /// The manifest cert name, or `ca`.
    pub cert: String,
    pub common_name: Option<String>,
    /// Expiry in UTC, RFC 3339.
    pub not_after: Option<String>,
    /// Whole days until `not_after` (negative once expired).
    pub days_left: Option<i64>,
    /// `ok`, `expiring`, `expired` or `invalid`.
    pub status: String,
    /// Why the certificate is `invalid`.
    pub reason: Option<String>,
}

/// Inspects the bucket CA and `leaves` at `now`; `expiring` starts `renewal_buffer_days`
/// before expiry, the same window in which a build renews. The CA comes first.
pub fn cert_rows(
    ca_pem: &str,
    leaves: &[StoredLeafCert],
    now: OffsetDateTime,
    renewal_buffer_days: u32,
) -> Vec<CertRow> {
    let row = |scope, job: Option<&str>, worker: Option<&str>, cert: &str, pem: &str| {
        let info = certs::inspect(pem, ca_pem, now, renewal_buffer_days);
        CertRow {
            scope,
            job: job.map(str::to_string),
            worker: worker.map(str::to_string),
            cert: cert.to_string(),
            common_name: info.common_name,
            not_after: info.not_after.and_then(|t| {
                t.to_offset(time::UtcOffset::UTC)
                    .format(&time::format_description::well_known::Rfc3339)
                    .ok()
            }),
            days_left: info.days_left,
            status: info.status.to_string(),
            reason: match info.status {
                CertStatus::Invalid(why) => Some(why.to_string()),
                _ => None,
            },
        }
    };
    std::iter::once(row(CertScope::Ca, None, None, "ca", ca_pem))
        .chain(leaves.iter().map(|leaf| {
            row(
                CertScope::Job,
                Some(&leaf.job),
                Some(&leaf.worker_ip),
                &leaf.name,
                &leaf.pem,
            )
        }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::commit;
    use crate::events::*;

    fn catalog() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("maand.db");
        let mut conn = crate::bucket::open(&path).unwrap();
        crate::bucket::migrate(&mut conn, &path).unwrap();
        (dir, conn)
    }

    fn record(conn: &mut Connection, events: Vec<Event>) {
        commit(conn, "run-1", 1_000, &events, &[]).unwrap();
    }

    fn worker(host: &str, position: u32, tags: &[(&str, &str)]) -> Event {
        Event::WorkerUpserted(WorkerRecord {
            host: host.into(),
            worker_id: format!("id-{host}"),
            hostname: None,
            labels: vec!["worker".into()],
            memory_mb: Some(4096),
            cpu_mhz: None,
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            position,
        })
    }

    fn job(name: &str, deployment_seq: u32, demands: &[&str]) -> Event {
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
            current_memory_mb: 128,
            min_cpu_mhz: 0,
            max_cpu_mhz: 0,
            current_cpu_mhz: 0,
            resources_source: "manifest".into(),
            deployment_seq,
            health_check: None,
            commands: demands
                .iter()
                .map(|upstream| JobCommandRecord {
                    name: "command_wait".into(),
                    event: "pre_deploy".into(),
                    script: "_modules/command_wait.py".into(),
                    demand_job: upstream.to_string(),
                    demand_command: "command_ready".into(),
                    demand_config: r#"{"retries":3}"#.into(),
                })
                .collect(),
            certs: vec![],
            files: vec![],
            files_hash: "f".into(),
        }))
    }

    fn alloc(job: &str, worker_ip: &str, disabled: bool, removed: bool) -> Event {
        Event::AllocationUpserted(AllocationRecord {
            alloc_id: format!("{job}@{worker_ip}"),
            job: job.into(),
            worker_ip: worker_ip.into(),
            disabled,
            removed,
            new_version: "1.0.0".into(),
            deployment_seq: 0,
        })
    }

    fn put(namespace: &str, key: &str, value: KvValue) -> Event {
        Event::KvChanged(KvChanged {
            namespace: namespace.into(),
            changes: vec![KvChange::Put {
                key: key.into(),
                value,
            }],
        })
    }

    fn delete(namespace: &str, key: &str) -> Event {
        Event::KvChanged(KvChanged {
            namespace: namespace.into(),
            changes: vec![KvChange::Delete { key: key.into() }],
        })
    }

    fn plain(value: &str) -> KvValue {
        KvValue::Plain(value.into())
    }

    fn select(jobs: &[&str], workers: &[&str]) -> Selection {
        Selection {
            jobs: jobs.iter().map(|s| s.to_string()).collect(),
            workers: workers.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Two workers (one zoned), `db` (wave 0) on both, `api` (wave 1, demands `db`) on the
    /// first and removed from the second, `cron` disabled on the only worker it had.
    fn cluster(conn: &mut Connection) {
        record(
            conn,
            vec![
                worker("127.9.0.2", 1, &[]),
                worker("127.9.0.1", 0, &[("zone", "east"), ("rack", "r1")]),
                job("db", 0, &[]),
                job("api", 1, &["db"]),
                job("cron", 0, &[]),
                alloc("db", "127.9.0.2", false, false),
                alloc("db", "127.9.0.1", false, false),
                alloc("api", "127.9.0.1", false, false),
                alloc("api", "127.9.0.2", false, true),
                alloc("cron", "127.9.0.2", true, false),
            ],
        );
    }

    #[test]
    fn workers_come_in_workers_json_order_with_their_zone_tag() {
        let (_dir, mut conn) = catalog();
        cluster(&mut conn);
        let rows = workers(&conn).unwrap();
        let seen: Vec<_> = rows
            .iter()
            .map(|w| (w.host.as_str(), w.zone.as_deref()))
            .collect();
        assert_eq!(seen, [("127.9.0.1", Some("east")), ("127.9.0.2", None)]);
        assert_eq!(rows[0].tags.get("rack").map(String::as_str), Some("r1"));
        assert_eq!(rows[0].labels, ["worker"]);
    }

    #[test]
    fn jobs_come_in_deploy_order_and_are_disabled_only_when_every_placement_is() {
        let (_dir, mut conn) = catalog();
        cluster(&mut conn);
        let rows = jobs(&conn).unwrap();
        let seen: Vec<_> = rows
            .iter()
            .map(|j| (j.name.as_str(), j.deployment_seq, j.disabled))
            .collect();
        assert_eq!(
            seen,
            [("cron", 0, true), ("db", 0, false), ("api", 1, false)]
        );
    }

    #[test]
    fn a_job_without_allocations_is_not_disabled() {
        let (_dir, mut conn) = catalog();
        record(&mut conn, vec![job("lonely", 0, &[])]);
        assert!(!jobs(&conn).unwrap()[0].disabled);
    }

    #[test]
    fn allocations_come_by_job_then_worker_order_with_the_worker_zone() {
        let (_dir, mut conn) = catalog();
        cluster(&mut conn);
        let rows = allocations(&conn, &Selection::default()).unwrap();
        let seen: Vec<_> = rows
            .iter()
            .map(|a| (a.job.as_str(), a.worker_ip.as_str(), a.zone.as_deref()))
            .collect();
        assert_eq!(
            seen,
            [
                ("api", "127.9.0.1", Some("east")),
                ("api", "127.9.0.2", None),
                ("cron", "127.9.0.2", None),
                ("db", "127.9.0.1", Some("east")),
                ("db", "127.9.0.2", None),
            ]
        );
    }

    #[test]
    fn allocations_filter_by_jobs_and_workers_together() {
        let (_dir, mut conn) = catalog();
        cluster(&mut conn);
        let rows = allocations(&conn, &select(&["api", "db"], &["127.9.0.2"])).unwrap();
        let seen: Vec<_> = rows.iter().map(|a| a.alloc_id.as_str()).collect();
        assert_eq!(seen, ["api@127.9.0.2", "db@127.9.0.2"]);
    }

    #[test]
    fn unknown_jobs_and_workers_are_errors_naming_them() {
        let (_dir, mut conn) = catalog();
        cluster(&mut conn);
        let err = allocations(&conn, &select(&["api", "dbb"], &[])).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("unknown job dbb"), "{message}");
        assert!(message.contains("api, cron, db"), "{message}");
        let err = allocations(&conn, &select(&[], &["127.9.0.9", "127.9.0.8"])).unwrap_err();
        assert!(
            err.to_string()
                .contains("unknown workers 127.9.0.9, 127.9.0.8"),
            "{err}"
        );
    }

    #[test]
    fn a_worker_that_left_the_catalog_but_still_has_allocations_is_known() {
        let (_dir, mut conn) = catalog();
        cluster(&mut conn);
        record(
            &mut conn,
            vec![Event::WorkerRemoved(WorkerRemoved {
                host: "127.9.0.2".into(),
            })],
        );
        let rows = allocations(&conn, &select(&[], &["127.9.0.2"])).unwrap();
        assert_eq!(rows.len(), 3);
        assert!(rows.iter().all(|a| a.zone.is_none()));
    }

    #[test]
    fn before_any_deploy_rollout_comes_from_allocation_flags_alone() {
        let (_dir, mut conn) = catalog();
        cluster(&mut conn);
        let rows = deployments(&conn, &Selection::default(), false).unwrap();
        let seen: Vec<_> = rows
            .iter()
            .map(|d| (d.alloc_id.as_str(), d.rollout))
            .collect();
        assert_eq!(
            seen,
            [
                ("api@127.9.0.1", Rollout::New),
                ("api@127.9.0.2", Rollout::Removed),
                ("cron@127.9.0.2", Rollout::Disabled),
                ("db@127.9.0.1", Rollout::New),
                ("db@127.9.0.2", Rollout::New),
            ]
        );
        assert!(rows.iter().all(|d| d.current_hash.is_none()
            && d.previous_hash.is_none()
            && d.current_version.is_none()));
    }

    fn staged(alloc_id: &str, tree_hash: &str) -> Event {
        let (job, worker_ip) = alloc_id.split_once('@').unwrap();
        Event::AllocationStaged(AllocationStaged {
            alloc_id: alloc_id.into(),
            job: job.into(),
            worker_ip: worker_ip.into(),
            tree_hash: tree_hash.into(),
            files: vec![("Makefile".into(), "m".into())],
        })
    }

    fn promoted(alloc_id: &str, version: &str) -> Event {
        Event::AllocationPromoted(AllocationPromoted {
            alloc_id: alloc_id.into(),
            version: version.into(),
        })
    }

    fn rollouts(conn: &Connection) -> Vec<(String, Rollout)> {
        deployments(conn, &Selection::default(), false)
            .unwrap()
            .into_iter()
            .map(|d| (d.alloc_id, d.rollout))
            .collect()
    }

    fn rollout_of(conn: &Connection, alloc_id: &str) -> Rollout {
        rollouts(conn)
            .into_iter()
            .find(|(id, _)| id == alloc_id)
            .unwrap()
            .1
    }

    #[test]
    fn a_promoted_allocation_is_promoted_until_new_content_or_version_is_staged() {
        let (_dir, mut conn) = catalog();
        cluster(&mut conn);
        record(&mut conn, vec![staged("db@127.9.0.1", "h1")]);
        assert_eq!(rollout_of(&conn, "db@127.9.0.1"), Rollout::New);
        record(&mut conn, vec![promoted("db@127.9.0.1", "1.0.0")]);
        assert_eq!(rollout_of(&conn, "db@127.9.0.1"), Rollout::Promoted);
        let row = deployments(&conn, &select(&["db"], &["127.9.0.1"]), false).unwrap();
        assert_eq!(
            (
                row[0].current_hash.as_deref(),
                row[0].previous_hash.as_deref(),
                row[0].current_version.as_deref()
            ),
            (Some("h1"), Some("h1"), Some("1.0.0"))
        );
        record(&mut conn, vec![staged("db@127.9.0.1", "h2")]);
        assert_eq!(rollout_of(&conn, "db@127.9.0.1"), Rollout::Restart);
        record(&mut conn, vec![promoted("db@127.9.0.1", "1.0.0")]);
        assert_eq!(rollout_of(&conn, "db@127.9.0.1"), Rollout::Promoted);
        let mut bumped = alloc("db", "127.9.0.1", false, false);
        if let Event::AllocationUpserted(a) = &mut bumped {
            a.new_version = "1.1.0".into();
        }
        record(&mut conn, vec![bumped]);
        assert_eq!(rollout_of(&conn, "db@127.9.0.1"), Rollout::Restart);
    }

    #[test]
    fn a_stopped_allocation_is_new_again_once_active() {
        let (_dir, mut conn) = catalog();
        cluster(&mut conn);
        record(
            &mut conn,
            vec![
                staged("db@127.9.0.1", "h1"),
                promoted("db@127.9.0.1", "1.0.0"),
                Event::AllocationStopped(AllocationStopped {
                    alloc_id: "db@127.9.0.1".into(),
                }),
            ],
        );
        assert_eq!(rollout_of(&conn, "db@127.9.0.1"), Rollout::New);
    }

    #[test]
    fn a_disabled_allocation_with_unpromoted_content_is_disabled_restart() {
        let (_dir, mut conn) = catalog();
        cluster(&mut conn);
        record(
            &mut conn,
            vec![
                staged("cron@127.9.0.2", "h1"),
                promoted("cron@127.9.0.2", "1.0.0"),
            ],
        );
        assert_eq!(rollout_of(&conn, "cron@127.9.0.2"), Rollout::Disabled);
        record(&mut conn, vec![staged("cron@127.9.0.2", "h2")]);
        assert_eq!(
            rollout_of(&conn, "cron@127.9.0.2"),
            Rollout::DisabledRestart
        );
    }

    #[test]
    fn an_allocation_never_promoted_shows_no_promoted_version() {
        let (_dir, mut conn) = catalog();
        cluster(&mut conn);
        record(&mut conn, vec![staged("db@127.9.0.1", "h1")]);
        let row = deployments(&conn, &select(&["db"], &["127.9.0.1"]), false).unwrap();
        assert_eq!(row[0].current_hash.as_deref(), Some("h1"));
        assert_eq!(row[0].previous_hash, None);
        assert_eq!(row[0].current_version, None);
    }

    #[test]
    fn active_deployments_leave_out_removed_and_disabled_allocations() {
        let (_dir, mut conn) = catalog();
        cluster(&mut conn);
        let rows = deployments(&conn, &select(&["api", "cron"], &[]), true).unwrap();
        let seen: Vec<_> = rows.iter().map(|d| d.alloc_id.as_str()).collect();
        assert_eq!(seen, ["api@127.9.0.1"]);
    }

    #[test]
    fn job_commands_and_ports_filter_by_job() {
        let (_dir, mut conn) = catalog();
        cluster(&mut conn);
        record(
            &mut conn,
            vec![
                Event::PortAssigned(PortAssigned {
                    job: "api".into(),
                    name: "api_http".into(),
                    port: 30001,
                    from_pool: true,
                }),
                Event::PortAssigned(PortAssigned {
                    job: "db".into(),
                    name: "db_port".into(),
                    port: 5432,
                    from_pool: false,
                }),
            ],
        );
        let commands = job_commands(&conn, &select(&["api"], &[])).unwrap();
        assert_eq!(commands.len(), 1);
        assert_eq!(commands[0].demand_job, "db");
        assert_eq!(commands[0].demand_config["retries"], 3);
        assert!(job_commands(&conn, &select(&["db"], &[]))
            .unwrap()
            .is_empty());
        let ports = job_ports(&conn, &select(&["db"], &[])).unwrap();
        assert_eq!(
            ports,
            [JobPortRow {
                job: "db".into(),
                name: "db_port".into(),
                port: 5432,
                assigned: false
            }]
        );
        assert_eq!(job_ports(&conn, &Selection::default()).unwrap().len(), 2);
    }

    #[test]
    fn kv_lists_the_current_version_of_each_key() {
        let (_dir, mut conn) = catalog();
        record(
            &mut conn,
            vec![
                put("vars/job/api", "mode", plain("a")),
                put("vars/job/api", "mode", plain("b")),
                put("vars/job/api", "gone", plain("x")),
                delete("vars/job/api", "gone"),
            ],
        );
        let rows = kv(&conn, None, KvState::All).unwrap();
        let seen: Vec<_> = rows
            .iter()
            .map(|r| (r.key.as_str(), r.version, r.deleted, r.value.as_deref()))
            .collect();
        assert_eq!(
            seen,
            [("gone", 2, true, None), ("mode", 2, false, Some("b"))]
        );
        let active = kv(&conn, None, KvState::Active).unwrap();
        assert_eq!(active.len(), 1);
        assert_eq!(active[0].key, "mode");
        let deleted = kv(&conn, None, KvState::Deleted).unwrap();
        assert_eq!(deleted.len(), 1);
        assert_eq!(deleted[0].key, "gone");
    }

    #[test]
    fn a_key_put_again_after_deletion_is_active() {
        let (_dir, mut conn) = catalog();
        record(
            &mut conn,
            vec![
                put("vars/bucket", "k", plain("1")),
                delete("vars/bucket", "k"),
                put("vars/bucket", "k", plain("2")),
            ],
        );
        let rows = kv(&conn, None, KvState::Deleted).unwrap();
        assert!(rows.is_empty());
        let entry = kv_entry(&conn, "vars/bucket", "k").unwrap().unwrap();
        assert_eq!(entry.version, 3);
        assert_eq!(entry.value, Some(plain("2")));
    }

    #[test]
    fn kv_rows_never_carry_sealed_text() {
        let (_dir, mut conn) = catalog();
        record(
            &mut conn,
            vec![put(
                "secrets/job/api",
                "token",
                KvValue::Sealed("v1:00112233".into()),
            )],
        );
        let rows = kv(&conn, None, KvState::All).unwrap();
        assert_eq!(rows.len(), 1);
        assert!(rows[0].sealed);
        assert_eq!(rows[0].value, None);
        assert!(!serde_json::to_string(&rows).unwrap().contains("v1:"));
        let entry = kv_entry(&conn, "secrets/job/api", "token")
            .unwrap()
            .unwrap();
        assert_eq!(entry.value, Some(KvValue::Sealed("v1:00112233".into())));
    }

    #[test]
    fn kv_entry_reports_deletion_and_absence_apart() {
        let (_dir, mut conn) = catalog();
        record(
            &mut conn,
            vec![
                put("vars/bucket", "k", plain("1")),
                delete("vars/bucket", "k"),
            ],
        );
        let entry = kv_entry(&conn, "vars/bucket", "k").unwrap().unwrap();
        assert_eq!((entry.version, entry.value), (2, None));
        assert_eq!(kv_entry(&conn, "vars/bucket", "other").unwrap(), None);
    }

    #[test]
    fn kv_listing_can_be_limited_to_namespaces() {
        let (_dir, mut conn) = catalog();
        record(
            &mut conn,
            vec![
                put("vars/job/api", "a", plain("1")),
                put("vars/job/db", "b", plain("2")),
            ],
        );
        let only: BTreeSet<String> = ["vars/job/db".to_string()].into();
        let rows = kv(&conn, Some(&only), KvState::All).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].namespace, "vars/job/db");
    }

    #[test]
    fn readable_namespaces_follow_non_removed_allocations_and_demands() {
        let (_dir, mut conn) = catalog();
        cluster(&mut conn);
        let api = readable_namespaces(&conn, &select(&["api"], &[])).unwrap();
        for namespace in [
            "maand/bucket",
            "maand/worker/127.9.0.1",
            "maand/job/api/worker/127.9.0.1",
            "secrets/job/api",
            "maand/job/db",
            "vars/job/db",
            "secrets/job/db",
        ] {
            assert!(api.contains(namespace), "api must read {namespace}");
        }
        // api's allocation on 127.9.0.2 is removed; db is upstream, not placed with api.
        for namespace in [
            "maand/worker/127.9.0.2",
            "maand/job/api/worker/127.9.0.2",
            "maand/job/db/worker/127.9.0.1",
            "vars/bucket/job/db",
        ] {
            assert!(!api.contains(namespace), "api must not read {namespace}");
        }
        let cron = readable_namespaces(&conn, &select(&["cron"], &[])).unwrap();
        assert!(
            cron.contains("maand/job/cron/worker/127.9.0.2"),
            "disabled still reads"
        );
        let on_worker = readable_namespaces(&conn, &select(&["db"], &["127.9.0.2"])).unwrap();
        assert!(on_worker.contains("maand/job/db/worker/127.9.0.2"));
        assert!(!on_worker.contains("maand/job/db/worker/127.9.0.1"));
    }

    #[test]
    fn a_job_with_only_removed_allocations_reads_nothing() {
        let (_dir, mut conn) = catalog();
        cluster(&mut conn);
        record(&mut conn, vec![alloc("api", "127.9.0.1", false, true)]);
        assert!(readable_namespaces(&conn, &select(&["api"], &[]))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn leaf_certs_are_the_current_crt_keys_of_allocation_namespaces() {
        let (_dir, mut conn) = catalog();
        cluster(&mut conn);
        record(
            &mut conn,
            vec![
                put(
                    "maand/job/api/worker/127.9.0.1",
                    "certs/tls.crt",
                    plain("A"),
                ),
                put(
                    "maand/job/api/worker/127.9.0.1",
                    "certs/tls.key",
                    plain("K"),
                ),
                put(
                    "maand/job/db/worker/127.9.0.2",
                    "certs/peer.crt",
                    plain("B"),
                ),
                delete("maand/job/db/worker/127.9.0.2", "certs/peer.crt"),
                put(
                    "maand/job/db/worker/127.9.0.1",
                    "certs/peer.crt",
                    plain("C"),
                ),
                put("maand/job/db", "certs/peer.crt", plain("not an allocation")),
                put("maand/worker", "certs/ca.crt", plain("the CA")),
            ],
        );
        let all = leaf_certs(&conn, &Selection::default()).unwrap();
        let seen: Vec<_> = all
            .iter()
            .map(|c| {
                (
                    c.job.as_str(),
                    c.worker_ip.as_str(),
                    c.name.as_str(),
                    c.pem.as_str(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("api", "127.9.0.1", "tls", "A"),
                ("db", "127.9.0.1", "peer", "C")
            ]
        );
        let on_one = leaf_certs(&conn, &select(&["db"], &["127.9.0.1"])).unwrap();
        assert_eq!(on_one.len(), 1);
    }

    #[test]
    fn cert_rows_put_the_ca_first_and_inspect_every_leaf() {
        use rand::SeedableRng;
        let now = time::macros::datetime!(2025-03-01 12:00 UTC);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let ca = certs::BucketCa::generate("bucket", certs::MIN_KEY_BITS, now, &mut rng).unwrap();
        let definition = certs::CertDefinition::new(
            "tls",
            certs::CertSubject::with_common_name("api.internal"),
            false,
            false,
        )
        .unwrap();
        let holder = certs::WorkerAddress {
            ip: "127.9.0.1".parse().unwrap(),
            hostname: None,
        };
        let issued = certs::issue(&ca, &definition, &[holder], 30, now, &mut rng).unwrap();
        let leaf = |name: &str, pem: &str| StoredLeafCert {
            job: "api".into(),
            worker_ip: "127.9.0.1".into(),
            name: name.into(),
            pem: pem.into(),
        };
        let rows = cert_rows(
            ca.cert_pem(),
            &[leaf("tls", &issued.cert_pem), leaf("broken", "garbage")],
            now,
            40,
        );
        let seen: Vec<_> = rows
            .iter()
            .map(|r| (r.scope, r.cert.as_str(), r.status.as_str(), r.days_left))
            .collect();
        assert_eq!(
            seen,
            [
                (CertScope::Ca, "ca", "ok", Some(3650)),
                (CertScope::Job, "tls", "expiring", Some(30)),
                (CertScope::Job, "broken", "invalid", None),
            ]
        );
        assert_eq!(rows[1].common_name.as_deref(), Some("api.internal"));
        assert_eq!(rows[1].not_after.as_deref(), Some("2025-03-31T12:00:00Z"));
        assert_eq!(rows[1].job.as_deref(), Some("api"));
        assert_eq!(rows[0].job, None);
        assert_eq!(
            rows[2].reason.as_deref(),
            Some("not a PEM X.509 certificate")
        );
    }
}
