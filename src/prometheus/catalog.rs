//! `maand build`'s part: validating every job's `_prometheus/` when the workspace has a
//! prometheus server job, and deciding the scrape KV (`maand/prometheus`).
//!
//! Pure: the caller passes the workspace, which jobs have active allocations and a reader of
//! the job-level KV for scrape templates; the answer is the KV values to hold or every
//! problem found.

use super::scrape::{self, ScrapeConfig, SCRAPE_FILE, SCRAPE_TEMPLATE};
use super::scrape_template::{self, JobKv};
use super::{alerts, is_server_job, Problem, KV_NAMESPACE};
use crate::workspace::{Job, Workspace};
use std::collections::{BTreeMap, BTreeSet};

/// Reads the KV a scrape template sees: `plain(namespace)` gives a namespace's values and
/// `secret(job, key)` a decrypted `secrets/job/<job>` value.
pub trait TemplateKv {
    fn plain(&self, namespace: &str) -> BTreeMap<String, String>;
    fn secrets(&self, job: &str) -> BTreeMap<String, Result<String, String>>;
}

/// The KV build writes for Prometheus: namespace → key → value.
pub type PrometheusKv = BTreeMap<String, BTreeMap<String, String>>;

/// Whether the workspace has a prometheus server job (which enables everything here).
pub fn has_server(ws: &Workspace) -> bool {
    ws.jobs
        .values()
        .any(|job| is_server_job(job.files.iter().map(|f| f.path.as_str())))
}

fn text<'a>(job: &'a Job, path: &str) -> Result<Option<&'a str>, Problem> {
    let Some(file) = job.file(path) else {
        return Ok(None);
    };
    std::str::from_utf8(&file.content)
        .map(Some)
        .map_err(|_| Problem {
            job: job.name.clone(),
            file: path.to_string(),
            yaml_path: String::new(),
            message: "the file is not UTF-8 text".into(),
        })
}

/// Checks every job's `_prometheus/` content that needs no KV: file exclusivity, rule files,
/// runbook references, bucket-wide unique alert names and the plain `scrape.yaml` files.
/// Nothing is checked without a server job.
pub fn validate(ws: &Workspace) -> Vec<Problem> {
    if !has_server(ws) {
        return Vec::new();
    }
    let mut problems = Vec::new();
    let mut alert_owner: BTreeMap<String, (String, String)> = BTreeMap::new();
    for job in ws.jobs.values() {
        let whole = |file: &str, message: String| Problem {
            job: job.name.clone(),
            file: file.to_string(),
            yaml_path: String::new(),
            message,
        };
        if job.file("prometheus.yml").is_some() && job.file("prometheus.yml.tpl").is_some() {
            problems.push(whole(
                "prometheus.yml.tpl",
                "both prometheus.yml and prometheus.yml.tpl exist; keep one".into(),
            ));
        }
        if job.file(SCRAPE_FILE).is_some() && job.file(SCRAPE_TEMPLATE).is_some() {
            problems.push(whole(
                SCRAPE_TEMPLATE,
                "both scrape.yaml and scrape.yaml.tpl exist; keep one".into(),
            ));
        } else if let Some(plain) = job.file(SCRAPE_FILE) {
            match std::str::from_utf8(&plain.content) {
                Err(_) => problems.push(whole(SCRAPE_FILE, "the file is not UTF-8 text".into())),
                Ok(text) => match scrape::parse(&job.name, SCRAPE_FILE, text) {
                    Err(problem) => problems.push(problem),
                    Ok(configs) => problems.extend(scrape::validate(
                        &job.name,
                        SCRAPE_FILE,
                        &configs,
                        &declared_ports(job),
                    )),
                },
            }
        }
        let runbooks: BTreeSet<String> = job
            .files
            .iter()
            .filter_map(|f| alerts::runbook_slug(&f.path))
            .map(str::to_string)
            .collect();
        for file in job.files.iter().filter(|f| alerts::is_rule_file(&f.path)) {
            let content = match text(job, &file.path) {
                Ok(content) => content.unwrap_or_default(),
                Err(problem) => {
                    problems.push(problem);
                    continue;
                }
            };
            match alerts::validate(&job.name, &file.path, content, &runbooks) {
                Err(found) => problems.extend(found),
                Ok(rules) => {
                    for alert in rules.alerts {
                        let here = (job.name.clone(), file.path.clone());
                        if let Some((other_job, other_file)) = alert_owner.get(&alert) {
                            problems.push(whole(
                                &file.path,
                                format!("alert {alert:?} is already defined in workspace/jobs/{other_job}/{other_file}; alert names must be unique in the bucket"),
                            ));
                        } else {
                            alert_owner.insert(alert, here);
                        }
                    }
                }
            }
        }
    }
    problems
}

fn declared_ports(job: &Job) -> BTreeSet<String> {
    job.manifest.resources.ports.keys().cloned().collect()
}

