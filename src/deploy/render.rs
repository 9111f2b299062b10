//! What a job's `.tpl` files render to for one of its allocations, from the catalog as it
//! stands: the `helm template` of maand. It renders exactly as deploy staging does (same KV
//! snapshot, template context and read scope, through [`stage_tree`]) but stages nothing,
//! contacts no worker and only reads the database.

use std::collections::BTreeMap;

use rusqlite::Connection;

use super::plan::PlanAllocation;
use super::prepare::{
    load_allocations, load_sources, load_upstream, load_workers, render_template, template_context,
    KvSnapshot, PrepareError,
};
use super::stage::{stage_tree, SourceFile};
use crate::kv::secret::SecretKey;

/// Why nothing could be rendered. Messages name the job, worker or file and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("catalog database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Prepare(#[from] PrepareError),
    #[error("job {job} is not in the catalog (jobs: {}); check the name, or run `maand build` after adding it", list(.known))]
    UnknownJob { job: String, known: Vec<String> },
    #[error("job {job} has no allocation (no worker carries all its selectors); add a matching worker to workspace/workers.json and run `maand build`")]
    NoAllocation { job: String },
    #[error("job {job} has no allocation on worker {worker} (it has: {}); pick one of those with --worker", list(.workers))]
    UnknownWorker {
        job: String,
        worker: String,
        workers: Vec<String>,
    },
    #[error("job {job} has no template {file} (templates: {}); name one of those, relative to the job directory", list(.templates))]
    UnknownFile {
        job: String,
        file: String,
        templates: Vec<String>,
    },
    #[error("{file} of job {job} is not a template (only .tpl files are rendered; deploy copies the others as they are)")]
    NotATemplate { job: String, file: String },
    #[error("job {job} has no .tpl files; nothing to render")]
    NoTemplates { job: String },
    #[error("{} of job {job} on worker {worker} failed to render:\n{}", if .errors.len() == 1 { "a template" } else { "templates" }, .errors.join("\n"))]
    Templates {
        job: String,
        worker: String,
        errors: Vec<String>,
    },
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

/// Templates rendered for one allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedTemplates {
    /// The worker of the allocation rendered for.
    pub worker: String,
    /// Every worker with an allocation of the job, in `workers.json` order (the first is the
    /// one used when no worker was asked for).
    pub workers: Vec<String>,
    /// `(template path, rendered bytes)`, sorted by path.
    pub files: Vec<(String, Vec<u8>)>,
}

/// Renders `file` (every `.tpl` of the job when `None`; `config.yml` stands for
/// `config.yml.tpl`) of `job` for its allocation on `worker`, or on its first worker in
/// `workers.json` order when `worker` is `None`. Removed allocations are not candidates;
/// disabled ones are (deploy stages them too). `kv_key` decrypts secrets; without it a
/// template reading one fails.
pub fn render_job_templates(
    conn: &Connection,
    kv_key: Option<SecretKey>,
    job: &str,
    worker: Option<&str>,
    file: Option<&str>,
) -> Result<RenderedTemplates, RenderError> {
    let known: Vec<String> = conn
        .prepare("SELECT name FROM jobs ORDER BY name")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if !known.iter().any(|j| j == job) {
        return Err(RenderError::UnknownJob {
            job: job.to_string(),
            known,
        });
    }
    let positions: BTreeMap<String, i64> = conn
        .prepare("SELECT host, position FROM workers")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut candidates: Vec<PlanAllocation> = load_allocations(conn)?
        .into_iter()
        .filter(|a| a.job == job && !a.removed)
        .collect();
    candidates.sort_by_key(|a| (positions.get(&a.worker).copied(), a.worker.clone()));
    let workers: Vec<String> = candidates.iter().map(|a| a.worker.clone()).collect();
    let alloc = match worker {
        Some(wanted) => candidates
            .iter()
            .find(|a| a.worker == wanted)
            .ok_or_else(|| {
                if candidates.is_empty() {
                    RenderError::NoAllocation {
                        job: job.to_string(),
                    }
                } else {
                    RenderError::UnknownWorker {
                        job: job.to_string(),
                        worker: wanted.to_string(),
                        workers: workers.clone(),
                    }
                }
            })?,
        None => candidates
            .first()
            .ok_or_else(|| RenderError::NoAllocation {
                job: job.to_string(),
            })?,
    };

    let sources = load_sources(conn, &|j| j == job)?
        .remove(job)
        .unwrap_or_default();
    let chosen = choose_templates(job, &sources, file)?;

    let bucket_id: String =
        conn.query_row("SELECT bucket_id FROM bucket WHERE id = 1", [], |r| {
            r.get(0)
        })?;
    let kv = KvSnapshot::load(conn, kv_key)?;
    let upstream = load_upstream(conn)?.remove(job).unwrap_or_default();
    let ctx = template_context(alloc, &bucket_id, &load_workers(conn)?);
    // A prometheus server job's templates read the scrape catalog as deploy would expand it.
    let inserts = if super::prometheus_stage::is_server(&sources) {
        let server = super::prometheus_stage::ServerStaging::load(conn)
            .map_err(|e| PrepareError::Staging(vec![e]))?;
        let (_, inserts) = server
            .for_worker(&alloc.worker, &kv)
            .map_err(|e| PrepareError::Staging(vec![e]))?;
        Some(inserts)
    } else {
        None
    };
    let render = |path: &str, text: &str| {
        render_template(alloc, &ctx, &upstream, &kv, inserts.as_ref(), (path, text))
    };

    let mut files = Vec::with_capacity(chosen.len());
    let mut errors = Vec::new();
    for source in chosen {
        match stage_tree(job, std::slice::from_ref(source), Vec::new(), &render) {
            Ok(tree) => {
                let content = tree
                    .files
                    .into_iter()
                    .next()
                    .map(|f| f.content.as_ref().clone())
                    .unwrap_or_default();
                files.push((source.path.clone(), content));
            }
            Err(error) => errors.push(error.describe()),
        }
    }
    if !errors.is_empty() {
        return Err(RenderError::Templates {
            job: job.to_string(),
            worker: alloc.worker.clone(),
            errors,
        });
    }
    Ok(RenderedTemplates {
        worker: alloc.worker.clone(),
        workers,
        files,
    })
}

