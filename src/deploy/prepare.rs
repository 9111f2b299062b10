//! Reading what a deploy needs from the catalog and staging every allocation's tree in
//! memory, so the planner can compare hashes without touching a worker.

use super::execute::AllocationFacts;
use super::plan::{Deployed, PlanAllocation, PlanInput, PlanJob, Staged};
use super::prometheus_stage::{self, ServerStaging};
use super::stage::{stage_tree, SourceFile, StageError, StagedTree};
use crate::events::DeployFlags;
use crate::kv::access::ReadScope;
use crate::kv::peers::{self, PeerLists};
use crate::kv::secret::{self, SealedSecret, SecretKey};
use crate::remote::{bucket_dir_on_worker, JobEntry};
use crate::templates::{self, KvSource, TemplateContext};
use rusqlite::Connection;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// Why a deploy could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("catalog database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
    #[error("no catalog yet: run `maand build` first (or `maand deploy --build`)")]
    NotBuilt,
    #[error("job {job} declares `{event}` commands ({commands}), which this maand cannot run yet; remove them from executed_on or deploy other jobs with --jobs")]
    UnsupportedHook {
        job: String,
        event: String,
        commands: String,
    },
    #[error("staging failed:\n{}", .0.join("\n"))]
    Staging(Vec<String>),
    #[error("job {job}: file {path}: {source}; nothing was shipped. Run `maand journal verify`, then `maand journal rebuild --salvage` and `maand build`")]
    DamagedFile {
        job: String,
        path: String,
        #[source]
        source: crate::catalog::integrity::DamagedBlob,
    },
}

/// The catalog's current KV values, as templates and certificate staging read them (peer
/// lists derived, see [`peers`]).
pub struct KvSnapshot {
    plain: HashMap<String, BTreeMap<String, String>>,
    sealed: HashMap<(String, String), String>,
    peers: PeerLists,
    key: Option<SecretKey>,
}

impl KvSnapshot {
    pub fn load(conn: &Connection, key: Option<SecretKey>) -> Result<KvSnapshot, PrepareError> {
        let mut plain: HashMap<String, BTreeMap<String, String>> = HashMap::new();
        let mut sealed = HashMap::new();
        let mut lists = PeerLists::default();
        for entry in crate::catalog::read::current_kv(conn)?
            .into_iter()
            .filter(|e| !e.deleted && !peers::is_peer_list(&e.namespace, &e.key))
        {
            if !entry.sealed {
                lists.observe(
                    &entry.namespace,
                    &entry.key,
                    &entry.value,
                    entry.version as u64,
                );
            }
            if entry.sealed {
                sealed.insert((entry.namespace, entry.key), entry.value);
            } else {
                plain
                    .entry(entry.namespace)
                    .or_default()
                    .insert(entry.key, entry.value);
            }
        }
        Ok(KvSnapshot {
            plain,
            sealed,
            peers: lists,
            key,
        })
    }

    /// Opens a sealed value; the error never contains the value.
    pub fn open_sealed(&self, namespace: &str, key_name: &str) -> Result<Option<String>, String> {
        let Some(text) = self
            .sealed
            .get(&(namespace.to_string(), key_name.to_string()))
        else {
            return Ok(None);
        };
        let key = self
            .key
            .as_ref()
            .ok_or("secrets/kv.key is not available to decrypt it")?;
        let sealed = SealedSecret::decode(text).map_err(|e| e.to_string())?;
        secret::open(key, namespace, key_name, &sealed)
            .map(Some)
            .map_err(|e| e.to_string())
    }
}

