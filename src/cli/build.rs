//! `maand build`: reconcile the workspace into the catalog, then run the `post_build` job
//! commands.

use crate::bucket::Bucket;
use crate::build::{self, BuildContext, CatalogSnapshot};
use crate::events::Event;
use crate::hooks::{self, HookCatalog, HookHost, RunJournal};
use crate::kv::secret::SecretKey;
use crate::run::Run;
use crate::workspace::{self, CommandEvent};
use std::io::IsTerminal;

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// Also delete the vars/job/<job> and secrets/job/<job> keys of every job that has no
    /// active allocation (removed jobs, fully disabled jobs). Without it those keys are kept.
    #[arg(long)]
    pub purge_job_kv: bool,
}

/// What a successful build did, for the summary line.
pub(crate) struct Summary {
    events: usize,
    workers: usize,
    jobs: usize,
    /// `(job, command, allocations)` of every post_build hook that ran.
    hooks: Vec<(String, String, usize)>,
}

pub fn run(bucket: &Bucket, args: &BuildArgs, argv: &[String]) -> anyhow::Result<i32> {
    let mut run = Run::begin(bucket, "build", argv)?;
    let result = build(bucket, args, &mut run);
    run.finish(&result)?;
    let summary = result?;
    summary.print();
    Ok(0)
}

impl Summary {
    pub(crate) fn print(&self) {
        let summary = self;
        if summary.events == 0 {
            println!(
                "build: catalog already matches the workspace ({} workers, {} jobs)",
                summary.workers, summary.jobs
            );
        } else {
            println!(
                "build: recorded {} catalog events ({} workers, {} jobs)",
                summary.events, summary.workers, summary.jobs
            );
        }
        for (job, command, allocations) in &summary.hooks {
            println!("post_build: {command} of job {job} ran on {allocations} allocation(s)");
        }
    }
}

/// Builds inside an open run (also used by `maand deploy --build`).
pub(crate) fn build(bucket: &Bucket, args: &BuildArgs, run: &mut Run) -> anyhow::Result<Summary> {
    let conf = bucket.conf()?;
    let ws =
        workspace::load(&bucket.workspace_dir(), &conf.job_config_selector).map_err(|errors| {
            anyhow::anyhow!("the workspace has {} problem(s):\n{errors}", errors.len())
        })?;
    for warning in &ws.warnings {
        eprintln!("warning: {warning}");
    }
    let ca = crate::certs::read_bucket_ca(&bucket.secrets_dir())?.ok_or_else(|| {
        anyhow::anyhow!(
            "{} is missing: run `maand init` to create the bucket CA",
            bucket.ca_cert_path().display()
        )
    })?;
    let kv_key = SecretKey::load(&bucket.kv_key_path())?;
    let snapshot = CatalogSnapshot::load(run.conn())?;
    let mut rng = rand::rng();
    let mut ctx = BuildContext {
        ca: &ca,
        kv_key: &kv_key,
        now: time::OffsetDateTime::now_utc(),
        certs_ttl_days: conf.certs_ttl,
        certs_renewal_buffer_days: conf.certs_renewal_buffer,
        purge_job_kv: args.purge_job_kv,
        reservations_file: workspace::job_config_file_name(&conf.job_config_selector),
        rng: &mut rng,
    };
    let decision = build::decide_build(&ws, &snapshot, &mut ctx).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        anyhow::anyhow!(
            "build found {} problem(s):\n{}",
            errors.len(),
            lines.join("\n")
        )
    })?;
    run.record(&decision.events, &decision.blobs)?;
    let hooks = post_build(bucket, run)?;
    Ok(Summary {
        events: decision.events.len(),
        workers: ws.workers.len(),
        jobs: ws.jobs.len(),
        hooks,
    })
}

/// Runs every `post_build` command (deployment_seq order, active allocations, one at a time)
/// once the catalog changes are committed. A failure fails the build but keeps that commit;
/// the hooks' KV writes are recorded only when every hook succeeded.
fn post_build(bucket: &Bucket, run: &mut Run) -> anyhow::Result<Vec<(String, String, usize)>> {
    let mut catalog = HookCatalog::load(run.conn())?;
    if catalog.hooks(CommandEvent::PostBuild).is_empty() {
        return Ok(Vec::new());
    }
    let host = HookHost::new(bucket)?;
    let echo = std::io::stderr().is_terminal() || std::env::var_os("MAAND_ECHO").is_some();
    let pass = hooks::run_pass_blocking(
        &host,
        &mut catalog,
        &RunJournal::new(run),
        CommandEvent::PostBuild,
        1,
        echo,
    )?;
    let failures = pass.failures();
    if !failures.is_empty() {
        anyhow::bail!(
            "post_build failed; the catalog changes of this build are recorded, what the hooks wrote to KV is not (`maand logs show --format human` has every line):\n{}",
            failures.join("\n")
        );
    }
    let events: Vec<Event> = pass
        .kv_changes()
        .into_iter()
        .map(Event::KvChanged)
        .collect();
    if !events.is_empty() {
        run.record(&events, &[])?;
    }
    Ok(pass
        .hooks
        .into_iter()
        .map(|h| (h.job, h.command, h.outcome.runs.len()))
        .collect())
}
