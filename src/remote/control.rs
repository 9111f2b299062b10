//! Where SSH masters live between maand commands, and who may use them.
//!
//! With warm sessions (`ssh_master_idle` > 0) every worker has one master per bucket whose
//! control socket sits in a private directory: `<bucket>/data/ssh`, or, when that path is too
//! long for a Unix socket, `<system temp>/maand-ssh-<uid>-<hash of the bucket path>`. The
//! directory must be a real directory owned by the current user with no group or other access,
//! and every socket in it must be a socket owned by the user with no group or other access;
//! anything else is refused, never used.
//!
//! Next to each socket a small file records the *credential fingerprint* the master was opened
//! with (the private key's bytes and the worker's known_hosts lines): a master whose fingerprint
//! differs from the current one (a replaced `secrets/<ssh_key>`, an edited or removed
//! known_hosts entry) is closed and a new one is opened.

use std::fs::{DirBuilder, File};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use sha2::{Digest, Sha256};

use super::config::RemoteConfig;
use super::error::RemoteError;

/// Longest control socket path we use. A Unix socket path holds at most 107 bytes, and ssh
/// first binds a temporary name 17 bytes longer than the configured path before renaming it.
const MAX_SOCKET_PATH: usize = 90;
/// Length of a socket's file name: 16 hex digits and `.s`.
const SOCKET_NAME_LEN: usize = 18;
const SOCKET_SUFFIX: &str = ".s";
const FINGERPRINT_SUFFIX: &str = ".id";
const LOCK_SUFFIX: &str = ".lock";
const LOG_SUFFIX: &str = ".log";

/// The directory holding the masters of the bucket whose preferred directory is `preferred`
/// (`<bucket>/data/ssh`): `preferred` itself when socket paths inside it stay short enough,
/// otherwise a directory of the system temp dir named after the user and a hash of `preferred`.
pub fn shared_control_dir(preferred: &Path) -> PathBuf {
    if preferred.as_os_str().len() + 1 + SOCKET_NAME_LEN <= MAX_SOCKET_PATH {
        return preferred.to_path_buf();
    }
    let digest = Sha256::digest(preferred.as_os_str().as_encoded_bytes());
    let uid = current_uid();
    std::env::temp_dir().join(format!("maand-ssh-{uid}-{}", &hex::encode(digest)[..16]))
}

/// Prefix of a directory holding the masters of one maand command (no warm sessions): it is
/// followed by the command's pid and a random part.
const COMMAND_DIR_PREFIX: &str = "maand-cmd-";
/// How old a one-command directory must be before a later command may sweep it.
pub(crate) const COMMAND_DIR_SWEEP_AGE: std::time::Duration =
    std::time::Duration::from_secs(10 * 60);

/// The name of a one-command control directory of process `pid`.
pub(crate) fn command_dir_name(pid: u32, random: u64) -> String {
    format!("{COMMAND_DIR_PREFIX}{pid}-{random:016x}")
}

/// Removes the one-command control directories under `base` that a killed maand left behind:
/// owned by this user, named for a process that no longer exists, and with no master still
/// answering on a socket in it (a killed command's masters exit by themselves once idle; the
/// directory is swept by a later command after that). A command that ends normally removes its
/// own directory; this only catches `kill -9`. Directories younger than `min_age` are left
/// alone whatever their pid says (a command in another pid namespace sharing this temp
/// directory looks dead from here until its first master answers).
pub(crate) fn sweep_abandoned_command_dirs(base: &Path, min_age: std::time::Duration) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|name| name.strip_prefix(COMMAND_DIR_PREFIX))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<i32>().ok())
        else {
            continue;
        };
        let path = entry.path();
        let owned_old_dir = std::fs::symlink_metadata(&path).is_ok_and(|meta| {
            meta.is_dir()
                && meta.uid() == current_uid()
                && meta
                    .modified()
                    .ok()
                    .and_then(|modified| modified.elapsed().ok())
                    .is_some_and(|age| age >= min_age)
        });
        if !owned_old_dir || process_exists(pid) || has_live_master(&path) {
            continue;
        }
        let _ = std::fs::remove_dir_all(&path);
    }
}

