//! The data one render sees, shared by both sides: the Go oracle reads it as JSON, our
//! renderer through [`KvSource`], [`TemplateContext`] and [`ReadScope`].

use std::collections::BTreeMap;

use maand::templates::{KvSource, ReadScope, TemplateContext};
use serde::{Deserialize, Serialize};

/// The dot context of the Go maand, under its Go field names.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Context {
    #[serde(rename = "AllocationID")]
    pub allocation_id: String,
    #[serde(rename = "Job")]
    pub job: String,
    #[serde(rename = "CurrentVersion")]
    pub current_version: String,
    #[serde(rename = "NewVersion")]
    pub new_version: String,
    #[serde(rename = "WorkerIP")]
    pub worker_ip: String,
    #[serde(rename = "WorkerID")]
    pub worker_id: String,
    #[serde(rename = "Labels")]
    pub labels: Vec<String>,
    #[serde(rename = "BucketPath")]
    pub bucket_path: String,
    #[serde(rename = "JobPath")]
    pub job_path: String,
}

/// One allocation's view: context, KV namespaces, its job's secrets and the upstream jobs its
/// commands demand (which widen what it may read).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fixture {
    pub context: Context,
    pub kv: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    #[serde(default)]
    pub upstream_jobs: Vec<String>,
}

impl Fixture {
    pub fn from_json(text: &str, origin: &str) -> Fixture {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{origin} is not a fixture: {e}"))
    }

    pub fn template_context(&self) -> TemplateContext {
        let c = &self.context;
        TemplateContext {
            allocation_id: c.allocation_id.clone(),
            job: c.job.clone(),
            worker_ip: c.worker_ip.clone(),
            worker_id: c.worker_id.clone(),
            labels: c.labels.clone(),
            current_version: c.current_version.clone(),
            new_version: c.new_version.clone(),
            bucket_path: c.bucket_path.clone(),
            job_path: c.job_path.clone(),
        }
    }

    pub fn scope(&self) -> ReadScope<'_> {
        ReadScope {
            job: &self.context.job,
            worker_ip: &self.context.worker_ip,
            upstream_jobs: &self.upstream_jobs,
        }
    }

    fn own_secrets_namespace(&self) -> String {
        format!("secrets/job/{}", self.context.job)
    }
}

impl KvSource for Fixture {
    fn get(&self, namespace: &str, key: &str) -> Option<String> {
        self.kv.get(namespace)?.get(key).cloned()
    }

    fn keys(&self, namespace: &str) -> Vec<String> {
        if namespace == self.own_secrets_namespace() {
            return self.secrets.keys().cloned().collect();
        }
        self.kv
            .get(namespace)
            .map(|entries| entries.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn secret(&self, job: &str, key: &str) -> Result<Option<String>, String> {
        if job == self.context.job {
            return Ok(self.secrets.get(key).cloned());
        }
        Ok(self.get(&format!("secrets/job/{job}"), key))
    }
}