impl KvSource for KvSnapshot {
    fn get(&self, namespace: &str, key: &str) -> Option<String> {
        if peers::is_peer_list(namespace, key) {
            return self.peers.get(namespace, key).map(|derived| derived.value);
        }
        self.plain
            .get(namespace)
            .and_then(|keys| keys.get(key))
            .cloned()
    }
    fn keys(&self, namespace: &str) -> Vec<String> {
        let mut keys: BTreeSet<String> = self
            .plain
            .get(namespace)
            .map(|k| k.keys().cloned().collect())
            .unwrap_or_default();
        keys.extend(
            self.sealed
                .keys()
                .filter(|(ns, _)| ns == namespace)
                .map(|(_, k)| k.clone()),
        );
        keys.extend(self.peers.keys(namespace));
        keys.into_iter().collect()
    }
    fn secret(&self, job: &str, key: &str) -> Result<Option<String>, String> {
        self.open_sealed(&format!("secrets/job/{job}"), key)
    }
}

/// Everything the planner and the executor need.
pub struct Prepared {
    pub bucket_id: String,
    pub update_seq: u64,
    pub catalog_seq: u64,
    pub input: PlanInput,
    /// Staged tree of every non-removed allocation of the selected jobs.
    pub trees: BTreeMap<String, StagedTree>,
    pub facts: BTreeMap<String, AllocationFacts>,
    /// Per worker: labels and worker id, for `worker.json`.
    pub workers: BTreeMap<String, (String, Vec<String>)>,
}

/// The planned tree hash of an allocation whose job's templates can only render after its
/// `pre_deploy` hooks.
pub const PENDING_PRE_DEPLOY: &str = "pending-pre-deploy";

/// The job command events a deploy runs.
const DEPLOY_EVENTS: &[&str] = &[
    "pre_deploy",
    "post_deploy",
    "job_control",
    "after_allocation_started",
    "after_allocation_stopped",
];

/// `jobs.json` entries of one worker, from the catalog as it stands.
pub fn worker_jobs(conn: &Connection, worker: &str) -> Result<Vec<JobEntry>, rusqlite::Error> {
    let mut stmt = conn.prepare(
        "SELECT a.job, a.disabled, COALESCE(d.current_version, '0.0.0'), a.new_version
         FROM allocations a LEFT JOIN deployments d ON d.alloc_id = a.alloc_id
         WHERE a.worker_ip = ?1 AND a.removed = 0 ORDER BY a.job",
    )?;
    let rows = stmt.query_map([worker], |r| {
        Ok(JobEntry {
            name: r.get(0)?,
            disabled: r.get(1)?,
            current_version: r.get(2)?,
            new_version: r.get(3)?,
        })
    })?;
    rows.collect()
}

