//! `maand template`: work with job templates. `template convert` translates the `.tpl` files of
//! a workspace written for the Go maand (Go `text/template`) into tera, and renames the Go
//! maand's old manifest keys; the translation itself is [`crate::templates::go`].
//! `template render JOB [--worker IP] [FILE]` prints what a job's templates render to for one
//! allocation, from the catalog as it stands: it opens no run, takes no lock, records nothing
//! and contacts no worker.

use std::io::Write;
use std::ops::Range;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use clap::Subcommand;

use crate::bucket::{self, write_atomically, Bucket};
use crate::deploy::render::render_job_templates;
use crate::kv::secret::SecretKey;
use crate::templates::go;

#[derive(Debug, Subcommand)]
pub enum TemplateCommand {
    /// Translate job templates written for the Go maand (Go text/template) into tera.
    ///
    /// Walks workspace/jobs/<job>/**/*.tpl of every job (or of the JOBs named). Each file in
    /// Go syntax is rewritten whole (temporary file + rename, mode kept) so that it renders
    /// exactly what the Go maand rendered; files already in tera are left alone, so running
    /// it twice changes nothing. A file using a construct the converter cannot express
    /// exactly is reported as jobs/<job>/<path>:line:col and left untouched; the others are
    /// still converted and the command fails at the end. The job's manifest.json also gets
    /// the Go maand's old keys renamed (deploy_parallel_count -> max_concurrent_starts,
    /// update_parallel_count -> max_concurrent_upgrades), everything else kept as written.
    /// Contacts no worker and records nothing. See docs/templates.md.
    ///
    /// Examples:
    ///   maand template convert --dry-run
    ///   maand template convert api prometheus
    ///   maand template convert --check
    #[command(verbatim_doc_comment)]
    Convert(ConvertArgs),
    /// Print what a job's templates render to for one of its allocations, from the catalog
    /// as it stands (after `maand build`), like `helm template`. Contacts no worker and
    /// records nothing.
    ///
    /// Templates see exactly what deploy staging gives them: the allocation's context and
    /// the KV its job may read. KV that pre_deploy hooks would write during a deploy is not
    /// there yet. See docs/templates.md.
    ///
    /// Examples:
    ///   maand template render api
    ///   maand template render api config.yml.tpl --worker 127.9.0.2
    #[command(verbatim_doc_comment)]
    Render(TemplateRenderArgs),
}

