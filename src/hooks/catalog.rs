//! What a job command run needs from the catalog, read once: the latest KV values (sealed ones
//! stay sealed), every registered command with its demand, the allocations with their
//! versions, and the file list of every job (contents stay in the blob store until a run
//! stages them).
//!
//! The view is updated in memory with [`HookCatalog::apply`] so a later hook sees what an
//! earlier one wrote before the caller records it. It never writes the database.

use super::{AllocationContext, HookError};
use crate::events::{KvChange, KvChanged, KvValue};
use crate::kv::peers::{self, PeerLists};
use crate::workspace::CommandEvent;
use rusqlite::Connection;
use std::collections::BTreeMap;

/// One `(command, executed_on)` row of the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommandEntry {
    pub job: String,
    pub name: String,
    pub event: String,
    /// `_modules/command_<name>.<ext>`, relative to the job directory.
    pub script: String,
    pub demand_job: String,
    pub demand_command: String,
    /// JSON object text.
    pub demand_config: String,
}

/// One file of a job tree; its content is in the blob store under `hash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileEntry {
    pub path: String,
    pub hash: String,
    pub executable: bool,
}

#[derive(Debug, Clone)]
struct AllocationEntry {
    alloc_id: String,
    job: String,
    worker_ip: String,
    disabled: bool,
    new_version: String,
    current_version: String,
}

/// The catalog as job commands see it.
#[derive(Debug, Clone)]
pub struct HookCatalog {
    pub(crate) bucket_id: String,
    /// Latest value of every live stored key (peer lists are in `peers`).
    pub(crate) kv: BTreeMap<(String, String), KvValue>,
    /// The peer lists readers derive (see [`peers`]).
    pub(crate) peers: PeerLists,
    pub(crate) commands: Vec<CommandEntry>,
    /// Job name -> deployment_seq.
    jobs: BTreeMap<String, u32>,
    /// Non-removed allocations, by job then worker.
    allocations: Vec<AllocationEntry>,
    pub(crate) files: BTreeMap<String, Vec<FileEntry>>,
}

