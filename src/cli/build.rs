//! `maand build`: reconcile the workspace into the catalog.

use crate::bucket::Bucket;
use crate::build::{self, BuildContext, CatalogSnapshot};
use crate::kv::secret::SecretKey;
use crate::run::Run;
use crate::workspace;

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
    }
}

/// Builds inside an open run (also used by `maand deploy --build`).
pub(crate) fn build(bucket: &Bucket, args: &BuildArgs, run: &mut Run) -> anyhow::Result<Summary> {
    let conf = bucket.conf()?;
    let ws =
        workspace::load(&bucket.workspace_dir(), &conf.job_config_selector).map_err(|errors| {
            anyhow::anyhow!("the workspace has {} problem(s):\n{errors}", errors.len())
        })?;
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
    Ok(Summary {
        events: decision.events.len(),
        workers: ws.workers.len(),
        jobs: ws.jobs.len(),
    })
}
