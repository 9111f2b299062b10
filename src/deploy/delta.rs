//! The delta a warm redeploy sends instead of running rsync: what the worker's runner must write,
//! check and remove so that its copy of one job (and maand's helper files) equals the staged
//! tree, given the files the journal says the last copy shipped (`deployments.current_files`).
//! The runner applies it in the same privileged process that then runs the lifecycle target
//! (see `apply_delta` in `src/remote/maand_runner.py` for the format and the checks).

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// maand's own files beside the jobs, always sent whole (they are small, and `worker.json`
/// changes with every deploy).
const HELPER_FILES: [&str; 4] = [
    "worker.json",
    "jobs.json",
    "bin/runner.py",
    "bin/maand_runner.py",
];

/// A delta ready to send, and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delta {
    pub payload: Vec<u8>,
    /// Job files sent whole (new or changed).
    pub written: usize,
    /// Job files the worker must already hold (checked by hash there).
    pub verified: usize,
    /// Job files to remove.
    pub removed: usize,
}

impl Delta {
    /// How the journal names the work: what the runner is asked to do with `job`.
    pub fn describe(&self, job: &str) -> String {
        format!(
            "apply a delta to jobs/{job}: {} file(s) written, {} removed, {} checked by hash (instead of rsync)",
            self.written, self.removed, self.verified
        )
    }
}

/// Content hashes of staged files by identity (device, inode, size, modification time). The
/// trees staged for each worker are hard links to one stored copy of each file, so the same
/// file is read and hashed once per deploy, not once per worker.
#[derive(Debug, Default)]
pub struct StagedHashes(std::sync::Mutex<std::collections::HashMap<(u64, u64, u64, i64), String>>);

impl StagedHashes {
    /// The hash of the file at `path` with metadata `meta`, and its content when it had to be
    /// read for that.
    fn hash(&self, path: &Path, meta: &std::fs::Metadata) -> Option<(String, Option<Vec<u8>>)> {
        use std::os::unix::fs::MetadataExt;
        let identity = (
            meta.dev(),
            meta.ino(),
            meta.len(),
            meta.mtime_nsec() + meta.mtime() * 1_000_000_000,
        );
        let known = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&identity)
            .cloned();
        if let Some(hash) = known {
            return Some((hash, None));
        }
        let content = std::fs::read(path).ok()?;
        let hash = hex::encode(Sha256::digest(&content));
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(identity, hash.clone());
        Some((hash, Some(content)))
    }
}

/// The delta bringing `/opt/worker/<bucket>/` from `shipped` (job path → content hash, as last
/// copied) to the image staged in `staged_root` for `job`. `None` when the staged image cannot
/// be read or holds a path the delta's line format cannot carry (rsync copies then).
pub fn build(
    staged_root: &Path,
    job: &str,
    shipped: &BTreeMap<String, String>,
    hashes: &StagedHashes,
) -> Option<Delta> {
    let mut header = String::from("maand-delta 2\n");
    let mut contents: Vec<u8> = Vec::new();
    let mut send = |path: &str, mode: u32, hash: &str, content: Vec<u8>, header: &mut String| {
        header.push_str(&format!("F {mode:o} {} {hash} {path}\n", content.len()));
        contents.extend_from_slice(&content);
    };
    for name in HELPER_FILES {
        let path = staged_root.join(name);
        let mode = std::fs::metadata(&path).ok()?.permissions().mode() & 0o7777;
        let content = std::fs::read(&path).ok()?;
        let hash = hex::encode(Sha256::digest(&content));
        send(name, mode, &hash, content, &mut header);
    }
    let job_root = staged_root.join("jobs").join(job);
    let mut staged = Vec::new();
    collect_files(&job_root, "", &mut staged)?;
    staged.sort();
    let (mut written, mut verified) = (0, 0);
    for relative in &staged {
        let path = job_root.join(relative);
        let meta = std::fs::metadata(&path).ok()?;
        let mode = meta.permissions().mode() & 0o7777;
        let (hash, content) = hashes.hash(&path, &meta)?;
        let on_worker = format!("jobs/{job}/{relative}");
        if shipped.get(relative) == Some(&hash) {
            header.push_str(&format!("V {mode:o} {hash} {on_worker}\n"));
            verified += 1;
        } else {
            let content = match content {
                Some(content) => content,
                None => std::fs::read(&path).ok()?,
            };
            send(&on_worker, mode, &hash, content, &mut header);
            written += 1;
        }
    }
    let mut removed = 0;
    let gone = shipped
        .keys()
        .filter(|path| !in_own_directory(path) && staged.binary_search(path).is_err());
    for gone in gone {
        if gone.contains('\n') {
            return None;
        }
        header.push_str(&format!("D jobs/{job}/{gone}\n"));
        removed += 1;
    }
    header.push_str(".\n");
    let mut payload = header.into_bytes();
    payload.extend_from_slice(&contents);
    Some(Delta {
        payload,
        written,
        verified,
        removed,
    })
}

/// The job's own directories on the worker (top level of `jobs/<job>`), which copies never
/// touch: rsync excludes them, and so does the delta.
const JOB_OWN_DIRECTORIES: [&str; 3] = ["data", "logs", "bin"];

/// Whether `relative` (a path inside `jobs/<job>`) lies in one of the job's own directories.
fn in_own_directory(relative: &str) -> bool {
    let top = relative.split('/').next().unwrap_or_default();
    JOB_OWN_DIRECTORIES.contains(&top) && relative.len() > top.len()
}

