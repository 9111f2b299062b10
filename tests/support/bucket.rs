//! A maand bucket wired to a test [`Cluster`]: initialized, holding the cluster's key and host
//! keys, with helpers to write workspace files, run the real `maand` binary and look at what a
//! worker holds.

use super::cluster::Cluster;
use std::path::{Path, PathBuf};
use std::process::Output;

/// The maand binary tests run: cargo's, or a pinned copy named by `MAAND_TEST_BIN` (for long
/// measurements while other builds rewrite a shared target directory).
pub fn maand_binary() -> PathBuf {
    std::env::var_os("MAAND_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_maand")))
}

/// Runs the maand binary in `bucket` with a clean environment.
pub fn run_maand(bucket: &Path, args: &[&str]) -> Output {
    std::process::Command::new(maand_binary())
        .args(args)
        .current_dir(bucket)
        .env_remove("MAAND_BUCKET")
        .env_remove("RUST_LOG")
        .output()
        .expect("maand runs")
}

/// Like [`run_maand`], but panics with the output unless it succeeds; returns stdout.
pub fn run_maand_ok(bucket: &Path, args: &[&str]) -> String {
    let out = run_maand(bucket, args);
    assert!(
        out.status.success(),
        "maand {args:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The journal records (`logs show --format json`) of the last run of `command` in `bucket`.
pub fn last_run_records(bucket: &Path, command: &str) -> Vec<serde_json::Value> {
    let records: Vec<serde_json::Value> =
        run_maand_ok(bucket, &["logs", "show", "--format", "json"])
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
    let run = records
        .iter()
        .rev()
        .find(|r| r["maand"] == command && r["event"] == "run_started")
        .unwrap_or_else(|| panic!("no run of {command} in the journal"))["run"]
        .clone();
    records.into_iter().filter(|r| r["run"] == run).collect()
}

/// Makes the bucket's commands close their SSH masters when they end (`ssh_master_idle = 0`),
/// so a test leaves no master running; tests of warm masters set their own idle time.
pub fn close_masters_at_exit(bucket: &Path) {
    set_master_idle(bucket, 0);
}

/// Sets `ssh_master_idle` in the bucket's maand.conf.
pub fn set_master_idle(bucket: &Path, seconds: u32) {
    let conf = bucket.join("maand.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    let kept: String = text
        .lines()
        .filter(|line| !line.starts_with("ssh_master_idle"))
        .map(|line| format!("{line}\n"))
        .collect();
    std::fs::write(&conf, format!("{kept}ssh_master_idle = {seconds}\n")).unwrap();
}

pub struct TestBucket {
    dir: tempfile::TempDir,
    pub bucket_id: String,
}

impl TestBucket {
    /// `maand init` in a fresh directory, the cluster's key as `secrets/worker.key`, its host
    /// keys as `secrets/known_hosts`, and `workers.json` listing every host with `labels`.
    pub fn new(cluster: &Cluster, labels: &[&[&str]]) -> TestBucket {
        let dir = tempfile::tempdir().unwrap();
        let bucket = TestBucket {
            dir,
            bucket_id: String::new(),
        };
        let out = bucket.maand(&["init"]);
        assert!(
            out.status.success(),
            "init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        close_masters_at_exit(bucket.path());
        std::fs::copy(cluster.key_path(), bucket.path().join("secrets/worker.key")).unwrap();
        std::fs::copy(
            cluster.known_hosts_path(),
            bucket.path().join("secrets/known_hosts"),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        for file in ["secrets/worker.key", "secrets/known_hosts"] {
            std::fs::set_permissions(
                bucket.path().join(file),
                std::fs::Permissions::from_mode(0o600),
            )
            .unwrap();
        }
        let workers: Vec<serde_json::Value> = cluster
            .hosts()
            .iter()
            .enumerate()
            .map(|(i, host)| serde_json::json!({"host": host, "labels": labels.get(i).copied().unwrap_or(&[])}))
            .collect();
        bucket.write(
            "workspace/workers.json",
            &serde_json::to_string_pretty(&workers).unwrap(),
        );
        let info = bucket.maand_ok(&["info", "--json"]);
        let info: serde_json::Value = serde_json::from_str(&info).unwrap();
        TestBucket {
            bucket_id: info["bucket_id"].as_str().unwrap().to_string(),
            ..bucket
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, path: &str, text: &str) {
        let path: PathBuf = self.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    pub fn remove(&self, path: &str) {
        let path = self.path().join(path);
        if path.is_dir() {
            std::fs::remove_dir_all(path).unwrap();
        } else {
            std::fs::remove_file(path).unwrap();
        }
    }

    /// Runs the maand binary in the bucket.
    pub fn maand(&self, args: &[&str]) -> Output {
        run_maand(self.path(), args)
    }

    /// Runs maand and panics with its output unless it succeeds; returns stdout.
    pub fn maand_ok(&self, args: &[&str]) -> String {
        run_maand_ok(self.path(), args)
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

    /// The bucket's directory on a worker.
    pub fn remote_dir(&self) -> String {
        format!("/opt/worker/{}", self.bucket_id)
    }
}
