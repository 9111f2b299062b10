//! A pass over every command registered for one event (`post_build`), in `deployment_seq`
//! order, each on its job's active allocations. Later hooks read what earlier ones wrote;
//! the pass stops at the first hook that fails, since later jobs may depend on it.
//! Like [`run_hook`](super::run_hook), it records activity but never the KV changes.

use super::{
    merge_kv_changes, run_hook, HookCatalog, HookError, HookHost, HookJournal, HookOutcome,
    HookRequest,
};
use crate::events::KvChanged;
use crate::workspace::CommandEvent;

/// One hook of a pass and how it went.
#[derive(Debug, Clone)]
pub struct PassHook {
    pub job: String,
    pub command: String,
    pub outcome: HookOutcome,
}

/// What a pass did, in the order it ran.
#[derive(Debug, Clone, Default)]
pub struct PassOutcome {
    pub hooks: Vec<PassHook>,
}

impl PassOutcome {
    /// Every KV change of the pass, one event per namespace.
    pub fn kv_changes(&self) -> Vec<KvChanged> {
        merge_kv_changes(self.hooks.iter().flat_map(|h| h.outcome.kv_changes.clone()))
    }

    /// `job command@worker: error` for every failed allocation.
    pub fn failures(&self) -> Vec<String> {
        self.hooks
            .iter()
            .flat_map(|hook| {
                hook.outcome
                    .failures()
                    .into_iter()
                    .map(move |(worker, error)| {
                        format!("{} {}@{worker}: {error}", hook.job, hook.command)
                    })
            })
            .collect()
    }
}

/// Runs every command registered for `event` on its job's active allocations, in
/// `deployment_seq` order, applying each hook's KV writes to `catalog` for the next.
pub async fn run_pass<J: HookJournal + ?Sized>(
    host: &HookHost,
    catalog: &mut HookCatalog,
    journal: &J,
    event: CommandEvent,
    concurrency: usize,
    verbose: bool,
) -> Result<PassOutcome, HookError> {
    let mut pass = PassOutcome::default();
    for (job, command) in catalog.hooks(event) {
        let request = HookRequest {
            allocations: catalog.active_allocations(&job),
            job,
            command,
            event,
            concurrency,
            extra_env: Default::default(),
            verbose,
            timeout: None,
        };
        let outcome = run_hook(host, catalog, journal, &request).await?;
        catalog.apply(&outcome.kv_changes);
        let failed = !outcome.succeeded();
        pass.hooks.push(PassHook {
            job: request.job,
            command: request.command,
            outcome,
        });
        if failed {
            break;
        }
    }
    Ok(pass)
}

/// [`run_pass`] for synchronous callers: runs it on a runtime of its own.
pub fn run_pass_blocking<J: HookJournal + ?Sized>(
    host: &HookHost,
    catalog: &mut HookCatalog,
    journal: &J,
    event: CommandEvent,
    concurrency: usize,
    verbose: bool,
) -> Result<PassOutcome, HookError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(HookError::Runtime)?
        .block_on(run_pass(
            host,
            catalog,
            journal,
            event,
            concurrency,
            verbose,
        ))
}
