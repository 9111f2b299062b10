//! `maand cat prometheus`: the `_prometheus/` content the catalog holds, one file of it, and
//! the scrape configs expanded the way deploy expands them for the prometheus server job.

use anyhow::bail;
use rusqlite::Connection;
use serde::Serialize;

use super::args::{print, JsonFlag, PrometheusArgs, PrometheusCommand};
use crate::prometheus::{alerts, read, scrape, FOLDER};

/// One job's `_prometheus/` content.
#[derive(Debug, Serialize)]
struct MonitoredJob {
    job: String,
    /// `scrape.yaml`, `scrape.yaml.tpl` or empty.
    scrape: String,
    /// Whether the job is in the aggregate scrape catalog (`scrape_jobs`).
    scraped: bool,
    alerts: Vec<String>,
    runbooks: Vec<String>,
    dashboards: Vec<String>,
}

pub fn run(conn: &Connection, args: &PrometheusArgs) -> anyhow::Result<i32> {
    match &args.command {
        None => list(conn, &args.output),
        Some(PrometheusCommand::Get { job, path, output }) => get(conn, job, path, output),
        Some(PrometheusCommand::Scrape { jobs, output }) => scrape_configs(conn, jobs, output),
    }
}

fn list(conn: &Connection, output: &JsonFlag) -> anyhow::Result<i32> {
    let scraped: Vec<String> = read::scrape_catalog(conn)?
        .into_iter()
        .map(|(job, _)| job)
        .collect();
    let rows: Vec<MonitoredJob> = read::monitored_files(conn)?
        .into_iter()
        .map(|(job, files)| {
            let paths: Vec<&str> = files.iter().map(|(p, _)| &p[FOLDER.len()..]).collect();
            let under = |dir: &str| -> Vec<String> {
                paths
                    .iter()
                    .filter_map(|p| p.strip_prefix(dir))
                    .map(str::to_string)
                    .collect()
            };
            MonitoredJob {
                scrape: [scrape::SCRAPE_TEMPLATE, scrape::SCRAPE_FILE]
                    .iter()
                    .map(|f| &f[FOLDER.len()..])
                    .find(|f| paths.contains(f))
                    .unwrap_or_default()
                    .to_string(),
                scraped: scraped.contains(&job),
                alerts: files
                    .iter()
                    .filter(|(p, _)| alerts::is_rule_file(p))
                    .map(|(p, _)| p[alerts::ALERTS_DIR.len()..].to_string())
                    .collect(),
                runbooks: files
                    .iter()
                    .filter_map(|(p, _)| alerts::runbook_slug(p))
                    .map(str::to_string)
                    .collect(),
                dashboards: under("dashboards/"),
                job,
            }
        })
        .collect();
    print(
        &rows,
        output,
        &[
            "job",
            "scrape",
            "scraped",
            "alerts",
            "runbooks",
            "dashboards",
        ],
        |r| {
            vec![
                r.job.clone(),
                r.scrape.clone(),
                r.scraped.to_string(),
                r.alerts.join(","),
                r.runbooks.join(","),
                r.dashboards.join(","),
            ]
        },
    )
}

fn get(conn: &Connection, job: &str, path: &str, output: &JsonFlag) -> anyhow::Result<i32> {
    let monitored = read::monitored_files(conn)?;
    let Some(files) = monitored.get(job) else {
        bail!("job {job:?} has no _prometheus/ files in the catalog; `maand cat prometheus` lists the jobs that do");
    };
    let relative = path.strip_prefix(FOLDER).unwrap_or(path);
    let wanted = format!("{FOLDER}{relative}");
    let Some((_, content)) = files.iter().find(|(p, _)| *p == wanted) else {
        let known: Vec<&str> = files.iter().map(|(p, _)| &p[FOLDER.len()..]).collect();
        bail!(
            "job {job:?} has no _prometheus/{relative}; its files are: {}",
            known.join(", ")
        );
    };
    let text = String::from_utf8_lossy(content);
    if output.json {
        let value = serde_json::json!({ "job": job, "path": relative, "content": text });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else if text.ends_with('\n') {
        print!("{text}");
    } else {
        println!("{text}");
    }
    Ok(0)
}

fn scrape_configs(conn: &Connection, jobs: &[String], output: &JsonFlag) -> anyhow::Result<i32> {
    let known = crate::catalog::tables::jobs(conn)?;
    for job in jobs {
        if !known.iter().any(|j| &j.name == job) {
            bail!("--jobs {job}: no such job in the catalog; `maand cat jobs` lists them");
        }
    }
    let expansion = read::expanded(conn, jobs)?;
    if output.json {
        let value = serde_json::json!({
            "scrape_configs": expansion.configs,
            "skipped": expansion.skipped,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(0);
    }
    for job in &expansion.skipped {
        println!("# skipped {job}: no active allocation to scrape");
    }
    if !expansion.configs.is_empty() {
        print!("{}", serde_norway::to_string(&expansion.configs)?);
    }
    Ok(0)
}
