//! `maand cat`: print catalog tables as aligned text or JSON.
//!
//! Reads only: opens no run, takes no lock, records nothing. The rows come from
//! `catalog::tables`; this file picks columns and formats cells. Secrets are printed only by
//! `cat kv get --reveal`.

use std::collections::BTreeSet;

use anyhow::{bail, Context};

use crate::bucket::{self, Bucket};
use crate::catalog::tables::{self, KvState, Selection};
use crate::events::KvValue;
use crate::kv::secret::{self, SealedSecret, SecretKey};

use super::args::{print, JsonFlag, PrometheusArgs};

/// Longest KV value shown in the `cat kv` table; longer values end in `…`.
const KV_VALUE_WIDTH: usize = 48;

/// `maand cat` and its time-travel option.
#[derive(Debug, clap::Args)]
pub struct CatArgs {
    /// Show the table as it was right after this point of history: a run id (or a unique
    /// prefix of one) or a journal sequence number. A number is a sequence number; one of
    /// eight or more digits that also starts a run id is refused as ambiguous (add the dash).
    /// Computed by replaying the journal up to there; the live catalog is not touched.
    #[arg(long, global = true, value_name = "RUN|SEQ")]
    pub at: Option<String>,
    #[command(subcommand)]
    pub command: CatCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum CatCommand {
    /// Workers from workers.json: host, worker_id, hostname, labels, memory_mb, cpu_mhz, zone
    /// (the `zone` tag), tags, position. In workers.json order.
    Workers(JsonFlag),
    /// Jobs as the last build recorded them: name, job_id, version, selectors, deployment_seq
    /// (deploy wave, lowest first), disabled (every non-removed allocation is disabled),
    /// memory_mb and cpu_mhz (reserved per worker), rollout settings. In deploy order.
    Jobs(JsonFlag),
    /// Allocations (job × worker): alloc_id, job, worker_ip, zone (of the worker), disabled,
    /// removed, new_version, deployment_seq.
    Allocations(Filter),
    /// Deploy state per allocation: current_hash (tree last staged), previous_hash (tree
    /// promoted on the worker), current_version (promoted), new_version (wanted by the catalog)
    /// and rollout.
    ///
    /// rollout is `removed`; `disabled`, or `disabled_restart` when staged content or version is
    /// not promoted yet; for active allocations `new` (never promoted, or stopped while
    /// disabled: the next deploy starts it), `restart` (staged tree or version differs from the
    /// promoted one), `promoted` (in sync: deploy skips it), `health_failed`, or `adopted`
    /// (imported from the Go maand: the next deploy restarts it only if its worker's tree
    /// differs). Hashes change when a deploy stages content, not when a build records it.
    Deployments(DeploymentsArgs),
    /// Manifest commands, one row per (command, executed_on event), with their demands.
    #[command(name = "job_commands", alias = "job-commands")]
    JobCommands(JobsFilter),
    /// Named ports per job; `assigned` is true when the port came from the bucket.conf pool.
    #[command(name = "job_ports", alias = "job-ports")]
    JobPorts(JobsFilter),
    /// The bucket CA (secrets/ca.crt, always listed first) and the job leaf certificates stored
    /// in KV: scope, job, worker, cert, common_name, not_after (UTC), days_left, status.
    ///
    /// status is `ok`, `expiring` (within certs_renewal_buffer days of expiry, from
    /// maand.conf: the window in which `maand build` renews), `expired`, or `invalid`
    /// (unparsable, or not signed by the bucket CA; --json says why).
    Certs(Filter),
    /// KV keys at their current version: namespace, key, version, deleted, value (cut to 48
    /// characters, secrets shown as <sealed>). `cat kv get` prints one value in full.
    Kv(KvArgs),
    /// Monitoring content: jobs with `_prometheus/` files (scrape config, alert rule files,
    /// runbooks, dashboards, and whether the scrape catalog includes the job); `get` prints
    /// one file, `scrape` the scrape configs expanded against the current allocations.
    Prometheus(PrometheusArgs),
}

/// `--jobs` / `--workers` selection.
#[derive(Debug, clap::Args)]
pub struct Filter {
    /// Only these jobs (comma-separated). An unknown name is an error.
    #[arg(long, value_delimiter = ',', value_name = "JOB,...")]
    pub jobs: Vec<String>,
    /// Only these workers (comma-separated IPs). An unknown worker is an error.
    #[arg(long, value_delimiter = ',', value_name = "IP,...")]
    pub workers: Vec<String>,
    #[command(flatten)]
    pub output: JsonFlag,
}

impl Filter {
    fn selection(&self) -> Selection {
        Selection {
            jobs: self.jobs.clone(),
            workers: self.workers.clone(),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct JobsFilter {
    /// Only these jobs (comma-separated). An unknown name is an error.
    #[arg(long, value_delimiter = ',', value_name = "JOB,...")]
    pub jobs: Vec<String>,
    #[command(flatten)]
    pub output: JsonFlag,
}

#[derive(Debug, clap::Args)]
pub struct DeploymentsArgs {
    #[command(flatten)]
    pub filter: Filter,
    /// Only allocations a deploy would target (neither removed nor disabled).
    #[arg(long)]
    pub active: bool,
}

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct KvArgs {
    #[command(subcommand)]
    pub get: Option<KvCommand>,
    /// Only namespaces these jobs can read from their non-removed allocations (comma-separated):
    /// maand/bucket, vars/bucket, maand/worker, each allocated worker's maand/worker/<ip> and
    /// its tags, the job's maand/job, vars/bucket/job, vars/job and secrets/job namespaces,
    /// each allocation's maand/job/<job>/worker/<ip>, and maand/job, vars/job, secrets/job of
    /// every job named in the job's command demands. A job with no such allocation reads
    /// nothing.
    #[arg(long, value_delimiter = ',', value_name = "JOB,...")]
    pub jobs: Vec<String>,
    /// Only namespaces readable by allocations on these workers (comma-separated IPs);
    /// combines with --jobs.
    #[arg(long, value_delimiter = ',', value_name = "IP,...")]
    pub workers: Vec<String>,
    /// Only keys whose current version is a value (not a deletion).
    #[arg(long, conflicts_with = "deleted")]
    pub active: bool,
    /// Only keys whose current version is a deletion.
    #[arg(long)]
    pub deleted: bool,
    #[command(flatten)]
    pub output: JsonFlag,
}

#[derive(Debug, clap::Subcommand)]
pub enum KvCommand {
    /// Print the current value of one key, untruncated. A secret needs --reveal.
    Get {
        /// The namespace, e.g. vars/job/api.
        namespace: String,
        /// The key inside the namespace.
        key: String,
        /// Decrypt a secret with secrets/kv.key and print its plaintext.
        #[arg(long)]
        reveal: bool,
    },
}

/// Digits-only values this long may be the first group of a run id (eight hex digits).
const RUN_ID_GROUP: usize = 8;

/// The journal position `--at` names: a sequence number, or the last event of a run. A value
/// of eight or more digits that is also the start of a run id is refused as ambiguous.
fn resolve_at(conn: &rusqlite::Connection, at: &str) -> anyhow::Result<u64> {
    let mut stmt =
        conn.prepare("SELECT run_id FROM runs WHERE substr(run_id, 1, length(?1)) = ?1")?;
    let runs: Vec<String> = stmt
        .query_map([at], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if let Ok(seq) = at.parse::<u64>() {
        if let Some(run) = runs.first().filter(|_| at.len() >= RUN_ID_GROUP) {
            bail!(
                "--at {at} is both an event sequence number and the start of run {run}; for the run, give its id up to the first dash or further"
            );
        }
        let head = journal::head(conn)?;
        if seq == 0 || seq > head {
            bail!("--at {seq}: the journal holds events 1 to {head}");
        }
        return Ok(seq);
    }
    match runs.as_slice() {
        [run] => Ok(conn.query_row(
            "SELECT max(seq) FROM journal WHERE run_id = ?1",
            [run],
            |r| r.get::<_, i64>(0),
        )? as u64),
        [] => bail!(
            "--at {at}: no run id starts with that; see `maand logs show --event run_started`"
        ),
        _ => bail!(
            "--at {at}: {} runs start with that; give more of the run id",
            runs.len()
        ),
    }
}

/// Prints the table `args` asks for. `cat prometheus` is printed by `prometheus`, which the
/// dispatcher passes in (`cat_prometheus::run`).
pub fn run(
    bucket: &Bucket,
    args: &CatArgs,
    prometheus: impl FnOnce(&rusqlite::Connection, &PrometheusArgs) -> anyhow::Result<i32>,
) -> anyhow::Result<i32> {
    let live = bucket::open_checked(bucket)?;
    let conn = match &args.at {
        Some(at) => crate::catalog::catalog_at(&live, resolve_at(&live, at)?)?,
        None => live,
    };
    match &args.command {
        CatCommand::Workers(out) => print(
            &tables::workers(&conn)?,
            out,
            &[
                "host",
                "worker_id",
                "hostname",
                "labels",
                "memory_mb",
                "cpu_mhz",
                "zone",
                "tags",
                "position",
            ],
            |w| {
                vec![
                    w.host.clone(),
                    w.worker_id.clone(),
                    optional(&w.hostname),
                    w.labels.join(","),
                    optional(&w.memory_mb),
                    optional(&w.cpu_mhz),
                    optional(&w.zone),
                    w.tags
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(","),
                    w.position.to_string(),
                ]
            },
        ),
        CatCommand::Jobs(out) => print(
            &tables::jobs(&conn)?,
            out,
            &[
                "name",
                "job_id",
                "version",
                "selectors",
                "deployment_seq",
                "disabled",
                "memory_mb",
                "cpu_mhz",
                "max_concurrent_upgrades",
                "max_concurrent_starts",
                "min_allocations_count",
                "restart_policy",
            ],
            |j| {
                vec![
                    j.name.clone(),
                    j.job_id.clone(),
                    j.version.clone(),
                    j.selectors.join(","),
                    j.deployment_seq.to_string(),
                    j.disabled.to_string(),
                    j.memory_mb.to_string(),
                    j.cpu_mhz.to_string(),
                    j.max_concurrent_upgrades.to_string(),
                    j.max_concurrent_starts.to_string(),
                    j.min_allocations_count.to_string(),
                    j.restart_policy.clone(),
                ]
            },
        ),
        CatCommand::Allocations(filter) => print(
            &tables::allocations(&conn, &filter.selection())?,
            &filter.output,
            &[
                "alloc_id",
                "job",
                "worker_ip",
                "zone",
                "disabled",
                "removed",
                "new_version",
                "deployment_seq",
            ],
            |a| {
                vec![
                    a.alloc_id.clone(),
                    a.job.clone(),
                    a.worker_ip.clone(),
                    optional(&a.zone),
                    a.disabled.to_string(),
                    a.removed.to_string(),
                    a.new_version.clone(),
                    a.deployment_seq.to_string(),
                ]
            },
        ),
        CatCommand::Deployments(args) => print(
            &tables::deployments(&conn, &args.filter.selection(), args.active)?,
            &args.filter.output,
            &[
                "job",
                "worker_ip",
                "current_hash",
                "previous_hash",
                "current_version",
                "new_version",
                "rollout",
            ],
            |d| {
                vec![
                    d.job.clone(),
                    d.worker_ip.clone(),
                    optional(&d.current_hash),
                    optional(&d.previous_hash),
                    optional(&d.current_version),
                    d.new_version.clone(),
                    d.rollout.as_str().to_string(),
                ]
            },
        ),
        CatCommand::JobCommands(filter) => print(
            &tables::job_commands(&conn, &jobs_only(&filter.jobs))?,
            &filter.output,
            &[
                "job",
                "name",
                "event",
                "script",
                "demand_job",
                "demand_command",
                "demand_config",
            ],
            |c| {
                vec![
                    c.job.clone(),
                    c.name.clone(),
                    c.event.clone(),
                    c.script.clone(),
                    c.demand_job.clone(),
                    c.demand_command.clone(),
                    c.demand_config.to_string(),
                ]
            },
        ),
        CatCommand::JobPorts(filter) => print(
            &tables::job_ports(&conn, &jobs_only(&filter.jobs))?,
            &filter.output,
            &["job", "name", "port", "assigned"],
            |p| {
                vec![
                    p.job.clone(),
                    p.name.clone(),
                    p.port.to_string(),
                    p.assigned.to_string(),
                ]
            },
        ),
        CatCommand::Certs(filter) => certs(bucket, &conn, filter),
        CatCommand::Kv(args) => match &args.get {
            Some(KvCommand::Get {
                namespace,
                key,
                reveal,
            }) => kv_get(bucket, &conn, namespace, key, *reveal),
            None => kv_list(&conn, args),
        },
        CatCommand::Prometheus(args) => prometheus(&conn, args),
    }
}

fn jobs_only(jobs: &[String]) -> Selection {
    Selection {
        jobs: jobs.to_vec(),
        workers: Vec::new(),
    }
}

fn certs(bucket: &Bucket, conn: &rusqlite::Connection, filter: &Filter) -> anyhow::Result<i32> {
    let leaves = tables::leaf_certs(conn, &filter.selection())?;
    let ca_path = bucket.ca_cert_path();
    let ca_pem = std::fs::read_to_string(&ca_path).with_context(|| {
        format!(
            "cannot read the bucket CA {}; run `maand init` to create it",
            ca_path.display()
        )
    })?;
    let buffer = bucket.conf()?.certs_renewal_buffer;
    let rows = tables::cert_rows(&ca_pem, &leaves, time::OffsetDateTime::now_utc(), buffer);
    print(
        &rows,
        &filter.output,
        &[
            "scope",
            "job",
            "worker",
            "cert",
            "common_name",
            "not_after",
            "days_left",
            "status",
        ],
        |c| {
            vec![
                c.scope.as_str().to_string(),
                optional(&c.job),
                optional(&c.worker),
                c.cert.clone(),
                optional(&c.common_name),
                optional(&c.not_after),
                optional(&c.days_left),
                c.status.clone(),
            ]
        },
    )
}

fn kv_list(conn: &rusqlite::Connection, args: &KvArgs) -> anyhow::Result<i32> {
    let restricted = !args.jobs.is_empty() || !args.workers.is_empty();
    let namespaces: Option<BTreeSet<String>> = if restricted {
        Some(tables::readable_namespaces(
            conn,
            &Selection {
                jobs: args.jobs.clone(),
                workers: args.workers.clone(),
            },
        )?)
    } else {
        None
    };
    let state = match (args.active, args.deleted) {
        (true, _) => KvState::Active,
        (_, true) => KvState::Deleted,
        _ => KvState::All,
    };
    print(
        &tables::kv(conn, namespaces.as_ref(), state)?,
        &args.output,
        &["namespace", "key", "version", "deleted", "value"],
        |r| {
            let value = match (&r.value, r.sealed) {
                (_, true) => "<sealed>".to_string(),
                (Some(value), false) => shorten(value),
                (None, false) => String::new(),
            };
            vec![
                r.namespace.clone(),
                r.key.clone(),
                r.version.to_string(),
                r.deleted.to_string(),
                value,
            ]
        },
    )
}

fn kv_get(
    bucket: &Bucket,
    conn: &rusqlite::Connection,
    namespace: &str,
    key: &str,
    reveal: bool,
) -> anyhow::Result<i32> {
    let Some(entry) = tables::kv_entry(conn, namespace, key)? else {
        bail!("no key `{key}` in KV namespace `{namespace}`; `maand cat kv` lists the keys");
    };
    let value = match entry.value {
        None => bail!(
            "key `{key}` in KV namespace `{namespace}` was deleted (version {}); \
             `maand cat kv --deleted` lists deleted keys",
            entry.version
        ),
        Some(KvValue::Plain(value)) => value,
        Some(KvValue::Sealed(_)) if !reveal => bail!(
            "key `{key}` in KV namespace `{namespace}` is a secret; add --reveal to decrypt \
             and print it"
        ),
        Some(KvValue::Sealed(text)) => {
            let key_file = SecretKey::load(&bucket.kv_key_path())?;
            let sealed = SealedSecret::decode(&text)
                .with_context(|| format!("key `{key}` in KV namespace `{namespace}`"))?;
            secret::open(&key_file, namespace, key, &sealed)?
        }
    };
    if value.ends_with('\n') {
        print!("{value}");
    } else {
        println!("{value}");
    }
    Ok(0)
}

/// A cell for an optional field: empty when absent.
fn optional<T: ToString>(value: &Option<T>) -> String {
    value.as_ref().map(T::to_string).unwrap_or_default()
}

/// One line of at most [`KV_VALUE_WIDTH`] characters: line breaks shown as `\n`, the rest cut
/// with `…`.
fn shorten(value: &str) -> String {
    let flat = value.replace('\r', "\\r").replace('\n', "\\n");
    if flat.chars().count() <= KV_VALUE_WIDTH {
        return flat;
    }
    let mut cut: String = flat.chars().take(KV_VALUE_WIDTH - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Event, RunStarted};

    fn catalog_with_runs(runs: &[&str]) -> (tempfile::TempDir, rusqlite::Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("maand.db");
        let mut conn = crate::bucket::open(&path).unwrap();
        crate::bucket::migrate(&mut conn, &path).unwrap();
        for run in runs {
            let started = Event::RunStarted(RunStarted {
                command: "build".into(),
                argv: vec!["maand".into(), "build".into()],
                maand_version: "0.1.0".into(),
                user: "ops".into(),
                host: "box".into(),
                pid: 9,
            });
            crate::catalog::commit(&mut conn, run, 1000, &[started], &[]).unwrap();
        }
        (dir, conn)
    }

    #[test]
    fn at_takes_a_sequence_or_a_run_prefix_and_refuses_an_ambiguous_one() {
        let (_dir, conn) = catalog_with_runs(&[
            "12345678-0000-4000-8000-000000000000",
            "abcdef00-0000-4000-8000-000000000000",
        ]);
        // Short numbers are sequence numbers, even when a run id starts with them.
        assert_eq!(resolve_at(&conn, "1").unwrap(), 1);
        assert_eq!(resolve_at(&conn, "abcdef").unwrap(), 2);
        assert_eq!(resolve_at(&conn, "12345678-").unwrap(), 1);
        let ambiguous = resolve_at(&conn, "12345678").unwrap_err().to_string();
        assert!(
            ambiguous.contains("both an event sequence number and the start of run 12345678-"),
            "{ambiguous}"
        );
        let beyond = resolve_at(&conn, "99999999").unwrap_err().to_string();
        assert!(
            beyond.contains("the journal holds events 1 to 2"),
            "{beyond}"
        );
    }
}