/// Every regular file under `dir` outside the job's own directories, as `/`-separated paths
/// relative to it, sorted. `None` for anything the delta cannot carry as a file (a symlink,
/// a name that is not UTF-8 or holds a newline): rsync copies those.
fn collect_files(dir: &Path, prefix: &str, found: &mut Vec<String>) -> Option<()> {
    for entry in std::fs::read_dir(dir).ok()? {
        let entry = entry.ok()?;
        let name = entry.file_name().into_string().ok()?;
        let relative = format!("{prefix}{name}");
        let kind = entry.file_type().ok()?;
        if name.contains('\n') {
            return None;
        } else if kind.is_dir() {
            if prefix.is_empty() && JOB_OWN_DIRECTORIES.contains(&name.as_str()) {
                continue;
            }
            collect_files(&entry.path(), &format!("{relative}/"), found)?;
        } else if kind.is_file() {
            found.push(relative);
        } else {
            return None;
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staged() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path();
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::create_dir_all(dir.join("jobs/app/conf")).unwrap();
        for name in HELPER_FILES {
            std::fs::write(dir.join(name), name).unwrap();
        }
        std::fs::write(dir.join("jobs/app/Makefile"), "start:\n").unwrap();
        std::fs::write(dir.join("jobs/app/conf/app.conf"), "port=1").unwrap();
        root
    }

    fn sha(text: &str) -> String {
        hex::encode(Sha256::digest(text.as_bytes()))
    }

    fn header(delta: &Delta) -> String {
        let text = String::from_utf8_lossy(&delta.payload);
        text[..text.find(".\n").unwrap() + 2].to_string()
    }

    #[test]
    fn unchanged_files_are_checked_changed_ones_sent_and_gone_ones_removed() {
        let root = staged();
        let shipped = BTreeMap::from([
            ("Makefile".to_string(), sha("start:\n")),
            ("conf/app.conf".to_string(), sha("port=0")),
            ("old.txt".to_string(), sha("old")),
        ]);
        let delta = build(root.path(), "app", &shipped, &StagedHashes::default()).unwrap();
        assert_eq!((delta.written, delta.verified, delta.removed), (1, 1, 1));
        let header = header(&delta);
        assert!(
            header.starts_with(&format!(
                "maand-delta 2\nF 644 11 {} worker.json\n",
                sha("worker.json")
            )),
            "{header}"
        );
        assert!(header.contains(&format!("V 644 {} jobs/app/Makefile\n", sha("start:\n"))));
        assert!(header.contains(&format!(
            "F 644 6 {} jobs/app/conf/app.conf\n",
            sha("port=1")
        )));
        assert!(header.ends_with("D jobs/app/old.txt\n.\n"));
        assert!(delta.payload.ends_with(b"port=1"));
        assert_eq!(
            delta.describe("app"),
            "apply a delta to jobs/app: 1 file(s) written, 1 removed, 1 checked by hash (instead of rsync)"
        );
    }

    #[test]
    fn the_jobs_own_directories_are_neither_sent_nor_removed() {
        let root = staged();
        std::fs::create_dir_all(root.path().join("jobs/app/data")).unwrap();
        std::fs::write(root.path().join("jobs/app/data/state"), "x").unwrap();
        std::fs::write(
            root.path().join("jobs/app/logs"),
            "a file, not the directory",
        )
        .unwrap();
        let shipped = BTreeMap::from([("bin/tool".to_string(), sha("tool"))]);
        let delta = build(root.path(), "app", &shipped, &StagedHashes::default()).unwrap();
        let header = header(&delta);
        assert!(
            !header.contains("jobs/app/data/") && !header.contains("bin/tool"),
            "{header}"
        );
        assert!(header.contains(" jobs/app/logs\n"), "{header}");
        assert_eq!((delta.written, delta.removed), (3, 0));
    }

    #[test]
    fn a_file_staged_for_many_workers_is_read_and_hashed_once() {
        let root = staged();
        let second = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(second.path().join("bin")).unwrap();
        std::fs::create_dir_all(second.path().join("jobs/app/conf")).unwrap();
        for name in HELPER_FILES
            .iter()
            .chain(&["jobs/app/Makefile", "jobs/app/conf/app.conf"])
        {
            std::fs::hard_link(root.path().join(name), second.path().join(name)).unwrap();
        }
        let shipped = BTreeMap::from([("Makefile".to_string(), sha("start:\n"))]);
        let hashes = StagedHashes::default();
        let first = build(root.path(), "app", &shipped, &hashes).unwrap();
        assert_eq!(hashes.0.lock().unwrap().len(), 2);
        // The second tree's job files are the same inodes: no new hash is taken for them.
        let again = build(second.path(), "app", &shipped, &hashes).unwrap();
        assert_eq!(again, first);
        assert_eq!(hashes.0.lock().unwrap().len(), 2);
    }

    fn build_from_nothing_shipped(root: &Path) -> Option<Delta> {
        build(root, "app", &BTreeMap::new(), &StagedHashes::default())
    }

    #[test]
    fn a_symlink_in_the_staged_job_leaves_the_copy_to_rsync() {
        let root = staged();
        std::os::unix::fs::symlink("Makefile", root.path().join("jobs/app/link")).unwrap();
        assert_eq!(build_from_nothing_shipped(root.path()), None);
    }

    #[test]
    fn a_missing_staged_image_gives_no_delta() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(build_from_nothing_shipped(root.path()), None);
    }
}
