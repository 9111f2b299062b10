//! Peer lists, computed on read instead of stored.
//!
//! Two documented keys list "the other workers": `peer_workers` in every allocation namespace
//! (`maand/job/<job>/worker/<ip>`: the job's other non-removed allocations, in allocation
//! order) and `<label>_peers` in every worker namespace (`maand/worker/<ip>`: the other
//! workers carrying the label, in workers.json order). Stored per allocation or per worker,
//! their total size grows with the square of the workers sharing a job or a label. So build
//! stores only the lists they are cut from, once per job and per label, and every reader
//! (`maand cat kv`, templates, job commands and their runtime API) derives them here:
//!
//! - `<label>_peers` of worker `w` = `maand/worker` `<label>_workers` without `w`, for every
//!   label in `w`'s `labels` key;
//! - `peer_workers` of allocation (`job`, `w`) = the job's allocation namespaces ordered by
//!   their `<job>_allocation_index`, without `w`.
//!
//! A derived key reports the highest version among the keys it is cut from. Rows of these
//! keys that older builds stored are ignored (the next build deletes them).
//!
//! Pure: fed with current KV values, it never touches the database.

use std::collections::{BTreeMap, BTreeSet};

use super::access;

const PEER_WORKERS: &str = "peer_workers";
const LABEL_PEERS_SUFFIX: &str = "_peers";
const LABEL_WORKERS_SUFFIX: &str = "_workers";
const ALLOCATION_INDEX_SUFFIX: &str = "_allocation_index";
const LABELS: &str = "labels";

/// Whether `key` of `namespace` is a peer list readers derive (stored rows of it are ignored).
pub fn is_peer_list(namespace: &str, key: &str) -> bool {
    if key == PEER_WORKERS {
        return access::parse_allocation(namespace).is_some();
    }
    key.ends_with(LABEL_PEERS_SUFFIX) && worker_of(namespace).is_some()
}

/// The worker of a `maand/worker/<ip>` namespace.
fn worker_of(namespace: &str) -> Option<&str> {
    let ip = namespace.strip_prefix(access::WORKERS)?.strip_prefix('/')?;
    (!ip.is_empty() && !ip.contains('/')).then_some(ip)
}

/// Whether a stored key is one peer lists are cut from; readers that load only part of the KV
/// must load these.
pub fn is_peer_source(namespace: &str, key: &str) -> bool {
    (namespace == access::WORKERS && key.ends_with(LABEL_WORKERS_SUFFIX))
        || (key == LABELS && worker_of(namespace).is_some())
        || (key.ends_with(ALLOCATION_INDEX_SUFFIX) && access::parse_allocation(namespace).is_some())
}

/// One derived value and the version it reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerValue {
    pub value: String,
    pub version: u64,
}

/// The lists peer keys are cut from, gathered from the current, non-deleted plain KV values.
#[derive(Debug, Clone, Default)]
pub struct PeerLists {
    /// `maand/worker` keys ending in `_workers`: value and version.
    label_workers: BTreeMap<String, (String, u64)>,
    /// Each worker's `labels` value and version.
    worker_labels: BTreeMap<String, (String, u64)>,
    /// Each job's allocations: (allocation index, worker) → version of the index key.
    allocations: BTreeMap<String, BTreeMap<(u64, String), u64>>,
}

impl PeerLists {
    /// Gathers from `(namespace, key, value, version)` of every live plain value.
    pub fn from_values<'a>(
        values: impl IntoIterator<Item = (&'a str, &'a str, &'a str, u64)>,
    ) -> PeerLists {
        let mut lists = PeerLists::default();
        for (namespace, key, value, version) in values {
            lists.observe(namespace, key, value, version);
        }
        lists
    }

    /// Takes note of one live plain value; anything that is not a source is ignored.
    pub fn observe(&mut self, namespace: &str, key: &str, value: &str, version: u64) {
        if namespace == access::WORKERS && key.ends_with(LABEL_WORKERS_SUFFIX) {
            self.label_workers
                .insert(key.to_string(), (value.to_string(), version));
        } else if let Some(worker) = worker_of(namespace).filter(|_| key == LABELS) {
            self.worker_labels
                .insert(worker.to_string(), (value.to_string(), version));
        } else if let Some((job, worker)) = access::parse_allocation(namespace) {
            let index = key
                .strip_prefix(job)
                .filter(|rest| *rest == ALLOCATION_INDEX_SUFFIX)
                .and_then(|_| value.parse::<u64>().ok());
            if let Some(index) = index {
                self.allocations
                    .entry(job.to_string())
                    .or_default()
                    .insert((index, worker.to_string()), version);
            }
        }
    }

    /// The derived value of `key` in `namespace`, if it is a peer list that exists.
    pub fn get(&self, namespace: &str, key: &str) -> Option<PeerValue> {
        if key == PEER_WORKERS {
            let (job, worker) = access::parse_allocation(namespace)?;
            return self.job_peers(job, worker);
        }
        let worker = worker_of(namespace)?;
        let label = key.strip_suffix(LABEL_PEERS_SUFFIX)?;
        self.label_peers(worker, label)
    }

    /// The peer keys `namespace` holds, sorted.
    pub fn keys(&self, namespace: &str) -> Vec<String> {
        if let Some((job, worker)) = access::parse_allocation(namespace) {
            return self
                .job_peers(job, worker)
                .map(|_| vec![PEER_WORKERS.to_string()])
                .unwrap_or_default();
        }
        let Some(worker) = worker_of(namespace) else {
            return Vec::new();
        };
        let keys: BTreeSet<String> = self
            .labels_of(worker)
            .filter(|label| self.label_peers(worker, label).is_some())
            .map(|label| format!("{label}{LABEL_PEERS_SUFFIX}"))
            .collect();
        keys.into_iter().collect()
    }

