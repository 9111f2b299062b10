//! A bucket for job command tests: initialized, with workers in workers.json that are never
//! contacted (job commands run on the operator host), and helpers to write jobs, run the real
//! `maand` binary and look at the database and the files a run leaves behind.

use std::path::{Path, PathBuf};
use std::process::Output;

pub struct HookBucket {
    dir: tempfile::TempDir,
}

impl HookBucket {
    /// `maand init` in a fresh directory and `workers.json` with `(host, labels)` entries.
    pub fn new(workers: &[(&str, &[&str])]) -> HookBucket {
        let bucket = HookBucket {
            dir: tempfile::tempdir().unwrap(),
        };
        bucket.maand_ok(&["init"]);
        let workers: Vec<serde_json::Value> = workers
            .iter()
            .map(|(host, labels)| serde_json::json!({"host": host, "labels": labels}))
            .collect();
        bucket.write(
            "workspace/workers.json",
            &serde_json::to_string_pretty(&workers).unwrap(),
        );
        bucket
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, path: &str, text: &str) {
        let path: PathBuf = self.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    pub fn read(&self, path: &str) -> String {
        std::fs::read_to_string(self.path().join(path))
            .unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
    }

    /// A job directory: its manifest, a Makefile, and `_modules/<name>` scripts.
    pub fn job(&self, name: &str, manifest: &str, scripts: &[(&str, &str)]) {
        self.write(&format!("workspace/jobs/{name}/manifest.json"), manifest);
        self.write(
            &format!("workspace/jobs/{name}/Makefile"),
            "start:\n\t@true\n",
        );
        for (file, text) in scripts {
            self.write(&format!("workspace/jobs/{name}/_modules/{file}"), text);
        }
    }

    /// Runs the maand binary in the bucket.
    pub fn maand(&self, args: &[&str]) -> Output {
        crate::support::bucket::run_maand(self.dir.path(), args)
    }

    /// Runs maand and panics with its output unless it succeeds; returns stdout.
    pub fn maand_ok(&self, args: &[&str]) -> String {
        crate::support::bucket::run_maand_ok(self.dir.path(), args)
    }

    /// Runs maand expecting failure; returns stdout and stderr together.
    pub fn maand_fails(&self, args: &[&str]) -> String {
        let out = self.maand(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "maand {args:?} succeeded:\n{text}");
        text
    }

    /// Runs sqlite3 on the bucket's database.
    pub fn sql(&self, query: &str) -> String {
        let out = std::process::Command::new("sqlite3")
            .arg(self.path().join("data/maand.db"))
            .arg(query)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// Every file under `dir` (relative to the bucket) whose bytes contain `needle`.
    pub fn files_containing(&self, dir: &str, needle: &str) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let mut pending = vec![self.path().join(dir)];
        while let Some(path) = pending.pop() {
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                for entry in std::fs::read_dir(&path).unwrap() {
                    pending.push(entry.unwrap().path());
                }
            } else if meta.is_file() {
                let bytes = std::fs::read(&path).unwrap();
                if bytes
                    .windows(needle.len())
                    .any(|window| window == needle.as_bytes())
                {
                    found.push(path);
                }
            }
        }
        found
    }
}
