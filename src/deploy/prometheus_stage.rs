//! Staging a prometheus server job (one that ships `prometheus.yml` or
//! `prometheus.yml.tpl`): the assembled rules and console pages it gets on top of its own
//! files, and the text its templates insert with `scrape_configs()` and `rule_files()`.
//!
//! The scrape configs are expanded against the topology in the catalog when the deploy is
//! prepared, so a change of targets changes the staged tree and the server job redeploys.

use super::stage::SourceFile;
use crate::prometheus::assemble::{self, ExtraFile, MonitoredFiles};
use crate::prometheus::{read, scrape, SERVER_HTTP_PORT};
use crate::templates::{KvSource, PrometheusInserts};
use rusqlite::Connection;

/// The web port assumed when the server job declares no `prometheus_port_http`.
const DEFAULT_WEB_PORT: &str = "9090";

/// What every server job allocation of one deploy is staged from.
pub struct ServerStaging {
    monitored: MonitoredFiles,
    scrape_fragment: String,
}

/// Whether a job's files make it a prometheus server job.
pub fn is_server(sources: &[SourceFile]) -> bool {
    crate::prometheus::is_server_job(sources.iter().map(|s| s.path.as_str()))
}

impl ServerStaging {
    /// Reads every job's `_prometheus/` files and expands the scrape catalog.
    pub fn load(conn: &Connection) -> Result<ServerStaging, String> {
        let failed = |e: read::ReadError| format!("prometheus: {e}");
        let expansion = read::expanded(conn, &[]).map_err(failed)?;
        Ok(ServerStaging {
            monitored: read::monitored_files(conn).map_err(failed)?,
            scrape_fragment: scrape::yaml_fragment(&expansion.configs),
        })
    }

    /// The extra files and template inserts of the server allocation on `worker`; runbook
    /// links point at that worker's web port.
    pub fn for_worker(
        &self,
        worker: &str,
        kv: &dyn KvSource,
    ) -> Result<(Vec<ExtraFile>, PrometheusInserts), String> {
        let port = kv
            .get("maand/bucket", SERVER_HTTP_PORT)
            .unwrap_or_else(|| DEFAULT_WEB_PORT.into());
        let assembly = assemble::assemble(&self.monitored, &format!("http://{worker}:{port}"))?;
        let inserts = PrometheusInserts {
            scrape_configs: self.scrape_fragment.clone(),
            rule_files: assemble::rule_files_yaml(&assembly.rule_files),
        };
        Ok((assembly.files, inserts))
    }
}