    /// Every derived key: `(namespace, key, value)`, in no particular order.
    pub fn entries(&self) -> Vec<(String, String, PeerValue)> {
        let mut entries = Vec::new();
        for (job, allocations) in &self.allocations {
            for (_, worker) in allocations.keys() {
                if let Some(value) = self.job_peers(job, worker) {
                    entries.push((
                        access::allocation(job, worker),
                        PEER_WORKERS.to_string(),
                        value,
                    ));
                }
            }
        }
        for worker in self.worker_labels.keys() {
            let namespace = access::worker(worker);
            for key in self.keys(&namespace) {
                if let Some(value) = self.get(&namespace, &key) {
                    entries.push((namespace.clone(), key, value));
                }
            }
        }
        entries
    }

    fn labels_of<'a>(&'a self, worker: &str) -> impl Iterator<Item = &'a str> {
        self.worker_labels
            .get(worker)
            .map(|(labels, _)| labels.as_str())
            .unwrap_or_default()
            .split(',')
            .filter(|label| !label.is_empty())
    }

    fn label_peers(&self, worker: &str, label: &str) -> Option<PeerValue> {
        let labels_version = self.worker_labels.get(worker)?.1;
        if !self.labels_of(worker).any(|l| l == label) {
            return None;
        }
        let (hosts, version) = self
            .label_workers
            .get(&format!("{label}{LABEL_WORKERS_SUFFIX}"))?;
        let peers: Vec<&str> = hosts
            .split(',')
            .filter(|host| !host.is_empty() && *host != worker)
            .collect();
        Some(PeerValue {
            value: peers.join(","),
            version: (*version).max(labels_version),
        })
    }

    fn job_peers(&self, job: &str, worker: &str) -> Option<PeerValue> {
        let allocations = self.allocations.get(job)?;
        if !allocations.keys().any(|(_, w)| w == worker) {
            return None;
        }
        let peers: Vec<&str> = allocations
            .keys()
            .map(|(_, w)| w.as_str())
            .filter(|w| *w != worker)
            .collect();
        Some(PeerValue {
            value: peers.join(","),
            version: allocations.values().copied().max().unwrap_or(1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lists(values: &[(&str, &str, &str)]) -> PeerLists {
        PeerLists::from_values(values.iter().map(|(n, k, v)| (*n, *k, *v, 1)))
    }

    #[test]
    fn label_peers_are_the_labels_workers_without_the_worker() {
        let lists = lists(&[
            (
                "maand/worker",
                "web_workers",
                "127.0.0.1,127.0.0.2,127.0.0.3",
            ),
            ("maand/worker", "db_workers", "127.0.0.2"),
            ("maand/worker/127.0.0.2", "labels", "db,web"),
            ("maand/worker/127.0.0.1", "labels", "web"),
        ]);
        let get = |ns: &str, key: &str| lists.get(ns, key).map(|v| v.value);
        assert_eq!(
            get("maand/worker/127.0.0.2", "web_peers").as_deref(),
            Some("127.0.0.1,127.0.0.3")
        );
        assert_eq!(
            get("maand/worker/127.0.0.2", "db_peers").as_deref(),
            Some("")
        );
        assert_eq!(get("maand/worker/127.0.0.1", "db_peers"), None);
        assert_eq!(
            lists.keys("maand/worker/127.0.0.2"),
            ["db_peers", "web_peers"]
        );
        assert_eq!(lists.entries().len(), 3);
    }

    #[test]
    fn peer_workers_follow_the_allocation_index() {
        let lists = lists(&[
            (
                "maand/job/api/worker/127.0.0.9",
                "api_allocation_index",
                "0",
            ),
            (
                "maand/job/api/worker/127.0.0.1",
                "api_allocation_index",
                "2",
            ),
            (
                "maand/job/api/worker/127.0.0.5",
                "api_allocation_index",
                "1",
            ),
            ("maand/job/api/worker/127.0.0.5", "version", "1.0.0"),
        ]);
        let value = lists
            .get("maand/job/api/worker/127.0.0.1", "peer_workers")
            .unwrap();
        assert_eq!(value.value, "127.0.0.9,127.0.0.5");
        assert_eq!(
            lists.keys("maand/job/api/worker/127.0.0.5"),
            ["peer_workers"]
        );
        assert_eq!(
            lists.get("maand/job/api/worker/127.0.0.7", "peer_workers"),
            None
        );
        assert_eq!(
            lists.get("maand/job/db/worker/127.0.0.1", "peer_workers"),
            None
        );
    }

    #[test]
    fn only_peer_keys_of_worker_and_allocation_namespaces_are_derived() {
        assert!(is_peer_list(
            "maand/job/api/worker/127.0.0.1",
            "peer_workers"
        ));
        assert!(is_peer_list("maand/worker/127.0.0.1", "web_peers"));
        assert!(!is_peer_list("maand/worker", "web_peers"));
        assert!(!is_peer_list("maand/job/api", "peer_workers"));
        assert!(!is_peer_list("vars/job/api", "x_peers"));
        assert!(!is_peer_list("maand/worker/127.0.0.1/tags", "x_peers"));
    }
}