pub fn prepare(
    conn: &Connection,
    kv_key: Option<SecretKey>,
    flags: &DeployFlags,
) -> Result<Prepared, PrepareError> {
    let (bucket_id, update_seq, catalog_seq): (String, i64, i64) = conn.query_row(
        "SELECT bucket_id, update_seq, catalog_seq FROM bucket WHERE id = 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let kv = KvSnapshot::load(conn, kv_key)?;
    let selected = |job: &str| flags.jobs.is_empty() || flags.jobs.iter().any(|j| j == job);

    let mut jobs = BTreeMap::new();
    let mut stmt = conn.prepare(
        "SELECT name, deployment_seq, restart_policy, restart_globs, max_concurrent_starts, max_concurrent_upgrades, health_check FROM jobs",
    )?;
    let rows = stmt.query_map([], |r| {
        let globs: String = r.get(3)?;
        Ok(PlanJob {
            name: r.get(0)?,
            deployment_seq: r.get(1)?,
            restart_policy: r.get(2)?,
            restart_globs: serde_json::from_str(&globs).unwrap_or_default(),
            max_concurrent_starts: r.get(4)?,
            max_concurrent_upgrades: r.get(5)?,
            rollout_order: vec![],
            hooks: BTreeMap::new(),
            health: r.get::<_, Option<String>>(6)?.is_some(),
        })
    })?;
    for job in rows {
        let mut job = job?;
        job.rollout_order = kv
            .get(&format!("maand/job/{}", job.name), "rollout_order")
            .map(|o| {
                o.split(',')
                    .filter(|w| !w.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        jobs.insert(job.name.clone(), job);
    }
    if jobs.is_empty() && catalog_seq == 0 {
        return Err(PrepareError::NotBuilt);
    }

    let upstream = load_upstream(conn)?;
    let mut stmt = conn.prepare("SELECT job, name, event FROM job_commands ORDER BY job, name")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    for row in rows {
        let (job, name, event) = row?;
        if event == "health_check" {
            if let Some(plan_job) = jobs.get_mut(&job) {
                plan_job.health = true;
            }
        }
        if DEPLOY_EVENTS.contains(&event.as_str()) {
            if let Some(plan_job) = jobs.get_mut(&job) {
                plan_job.hooks.entry(event).or_default().push(name);
            }
        }
    }

    let sources = load_sources(conn, &selected)?;
    let mut cert_names: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut stmt = conn.prepare("SELECT job, name FROM job_certs ORDER BY job, name")?;
    for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
        let (job, name) = row?;
        cert_names.entry(job).or_default().push(name);
    }

    let workers = load_workers(conn)?;

    let server_staging = if sources
        .values()
        .any(|files| prometheus_stage::is_server(files))
    {
        Some(ServerStaging::load(conn).map_err(|e| PrepareError::Staging(vec![e]))?)
    } else {
        None
    };

    let mut allocations = Vec::new();
    let mut trees = BTreeMap::new();
    let mut facts = BTreeMap::new();
    let mut failures = Vec::new();
    let no_sources = Vec::new();
    for mut alloc in load_allocations(conn)? {
        if !selected(&alloc.job) {
            continue;
        }
        let mut files = Vec::new();
        if !alloc.removed {
            let job_upstream = upstream.get(&alloc.job).cloned().unwrap_or_default();
            match stage_allocation(
                &alloc,
                &bucket_id,
                &workers,
                &kv,
                &job_upstream,
                sources.get(&alloc.job).unwrap_or(&no_sources),
                cert_names.get(&alloc.job),
                server_staging.as_ref(),
            ) {
                Ok(tree) => {
                    alloc.staged = Some(Staged {
                        tree_hash: tree.tree_hash.clone(),
                        files: tree.file_hashes(),
                    });
                    files = tree.file_hashes().into_iter().collect();
                    trees.insert(alloc.alloc_id.clone(), tree);
                }
                // A job with pre_deploy hooks is staged again after them: its templates may read
                // what the hooks write, so a render failure now only means "changed".
                Err(_)
                    if jobs
                        .get(&alloc.job)
                        .is_some_and(|j| j.hooks.contains_key("pre_deploy")) =>
                {
                    alloc.staged = Some(Staged {
                        tree_hash: PENDING_PRE_DEPLOY.into(),
                        files: BTreeMap::new(),
                    });
                }
                Err(error) => failures.push((alloc.worker.clone(), error)),
            }
        }
        facts.insert(
            alloc.alloc_id.clone(),
            AllocationFacts {
                job: alloc.job.clone(),
                worker: alloc.worker.clone(),
                new_version: alloc.new_version.clone(),
                current_version: alloc
                    .deployed
                    .as_ref()
                    .map(|d| d.current_version.clone())
                    .unwrap_or_else(|| "0.0.0".into()),
                files,
                worker_present: workers.contains_key(&alloc.worker),
            },
        );
        allocations.push(alloc);
    }
    if !failures.is_empty() {
        return Err(PrepareError::Staging(group_failures(&failures)));
    }
    let input = PlanInput {
        jobs,
        allocations,
        workers: workers.keys().cloned().collect(),
        flags: flags.clone(),
        adopted_unchanged: Default::default(),
    };
    Ok(Prepared {
        bucket_id,
        update_seq: update_seq as u64,
        catalog_seq: catalog_seq as u64,
        input,
        trees,
        facts,
        workers,
    })
}

/// `demand_job`s of each job's commands: the jobs whose namespaces its templates may read.
pub(super) fn load_upstream(
    conn: &Connection,
) -> Result<BTreeMap<String, Vec<String>>, rusqlite::Error> {
    let mut upstream: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut stmt = conn.prepare(
        "SELECT job, demand_job FROM job_commands WHERE demand_job != '' ORDER BY job, name",
    )?;
    for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
        let (job, demand_job) = row?;
        upstream.entry(job).or_default().push(demand_job);
    }
    Ok(upstream)
}

/// The files of every selected job, with their content, sorted by path.
/// The stored files of the selected jobs, each checked against its content hash (a damaged
/// blob is refused before anything is staged or shipped).
pub(super) fn load_sources(
    conn: &Connection,
    selected: &dyn Fn(&str) -> bool,
) -> Result<BTreeMap<String, Vec<SourceFile>>, PrepareError> {
    let mut sources: BTreeMap<String, Vec<SourceFile>> = BTreeMap::new();
    let mut stmt = conn.prepare(
        "SELECT f.job, f.path, f.hash, f.executable, b.content FROM job_files f JOIN blobs b ON b.hash = f.hash ORDER BY f.job, f.path",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let job: String = row.get(0)?;
        let path: String = row.get(1)?;
        // `_prometheus/` never goes to workers; the server job assembles from it.
        if !selected(&job) || crate::prometheus::is_prometheus_file(&path) {
            continue;
        }
        let hash: String = row.get(2)?;
        let content: Vec<u8> = row.get(4)?;
        if let Err(source) = crate::catalog::integrity::check_blob(&hash, &content) {
            return Err(PrepareError::DamagedFile { job, path, source });
        }
        sources.entry(job).or_default().push(SourceFile {
            path,
            hash,
            executable: row.get(3)?,
            content: Arc::new(content),
        });
    }
    Ok(sources)
}

/// Worker id and labels by host.
pub(super) fn load_workers(
    conn: &Connection,
) -> Result<BTreeMap<String, (String, Vec<String>)>, rusqlite::Error> {
    let mut workers = BTreeMap::new();
    let mut stmt = conn.prepare("SELECT host, worker_id, labels FROM workers")?;
    for row in stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })? {
        let (host, id, labels) = row?;
        workers.insert(
            host,
            (
                id,
                serde_json::from_str::<Vec<String>>(&labels).unwrap_or_default(),
            ),
        );
    }
    Ok(workers)
}