impl TemplateCommand {
    /// The command name as recorded in the journal.
    pub fn name(&self) -> &'static str {
        match self {
            TemplateCommand::Convert(_) => "template convert",
            TemplateCommand::Render(_) => "template render",
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct ConvertArgs {
    /// Write nothing; list the files that still need converting (Go templates, old manifest
    /// keys) and fail if there is any. For CI.
    #[arg(long, conflicts_with = "dry_run")]
    pub check: bool,
    /// Write nothing; print what would change as a unified diff.
    #[arg(long)]
    pub dry_run: bool,
    /// Jobs to convert (directories under workspace/jobs). Default: every job.
    #[arg(value_name = "JOB")]
    pub jobs: Vec<String>,
}

pub fn run(bucket: &Bucket, command: &TemplateCommand) -> anyhow::Result<i32> {
    match command {
        TemplateCommand::Convert(args) => convert(bucket, args),
        TemplateCommand::Render(args) => render(bucket, args),
    }
}

#[derive(Debug, clap::Args)]
pub struct TemplateRenderArgs {
    /// The job whose templates to render.
    pub job: String,
    /// Render for the job's allocation on this worker. Without it: the job's first worker in
    /// workers.json order (stderr says which, when the job has several).
    #[arg(short, long, value_name = "IP")]
    pub worker: Option<String>,
    /// One template, relative to the job directory (`conf/app.yml.tpl`, or `conf/app.yml`).
    /// Its output is printed exactly, with no header. Without it: every .tpl file of the job,
    /// each after a `# <file>` header line.
    pub file: Option<String>,
}

fn render(bucket: &Bucket, args: &TemplateRenderArgs) -> anyhow::Result<i32> {
    let conn = bucket::open_checked(bucket)?;
    // Rendering only reads; make the connection refuse writes so nothing can be recorded.
    conn.pragma_update(None, "query_only", "ON")?;
    let kv_key = SecretKey::load(&bucket.kv_key_path()).ok();
    let rendered = render_job_templates(
        &conn,
        kv_key,
        &args.job,
        args.worker.as_deref(),
        args.file.as_deref(),
    )?;
    if args.worker.is_none() && rendered.workers.len() > 1 {
        eprintln!(
            "template render: job {} has {} allocations ({}); rendering for {}, choose another with --worker",
            args.job,
            rendered.workers.len(),
            rendered.workers.join(", "),
            rendered.worker
        );
    }
    let mut out = std::io::stdout().lock();
    if args.file.is_some() {
        for (_, content) in &rendered.files {
            out.write_all(content)?;
        }
    } else {
        for (path, content) in &rendered.files {
            writeln!(out, "# {path}")?;
            out.write_all(content)?;
            if !content.is_empty() && !content.ends_with(b"\n") {
                writeln!(out)?;
            }
        }
    }
    out.flush()?;
    Ok(0)
}

/// What converting one file amounts to.
enum Outcome {
    /// New content for the file (template or manifest).
    Rewrite {
        path: PathBuf,
        old: String,
        new: String,
    },
    AlreadyTera,
    /// A manifest without old keys.
    Unchanged,
    /// Why this file cannot be converted (already prefixed with its name).
    Problem(String),
}

fn convert(bucket: &Bucket, args: &ConvertArgs) -> anyhow::Result<i32> {
    let jobs_dir = bucket.workspace_dir().join("jobs");
    if !jobs_dir.is_dir() {
        anyhow::bail!(
            "{} does not exist: run this in a bucket directory (or pass --bucket)",
            jobs_dir.display()
        );
    }
    let jobs = selected_jobs(&jobs_dir, &args.jobs)?;
    let mut outcomes = Vec::new();
    for job in &jobs {
        let job_dir = jobs_dir.join(job);
        let mut templates = Vec::new();
        let mut problems = Vec::new();
        find_templates(&job_dir, &job_dir, job, &mut templates, &mut problems);
        templates.sort();
        outcomes.extend(problems.into_iter().map(Outcome::Problem));
        for path in templates {
            outcomes.push(convert_template(job, &job_dir, &path));
        }
        outcomes.push(convert_manifest(job, &job_dir));
    }

    let (mut converted, mut tera, mut refused) = (0, 0, 0);
    let mut pending = 0;
    for outcome in &outcomes {
        match outcome {
            Outcome::Rewrite { path, old, new } => {
                let shown = shown_path(bucket, path);
                pending += 1;
                if args.check {
                    println!("{shown}: needs `maand template convert`");
                } else if args.dry_run {
                    print!(
                        "{}",
                        similar::TextDiff::from_lines(old, new)
                            .unified_diff()
                            .header(&format!("a/{shown}"), &format!("b/{shown}"))
                    );
                } else {
                    let mode = std::fs::metadata(path)
                        .map(|metadata| metadata.permissions().mode() & 0o7777)
                        .unwrap_or(0o644);
                    match write_atomically(path, new.as_bytes(), mode) {
                        Ok(()) => {
                            converted += 1;
                            println!("converted {shown}");
                        }
                        Err(error) => {
                            refused += 1;
                            eprintln!("error: {shown}: cannot write: {error}");
                        }
                    }
                }
            }
            Outcome::AlreadyTera => tera += 1,
            Outcome::Unchanged => {}
            Outcome::Problem(problem) => {
                refused += 1;
                eprintln!("error: {problem}");
            }
        }
    }
    if args.check {
        println!("{pending} file(s) need converting, {refused} cannot be converted");
        return Ok(i32::from(pending + refused > 0));
    }
    if args.dry_run {
        converted = pending;
        println!("would convert {converted} files, {tera} already tera, {refused} refused");
    } else {
        println!("converted {converted} files, {tera} already tera, {refused} refused");
    }
    Ok(i32::from(refused > 0))
}

/// The jobs to walk: the named ones (each must exist), or every job directory.
fn selected_jobs(jobs_dir: &Path, named: &[String]) -> anyhow::Result<Vec<String>> {
    if !named.is_empty() {
        for job in named {
            if job.contains('/') || !jobs_dir.join(job).is_dir() {
                anyhow::bail!(
                    "unknown job `{job}`: there is no directory workspace/jobs/{job}; name jobs \
                     as their directories under workspace/jobs"
                );
            }
        }
        return Ok(named.to_vec());
    }
    let mut jobs: Vec<String> = std::fs::read_dir(jobs_dir)?
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
        .filter_map(|entry| entry.file_name().to_str().map(str::to_string))
        .collect();
    jobs.sort();
    Ok(jobs)
}

/// `workspace/jobs/<job>/<path>` shown relative to the workspace: `jobs/<job>/<path>`.
fn shown_path(bucket: &Bucket, path: &Path) -> String {
    path.strip_prefix(bucket.workspace_dir())
        .unwrap_or(path)
        .display()
        .to_string()
}

fn job_relative(job: &str, job_dir: &Path, path: &Path) -> String {
    format!(
        "jobs/{job}/{}",
        path.strip_prefix(job_dir).unwrap_or(path).display()
    )
}

/// Collects the regular `.tpl` files under `dir`; symlinks are never followed (one that
/// leaves the job directory is a problem, one inside it is converted through its target).
fn find_templates(
    dir: &Path,
    job_dir: &Path,
    job: &str,
    templates: &mut Vec<PathBuf>,
    problems: &mut Vec<String>,
) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => {
            problems.push(format!(
                "{}: cannot list the directory: {error}",
                job_relative(job, job_dir, dir)
            ));
            return;
        }
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let is_template = path.extension().is_some_and(|ext| ext == "tpl");
        if kind.is_symlink() {
            let inside = std::fs::canonicalize(&path)
                .ok()
                .zip(std::fs::canonicalize(job_dir).ok())
                .is_some_and(|(target, root)| target.starts_with(root));
            if !inside {
                problems.push(format!(
                    "{}: a symlink that points outside the job directory (or nowhere); \
                     replace it with the file itself",
                    job_relative(job, job_dir, &path)
                ));
            }
        } else if kind.is_dir() {
            find_templates(&path, job_dir, job, templates, problems);
        } else if kind.is_file() && is_template {
            templates.push(path);
        }
    }
}

