//! Errors of remote work. Each names the worker and says what the operator can do; all are
//! `Clone` because a worker that failed to connect keeps failing the same way for the rest of
//! the maand command without being dialled again.

use std::path::PathBuf;
use std::time::Duration;

/// A remote operation on one worker that did not happen, or did not finish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    #[error(
        "worker {worker}: its SSH host key differs from the one recorded in {}{}. If the worker \
         was reinstalled or re-keyed, verify the new key out of band, then delete the old entry \
         (`ssh-keygen -R {worker} -f {}`) and retry; otherwise treat it as a possible interception \
         and do not connect",
        known_hosts.display(),
        line.map(|line| format!(" (line {line})")).unwrap_or_default(),
        known_hosts.display()
    )]
    HostKeyChanged {
        worker: String,
        known_hosts: PathBuf,
        line: Option<u32>,
    },

    #[error("worker {worker}: connection refused on port {port}; check that sshd runs there and that ssh_port in maand.conf is right")]
    Refused { worker: String, port: u16 },

    #[error("worker {worker}: no SSH connection within {after:?}; check that the host is up and reachable on port {port}")]
    ConnectTimeout {
        worker: String,
        port: u16,
        after: Duration,
    },

    #[error("worker {worker}: the key {} was not accepted for user {user}; add its public key to ~{user}/.ssh/authorized_keys on the worker, or fix ssh_user/ssh_key in maand.conf", key.display())]
    AuthenticationRejected {
        worker: String,
        user: String,
        key: PathBuf,
    },

    #[error("worker {worker}: ssh could not connect: {detail}")]
    ConnectFailed { worker: String, detail: String },

    #[error("worker {worker}: `{command}` did not finish within {after:?} and was stopped")]
    CommandTimeout {
        worker: String,
        command: String,
        after: Duration,
    },

    #[error("worker {worker}: `{command}` printed more than {limit} bytes, more than maand reads from a worker for it; look at what the worker serves there (a file maand wrote is far smaller)")]
    OutputTooLarge {
        worker: String,
        command: String,
        limit: usize,
    },

    #[error("worker {worker}: the connection was lost while running `{command}`: {detail}")]
    ConnectionLost {
        worker: String,
        command: String,
        detail: String,
    },

    #[error("worker {worker}: copying {} to {destination} failed (rsync exit code {code}): {detail}", source_dir.display())]
    TransferFailed {
        worker: String,
        source_dir: PathBuf,
        destination: String,
        code: i32,
        detail: String,
    },

    #[error("worker {worker}: {reason}")]
    InvalidWorker { worker: String, reason: String },

    #[error("invalid remote argument {argument:?}: {reason}")]
    InvalidArgument { argument: String, reason: String },

    #[error("the SSH control path {} {reason}; maand never uses such a socket. Remove it (`maand disconnect` cannot, as it refuses it too) and retry: maand creates a private one", path.display())]
    UnsafeControlPath { path: PathBuf, reason: String },

    #[error("could not run {program} on this host: {detail}")]
    LocalProcess { program: String, detail: String },
}
