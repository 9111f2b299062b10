//! Planning a deploy: a pure function from the catalog, the freshly staged trees and the flags
//! to the ordered steps of the deploy (or the reason it cannot run).

use crate::events::{DeployFlags, PlannedStep, StepKind};
use std::collections::{BTreeMap, BTreeSet};

/// What the planner needs to know about a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanJob {
    pub name: String,
    pub deployment_seq: u32,
    pub restart_policy: String,
    pub restart_globs: Vec<String>,
    pub max_concurrent_starts: u32,
    pub max_concurrent_upgrades: u32,
    /// Worker order for batches (`rollout_order` KV); workers not listed follow in catalog order.
    pub rollout_order: Vec<String>,
    /// Deploy-event job commands: event name → command names (`pre_deploy`, `job_control`,
    /// `after_allocation_started`, `after_allocation_stopped`, `post_deploy`).
    pub hooks: BTreeMap<String, Vec<String>>,
    /// The job declares health checks (manifest probes or `health_check` commands): rollouts
    /// wait for them after starts and between update batches.
    pub health: bool,
}

impl PlanJob {
    fn hooks_for(&self, event: &str) -> &[String] {
        self.hooks.get(event).map(Vec::as_slice).unwrap_or(&[])
    }

    /// One hook step per command the job registers for `event`.
    fn hook_steps(
        &self,
        event: &str,
        alloc_ids: Vec<String>,
        env: Vec<(String, String)>,
    ) -> Vec<StepKind> {
        self.hooks_for(event)
            .iter()
            .map(|command| StepKind::Hook {
                command: command.clone(),
                event: event.to_string(),
                alloc_ids: alloc_ids.clone(),
                env: env.clone(),
            })
            .collect()
    }
}

fn env(pairs: &[(&str, String)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn hosts(allocs: &[&PlanAllocation]) -> String {
    allocs
        .iter()
        .map(|a| a.worker.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// What the planner needs to know about an allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanAllocation {
    pub alloc_id: String,
    pub job: String,
    pub worker: String,
    pub disabled: bool,
    pub removed: bool,
    pub new_version: String,
    /// The hash row, when the allocation was ever staged.
    pub deployed: Option<Deployed>,
    /// The tree staged now (`None` for removed allocations).
    pub staged: Option<Staged>,
}

/// An allocation's hash row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployed {
    pub current_hash: String,
    pub previous_hash: Option<String>,
    pub current_version: String,
    pub previous_files: BTreeMap<String, String>,
    pub stopped: bool,
    /// Imported from the Go maand and not deployed by us yet: `previous_hash` is the Go
    /// maand's hash, not comparable with ours.
    pub adopted: bool,
}

/// A tree staged for an allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged {
    pub tree_hash: String,
    pub files: BTreeMap<String, String>,
}

/// Everything a plan is made from.
#[derive(Debug, Clone, Default)]
pub struct PlanInput {
    /// Jobs in the catalog, by name.
    pub jobs: BTreeMap<String, PlanJob>,
    pub allocations: Vec<PlanAllocation>,
    /// Workers still in the catalog (a worker with allocations but not listed here left
    /// `workers.json`).
    pub workers: BTreeSet<String>,
    pub flags: DeployFlags,
    /// Adopted allocations whose worker already holds exactly their staged job tree (rsync's
    /// checksum comparison found nothing to change): promoted without a lifecycle target when
    /// their version is unchanged.
    pub adopted_unchanged: BTreeSet<String>,
}

/// Why an allocation gets the action it gets, for `--dry-run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocationAction {
    pub job: String,
    pub worker: String,
    /// `start`, `restart`, `reload`, `sync`, `adopt`, `skip`, `stop`, `remove`, `disabled`.
    pub action: String,
    pub previous_hash: Option<String>,
    pub current_hash: Option<String>,
    /// Changed paths that matched `restart_globs` and turned a reload into a restart.
    pub matched: Vec<String>,
}

/// A plan: the steps, and the per-allocation reasoning behind them.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub steps: Vec<PlannedStep>,
    pub actions: Vec<AllocationAction>,
    /// Jobs considered that need no rollout.
    pub skipped_jobs: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

/// Why a deploy cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("--jobs names unknown job(s): {}; see `maand cat jobs`", .0.join(", "))]
    UnknownJobs(Vec<String>),
    #[error("--sync-only cannot start new allocations, and these need a first start: {}; deploy without --sync-only first", .0.join(", "))]
    SyncOnlyNeedsStart(Vec<String>),
    #[error("restart_globs of job {job} is not a valid glob set: {reason}")]
    BadGlobs { job: String, reason: String },
}