fn convert_template(job: &str, job_dir: &Path, path: &Path) -> Outcome {
    let shown = job_relative(job, job_dir, path);
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) => return Outcome::Problem(format!("{shown}: cannot read the file: {error}")),
    };
    let text = match String::from_utf8(bytes) {
        Ok(text) if !text.contains('\0') => text,
        _ => {
            return Outcome::Problem(format!(
                "{shown}: a binary file (NUL bytes or not UTF-8), not a text template; rename \
                 it without the .tpl suffix or remove it"
            ))
        }
    };
    match go::convert(&text) {
        Ok(None) => Outcome::AlreadyTera,
        Ok(Some(new)) => Outcome::Rewrite {
            path: path.to_path_buf(),
            old: text,
            new,
        },
        Err(error) => Outcome::Problem(format!("{shown}:{error}")),
    }
}

/// The Go maand's old manifest keys and today's names.
const RENAMED_KEYS: &[(&str, &str)] = &[
    ("deploy_parallel_count", "max_concurrent_starts"),
    ("update_parallel_count", "max_concurrent_upgrades"),
];

fn convert_manifest(job: &str, job_dir: &Path) -> Outcome {
    let path = job_dir.join("manifest.json");
    let shown = format!("jobs/{job}/manifest.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        // A missing or unreadable manifest is `maand build`'s to report.
        return Outcome::Unchanged;
    };
    match rename_manifest_keys(&text) {
        Ok(None) => Outcome::Unchanged,
        Ok(Some(new)) => Outcome::Rewrite {
            path,
            old: text,
            new,
        },
        Err(message) => Outcome::Problem(format!("{shown}: {message}")),
    }
}