impl HookCatalog {
    /// Reads the view from the catalog projections.
    pub fn load(conn: &Connection) -> Result<HookCatalog, HookError> {
        let bucket_id: String =
            conn.query_row("SELECT bucket_id FROM bucket WHERE id = 1", [], |r| {
                r.get(0)
            })?;

        let stored: Vec<_> = crate::catalog::read::current_kv(conn)?
            .into_iter()
            .filter(|e| !e.deleted && !peers::is_peer_list(&e.namespace, &e.key))
            .collect();
        let peer_lists = PeerLists::from_values(stored.iter().filter(|e| !e.sealed).map(|e| {
            (
                e.namespace.as_str(),
                e.key.as_str(),
                e.value.as_str(),
                e.version as u64,
            )
        }));
        let kv = stored
            .into_iter()
            .map(|e| {
                let value = if e.sealed {
                    KvValue::Sealed(e.value)
                } else {
                    KvValue::Plain(e.value)
                };
                ((e.namespace, e.key), value)
            })
            .collect();

        let mut stmt = conn.prepare(
            "SELECT job, name, event, script, demand_job, demand_command, demand_config
             FROM job_commands ORDER BY job, name, event",
        )?;
        let commands = stmt
            .query_map([], |r| {
                Ok(CommandEntry {
                    job: r.get(0)?,
                    name: r.get(1)?,
                    event: r.get(2)?,
                    script: r.get(3)?,
                    demand_job: r.get(4)?,
                    demand_command: r.get(5)?,
                    demand_config: r.get(6)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;

        let mut stmt = conn.prepare("SELECT name, deployment_seq FROM jobs")?;
        let jobs = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<BTreeMap<String, u32>, _>>()?;

        let mut stmt = conn.prepare(
            "SELECT a.alloc_id, a.job, a.worker_ip, a.disabled, a.new_version,
                    COALESCE(d.current_version, '0.0.0')
             FROM allocations a LEFT JOIN deployments d ON d.alloc_id = a.alloc_id
             WHERE a.removed = 0 ORDER BY a.job, a.worker_ip",
        )?;
        let allocations = stmt
            .query_map([], |r| {
                Ok(AllocationEntry {
                    alloc_id: r.get(0)?,
                    job: r.get(1)?,
                    worker_ip: r.get(2)?,
                    disabled: r.get(3)?,
                    new_version: r.get(4)?,
                    current_version: r.get(5)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;

        let mut files: BTreeMap<String, Vec<FileEntry>> = BTreeMap::new();
        let mut stmt =
            conn.prepare("SELECT job, path, hash, executable FROM job_files ORDER BY job, path")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            files.entry(row.get(0)?).or_default().push(FileEntry {
                path: row.get(1)?,
                hash: row.get(2)?,
                executable: row.get(3)?,
            });
        }

        Ok(HookCatalog {
            bucket_id,
            kv,
            peers: peer_lists,
            commands,
            jobs,
            allocations,
            files,
        })
    }

    /// Applies KV changes a hook returned, so later hooks read them.
    pub fn apply(&mut self, changes: &[KvChanged]) {
        for changed in changes {
            for change in &changed.changes {
                match change {
                    KvChange::Put { key, value } => {
                        self.kv
                            .insert((changed.namespace.clone(), key.clone()), value.clone());
                    }
                    KvChange::Delete { key } => {
                        self.kv.remove(&(changed.namespace.clone(), key.clone()));
                    }
                }
            }
        }
    }

    /// The job's non-removed allocations (disabled ones included, flagged), ordered by
    /// worker. `index` is the allocation's `<job>_allocation_index` as build recorded it.
    pub fn allocations(&self, job: &str) -> Vec<AllocationContext> {
        self.allocations
            .iter()
            .filter(|a| a.job == job)
            .map(|a| AllocationContext {
                alloc_id: a.alloc_id.clone(),
                worker_ip: a.worker_ip.clone(),
                index: self
                    .plain(
                        &crate::kv::access::allocation(job, &a.worker_ip),
                        &format!("{job}_allocation_index"),
                    )
                    .and_then(|index| index.parse().ok()),
                disabled: a.disabled,
                current_version: a.current_version.clone(),
                new_version: a.new_version.clone(),
            })
            .collect()
    }

    /// The job's allocations that are not disabled: the ones most events run on.
    pub fn active_allocations(&self, job: &str) -> Vec<AllocationContext> {
        self.allocations(job)
            .into_iter()
            .filter(|a| !a.disabled)
            .collect()
    }

    /// Whether `job` registers `command` for `event`.
    pub fn registers(&self, job: &str, command: &str, event: CommandEvent) -> bool {
        self.command(job, command, event).is_some()
    }

    /// The `(job, command)` pairs registered for `event`, in `deployment_seq` order (then by
    /// job and command name): the order `post_build` runs in.
    pub fn hooks(&self, event: CommandEvent) -> Vec<(String, String)> {
        let mut hooks: Vec<(u32, String, String)> = self
            .commands
            .iter()
            .filter(|c| c.event == event.as_str())
            .map(|c| {
                (
                    self.jobs.get(&c.job).copied().unwrap_or(0),
                    c.job.clone(),
                    c.name.clone(),
                )
            })
            .collect();
        hooks.sort();
        hooks
            .into_iter()
            .map(|(_, job, name)| (job, name))
            .collect()
    }

    /// Whether any job has a command of this name (for any event).
    pub fn knows_command(&self, command: &str) -> bool {
        self.commands.iter().any(|c| c.name == command)
    }

    /// Whether the job exists in the catalog.
    pub fn knows_job(&self, job: &str) -> bool {
        self.jobs.contains_key(job)
    }

    /// The events `job` registers `command` for.
    pub fn events_of(&self, job: &str, command: &str) -> Vec<String> {
        self.commands
            .iter()
            .filter(|c| c.job == job && c.name == command)
            .map(|c| c.event.clone())
            .collect()
    }

    pub(crate) fn command(
        &self,
        job: &str,
        command: &str,
        event: CommandEvent,
    ) -> Option<&CommandEntry> {
        self.commands
            .iter()
            .find(|c| c.job == job && c.name == command && c.event == event.as_str())
    }

    /// Jobs named in the `demands` of any command of `job`.
    pub(crate) fn upstream_jobs(&self, job: &str) -> Vec<String> {
        let mut upstream: Vec<String> = self
            .commands
            .iter()
            .filter(|c| c.job == job && !c.demand_job.is_empty())
            .map(|c| c.demand_job.clone())
            .collect();
        upstream.sort();
        upstream.dedup();
        upstream
    }

    /// Commands of other jobs whose demand names `job` and `command`, once per command.
    pub(crate) fn demands_on(&self, job: &str, command: &str) -> Vec<&CommandEntry> {
        let mut seen = std::collections::BTreeSet::new();
        self.commands
            .iter()
            .filter(|c| c.demand_job == job && c.demand_command == command)
            .filter(|c| seen.insert((c.job.clone(), c.name.clone())))
            .collect()
    }

    /// A view holding only KV values and commands, for unit tests of the session.
    #[cfg(test)]
    pub(crate) fn with_kv(
        kv: BTreeMap<(String, String), KvValue>,
        commands: Vec<CommandEntry>,
    ) -> HookCatalog {
        HookCatalog {
            bucket_id: "bucket".into(),
            kv,
            peers: PeerLists::default(),
            commands,
            jobs: BTreeMap::new(),
            allocations: Vec::new(),
            files: BTreeMap::new(),
        }
    }

    fn plain(&self, namespace: &str, key: &str) -> Option<String> {
        if peers::is_peer_list(namespace, key) {
            return self.peers.get(namespace, key).map(|derived| derived.value);
        }
        match self.kv.get(&(namespace.to_string(), key.to_string())) {
            Some(KvValue::Plain(value)) => Some(value.clone()),
            _ => None,
        }
    }
}
