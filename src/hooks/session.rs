//! One hook run's shared state behind the runtime API: who may call (one random token per
//! allocation process), the KV view with the writes buffered so far, the read and write rules,
//! and the semaphores.
//!
//! Writes never reach the database here: they stay in memory until [`Session::changes`] turns
//! them into `KvChanged` events for the caller to record. Secrets are sealed the moment they
//! arrive, so only ciphertext is buffered or returned; no error carries a value.

use super::catalog::HookCatalog;
use super::AllocationContext;
use crate::events::{KvChange, KvChanged, KvValue};
use crate::kv::access::{self, ReadScope};
use crate::kv::secret::{self, SealedSecret, SecretKey};
use crate::workspace::CommandEvent;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;

/// The key of `maand/job/<job>` that `pre_deploy` and `cli` commands may write.
pub(crate) const ROLLOUT_ORDER: &str = "rollout_order";
/// Most holders a semaphore may have.
pub(crate) const MAX_SEMAPHORE_CAPACITY: u32 = 64;
/// Longest a caller may wait for a semaphore.
pub(crate) const MAX_SEMAPHORE_TIMEOUT_SECONDS: u64 = 3600;

/// A refused or failed API call. The first line of each message is the one the API
/// documents; `detail` says what exactly was wrong. Never holds a KV value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ApiError {
    /// 401: no `Authorization: Bearer` token, or one this run did not issue.
    Unauthorized,
    /// 400: no `X-ALLOCATION-ID` header.
    MissingAllocation,
    /// 404: the allocation header names another allocation than the token's.
    InvalidAllocation,
    /// 400: `EVENT` or `COMMAND` header missing or not the running hook's.
    Scope(String),
    /// 400: a body without `namespace` or `key`.
    MissingNamespaceOrKey,
    /// 400: a write without `value`.
    MissingValue,
    /// 400: a namespace the caller may not read or write.
    Namespace(String),
    /// 404: the key does not exist (or is deleted).
    NotFound,
    /// 400: a write during `health_check`.
    HealthCheckWrite,
    /// 400: bad semaphore parameters.
    SemaphoreRequest(String),
    /// 404: status of a semaphore nobody created.
    UnknownSemaphore(String),
    /// 408: the semaphore stayed full until the timeout.
    SemaphoreTimeout,
    /// 409: release without hold, a second acquire, or a capacity that differs.
    SemaphoreConflict(String),
    /// 415: a body that is not declared as JSON.
    ContentType,
    /// 400: a body that does not parse.
    InvalidJson(String),
    /// 500: something on maand's side (an undecryptable stored secret).
    Internal(String),
}

impl ApiError {
    pub(crate) fn status(&self) -> u16 {
        match self {
            ApiError::Unauthorized => 401,
            ApiError::InvalidAllocation | ApiError::NotFound | ApiError::UnknownSemaphore(_) => 404,
            ApiError::SemaphoreTimeout => 408,
            ApiError::SemaphoreConflict(_) => 409,
            ApiError::ContentType => 415,
            ApiError::Internal(_) => 500,
            _ => 400,
        }
    }

    /// The documented message.
    pub(crate) fn message(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "Missing or invalid bearer token",
            ApiError::MissingAllocation => "X-ALLOCATION-ID header is missing",
            ApiError::InvalidAllocation => "Invalid allocation ID",
            ApiError::Scope(_) => "EVENT and COMMAND headers must name the running job command",
            ApiError::MissingNamespaceOrKey => "Both namespace and key are required",
            ApiError::MissingValue => "A value is required",
            ApiError::Namespace(_) => "Invalid or unauthorized namespace",
            ApiError::NotFound => "KV get operation failed",
            ApiError::HealthCheckWrite => "KV writes are not allowed during health_check",
            ApiError::SemaphoreRequest(_) => "Invalid semaphore request",
            ApiError::UnknownSemaphore(_) => "Semaphore not found",
            ApiError::SemaphoreTimeout => "Timed out waiting for semaphore",
            ApiError::SemaphoreConflict(_) => "Semaphore acquire or release failed",
            ApiError::ContentType => "Content-Type must be application/json",
            ApiError::InvalidJson(_) => "Invalid JSON format",
            ApiError::Internal(_) => "Internal error",
        }
    }

    /// What exactly was wrong, when there is more to say than the message.
    pub(crate) fn detail(&self) -> Option<&str> {
        match self {
            ApiError::Scope(detail)
            | ApiError::Namespace(detail)
            | ApiError::SemaphoreRequest(detail)
            | ApiError::UnknownSemaphore(detail)
            | ApiError::SemaphoreConflict(detail)
            | ApiError::InvalidJson(detail)
            | ApiError::Internal(detail) => Some(detail),
            _ => None,
        }
    }
}

