//! Staging: the exact tree an allocation should have on its worker (job files, rendered
//! templates, certificates), its content hash, and writing it under `tmp/workers/<ip>/`.
//!
//! Building a tree is pure (the template renderer is passed in); only [`StagedTree::write_to`]
//! touches the disk.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// One file of a staged tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedFile {
    /// Relative to the job directory, `/`-separated.
    pub path: String,
    pub content: Arc<Vec<u8>>,
    /// Unix permission bits.
    pub mode: u32,
    /// SHA-256 of the content, hex.
    pub hash: String,
}

/// The tree of one allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedTree {
    /// Sorted by path.
    pub files: Vec<StagedFile>,
    /// SHA-256 over every (path, content hash, mode): equal trees have equal hashes.
    pub tree_hash: String,
}

impl StagedTree {
    fn new(mut files: Vec<StagedFile>) -> StagedTree {
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let mut digest = Sha256::new();
        for file in &files {
            digest.update(format!("{}\0{}\0{:o}\n", file.path, file.hash, file.mode).as_bytes());
        }
        StagedTree {
            files,
            tree_hash: hex::encode(digest.finalize()),
        }
    }

    /// path → content hash, as recorded for `restart_globs` comparisons.
    pub fn file_hashes(&self) -> BTreeMap<String, String> {
        self.files
            .iter()
            .map(|f| (f.path.clone(), f.hash.clone()))
            .collect()
    }

    /// Makes `dir` hold exactly this tree: each file a hard link to its copy in `store`, so
    /// the same job staged for many workers costs one write per file, not one per worker, and
    /// a later deploy keeps every link that is still right and only links what changed.
    /// Anything else in `dir` is removed. Directories get mode 0755 (rsync copies the mode of
    /// the source directory onto the worker's).
    pub fn write_to(&self, dir: &Path, store: &FileStore) -> std::io::Result<()> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        match std::fs::symlink_metadata(dir) {
            Ok(meta) if !meta.is_dir() => std::fs::remove_file(dir)?,
            _ => {}
        }
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        let files: BTreeMap<&str, &StagedFile> =
            self.files.iter().map(|f| (f.path.as_str(), f)).collect();
        remove_unstaged(dir, "", &files)?;
        for file in &self.files {
            let (stored, identity) = store.entry(file)?;
            let path = dir.join(&file.path);
            match std::fs::symlink_metadata(&path) {
                Ok(meta) if (meta.dev(), meta.ino()) == identity => continue,
                Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&path)?,
                Ok(_) => std::fs::remove_file(&path)?,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    create_parents(dir, &path)?
                }
                Err(error) => return Err(error),
            }
            std::fs::hard_link(&stored, &path)?;
        }
        Ok(())
    }
}

/// Creates the missing directories between `dir` and `path`, each with mode 0755.
fn create_parents(dir: &Path, path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let Some(parent) = path.parent().filter(|parent| !parent.exists()) else {
        return Ok(());
    };
    std::fs::create_dir_all(parent)?;
    let mut p = parent;
    while p != dir {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))?;
        p = p.parent().unwrap_or(dir);
    }
    Ok(())
}

