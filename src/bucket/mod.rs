//! The bucket directory: where its files live, `maand.conf`, the mutation lock, and opening
//! `data/maand.db` with its schema checked.
//!
//! This module knows paths and files. It never decides catalog changes (that is the job of the
//! command modules) and never prints.

mod conf;
pub mod init;
mod lock;
mod schema;

pub use conf::{LogFormat, MaandConf};
pub use lock::{BucketLock, LockHolder};
pub use schema::{
    migrate, open, open_checked, read_only_uri, schema_state, SchemaState, LATEST_SCHEMA,
};

use std::path::{Path, PathBuf};

/// Errors about the bucket itself (not about its contents).
#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    #[error("{dir} is not a maand bucket (no data/maand.db): run `maand init` there, or pass --bucket DIR")]
    NotABucket { dir: PathBuf },
    #[error("{dir} holds a bucket of the Go maand (data/maand.db has its schema): run `maand init` there to import it in place (see docs/migrating.md)")]
    GoBucket { dir: PathBuf },
    #[error("database schema upgrade required: {db} is at schema {found}, this maand needs {latest}; run `maand init` to upgrade")]
    SchemaBehind {
        db: PathBuf,
        found: u32,
        latest: u32,
    },
    #[error("{db} was written by a newer maand (schema {found}, this binary knows up to {latest}); upgrade maand")]
    SchemaAhead {
        db: PathBuf,
        found: u32,
        latest: u32,
    },
    #[error("another maand command holds the bucket lock: `{}` (pid {}, started {}); wait for it to finish, or if that process is gone, run the command again", .holder.command, .holder.pid, .holder.started)]
    Locked { holder: LockHolder },
    #[error("{path}: {message}")]
    Conf { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the SSH key {} does not exist; copy the private key authorized for {user} on the workers there (mode 600), or point ssh_key in maand.conf at it", path.display())]
    MissingSshKey { path: PathBuf, user: String },
    #[error("the SSH key {} has mode {mode:o}: ssh ignores a private key that others may read; run `chmod 600 {}`", path.display(), path.display())]
    LooseSshKey { path: PathBuf, mode: u32 },
    #[error("{path}: journal: {source}")]
    Journal {
        path: PathBuf,
        #[source]
        source: journal::JournalError,
    },
    #[error("{path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
}

impl BucketError {
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> BucketError {
        let path = path.into();
        move |source| BucketError::Io { path, source }
    }
}

/// A bucket directory. Constructing one does not check that it exists.
#[derive(Debug, Clone)]
pub struct Bucket {
    root: PathBuf,
}

impl Bucket {
    pub fn at(root: impl Into<PathBuf>) -> Bucket {
        Bucket { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn conf_path(&self) -> PathBuf {
        self.root.join("maand.conf")
    }
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }
    pub fn db_path(&self) -> PathBuf {
        self.data_dir().join("maand.db")
    }
    pub fn lock_path(&self) -> PathBuf {
        self.data_dir().join("maand.lock")
    }
    pub fn workspace_dir(&self) -> PathBuf {
        self.root.join("workspace")
    }
    pub fn secrets_dir(&self) -> PathBuf {
        self.root.join("secrets")
    }
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn ca_cert_path(&self) -> PathBuf {
        self.secrets_dir().join("ca.crt")
    }
    pub fn ca_key_path(&self) -> PathBuf {
        self.secrets_dir().join("ca.key")
    }
    pub fn kv_key_path(&self) -> PathBuf {
        self.secrets_dir().join("kv.key")
    }
    pub fn known_hosts_path(&self) -> PathBuf {
        self.secrets_dir().join("known_hosts")
    }

    /// Fails with an actionable message when the directory holds no bucket.
    pub fn require_exists(&self) -> Result<(), BucketError> {
        if self.db_path().is_file() {
            Ok(())
        } else {
            Err(BucketError::NotABucket {
                dir: self.root.clone(),
            })
        }
    }

    /// SSH settings for the bucket's workers from `conf`: key `secrets/<ssh_key>` (which must
    /// exist), the bucket's own known_hosts, user, port and sudo.
    pub fn remote_config(
        &self,
        conf: &MaandConf,
        connect_timeout: std::time::Duration,
    ) -> Result<crate::remote::RemoteConfig, BucketError> {
        let key_path = self.secrets_dir().join(&conf.ssh_key);
        if !key_path.is_file() {
            return Err(BucketError::MissingSshKey {
                path: key_path,
                user: conf.ssh_user.clone(),
            });
        }
        check_key_mode(&key_path)?;
        Ok(crate::remote::RemoteConfig {
            user: conf.ssh_user.clone(),
            port: conf.ssh_port,
            key_path,
            known_hosts_path: self.known_hosts_path(),
            use_sudo: conf.use_sudo,
            connect_timeout,
            masters: self.ssh_masters(conf),
        })
    }

    /// A fleet for the bucket's workers (settings from `maand.conf`, see [`Self::remote_config`])
    /// with at most `concurrency` of them worked on at once.
    pub fn fleet(
        &self,
        connect_timeout: std::time::Duration,
        concurrency: usize,
    ) -> anyhow::Result<crate::remote::Fleet> {
        let conf = self.conf()?;
        let config = self.remote_config(&conf, connect_timeout)?;
        Ok(crate::remote::Fleet::new(config, concurrency)?)
    }

    /// Where this bucket's SSH masters live and for how long (`ssh_master_idle`).
    pub fn ssh_masters(&self, conf: &MaandConf) -> crate::remote::MasterPolicy {
        match conf.ssh_master_idle {
            0 => crate::remote::MasterPolicy::PerCommand,
            secs => crate::remote::MasterPolicy::Shared {
                dir: self.ssh_control_dir(),
                idle: std::time::Duration::from_secs(secs.into()),
            },
        }
    }

    /// The preferred directory of the bucket's shared SSH control sockets.
    pub fn ssh_control_dir(&self) -> PathBuf {
        self.data_dir().join("ssh")
    }

    /// Reads `maand.conf` (defaults for missing keys; unknown keys are an error).
    pub fn conf(&self) -> Result<MaandConf, BucketError> {
        MaandConf::read(&self.conf_path())
    }
}

/// Refuses a private key file that ssh would ignore: one owned by this user that its group or
/// others may read or write (ssh then says only that the key was not accepted).
fn check_key_mode(path: &Path) -> Result<(), BucketError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(BucketError::io(path))?;
    // SAFETY: geteuid(2) has no preconditions and touches no memory.
    let euid = unsafe { libc::geteuid() };
    let mode = meta.mode() & 0o7777;
    if meta.uid() == euid && mode & 0o077 != 0 {
        return Err(BucketError::LooseSshKey {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// Writes `contents` to `path` through a temporary file and a rename, so a crash never leaves a
/// half-written file. `mode` applies to the new file (Unix permissions).
pub fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<(), BucketError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(BucketError::io(&tmp))?;
    file.write_all(contents).map_err(BucketError::io(&tmp))?;
    file.sync_all().map_err(BucketError::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(BucketError::io(path))
}