/// Every allocation row with its deployment, ordered by job then worker.
pub(super) fn load_allocations(conn: &Connection) -> Result<Vec<PlanAllocation>, rusqlite::Error> {
    let mut stmt = conn.prepare(
        "SELECT a.alloc_id, a.job, a.worker_ip, a.disabled, a.removed, a.new_version,
                d.current_hash, d.previous_hash, d.current_version, d.previous_files, d.stopped, d.adopted
         FROM allocations a LEFT JOIN deployments d ON d.alloc_id = a.alloc_id ORDER BY a.job, a.worker_ip",
    )?;
    let rows = stmt.query_map([], |r| {
        let deployed = match r.get::<_, Option<String>>(6)? {
            Some(current_hash) => Some(Deployed {
                current_hash,
                previous_hash: r.get(7)?,
                current_version: r.get(8)?,
                previous_files: r
                    .get::<_, Option<String>>(9)?
                    .and_then(|f| serde_json::from_str(&f).ok())
                    .unwrap_or_default(),
                stopped: r.get(10)?,
                adopted: r.get(11)?,
            }),
            None => None,
        };
        Ok(PlanAllocation {
            alloc_id: r.get(0)?,
            job: r.get(1)?,
            worker: r.get(2)?,
            disabled: r.get(3)?,
            removed: r.get(4)?,
            new_version: r.get(5)?,
            deployed,
            staged: None,
        })
    })?;
    rows.collect()
}

