//! Receipts of deploy hooks: what a hook step's run ended with, kept on the operator host under
//! the bucket's `tmp/receipts/<deploy_id>/<index>.<attempt>.json`.
//!
//! A hook runs on the operator host and talks to maand's own API, so it never outlives maand:
//! a maand killed while a hook runs takes the hook with it, and the step runs again on resume.
//! The window this closes is the other one: the hook has ended, maand dies before the step's
//! end is in the journal. The receipt is written (temporary file, fsync, rename, directory
//! fsync) as soon as the hook has ended and before its step is recorded, so a resume asking for
//! the same step attempt gets the recorded outcome — the KV the hook wrote, or its failure —
//! instead of running the hook a second time. `maand gc` removes the receipts of every deploy
//! that has finished.

use crate::events::KvChanged;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use super::execute::StepAttempt;

/// How one allocation's process of a hook ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptRun {
    pub alloc_id: String,
    pub worker_ip: String,
    /// The exit code, when the process exited on its own.
    pub exit_code: Option<i32>,
    /// Why it failed; `None` when it exited 0.
    pub error: Option<String>,
}

/// What the hook step ended with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptOutcome {
    /// Every process exited 0; the KV they wrote (secrets sealed), to record with the step.
    Succeeded { kv_changes: Vec<KvChanged> },
    /// The step failed with this error.
    Failed { error: String },
}

/// The receipt of one hook step attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookReceipt {
    pub deploy_id: String,
    /// The step attempt key (`<index>.<attempt>`).
    pub step: String,
    pub job: String,
    pub command: String,
    pub event: String,
    /// When the hook ended (milliseconds since the Unix epoch).
    pub ended_ms: i64,
    /// One entry per allocation process (empty when nothing could start).
    pub runs: Vec<ReceiptRun>,
    pub outcome: ReceiptOutcome,
}

