//! `maand deploy`: push jobs to workers, roll them out, and record every step.

use crate::activity::SharedRun;
use crate::bucket::Bucket;
use crate::build::{self, BuildOptions};
use crate::deploy::driver::{self, DeployOutcome, DeployRequest};
use crate::deploy::report::{DeployProgress, OutputMode};
use crate::events::DeployFlags;
use crate::prometheus::cert_push;
use crate::run::Run;
use std::io::IsTerminal;

use super::args::{hook_echo, print_build_summary, warn};

#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    /// Only these jobs (comma-separated); waves still follow deployment_seq.
    #[arg(long, value_delimiter = ',', value_name = "JOB,...")]
    pub jobs: Vec<String>,
    /// Run `maand build` first, in the same run.
    #[arg(short = 'b', long)]
    pub build: bool,
    /// Stage and compare hashes, print what each allocation would get (start, restart,
    /// reload, sync, skip), and change nothing on workers or in the catalog.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Print JSON: with --dry-run the plan as one document; otherwise one object per
    /// finished step as it happens, then the recap as one object (`"type": "recap"`).
    #[arg(long, conflicts_with = "quiet")]
    pub json: bool,
    /// Print only errors and the summary line (no line per step, no recap table).
    #[arg(short, long)]
    pub quiet: bool,
    /// Roll out even allocations that are already promoted (they restart; new ones start).
    #[arg(long)]
    pub force: bool,
    /// Copy files and promote, but run no start/restart/reload. Fails if an allocation still
    /// needs its first start.
    #[arg(long)]
    pub sync_only: bool,
    /// Continue the latest unfinished deploy from its first step without a success record
    /// (a step that started but never finished runs again). Refused if `maand build` changed
    /// the catalog since that deploy was planned.
    #[arg(long, conflicts_with_all = ["jobs", "build", "dry_run", "force", "sync_only"])]
    pub resume: bool,
}

fn short(hash: &Option<String>) -> String {
    hash.as_deref()
        .map(|h| h[..12.min(h.len())].to_string())
        .unwrap_or_else(|| "-".into())
}

pub fn run(bucket: &Bucket, args: &DeployArgs, argv: &[String]) -> anyhow::Result<i32> {
    let mut run = Run::begin(bucket, "deploy", argv)?;
    if args.build {
        let options = BuildOptions {
            purge_job_kv: false,
            echo: hook_echo(),
        };
        match build::run_build(bucket, &mut run, &options, &mut warn) {
            Ok(summary) => print_build_summary(&summary),
            Err(error) => {
                run.finish(&Err::<(), _>(&error))?;
                return Err(error);
            }
        }
    }
    let shared = SharedRun::new(run);
    let mode = if args.json {
        OutputMode::Json
    } else if args.quiet {
        OutputMode::Quiet
    } else if std::io::stdout().is_terminal() {
        OutputMode::Terminal
    } else {
        OutputMode::Plain
    };
    let request = DeployRequest {
        flags: DeployFlags {
            jobs: args.jobs.clone(),
            force: args.force,
            sync_only: args.sync_only,
        },
        dry_run: args.dry_run,
        resume: args.resume,
        // Worker output goes to stderr as it arrives, except under the live lines of a
        // terminal, which it would tear (it is in the journal: `maand logs show`);
        // MAAND_ECHO forces it.
        echo: std::env::var_os("MAAND_ECHO").is_some()
            || (mode != OutputMode::Terminal && std::io::stderr().is_terminal()),
    };
    let mut progress = DeployProgress::new(mode);
    let outcome = driver::deploy(bucket, &shared, &request, &mut progress);
    let result: anyhow::Result<i32> = match outcome {
        Err(error) => Err(error.into()),
        Ok(DeployOutcome::DryRun { plan, prepared }) => {
            let waves = driver::dry_run_waves(&plan, &prepared);
            if args.json {
                let value = serde_json::json!({
                    "deployment_required": !plan.is_empty(),
                    "waves": waves.iter().map(|(seq, jobs)| serde_json::json!({
                        "deployment_seq": seq,
                        "jobs": jobs.iter().map(|(job, actions)| serde_json::json!({
                            "job": job,
                            "deploy_required": !plan.skipped_jobs.contains(job),
                            "allocations": actions.iter().map(|a| serde_json::json!({
                                "worker": a.worker, "action": a.action,
                                "previous_hash": a.previous_hash, "current_hash": a.current_hash,
                                "matched": a.matched,
                            })).collect::<Vec<_>>(),
                        })).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>(),
                });
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                println!(
                    "deploy dry-run: {}",
                    if plan.is_empty() {
                        "no deployment required"
                    } else {
                        "deployment required"
                    }
                );
                for (seq, jobs) in &waves {
                    println!("deployment sequence {seq}:");
                    for (job, actions) in jobs {
                        if plan.skipped_jobs.contains(job) {
                            println!("  job {job:?}: skip (already promoted on all allocations)");
                            continue;
                        }
                        println!("  job {job:?}: deploy required");
                        for a in actions {
                            let matched = if a.matched.is_empty() {
                                String::new()
                            } else {
                                format!(" matched={}", a.matched.join(","))
                            };
                            println!(
                                "    {:<15} {:<8} previous_hash={} current_hash={}{matched}",
                                a.worker,
                                a.action,
                                short(&a.previous_hash),
                                short(&a.current_hash)
                            );
                        }
                    }
                }
            }
            Ok(0)
        }
        Ok(DeployOutcome::NothingToDo { skipped }) => {
            if mode != OutputMode::Json && mode != OutputMode::Quiet {
                println!("deploy: nothing to do");
            }
            progress.print_recap(&progress.finish(skipped, 0, &[]));
            Ok(0)
        }
        Ok(DeployOutcome::Executed {
            deploy_id,
            skipped,
            report,
            done_before,
        }) => {
            if !report.interrupted {
                for warning in cert_push::push_after_deploy(bucket, &shared) {
                    eprintln!("warning: {warning}");
                }
            }
            // The run's own events hold the output of any step that failed.
            let run_events = if report.failures.is_empty() {
                Vec::new()
            } else {
                crate::deploy::report::events_of_run(&shared)
            };
            let recap = progress.finish(skipped, done_before, &run_events);
            progress.print_recap(&recap);
            if report.interrupted {
                Err(anyhow::anyhow!(
                    "deploy {deploy_id} interrupted: the steps that were running finished and were recorded, later steps did not start"
                ))
            } else if report.failures.is_empty() {
                if matches!(mode, OutputMode::Plain | OutputMode::Terminal) {
                    println!("deploy {deploy_id}: done");
                }
                Ok(0)
            } else {
                for (step, error) in &report.failures {
                    eprintln!("  failed: {step}: {}", crate::terminal::visible(error));
                }
                Err(anyhow::anyhow!(
                    "deploy {deploy_id} failed for: {}; fix the cause and run `maand deploy --resume` to continue where it stopped",
                    report.failed_jobs.join(", ")
                ))
            }
        }
    };
    let run = shared
        .into_run()
        .ok_or_else(|| anyhow::anyhow!("internal: the run is still shared"))?;
    run.finish(&result)?;
    result
}