/// Removes from `dir` (the part of a staged tree under `prefix`) every entry the tree does not
/// have: files it does not list and directories no listed file lies in.
fn remove_unstaged(
    dir: &Path,
    prefix: &str,
    files: &BTreeMap<&str, &StagedFile>,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let relative = format!("{prefix}{}", name.to_string_lossy());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            let inside = format!("{relative}/");
            let holds_files = files
                .range(inside.as_str()..)
                .next()
                .is_some_and(|(path, _)| path.starts_with(&inside));
            if holds_files {
                remove_unstaged(&entry.path(), &inside, files)?;
            } else {
                std::fs::remove_dir_all(entry.path())?;
            }
        } else if !files.contains_key(relative.as_str()) {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// The files staged trees link to, one per content and mode (`tmp/store/`), kept from deploy
/// to deploy. A stored file is checked against the content it must have the first time a
/// deploy uses it (and written again when it differs), so a file changed by hand under
/// `tmp/` is never shipped; [`FileStore::prune`] removes the files no tree of this deploy uses.
#[derive(Debug)]
pub struct FileStore {
    dir: std::path::PathBuf,
    /// Stored files checked or written by this deploy: name → (device, inode).
    used: std::sync::Mutex<std::collections::HashMap<String, (u64, u64)>>,
}

impl FileStore {
    pub fn new(dir: std::path::PathBuf) -> FileStore {
        FileStore {
            dir,
            used: Default::default(),
        }
    }

    /// Where the stored files are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The stored copy of `file` and its (device, inode).
    fn entry(&self, file: &StagedFile) -> std::io::Result<(std::path::PathBuf, (u64, u64))> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let name = format!("{}-{:o}", file.hash, file.mode);
        let stored = self.dir.join(&name);
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(identity) = used.get(&name) {
            return Ok((stored, *identity));
        }
        let intact = std::fs::symlink_metadata(&stored).ok().filter(|meta| {
            meta.is_file()
                && meta.permissions().mode() & 0o7777 == file.mode
                && meta.len() == file.content.len() as u64
                && std::fs::read(&stored).is_ok_and(|stored| stored == *file.content)
        });
        let meta = match intact {
            Some(meta) => meta,
            None => {
                std::fs::create_dir_all(&self.dir)?;
                let partial = self.dir.join(format!(".{name}.{}", std::process::id()));
                std::fs::write(&partial, file.content.as_slice())?;
                std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(file.mode))?;
                std::fs::rename(&partial, &stored)?;
                std::fs::symlink_metadata(&stored)?
            }
        };
        let identity = (meta.dev(), meta.ino());
        used.insert(name, identity);
        Ok((stored, identity))
    }

    /// Removes every stored file this deploy has not used (staged trees of earlier deploys keep
    /// their own links to the content).
    pub fn prune(&self) -> std::io::Result<()> {
        let used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(error),
        };
        for entry in entries {
            let entry = entry?;
            if !used.contains_key(&*entry.file_name().to_string_lossy()) {
                match entry.file_type()?.is_dir() {
                    true => std::fs::remove_dir_all(entry.path())?,
                    false => std::fs::remove_file(entry.path())?,
                }
            }
        }
        Ok(())
    }
}

/// A job file as the catalog stores it, with its content.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: String,
    pub hash: String,
    pub executable: bool,
    pub content: Arc<Vec<u8>>,
}

/// A staging failure, naming the job and file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{job}: {path}: {message}")]
pub struct StageError {
    pub job: String,
    pub path: String,
    pub message: String,
    /// The message is the renderer's, which names the template itself.
    pub from_template: bool,
}

impl StageError {
    /// The problem without the job: the renderer's message as is (it names the template),
    /// any other message after the path it concerns.
    pub fn describe(&self) -> String {
        if self.from_template {
            self.message.clone()
        } else {
            format!("{}: {}", self.path, self.message)
        }
    }
}

fn file(path: &str, content: Vec<u8>, mode: u32) -> StagedFile {
    let hash = hex::encode(Sha256::digest(&content));
    StagedFile {
        path: path.to_string(),
        content: Arc::new(content),
        mode,
        hash,
    }
}

