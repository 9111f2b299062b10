//! The files deploy adds to a prometheus server job's tree, built from every job's
//! `_prometheus/` files as the catalog stores them: rule files (with runbook links), the
//! maand certificate rules, runbook pages and dashboards with their indexes. Also the text
//! the `scrape_configs()` and `rule_files()` template functions insert.

use super::alerts::{self, ALERTS_DIR};
use super::consoles::{self, DASHBOARDS_OUT, DASHBOARD_IGNORE, RUNBOOKS_OUT};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The rule file maand adds for certificate expiry alerts.
pub const CERT_RULES_PATH: &str = "rules/maand/certs.yaml";
/// Its content.
pub const CERT_RULES: &str = include_str!("certs_rules.yaml");

const DASHBOARDS_DIR: &str = "_prometheus/dashboards/";

/// `_prometheus/` files per job: job → (job-relative path, content), sorted by path.
pub type MonitoredFiles = BTreeMap<String, Vec<(String, Arc<Vec<u8>>)>>;

/// A file added to a staged tree: (path relative to the job directory, content, mode).
pub type ExtraFile = (String, Vec<u8>, u32);

/// What staging a server job adds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assembly {
    pub files: Vec<ExtraFile>,
    /// Every assembled rule file, relative to the job directory, sorted.
    pub rule_files: Vec<String>,
}

fn utf8<'a>(job: &str, path: &str, content: &'a [u8]) -> Result<&'a str, String> {
    std::str::from_utf8(content).map_err(|_| format!("{job}: {path}: not UTF-8 text"))
}

/// Assembles everything for a server job whose web UI is at `web_base`
/// (`http://<worker>:<port>`), used for the `runbook_url` of alerts.
pub fn assemble(monitored: &MonitoredFiles, web_base: &str) -> Result<Assembly, String> {
    let mut assembly = Assembly::default();
    let console_base = format!("{web_base}/{RUNBOOKS_OUT}");
    let mut runbook_index = Vec::new();
    let mut dashboard_index = Vec::new();
    for (job, files) in monitored {
        let ignore_text = files
            .iter()
            .find(|(p, _)| *p == format!("{DASHBOARDS_DIR}{DASHBOARD_IGNORE}"))
            .map(|(p, c)| utf8(job, p, c))
            .transpose()?
            .unwrap_or_default();
        let ignored = consoles::dashboard_ignore(ignore_text)
            .map_err(|e| format!("{job}: {DASHBOARDS_DIR}{e}"))?;
        for (path, content) in files {
            if alerts::is_rule_file(path) {
                let name = &path[ALERTS_DIR.len()..];
                let text = utf8(job, path, content)?;
                let rewritten = alerts::with_runbook_urls(text, job, &console_base)
                    .map_err(|e| format!("{job}: {path}: {e}"))?;
                let out = format!("rules/{job}/{name}");
                assembly.rule_files.push(out.clone());
                assembly.files.push((out, rewritten.into_bytes(), 0o644));
            } else if let Some(slug) = alerts::runbook_slug(path) {
                let markdown = utf8(job, path, content)?;
                assembly.files.push((
                    format!("{RUNBOOKS_OUT}/{job}/{slug}.html"),
                    consoles::runbook_page(job, slug, markdown),
                    0o644,
                ));
                runbook_index.push((job.clone(), format!("{slug}.html")));
            } else if let Some(relative) = path.strip_prefix(DASHBOARDS_DIR) {
                if relative == DASHBOARD_IGNORE {
                    continue;
                }
                assembly.files.push((
                    format!("{DASHBOARDS_OUT}/{job}/{relative}"),
                    content.to_vec(),
                    0o644,
                ));
                if !consoles::is_ignored(&ignored, relative) {
                    dashboard_index.push((job.clone(), relative.to_string()));
                }
            }
        }
    }
    assembly.rule_files.push(CERT_RULES_PATH.into());
    assembly.files.push((
        CERT_RULES_PATH.into(),
        CERT_RULES.as_bytes().to_vec(),
        0o644,
    ));
    assembly.rule_files.sort();
    for (dir, title, entries) in [
        (RUNBOOKS_OUT, "Runbooks", &runbook_index),
        (DASHBOARDS_OUT, "Dashboards", &dashboard_index),
    ] {
        assembly.files.push((
            format!("{dir}/index.html"),
            consoles::index_page(title, entries),
            0o644,
        ));
        assembly.files.push((
            format!("{dir}/style.css"),
            consoles::stylesheet().to_vec(),
            0o644,
        ));
    }
    Ok(assembly)
}

/// What `rule_files()` inserts: a top-level `rule_files:` key listing every assembled rule
/// file, relative to the config file.
pub fn rule_files_yaml(rule_files: &[String]) -> String {
    let mut out = String::from("rule_files:\n");
    for file in rule_files {
        out.push_str(&format!("  - {file}\n"));
    }
    out
}
