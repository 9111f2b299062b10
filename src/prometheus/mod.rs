//! Prometheus support: the `_prometheus/` folder of every job and the prometheus server job.
//!
//! Owns the rules for what `_prometheus/` may hold (scrape configs, alert rules, runbooks,
//! dashboards) and their validation at build ([`catalog`]), the `maand/prometheus` scrape KV,
//! the expansion of `maand:port/*` and `maand:job` placeholders into real targets
//! ([`scrape::expand`]), the files deploy assembles for the prometheus server job
//! ([`assemble`]), the reader that feeds expansion from the catalog ([`read`]) and the
//! best-effort push of certificate expiry gauges by remote write ([`remote_write`], sent after a
//! deploy by [`cert_push`]).
//!
//! Everything but [`read`], [`remote_write`] and [`cert_push`] is pure: it reads no files and opens no
//! database. The user-facing description is `docs/prometheus.md`.

pub mod alerts;
pub mod assemble;
pub mod catalog;
pub mod cert_push;
pub mod consoles;
pub mod read;
pub mod remote_write;
pub mod scrape;
mod scrape_template;
#[cfg(test)]
mod tests;

/// The job-relative folder that holds a job's monitoring content. Never shipped to workers.
pub const FOLDER: &str = "_prometheus/";
/// The KV namespace build writes the scrape catalog to.
pub const KV_NAMESPACE: &str = "maand/prometheus";
/// The job deploy pushes certificate metrics to.
pub const SERVER_JOB: &str = "prometheus";
/// The port of the prometheus job its web UI, API and remote-write receiver listen on.
pub const SERVER_HTTP_PORT: &str = "prometheus_port_http";

/// Whether a job file belongs to `_prometheus/` (and so stays off workers).
pub fn is_prometheus_file(path: &str) -> bool {
    path.starts_with(FOLDER)
}

/// Whether a job whose files are `paths` is a prometheus server job: it ships
/// `prometheus.yml` or `prometheus.yml.tpl` at its top level.
pub fn is_server_job<'a>(mut paths: impl Iterator<Item = &'a str>) -> bool {
    paths.any(|p| p == "prometheus.yml" || p == "prometheus.yml.tpl")
}

/// One problem in a job's `_prometheus/` content (or its server config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub job: String,
    /// Relative to the job directory, e.g. `_prometheus/scrape.yaml`.
    pub file: String,
    /// Where in the YAML document, e.g. `[0].static_configs[0].targets[1]`; empty for the
    /// whole file.
    pub yaml_path: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "workspace/jobs/{}/{}", self.job, self.file)?;
        if !self.yaml_path.is_empty() {
            write!(f, " at {}", self.yaml_path)?;
        }
        write!(f, ": {}", self.message)
    }
}
