//! Which KV namespaces a job may read.
//!
//! Owns the namespace names maand itself uses (`maand/bucket`, `vars/job/<job>`, ...) and the
//! read rule: code running for one allocation — a job on one worker, whether a job command or
//! a template — sees the bucket-wide namespaces, its worker's namespaces, its own job and
//! allocation namespaces, and the job namespaces of every upstream job its commands demand.
//! `maand cat kv --jobs` shows the union of that rule over a job's non-removed allocations.
//!
//! Pure: it never touches the database, never reads files and never decides who may write.
//!
//! | Namespace | Readable by |
//! |-----------|-------------|
//! | `maand/bucket`, `vars/bucket` | every allocation |
//! | `maand/worker`, `maand/worker/<ip>`, `maand/worker/<ip>/tags` | allocations on `<ip>` |
//! | `maand/job/<job>`, `vars/bucket/job/<job>`, `vars/job/<job>`, `secrets/job/<job>` | allocations of `<job>` |
//! | `maand/job/<job>/worker/<ip>` | the allocation of `<job>` on `<ip>` |
//! | `maand/job/<up>`, `vars/job/<up>`, `secrets/job/<up>` | allocations of a job whose commands demand `<up>` |

use std::collections::BTreeSet;

/// Build-owned bucket metadata (bucket id, job lists, port numbers).
pub const BUCKET: &str = "maand/bucket";
/// The operator's `bucket.conf` keys.
pub const BUCKET_VARS: &str = "vars/bucket";
/// Build-owned worker lists by label, and the bucket CA certificate.
pub const WORKERS: &str = "maand/worker";

const JOB_PREFIX: &str = "maand/job/";
const ALLOCATION_INFIX: &str = "/worker/";

/// One worker's build-owned metadata: `maand/worker/<ip>`.
pub fn worker(worker_ip: &str) -> String {
    format!("{WORKERS}/{worker_ip}")
}

/// One worker's `workers.json` tags: `maand/worker/<ip>/tags`.
pub fn worker_tags(worker_ip: &str) -> String {
    format!("{WORKERS}/{worker_ip}/tags")
}

/// A job's build-owned catalog metadata: `maand/job/<job>`.
pub fn job(job: &str) -> String {
    format!("{JOB_PREFIX}{job}")
}

/// A job's section of `bucket.jobs*.conf`: `vars/bucket/job/<job>`.
pub fn job_bucket_vars(job: &str) -> String {
    format!("{BUCKET_VARS}/job/{job}")
}

/// A job's `vars.toml` plus what its hooks put: `vars/job/<job>`.
pub fn job_vars(job: &str) -> String {
    format!("vars/job/{job}")
}

/// A job's encrypted secrets: `secrets/job/<job>`.
pub fn job_secrets(job: &str) -> String {
    format!("secrets/job/{job}")
}

/// One allocation's namespace (certificates, peers, target version):
/// `maand/job/<job>/worker/<ip>`.
pub fn allocation(job: &str, worker_ip: &str) -> String {
    format!("{JOB_PREFIX}{job}{ALLOCATION_INFIX}{worker_ip}")
}

/// The `(job, worker_ip)` of an allocation namespace written by [`allocation`], or `None` for
/// any other namespace.
pub fn parse_allocation(namespace: &str) -> Option<(&str, &str)> {
    let rest = namespace.strip_prefix(JOB_PREFIX)?;
    let (job, worker_ip) = rest.split_once(ALLOCATION_INFIX)?;
    if job.is_empty() || worker_ip.is_empty() || job.contains('/') || worker_ip.contains('/') {
        return None;
    }
    Some((job, worker_ip))
}

/// What one allocation's code may read: the job, the worker it runs on, and the upstream jobs
/// named in the `demands` of the job's commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadScope<'a> {
    pub job: &'a str,
    pub worker_ip: &'a str,
    pub upstream_jobs: &'a [String],
}

impl ReadScope<'_> {
    /// Every namespace this allocation may read, sorted.
    pub fn namespaces(&self) -> BTreeSet<String> {
        let mut namespaces: BTreeSet<String> = [
            BUCKET.to_string(),
            BUCKET_VARS.to_string(),
            WORKERS.to_string(),
            worker(self.worker_ip),
            worker_tags(self.worker_ip),
            job(self.job),
            job_bucket_vars(self.job),
            job_vars(self.job),
            job_secrets(self.job),
            allocation(self.job, self.worker_ip),
        ]
        .into_iter()
        .collect();
        for upstream in self.upstream_jobs.iter().filter(|u| !u.is_empty()) {
            namespaces.extend([job(upstream), job_vars(upstream), job_secrets(upstream)]);
        }
        namespaces
    }

    /// Whether this allocation may read `namespace`.
    pub fn may_read(&self, namespace: &str) -> bool {
        self.namespaces().contains(namespace)
    }
}