/// The `.tpl` sources `file` names (all of them when `None`).
fn choose_templates<'s>(
    job: &str,
    sources: &'s [SourceFile],
    file: Option<&str>,
) -> Result<Vec<&'s SourceFile>, RenderError> {
    let templates: Vec<&SourceFile> = sources
        .iter()
        .filter(|s| s.path.ends_with(".tpl"))
        .collect();
    let Some(file) = file else {
        if templates.is_empty() {
            return Err(RenderError::NoTemplates {
                job: job.to_string(),
            });
        }
        return Ok(templates);
    };
    let file = file.trim_start_matches("./");
    if let Some(found) = templates
        .iter()
        .find(|s| s.path == file || s.path.strip_suffix(".tpl") == Some(file))
    {
        return Ok(vec![found]);
    }
    if sources.iter().any(|s| s.path == file) {
        return Err(RenderError::NotATemplate {
            job: job.to_string(),
            file: file.to_string(),
        });
    }
    Err(RenderError::UnknownFile {
        job: job.to_string(),
        file: file.to_string(),
        templates: templates.iter().map(|s| s.path.clone()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn source(path: &str) -> SourceFile {
        SourceFile {
            path: path.into(),
            hash: String::new(),
            executable: false,
            content: Arc::new(Vec::new()),
        }
    }

    fn paths(chosen: &[&SourceFile]) -> Vec<String> {
        chosen.iter().map(|s| s.path.clone()).collect()
    }

    #[test]
    fn without_a_file_every_template_is_chosen_in_path_order() {
        let sources = [
            source("Makefile"),
            source("a.tpl"),
            source("conf/b.yml.tpl"),
        ];
        let chosen = choose_templates("api", &sources, None).unwrap();
        assert_eq!(paths(&chosen), ["a.tpl", "conf/b.yml.tpl"]);
    }

    #[test]
    fn a_file_is_found_by_its_path_or_its_rendered_name() {
        let sources = [source("conf/b.yml.tpl")];
        for name in ["conf/b.yml.tpl", "conf/b.yml", "./conf/b.yml.tpl"] {
            let chosen = choose_templates("api", &sources, Some(name)).unwrap();
            assert_eq!(paths(&chosen), ["conf/b.yml.tpl"], "{name}");
        }
    }

    #[test]
    fn a_plain_file_is_not_a_template_and_an_unknown_one_lists_the_templates() {
        let sources = [source("Makefile"), source("a.tpl")];
        let err = choose_templates("api", &sources, Some("Makefile")).unwrap_err();
        assert!(matches!(err, RenderError::NotATemplate { .. }), "{err}");
        let err = choose_templates("api", &sources, Some("b.tpl")).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("no template b.tpl"), "{message}");
        assert!(message.contains("templates: a.tpl"), "{message}");
    }

    #[test]
    fn a_job_without_templates_says_so() {
        let err = choose_templates("api", &[source("Makefile")], None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "job api has no .tpl files; nothing to render"
        );
    }
}
