//! Errors found while loading a workspace: one [`WorkspaceError`] per problem, gathered
//! into [`WorkspaceErrors`] so an operator sees every mistake in one pass. Owns only the
//! error vocabulary and the collector used by the parsers; it never decides validity itself.

use std::fmt;
use std::path::PathBuf;

/// The class of a workspace problem. `Display` prints the stable error name (for example
/// `ErrInvalidManifest`), matching the names operators know from the reference docs where
/// one exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    /// A workspace file or directory could not be read.
    Io,
    /// `workers.json` is malformed: bad JSON, host, label, tag, capacity or duplicate host.
    InvalidWorkerJson,
    /// `disabled.json` is malformed or names unknown jobs/workers.
    InvalidDisabledJson,
    /// `bucket.conf` is not valid TOML or holds a value that cannot become a variable.
    InvalidBucketConf,
    /// `port_min` / `port_max` in `bucket.conf` are not ports or are in the wrong order.
    InvalidPortRange,
    /// The `job_config_selector` from `maand.conf` is not a safe file-name fragment.
    InvalidJobConfigSelector,
    /// `bucket.jobs[.<selector>].conf` is malformed or has a section for an unknown job.
    InvalidJobConfig,
    /// A reservation in `bucket.jobs[.<selector>].conf` lies outside the manifest bounds.
    UnsupportedResourceConfiguration,
    /// A job directory name is not allowed.
    InvalidJob,
    /// A file inside a job directory is not allowed (reserved dir, escaping symlink, socket…).
    InvalidJobFile,
    /// `vars.toml` of a job is malformed.
    InvalidJobVars,
    /// `manifest.json` is malformed or violates a manifest rule.
    InvalidManifest,
    /// A version string is malformed, or missing where a demand requires it.
    InvalidJobVersion,
    /// A port name in `resources.ports` is not a lowercase identifier.
    PortKeyFormat,
    /// A port value is neither `{}` nor an integer in 1..=65535.
    InvalidManifestPort,
    /// Two ports in the bucket share a fixed number or a name.
    PortConflict,
    /// A command's script under `_modules/` is missing or ambiguous.
    InvalidJobCommandScript,
    /// A command demand is partial, self-referencing or names an unknown job/command.
    InvalidJobCommandDemand,
    /// The upstream job's version is outside a demand's `min_version` / `max_version`.
    JobCommandDemandVersionMismatch,
    /// Command demands form a cycle between jobs.
    CircularJobCommandDependency,
}

impl ErrorKind {
    /// The stable name printed for this kind.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Io => "ErrWorkspaceIO",
            ErrorKind::InvalidWorkerJson => "ErrInvalidWorkerJSON",
            ErrorKind::InvalidDisabledJson => "ErrInvalidDisabledJSON",
            ErrorKind::InvalidBucketConf => "ErrInvalidBucketConf",
            ErrorKind::InvalidPortRange => "ErrInvalidPortRange",
            ErrorKind::InvalidJobConfigSelector => "ErrInvalidJobConfigSelector",
            ErrorKind::InvalidJobConfig => "ErrInvalidJobConfig",
            ErrorKind::UnsupportedResourceConfiguration => "ErrUnsupportedResourceConfiguration",
            ErrorKind::InvalidJob => "ErrInvalidJob",
            ErrorKind::InvalidJobFile => "ErrInvalidJobFile",
            ErrorKind::InvalidJobVars => "ErrInvalidJobVars",
            ErrorKind::InvalidManifest => "ErrInvalidManifest",
            ErrorKind::InvalidJobVersion => "ErrInvalidJobVersion",
            ErrorKind::PortKeyFormat => "ErrPortKeyFormat",
            ErrorKind::InvalidManifestPort => "ErrInvalidManifestPort",
            ErrorKind::PortConflict => "ErrPortConflict",
            ErrorKind::InvalidJobCommandScript => "ErrInvalidJobCommandScript",
            ErrorKind::InvalidJobCommandDemand => "ErrInvalidJobCommandDemand",
            ErrorKind::JobCommandDemandVersionMismatch => "ErrJobCommandDemandVersionMismatch",
            ErrorKind::CircularJobCommandDependency => "ErrCircularJobCommandDependency",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One problem in the workspace.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct WorkspaceError {
    /// The offending file, relative to the bucket (e.g. `workspace/jobs/api/manifest.json`).
    pub file: PathBuf,
    /// Where inside the file: a JSON path (`resources.ports.http_port`, `[2].host`) or a
    /// TOML key (`api.memory`). `None` when the problem concerns the whole file.
    pub location: Option<String>,
    /// The class of problem.
    pub kind: ErrorKind,
    /// What is wrong and what to change.
    pub message: String,
}

impl fmt::Display for WorkspaceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(location) = &self.location {
            write!(f, ": {location}")?;
        }
        write!(f, ": {}: {}", self.kind, self.message)
    }
}

/// Something in the workspace that works but should change (for example a field spelled the
/// way the Go maand used to spell it). It never stops a load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceWarning {
    /// The file to change, relative to the bucket.
    pub file: PathBuf,
    /// What to change and why.
    pub message: String,
}

impl fmt::Display for WorkspaceWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.message)
    }
}

/// Every problem found while loading a workspace, sorted by file then location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceErrors {
    errors: Vec<WorkspaceError>,
}

impl WorkspaceErrors {
    /// Sorts the problems by file, then location (whole-file problems first); problems at
    /// the same place keep the order in which they were found.
    pub(crate) fn new(mut errors: Vec<WorkspaceError>) -> Self {
        errors.sort_by(|a, b| (&a.file, &a.location).cmp(&(&b.file, &b.location)));
        WorkspaceErrors { errors }
    }

    /// The problems, sorted by file then location.
    pub fn errors(&self) -> &[WorkspaceError] {
        &self.errors
    }

    /// How many problems were found (never zero).
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Always `false`: a `WorkspaceErrors` is only built when something is wrong.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// Whether any problem has the given kind.
    pub fn contains_kind(&self, kind: ErrorKind) -> bool {
        self.errors.iter().any(|e| e.kind == kind)
    }
}

impl fmt::Display for WorkspaceErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for WorkspaceErrors {}

impl IntoIterator for WorkspaceErrors {
    type Item = WorkspaceError;
    type IntoIter = std::vec::IntoIter<WorkspaceError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.into_iter()
    }
}

/// Records problems for one file into the load-wide list.
pub(crate) struct FileReport<'a> {
    file: PathBuf,
    errors: &'a mut Vec<WorkspaceError>,
}

impl<'a> FileReport<'a> {
    pub(crate) fn new(file: PathBuf, errors: &'a mut Vec<WorkspaceError>) -> Self {
        FileReport { file, errors }
    }

    /// How many problems have been recorded so far in the whole load (for "did this step
    /// add any?" comparisons).
    pub(crate) fn count(&self) -> usize {
        self.errors.len()
    }

    /// Records a problem at `location` (an empty location means the whole file).
    pub(crate) fn at(&mut self, location: &str, kind: ErrorKind, message: impl Into<String>) {
        let location = (!location.is_empty()).then(|| location.to_string());
        self.errors.push(WorkspaceError {
            file: self.file.clone(),
            location,
            kind,
            message: message.into(),
        });
    }

    /// Records a problem about the whole file.
    pub(crate) fn whole(&mut self, kind: ErrorKind, message: impl Into<String>) {
        self.at("", kind, message);
    }
}
