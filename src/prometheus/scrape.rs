//! Scrape configs: parsing and validating `_prometheus/scrape.yaml`, and expanding the
//! `maand:port/<key>[/<worker>]` and `maand:job` placeholders into real targets and names.
//!
//! Configs are kept as JSON objects (keys sorted), the form the scrape KV stores them in.

use super::Problem;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// The scrape file of a job, relative to the job directory.
pub const SCRAPE_FILE: &str = "_prometheus/scrape.yaml";
/// The build-time template that renders to the scrape file.
pub const SCRAPE_TEMPLATE: &str = "_prometheus/scrape.yaml.tpl";
/// Placeholder prefix for targets on every active allocation of the job.
pub const PORT_PLACEHOLDER: &str = "maand:port/";
/// Placeholder for the maand job's name, in `job_name` and label values.
pub const JOB_PLACEHOLDER: &str = "maand:job";
/// Port key that picks the job's metrics port by convention.
pub const IMPLICIT_PORT: &str = "_implicit";

/// One Prometheus `scrape_config` item.
pub type ScrapeConfig = Map<String, Value>;

/// What expansion needs to know about one job at deploy time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobTargets {
    /// Declared port name → assigned port number.
    pub ports: BTreeMap<String, u16>,
    /// IPs of the job's active (neither removed nor disabled) allocations, in worker order.
    pub active_workers: Vec<String>,
}

/// Why a job's configs could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    /// A `static_configs` block expanded to no target: the job has no active allocation.
    #[error("job {job} has no active allocation to scrape")]
    NoTargets { job: String },
    #[error("job {job} scrape config {path}: {message}")]
    Invalid {
        job: String,
        path: String,
        message: String,
    },
}

/// Parses the text of a scrape file into its items. `file` names it in the problem.
pub fn parse(job: &str, file: &str, text: &str) -> Result<Vec<ScrapeConfig>, Problem> {
    let problem = |message: String| Problem {
        job: job.to_string(),
        file: file.to_string(),
        yaml_path: String::new(),
        message,
    };
    if text.trim().is_empty() {
        return Err(problem(
            "the file is empty; list at least one scrape_config (or delete the file)".into(),
        ));
    }
    let value: Value =
        serde_norway::from_str(text).map_err(|e| problem(format!("not valid YAML: {e}")))?;
    let Value::Array(items) = value else {
        return Err(problem(
            "the root must be a YAML list of scrape_config items (`- job_name: ...`)".into(),
        ));
    };
    if items.is_empty() {
        return Err(problem(
            "the list is empty; add at least one scrape_config".into(),
        ));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| match item {
            Value::Object(config) => Ok(config),
            _ => Err(Problem {
                yaml_path: format!("[{index}]"),
                ..problem("each item must be a mapping (a scrape_config)".into())
            }),
        })
        .collect()
}

/// Resolves a `maand:job` value to the job's name; any other value is kept.
pub fn resolve_job_name<'a>(job: &'a str, value: &'a str) -> &'a str {
    if value == JOB_PLACEHOLDER {
        job
    } else {
        value
    }
}

/// The port key `maand:port/_implicit` stands for: `<job>_metrics_port`, else
/// `metrics_port`, else the only declared `*_metrics_port`.
pub fn implicit_port<'a>(
    job: &str,
    declared: impl IntoIterator<Item = &'a String> + Clone,
) -> Result<String, String> {
    let set: BTreeSet<&str> = declared.into_iter().map(String::as_str).collect();
    for candidate in [format!("{job}_metrics_port"), "metrics_port".to_string()] {
        if set.contains(candidate.as_str()) {
            return Ok(candidate);
        }
    }
    let suffixed: Vec<&str> = set
        .iter()
        .copied()
        .filter(|name| name.ends_with("_metrics_port"))
        .collect();
    match suffixed.as_slice() {
        [only] => Ok(only.to_string()),
        [] => Err(format!(
            "maand:port/_implicit needs a metrics port: declare `{job}_metrics_port` (or `metrics_port`) in manifest.json resources.ports"
        )),
        many => Err(format!(
            "maand:port/_implicit is ambiguous: ports {} all end in _metrics_port; name one explicitly (maand:port/<key>)",
            many.join(", ")
        )),
    }
}

/// A `maand:port/...` target split into port key and optional pinned worker.
fn placeholder(target: &str) -> Option<(&str, Option<&str>)> {
    let rest = target.strip_prefix(PORT_PLACEHOLDER)?;
    Some(match rest.split_once('/') {
        Some((key, worker)) => (key, Some(worker)),
        None => (rest, None),
    })
}

