//! Parses and validates a bucket's `workspace/` directory into a typed [`Workspace`].
//!
//! This module owns the meaning of every workspace file — `workers.json`, `disabled.json`,
//! `bucket.conf`, `bucket.jobs[.<selector>].conf`, and each `jobs/<job>/` directory with its
//! `manifest.json`, `vars.toml`, `_modules/` scripts and other files — and every rule that
//! can be checked from those files alone, including the cross-job command demands and the
//! `deployment_seq` they imply. It reads files and nothing else (the one writer is
//! [`create_job`], the scaffold of `maand job create`): it never touches the database, never
//! contacts workers, never prints, and never stops at the first mistake — [`load`] returns
//! every problem it finds, each naming the file, the place inside it, and what to change.
//!
//! Placement (label matching), worker capacity sums, port number assignment and
//! `min_allocations_count` depend on the catalog and are decided by the build step, which
//! uses [`parse_memory_mb`], [`parse_cpu_mhz`] and [`parse_version`] from here.

mod bucket_conf;
mod demands;
mod disabled;
mod errors;
mod files;
mod go_convert;
mod json_reader;
mod manifest;
mod names;
mod ports;
mod scaffold;
mod units;
mod vars;
mod version;
mod workers;

pub use go_convert::{plan_go_conversion, Conversion};
pub use scaffold::create_job;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

pub use bucket_conf::{
    job_config_file_name, BucketConf, Reservation, DEFAULT_PORT_MAX, DEFAULT_PORT_MIN,
};
pub use disabled::{Disabled, DisabledJob};
pub use errors::{ErrorKind, WorkspaceError, WorkspaceErrors, WorkspaceWarning};
pub use files::JobFile;
pub use manifest::{
    Bounds, CertSpec, Command, CommandEvent, CommandScript, Demand, HealthCheck, HealthWait,
    HttpScheme, Manifest, PortSpec, Probe, Resources, RestartPolicy, ScriptRuntime,
};
pub use names::{
    parse_host, validate_job_name, validate_label, InvalidName, RESERVED_RUNTIME_DIRS,
};
pub use units::{parse_cpu_mhz, parse_memory_mb, Measure, QuantityError};
pub use version::{parse_version, VersionError};
pub use workers::{Worker, DEFAULT_LABEL};

use errors::FileReport;

/// A fully validated workspace.
#[derive(Debug, Clone, PartialEq)]
pub struct Workspace {
    /// Workers in `workers.json` order (`position` = index).
    pub workers: Vec<Worker>,
    /// What `disabled.json` drains (empty when the file is absent).
    pub disabled: Disabled,
    /// `bucket.conf` (defaults when the file is absent).
    pub bucket_conf: BucketConf,
    /// Per-job reservations from `bucket.jobs[.<selector>].conf` (empty when absent).
    pub job_reservations: BTreeMap<String, Reservation>,
    /// Jobs by name, one per directory under `jobs/`.
    pub jobs: BTreeMap<String, Job>,
    /// What works but should change, in file order; for the operator to see.
    pub warnings: Vec<WorkspaceWarning>,
}

/// One job directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// The directory name (see [`validate_job_name`] for the rule).
    pub name: String,
    /// The parsed `manifest.json`.
    pub manifest: Manifest,
    /// Every regular file of the job directory, sorted by path (manifest and scripts
    /// included).
    pub files: Vec<JobFile>,
    /// `vars.toml` as text values (empty when absent).
    pub vars: BTreeMap<String, String>,
    /// Deploy wave: 0 when the job demands nothing, otherwise one more than the highest
    /// wave among the jobs it demands (the longest demand chain below it).
    pub deployment_seq: u32,
}

impl Job {
    /// The file at `path` (relative, `/`-separated), if present.
    pub fn file(&self, path: &str) -> Option<&JobFile> {
        self.files
            .binary_search_by(|f| f.path.as_str().cmp(path))
            .ok()
            .map(|i| &self.files[i])
    }
}