fn changed_paths(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut paths: BTreeSet<&String> = BTreeSet::new();
    for (path, hash) in after {
        if before.get(path) != Some(hash) {
            paths.insert(path);
        }
    }
    for path in before.keys() {
        if !after.contains_key(path) {
            paths.insert(path);
        }
    }
    paths.into_iter().cloned().collect()
}

/// The lifecycle an active allocation needs, or `None` when it is up to date.
fn active_action(
    job: &PlanJob,
    alloc: &PlanAllocation,
    input: &PlanInput,
    globs: &globset::GlobSet,
) -> (String, Vec<String>) {
    let flags = &input.flags;
    let staged = alloc
        .staged
        .as_ref()
        .expect("active allocations are staged");
    let deployed = match &alloc.deployed {
        Some(d) if d.previous_hash.is_some() && !d.stopped => d,
        _ => return ("start".into(), vec![]),
    };
    // An adopted allocation whose worker already holds its staged tree, at the version it
    // runs, is copied (helper files) and promoted: nothing of it changed, nothing restarts.
    if deployed.adopted
        && !flags.force
        && input.adopted_unchanged.contains(&alloc.alloc_id)
        && deployed.current_version == alloc.new_version
    {
        return ("adopt".into(), vec![]);
    }
    let changed = deployed.previous_hash.as_deref() != Some(staged.tree_hash.as_str())
        || deployed.current_version != alloc.new_version;
    if !changed && !flags.force {
        return ("skip".into(), vec![]);
    }
    if flags.sync_only {
        return ("sync".into(), vec![]);
    }
    if flags.force && !changed {
        return ("restart".into(), vec![]);
    }
    match job.restart_policy.as_str() {
        "never" => ("sync".into(), vec![]),
        "reload" => {
            // Without a promoted file manifest there is nothing to compare: reload.
            if deployed.previous_files.is_empty() {
                return ("reload".into(), vec![]);
            }
            let matched: Vec<String> = changed_paths(&deployed.previous_files, &staged.files)
                .into_iter()
                .filter(|p| globs.is_match(p) || globs.is_match(p.trim_end_matches(".tpl")))
                .collect();
            if matched.is_empty() {
                ("reload".into(), vec![])
            } else {
                ("restart".into(), matched)
            }
        }
        _ => ("restart".into(), vec![]),
    }
}

fn batches<'a>(
    allocs: Vec<&'a PlanAllocation>,
    size: u32,
    order: &[String],
) -> Vec<Vec<&'a PlanAllocation>> {
    let mut allocs = allocs;
    let rank = |worker: &str| order.iter().position(|w| w == worker).unwrap_or(usize::MAX);
    allocs.sort_by(|a, b| {
        rank(&a.worker)
            .cmp(&rank(&b.worker))
            .then(a.worker.cmp(&b.worker))
    });
    if allocs.is_empty() {
        return vec![];
    }
    let size = if size == 0 {
        allocs.len()
    } else {
        size as usize
    };
    allocs.chunks(size).map(<[_]>::to_vec).collect()
}

