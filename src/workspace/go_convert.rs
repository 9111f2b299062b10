//! What `maand template convert` must change in a workspace written for the Go maand: every
//! `.tpl` file still in Go `text/template` syntax (translated by [`crate::templates::go`]) and
//! every manifest with the Go maand's old key names. Reads the job directories, writes
//! nothing: the caller shows the plan, diffs it or writes it.

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::templates::go;

/// What converting one file amounts to.
pub enum Conversion {
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

/// The conversions of the named jobs (each must be a directory under `jobs_dir`), or of every
/// job: for each job its problems, then its templates in path order, then its manifest.
pub fn plan_go_conversion(jobs_dir: &Path, named: &[String]) -> anyhow::Result<Vec<Conversion>> {
    let jobs = selected_jobs(jobs_dir, named)?;
    let mut outcomes = Vec::new();
    for job in &jobs {
        let job_dir = jobs_dir.join(job);
        let mut templates = Vec::new();
        let mut problems = Vec::new();
        find_templates(&job_dir, &job_dir, job, &mut templates, &mut problems);
        templates.sort();
        outcomes.extend(problems.into_iter().map(Conversion::Problem));
        for path in templates {
            outcomes.push(convert_template(job, &job_dir, &path));
        }
        outcomes.push(convert_manifest(job, &job_dir));
    }
    Ok(outcomes)
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

fn convert_template(job: &str, job_dir: &Path, path: &Path) -> Conversion {
    let shown = job_relative(job, job_dir, path);
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) => {
            return Conversion::Problem(format!("{shown}: cannot read the file: {error}"))
        }
    };
    let text = match String::from_utf8(bytes) {
        Ok(text) if !text.contains('\0') => text,
        _ => {
            return Conversion::Problem(format!(
                "{shown}: a binary file (NUL bytes or not UTF-8), not a text template; rename \
                 it without the .tpl suffix or remove it"
            ))
        }
    };
    match go::convert(&text) {
        Ok(None) => Conversion::AlreadyTera,
        Ok(Some(new)) => Conversion::Rewrite {
            path: path.to_path_buf(),
            old: text,
            new,
        },
        Err(error) => Conversion::Problem(format!("{shown}:{error}")),
    }
}

/// The Go maand's old manifest keys and today's names.
const RENAMED_KEYS: &[(&str, &str)] = &[
    ("deploy_parallel_count", "max_concurrent_starts"),
    ("update_parallel_count", "max_concurrent_upgrades"),
];

fn convert_manifest(job: &str, job_dir: &Path) -> Conversion {
    let path = job_dir.join("manifest.json");
    let shown = format!("jobs/{job}/manifest.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        // A missing or unreadable manifest is `maand build`'s to report.
        return Conversion::Unchanged;
    };
    match rename_manifest_keys(&text) {
        Ok(None) => Conversion::Unchanged,
        Ok(Some(new)) => Conversion::Rewrite {
            path,
            old: text,
            new,
        },
        Err(message) => Conversion::Problem(format!("{shown}: {message}")),
    }
}

/// `manifest_json` with the old top-level keys renamed in place (everything else byte for
/// byte as written); `None` when it has none. Both spellings of one setting is an error.
fn rename_manifest_keys(manifest_json: &str) -> Result<Option<String>, String> {
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
