//! The workers of one maand command: a session per worker, opened (or found open) on first use
//! and kept for the whole command, and fan-out of work over many workers with bounded concurrency. One
//! worker's failure is that worker's result; it never stops the others.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OnceCell, Semaphore};
use tokio::task::JoinSet;

use super::command::RemoteCommand;
use super::config::RemoteConfig;
use super::error::RemoteError;
use super::record::Observer;
use super::session::{check_local_path, CommandOutcome, ControlDir, Session};

/// The result of work on one worker.
#[derive(Debug)]
pub struct WorkerResult<T> {
    pub worker: String,
    pub result: Result<T, RemoteError>,
}

type SessionSlot = Arc<OnceCell<Result<Arc<Session>, RemoteError>>>;

/// Sessions to workers for the life of one maand command. Cloning is cheap and shares the
/// sessions. Per-command masters are closed when the last clone is dropped; shared ones stay
/// open for their idle time.
#[derive(Clone)]
pub struct Fleet {
    inner: Arc<FleetInner>,
}

struct FleetInner {
    config: Arc<RemoteConfig>,
    control: Arc<ControlDir>,
    concurrency: usize,
    sessions: Mutex<HashMap<String, SessionSlot>>,
    slots: AtomicUsize,
}

impl Fleet {
    /// Prepares sessions with `config`; at most `concurrency` workers are worked on at once.
    /// Creates the known_hosts file (mode 0600) when it does not exist yet.
    pub fn new(config: RemoteConfig, concurrency: usize) -> Result<Fleet, RemoteError> {
        check_local_path(&config.key_path, "ssh key")?;
        check_local_path(&config.known_hosts_path, "known_hosts")?;
        let valid_user = !config.user.is_empty()
            && !config.user.starts_with('-')
            && config
                .user
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !valid_user {
            return Err(RemoteError::InvalidArgument {
                argument: config.user.clone(),
                reason: "ssh_user in maand.conf must be a plain user name".into(),
            });
        }
        create_known_hosts(&config)?;
        let control = Arc::new(ControlDir::for_policy(&config.masters)?);
        Ok(Fleet {
            inner: Arc::new(FleetInner {
                config: Arc::new(config),
                control,
                concurrency: concurrency.max(1),
                sessions: Mutex::new(HashMap::new()),
                slots: AtomicUsize::new(0),
            }),
        })
    }

    pub fn config(&self) -> &RemoteConfig {
        &self.inner.config
    }

    /// The session to `worker`, connecting on first use. A worker that failed to connect
    /// keeps its error for the rest of the command instead of being dialled again.
    pub async fn session(&self, worker: &str) -> Result<Arc<Session>, RemoteError> {
        let slot = {
            let mut sessions = self.inner.sessions.lock().expect("session table lock");
            sessions.entry(worker.to_string()).or_default().clone()
        };
        slot.get_or_init(|| async {
            let index = self.inner.slots.fetch_add(1, Ordering::Relaxed);
            Session::connect(
                self.inner.config.clone(),
                self.inner.control.clone(),
                index,
                worker,
            )
            .await
            .map(Arc::new)
        })
        .await
        .clone()
    }

    /// Runs `task` with the session of every worker in `workers`, at most `concurrency` at a
    /// time. Results come back in the order of `workers`.
    pub async fn for_each<T, F, Fut>(&self, workers: &[String], task: F) -> Vec<WorkerResult<T>>
    where
        T: Send + 'static,
        F: Fn(Arc<Session>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, RemoteError>> + Send + 'static,
    {
        let limit = Arc::new(Semaphore::new(self.inner.concurrency));
        let task = Arc::new(task);
        let mut running = JoinSet::new();
        for (position, worker) in workers.iter().enumerate() {
            let fleet = self.clone();
            let limit = limit.clone();
            let task = task.clone();
            let worker = worker.clone();
            running.spawn(async move {
                let _permit = limit
                    .acquire_owned()
                    .await
                    .expect("semaphore is never closed");
                let result = match fleet.session(&worker).await {
                    Ok(session) => task(session).await,
                    Err(error) => Err(error),
                };
                (position, WorkerResult { worker, result })
            });
        }
        let mut results: Vec<Option<WorkerResult<T>>> = workers.iter().map(|_| None).collect();
        while let Some(joined) = running.join_next().await {
            match joined {
                Ok((position, result)) => results[position] = Some(result),
                Err(error) => std::panic::resume_unwind(error.into_panic()),
            }
        }
        results
            .into_iter()
            .map(|result| result.expect("every worker reports"))
            .collect()
    }

    /// Runs `command` on every worker in `workers`.
    pub async fn run(
        &self,
        workers: &[String],
        command: &RemoteCommand,
        observer: Arc<dyn Observer>,
    ) -> Vec<WorkerResult<CommandOutcome>> {
        let command = Arc::new(command.clone());
        self.for_each(workers, move |session| {
            let command = command.clone();
            let observer = observer.clone();
            async move { session.run(&command, observer.as_ref()).await }
        })
        .await
    }
}

fn create_known_hosts(config: &RemoteConfig) -> Result<(), RemoteError> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = &config.known_hosts_path;
    let failure = |error: std::io::Error| RemoteError::LocalProcess {
        program: "ssh".into(),
        detail: format!(
            "cannot create the known_hosts file {}: {error}",
            path.display()
        ),
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(failure)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map(drop)
        .map_err(failure)
}