/// Plans a deploy. Pure: the same input always gives the same plan.
pub fn plan(input: &PlanInput) -> Result<Plan, PlanError> {
    let flags = &input.flags;
    let unknown: Vec<String> = flags
        .jobs
        .iter()
        .filter(|j| !input.jobs.contains_key(*j))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(PlanError::UnknownJobs(unknown));
    }
    let selected = |job: &str| flags.jobs.is_empty() || flags.jobs.iter().any(|j| j == job);
    let last_wave = input
        .jobs
        .values()
        .map(|j| j.deployment_seq + 2)
        .max()
        .unwrap_or(1);
    let mut plan = Plan::default();
    let mut steps: Vec<PlannedStep> = Vec::new();
    let mut push =
        |wave: u32, job: Option<&str>, worker: Option<&str>, batch: u32, kind: StepKind| {
            steps.push(PlannedStep {
                index: 0,
                wave,
                job: job.map(str::to_string),
                worker: worker.map(str::to_string),
                batch,
                kind,
            });
        };

    // Wave 0: reconcile removed and disabled allocations, then workers that left.
    let stopped_hooks = |alloc: &PlanAllocation| -> Vec<StepKind> {
        let Some(job) = input.jobs.get(&alloc.job) else {
            return vec![];
        };
        let extra = env(&[
            ("BATCH_ALLOCATIONS", alloc.worker.clone()),
            ("BATCH_INDEX", "0".into()),
            ("BATCH_COUNT", "1".into()),
            ("DEPLOY_PHASE", "stop".into()),
            ("ROLLOUT_ORDER", job.rollout_order.join(",")),
            (
                "ROLLOUT_ORDER_SOURCE",
                if job.rollout_order.is_empty() {
                    "default"
                } else {
                    "kv"
                }
                .into(),
            ),
        ]);
        job.hook_steps(
            "after_allocation_stopped",
            vec![alloc.alloc_id.clone()],
            extra,
        )
    };
    let mut departed: BTreeSet<&str> = BTreeSet::new();
    for alloc in input.allocations.iter().filter(|a| selected(&a.job)) {
        let job = Some(alloc.job.as_str());
        let worker = Some(alloc.worker.as_str());
        if alloc.removed {
            if alloc.deployed.is_some() {
                let stopped = alloc.deployed.as_ref().is_some_and(|d| d.stopped);
                if !stopped {
                    push(
                        0,
                        job,
                        worker,
                        0,
                        StepKind::Stop {
                            alloc_id: alloc.alloc_id.clone(),
                        },
                    );
                    for kind in stopped_hooks(alloc) {
                        push(0, job, worker, 1, kind);
                    }
                }
                push(
                    0,
                    job,
                    worker,
                    2,
                    StepKind::RemoveJobFiles {
                        alloc_id: alloc.alloc_id.clone(),
                    },
                );
                plan.actions.push(action(alloc, "remove", vec![]));
            }
            if !input.workers.contains(&alloc.worker) {
                departed.insert(&alloc.worker);
            }
        } else if alloc.disabled
            && alloc
                .deployed
                .as_ref()
                .is_some_and(|d| !d.stopped && d.previous_hash.is_some())
        {
            push(
                0,
                job,
                worker,
                0,
                StepKind::Stop {
                    alloc_id: alloc.alloc_id.clone(),
                },
            );
            for kind in stopped_hooks(alloc) {
                push(0, job, worker, 1, kind);
            }
        }
    }
    for worker in departed {
        let all_removed = input
            .allocations
            .iter()
            .filter(|a| a.worker == worker)
            .all(|a| a.removed);
        if all_removed && flags.jobs.is_empty() {
            push(0, None, Some(worker), 3, StepKind::RemoveWorkerTree);
        }
    }

    // Waves 1..: jobs in deployment_seq order.
    let mut new_without_start = Vec::new();
    let mut touched_workers: BTreeSet<String> = BTreeSet::new();
    let mut jobs: Vec<&PlanJob> = input.jobs.values().filter(|j| selected(&j.name)).collect();
    jobs.sort_by_key(|j| (j.deployment_seq, j.name.clone()));
    for job in jobs {
        let wave = job.deployment_seq + 1;
        let globs = {
            let mut builder = globset::GlobSetBuilder::new();
            for glob in &job.restart_globs {
                let glob = globset::Glob::new(glob).map_err(|e| PlanError::BadGlobs {
                    job: job.name.clone(),
                    reason: e.to_string(),
                })?;
                builder.add(glob);
            }
            builder.build().map_err(|e| PlanError::BadGlobs {
                job: job.name.clone(),
                reason: e.to_string(),
            })?
        };
        let allocs: Vec<&PlanAllocation> = input
            .allocations
            .iter()
            .filter(|a| a.job == job.name && !a.removed)
            .collect();
        let mut starts = Vec::new();
        let mut updates: Vec<(&PlanAllocation, String)> = Vec::new();
        let mut syncs = Vec::new();
        let mut disabled_changes = Vec::new();
        for alloc in &allocs {
            let staged = alloc
                .staged
                .as_ref()
                .expect("non-removed allocations are staged");
            if alloc.disabled {
                let changed = alloc.deployed.as_ref().is_none_or(|d| {
                    d.previous_hash.as_deref() != Some(staged.tree_hash.as_str())
                        || d.current_version != alloc.new_version
                });
                if changed {
                    disabled_changes.push(*alloc);
                    plan.actions.push(action(alloc, "disabled", vec![]));
                }
                continue;
            }
            let (what, matched) = active_action(job, alloc, input, &globs);
            plan.actions.push(action(alloc, &what, matched));
            match what.as_str() {
                "start" => {
                    if flags.sync_only {
                        new_without_start.push(format!("{}@{}", alloc.job, alloc.worker));
                    }
                    starts.push(*alloc);
                }
                "restart" | "reload" => updates.push((*alloc, what)),
                "sync" | "adopt" => syncs.push(*alloc),
                _ => {}
            }
        }
        if starts.is_empty()
            && updates.is_empty()
            && syncs.is_empty()
            && disabled_changes.is_empty()
        {
            plan.skipped_jobs.push(job.name.clone());
            continue;
        }
        let name = Some(job.name.as_str());
        let active: Vec<String> = allocs
            .iter()
            .filter(|a| !a.disabled)
            .map(|a| a.alloc_id.clone())
            .collect();
        let mut batch = 0;
        for kind in job.hook_steps("pre_deploy", active.clone(), vec![]) {
            push(wave, name, None, batch, kind);
            batch += 1;
        }
        let restage = !job.hooks_for("pre_deploy").is_empty();
        if restage {
            push(wave, name, None, batch, StepKind::Restage);
            batch += 1;
        }
        let mut promoted = Vec::new();
        let shipped = starts
            .iter()
            .copied()
            .chain(updates.iter().map(|(a, _)| *a))
            .chain(syncs.iter().copied());
        for alloc in shipped {
            let staged = alloc.staged.as_ref().expect("staged");
            push(
                wave,
                name,
                Some(&alloc.worker),
                batch,
                StepKind::Sync {
                    alloc_id: alloc.alloc_id.clone(),
                    tree_hash: staged.tree_hash.clone(),
                    transfer: true,
                },
            );
            touched_workers.insert(alloc.worker.clone());
            promoted.push(alloc.alloc_id.clone());
        }
        for alloc in &disabled_changes {
            let staged = alloc.staged.as_ref().expect("staged");
            push(
                wave,
                name,
                Some(&alloc.worker),
                batch,
                StepKind::Sync {
                    alloc_id: alloc.alloc_id.clone(),
                    tree_hash: staged.tree_hash.clone(),
                    transfer: false,
                },
            );
            promoted.push(alloc.alloc_id.clone());
        }
        batch += 1;
        let order = job.rollout_order.join(",");
        let order_source = if job.rollout_order.is_empty() {
            "default"
        } else {
            "kv"
        };
        let lifecycle = !flags.sync_only;
        if lifecycle && !job.hooks_for("job_control").is_empty() {
            // job_control replaces the Makefile lifecycle: one run over the active allocations.
            let updated: Vec<&PlanAllocation> = updates.iter().map(|(a, _)| *a).collect();
            let extra = env(&[
                ("NEW_ALLOCATIONS", hosts(&starts)),
                ("UPDATED_ALLOCATIONS", hosts(&updated)),
            ]);
            for kind in job.hook_steps("job_control", active.clone(), extra) {
                push(wave, name, None, batch, kind);
                batch += 1;
            }
            if job.health {
                push(
                    wave,
                    name,
                    None,
                    batch,
                    StepKind::HealthGate {
                        alloc_ids: active.clone(),
                    },
                );
                batch += 1;
            }
        } else if lifecycle {
            let targets: BTreeMap<&str, &str> = updates
                .iter()
                .map(|(a, t)| (a.alloc_id.as_str(), t.as_str()))
                .collect();
            let upgrading: Vec<&PlanAllocation> = updates.iter().map(|(a, _)| *a).collect();
            for (phase, allocs, size) in [
                ("new", starts.clone(), job.max_concurrent_starts),
                ("update", upgrading, job.max_concurrent_upgrades.max(1)),
            ] {
                let groups = batches(allocs, size, &job.rollout_order);
                let count = groups.len();
                for (index, group) in groups.into_iter().enumerate() {
                    for alloc in &group {
                        let target = if phase == "new" {
                            "start"
                        } else {
                            targets[alloc.alloc_id.as_str()]
                        };
                        push(
                            wave,
                            name,
                            Some(&alloc.worker),
                            batch,
                            StepKind::Lifecycle {
                                alloc_id: alloc.alloc_id.clone(),
                                target: target.to_string(),
                            },
                        );
                    }
                    batch += 1;
                    let extra = env(&[
                        ("BATCH_ALLOCATIONS", hosts(&group)),
                        ("BATCH_INDEX", index.to_string()),
                        ("BATCH_COUNT", count.to_string()),
                        ("DEPLOY_PHASE", phase.to_string()),
                        ("ROLLOUT_ORDER", order.clone()),
                        ("ROLLOUT_ORDER_SOURCE", order_source.to_string()),
                    ]);
                    for kind in job.hook_steps(
                        "after_allocation_started",
                        group.iter().map(|a| a.alloc_id.clone()).collect(),
                        extra,
                    ) {
                        push(wave, name, None, batch, kind);
                        batch += 1;
                    }
                    if job.health && phase == "update" {
                        let alloc_ids = group.iter().map(|a| a.alloc_id.clone()).collect();
                        push(wave, name, None, batch, StepKind::HealthGate { alloc_ids });
                        batch += 1;
                    }
                }
                if job.health && phase == "new" && count > 0 {
                    let alloc_ids = starts.iter().map(|a| a.alloc_id.clone()).collect();
                    push(wave, name, None, batch, StepKind::HealthGate { alloc_ids });
                    batch += 1;
                }
            }
        }
        for kind in job.hook_steps("post_deploy", active, vec![]) {
            push(wave, name, None, batch, kind);
            batch += 1;
        }
        promoted.sort();
        push(
            wave,
            name,
            None,
            batch,
            StepKind::Promote {
                alloc_ids: promoted,
            },
        );
    }
    if !new_without_start.is_empty() {
        return Err(PlanError::SyncOnlyNeedsStart(new_without_start));
    }
    for worker in &touched_workers {
        push(last_wave, None, Some(worker), 0, StepKind::Finalize);
    }
    for (index, step) in steps.iter_mut().enumerate() {
        step.index = index as u32;
    }
    plan.steps = steps;
    Ok(plan)
}