/// Why a receipt could not be read, written or removed.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("hook receipt {} is damaged ({source}): what the hook did is unknown; check its effects, then `maand deploy --resume` runs it again as a new attempt", path.display())]
    Damaged {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{name:?} is not a valid deploy id or step key for a hook receipt")]
    InvalidName { name: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ReceiptError + '_ {
    move |source| ReceiptError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The hook receipts of one bucket: `tmp/receipts/` on the operator host.
#[derive(Debug, Clone)]
pub struct HookReceipts {
    root: PathBuf,
}

impl HookReceipts {
    /// The receipts under `tmp_dir` (the bucket's `tmp/`).
    pub fn new(tmp_dir: &Path) -> HookReceipts {
        HookReceipts {
            root: tmp_dir.join("receipts"),
        }
    }

    /// Where the receipt of `step` lives.
    pub fn path(&self, step: &StepAttempt) -> Result<PathBuf, ReceiptError> {
        let key = step.key();
        for name in [step.deploy_id.as_str(), key.as_str()] {
            if !crate::remote::is_safe_name(name) {
                return Err(ReceiptError::InvalidName {
                    name: name.to_string(),
                });
            }
        }
        Ok(self.root.join(&step.deploy_id).join(format!("{key}.json")))
    }

    /// The receipt of `step`, when its hook already ended.
    pub fn read(&self, step: &StepAttempt) -> Result<Option<HookReceipt>, ReceiptError> {
        let path = self.path(step)?;
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(ReceiptError::Io { path, source }),
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|source| ReceiptError::Damaged { path, source })
    }

    /// Writes the receipt of `step` durably: once this returns, a crash cannot lose it.
    pub fn write(&self, step: &StepAttempt, receipt: &HookReceipt) -> Result<(), ReceiptError> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let path = self.path(step)?;
        let dir = path
            .parent()
            .expect("a receipt path has a deploy directory");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
        let mut text = serde_json::to_vec_pretty(receipt).expect("a receipt always serializes");
        text.push(b'\n');
        let tmp = dir.join(format!(".{}.tmp", step.key()));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(&tmp))?;
        file.write_all(&text)
            .and_then(|()| file.sync_all())
            .map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        // The rename is durable only once the directory holding it is.
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))
    }

    /// Removes the receipts of every deploy except those in `keep` (the deploy a resume may
    /// still continue); returns how many deploys' receipts went.
    pub fn forget_except(&self, keep: &[String]) -> Result<usize, ReceiptError> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(source) => {
                return Err(ReceiptError::Io {
                    path: self.root.clone(),
                    source,
                })
            }
        };
        let mut removed = 0;
        for entry in entries {
            let entry = entry.map_err(io(&self.root))?;
            if keep
                .iter()
                .any(|deploy| entry.file_name() == deploy.as_str())
            {
                continue;
            }
            let path = entry.path();
            if entry.file_type().map_err(io(&path))?.is_dir() {
                std::fs::remove_dir_all(&path).map_err(io(&path))?;
            } else {
                std::fs::remove_file(&path).map_err(io(&path))?;
            }
            removed += 1;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{KvChange, KvValue};

    fn attempt(deploy: &str, index: u32, attempt: u32) -> StepAttempt {
        StepAttempt {
            deploy_id: deploy.into(),
            index,
            attempt,
        }
    }

    fn receipt(outcome: ReceiptOutcome) -> HookReceipt {
        HookReceipt {
            deploy_id: "d1".into(),
            step: "3.0".into(),
            job: "app".into(),
            command: "command_note".into(),
            event: "post_deploy".into(),
            ended_ms: 1,
            runs: vec![ReceiptRun {
                alloc_id: "a1".into(),
                worker_ip: "127.0.0.1".into(),
                exit_code: Some(0),
                error: None,
            }],
            outcome,
        }
    }

    #[test]
    fn a_written_receipt_reads_back_and_others_are_absent() {
        let tmp = tempfile::tempdir().unwrap();
        let receipts = HookReceipts::new(tmp.path());
        let step = attempt("d1", 3, 0);
        assert_eq!(receipts.read(&step).unwrap(), None);
        let written = receipt(ReceiptOutcome::Succeeded {
            kv_changes: vec![KvChanged {
                namespace: "vars/job/app".into(),
                changes: vec![KvChange::Put {
                    key: "k".into(),
                    value: KvValue::Plain("v".into()),
                }],
            }],
        });
        receipts.write(&step, &written).unwrap();
        assert_eq!(receipts.read(&step).unwrap(), Some(written));
        assert!(tmp.path().join("receipts/d1/3.0.json").is_file());
        // Another attempt of the same step has no receipt.
        assert_eq!(receipts.read(&attempt("d1", 3, 1)).unwrap(), None);
        // Nothing but the receipt is left in its directory.
        let names: Vec<_> = std::fs::read_dir(tmp.path().join("receipts/d1"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["3.0.json"]);
    }

    #[test]
    fn a_damaged_receipt_is_an_error_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let receipts = HookReceipts::new(tmp.path());
        let step = attempt("d1", 3, 0);
        std::fs::create_dir_all(tmp.path().join("receipts/d1")).unwrap();
        std::fs::write(tmp.path().join("receipts/d1/3.0.json"), "{").unwrap();
        let error = receipts.read(&step).unwrap_err().to_string();
        assert!(error.contains("receipts/d1/3.0.json"), "{error}");
        assert!(error.contains("is damaged"), "{error}");
    }

    #[test]
    fn unsafe_names_are_refused() {
        let receipts = HookReceipts::new(Path::new("/nonexistent"));
        assert!(matches!(
            receipts.path(&attempt("../d1", 1, 0)),
            Err(ReceiptError::InvalidName { .. })
        ));
    }

    #[test]
    fn forgetting_keeps_only_the_named_deploys() {
        let tmp = tempfile::tempdir().unwrap();
        let receipts = HookReceipts::new(tmp.path());
        assert_eq!(receipts.forget_except(&[]).unwrap(), 0);
        for deploy in ["d1", "d2", "d3"] {
            receipts
                .write(
                    &attempt(deploy, 1, 0),
                    &receipt(ReceiptOutcome::Failed {
                        error: "exit code 1".into(),
                    }),
                )
                .unwrap();
        }
        assert_eq!(receipts.forget_except(&["d2".into()]).unwrap(), 2);
        let left: Vec<_> = std::fs::read_dir(tmp.path().join("receipts"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["d2"]);
    }
}