/// The namespaces a job may read from any of its allocations on `worker_ips` (its
/// non-removed allocations, for `maand cat kv --jobs`). Empty when the job has no
/// allocation: nothing of it runs anywhere, so it reads nothing.
pub fn job_namespaces(
    job: &str,
    worker_ips: &[String],
    upstream_jobs: &[String],
) -> BTreeSet<String> {
    worker_ips
        .iter()
        .flat_map(|worker_ip| {
            ReadScope {
                job,
                worker_ip,
                upstream_jobs,
            }
            .namespaces()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn an_allocation_reads_bucket_worker_job_and_its_own_namespaces() {
        let scope = ReadScope {
            job: "api",
            worker_ip: "127.9.0.1",
            upstream_jobs: &[],
        };
        let expected: BTreeSet<String> = strings(&[
            "maand/bucket",
            "vars/bucket",
            "maand/worker",
            "maand/worker/127.9.0.1",
            "maand/worker/127.9.0.1/tags",
            "maand/job/api",
            "vars/bucket/job/api",
            "vars/job/api",
            "secrets/job/api",
            "maand/job/api/worker/127.9.0.1",
        ])
        .into_iter()
        .collect();
        assert_eq!(scope.namespaces(), expected);
    }

    #[test]
    fn an_allocation_does_not_read_other_workers_or_other_jobs() {
        let scope = ReadScope {
            job: "api",
            worker_ip: "127.9.0.1",
            upstream_jobs: &[],
        };
        for namespace in [
            "maand/worker/127.9.0.2",
            "maand/worker/127.9.0.2/tags",
            "maand/job/api/worker/127.9.0.2",
            "maand/job/db",
            "vars/job/db",
            "secrets/job/db",
            "vars/bucket/job/db",
            "maand/job/db/worker/127.9.0.1",
            "maand/prometheus",
        ] {
            assert!(
                !scope.may_read(namespace),
                "{namespace} must not be readable"
            );
        }
    }

    #[test]
    fn demanded_upstream_jobs_add_their_job_vars_and_secrets_only() {
        let upstream = strings(&["db"]);
        let scope = ReadScope {
            job: "api",
            worker_ip: "127.9.0.1",
            upstream_jobs: &upstream,
        };
        for namespace in ["maand/job/db", "vars/job/db", "secrets/job/db"] {
            assert!(scope.may_read(namespace), "{namespace} must be readable");
        }
        for namespace in ["vars/bucket/job/db", "maand/job/db/worker/127.9.0.1"] {
            assert!(
                !scope.may_read(namespace),
                "{namespace} must not be readable"
            );
        }
    }

    #[test]
    fn an_empty_demand_job_grants_nothing() {
        let upstream = strings(&[""]);
        let with_empty = ReadScope {
            job: "api",
            worker_ip: "127.9.0.1",
            upstream_jobs: &upstream,
        };
        let without = ReadScope {
            upstream_jobs: &[],
            ..with_empty.clone()
        };
        assert_eq!(with_empty.namespaces(), without.namespaces());
    }

    #[test]
    fn a_job_reads_the_union_over_its_workers() {
        let namespaces = job_namespaces("api", &strings(&["127.9.0.1", "127.9.0.2"]), &[]);
        for namespace in [
            "maand/worker/127.9.0.1",
            "maand/worker/127.9.0.2/tags",
            "maand/job/api/worker/127.9.0.1",
            "maand/job/api/worker/127.9.0.2",
        ] {
            assert!(namespaces.contains(namespace), "{namespace} missing");
        }
        assert_eq!(namespaces.len(), 13);
    }

    #[test]
    fn a_job_without_allocations_reads_nothing() {
        assert!(job_namespaces("api", &[], &strings(&["db"])).is_empty());
    }

    #[test]
    fn allocation_namespaces_parse_back_to_job_and_worker() {
        let namespace = allocation("api", "127.9.0.1");
        assert_eq!(parse_allocation(&namespace), Some(("api", "127.9.0.1")));
        for other in [
            "maand/job/api",
            "maand/job/api/worker/",
            "maand/job//worker/127.9.0.1",
            "maand/job/api/worker/127.9.0.1/extra",
            "vars/job/api",
            "maand/worker/127.9.0.1",
        ] {
            assert_eq!(parse_allocation(other), None, "{other}");
        }
    }
}