/// A `static_configs` block with its target strings.
type StaticBlock<'a> = (&'a ScrapeConfig, Vec<&'a str>);
/// A problem located in a config: (YAML path below the config, message).
type Located = (String, String);

/// The `static_configs` blocks of a config, each with its targets, or the problem found.
fn static_blocks(config: &ScrapeConfig) -> Result<Vec<StaticBlock<'_>>, Located> {
    let Some(raw) = config.get("static_configs") else {
        return Err((
            ".static_configs".into(),
            "static_configs is required (list the targets, e.g. maand:port/<port_key>)".into(),
        ));
    };
    let Value::Array(blocks) = raw else {
        return Err((
            ".static_configs".into(),
            "static_configs must be a list".into(),
        ));
    };
    if blocks.is_empty() {
        return Err((
            ".static_configs".into(),
            "static_configs must not be empty".into(),
        ));
    }
    let mut out = Vec::with_capacity(blocks.len());
    for (b, block) in blocks.iter().enumerate() {
        let Value::Object(block) = block else {
            return Err((format!(".static_configs[{b}]"), "must be a mapping".into()));
        };
        let Some(Value::Array(targets)) = block.get("targets") else {
            return Err((
                format!(".static_configs[{b}].targets"),
                "targets must be a non-empty list of strings".into(),
            ));
        };
        if targets.is_empty() {
            return Err((
                format!(".static_configs[{b}].targets"),
                "targets must not be empty".into(),
            ));
        }
        let mut texts = Vec::with_capacity(targets.len());
        for (t, target) in targets.iter().enumerate() {
            match target {
                Value::String(text) => texts.push(text.as_str()),
                _ => {
                    return Err((
                        format!(".static_configs[{b}].targets[{t}]"),
                        "a target must be a string (host:port or maand:port/<key>)".into(),
                    ))
                }
            }
        }
        out.push((block, texts));
    }
    Ok(out)
}

/// Checks a job's scrape configs before expansion: no service discovery, a `job_name`, a
/// well-formed `static_configs`, and `maand:port/<key>` keys declared in the manifest.
pub fn validate(
    job: &str,
    file: &str,
    configs: &[ScrapeConfig],
    declared_ports: &BTreeSet<String>,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut report = |path: String, message: String| {
        problems.push(Problem {
            job: job.to_string(),
            file: file.to_string(),
            yaml_path: path,
            message,
        })
    };
    for (index, config) in configs.iter().enumerate() {
        for key in config.keys().filter(|k| k.ends_with("_sd_configs")) {
            report(
                format!("[{index}].{key}"),
                format!(
                    "{key} is not supported: use static_configs with maand:port/<port_key> targets"
                ),
            );
        }
        match config.get("job_name") {
            Some(Value::String(name)) if !name.trim().is_empty() => {}
            _ => report(
                format!("[{index}].job_name"),
                "job_name is required (a string; maand:job stands for the job's name)".into(),
            ),
        }
        let blocks = match static_blocks(config) {
            Ok(blocks) => blocks,
            Err((path, message)) => {
                report(format!("[{index}]{path}"), message);
                continue;
            }
        };
        for (b, (_, targets)) in blocks.iter().enumerate() {
            for (t, target) in targets.iter().enumerate() {
                let Some((key, worker)) = placeholder(target) else {
                    continue;
                };
                let path = format!("[{index}].static_configs[{b}].targets[{t}]");
                if key.is_empty() || worker.is_some_and(str::is_empty) {
                    report(
                        path,
                        format!("{target:?} is not a valid placeholder: use maand:port/<port_key> or maand:port/<port_key>/<worker_ip>"),
                    );
                    continue;
                }
                let key = if key == IMPLICIT_PORT {
                    match implicit_port(job, declared_ports) {
                        Ok(key) => key,
                        Err(message) => {
                            report(path, message);
                            continue;
                        }
                    }
                } else {
                    key.to_string()
                };
                if !declared_ports.contains(&key) {
                    report(
                        path,
                        format!("port {key:?} is not declared in manifest.json resources.ports; declare it or fix the name"),
                    );
                }
            }
        }
    }
    problems
}

/// Whether any target is a `maand:port/*` placeholder (so the job needs an active
/// allocation to be scraped).
pub fn needs_allocations(configs: &[ScrapeConfig]) -> bool {
    configs.iter().any(|config| {
        static_blocks(config).is_ok_and(|blocks| {
            blocks
                .iter()
                .any(|(_, targets)| targets.iter().any(|t| placeholder(t).is_some()))
        })
    })
}

