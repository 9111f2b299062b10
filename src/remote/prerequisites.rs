//! Checks that the tools maand relies on exist, on this host and on the workers, before any
//! work starts. Workers are probed with one round trip each. Nothing is installed or changed.

use std::ffi::OsStr;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::command::RemoteCommand;
use super::error::RemoteError;
use super::fleet::Fleet;
use super::record::Observer;

/// Programs maand runs on the host it is started on.
pub const HOST_TOOLS: [&str; 4] = ["bash", "ssh", "rsync", "python3"];
/// Programs the runner and deploy need on every worker (`sudo` too when `use_sudo` is set).
pub const WORKER_TOOLS: [&str; 5] = ["python3", "make", "rsync", "bash", "timeout"];

const PROBE_TIMEOUT: Duration = Duration::from_secs(30);
/// What the probe prints when sudo exists but cannot run rsync without a password.
const SUDO_RSYNC_FAILS: &str = "sudo rsync";

/// Tools that are missing, or workers that could not be asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrerequisiteError {
    #[error("missing on this host: {}; install them and make sure they are on PATH", missing.join(", "))]
    HostToolsMissing { missing: Vec<String> },
    #[error("workers are not ready:\n{}", problems.iter().map(|problem| format!("  {problem}")).collect::<Vec<_>>().join("\n"))]
    WorkersNotReady { problems: Vec<WorkerProblem> },
}

/// Why one worker is not ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerProblem {
    /// The listed tools are not on the worker's PATH.
    Missing { worker: String, tools: Vec<String> },
    /// The worker could not be reached or the probe could not run.
    Unreachable(RemoteError),
}

impl fmt::Display for WorkerProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkerProblem::Missing { worker, tools } => {
                let hint = if tools.iter().any(|tool| tool == SUDO_RSYNC_FAILS) {
                    " (`sudo -n rsync --version` must succeed: give the ssh user passwordless sudo, or set use_sudo = false)"
                } else {
                    ""
                };
                write!(f, "{worker}: missing {}{hint}", tools.join(", "))
            }
            WorkerProblem::Unreachable(error) => write!(f, "{error}"),
        }
    }
}

/// Finds each of [`HOST_TOOLS`] on `PATH`.
pub fn check_host_tools() -> Result<(), PrerequisiteError> {
    let missing = missing_on_path(&HOST_TOOLS, &std::env::var_os("PATH").unwrap_or_default());
    if missing.is_empty() {
        Ok(())
    } else {
        Err(PrerequisiteError::HostToolsMissing { missing })
    }
}

/// The `tools` that no directory of the `PATH`-style list `path` holds as an executable file.
fn missing_on_path(tools: &[&str], path: &OsStr) -> Vec<String> {
    tools
        .iter()
        .filter(|tool| !std::env::split_paths(path).any(|dir| is_executable(&dir.join(tool))))
        .map(|tool| tool.to_string())
        .collect()
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Asks every worker, in one round trip each, which of [`WORKER_TOOLS`] it lacks (and whether
/// `sudo -n rsync` works when the fleet uses sudo).
pub async fn check_worker_tools(
    fleet: &Fleet,
    workers: &[String],
    observer: Arc<dyn Observer>,
) -> Result<(), PrerequisiteError> {
    let probe = Arc::new(RemoteCommand::probe(
        &probe_script(fleet.config().use_sudo),
        PROBE_TIMEOUT,
    ));
    let results = fleet
        .for_each(workers, move |session| {
            let probe = probe.clone();
            let observer = observer.clone();
            async move { session.capture(&probe, observer.as_ref()).await }
        })
        .await;
    let problems: Vec<WorkerProblem> = results
        .into_iter()
        .filter_map(|result| match result.result {
            Ok(output) if output.stdout.is_empty() => None,
            Ok(output) => Some(WorkerProblem::Missing {
                worker: result.worker,
                tools: output.stdout,
            }),
            Err(error) => Some(WorkerProblem::Unreachable(error)),
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(PrerequisiteError::WorkersNotReady { problems })
    }
}

/// A POSIX sh script printing one missing tool per line, and nothing when all are there.
fn probe_script(use_sudo: bool) -> String {
    let mut script = format!(
        "for tool in {}; do command -v \"$tool\" >/dev/null 2>&1 || echo \"$tool\"; done",
        WORKER_TOOLS.join(" ")
    );
    if use_sudo {
        script.push_str(&format!(
            "; if command -v sudo >/dev/null 2>&1; then sudo -n rsync --version >/dev/null 2>&1 || echo '{SUDO_RSYNC_FAILS}'; else echo sudo; fi"
        ));
    }
    script.push_str("; exit 0");
    script
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn tools_missing_from_every_path_directory_are_listed_in_order() {
        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        let install = |dir: &Path, name: &str, mode: u32| {
            let path = dir.join(name);
            std::fs::write(&path, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        install(first.path(), "bash", 0o755);
        install(second.path(), "ssh", 0o755);
        install(second.path(), "rsync", 0o644); // present but not executable
        let path = std::env::join_paths([first.path(), second.path()]).unwrap();
        assert_eq!(missing_on_path(&HOST_TOOLS, &path), ["rsync", "python3"]);
    }

    #[test]
    fn the_worker_probe_reports_sudo_only_when_the_bucket_uses_it() {
        assert!(!probe_script(false).contains("sudo"));
        assert!(probe_script(true).contains("sudo -n rsync --version"));
    }
}