fn action(alloc: &PlanAllocation, what: &str, matched: Vec<String>) -> AllocationAction {
    AllocationAction {
        job: alloc.job.clone(),
        worker: alloc.worker.clone(),
        action: what.to_string(),
        previous_hash: alloc
            .deployed
            .as_ref()
            .and_then(|d| d.previous_hash.clone()),
        current_hash: alloc.staged.as_ref().map(|s| s.tree_hash.clone()),
        matched,
    }
}

#[cfg(test)]
mod adopted_tests {
    use super::*;

    fn input(unchanged: &[&str], new_version: &str) -> PlanInput {
        let job = PlanJob {
            name: "web".into(),
            deployment_seq: 0,
            restart_policy: "always".into(),
            restart_globs: vec![],
            max_concurrent_starts: 0,
            max_concurrent_upgrades: 1,
            rollout_order: vec![],
            hooks: BTreeMap::new(),
            health: false,
        };
        let allocation = |id: &str, worker: &str| PlanAllocation {
            alloc_id: id.into(),
            job: "web".into(),
            worker: worker.into(),
            disabled: false,
            removed: false,
            new_version: new_version.into(),
            deployed: Some(Deployed {
                current_hash: "go-md5".into(),
                previous_hash: Some("go-md5".into()),
                current_version: "1.0.0".into(),
                previous_files: BTreeMap::new(),
                stopped: false,
                adopted: true,
            }),
            staged: Some(Staged {
                tree_hash: "ours".into(),
                files: BTreeMap::new(),
            }),
        };
        PlanInput {
            jobs: [("web".to_string(), job)].into_iter().collect(),
            allocations: vec![allocation("a1", "127.0.0.1"), allocation("a2", "127.0.0.2")],
            workers: ["127.0.0.1".to_string(), "127.0.0.2".to_string()]
                .into_iter()
                .collect(),
            flags: DeployFlags::default(),
            adopted_unchanged: unchanged.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn lifecycles(plan: &Plan) -> Vec<(String, String)> {
        plan.steps
            .iter()
            .filter_map(|s| match &s.kind {
                StepKind::Lifecycle { alloc_id, target } => {
                    Some((alloc_id.clone(), target.clone()))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn an_adopted_allocation_unchanged_on_its_worker_is_copied_and_promoted_without_a_target() {
        let plan = plan(&input(&["a1"], "1.0.0")).unwrap();
        assert_eq!(
            lifecycles(&plan),
            [("a2".to_string(), "restart".to_string())]
        );
        let actions: Vec<&str> = plan.actions.iter().map(|a| a.action.as_str()).collect();
        assert_eq!(actions, ["adopt", "restart"]);
        let promoted = plan.steps.iter().find_map(|s| match &s.kind {
            StepKind::Promote { alloc_ids } => Some(alloc_ids.clone()),
            _ => None,
        });
        assert_eq!(promoted, Some(vec!["a1".to_string(), "a2".to_string()]));
    }

    #[test]
    fn an_adopted_allocation_with_a_new_version_or_forced_is_an_ordinary_update() {
        let plan = plan(&input(&["a1", "a2"], "1.1.0")).unwrap();
        assert_eq!(lifecycles(&plan).len(), 2);
        let mut forced = input(&["a1", "a2"], "1.0.0");
        forced.flags.force = true;
        assert_eq!(
            super::plan(&forced)
                .unwrap()
                .steps
                .iter()
                .filter(|s| matches!(s.kind, StepKind::Lifecycle { .. }))
                .count(),
            2
        );
    }
}