/// `manifest_json` with the old top-level keys renamed in place (everything else byte for
/// byte as written); `None` when it has none. Both spellings of one setting is an error.
pub(crate) fn rename_manifest_keys(manifest_json: &str) -> Result<Option<String>, String> {
    let parsed: serde_json::Value = serde_json::from_str(manifest_json)
        .map_err(|error| format!("not valid JSON ({error}); fix it, then convert again"))?;
    let Some(object) = parsed.as_object() else {
        return Ok(None);
    };
    let mut renames = Vec::new();
    for (old, new) in RENAMED_KEYS {
        if object.contains_key(*old) && object.contains_key(*new) {
            return Err(format!(
                "has both `{old}` (the Go maand's old name) and `{new}`; keep only `{new}`"
            ));
        }
    }
    for (range, key) in top_level_keys(manifest_json) {
        if let Some((_, new)) = RENAMED_KEYS.iter().find(|(old, _)| *old == key) {
            renames.push((range, format!("\"{new}\"")));
        }
    }
    if renames.is_empty() {
        return Ok(None);
    }
    let mut out = manifest_json.to_string();
    for (range, replacement) in renames.into_iter().rev() {
        out.replace_range(range, &replacement);
    }
    Ok(Some(out))
}

/// The byte ranges (quotes included) and decoded names of the keys of the top-level object
/// of a valid JSON text.
fn top_level_keys(json: &str) -> Vec<(Range<usize>, String)> {
    let bytes = json.as_bytes();
    let mut keys = Vec::new();
    let mut depth = 0usize;
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            b'"' => {
                let start = at;
                at += 1;
                while at < bytes.len() && bytes[at] != b'"' {
                    at += if bytes[at] == b'\\' { 2 } else { 1 };
                }
                let range = start..at + 1;
                let next = json[at + 1..].trim_start().as_bytes().first();
                if depth == 1 && next == Some(&b':') {
                    if let Ok(name) = serde_json::from_str::<String>(&json[range.clone()]) {
                        keys.push((range, name));
                    }
                }
            }
            _ => {}
        }
        at += 1;
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_manifest_keys_are_renamed_in_place() {
        let text = "{\n  \"version\": \"1\",\n  \"deploy_parallel_count\": 2,\n  \"x\": {\"update_parallel_count\": 1},\n  \"update_parallel_count\" : 3\n}\n";
        assert_eq!(
            rename_manifest_keys(text).unwrap().unwrap(),
            "{\n  \"version\": \"1\",\n  \"max_concurrent_starts\": 2,\n  \"x\": {\"update_parallel_count\": 1},\n  \"max_concurrent_upgrades\" : 3\n}\n"
        );
    }

    #[test]
    fn manifests_without_old_keys_are_left_alone() {
        assert_eq!(
            rename_manifest_keys("{\"a\": \"deploy_parallel_count\"}"),
            Ok(None)
        );
    }

    #[test]
    fn both_spellings_of_one_setting_are_refused() {
        let error =
            rename_manifest_keys("{\"deploy_parallel_count\": 1, \"max_concurrent_starts\": 2}")
                .unwrap_err();
        assert!(
            error.contains("keep only `max_concurrent_starts`"),
            "{error}"
        );
    }
}