/// A job's memory/CPU figures after combining manifest bounds with its reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobResources {
    /// Lower memory bound in MB (0 = none).
    pub min_memory_mb: u64,
    /// Upper memory bound in MB (0 = none).
    pub max_memory_mb: u64,
    /// Memory charged to each worker hosting the job, in MB.
    pub memory_mb: u64,
    /// Lower CPU bound in MHz (0 = none).
    pub min_cpu_mhz: u64,
    /// Upper CPU bound in MHz (0 = none).
    pub max_cpu_mhz: u64,
    /// CPU charged to each worker hosting the job, in MHz.
    pub cpu_mhz: u64,
}

impl Workspace {
    /// The deploy wave of `job`, if the job exists.
    pub fn deployment_seq(&self, job: &str) -> Option<u32> {
        self.jobs.get(job).map(|j| j.deployment_seq)
    }

    /// The worker with canonical host `host`.
    pub fn worker(&self, host: &str) -> Option<&Worker> {
        self.workers.iter().find(|w| w.host == host)
    }

    /// Memory/CPU of `job`: the reservation from `bucket.jobs*.conf` when set, else the
    /// manifest max. A reservation for a job whose manifest sets no bounds becomes both
    /// bounds. `None` when the job does not exist.
    pub fn resources(&self, job: &str) -> Option<JobResources> {
        let manifest = &self.jobs.get(job)?.manifest;
        let reservation = self.job_reservations.get(job);
        let (min_memory_mb, max_memory_mb, memory_mb) = combine(
            manifest.resources.memory_mb,
            reservation.and_then(|r| r.memory_mb),
        );
        let (min_cpu_mhz, max_cpu_mhz, cpu_mhz) = combine(
            manifest.resources.cpu_mhz,
            reservation.and_then(|r| r.cpu_mhz),
        );
        Some(JobResources {
            min_memory_mb,
            max_memory_mb,
            memory_mb,
            min_cpu_mhz,
            max_cpu_mhz,
            cpu_mhz,
        })
    }
}

fn combine(bounds: Bounds, reserved: Option<u64>) -> (u64, u64, u64) {
    match reserved {
        Some(amount) if bounds.is_unset() => (amount, amount, amount),
        Some(amount) => (bounds.min, bounds.max, amount),
        None => (bounds.min, bounds.max, bounds.max),
    }
}

