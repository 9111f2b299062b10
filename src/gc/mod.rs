//! `maand gc`: what garbage collection removes, decided from the catalog (pure), and the
//! removal of removed allocations' job trees on workers ([`collect`]).
//!
//! GC never deletes journal events: it shrinks projections (allocation and hash rows, KV
//! history) and frees disk on workers. Every removal is recorded (`allocation_purged`,
//! `kv_changed`, `kv_purged`), so a replay reproduces the smaller catalog. A gc that fails or is
//! killed part-way is simply run again: its plan is recomputed from what is left.

mod collect;
pub use collect::{collect, GcSummary};

use crate::events::{AllocationPurged, Event, KvChange, KvChanged, KvPurged};
use std::collections::{BTreeMap, BTreeSet};

/// An allocation still marked removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedAllocation {
    pub alloc_id: String,
    pub job: String,
    pub worker: String,
    /// The worker is still in the catalog (an unreachable departed worker is assumed gone).
    pub worker_present: bool,
}

/// The current state of one KV key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvKey {
    pub namespace: String,
    pub key: String,
    pub deleted: bool,
    /// When its current version was written.
    pub time_ms: i64,
}

/// The events recorded once `purged`'s trees are gone from their workers: their rows go, and
/// their allocation namespaces are deleted.
pub fn purge_allocation(purged: &RemovedAllocation, kv: &[KvKey]) -> Vec<Event> {
    let mut events = vec![Event::AllocationPurged(AllocationPurged {
        alloc_id: purged.alloc_id.clone(),
        job: purged.job.clone(),
        worker_ip: purged.worker.clone(),
    })];
    events.extend(delete_namespaces(
        kv,
        &[crate::kv::access::allocation(&purged.job, &purged.worker)],
    ));
    events
}

/// Deletes (as new tombstone versions) every live key of `namespaces`.
fn delete_namespaces(kv: &[KvKey], namespaces: &[String]) -> Vec<Event> {
    let mut by_namespace: BTreeMap<&str, Vec<KvChange>> = BTreeMap::new();
    for key in kv
        .iter()
        .filter(|k| !k.deleted && namespaces.contains(&k.namespace))
    {
        by_namespace
            .entry(&key.namespace)
            .or_default()
            .push(KvChange::Delete {
                key: key.key.clone(),
            });
    }
    by_namespace
        .into_iter()
        .map(|(namespace, changes)| {
            Event::KvChanged(KvChanged {
                namespace: namespace.to_string(),
                changes,
            })
        })
        .collect()
}

/// Job-level namespaces of jobs that have no allocation left (removed ones excepted): their
/// KV is deleted. Jobs that are only disabled keep theirs (they come back with their secrets).
pub fn purge_jobs_without_allocations(
    kv: &[KvKey],
    jobs_with_allocations: &BTreeSet<String>,
) -> Vec<Event> {
    let mut jobs: BTreeSet<&str> = BTreeSet::new();
    for key in kv {
        for prefix in [
            "vars/job/",
            "secrets/job/",
            "maand/job/",
            "vars/bucket/job/",
        ] {
            if let Some(rest) = key.namespace.strip_prefix(prefix) {
                if !rest.contains('/') {
                    jobs.insert(rest);
                }
            }
        }
    }
    let namespaces: Vec<String> = jobs
        .into_iter()
        .filter(|job| !jobs_with_allocations.contains(*job))
        .flat_map(|job| {
            [
                format!("vars/job/{job}"),
                format!("secrets/job/{job}"),
                format!("maand/job/{job}"),
                format!("vars/bucket/job/{job}"),
            ]
        })
        .collect();
    delete_namespaces(kv, &namespaces)
}

/// Keys whose current version is a deletion at least `retain_days` old lose their whole
/// history.
pub fn purge_kv_history(kv: &[KvKey], now_ms: i64, retain_days: u32) -> Option<Event> {
    let cutoff = now_ms - i64::from(retain_days) * 86_400_000;
    let keys: Vec<(String, String)> = kv
        .iter()
        .filter(|k| k.deleted && k.time_ms <= cutoff)
        .map(|k| (k.namespace.clone(), k.key.clone()))
        .collect();
    (!keys.is_empty()).then_some(Event::KvPurged(KvPurged { keys }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(namespace: &str, key: &str, deleted: bool, time_ms: i64) -> KvKey {
        KvKey {
            namespace: namespace.into(),
            key: key.into(),
            deleted,
            time_ms,
        }
    }

    #[test]
    fn purging_an_allocation_deletes_its_rows_and_its_allocation_namespace_only() {
        let removed = RemovedAllocation {
            alloc_id: "a1".into(),
            job: "api".into(),
            worker: "127.9.0.2".into(),
            worker_present: false,
        };
        let kv = [
            key("maand/job/api/worker/127.9.0.2", "version", false, 1),
            key("maand/job/api/worker/127.9.0.2", "old", true, 1),
            key("maand/job/api/worker/127.9.0.1", "version", false, 1),
        ];
        let events = purge_allocation(&removed, &kv);
        assert!(matches!(&events[0], Event::AllocationPurged(p) if p.alloc_id == "a1"));
        assert_eq!(events.len(), 2);
        let Event::KvChanged(change) = &events[1] else {
            panic!("expected kv_changed")
        };
        assert_eq!(change.namespace, "maand/job/api/worker/127.9.0.2");
        assert_eq!(
            change.changes,
            vec![KvChange::Delete {
                key: "version".into()
            }]
        );
    }

    #[test]
    fn jobs_without_allocations_lose_their_job_namespaces_and_others_keep_them() {
        let kv = [
            key("vars/job/gone", "a", false, 1),
            key("secrets/job/gone", "s", false, 1),
            key("vars/job/kept", "a", false, 1),
            key("maand/job/gone/worker/127.9.0.1", "v", false, 1),
        ];
        let events = purge_jobs_without_allocations(&kv, &BTreeSet::from(["kept".to_string()]));
        let namespaces: Vec<&str> = events
            .iter()
            .map(|e| match e {
                Event::KvChanged(c) => c.namespace.as_str(),
                _ => panic!("only kv changes"),
            })
            .collect();
        assert_eq!(namespaces, ["secrets/job/gone", "vars/job/gone"]);
    }

    #[test]
    fn only_deletions_older_than_the_retention_are_purged() {
        let day = 86_400_000;
        let kv = [
            key("n", "old", true, 0),
            key("n", "recent", true, 9 * day),
            key("n", "live", false, 0),
        ];
        let Some(Event::KvPurged(purged)) = purge_kv_history(&kv, 10 * day, 2) else {
            panic!("expected a purge")
        };
        assert_eq!(purged.keys, vec![("n".to_string(), "old".to_string())]);
        assert!(purge_kv_history(&kv, 10 * day, 30).is_none());
        let Some(Event::KvPurged(all)) = purge_kv_history(&kv, 10 * day, 0) else {
            panic!()
        };
        assert_eq!(all.keys.len(), 2);
    }
}
