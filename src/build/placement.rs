//! Placement: which job runs on which worker (label matching), which allocations are disabled
//! or removed, and the checks on the result (minimum allocations, worker capacity).

use super::{alloc_id, Allocations, BuildError, CatalogSnapshot};
use crate::events::{AllocationRecord, Event};
use crate::workspace::{DisabledJob, Workspace};
use std::collections::BTreeMap;

/// The allocation set a build wants, and what changed against the catalog.
pub(super) struct Placement {
    /// Every allocation, removed ones included.
    pub all: Allocations,
    changed: Vec<AllocationRecord>,
}

impl Placement {
    pub fn events(&self) -> impl Iterator<Item = Event> + '_ {
        self.changed.iter().cloned().map(Event::AllocationUpserted)
    }

    /// Allocations that are neither removed nor disabled.
    pub fn active(&self) -> impl Iterator<Item = &AllocationRecord> {
        self.all.values().filter(|a| !a.removed && !a.disabled)
    }

    /// Allocations that are not removed (disabled ones included).
    pub fn present(&self) -> impl Iterator<Item = &AllocationRecord> {
        self.all.values().filter(|a| !a.removed)
    }
}

fn is_disabled(ws: &Workspace, job: &str, worker: &str) -> bool {
    ws.disabled.workers.contains(worker)
        || ws.disabled.jobs.get(job).is_some_and(|d| match d {
            DisabledJob::Everywhere => true,
            DisabledJob::OnWorkers(workers) => workers.contains(worker),
        })
}

pub(super) fn place(ws: &Workspace, current: &CatalogSnapshot) -> Placement {
    let mut all = Allocations::new();
    for job in ws.jobs.values() {
        for worker in &ws.workers {
            if job
                .manifest
                .selectors
                .iter()
                .all(|s| worker.labels.contains(s))
            {
                let record = AllocationRecord {
                    alloc_id: alloc_id(&job.name, &worker.host),
                    job: job.name.clone(),
                    worker_ip: worker.host.clone(),
                    disabled: is_disabled(ws, &job.name, &worker.host),
                    removed: false,
                    new_version: job.manifest.version.to_string(),
                    deployment_seq: job.deployment_seq,
                };
                all.insert((job.name.clone(), worker.host.clone()), record);
            }
        }
    }
    for (key, existing) in &current.allocations {
        if !all.contains_key(key) {
            all.insert(
                key.clone(),
                AllocationRecord {
                    removed: true,
                    ..existing.clone()
                },
            );
        }
    }
    let changed = all
        .iter()
        .filter(|(key, record)| current.allocations.get(*key) != Some(*record))
        .map(|(_, r)| r.clone())
        .collect();
    Placement { all, changed }
}

pub(super) fn check(ws: &Workspace, placement: &Placement, errors: &mut Vec<BuildError>) {
    let mut present_count: BTreeMap<&str, usize> = BTreeMap::new();
    for allocation in placement.present() {
        *present_count.entry(allocation.job.as_str()).or_default() += 1;
    }
    let mut active_by_worker: BTreeMap<&str, Vec<&AllocationRecord>> = BTreeMap::new();
    for allocation in placement.active() {
        active_by_worker
            .entry(allocation.worker_ip.as_str())
            .or_default()
            .push(allocation);
    }
    for job in ws.jobs.values() {
        let minimum = job.manifest.min_allocations_count as usize;
        let count = present_count.get(job.name.as_str()).copied().unwrap_or(0);
        if count < minimum {
            errors.push(BuildError {
                file: format!("workspace/jobs/{}/manifest.json", job.name),
                kind: "ErrInsufficientAllocations",
                message: format!(
                    "min_allocations_count is {minimum} but only {count} worker(s) carry every selector [{}]; label more workers in workspace/workers.json or lower the minimum",
                    job.manifest.selectors.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            });
        }
    }
    for worker in &ws.workers {
        let (mut memory, mut cpu) = (0u64, 0u64);
        let mut jobs = Vec::new();
        let placed = active_by_worker.get(worker.host.as_str());
        for allocation in placed.into_iter().flatten() {
            let resources = ws.resources(&allocation.job).expect("placed jobs exist");
            memory += resources.memory_mb;
            cpu += resources.cpu_mhz;
            jobs.push(allocation.job.as_str());
        }
        let file = "workspace/workers.json".to_string();
        for (what, unit, needed, available, field) in [
            ("memory", "MB", memory, worker.memory_mb, "memory"),
            ("cpu", "MHz", cpu, worker.cpu_mhz, "cpu"),
        ] {
            if needed == 0 {
                continue;
            }
            match available {
                None => errors.push(BuildError {
                    file: file.clone(),
                    kind: "ErrInsufficientResource",
                    message: format!(
                        "[{}].{field}: worker {} must declare {what} because its jobs ({}) reserve {needed} {unit}; add \"{field}\" (or run `maand worker_facts`)",
                        worker.position,
                        worker.host,
                        jobs.join(", ")
                    ),
                }),
                Some(available) if needed > available => errors.push(BuildError {
                    file: file.clone(),
                    kind: "ErrInsufficientResource",
                    message: format!(
                        "[{}].{field}: worker {} has {available} {unit} of {what} but its jobs ({}) reserve {needed} {unit}; raise the worker's {field}, lower reservations in bucket.jobs*.conf, or move a job with selectors",
                        worker.position,
                        worker.host,
                        jobs.join(", ")
                    ),
                }),
                Some(_) => {}
            }
        }
    }
}