/// The allocation process a token was issued to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caller {
    pub alloc_id: String,
    pub worker_ip: String,
}

/// A semaphore as `GET /semaphore/status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct SemaphoreStatus {
    pub name: String,
    pub capacity: u32,
    pub holders: Vec<String>,
    pub waiting: u32,
    pub available: u32,
}

/// A downstream command that demands the running one (`GET /demands`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct DemandingCommand {
    pub job: String,
    pub command: String,
    pub demand_config: serde_json::Value,
}

struct SemaphoreState {
    capacity: u32,
    holders: Vec<String>,
    waiting: u32,
    released: Arc<Notify>,
}

#[derive(Default)]
struct State {
    /// The catalog's values of every namespace some allocation of the job may read.
    base: BTreeMap<(String, String), KvValue>,
    /// Writes of this run: `None` deletes.
    overlay: BTreeMap<(String, String), Option<KvValue>>,
    /// SHA-256 (hex) of each live token -> its caller.
    callers: HashMap<String, Caller>,
    semaphores: BTreeMap<String, SemaphoreState>,
}

/// The state of one hook run: one job, one command, one event.
pub(crate) struct Session {
    pub job: String,
    pub command: String,
    pub event: CommandEvent,
    upstream: Vec<String>,
    demands: Vec<DemandingCommand>,
    kv_key: SecretKey,
    state: Mutex<State>,
}

