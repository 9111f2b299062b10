//! The bucket mutation lock: one mutating command at a time per bucket.
//!
//! The lock is an OS file lock on `data/maand.lock` (released by the kernel when the process
//! dies, so a killed command never leaves a stale lock). The file's contents name the holder so a
//! second command can say who it is waiting for. Reads never take the lock.

use super::BucketError;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::Path;

/// Who holds the lock, as written into the lock file by the holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    pub command: String,
    pub pid: u32,
    pub started: String,
}

/// Held for the life of a mutating command; dropping it releases the lock.
#[derive(Debug)]
pub struct BucketLock {
    _file: File,
}

impl BucketLock {
    /// Takes the lock without waiting; fails at once naming the current holder.
    pub fn acquire(path: &Path, holder: &LockHolder) -> Result<BucketLock, BucketError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(BucketError::io(path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let holder = serde_json::from_str(&text).unwrap_or(LockHolder {
                    command: "unknown".into(),
                    pid: 0,
                    started: "unknown".into(),
                });
                return Err(BucketError::Locked { holder });
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(BucketError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
        let text = serde_json::to_string(holder).expect("lock holder serializes");
        file.set_len(0).map_err(BucketError::io(path))?;
        file.rewind().map_err(BucketError::io(path))?;
        file.write_all(text.as_bytes())
            .map_err(BucketError::io(path))?;
        file.flush().map_err(BucketError::io(path))?;
        Ok(BucketLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(command: &str) -> LockHolder {
        LockHolder {
            command: command.into(),
            pid: 7,
            started: "now".into(),
        }
    }

    #[test]
    fn second_acquire_fails_naming_the_holder_and_release_frees_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("maand.lock");
        let first = BucketLock::acquire(&path, &holder("maand deploy")).unwrap();
        let err = BucketLock::acquire(&path, &holder("maand build")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("maand deploy") && text.contains("pid 7"),
            "{text}"
        );
        drop(first);
        BucketLock::acquire(&path, &holder("maand build")).unwrap();
    }
}