/// Reads and validates the workspace at `workspace_dir` (the bucket's `workspace/`).
///
/// `job_config_selector` comes from `maand.conf`: `""` reads `bucket.jobs.conf`, `"prod"`
/// reads `bucket.jobs.prod.conf`; a missing reservation file means no reservations.
/// `workers.json` is required; `disabled.json`, `bucket.conf` and `jobs/` are optional.
///
/// On failure, every problem found is returned; error paths are relative to the bucket
/// (`workspace/jobs/api/manifest.json`).
pub fn load(workspace_dir: &Path, job_config_selector: &str) -> Result<Workspace, WorkspaceErrors> {
    let mut errors = Vec::new();
    let root = PathBuf::from(
        workspace_dir
            .file_name()
            .unwrap_or_else(|| "workspace".as_ref()),
    );
    if !workspace_dir.is_dir() {
        FileReport::new(root, &mut errors).whole(
            ErrorKind::Io,
            format!(
                "workspace directory {} does not exist; run maand init in the bucket",
                workspace_dir.display()
            ),
        );
        return Err(WorkspaceErrors::new(errors));
    }

    let loaded_workers = {
        let mut report = FileReport::new(root.join("workers.json"), &mut errors);
        let path = workspace_dir.join("workers.json");
        if path.exists() {
            json_reader::read_file(&path, &mut report)
                .map(|content| workers::parse(&content, &mut report))
        } else {
            report.whole(
                ErrorKind::InvalidWorkerJson,
                "workers.json is missing; create it with the worker list (\"[]\" for none) or run maand init",
            );
            None
        }
    };
    let (workers, known_hosts) = match loaded_workers {
        Some(loaded) => (loaded.workers, loaded.known_hosts),
        None => (Vec::new(), BTreeSet::new()),
    };

    let job_names = list_jobs(workspace_dir, &root, &mut errors);
    let known_jobs: BTreeSet<String> = job_names.iter().cloned().collect();
    let mut drafts = BTreeMap::new();
    let mut warnings = Vec::new();
    for name in &job_names {
        if let Some(draft) = load_job(workspace_dir, &root, name, &mut errors, &mut warnings) {
            drafts.insert(name.clone(), draft);
        }
    }

    let bucket_conf = read_optional(
        workspace_dir,
        &root,
        "bucket.conf",
        &mut errors,
        bucket_conf::parse_bucket_conf,
    )
    .unwrap_or_default();

    let job_reservations = match names::validate_job_config_selector(job_config_selector) {
        Ok(()) => {
            let file_name = job_config_file_name(job_config_selector);
            let reservations = read_optional(
                workspace_dir,
                &root,
                &file_name,
                &mut errors,
                |content, report| bucket_conf::parse_job_reservations(content, &known_jobs, report),
            )
            .unwrap_or_default();
            let mut report = FileReport::new(root.join(&file_name), &mut errors);
            for (job, reservation) in &reservations {
                if let Some(draft) = drafts.get(job) {
                    let resources = &draft.job.manifest.resources;
                    bucket_conf::check_reservation(
                        job,
                        reservation,
                        resources.memory_mb,
                        resources.cpu_mhz,
                        &mut report,
                    );
                }
            }
            reservations
        }
        Err(error) => {
            FileReport::new(PathBuf::from("maand.conf"), &mut errors).at(
                "job_config_selector",
                ErrorKind::InvalidJobConfigSelector,
                error.to_string(),
            );
            BTreeMap::new()
        }
    };

    let disabled = read_optional(
        workspace_dir,
        &root,
        "disabled.json",
        &mut errors,
        |content, report| disabled::parse(content, &known_jobs, &known_hosts, report),
    )
    .unwrap_or_default();

    ports::check(&drafts, &root, &mut errors);
    let sequence = demands::check(&drafts, &known_jobs, &root, &mut errors);

    if !errors.is_empty() {
        return Err(WorkspaceErrors::new(errors));
    }
    let jobs = drafts
        .into_iter()
        .map(|(name, draft)| {
            let mut job = draft.job;
            job.deployment_seq = sequence.get(&name).copied().unwrap_or(0);
            (name, job)
        })
        .collect();
    Ok(Workspace {
        workers,
        disabled,
        bucket_conf,
        job_reservations,
        jobs,
        warnings,
    })
}

/// A job as loaded, with what the cross-job checks need to avoid repeating its errors.
pub(crate) struct JobDraft {
    pub(crate) job: Job,
    /// `version` was present but unreadable (already reported).
    pub(crate) version_unreadable: bool,
    /// Every key of `commands`, including ones dropped for errors.
    pub(crate) declared_commands: BTreeSet<String>,
}

/// Bucket-relative path of a job's manifest, for cross-job error reports.
pub(crate) fn manifest_file(root: &Path, job: &str) -> PathBuf {
    root.join("jobs").join(job).join("manifest.json")
}

