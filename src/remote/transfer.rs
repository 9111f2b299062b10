//! Copying a local directory tree to a worker with rsync, through the worker's master socket.
//! The caller decides what to copy (filters) and where; this file only runs the transfer and
//! reports which files moved.

use std::path::PathBuf;
use std::time::Duration;

use tokio::process::Command;

use super::error::RemoteError;
use super::record::Observer;
use super::session::{check_local_path, last_lines, Session};

/// One rsync filter rule, applied in the order given (the first match wins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterRule {
    /// Copy paths matching the pattern (rsync `+ PATTERN`).
    Include(String),
    /// Leave paths matching the pattern alone on both sides (rsync `- PATTERN`); with
    /// [`Transfer::delete`], excluded files on the worker are not deleted either.
    Exclude(String),
}

/// Makes the remote directory `destination` hold the contents of the local directory
/// `source`. Modes, symlinks and (unless comparing checksums) times are kept; note that the
/// mode of `source` itself is copied onto `destination` (a 0700 source locks other users out of
/// the target).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub source: PathBuf,
    /// Absolute path on the worker; created with its parents when missing.
    pub destination: String,
    pub filters: Vec<FilterRule>,
    /// Delete files on the worker that the source does not have (excluded ones are kept).
    pub delete: bool,
    /// Compare file contents (rsync `--checksum`) instead of size and modification time.
    /// Needed when a file can change within the same second without changing size, as staged
    /// trees do; costs one read of same-size files on both sides. Times are then not copied
    /// (`--no-times`): contents alone decide, a file that changed gets the time of its transfer
    /// and one that did not keeps its own, so timestamps on the worker (which `make` reads) still
    /// say what changed, and an unchanged file is not touched at all.
    pub checksum: bool,
    pub timeout: Duration,
}

/// What a transfer changed on the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferSummary {
    /// Regular files whose content was sent.
    pub files_transferred: usize,
    /// Files and directories removed on the worker.
    pub deleted: usize,
    /// rsync's itemized list of every change (`<f+++++++++ path`, `*deleting path`, ...).
    pub changes: Vec<String>,
    pub duration: Duration,
}

impl Session {
    /// Runs the transfer through this session's master. The receiving rsync runs through
    /// `sudo -n` when the bucket sets `use_sudo`.
    pub async fn sync(
        &self,
        transfer: &Transfer,
        observer: &dyn Observer,
    ) -> Result<TransferSummary, RemoteError> {
        self.rsync(transfer, observer, false).await
    }

    /// What [`Session::sync`] would change, without changing anything (rsync `--dry-run`):
    /// the summary lists the changes a real transfer would make.
    pub async fn preview(
        &self,
        transfer: &Transfer,
        observer: &dyn Observer,
    ) -> Result<TransferSummary, RemoteError> {
        self.rsync(transfer, observer, true).await
    }

    async fn rsync(
        &self,
        transfer: &Transfer,
        observer: &dyn Observer,
        dry_run: bool,
    ) -> Result<TransferSummary, RemoteError> {
        check_local_path(&transfer.source, "transfer source")?;
        check_remote_path(&transfer.destination)?;
        let mut arguments: Vec<String> =
            vec!["-a".into(), "--mkpath".into(), "--itemize-changes".into()];
        if dry_run {
            arguments.push("--dry-run".into());
        }
        if transfer.checksum {
            arguments.push("--checksum".into());
            arguments.push("--no-times".into());
        }
        if transfer.delete {
            arguments.push("--delete".into());
        }
        for rule in &transfer.filters {
            let (sign, pattern) = match rule {
                FilterRule::Include(pattern) => ('+', pattern),
                FilterRule::Exclude(pattern) => ('-', pattern),
            };
            if pattern.is_empty() || pattern.contains(['\n', '\r', '\0']) {
                return Err(RemoteError::InvalidArgument {
                    argument: pattern.clone(),
                    reason: "an rsync filter pattern must be one non-empty line".into(),
                });
            }
            arguments.push(format!("--filter={sign} {pattern}"));
        }
        if self.config().use_sudo {
            arguments.push("--rsync-path=sudo -n rsync".into());
        }
        let host = if self.worker().contains(':') {
            format!("[{}]", self.worker())
        } else {
            self.worker().to_string()
        };
        arguments.push(format!(
            "{}/",
            transfer.source.to_string_lossy().trim_end_matches('/')
        ));
        arguments.push(format!(
            "{}@{host}:{}/",
            self.config().user,
            transfer.destination.trim_end_matches('/')
        ));
        let description = std::iter::once("rsync".to_string())
            .chain(arguments.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");

        let mut rsync = Command::new("rsync");
        rsync.arg("-e").arg(self.rsync_shell()).args(&arguments);
        let captured = self
            .supervise(rsync, &description, transfer.timeout, observer, true)
            .await?;
        if !captured.outcome.success() {
            return Err(RemoteError::TransferFailed {
                worker: self.worker().to_string(),
                source_dir: transfer.source.clone(),
                destination: transfer.destination.clone(),
                code: captured.outcome.exit_code,
                detail: last_lines(&captured.stderr, "rsync reported no reason"),
            });
        }
        Ok(TransferSummary {
            files_transferred: captured
                .stdout
                .iter()
                .filter(|line| line.starts_with("<f"))
                .count(),
            deleted: captured
                .stdout
                .iter()
                .filter(|line| line.starts_with("*deleting"))
                .count(),
            changes: captured.stdout,
            duration: captured.outcome.duration,
        })
    }

    /// rsync's `-e` value: ssh with this session's options, through the master. rsync splits
    /// it at spaces and honours quotes, so words with spaces or double quotes are single-quoted
    /// (paths were checked to contain no single quote).
    fn rsync_shell(&self) -> String {
        std::iter::once("ssh".to_string())
            .chain(self.ssh_options())
            .chain(["-o".to_string(), "ControlMaster=no".to_string()])
            .map(|word| {
                if word.contains([' ', '"']) {
                    format!("'{word}'")
                } else {
                    word
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Remote paths reach the worker's shell through rsync; only plain absolute paths are allowed.
fn check_remote_path(path: &str) -> Result<(), RemoteError> {
    let plain = path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-'));
    if path.starts_with('/') && plain && !path.split('/').any(|part| part == "..") {
        Ok(())
    } else {
        Err(RemoteError::InvalidArgument {
            argument: path.to_string(),
            reason: "a transfer destination must be an absolute path of letters, digits, '.', '_', '-' and '/', without '..'".into(),
        })
    }
}