/// One line per distinct staging problem: the same error of one file on several allocations
/// of a job is reported once, naming every worker it affects. A worker's own address inside
/// the message (a namespace such as `maand/job/<job>/worker/<ip>`) does not make errors
/// distinct; when several workers share a line it reads `<worker>`.
fn group_failures(failures: &[(String, StageError)]) -> Vec<String> {
    let mut groups: Vec<(String, String, String, Vec<&str>)> = Vec::new();
    for (worker, error) in failures {
        let text = error.describe();
        let general = text.replace(worker.as_str(), "<worker>");
        match groups.iter_mut().find(|(job, path, known, _)| {
            *job == error.job && *path == error.path && *known == general
        }) {
            Some((_, _, _, workers)) => workers.push(worker),
            None => groups.push((error.job.clone(), error.path.clone(), general, vec![worker])),
        }
    }
    groups
        .into_iter()
        .map(|(job, _, general, workers)| {
            let text = match workers.as_slice() {
                [only] => general.replace("<worker>", only),
                _ => general,
            };
            format!("{job} on {}: {text}", workers.join(", "))
        })
        .collect()
}

/// What templates of `alloc` see: the allocation, its worker and the bucket's paths there.
pub(super) fn template_context(
    alloc: &PlanAllocation,
    bucket_id: &str,
    workers: &BTreeMap<String, (String, Vec<String>)>,
) -> TemplateContext {
    let (worker_id, labels) = workers.get(&alloc.worker).cloned().unwrap_or_default();
    let bucket_path = bucket_dir_on_worker(bucket_id);
    TemplateContext {
        allocation_id: alloc.alloc_id.clone(),
        job: alloc.job.clone(),
        worker_ip: alloc.worker.clone(),
        worker_id,
        labels,
        current_version: alloc
            .deployed
            .as_ref()
            .map(|d| d.current_version.clone())
            .unwrap_or_else(|| "0.0.0".into()),
        new_version: alloc.new_version.clone(),
        job_path: format!("{bucket_path}/jobs/{}", alloc.job),
        bucket_path,
    }
}

/// Renders one template of `alloc` with the KV its job may read; a prometheus server job's
/// templates also get `scrape_configs()` and `rule_files()` from `inserts`.
pub(super) fn render_template(
    alloc: &PlanAllocation,
    ctx: &TemplateContext,
    upstream: &[String],
    kv: &KvSnapshot,
    inserts: Option<&templates::PrometheusInserts>,
    (path, text): (&str, &str),
) -> Result<String, String> {
    let scope = ReadScope {
        job: &alloc.job,
        worker_ip: &alloc.worker,
        upstream_jobs: upstream,
    };
    match inserts {
        Some(inserts) => templates::render_server_template(path, text, ctx, &scope, kv, inserts),
        None => templates::render(path, text, ctx, &scope, kv),
    }
    .map_err(|e| e.to_string())
}

