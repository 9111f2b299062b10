//! How maand reaches its workers: the SSH settings every session, command and transfer uses.
//! Filled by the caller from `maand.conf`; this module never reads files itself.

use std::path::PathBuf;
use std::time::Duration;

/// SSH settings shared by every connection of one maand command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteConfig {
    /// Login user on every worker (`ssh_user`).
    pub user: String,
    /// SSH port on every worker (`ssh_port`).
    pub port: u16,
    /// Private key offered to workers (`secrets/<ssh_key>`); no other identity is tried.
    pub key_path: PathBuf,
    /// The bucket's own known_hosts (`secrets/known_hosts`). Keys of new workers are added on
    /// first contact; a key that differs from the recorded one stops the connection.
    pub known_hosts_path: PathBuf,
    /// Run privileged commands and the receiving rsync through `sudo -n` (`use_sudo`).
    pub use_sudo: bool,
    /// Longest wait for a worker to accept a connection and authenticate.
    pub connect_timeout: Duration,
    /// How long masters live and where their sockets are.
    pub masters: MasterPolicy,
}

/// The lifetime of the SSH masters a command opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterPolicy {
    /// Each command opens its own masters in a private temporary directory and closes them
    /// when it ends (`ssh_master_idle = 0`).
    PerCommand,
    /// Masters are shared by the bucket's commands: one per worker in the bucket's control
    /// directory (see [`super::shared_control_dir`]), reused while alive and left open for
    /// `idle` after the last command that used them.
    Shared {
        /// The preferred control directory, `<bucket>/data/ssh`.
        dir: PathBuf,
        idle: Duration,
    },
}