fn process_exists(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks that the process exists; it sends nothing.
    let result = unsafe { libc::kill(pid, 0) };
    result == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

fn has_live_master(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|entry| {
            entry.file_type().is_ok_and(|kind| kind.is_socket())
                && std::os::unix::net::UnixStream::connect(entry.path()).is_ok()
        })
    })
}

/// Creates `dir` (mode 0700) when it is missing, then checks that it is safe to use.
pub(crate) fn open_private_dir(dir: &Path) -> Result<(), RemoteError> {
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(error) => {
            return Err(RemoteError::LocalProcess {
                program: "ssh".into(),
                detail: format!(
                    "cannot create the SSH control directory {}: {error}",
                    dir.display()
                ),
            })
        }
    }
    check_private_dir(dir)
}

/// A directory of sockets is safe when it is a real directory (not a link), owned by the
/// current user, with no access for group or others.
fn check_private_dir(dir: &Path) -> Result<(), RemoteError> {
    let unsafe_dir = |reason: String| RemoteError::UnsafeControlPath {
        path: dir.to_path_buf(),
        reason,
    };
    let meta =
        std::fs::symlink_metadata(dir).map_err(|e| unsafe_dir(format!("cannot be read: {e}")))?;
    if !meta.file_type().is_dir() {
        return Err(unsafe_dir("is not a directory".into()));
    }
    check_owner_and_mode(&meta).map_err(unsafe_dir)
}

/// Whether a control socket exists at `path`; an error when something there is not a socket
/// of ours that only we can use.
pub(crate) fn socket_present(path: &Path) -> Result<bool, RemoteError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(error) => {
            return Err(RemoteError::UnsafeControlPath {
                path: path.to_path_buf(),
                reason: format!("cannot be read: {error}"),
            })
        }
    };
    let unsafe_socket = |reason: String| RemoteError::UnsafeControlPath {
        path: path.to_path_buf(),
        reason,
    };
    if !meta.file_type().is_socket() {
        return Err(unsafe_socket("is not a socket".into()));
    }
    check_owner_and_mode(&meta).map_err(unsafe_socket)?;
    Ok(true)
}

fn check_owner_and_mode(meta: &std::fs::Metadata) -> Result<(), String> {
    let uid = current_uid();
    if meta.uid() != uid {
        return Err(format!(
            "is owned by user id {}, not by you (user id {uid})",
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "has mode {mode:04o}, which lets other users reach it (it must be 0700 for the directory, 0600 for a socket)"
        ));
    }
    Ok(())
}

fn current_uid() -> u32 {
    // SAFETY: geteuid(2) has no preconditions and touches no memory of ours.
    unsafe { libc::geteuid() }
}

/// The files of one worker's master in a shared directory.
#[derive(Debug, Clone)]
pub(crate) struct MasterFiles {
    pub socket: PathBuf,
    pub log: PathBuf,
    fingerprint: PathBuf,
    lock: PathBuf,
}

impl MasterFiles {
    /// The files of `user@worker:port` in `dir`.
    pub(crate) fn new(dir: &Path, config: &RemoteConfig, worker: &str) -> MasterFiles {
        let digest = Sha256::digest(format!("{}@{worker}:{}", config.user, config.port));
        let stem = &hex::encode(digest)[..16];
        let file = |suffix: &str| dir.join(format!("{stem}{suffix}"));
        MasterFiles {
            socket: file(SOCKET_SUFFIX),
            log: file(LOG_SUFFIX),
            fingerprint: file(FINGERPRINT_SUFFIX),
            lock: file(LOCK_SUFFIX),
        }
    }

    /// Takes this worker's lock across maand processes, so only one of them starts its master.
    /// Released when the returned file is dropped.
    pub(crate) async fn lock(&self) -> Result<File, RemoteError> {
        let path = self.lock.clone();
        tokio::task::spawn_blocking(move || {
            let file = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            file.lock()?;
            Ok::<File, std::io::Error>(file)
        })
        .await
        .map_err(|error| RemoteError::LocalProcess {
            program: "ssh".into(),
            detail: format!("locking an SSH master: {error}"),
        })?
        .map_err(|error| RemoteError::LocalProcess {
            program: "ssh".into(),
            detail: format!("cannot lock {}: {error}", self.lock.display()),
        })
    }

    /// The fingerprint recorded when the live master was opened.
    pub(crate) fn recorded_fingerprint(&self) -> Option<String> {
        std::fs::read_to_string(&self.fingerprint).ok()
    }

