//! Reading a job directory into [`JobFile`]s. Owns the rules for what may live in a job
//! directory: regular files and directories, symlinks only when they stay inside the job,
//! UTF-8 single-line names, and no top-level `data/`, `logs/` or `bin/` (workers create
//! those at runtime). Never follows a link out of the job and never writes anything.

use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::errors::{ErrorKind, FileReport, WorkspaceError};
use super::names::RESERVED_RUNTIME_DIRS;

const KIND: ErrorKind = ErrorKind::InvalidJobFile;

/// One file of a job, with its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFile {
    /// Path relative to the job directory, `/`-separated (e.g. `_modules/command_x.py`).
    pub path: String,
    /// The file's bytes (for a symlink: the bytes of its target).
    pub content: Vec<u8>,
    /// Whether any execute bit is set on the file (or the symlink's target).
    pub executable: bool,
}

/// Walks `job_dir` (an absolute or caller-relative path) and returns its files sorted by
/// path. `display_dir` is the bucket-relative path used in error messages.
pub(crate) fn read_job_files(
    job_dir: &Path,
    display_dir: &Path,
    errors: &mut Vec<WorkspaceError>,
) -> Vec<JobFile> {
    let mut walk = Walk {
        display_dir,
        errors,
        files: Vec::new(),
        root: PathBuf::new(),
        ancestors: Vec::new(),
    };
    match fs::canonicalize(job_dir) {
        Ok(root) => {
            walk.root = root.clone();
            walk.ancestors.push(root.clone());
            walk.directory(&root, "");
        }
        Err(error) => walk.report(
            "",
            ErrorKind::Io,
            format!("cannot open the job directory: {error}"),
        ),
    }
    let mut files = walk.files;
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files
}

/// Reports every `.tpl` file still written as a Go `text/template` (for the Go maand): deploy
/// renders tera, and `maand template convert` translates them.
pub(crate) fn refuse_go_templates(
    files: &[JobFile],
    display_dir: &Path,
    errors: &mut Vec<WorkspaceError>,
) {
    for file in files.iter().filter(|file| file.path.ends_with(".tpl")) {
        let Ok(text) = std::str::from_utf8(&file.content) else {
            continue;
        };
        if crate::templates::go::is_go_syntax(text) {
            FileReport::new(display_dir.join(&file.path), errors).whole(
                KIND,
                "this template is written in Go text/template syntax (the Go maand's); maand \
                 renders tera templates: run `maand template convert` to translate it",
            );
        }
    }
}

struct Walk<'a> {
    display_dir: &'a Path,
    errors: &'a mut Vec<WorkspaceError>,
    files: Vec<JobFile>,
    /// Canonical job directory; no link may resolve outside it.
    root: PathBuf,
    /// Canonical directories currently being walked (to detect link loops).
    ancestors: Vec<PathBuf>,
}

