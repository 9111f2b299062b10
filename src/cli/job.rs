//! `maand job`: job subcommands. `job create` scaffolds a job directory in the workspace;
//! `job start|stop|restart|status|run` run a Makefile target of a job on its workers.
//!
//! `job create` writes workspace files and nothing else: it records no journal event, never
//! touches the catalog and contacts no worker. It never overwrites an existing directory.
//!
//! The target commands run inside a run (they take the bucket lock), check every worker's
//! deployed `worker.json` against the catalog first, and journal the runner's output with
//! phase `job_control` and the target as action (`job_control` owns the logic).

use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::activity::SharedRun;
use crate::bucket::Bucket;
use crate::job_control::{self, TargetRequest};
use crate::run::Run;
use crate::workspace;

use super::args::{finish, SshArgs};

#[derive(Debug, clap::Subcommand)]
pub enum JobCommand {
    /// Scaffold workspace/jobs/<JOB>/ with a manifest.json and a Makefile.
    ///
    /// The manifest declares version 1.0.0, the selectors (the job name when --selectors is
    /// not given), one upgrade at a time, all starts at once, no minimum allocation count and
    /// restart_policy "always". The Makefile has start, stop, restart, reload and status
    /// targets that run a placeholder loop in the background on the worker, keeping its pid
    /// under ./data and its output under ./logs; replace SERVICE in it with your program.
    ///
    /// Only writes workspace files: records no journal event and contacts no worker. Run
    /// `maand build` to add the job to the catalog. Refuses an invalid job name and an
    /// existing directory.
    Create(CreateArgs),
    /// Run `make start` for the job on its workers (through the worker's runner).
    ///
    /// Every command below first reads /opt/worker/<bucket_id>/worker.json on each worker and
    /// refuses a worker whose file is missing (not deployed yet) or names another bucket,
    /// worker or update_seq than the catalog: run `maand deploy` first. Runs on the job's
    /// active allocations (not disabled, not removed), at most 32 workers at once, prints a
    /// summary per worker and fails when any worker failed or was refused.
    Start(TargetArgs),
    /// Run `make stop` for the job on its workers (see `job start`).
    Stop(TargetArgs),
    /// Run `make restart` for the job on its workers (see `job start`).
    Restart(TargetArgs),
    /// Run `make status` for the job on its workers (see `job start`); a non-zero status
    /// (the scaffold exits 3 when the job is not running) counts as a failure.
    Status(StatusArgs),
    /// Run any Makefile target of the job on its workers, e.g. `--target reload` or
    /// `--target migrate` (see `job start`).
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
pub struct TargetArgs {
    /// The job, as in the catalog.
    pub job: String,
    /// Only the job's allocations on these workers (hosts), comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "IP,...")]
    pub allocations: Vec<String>,
    /// Stop the target on a worker after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    /// Afterwards, check the job's health on the allocations the target ran on, waiting like
    /// `maand health_check --wait`; fails when any stays unhealthy. See docs/health.md.
    #[arg(long = "health_check")]
    pub health_check: bool,
    #[command(flatten)]
    pub ssh: SshArgs,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The job, as in the catalog.
    pub job: String,
    /// Only the job's allocations on these workers (hosts), comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "IP,...")]
    pub allocations: Vec<String>,
    /// Stop the target on a worker after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    #[command(flatten)]
    pub ssh: SshArgs,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The Makefile target: letters, digits, '.', '_' and '-'.
    #[arg(long, value_name = "TARGET")]
    pub target: String,
    #[command(flatten)]
    pub common: TargetArgs,
}

impl JobCommand {
    /// The command name recorded in the journal.
    pub fn name(&self) -> &'static str {
        match self {
            JobCommand::Create(_) => "job create",
            JobCommand::Start(_) => "job start",
            JobCommand::Stop(_) => "job stop",
            JobCommand::Restart(_) => "job restart",
            JobCommand::Status(_) => "job status",
            JobCommand::Run(_) => "job run",
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The job name: lowercase letters, digits, '_' and '-'; not data, logs or bin.
    pub job: String,
    /// Worker labels the job is placed on, comma-separated (all must match). Defaults to the
    /// job name.
    #[arg(long, value_delimiter = ',', value_name = "LABEL,...")]
    pub selectors: Vec<String>,
}

pub fn run(bucket: &Bucket, command: &JobCommand, argv: &[String]) -> anyhow::Result<i32> {
    let (target, args) = match command {
        JobCommand::Create(args) => return create(bucket, args),
        JobCommand::Start(args) => ("start", args),
        JobCommand::Stop(args) => ("stop", args),
        JobCommand::Restart(args) => ("restart", args),
        JobCommand::Run(args) => (args.target.as_str(), &args.common),
        JobCommand::Status(args) => {
            let target = Target {
                job: &args.job,
                allocations: &args.allocations,
                timeout: args.timeout,
                health_check: false,
                ssh: &args.ssh,
            };
            return run_target(bucket, command.name(), "status", &target, argv);
        }
    };
    let common = Target {
        job: &args.job,
        allocations: &args.allocations,
        timeout: args.timeout,
        health_check: args.health_check,
        ssh: &args.ssh,
    };
    run_target(bucket, command.name(), target, &common, argv)
}

/// What every target command needs.
struct Target<'a> {
    job: &'a str,
    allocations: &'a [String],
    timeout: u64,
    /// Check the job's health after the target.
    health_check: bool,
    ssh: &'a SshArgs,
}

fn run_target(
    bucket: &Bucket,
    name: &str,
    target: &str,
    args: &Target<'_>,
    argv: &[String],
) -> anyhow::Result<i32> {
    job_control::check_target(target)?;
    let run = Run::begin(bucket, name, argv)?;
    let shared = SharedRun::new(run);
    let request = TargetRequest {
        job: args.job,
        target,
        allocations: args.allocations,
        timeout: Duration::from_secs(args.timeout),
        connect_timeout: args.ssh.connect_timeout(),
        health_check: args.health_check,
    };
    let result = job_control::job_target(bucket, &shared, &request);
    finish(shared, result)
}

fn create(bucket: &Bucket, args: &CreateArgs) -> anyhow::Result<i32> {
    bucket.require_exists()?;
    let job = args.job.as_str();
    workspace::validate_job_name(job)?;
    let selectors = if args.selectors.is_empty() {
        vec![job.to_string()]
    } else {
        args.selectors.clone()
    };
    for selector in &selectors {
        workspace::validate_label(selector).context("--selectors")?;
    }
    let jobs_dir = bucket.workspace_dir().join("jobs");
    let target = jobs_dir.join(job);
    if target.symlink_metadata().is_ok() {
        bail!(
            "{} already exists; choose another job name, or edit the existing job",
            target.display()
        );
    }
    fs::create_dir_all(&jobs_dir).with_context(|| format!("creating {}", jobs_dir.display()))?;

    // Written next to the bucket's other scratch files, then moved into place whole, so a
    // failure never leaves a half-written job that the next build would read.
    let staged = bucket
        .tmp_dir()
        .join(format!("job-create-{job}-{}", std::process::id()));
    let result = stage(&staged, job, &selectors).and_then(|()| {
        fs::rename(&staged, &target)
            .with_context(|| format!("moving {} to {}", staged.display(), target.display()))
    });
    if result.is_err() {
        let _ = fs::remove_dir_all(&staged);
    }
    result?;
    println!("created workspace/jobs/{job}/ (manifest.json, Makefile); edit them, then run `maand build`");
    Ok(0)
}

fn stage(dir: &Path, job: &str, selectors: &[String]) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let manifest = serde_json::json!({
        "version": "1.0.0",
        "selectors": selectors,
        "max_concurrent_upgrades": 1,
        "max_concurrent_starts": 0,
        "min_allocations_count": 0,
        "restart_policy": "always",
    });
    let files = [
        (
            "manifest.json",
            format!("{}\n", serde_json::to_string_pretty(&manifest)?),
        ),
        ("Makefile", makefile(job)),
    ];
    for (name, content) in files {
        let path = dir.join(name);
        fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The scaffold Makefile. `job` is a validated job name, so it is safe in file names and in
/// the double-quoted messages.
fn makefile(job: &str) -> String {
    MAKEFILE.replace("{job}", job)
}

const MAKEFILE: &str = r#"# Lifecycle of the {job} job. maand runs these targets on each worker, from the job's
# directory (/opt/worker/<bucket_id>/jobs/{job}/).
#
# SERVICE is the command that runs your program in the foreground (write $$ for a literal $).
# `start` runs it in the background in its own process group, keeps its pid in data/ and
# appends its output to logs/; `stop` ends that whole process group.

SHELL := /bin/bash
SERVICE ?= while true; do date -u; sleep 30; done
PID_FILE := data/{job}.pid
LOG_FILE := logs/{job}.log

# True when the recorded process is alive (a zombie does not count); sets $pid.
ALIVE = pid=$$(cat $(PID_FILE) 2>/dev/null) && [ -n "$$pid" ] && kill -0 "$$pid" 2>/dev/null && ! grep -qs '^State:.*Z' /proc/$$pid/status

.PHONY: start stop restart reload status

start:
	@mkdir -p data logs
	@if $(ALIVE); then \
		echo "{job}: already running (pid $$pid)"; \
	else \
		set -m; \
		nohup bash -c '$(SERVICE)' >>$(LOG_FILE) 2>&1 </dev/null & \
		echo $$! >$(PID_FILE); \
		echo "{job}: started (pid $$!)"; \
	fi

stop:
	@if $(ALIVE); then \
		kill -TERM -- -$$pid 2>/dev/null || kill -TERM $$pid; \
		for _ in $$(seq 50); do $(ALIVE) || break; sleep 0.2; done; \
		if $(ALIVE); then kill -KILL -- -$$pid 2>/dev/null || kill -KILL $$pid; fi; \
		echo "{job}: stopped"; \
	else \
		echo "{job}: not running"; \
	fi
	@rm -f $(PID_FILE)

restart:
	@$(MAKE) --no-print-directory stop
	@$(MAKE) --no-print-directory start

# Apply changed files without a full restart. The placeholder cannot re-read anything, so it
# restarts; replace this with a signal or command your program understands.
reload:
	@$(MAKE) --no-print-directory restart

status:
	@if $(ALIVE); then \
		echo "{job}: running (pid $$pid)"; \
	else \
		echo "{job}: not running"; \
		exit 3; \
	fi
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket() -> (tempfile::TempDir, Bucket) {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["data", "tmp", "workspace/jobs"] {
            fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        fs::write(dir.path().join("data/maand.db"), b"").unwrap();
        fs::write(dir.path().join("workspace/workers.json"), "[]\n").unwrap();
        let bucket = Bucket::at(dir.path());
        (dir, bucket)
    }

    fn args(job: &str, selectors: &[&str]) -> CreateArgs {
        CreateArgs {
            job: job.into(),
            selectors: selectors.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn the_scaffold_is_a_valid_workspace_job() {
        let (_dir, bucket) = bucket();
        create(&bucket, &args("web-api", &["worker", "edge"])).unwrap();
        let ws = workspace::load(&bucket.workspace_dir(), "").unwrap();
        let job = &ws.jobs["web-api"];
        let selectors: Vec<&str> = job.manifest.selectors.iter().map(String::as_str).collect();
        assert_eq!(selectors, ["edge", "worker"]);
        assert!(job.file("Makefile").is_some());
        let leftovers: Vec<_> = fs::read_dir(bucket.tmp_dir()).unwrap().collect();
        assert!(leftovers.is_empty(), "staging directory left behind");
    }

    #[test]
    fn selectors_default_to_the_job_name() {
        let (_dir, bucket) = bucket();
        create(&bucket, &args("cache", &[])).unwrap();
        let ws = workspace::load(&bucket.workspace_dir(), "").unwrap();
        let selectors: Vec<&str> = ws.jobs["cache"]
            .manifest
            .selectors
            .iter()
            .map(String::as_str)
            .collect();
        assert_eq!(selectors, ["cache"]);
    }

    #[test]
    fn an_existing_job_directory_is_never_touched() {
        let (_dir, bucket) = bucket();
        let existing = bucket.workspace_dir().join("jobs/api");
        fs::create_dir_all(&existing).unwrap();
        fs::write(existing.join("manifest.json"), "{}").unwrap();
        let err = create(&bucket, &args("api", &[])).unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
        assert_eq!(
            fs::read_to_string(existing.join("manifest.json")).unwrap(),
            "{}"
        );
    }

    #[test]
    fn invalid_job_names_and_selectors_are_refused_before_writing() {
        let (_dir, bucket) = bucket();
        for name in ["Bad", "data", "a/b", "../x", ""] {
            assert!(create(&bucket, &args(name, &[])).is_err(), "{name:?}");
        }
        let err = create(&bucket, &args("api", &["Edge Nodes"])).unwrap_err();
        assert!(format!("{err:#}").contains("--selectors"), "{err:#}");
        assert_eq!(
            fs::read_dir(bucket.workspace_dir().join("jobs"))
                .unwrap()
                .count(),
            0
        );
    }
}
