//! The files maand keeps on every worker besides the job trees: `worker.json` (which bucket,
//! worker and deploy the tree belongs to), `jobs.json` (the jobs placed there) and
//! `bin/runner.py` (with its module `bin/maand_runner.py`), the program `maand job` and deploy
//! call to run Makefile targets. This
//! module writes them into a local staging directory and builds the runner's command line;
//! copying them to the worker is the caller's transfer.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::command::RemoteCommand;
use super::error::RemoteError;

/// Where buckets live on a worker: `/opt/worker/<bucket_id>/`.
pub const WORKER_ROOT: &str = "/opt/worker";
/// The runner's entry script, shipped as `bin/runner.py`.
pub const RUNNER_SOURCE: &str = include_str!("runner.py");
/// The runner's body, shipped as `bin/maand_runner.py` and imported by the entry script (an
/// imported module is compiled once per worker, not on every start).
pub const RUNNER_MODULE_SOURCE: &str = include_str!("maand_runner.py");
/// The runner's files under `bin/`, with their contents.
pub const RUNNER_FILES: [(&str, &str); 2] = [
    ("runner.py", RUNNER_SOURCE),
    ("maand_runner.py", RUNNER_MODULE_SOURCE),
];

/// `worker.json`: identifies the deployed tree, so `maand job` can refuse a stale worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerIdentity {
    pub bucket_id: String,
    pub worker_id: String,
    pub update_seq: u64,
    pub labels: Vec<String>,
}

/// One entry of `jobs.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobEntry {
    pub name: String,
    /// Disabled jobs keep their files but are not started, restarted or reloaded.
    pub disabled: bool,
    /// Version running on the worker, handed to make as `CURRENT_VERSION`.
    pub current_version: String,
    /// Version being rolled out, handed to make as `NEW_VERSION`.
    pub new_version: String,
}

/// Everything [`stage_worker_files`] writes for one worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerFiles {
    pub identity: WorkerIdentity,
    pub jobs: Vec<JobEntry>,
}

/// Staging failed; the message names the file.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} {name:?} cannot be used on a worker: names must start with a letter or digit and hold only letters, digits, '.', '_' and '-'")]
    UnsafeName { what: &'static str, name: String },
}

/// The bucket's directory on a worker.
pub fn bucket_dir_on_worker(bucket_id: &str) -> String {
    format!("{WORKER_ROOT}/{bucket_id}")
}

/// Writes `worker.json`, `jobs.json` and the runner's files under `bin/` into `dir`, the local
/// image of `/opt/worker/<bucket_id>/`. Directories get mode 0755 (rsync copies the mode of
/// `dir` onto the worker's directory) and the runner's files 0755.
pub fn stage_worker_files(dir: &Path, files: &WorkerFiles) -> Result<(), StageError> {
    check_name("bucket id", &files.identity.bucket_id)?;
    for job in &files.jobs {
        check_name("job name", &job.name)?;
    }
    let bin = dir.join("bin");
    create_dir(dir)?;
    create_dir(&bin)?;
    write_file(&dir.join("worker.json"), &to_json(&files.identity), 0o644)?;
    write_file(&dir.join("jobs.json"), &to_json(&files.jobs), 0o644)?;
    for (name, source) in RUNNER_FILES {
        write_file(&bin.join(name), source, 0o755)?;
    }
    Ok(())
}

/// The command that runs Makefile `target` for `jobs` (every job of the worker when empty)
/// through the runner of bucket `bucket_id`, as root when the bucket uses sudo.
pub fn runner_command(
    bucket_id: &str,
    target: &str,
    jobs: &[String],
    timeout: Duration,
) -> Result<RemoteCommand, RemoteError> {
    let unsafe_name = |what: &str, name: &str| RemoteError::InvalidArgument {
        argument: name.to_string(),
        reason: format!("not a valid {what}"),
    };
    if !is_safe_name(bucket_id) {
        return Err(unsafe_name("bucket id", bucket_id));
    }
    if !is_safe_name(target) {
        return Err(unsafe_name("Makefile target", target));
    }
    if let Some(job) = jobs.iter().find(|job| !is_safe_name(job)) {
        return Err(unsafe_name("job name", job));
    }
    let runner = format!("{}/bin/runner.py", bucket_dir_on_worker(bucket_id));
    let argv = ["python3".to_string(), runner, target.to_string()]
        .into_iter()
        .chain(jobs.iter().cloned());
    Ok(RemoteCommand::new(argv, timeout)?.privileged())
}

/// The names the runner accepts too: no path separators, no leading dot or dash, no `..`.
fn is_safe_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !name.contains("..")
}

fn check_name(what: &'static str, name: &str) -> Result<(), StageError> {
    if is_safe_name(name) {
        Ok(())
    } else {
        Err(StageError::UnsafeName {
            what,
            name: name.to_string(),
        })
    }
}

fn to_json(value: &impl Serialize) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("worker files serialise");
    text.push('\n');
    text
}

fn create_dir(path: &Path) -> Result<(), StageError> {
    let failure = |source| StageError::Write {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(path).map_err(failure)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).map_err(failure)
}

fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), StageError> {
    let failure = |source| StageError::Write {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(path, contents).map_err(failure)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(failure)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> WorkerFiles {
        WorkerFiles {
            identity: WorkerIdentity {
                bucket_id: "b1".into(),
                worker_id: "w1".into(),
                update_seq: 7,
                labels: vec!["worker".into(), "web".into()],
            },
            jobs: vec![JobEntry {
                name: "api".into(),
                disabled: false,
                current_version: "1.0.0".into(),
                new_version: "1.1.0".into(),
            }],
        }
    }

    #[test]
    fn staging_writes_the_three_files_readable_by_everyone() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("stage");
        stage_worker_files(&root, &files()).unwrap();
        let identity: WorkerIdentity =
            serde_json::from_str(&std::fs::read_to_string(root.join("worker.json")).unwrap())
                .unwrap();
        assert_eq!(identity, files().identity);
        let jobs: Vec<JobEntry> =
            serde_json::from_str(&std::fs::read_to_string(root.join("jobs.json")).unwrap())
                .unwrap();
        assert_eq!(jobs, files().jobs);
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        for (name, source) in RUNNER_FILES {
            let path = root.join("bin").join(name);
            assert_eq!(std::fs::read_to_string(&path).unwrap(), source);
            assert_eq!(mode(&path), 0o755);
        }
        assert_eq!(mode(&root), 0o755);
    }

    #[test]
    fn unsafe_job_names_are_refused() {
        let mut files = files();
        files.jobs[0].name = "../etc".into();
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            stage_worker_files(dir.path(), &files),
            Err(StageError::UnsafeName { .. })
        ));
        assert!(runner_command("b1", "start; reboot", &[], Duration::from_secs(5)).is_err());
    }

    #[test]
    fn the_runner_command_names_its_jobs() {
        let command =
            runner_command("b1", "start", &["api".into()], Duration::from_secs(5)).unwrap();
        assert_eq!(
            command.argv(),
            ["python3", "/opt/worker/b1/bin/runner.py", "start", "api"]
        );
    }
}