impl Walk<'_> {
    fn report(&mut self, relative: &str, kind: ErrorKind, message: String) {
        let file = if relative.is_empty() {
            self.display_dir.to_path_buf()
        } else {
            self.display_dir.join(relative)
        };
        FileReport::new(file, self.errors).whole(kind, message);
    }

    fn directory(&mut self, dir: &Path, prefix: &str) {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(error) => {
                self.report(
                    prefix,
                    ErrorKind::Io,
                    format!("cannot list the directory: {error}"),
                );
                return;
            }
        };
        let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let raw_name = entry.file_name();
            let Some(name) = raw_name.to_str() else {
                let shown = format!("{prefix}{}", raw_name.to_string_lossy());
                self.report(
                    &shown,
                    KIND,
                    "the file name is not valid UTF-8; rename it using UTF-8 characters"
                        .to_string(),
                );
                continue;
            };
            let relative = format!("{prefix}{name}");
            if name.chars().any(char::is_control) {
                self.report(
                    &relative.escape_debug().to_string(),
                    KIND,
                    "the file name contains a control character such as a newline; rename it"
                        .to_string(),
                );
                continue;
            }
            if prefix.is_empty() && RESERVED_RUNTIME_DIRS.contains(&name) {
                self.report(
                    &relative,
                    KIND,
                    format!(
                        "{name}/ is reserved: workers create data/, logs/ and bin/ inside each job at runtime; rename or remove it from the job directory"
                    ),
                );
                continue;
            }
            self.entry(&entry.path(), &relative);
        }
    }

    fn entry(&mut self, path: &Path, relative: &str) {
        let metadata = match fs::symlink_metadata(path) {
            Ok(metadata) => metadata,
            Err(error) => {
                self.report(
                    relative,
                    ErrorKind::Io,
                    format!("cannot inspect the file: {error}"),
                );
                return;
            }
        };
        let file_type = metadata.file_type();
        if file_type.is_symlink() {
            self.symlink(path, relative);
        } else if file_type.is_dir() {
            let canonical = match fs::canonicalize(path) {
                Ok(canonical) => canonical,
                Err(error) => {
                    self.report(
                        relative,
                        ErrorKind::Io,
                        format!("cannot open the directory: {error}"),
                    );
                    return;
                }
            };
            self.descend(&canonical, relative);
        } else if file_type.is_file() {
            self.read(path, relative, &metadata);
        } else {
            self.report(relative, KIND, format!("{}; only regular files, directories and symlinks inside the job are allowed, remove it", special_kind(&file_type)));
        }
    }

    fn symlink(&mut self, path: &Path, relative: &str) {
        let target_text = fs::read_link(path)
            .map(|t| t.display().to_string())
            .unwrap_or_else(|_| "?".to_string());
        let target = match fs::canonicalize(path) {
            Ok(target) => target,
            Err(_) => {
                self.report(
                    relative,
                    KIND,
                    format!("the symlink points to {target_text}, which does not exist; fix or remove the link"),
                );
                return;
            }
        };
        if !target.starts_with(&self.root) {
            self.report(
                relative,
                KIND,
                format!(
                    "the symlink points to {}{}, outside the job directory; copy the file into the job instead, or remove the link",
                    target.display(),
                    if Path::new(&target_text) == target { String::new() } else { format!(" (via {target_text})") }
                ),
            );
            return;
        }
        let metadata = match fs::metadata(&target) {
            Ok(metadata) => metadata,
            Err(error) => {
                self.report(
                    relative,
                    ErrorKind::Io,
                    format!(
                        "cannot inspect the link target {}: {error}",
                        target.display()
                    ),
                );
                return;
            }
        };
        if metadata.is_dir() {
            self.descend(&target, relative);
        } else if metadata.is_file() {
            self.read(&target, relative, &metadata);
        } else {
            self.report(
                relative,
                KIND,
                format!(
                    "the symlink points to {}, which is a {}; remove the link",
                    target.display(),
                    special_kind(&metadata.file_type())
                ),
            );
        }
    }

    fn descend(&mut self, canonical: &Path, relative: &str) {
        if self.ancestors.iter().any(|a| a == canonical) {
            self.report(
                relative,
                KIND,
                "the symlink leads back into a directory that contains it (a loop); remove the link".to_string(),
            );
            return;
        }
        self.ancestors.push(canonical.to_path_buf());
        self.directory(canonical, &format!("{relative}/"));
        self.ancestors.pop();
    }

    fn read(&mut self, path: &Path, relative: &str, metadata: &fs::Metadata) {
        match fs::read(path) {
            Ok(content) => self.files.push(JobFile {
                path: relative.to_string(),
                content,
                executable: metadata.permissions().mode() & 0o111 != 0,
            }),
            Err(error) => self.report(
                relative,
                ErrorKind::Io,
                format!("cannot read the file: {error}"),
            ),
        }
    }
}