fn read_optional<T>(
    workspace_dir: &Path,
    root: &Path,
    name: &str,
    errors: &mut Vec<WorkspaceError>,
    parse: impl FnOnce(&[u8], &mut FileReport<'_>) -> T,
) -> Option<T> {
    let path = workspace_dir.join(name);
    if !path.exists() {
        return None;
    }
    let mut report = FileReport::new(root.join(name), errors);
    let content = json_reader::read_file(&path, &mut report)?;
    Some(parse(&content, &mut report))
}

/// The valid job directory names under `jobs/`, sorted; other entries are reported
/// (directories with bad names, symlinks) or skipped (plain files such as a README).
fn list_jobs(workspace_dir: &Path, root: &Path, errors: &mut Vec<WorkspaceError>) -> Vec<String> {
    let jobs_dir = workspace_dir.join("jobs");
    if !jobs_dir.exists() {
        return Vec::new();
    }
    let entries = match fs::read_dir(&jobs_dir) {
        Ok(entries) => entries,
        Err(error) => {
            FileReport::new(root.join("jobs"), errors).whole(
                ErrorKind::Io,
                format!("cannot list the jobs directory: {error}"),
            );
            return Vec::new();
        }
    };
    let mut names = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let raw_name = entry.file_name();
        let display = root.join("jobs").join(&raw_name);
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        if file_type.is_file() {
            continue;
        }
        let mut report = FileReport::new(display, errors);
        if file_type.is_symlink() {
            report.whole(
                ErrorKind::InvalidJob,
                "job directories must be real directories, not symlinks; move or copy the job into workspace/jobs/",
            );
            continue;
        }
        if !file_type.is_dir() {
            continue;
        }
        let Some(name) = raw_name.to_str() else {
            report.whole(
                ErrorKind::InvalidJob,
                "the job directory name is not valid UTF-8; rename it",
            );
            continue;
        };
        match names::validate_job_name(name) {
            Ok(()) => names.push(name.to_string()),
            Err(error) => report.whole(
                ErrorKind::InvalidJob,
                format!("{error}; rename the directory"),
            ),
        }
    }
    names.sort();
    names
}

fn load_job(
    workspace_dir: &Path,
    root: &Path,
    name: &str,
    errors: &mut Vec<WorkspaceError>,
    warnings: &mut Vec<WorkspaceWarning>,
) -> Option<JobDraft> {
    let display_dir = root.join("jobs").join(name);
    let files = files::read_job_files(&workspace_dir.join("jobs").join(name), &display_dir, errors);
    files::refuse_go_templates(&files, &display_dir, errors);
    let mut report = FileReport::new(display_dir.join("manifest.json"), errors);
    let Some(manifest_file) = files.iter().find(|f| f.path == "manifest.json") else {
        report.whole(
            ErrorKind::InvalidManifest,
            "manifest.json is missing; every job directory needs one (\"{}\" is the smallest valid manifest)",
        );
        return None;
    };
    let parsed = manifest::parse(&manifest_file.content, name, &files, &mut report)?;
    warnings.extend(parsed.warnings.iter().map(|message| WorkspaceWarning {
        file: display_dir.join("manifest.json"),
        message: message.clone(),
    }));

    let vars = match files.iter().find(|f| f.path == "vars.toml") {
        Some(file) => {
            let mut report = FileReport::new(display_dir.join("vars.toml"), errors);
            vars::parse_flat(&file.content, ErrorKind::InvalidJobVars, &mut report)
        }
        None => BTreeMap::new(),
    };

    let has = |path: &str| files.iter().any(|f| f.path == path);
    let mut report = FileReport::new(display_dir, errors);
    match (has("Makefile"), has("Makefile.tpl")) {
        (true, true) => report.whole(
            ErrorKind::InvalidManifest,
            "both Makefile and Makefile.tpl exist; the template would overwrite the Makefile at deploy, keep only one",
        ),
        (false, false) if !parsed.declares_job_control => report.whole(
            ErrorKind::InvalidManifest,
            "no Makefile or Makefile.tpl; add one with start/stop/restart targets, or declare a command with \"executed_on\": [\"job_control\"] to manage the lifecycle",
        ),
        _ => {}
    }

    Some(JobDraft {
        job: Job {
            name: name.to_string(),
            manifest: parsed.manifest,
            files,
            vars,
            deployment_seq: 0,
        },
        version_unreadable: parsed.version_unreadable,
        declared_commands: parsed.declared_commands,
    })
}

#[cfg(test)]
mod tests;