/// The scrape KV: `scrape/<job>` for every job with a scrape file, the aggregate
/// `scrape_configs` / `scrape_jobs` / `scrape_jobs_length` over jobs that need no allocation
/// or have an active one, and `maand/job/<job>` `job_name`. Without a server job only the
/// empty aggregate keys. `active_jobs` are the jobs with an active allocation.
pub fn decide_kv(
    ws: &Workspace,
    active_jobs: &BTreeSet<&str>,
    kv: &dyn TemplateKv,
) -> Result<PrometheusKv, Vec<Problem>> {
    let mut out = PrometheusKv::new();
    let mut put = |namespace: &str, key: &str, value: String| {
        out.entry(namespace.to_string())
            .or_default()
            .insert(key.to_string(), value);
    };
    if !has_server(ws) {
        put(KV_NAMESPACE, "scrape_configs", "[]".into());
        put(KV_NAMESPACE, "scrape_jobs", String::new());
        put(KV_NAMESPACE, "scrape_jobs_length", "0".into());
        return Ok(out);
    }
    let mut problems = Vec::new();
    let mut job_name_owner: BTreeMap<String, String> = BTreeMap::new();
    let mut aggregate: Vec<ScrapeConfig> = Vec::new();
    let mut scrape_jobs: Vec<&str> = Vec::new();
    for job in ws.jobs.values() {
        let configs = match job_scrape_configs(job, kv) {
            Ok(Some(configs)) => configs,
            Ok(None) => continue,
            Err(found) => {
                problems.extend(found);
                continue;
            }
        };
        let file = if job.file(SCRAPE_TEMPLATE).is_some() {
            SCRAPE_TEMPLATE
        } else {
            SCRAPE_FILE
        };
        for (index, name) in scrape::job_names(&job.name, &configs)
            .into_iter()
            .enumerate()
        {
            if let Some(owner) = job_name_owner.get(name) {
                problems.push(Problem {
                    job: job.name.clone(),
                    file: file.into(),
                    yaml_path: format!("[{index}].job_name"),
                    message: format!("job_name {name:?} is already used by job {owner}; job_name must be unique in the bucket"),
                });
            } else {
                job_name_owner.insert(name.to_string(), job.name.clone());
            }
        }
        if let Some(first) = scrape::job_names(&job.name, &configs).first() {
            put(
                &format!("maand/job/{}", job.name),
                "job_name",
                first.to_string(),
            );
        }
        put(
            KV_NAMESPACE,
            &format!("scrape/{}", job.name),
            serde_json::to_string(&configs).expect("JSON values serialize"),
        );
        if !scrape::needs_allocations(&configs) || active_jobs.contains(job.name.as_str()) {
            scrape_jobs.push(&job.name);
            aggregate.extend(configs);
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    put(
        KV_NAMESPACE,
        "scrape_configs",
        serde_json::to_string(&aggregate).expect("JSON values serialize"),
    );
    put(KV_NAMESPACE, "scrape_jobs", scrape_jobs.join(","));
    put(
        KV_NAMESPACE,
        "scrape_jobs_length",
        scrape_jobs.len().to_string(),
    );
    Ok(out)
}

/// A job's scrape configs: `scrape.yaml` as written, or `scrape.yaml.tpl` rendered. `None`
/// when it has neither.
fn job_scrape_configs(
    job: &Job,
    kv: &dyn TemplateKv,
) -> Result<Option<Vec<ScrapeConfig>>, Vec<Problem>> {
    let (file, source) = match (text(job, SCRAPE_TEMPLATE), text(job, SCRAPE_FILE)) {
        (Err(p), _) | (_, Err(p)) => return Err(vec![p]),
        (Ok(Some(template)), _) => {
            let namespaces = scrape_template::readable_namespaces(&job.name)
                .into_iter()
                .map(|ns| {
                    let values = kv.plain(&ns);
                    (ns, values)
                })
                .collect();
            let job_kv = JobKv {
                namespaces,
                secrets: kv.secrets(&job.name),
            };
            let version = job.manifest.version.to_string();
            let rendered = scrape_template::render(&job.name, &version, template, job_kv).map_err(
                |message| {
                    vec![Problem {
                        job: job.name.clone(),
                        file: SCRAPE_TEMPLATE.into(),
                        yaml_path: String::new(),
                        message: format!("cannot render: {message}"),
                    }]
                },
            )?;
            (SCRAPE_TEMPLATE, rendered)
        }
        (Ok(None), Ok(Some(plain))) => (SCRAPE_FILE, plain.to_string()),
        (Ok(None), Ok(None)) => return Ok(None),
    };
    let configs = scrape::parse(&job.name, file, &source).map_err(|p| vec![p])?;
    let problems = scrape::validate(&job.name, file, &configs, &declared_ports(job));
    if problems.is_empty() {
        Ok(Some(configs))
    } else {
        Err(problems)
    }
}
