//! Glue between build and [`crate::prometheus::catalog`]: its problems as build errors, and
//! the scrape KV merged into the KV build wants, with scrape templates reading the job-level
//! KV as it will be after this build.

use super::{BuildContext, BuildError, CatalogSnapshot};
use crate::events::KvValue;
use crate::prometheus::catalog::{self, TemplateKv};
use crate::prometheus::Problem;
use crate::workspace::Workspace;
use std::collections::{BTreeMap, BTreeSet};

type Desired = BTreeMap<String, BTreeMap<String, KvValue>>;

impl From<Problem> for BuildError {
    fn from(problem: Problem) -> BuildError {
        let at = if problem.yaml_path.is_empty() {
            String::new()
        } else {
            format!("at {}: ", problem.yaml_path)
        };
        BuildError {
            file: format!("workspace/jobs/{}/{}", problem.job, problem.file),
            kind: "ErrInvalidJob",
            message: format!("{at}{}", problem.message),
        }
    }
}

/// Every `_prometheus/` problem that needs no KV.
pub(super) fn validate(ws: &Workspace) -> Vec<BuildError> {
    catalog::validate(ws)
        .into_iter()
        .map(BuildError::from)
        .collect()
}

/// The KV as scrape templates read it: build-owned namespaces as this build leaves them,
/// `vars/job/<job>` with `vars.toml` merged in, everything else as it is.
struct AfterBuild<'a, R: rand::CryptoRng + ?Sized> {
    ws: &'a Workspace,
    current: &'a CatalogSnapshot,
    desired: &'a Desired,
    ctx: &'a BuildContext<'a, R>,
}

impl<R: rand::CryptoRng + ?Sized> TemplateKv for AfterBuild<'_, R> {
    fn plain(&self, namespace: &str) -> BTreeMap<String, String> {
        if super::kv::is_build_owned(namespace) {
            return self
                .desired
                .get(namespace)
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| match v {
                    KvValue::Plain(value) => Some((k.clone(), value.clone())),
                    KvValue::Sealed(_) => None,
                })
                .collect();
        }
        let mut values: BTreeMap<String, String> = self
            .current
            .kv
            .get(namespace)
            .into_iter()
            .flatten()
            .filter(|(_, c)| !c.deleted && !c.sealed)
            .map(|(k, c)| (k.clone(), c.value.clone()))
            .collect();
        if let Some(job) = namespace.strip_prefix("vars/job/") {
            if let Some(job) = self.ws.jobs.get(job) {
                values.extend(job.vars.clone());
            }
        }
        values
    }

    fn secrets(&self, job: &str) -> BTreeMap<String, Result<String, String>> {
        let namespace = crate::kv::access::job_secrets(job);
        self.current
            .kv
            .get(&namespace)
            .into_iter()
            .flatten()
            .filter(|(_, c)| !c.deleted && c.sealed)
            .map(|(key, c)| {
                let opened = crate::kv::secret::SealedSecret::decode(&c.value)
                    .map_err(|e| e.to_string())
                    .and_then(|sealed| {
                        crate::kv::secret::open(self.ctx.kv_key, &namespace, key, &sealed)
                            .map_err(|e| e.to_string())
                    });
                (key.clone(), opened)
            })
            .collect()
    }
}

/// Adds the scrape KV (and scrape `job_name`s) to `desired`.
pub(super) fn extend<R: rand::CryptoRng + ?Sized>(
    ws: &Workspace,
    current: &CatalogSnapshot,
    active_jobs: &BTreeSet<&str>,
    desired: &mut Desired,
    ctx: &BuildContext<'_, R>,
) -> Result<(), BuildError> {
    let view = AfterBuild {
        ws,
        current,
        desired,
        ctx,
    };
    let values = catalog::decide_kv(ws, active_jobs, &view).map_err(|problems| {
        let mut errors = problems.into_iter().map(BuildError::from);
        let first = errors.next().expect("an error carries a problem");
        let rest: Vec<String> = errors.map(|e| e.to_string()).collect();
        if rest.is_empty() {
            first
        } else {
            BuildError {
                message: format!("{}\n{}", first.message, rest.join("\n")),
                ..first
            }
        }
    })?;
    for (namespace, keys) in values {
        let entry = desired.entry(namespace).or_default();
        for (key, value) in keys {
            entry.insert(key, KvValue::Plain(value));
        }
    }
    Ok(())
}
