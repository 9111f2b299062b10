//! `maand build` as a use case: load the workspace, decide the build against the catalog,
//! record it in the open run, then run the `post_build` job commands. Shared by `maand build`,
//! `maand deploy --build` and `maand worker_facts --build`.

use crate::bucket::Bucket;
use crate::events::Event;
use crate::hooks::{self, HookCatalog, HookHost, RunJournal};
use crate::kv::secret::SecretKey;
use crate::run::Run;
use crate::workspace::{self, CommandEvent};

use super::{decide_build, BuildContext, CatalogSnapshot};

/// How to build.
pub struct BuildOptions {
    /// Also delete the job KV of jobs without an active allocation (`--purge-job-kv`).
    pub purge_job_kv: bool,
    /// Echo the output of `post_build` commands to stderr as it arrives.
    pub echo: bool,
}

/// What a successful build did.
pub struct BuildSummary {
    /// Catalog events recorded (0 when the catalog already matched the workspace).
    pub events: usize,
    pub workers: usize,
    pub jobs: usize,
    /// Every `post_build` hook that ran.
    pub hooks: Vec<PostBuildHook>,
}

/// One `post_build` command that ran.
pub struct PostBuildHook {
    pub job: String,
    pub command: String,
    pub allocations: usize,
}

/// Builds inside an open run. Each workspace warning goes to `warn` as soon as the workspace
/// is read, before anything can fail.
pub fn run_build(
    bucket: &Bucket,
    run: &mut Run,
    options: &BuildOptions,
    warn: &mut dyn FnMut(&str),
) -> anyhow::Result<BuildSummary> {
    let conf = bucket.conf()?;
    let ws =
        workspace::load(&bucket.workspace_dir(), &conf.job_config_selector).map_err(|errors| {
            anyhow::anyhow!("the workspace has {} problem(s):\n{errors}", errors.len())
        })?;
    for warning in &ws.warnings {
        warn(&warning.to_string());
    }
    let ca = crate::certs::read_bucket_ca(&bucket.secrets_dir())?.ok_or_else(|| {
        // A bucket sharing its journal shares its CA too: a second one would sign certificates
        // the other operators' workers do not trust.
        let fix = if conf.shared_journal().is_some() {
            "copy secrets/ca.crt and secrets/ca.key from another operator of this shared bucket (docs/team.md)"
        } else {
            "run `maand init` to create the bucket CA"
        };
        anyhow::anyhow!("{} is missing: {fix}", bucket.ca_cert_path().display())
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
        purge_job_kv: options.purge_job_kv,
        reservations_file: workspace::job_config_file_name(&conf.job_config_selector),
        rng: &mut rng,
    };
    let decision = decide_build(&ws, &snapshot, &mut ctx).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        anyhow::anyhow!(
            "build found {} problem(s):\n{}",
            errors.len(),
            lines.join("\n")
        )
    })?;
    run.record(&decision.events, &decision.blobs)?;
    let hooks = post_build(bucket, run, options.echo)?;
    Ok(BuildSummary {
        events: decision.events.len(),
        workers: ws.workers.len(),
        jobs: ws.jobs.len(),
        hooks,
    })
}

/// Runs every `post_build` command (deployment_seq order, active allocations, one at a time)
/// once the catalog changes are committed. A failure fails the build but keeps that commit;
/// the hooks' KV writes are recorded only when every hook succeeded.
fn post_build(bucket: &Bucket, run: &mut Run, echo: bool) -> anyhow::Result<Vec<PostBuildHook>> {
    let mut catalog = HookCatalog::load(run.conn())?;
    if catalog.hooks(CommandEvent::PostBuild).is_empty() {
        return Ok(Vec::new());
    }
    let host = HookHost::new(bucket)?;
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
        .map(|h| PostBuildHook {
            job: h.job,
            command: h.command,
            allocations: h.outcome.runs.len(),
        })
        .collect())
}