fn token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Session {
    pub(crate) fn new(
        catalog: &HookCatalog,
        job: &str,
        command: &str,
        event: CommandEvent,
        allocations: &[AllocationContext],
        kv_key: SecretKey,
    ) -> Session {
        let upstream = catalog.upstream_jobs(job);
        let readable: BTreeSet<String> = allocations
            .iter()
            .flat_map(|a| {
                ReadScope {
                    job,
                    worker_ip: &a.worker_ip,
                    upstream_jobs: &upstream,
                }
                .namespaces()
            })
            .collect();
        let mut base: BTreeMap<(String, String), KvValue> = catalog
            .kv
            .iter()
            .filter(|((namespace, _), _)| readable.contains(namespace))
            .map(|(entry, value)| (entry.clone(), value.clone()))
            .collect();
        for namespace in &readable {
            for key in catalog.peers.keys(namespace) {
                if let Some(derived) = catalog.peers.get(namespace, &key) {
                    base.insert((namespace.clone(), key), KvValue::Plain(derived.value));
                }
            }
        }
        let demands = catalog
            .demands_on(job, command)
            .into_iter()
            .map(|c| DemandingCommand {
                job: c.job.clone(),
                command: c.name.clone(),
                demand_config: serde_json::from_str(&c.demand_config)
                    .unwrap_or(serde_json::Value::Object(Default::default())),
            })
            .collect();
        Session {
            job: job.to_string(),
            command: command.to_string(),
            event,
            upstream,
            demands,
            kv_key,
            state: Mutex::new(State {
                base,
                ..State::default()
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent before it can panic.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Issues the token the process of `allocation` will present.
    pub(crate) fn admit(&self, allocation: &AllocationContext) -> String {
        let mut bytes = [0u8; 32];
        rand::Rng::fill(&mut rand::rng(), &mut bytes);
        let token = hex::encode(bytes);
        self.lock().callers.insert(
            token_digest(&token),
            Caller {
                alloc_id: allocation.alloc_id.clone(),
                worker_ip: allocation.worker_ip.clone(),
            },
        );
        token
    }

    /// The allocation's process ended: its token stops working and its semaphore slots are
    /// released.
    pub(crate) fn dismiss(&self, alloc_id: &str) {
        let mut state = self.lock();
        state.callers.retain(|_, c| c.alloc_id != alloc_id);
        for semaphore in state.semaphores.values_mut() {
            let before = semaphore.holders.len();
            semaphore.holders.retain(|h| h != alloc_id);
            if semaphore.holders.len() != before {
                semaphore.released.notify_waiters();
            }
        }
    }

    /// The run is over: every token stops working and every waiter gives up at once.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.callers.clear();
        for semaphore in state.semaphores.values() {
            semaphore.released.notify_waiters();
        }
    }

    /// Who presents `token`, if this run issued it and the process still runs.
    pub(crate) fn caller(&self, token: &str) -> Option<Caller> {
        self.lock().callers.get(&token_digest(token)).cloned()
    }

    fn scope<'a>(&'a self, caller: &'a Caller) -> ReadScope<'a> {
        ReadScope {
            job: &self.job,
            worker_ip: &caller.worker_ip,
            upstream_jobs: &self.upstream,
        }
    }

    /// `GET /kv`: the value, decrypted for secrets.
    pub(crate) fn get(
        &self,
        caller: &Caller,
        namespace: &str,
        key: &str,
    ) -> Result<String, ApiError> {
        if !self.scope(caller).may_read(namespace) {
            return Err(ApiError::Namespace(format!(
                "job {} on {} may not read {namespace} (readable: the bucket and worker \
                 namespaces, its own job namespaces, and upstream jobs named in demands)",
                self.job, caller.worker_ip
            )));
        }
        let entry = (namespace.to_string(), key.to_string());
        let value = {
            let state = self.lock();
            match state.overlay.get(&entry) {
                Some(value) => value.clone(),
                None => state.base.get(&entry).cloned(),
            }
        };
        match value {
            None => Err(ApiError::NotFound),
            Some(KvValue::Plain(value)) => Ok(value),
            Some(KvValue::Sealed(text)) => self.open(namespace, key, &text),
        }
    }

    fn open(&self, namespace: &str, key: &str, text: &str) -> Result<String, ApiError> {
        SealedSecret::decode(text)
            .and_then(|sealed| secret::open(&self.kv_key, namespace, key, &sealed))
            .map_err(|e| ApiError::Internal(e.to_string()))
    }

    /// `PUT /kv` (`secret = false`) and `PUT /kv/secret` (`secret = true`).
    pub(crate) fn put(
        &self,
        namespace: &str,
        key: &str,
        value: &str,
        secret: bool,
    ) -> Result<(), ApiError> {
        check_write(&self.job, self.event, namespace, secret)?;
        check_key(key)?;
        let stored = if secret {
            let sealed = secret::seal(&self.kv_key, namespace, key, value, &mut rand::rng())
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            KvValue::Sealed(sealed.encode())
        } else {
            if namespace == access::job(&self.job) && key != ROLLOUT_ORDER {
                return Err(ApiError::Namespace(format!(
                    "only the key {ROLLOUT_ORDER} of {namespace} may be written"
                )));
            }
            KvValue::Plain(value.to_string())
        };
        self.lock()
            .overlay
            .insert((namespace.to_string(), key.to_string()), Some(stored));
        Ok(())
    }

    /// `DELETE /kv` and `DELETE /kv/secret`. Returns whether the key existed.
    pub(crate) fn delete(
        &self,
        namespace: &str,
        key: &str,
        secret: bool,
    ) -> Result<bool, ApiError> {
        check_write(&self.job, self.event, namespace, secret)?;
        check_key(key)?;
        if namespace == access::job(&self.job) && key != ROLLOUT_ORDER {
            return Err(ApiError::Namespace(format!(
                "only the key {ROLLOUT_ORDER} of {namespace} may be written"
            )));
        }
        let entry = (namespace.to_string(), key.to_string());
        let mut state = self.lock();
        let existed = match state.overlay.get(&entry) {
            Some(value) => value.is_some(),
            None => state.base.contains_key(&entry),
        };
        state.overlay.insert(entry, None);
        Ok(existed)
    }

    /// `GET /kv/keys`: key names per namespace (the job's vars and secrets when `namespace`
    /// is `None`). Never values.
    pub(crate) fn keys(
        &self,
        caller: &Caller,
        namespace: Option<&str>,
    ) -> Result<BTreeMap<String, Vec<String>>, ApiError> {
        let namespaces = match namespace {
            Some(namespace) if !self.scope(caller).may_read(namespace) => {
                return Err(ApiError::Namespace(format!(
                    "job {} on {} may not read {namespace}",
                    self.job, caller.worker_ip
                )))
            }
            Some(namespace) => vec![namespace.to_string()],
            None => vec![access::job_vars(&self.job), access::job_secrets(&self.job)],
        };
        let state = self.lock();
        Ok(namespaces
            .into_iter()
            .map(|namespace| {
                let mut keys: BTreeSet<String> = state
                    .base
                    .keys()
                    .filter(|(ns, _)| *ns == namespace)
                    .map(|(_, key)| key.clone())
                    .collect();
                for ((ns, key), value) in &state.overlay {
                    if *ns == namespace {
                        if value.is_some() {
                            keys.insert(key.clone());
                        } else {
                            keys.remove(key);
                        }
                    }
                }
                (namespace, keys.into_iter().collect())
            })
            .collect())
    }

    /// `GET /demands`.
    pub(crate) fn demands(&self) -> &[DemandingCommand] {
        &self.demands
    }

    /// `POST /semaphore/acquire`: waits until `caller` holds a slot of `name`, or `timeout`.
    pub(crate) async fn acquire(
        &self,
        caller: &Caller,
        name: &str,
        capacity: u32,
        timeout: Duration,
    ) -> Result<(), ApiError> {
        check_semaphore_name(name)?;
        if !(1..=MAX_SEMAPHORE_CAPACITY).contains(&capacity) {
            return Err(ApiError::SemaphoreRequest(format!(
                "capacity {capacity} is outside 1..={MAX_SEMAPHORE_CAPACITY}"
            )));
        }
        if timeout > Duration::from_secs(MAX_SEMAPHORE_TIMEOUT_SECONDS) {
            return Err(ApiError::SemaphoreRequest(format!(
                "timeout_seconds may be at most {MAX_SEMAPHORE_TIMEOUT_SECONDS}"
            )));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let released = {
            let mut state = self.lock();
            let semaphore =
                state
                    .semaphores
                    .entry(name.to_string())
                    .or_insert_with(|| SemaphoreState {
                        capacity,
                        holders: Vec::new(),
                        waiting: 0,
                        released: Arc::new(Notify::new()),
                    });
            if semaphore.capacity != capacity {
                return Err(ApiError::SemaphoreConflict(format!(
                    "semaphore {name} exists with capacity {}; every caller must ask for the same capacity",
                    semaphore.capacity
                )));
            }
            if semaphore.holders.contains(&caller.alloc_id) {
                return Err(ApiError::SemaphoreConflict(format!(
                    "allocation {} already holds semaphore {name}",
                    caller.alloc_id
                )));
            }
            semaphore.waiting += 1;
            semaphore.released.clone()
        };
        let _waiting = Waiting {
            session: self,
            name,
        };
        loop {
            // Registered before the check, so a release between check and wait still wakes us.
            let notified = released.notified();
            {
                let mut state = self.lock();
                let admitted = state
                    .callers
                    .values()
                    .any(|c| c.alloc_id == caller.alloc_id);
                let semaphore = state
                    .semaphores
                    .get_mut(name)
                    .expect("semaphores are never removed during a run");
                if !admitted {
                    return Err(ApiError::SemaphoreConflict(format!(
                        "the process of allocation {} has ended",
                        caller.alloc_id
                    )));
                }
                if semaphore.holders.len() < semaphore.capacity as usize {
                    semaphore.holders.push(caller.alloc_id.clone());
                    return Ok(());
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(ApiError::SemaphoreTimeout);
            }
        }
    }

    /// `POST /semaphore/release`.
    pub(crate) fn release(&self, caller: &Caller, name: &str) -> Result<(), ApiError> {
        let mut state = self.lock();
        let held = state
            .semaphores
            .get_mut(name)
            .filter(|s| s.holders.contains(&caller.alloc_id));
        match held {
            Some(semaphore) => {
                semaphore.holders.retain(|h| *h != caller.alloc_id);
                semaphore.released.notify_waiters();
                Ok(())
            }
            None => Err(ApiError::SemaphoreConflict(format!(
                "allocation {} does not hold semaphore {name}",
                caller.alloc_id
            ))),
        }
    }

    /// `GET /semaphore/status`.
    pub(crate) fn status(&self, name: &str) -> Result<SemaphoreStatus, ApiError> {
        let state = self.lock();
        let semaphore = state.semaphores.get(name).ok_or_else(|| {
            ApiError::UnknownSemaphore(format!(
                "no allocation of this run has acquired semaphore {name}"
            ))
        })?;
        Ok(SemaphoreStatus {
            name: name.to_string(),
            capacity: semaphore.capacity,
            holders: semaphore.holders.clone(),
            waiting: semaphore.waiting,
            available: semaphore.capacity - semaphore.holders.len() as u32,
        })
    }

    /// The buffered writes as events, one per namespace, leaving out writes that equal the
    /// catalog's value (for secrets: the same plaintext).
    pub(crate) fn changes(&self) -> Vec<KvChanged> {
        let state = self.lock();
        let mut by_namespace: BTreeMap<String, Vec<KvChange>> = BTreeMap::new();
        for ((namespace, key), value) in &state.overlay {
            let base = state.base.get(&(namespace.clone(), key.clone()));
            let change = match (value, base) {
                (None, None) => None,
                (None, Some(_)) => Some(KvChange::Delete { key: key.clone() }),
                (Some(new), Some(old)) if self.same_value(namespace, key, new, old) => None,
                (Some(new), _) => Some(KvChange::Put {
                    key: key.clone(),
                    value: new.clone(),
                }),
            };
            if let Some(change) = change {
                by_namespace
                    .entry(namespace.clone())
                    .or_default()
                    .push(change);
            }
        }
        by_namespace
            .into_iter()
            .map(|(namespace, changes)| KvChanged { namespace, changes })
            .collect()
    }

    fn same_value(&self, namespace: &str, key: &str, new: &KvValue, old: &KvValue) -> bool {
        match (new, old) {
            (KvValue::Plain(a), KvValue::Plain(b)) => a == b,
            (KvValue::Sealed(a), KvValue::Sealed(b)) => {
                match (self.open(namespace, key, a), self.open(namespace, key, b)) {
                    (Ok(a), Ok(b)) => a == b,
                    _ => false,
                }
            }
            _ => false,
        }
    }
}

/// Counts a caller as waiting for a semaphore until it acquires, fails or goes away.
struct Waiting<'a> {
    session: &'a Session,
    name: &'a str,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(semaphore) = self.session.lock().semaphores.get_mut(self.name) {
            semaphore.waiting = semaphore.waiting.saturating_sub(1);
        }
    }
}

/// The write rule: a job command writes its own job's `vars/job/<job>` (plain) and
/// `secrets/job/<job>` (sealed), and `rollout_order` of `maand/job/<job>` on `pre_deploy` and
/// `cli` only; nothing at all during `health_check`.
pub(crate) fn check_write(
    job: &str,
    event: CommandEvent,
    namespace: &str,
    secret: bool,
) -> Result<(), ApiError> {
    if event == CommandEvent::HealthCheck {
        return Err(ApiError::HealthCheckWrite);
    }
    let vars = access::job_vars(job);
    let secrets = access::job_secrets(job);
    let own_job = access::job(job);
    if secret {
        if namespace == secrets {
            return Ok(());
        }
        return Err(ApiError::Namespace(format!(
            "secrets may only be written to {secrets}, not {namespace}"
        )));
    }
    if namespace == vars {
        return Ok(());
    }
    if namespace == own_job {
        if matches!(event, CommandEvent::PreDeploy | CommandEvent::Cli) {
            return Ok(());
        }
        return Err(ApiError::Namespace(format!(
            "{own_job} {ROLLOUT_ORDER} may only be written by pre_deploy and cli commands, not during {event}"
        )));
    }
    if namespace == secrets {
        return Err(ApiError::Namespace(format!(
            "{secrets} holds secrets: write it through /kv/secret (put_job_secret)"
        )));
    }
    Err(ApiError::Namespace(format!(
        "job {job} may write only {vars}, {secrets} (through /kv/secret) and {own_job} {ROLLOUT_ORDER}; {namespace} is read-only here"
    )))
}

fn check_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() {
        return Err(ApiError::MissingNamespaceOrKey);
    }
    Ok(())
}

fn check_semaphore_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
        return Err(ApiError::SemaphoreRequest(
            "name must be 1 to 128 printable characters".into(),
        ));
    }
    Ok(())
}
