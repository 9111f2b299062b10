//! `maand job create`: scaffolds a new job directory in a workspace (a manifest.json with
//! the documented defaults and a Makefile with every lifecycle target). The only part of
//! `workspace` that writes: it never touches the catalog, records nothing and contacts no
//! worker, and never overwrites an existing directory.

use std::fs;
use std::path::Path;

use anyhow::{bail, Context};

/// Writes `jobs/<job>/` (a manifest.json and a Makefile) into the workspace at `workspace_dir`,
/// staged in `staging_dir` and moved into place whole, so a failure never leaves a half-written
/// job that the next build would read. `selectors` default to the job name. Refuses an invalid
/// job name or selector and an existing directory before writing anything.
pub fn create_job(
    workspace_dir: &Path,
    staging_dir: &Path,
    job: &str,
    selectors: &[String],
) -> anyhow::Result<()> {
    super::validate_job_name(job)?;
    let selectors = if selectors.is_empty() {
        vec![job.to_string()]
    } else {
        selectors.to_vec()
    };
    for selector in &selectors {
        super::validate_label(selector).context("--selectors")?;
    }
    let jobs_dir = workspace_dir.join("jobs");
    let target = jobs_dir.join(job);
    if target.symlink_metadata().is_ok() {
        bail!(
            "{} already exists; choose another job name, or edit the existing job",
            target.display()
        );
    }
    fs::create_dir_all(&jobs_dir).with_context(|| format!("creating {}", jobs_dir.display()))?;
    let staged = staging_dir.join(format!("job-create-{job}-{}", std::process::id()));
    let result = stage(&staged, job, &selectors).and_then(|()| {
        fs::rename(&staged, &target)
            .with_context(|| format!("moving {} to {}", staged.display(), target.display()))
    });
    if result.is_err() {
        let _ = fs::remove_dir_all(&staged);
    }
    result
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
    use std::path::PathBuf;

    /// A bucket-like directory: `workspace/` and `tmp/` (the staging directory).
    struct Dirs {
        _root: tempfile::TempDir,
        workspace: PathBuf,
        tmp: PathBuf,
    }

    fn dirs() -> Dirs {
        let root = tempfile::tempdir().unwrap();
        let (workspace, tmp) = (root.path().join("workspace"), root.path().join("tmp"));
        fs::create_dir_all(workspace.join("jobs")).unwrap();
        fs::create_dir_all(&tmp).unwrap();
        fs::write(workspace.join("workers.json"), "[]\n").unwrap();
        Dirs {
            _root: root,
            workspace,
            tmp,
        }
    }

    fn create(dirs: &Dirs, job: &str, selectors: &[&str]) -> anyhow::Result<()> {
        let selectors: Vec<String> = selectors.iter().map(|s| s.to_string()).collect();
        create_job(&dirs.workspace, &dirs.tmp, job, &selectors)
    }

    #[test]
    fn the_scaffold_is_a_valid_workspace_job() {
        let dirs = dirs();
        create(&dirs, "web-api", &["worker", "edge"]).unwrap();
        let ws = super::super::load(&dirs.workspace, "").unwrap();
        let job = &ws.jobs["web-api"];
        let selectors: Vec<&str> = job.manifest.selectors.iter().map(String::as_str).collect();
        assert_eq!(selectors, ["edge", "worker"]);
        assert!(job.file("Makefile").is_some());
        let leftovers: Vec<_> = fs::read_dir(&dirs.tmp).unwrap().collect();
        assert!(leftovers.is_empty(), "staging directory left behind");
    }

    #[test]
    fn selectors_default_to_the_job_name() {
        let dirs = dirs();
        create(&dirs, "cache", &[]).unwrap();
        let ws = super::super::load(&dirs.workspace, "").unwrap();
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
        let dirs = dirs();
        let existing = dirs.workspace.join("jobs/api");
        fs::create_dir_all(&existing).unwrap();
        fs::write(existing.join("manifest.json"), "{}").unwrap();
        let err = create(&dirs, "api", &[]).unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
        assert_eq!(
            fs::read_to_string(existing.join("manifest.json")).unwrap(),
            "{}"
        );
    }

    #[test]
    fn invalid_job_names_and_selectors_are_refused_before_writing() {
        let dirs = dirs();
        for name in ["Bad", "data", "a/b", "../x", ""] {
            assert!(create(&dirs, name, &[]).is_err(), "{name:?}");
        }
        let err = create(&dirs, "api", &["Edge Nodes"]).unwrap_err();
        assert!(format!("{err:#}").contains("--selectors"), "{err:#}");
        assert_eq!(
            fs::read_dir(dirs.workspace.join("jobs")).unwrap().count(),
            0
        );
    }
}
