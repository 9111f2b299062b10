//! Reading what scrape expansion and server assembly need from the catalog: the scrape
//! catalog (`maand/prometheus` KV), each job's ports and active allocations, and every job's
//! `_prometheus/` files. `maand cat prometheus` and deploy staging both read through here, so
//! they expand the same way.

use super::assemble::MonitoredFiles;
use super::scrape::{self, Expansion, JobTargets, ScrapeConfig};
use super::{is_prometheus_file, KV_NAMESPACE};
use rusqlite::{Connection, OptionalExtension};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Why the catalog could not be read or expanded.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("catalog database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("KV {KV_NAMESPACE} {key} is not a JSON list of scrape configs ({detail}); run `maand build`")]
    BadScrapeKv { key: String, detail: String },
    #[error(transparent)]
    Expand(#[from] scrape::ExpandError),
}

fn kv_value(conn: &Connection, key: &str) -> Result<Option<String>, rusqlite::Error> {
    conn.query_row(
        "SELECT value, deleted FROM kv WHERE namespace = ?1 AND key = ?2 ORDER BY version DESC LIMIT 1",
        [KV_NAMESPACE, key],
        |r| Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?)),
    )
    .optional()
    .map(|found| found.filter(|(_, deleted)| !deleted).map(|(value, _)| value))
}

/// The aggregate scrape catalog: each job of `scrape_jobs` with its unexpanded configs, in
/// catalog order.
pub fn scrape_catalog(conn: &Connection) -> Result<Vec<(String, Vec<ScrapeConfig>)>, ReadError> {
    let jobs = kv_value(conn, "scrape_jobs")?.unwrap_or_default();
    let mut catalog = Vec::new();
    for job in jobs.split(',').filter(|j| !j.is_empty()) {
        let key = format!("scrape/{job}");
        let text = kv_value(conn, &key)?.unwrap_or_else(|| "[]".into());
        let configs: Vec<ScrapeConfig> =
            serde_json::from_str(&text).map_err(|e| ReadError::BadScrapeKv {
                key: key.clone(),
                detail: e.to_string(),
            })?;
        catalog.push((job.to_string(), configs));
    }
    Ok(catalog)
}

/// Every job's declared ports and active allocations (in workers.json order).
pub fn job_targets(conn: &Connection) -> Result<BTreeMap<String, JobTargets>, ReadError> {
    let mut targets: BTreeMap<String, JobTargets> = BTreeMap::new();
    let mut stmt = conn.prepare("SELECT job, name, port FROM job_ports")?;
    for row in stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, u16>(2)?,
        ))
    })? {
        let (job, name, port) = row?;
        targets.entry(job).or_default().ports.insert(name, port);
    }
    let mut stmt = conn.prepare(
        "SELECT a.job, a.worker_ip FROM allocations a LEFT JOIN workers w ON w.host = a.worker_ip
         WHERE a.removed = 0 AND a.disabled = 0 ORDER BY a.job, w.position, a.worker_ip",
    )?;
    for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
        let (job, worker) = row?;
        targets.entry(job).or_default().active_workers.push(worker);
    }
    Ok(targets)
}

/// The scrape catalog expanded against the current topology; with `only` non-empty, just
/// those jobs.
pub fn expanded(conn: &Connection, only: &[String]) -> Result<Expansion, ReadError> {
    let catalog: Vec<_> = scrape_catalog(conn)?
        .into_iter()
        .filter(|(job, _)| only.is_empty() || only.contains(job))
        .collect();
    Ok(scrape::expand_catalog(&catalog, &job_targets(conn)?)?)
}

/// Every job's `_prometheus/` files with their content.
pub fn monitored_files(conn: &Connection) -> Result<MonitoredFiles, ReadError> {
    let mut files = MonitoredFiles::new();
    let mut stmt = conn.prepare(
        "SELECT f.job, f.path, b.content FROM job_files f JOIN blobs b ON b.hash = f.hash
         WHERE f.path LIKE '\\_prometheus/%' ESCAPE '\\' ORDER BY f.job, f.path",
    )?;
    for row in stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Vec<u8>>(2)?,
        ))
    })? {
        let (job, path, content) = row?;
        if is_prometheus_file(&path) {
            files
                .entry(job)
                .or_default()
                .push((path, Arc::new(content)));
        }
    }
    Ok(files)
}