    pub(crate) fn record_fingerprint(&self, fingerprint: &str) -> Result<(), RemoteError> {
        std::fs::write(&self.fingerprint, fingerprint).map_err(|error| RemoteError::LocalProcess {
            program: "ssh".into(),
            detail: format!("cannot write {}: {error}", self.fingerprint.display()),
        })
    }

    /// Removes the socket and its fingerprint (after the master was asked to exit).
    pub(crate) fn forget(&self) {
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_file(&self.fingerprint);
    }
}

/// What a master to `worker` was authenticated with: the private key and the worker's lines
/// of the bucket's known_hosts. A master opened with other credentials is not reused.
pub(crate) fn credential_fingerprint(
    config: &RemoteConfig,
    worker: &str,
) -> Result<String, RemoteError> {
    let key = std::fs::read(&config.key_path).map_err(|error| RemoteError::LocalProcess {
        program: "ssh".into(),
        detail: format!(
            "cannot read the SSH key {}: {error}",
            config.key_path.display()
        ),
    })?;
    let known_hosts = std::fs::read_to_string(&config.known_hosts_path).unwrap_or_default();
    let mut hasher = Sha256::new();
    hasher.update(Sha256::digest(&key));
    for line in worker_known_hosts_lines(&known_hosts, worker, config.port) {
        hasher.update(line.as_bytes());
        hasher.update(b"\n");
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The known_hosts lines that may apply to `worker`: those naming it (as `host` on port 22,
/// `[host]:port` otherwise) and every hashed line, which cannot be told apart.
fn worker_known_hosts_lines<'a>(
    known_hosts: &'a str,
    worker: &str,
    port: u16,
) -> impl Iterator<Item = &'a str> {
    let name = if port == 22 {
        worker.to_string()
    } else {
        format!("[{worker}]:{port}")
    };
    known_hosts.lines().map(str::trim).filter(move |line| {
        let mut fields = line.split_whitespace();
        let mut hosts = match fields.next() {
            Some(marker) if marker.starts_with('@') => fields.next(),
            first => first,
        }
        .unwrap_or_default()
        .split(',');
        hosts.any(|host| host == name || host.starts_with("|1|"))
    })
}

/// Asks every master in the bucket's shared directory to exit and removes its files. Returns
/// how many masters were running. A missing directory means there is nothing to close.
pub fn close_masters(preferred: &Path) -> Result<usize, RemoteError> {
    let dir = shared_control_dir(preferred);
    if !dir.exists() {
        return Ok(0);
    }
    check_private_dir(&dir)?;
    let entries = std::fs::read_dir(&dir).map_err(|error| RemoteError::LocalProcess {
        program: "ssh".into(),
        detail: format!("cannot list {}: {error}", dir.display()),
    })?;
    let mut exits = Vec::new();
    let mut stale = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(SOCKET_SUFFIX)) else {
            continue;
        };
        if !socket_present(&path)? {
            continue;
        }
        let exit = std::process::Command::new("ssh")
            .arg("-S")
            .arg(&path)
            .args(["-O", "exit", "--", "maand-worker"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| RemoteError::LocalProcess {
                program: "ssh".into(),
                detail: error.to_string(),
            })?;
        exits.push(exit);
        stale.push(dir.join(format!("{stem}{FINGERPRINT_SUFFIX}")));
        stale.push(path);
    }
    let mut closed = 0;
    for mut exit in exits {
        if exit.wait().is_ok_and(|status| status.success()) {
            closed += 1;
        }
    }
    for path in stale {
        let _ = std::fs::remove_file(path);
    }
    Ok(closed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn directories_of_killed_commands_are_swept_and_live_ones_kept() {
        let base = tempfile::tempdir().unwrap();
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = gone.id();
        gone.wait().unwrap();
        let dead = base.path().join(command_dir_name(dead_pid, 1));
        let live = base.path().join(command_dir_name(std::process::id(), 2));
        let with_master = base.path().join(command_dir_name(dead_pid, 3));
        let other = base.path().join("maand-ssh-0-0123456789abcdef");
        for dir in [&dead, &live, &with_master, &other] {
            std::fs::create_dir(dir).unwrap();
            std::fs::write(dir.join("0.log"), "").unwrap();
        }
        let _listening =
            std::os::unix::net::UnixListener::bind(with_master.join("0.sock")).unwrap();
        sweep_abandoned_command_dirs(base.path(), std::time::Duration::from_secs(3600));
        assert!(dead.exists(), "a young directory is never swept");
        sweep_abandoned_command_dirs(base.path(), std::time::Duration::ZERO);
        assert!(!dead.exists(), "a dead command's directory stays");
        assert!(live.exists() && with_master.exists() && other.exists());
    }

    #[test]
    fn a_short_bucket_keeps_its_sockets_inside_and_a_long_one_falls_back_to_temp() {
        let short = Path::new("/srv/b/data/ssh");
        assert_eq!(shared_control_dir(short), short);
        let long = PathBuf::from(format!("/srv/{}/data/ssh", "x".repeat(80)));
        let fallback = shared_control_dir(&long);
        assert!(fallback.starts_with(std::env::temp_dir()));
        assert_eq!(
            fallback,
            shared_control_dir(&long),
            "the same bucket, the same dir"
        );
        let other = PathBuf::from(format!("/srv/{}/data/ssh", "y".repeat(80)));
        assert_ne!(fallback, shared_control_dir(&other));
        let name = fallback.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with(&format!("maand-ssh-{}-", current_uid())));
    }

    #[test]
    fn only_a_private_directory_of_ours_is_used() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("ssh");
        open_private_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);

        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let error = open_private_dir(&dir).unwrap_err().to_string();
        assert!(error.contains("mode 0755"), "{error}");
        assert!(error.contains(&dir.display().to_string()), "{error}");

        let link = base.path().join("link");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        let error = open_private_dir(&link).unwrap_err().to_string();
        assert!(error.contains("is not a directory"), "{error}");
    }

    #[test]
    fn a_regular_file_in_place_of_a_socket_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.s");
        assert!(!socket_present(&path).unwrap());
        std::fs::write(&path, "").unwrap();
        let error = socket_present(&path).unwrap_err().to_string();
        assert!(error.contains("is not a socket"), "{error}");
    }

    #[test]
    fn the_fingerprint_follows_the_key_and_the_workers_known_hosts_lines_only() {
        let dir = tempfile::tempdir().unwrap();
        let config = RemoteConfig {
            user: "agent".into(),
            port: 22,
            key_path: dir.path().join("worker.key"),
            known_hosts_path: dir.path().join("known_hosts"),
            use_sudo: false,
            connect_timeout: std::time::Duration::from_secs(5),
            masters: super::super::config::MasterPolicy::PerCommand,
        };
        std::fs::write(&config.key_path, "key one").unwrap();
        let first = credential_fingerprint(&config, "127.0.0.1").unwrap();
        std::fs::write(&config.known_hosts_path, "127.0.0.2 ssh-ed25519 AAAA\n").unwrap();
        assert_eq!(first, credential_fingerprint(&config, "127.0.0.1").unwrap());
        std::fs::write(
            &config.known_hosts_path,
            "127.0.0.2 ssh-ed25519 AAAA\n127.0.0.1 ssh-ed25519 BBBB\n",
        )
        .unwrap();
        let with_entry = credential_fingerprint(&config, "127.0.0.1").unwrap();
        assert_ne!(first, with_entry);
        std::fs::write(&config.key_path, "key two").unwrap();
        assert_ne!(
            with_entry,
            credential_fingerprint(&config, "127.0.0.1").unwrap()
        );
    }

    #[test]
    fn known_hosts_lines_match_the_host_with_its_port() {
        let text = "h1 ssh-ed25519 A\n[h1]:2222 ssh-ed25519 B\nh2,h1 ssh-rsa C\n@revoked h1 ssh-rsa D\n|1|abc= ssh-rsa E\nh10 ssh-rsa F\n";
        let on_22: Vec<&str> = worker_known_hosts_lines(text, "h1", 22).collect();
        assert_eq!(
            on_22,
            [
                "h1 ssh-ed25519 A",
                "h2,h1 ssh-rsa C",
                "@revoked h1 ssh-rsa D",
                "|1|abc= ssh-rsa E"
            ]
        );
        let on_2222: Vec<&str> = worker_known_hosts_lines(text, "h1", 2222).collect();
        assert_eq!(on_2222, ["[h1]:2222 ssh-ed25519 B", "|1|abc= ssh-rsa E"]);
    }
}