/// The `job_name`s of a job's configs after `maand:job` resolution.
pub fn job_names<'a>(job: &'a str, configs: &'a [ScrapeConfig]) -> Vec<&'a str> {
    configs
        .iter()
        .filter_map(|c| c.get("job_name").and_then(Value::as_str))
        .map(|name| resolve_job_name(job, name))
        .collect()
}

/// Expands one job's configs: `maand:job` in `job_name` and static label values becomes the
/// job's name, each `maand:port/<key>` target becomes `<worker>:<port>` for every active
/// allocation (or the one pinned worker). Literal targets pass through.
pub fn expand(
    job: &str,
    configs: &[ScrapeConfig],
    targets: &JobTargets,
) -> Result<Vec<ScrapeConfig>, ExpandError> {
    let invalid = |path: String, message: String| ExpandError::Invalid {
        job: job.to_string(),
        path,
        message,
    };
    let mut expanded = Vec::with_capacity(configs.len());
    for (index, config) in configs.iter().enumerate() {
        let blocks = static_blocks(config).map_err(|(p, m)| invalid(format!("[{index}]{p}"), m))?;
        let mut new_blocks = Vec::with_capacity(blocks.len());
        for (b, (block, raw_targets)) in blocks.into_iter().enumerate() {
            let mut resolved = Vec::new();
            for target in raw_targets {
                let Some((key, pinned)) = placeholder(target) else {
                    resolved.push(Value::String(target.to_string()));
                    continue;
                };
                let key = if key == IMPLICIT_PORT {
                    implicit_port(job, targets.ports.keys())
                        .map_err(|m| invalid(format!("[{index}].static_configs[{b}]"), m))?
                } else {
                    key.to_string()
                };
                let port = targets.ports.get(&key).ok_or_else(|| {
                    invalid(
                        format!("[{index}].static_configs[{b}]"),
                        format!("port {key:?} is not declared by the job (run `maand build`)"),
                    )
                })?;
                let workers: Vec<&String> = match pinned {
                    Some(worker) => {
                        let found = targets.active_workers.iter().find(|w| *w == worker);
                        vec![found.ok_or_else(|| {
                            invalid(
                                format!("[{index}].static_configs[{b}]"),
                                format!("worker {worker} is not an active allocation of job {job}"),
                            )
                        })?]
                    }
                    None => targets.active_workers.iter().collect(),
                };
                resolved.extend(
                    workers
                        .into_iter()
                        .map(|worker| Value::String(format!("{worker}:{port}"))),
                );
            }
            if resolved.is_empty() {
                return Err(ExpandError::NoTargets {
                    job: job.to_string(),
                });
            }
            let mut block = block.clone();
            block.insert("targets".into(), Value::Array(resolved));
            if let Some(Value::Object(labels)) = block.get_mut("labels") {
                for value in labels.values_mut() {
                    if value.as_str() == Some(JOB_PLACEHOLDER) {
                        *value = Value::String(job.to_string());
                    }
                }
            }
            new_blocks.push(Value::Object(block));
        }
        let mut config = config.clone();
        if let Some(Value::String(name)) = config.get_mut("job_name") {
            *name = resolve_job_name(job, name).to_string();
        }
        config.insert("static_configs".into(), Value::Array(new_blocks));
        expanded.push(config);
    }
    Ok(expanded)
}

/// The result of expanding the whole scrape catalog.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Expansion {
    /// Expanded configs of every job that has targets, in catalog order.
    pub configs: Vec<ScrapeConfig>,
    /// Jobs left out because they expanded to no target.
    pub skipped: Vec<String>,
}

/// Expands every job of the catalog; a job without targets is skipped, not an error.
pub fn expand_catalog(
    catalog: &[(String, Vec<ScrapeConfig>)],
    targets: &BTreeMap<String, JobTargets>,
) -> Result<Expansion, ExpandError> {
    let mut expansion = Expansion::default();
    let none = JobTargets::default();
    for (job, configs) in catalog {
        match expand(job, configs, targets.get(job).unwrap_or(&none)) {
            Ok(configs) => expansion.configs.extend(configs),
            Err(ExpandError::NoTargets { .. }) => expansion.skipped.push(job.clone()),
            Err(error) => return Err(error),
        }
    }
    Ok(expansion)
}

/// Expanded configs as YAML list items indented under a `scrape_configs:` key: each line
/// starts on a new line with two spaces. Empty when there are none.
pub fn yaml_fragment(configs: &[ScrapeConfig]) -> String {
    if configs.is_empty() {
        return String::new();
    }
    let yaml = serde_norway::to_string(configs).expect("JSON values serialize to YAML");
    yaml.lines()
        .filter(|line| !line.is_empty())
        .map(|line| format!("\n  {line}"))
        .collect()
}