/// Builds an allocation's tree: every job file (`.tpl` files rendered by `render` and stored
/// without the suffix) plus `extra` files such as certificates. `render`'s errors must name
/// the template they concern.
pub fn stage_tree(
    job: &str,
    sources: &[SourceFile],
    extra: Vec<(String, Vec<u8>, u32)>,
    render: &dyn Fn(&str, &str) -> Result<String, String>,
) -> Result<StagedTree, StageError> {
    let mut files = Vec::with_capacity(sources.len() + extra.len());
    for source in sources {
        let mode = if source.executable { 0o755 } else { 0o644 };
        match source.path.strip_suffix(".tpl") {
            Some(output) => {
                let text = std::str::from_utf8(&source.content).map_err(|_| StageError {
                    job: job.to_string(),
                    path: source.path.clone(),
                    message: "a .tpl file must be UTF-8 text".into(),
                    from_template: false,
                })?;
                let rendered = render(&source.path, text).map_err(|message| StageError {
                    job: job.to_string(),
                    path: source.path.clone(),
                    message,
                    from_template: true,
                })?;
                files.push(file(output, rendered.into_bytes(), mode));
            }
            None => files.push(StagedFile {
                path: source.path.clone(),
                content: source.content.clone(),
                mode,
                hash: source.hash.clone(),
            }),
        }
    }
    for (path, content, mode) in extra {
        files.push(file(&path, content, mode));
    }
    let mut seen = std::collections::BTreeSet::new();
    for f in &files {
        if !seen.insert(f.path.as_str()) {
            return Err(StageError {
                job: job.to_string(),
                path: f.path.clone(),
                message: "two staged files have this path (a template renders onto a plain file, or a job file collides with certs/); rename one".into(),
                from_template: false,
            });
        }
    }
    Ok(StagedTree::new(files))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(path: &str, text: &str) -> SourceFile {
        let content = text.as_bytes().to_vec();
        SourceFile {
            path: path.into(),
            hash: hex::encode(Sha256::digest(&content)),
            executable: false,
            content: Arc::new(content),
        }
    }

    #[test]
    fn templates_are_rendered_and_lose_their_suffix() {
        let tree = stage_tree(
            "api",
            &[source("config.tpl", "x"), source("Makefile", "m")],
            vec![],
            &|_, t| Ok(format!("<{t}>")),
        )
        .unwrap();
        let paths: Vec<&str> = tree.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["Makefile", "config"]);
        assert_eq!(tree.files[1].content.as_slice(), b"<x>");
    }

    #[test]
    fn the_tree_hash_changes_with_content_path_or_mode_only() {
        let render = |_: &str, t: &str| Ok(t.to_string());
        let a = stage_tree("j", &[source("a", "1")], vec![], &render).unwrap();
        let same = stage_tree("j", &[source("a", "1")], vec![], &render).unwrap();
        let content = stage_tree("j", &[source("a", "2")], vec![], &render).unwrap();
        let path = stage_tree("j", &[source("b", "1")], vec![], &render).unwrap();
        let mut exec = source("a", "1");
        exec.executable = true;
        let mode = stage_tree("j", &[exec], vec![], &render).unwrap();
        assert_eq!(a.tree_hash, same.tree_hash);
        for other in [content, path, mode] {
            assert_ne!(a.tree_hash, other.tree_hash);
        }
    }

    #[test]
    fn a_render_error_names_job_and_template() {
        let err = stage_tree("api", &[source("c.tpl", "x")], vec![], &|_, _| {
            Err("missing key".into())
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "api: c.tpl: missing key");
    }

    #[test]
    fn colliding_paths_are_refused() {
        let err = stage_tree(
            "api",
            &[source("a.tpl", "x"), source("a", "y")],
            vec![],
            &|_, t| Ok(t.into()),
        )
        .unwrap_err();
        assert!(err.message.contains("two staged files"));
    }

    #[test]
    fn written_trees_replace_what_was_there() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("jobs/api");
        std::fs::create_dir_all(&target).unwrap();
        std::fs::write(target.join("stale"), "old").unwrap();
        let tree = stage_tree(
            "api",
            &[source("sub/a", "1")],
            vec![("certs/x.key".into(), b"k".to_vec(), 0o600)],
            &|_, t| Ok(t.into()),
        )
        .unwrap();
        tree.write_to(&target, &FileStore::new(dir.path().join("store")))
            .unwrap();
        assert!(!target.join("stale").exists());
        assert_eq!(std::fs::read(target.join("sub/a")).unwrap(), b"1");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(target.join("certs/x.key"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
    }

    fn inode(path: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).unwrap().ino()
    }

    #[test]
    fn staging_again_keeps_what_is_right_and_relinks_only_what_changed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("jobs/api");
        let tree = |a: &str| {
            stage_tree(
                "api",
                &[source("a", a), source("conf/b", "b")],
                vec![],
                &|_, t| Ok(t.into()),
            )
            .unwrap()
        };
        let store = FileStore::new(dir.path().join("store"));
        tree("1").write_to(&target, &store).unwrap();
        store.prune().unwrap();
        let (a, b) = (inode(&target.join("a")), inode(&target.join("conf/b")));
        std::fs::write(target.join("conf/stray"), "x").unwrap();
        // The next deploy, with a fresh store handle as a new process has.
        let store = FileStore::new(dir.path().join("store"));
        tree("2").write_to(&target, &store).unwrap();
        store.prune().unwrap();
        assert_eq!(
            inode(&target.join("conf/b")),
            b,
            "an unchanged file is left linked"
        );
        assert_ne!(inode(&target.join("a")), a);
        assert_eq!(std::fs::read(target.join("a")).unwrap(), b"2");
        assert!(!target.join("conf/stray").exists());
        let mut stored: Vec<String> = std::fs::read_dir(dir.path().join("store"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        stored.sort();
        let mut expected: Vec<String> = tree("2")
            .files
            .iter()
            .map(|f| format!("{}-{:o}", f.hash, f.mode))
            .collect();
        expected.sort();
        assert_eq!(
            stored, expected,
            "the store keeps only what this deploy used"
        );
    }

    #[test]
    fn a_stored_file_changed_by_hand_is_written_again_before_it_is_linked() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("jobs/api");
        let tree =
            stage_tree("api", &[source("a", "right")], vec![], &|_, t| Ok(t.into())).unwrap();
        tree.write_to(&target, &FileStore::new(dir.path().join("store")))
            .unwrap();
        // Edited in place: the staged link and the stored file are the same inode.
        std::fs::write(target.join("a"), "wrong").unwrap();
        tree.write_to(&target, &FileStore::new(dir.path().join("store")))
            .unwrap();
        assert_eq!(std::fs::read(target.join("a")).unwrap(), b"right");
    }
}
