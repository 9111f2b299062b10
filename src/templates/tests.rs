//! Specification tests for template rendering: context, functions, filters, access, errors.

use std::collections::BTreeMap;

use super::*;

/// An in-memory KV store; secrets are stored in clear here and "decrypted" by lookup.
#[derive(Default)]
struct MemoryKv {
    values: BTreeMap<(String, String), String>,
    broken_secrets: Vec<(String, String)>,
}

impl MemoryKv {
    fn with(mut self, namespace: &str, key: &str, value: &str) -> Self {
        self.values
            .insert((namespace.to_string(), key.to_string()), value.to_string());
        self
    }
}

impl KvSource for MemoryKv {
    fn get(&self, namespace: &str, key: &str) -> Option<String> {
        self.values
            .get(&(namespace.to_string(), key.to_string()))
            .cloned()
    }

    fn keys(&self, namespace: &str) -> Vec<String> {
        self.values
            .keys()
            .filter(|(ns, _)| ns == namespace)
            .map(|(_, key)| key.clone())
            .collect()
    }

    fn secret(&self, job: &str, key: &str) -> Result<Option<String>, String> {
        let namespace = format!("secrets/job/{job}");
        if self
            .broken_secrets
            .contains(&(namespace.clone(), key.to_string()))
        {
            return Err("the bucket kv.key does not open it".to_string());
        }
        Ok(self.get(&namespace, key))
    }
}

fn context() -> TemplateContext {
    TemplateContext {
        allocation_id: "6f1c0e52-0000-5000-8000-000000000001".to_string(),
        job: "api".to_string(),
        worker_ip: "10.0.0.1".to_string(),
        worker_id: "w-1".to_string(),
        labels: vec!["worker".to_string(), "api".to_string()],
        current_version: "1.1.0".to_string(),
        new_version: "1.2.0".to_string(),
        bucket_path: "/opt/worker/b1".to_string(),
        job_path: "/opt/worker/b1/jobs/api".to_string(),
    }
}

const NO_UPSTREAM: &[String] = &[];

fn scope() -> ReadScope<'static> {
    ReadScope {
        job: "api",
        worker_ip: "10.0.0.1",
        upstream_jobs: NO_UPSTREAM,
    }
}

fn render_with(source: &str, kv: &MemoryKv) -> Result<String, TemplateError> {
    render("config.tpl", source, &context(), &scope(), kv)
}

#[test]
fn context_variables_render() {
    let out = render_with("{{ job }}@{{ worker_ip }}", &MemoryKv::default()).unwrap();
    assert_eq!(out, "api@10.0.0.1");
}