// Every argument is one independent input of the tree; bundling them would only rename them.
#[allow(clippy::too_many_arguments)]
fn stage_allocation(
    alloc: &PlanAllocation,
    bucket_id: &str,
    workers: &BTreeMap<String, (String, Vec<String>)>,
    kv: &KvSnapshot,
    upstream: &[String],
    sources: &[SourceFile],
    cert_names: Option<&Vec<String>>,
    server_staging: Option<&ServerStaging>,
) -> Result<StagedTree, StageError> {
    let ctx = template_context(alloc, bucket_id, workers);
    let cert_error = |name: &str, message: String| StageError {
        job: alloc.job.clone(),
        path: format!("certs/{name}"),
        message,
        from_template: false,
    };
    let mut extra = Vec::new();
    if let Some(names) = cert_names {
        let namespace = crate::kv::access::allocation(&alloc.job, &alloc.worker);
        for name in names {
            let cert = kv.get(&namespace, &format!("certs/{name}.crt"));
            let key = kv
                .open_sealed(&namespace, &format!("certs/{name}.key"))
                .map_err(|message| cert_error(name, message))?;
            match (cert, key) {
                (Some(cert), Some(key)) => {
                    extra.push((format!("certs/{name}.crt"), cert.into_bytes(), 0o644));
                    extra.push((format!("certs/{name}.key"), key.into_bytes(), 0o600));
                }
                _ => {
                    return Err(cert_error(
                        name,
                        "the certificate is missing from the catalog: run `maand build`".into(),
                    ))
                }
            }
        }
    }
    // Every job's tree carries the bucket CA, certificates of its own or not, as on the Go
    // maand: jobs that talk TLS to other jobs need it, and trees stay comparable.
    if let Some(ca) = kv.get(crate::certs::CA_KV_NAMESPACE, crate::certs::CA_KV_KEY) {
        extra.push(("certs/ca.crt".into(), ca.into_bytes(), 0o644));
    }
    let inserts = match server_staging.filter(|_| prometheus_stage::is_server(sources)) {
        Some(server) => {
            let (files, inserts) =
                server
                    .for_worker(&alloc.worker, kv)
                    .map_err(|message| StageError {
                        job: alloc.job.clone(),
                        path: "_prometheus".into(),
                        message,
                        from_template: false,
                    })?;
            extra.extend(files);
            Some(inserts)
        }
        None => None,
    };
    let render = |path: &str, text: &str| {
        render_template(alloc, &ctx, upstream, kv, inserts.as_ref(), (path, text))
    };
    stage_tree(&alloc.job, sources, extra, &render)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(
        worker: &str,
        path: &str,
        message: &str,
        from_template: bool,
    ) -> (String, StageError) {
        (
            worker.to_string(),
            StageError {
                job: "api".into(),
                path: path.into(),
                message: message.into(),
                from_template,
            },
        )
    }

    #[test]
    fn one_error_of_a_file_on_many_workers_is_one_line_naming_them() {
        let failures = [
            failure(
                "127.9.0.1",
                "a.tpl",
                "template a.tpl line 1: key `x` is not in namespace `vars/job/api`",
                true,
            ),
            failure(
                "127.9.0.2",
                "a.tpl",
                "template a.tpl line 1: key `x` is not in namespace `vars/job/api`",
                true,
            ),
            failure(
                "127.9.0.3",
                "a.tpl",
                "template a.tpl line 1: key `x` is not in namespace `vars/job/api`",
                true,
            ),
        ];
        assert_eq!(
            group_failures(&failures),
            ["api on 127.9.0.1, 127.9.0.2, 127.9.0.3: template a.tpl line 1: key `x` is not in namespace `vars/job/api`"]
        );
    }

    #[test]
    fn a_workers_own_address_does_not_split_a_group_but_other_differences_do() {
        let failures = [
            failure(
                "127.9.0.1",
                "a.tpl",
                "template a.tpl: no `k` in `maand/job/api/worker/127.9.0.1`",
                true,
            ),
            failure(
                "127.9.0.2",
                "a.tpl",
                "template a.tpl: no `k` in `maand/job/api/worker/127.9.0.2`",
                true,
            ),
            failure("127.9.0.3", "a.tpl", "template a.tpl line 4: other", true),
            failure(
                "127.9.0.3",
                "certs/tls",
                "the certificate is missing",
                false,
            ),
        ];
        assert_eq!(
            group_failures(&failures),
            [
                "api on 127.9.0.1, 127.9.0.2: template a.tpl: no `k` in `maand/job/api/worker/<worker>`",
                "api on 127.9.0.3: template a.tpl line 4: other",
                "api on 127.9.0.3: certs/tls: the certificate is missing",
            ]
        );
    }

    #[test]
    fn a_single_allocation_keeps_its_own_address() {
        let failures = [failure(
            "127.9.0.1",
            "a.tpl",
            "no `k` in `maand/job/api/worker/127.9.0.1`",
            true,
        )];
        assert_eq!(
            group_failures(&failures),
            ["api on 127.9.0.1: no `k` in `maand/job/api/worker/127.9.0.1`"]
        );
    }
}