fn special_kind(file_type: &fs::FileType) -> &'static str {
    if file_type.is_socket() {
        "this is a socket"
    } else if file_type.is_fifo() {
        "this is a named pipe (FIFO)"
    } else if file_type.is_block_device() || file_type.is_char_device() {
        "this is a device file"
    } else {
        "this is not a regular file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn read(dir: &Path) -> (Vec<JobFile>, Vec<WorkspaceError>) {
        let mut errors = Vec::new();
        let files = read_job_files(dir, Path::new("workspace/jobs/api"), &mut errors);
        (files, errors)
    }

    fn paths(files: &[JobFile]) -> Vec<&str> {
        files.iter().map(|f| f.path.as_str()).collect()
    }

    #[test]
    fn files_are_listed_recursively_sorted_with_slash_paths() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("_modules/lib")).unwrap();
        fs::write(dir.path().join("Makefile"), "start:\n").unwrap();
        fs::write(dir.path().join("_modules/lib/x.py"), "x").unwrap();
        fs::write(dir.path().join("_modules/command_a.py"), "a").unwrap();
        let (files, errors) = read(dir.path());
        assert!(errors.is_empty(), "{errors:#?}");
        assert_eq!(
            paths(&files),
            ["Makefile", "_modules/command_a.py", "_modules/lib/x.py"]
        );
        assert_eq!(files[0].content, b"start:\n");
    }

    #[test]
    fn execute_bit_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("run.sh"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(dir.path().join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(dir.path().join("plain"), "").unwrap();
        fs::set_permissions(dir.path().join("plain"), fs::Permissions::from_mode(0o644)).unwrap();
        let (files, _) = read(dir.path());
        let flags: Vec<_> = files
            .iter()
            .map(|f| (f.path.as_str(), f.executable))
            .collect();
        assert_eq!(flags, [("plain", false), ("run.sh", true)]);
    }

    #[test]
    fn reserved_top_level_directories_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["data", "logs", "bin"] {
            fs::create_dir(dir.path().join(name)).unwrap();
        }
        fs::create_dir_all(dir.path().join("src/data")).unwrap();
        let (_, errors) = read(dir.path());
        let files: Vec<_> = errors.iter().map(|e| e.file.clone()).collect();
        assert_eq!(
            files,
            ["bin", "data", "logs"].map(|n| PathBuf::from("workspace/jobs/api").join(n))
        );
        assert!(
            errors[0].message.contains("reserved"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn symlink_outside_the_job_is_rejected_naming_its_target() {
        let dir = tempfile::tempdir().unwrap();
        symlink("/etc/passwd", dir.path().join("passwd")).unwrap();
        let (files, errors) = read(dir.path());
        assert!(files.is_empty());
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].file, PathBuf::from("workspace/jobs/api/passwd"));
        assert!(
            errors[0].message.contains("/etc/passwd"),
            "{}",
            errors[0].message
        );
        assert!(
            errors[0].message.contains("outside the job directory"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn relative_symlink_escaping_the_job_is_rejected() {
        let outer = tempfile::tempdir().unwrap();
        let job = outer.path().join("api");
        fs::create_dir(&job).unwrap();
        fs::write(outer.path().join("secret"), "s").unwrap();
        symlink("../secret", job.join("link")).unwrap();
        let (_, errors) = read(&job);
        assert_eq!(errors.len(), 1, "{errors:#?}");
    }

    #[test]
    fn symlink_inside_the_job_is_read_as_its_target() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("real.conf"), "content").unwrap();
        symlink("real.conf", dir.path().join("alias.conf")).unwrap();
        let (files, errors) = read(dir.path());
        assert!(errors.is_empty(), "{errors:#?}");
        assert_eq!(paths(&files), ["alias.conf", "real.conf"]);
        assert_eq!(files[0].content, b"content");
    }

    #[test]
    fn symlinked_directory_inside_the_job_is_walked() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("conf")).unwrap();
        fs::write(dir.path().join("conf/a"), "a").unwrap();
        symlink("conf", dir.path().join("conf2")).unwrap();
        let (files, errors) = read(dir.path());
        assert!(errors.is_empty(), "{errors:#?}");
        assert_eq!(paths(&files), ["conf/a", "conf2/a"]);
    }

    #[test]
    fn symlink_loop_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("conf")).unwrap();
        symlink("..", dir.path().join("conf/up")).unwrap();
        let (_, errors) = read(dir.path());
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert_eq!(errors[0].file, PathBuf::from("workspace/jobs/api/conf/up"));
        assert!(errors[0].message.contains("loop"));
    }

    #[test]
    fn dangling_symlink_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        symlink("missing", dir.path().join("link")).unwrap();
        let (_, errors) = read(dir.path());
        assert!(
            errors[0].message.contains("does not exist"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn file_name_with_newline_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("bad\nname"), "").unwrap();
        let (files, errors) = read(dir.path());
        assert!(files.is_empty());
        assert!(
            errors[0].message.contains("control character"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn non_utf8_file_name_is_rejected() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let name = std::ffi::OsStr::from_bytes(b"bad\xff");
        fs::write(dir.path().join(name), "").unwrap();
        let (_, errors) = read(dir.path());
        assert!(errors[0].message.contains("UTF-8"), "{}", errors[0].message);
    }

    #[test]
    fn sockets_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let _listener = std::os::unix::net::UnixListener::bind(dir.path().join("sock")).unwrap();
        let (_, errors) = read(dir.path());
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].message.contains("socket"),
            "{}",
            errors[0].message
        );
    }
}
