//! Running one hook: staging the job's files from the blob store into `tmp/hooks/<id>/`,
//! picking the interpreter, serving the API, and running one process per allocation with
//! bounded concurrency while journaling each process's start, output and end.
//!
//! The staged directory is private (mode 0700) and removed when the run ends. Processes
//! start in the bucket directory; a process that ends loses its token and its semaphore slots.
//! It never records KV changes and never chooses the allocations: both belong to the caller.

use super::api;
use super::catalog::HookCatalog;
use super::clients::{self, CLIENT_FILES};
use super::session::Session;
use super::{
    AllocationContext, AllocationRun, HookError, HookHost, HookJournal, HookOutcome, HookRequest,
    PHASE,
};
use crate::events::{CommandFinished, CommandOutput, CommandStarted, Event, Stream};
use std::collections::BTreeMap;
use std::future::{Future, IntoFuture};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// Virtualenv interpreters tried, in order, under the workspace's `jobs/<job>/_modules/`.
const VENV_PYTHONS: [&str; 4] = [
    ".venv/bin/python3",
    ".venv/bin/python",
    "venv/bin/python",
    "venv/bin/python3",
];

/// How a script is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Interpreter {
    Python,
    Bun,
}

impl Interpreter {
    fn of(script: &str) -> Interpreter {
        if script.ends_with(".py") {
            Interpreter::Python
        } else {
            Interpreter::Bun
        }
    }
}

pub(super) async fn run<J: HookJournal + ?Sized>(
    host: &HookHost,
    catalog: &HookCatalog,
    journal: &J,
    request: &HookRequest,
) -> Result<HookOutcome, HookError> {
    let command = catalog
        .command(&request.job, &request.command, request.event)
        .ok_or_else(|| HookError::NotRegistered {
            job: request.job.clone(),
            command: request.command.clone(),
            event: request.event,
        })?;
    if request.allocations.is_empty() {
        return Ok(HookOutcome::default());
    }
    let interpreter = interpreter(host, &request.job, &command.script)?;
    let staged = StagedRun::create(host)?;
    let job_dir = staged.stage_job(host, catalog, &request.job)?;
    let script = job_dir.join(&command.script);
    let packages = staged.dir.join("packages");
    clients::write_clients(&job_dir.join("_modules"), &packages)?;

    let session = Arc::new(Session::new(
        catalog,
        &request.job,
        &request.command,
        request.event,
        &request.allocations,
        host.kv_key.clone(),
    ));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(HookError::Listen)?;
    let port = listener.local_addr().map_err(HookError::Listen)?.port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(listener, api::router(session.clone()))
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .into_future(),
    );

    let common = common_env(
        host,
        catalog,
        request,
        port,
        &packages,
        &job_dir.join("_modules"),
    );
    let activity = Activity {
        journal,
        job: &request.job,
        action: &request.command,
        echo: request.verbose,
        errors: Mutex::new(Vec::new()),
    };
    let limit = match request.concurrency {
        0 => request.allocations.len(),
        n => n,
    };
    let slots = tokio::sync::Semaphore::new(limit);
    let launch = Launch {
        display: format!(
            "{} {}",
            interpreter.display(),
            Path::new(&command.script).display()
        ),
        program: interpreter,
        script,
        timeout: request.timeout,
    };
    let runs = join_all(request.allocations.iter().map(|allocation| {
        let mut env = common.clone();
        env.extend(allocation_env(allocation));
        env.extend(request.extra_env.clone());
        let (session, slots, activity, launch) = (&session, &slots, &activity, &launch);
        async move {
            let _slot = slots
                .acquire()
                .await
                .expect("the semaphore is never closed");
            env.insert("MAAND_API_TOKEN".into(), session.admit(allocation));
            let run = run_allocation(activity, launch, host, allocation, env).await;
            session.dismiss(&allocation.alloc_id);
            run
        }
    }))
    .await;

    session.close();
    let _ = stop.send(());
    // The server only ends when told to; a panic inside it is not ours to surface.
    let _ = server.await;
    if let Some(error) = activity.errors.lock().ok().and_then(|e| e.first().cloned()) {
        return Err(HookError::Journal(error));
    }
    Ok(HookOutcome {
        kv_changes: session.changes(),
        runs,
    })
}

/// Environment shared by every process of the run.
fn common_env(
    host: &HookHost,
    catalog: &HookCatalog,
    request: &HookRequest,
    port: u16,
    packages: &Path,
    modules: &Path,
) -> BTreeMap<String, String> {
    let workspace_modules = host
        .bucket
        .workspace_dir()
        .join("jobs")
        .join(&request.job)
        .join("_modules");
    let mut node_path = vec![packages.display().to_string()];
    node_path.push(workspace_modules.join("node_modules").display().to_string());
    let no_proxy = match std::env::var("NO_PROXY").or_else(|_| std::env::var("no_proxy")) {
        Ok(list) if !list.is_empty() => format!("{list},127.0.0.1,localhost"),
        _ => "127.0.0.1,localhost".to_string(),
    };
    let ssh = &host.ssh;
    [
        ("JOB", request.job.clone()),
        ("EVENT", request.event.as_str().to_string()),
        ("COMMAND", request.command.clone()),
        ("JOB_COMMAND_API_HOST", "127.0.0.1".to_string()),
        ("JOB_COMMAND_API_PORT", port.to_string()),
        ("MAAND_API_URL", format!("http://127.0.0.1:{port}")),
        ("MAAND_BUCKET", host.bucket.root().display().to_string()),
        ("MAAND_BUCKET_ID", catalog.bucket_id.clone()),
        ("MAAND_SSH_USER", ssh.user.clone()),
        ("MAAND_SSH_PORT", ssh.port.to_string()),
        ("MAAND_SSH_KEY", ssh.key_path.display().to_string()),
        (
            "MAAND_SSH_KNOWN_HOSTS",
            ssh.known_hosts_path.display().to_string(),
        ),
        ("MAAND_USE_SUDO", flag(ssh.use_sudo)),
        ("PYTHONPATH", modules.display().to_string()),
        ("PYTHONDONTWRITEBYTECODE", "1".to_string()),
        ("PYTHONUNBUFFERED", "1".to_string()),
        ("NODE_PATH", node_path.join(":")),
        ("NO_PROXY", no_proxy.clone()),
        ("no_proxy", no_proxy),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn flag(value: bool) -> String {
    if value { "1" } else { "0" }.to_string()
}

/// The per-allocation variables.
fn allocation_env(allocation: &AllocationContext) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = [
        ("ALLOCATION_ID", allocation.alloc_id.clone()),
        ("ALLOCATION_IP", allocation.worker_ip.clone()),
        ("DISABLED", flag(allocation.disabled)),
        ("CURRENT_VERSION", allocation.current_version.clone()),
        ("NEW_VERSION", allocation.new_version.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if let Some(index) = allocation.index {
        env.insert("ALLOCATION_INDEX".into(), index.to_string());
    }
    env
}

/// The interpreter of `script`: for Python the job's virtualenv in the workspace when there is
/// one, else `python3` on PATH; for `.ts`/`.js` `bun` on PATH.
fn interpreter(host: &HookHost, job: &str, script: &str) -> Result<PathBuf, HookError> {
    let missing = |tool, advice| HookError::MissingInterpreter {
        job: job.to_string(),
        script: script.to_string(),
        tool,
        advice,
    };
    match Interpreter::of(script) {
        Interpreter::Python => {
            let modules = host
                .bucket
                .workspace_dir()
                .join("jobs")
                .join(job)
                .join("_modules");
            let venv = VENV_PYTHONS
                .iter()
                .map(|p| modules.join(p))
                .find(|p| is_executable(p));
            match venv.or_else(|| on_path("python3")) {
                Some(program) => Ok(program),
                None => Err(missing(
                    "python3",
                    "install Python 3 (Debian: apt install python3) or create a virtualenv in the job's _modules/.venv",
                )),
            }
        }
        Interpreter::Bun => on_path("bun").ok_or_else(|| {
            missing(
                "bun",
                "install Bun (https://bun.sh, or `npm install -g bun`)",
            )
        }),
    }
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| is_executable(p))
    })
}

/// The private directory of one hook run; removed with everything in it when dropped.
struct StagedRun {
    dir: PathBuf,
}

impl StagedRun {
    fn create(host: &HookHost) -> Result<StagedRun, HookError> {
        let dir = host
            .bucket
            .tmp_dir()
            .join("hooks")
            .join(uuid::Uuid::new_v4().to_string());
        clients::create_dir(&dir)?;
        let staged = StagedRun { dir };
        std::fs::set_permissions(&staged.dir, std::fs::Permissions::from_mode(0o700)).map_err(
            |source| HookError::Stage {
                path: staged.dir.clone(),
                source,
            },
        )?;
        Ok(staged)
    }

    /// Writes the job's files as the catalog holds them (templates unrendered, no
    /// certificates) under `jobs/<job>/`; returns that directory.
    fn stage_job(
        &self,
        host: &HookHost,
        catalog: &HookCatalog,
        job: &str,
    ) -> Result<PathBuf, HookError> {
        let job_dir = self.dir.join("jobs").join(job);
        clients::create_dir(&job_dir.join("_modules"))?;
        let conn = crate::bucket::open_checked(&host.bucket)?;
        let mut blob = conn.prepare("SELECT content FROM blobs WHERE hash = ?1")?;
        for file in catalog.files.get(job).into_iter().flatten() {
            if CLIENT_FILES
                .iter()
                .any(|(name, _)| file.path == format!("_modules/{name}"))
            {
                return Err(HookError::ShadowedClient {
                    job: job.to_string(),
                    path: file.path.clone(),
                });
            }
            let relative = Path::new(&file.path);
            if !relative
                .components()
                .all(|c| matches!(c, Component::Normal(_)))
            {
                return Err(HookError::MissingScript {
                    job: job.to_string(),
                    path: file.path.clone(),
                });
            }
            let content: Vec<u8> = blob
                .query_row([&file.hash], |r| r.get(0))
                .map_err(|error| match error {
                    rusqlite::Error::QueryReturnedNoRows => HookError::MissingBlob {
                        job: job.to_string(),
                        path: file.path.clone(),
                        hash: file.hash.clone(),
                    },
                    other => other.into(),
                })?;
            crate::catalog::integrity::check_blob(&file.hash, &content).map_err(|source| {
                HookError::DamagedFile {
                    job: job.to_string(),
                    path: file.path.clone(),
                    source,
                }
            })?;
            let path = job_dir.join(relative);
            if let Some(parent) = path.parent() {
                clients::create_dir(parent)?;
            }
            let mode = if file.executable { 0o755 } else { 0o644 };
            std::fs::write(&path, content)
                .and_then(|()| {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                })
                .map_err(|source| HookError::Stage {
                    path: path.clone(),
                    source,
                })?;
        }
        Ok(job_dir)
    }
}

impl Drop for StagedRun {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!("could not remove {}: {error}", self.dir.display());
        }
    }
}

/// Records one hook's process activity in the journal and echoes output when asked.
struct Activity<'a, J: ?Sized> {
    journal: &'a J,
    job: &'a str,
    action: &'a str,
    echo: bool,
    errors: Mutex<Vec<String>>,
}

impl<J: HookJournal + ?Sized> Activity<'_, J> {
    fn record(&self, event: Event) {
        if let Err(error) = self.journal.record(&[event]) {
            if let Ok(mut errors) = self.errors.lock() {
                errors.push(error);
            }
        }
    }

    fn started(&self, worker: &str, command: &str) {
        self.record(Event::CommandStarted(CommandStarted {
            worker: worker.to_string(),
            job: Some(self.job.to_string()),
            phase: PHASE.to_string(),
            action: self.action.to_string(),
            command: command.to_string(),
        }));
    }

    fn line(&self, worker: &str, stream: Stream, line: String) {
        if self.echo {
            let marker = if stream == Stream::Stderr { '!' } else { '|' };
            self.journal.echo(&format!(
                "{}@{worker} {marker} {}",
                self.job,
                crate::terminal::visible(&line)
            ));
        }
        self.record(Event::CommandOutput(CommandOutput {
            worker: worker.to_string(),
            job: Some(self.job.to_string()),
            phase: PHASE.to_string(),
            stream,
            line,
        }));
    }

    fn finished(
        &self,
        worker: &str,
        exit_code: Option<i32>,
        duration: Duration,
        error: Option<String>,
    ) {
        self.record(Event::CommandFinished(CommandFinished {
            worker: worker.to_string(),
            job: Some(self.job.to_string()),
            phase: PHASE.to_string(),
            action: self.action.to_string(),
            exit_code,
            duration_ms: duration.as_millis() as u64,
            error,
        }));
    }
}

/// How every process of a run is started: the same interpreter and script for each
/// allocation.
struct Launch {
    program: PathBuf,
    script: PathBuf,
    /// `program script`, as the journal shows the command.
    display: String,
    /// Longest time one process may run (see [`HookRequest::timeout`]).
    timeout: Option<Duration>,
}

async fn run_allocation<J: HookJournal + ?Sized>(
    activity: &Activity<'_, J>,
    launch: &Launch,
    host: &HookHost,
    allocation: &AllocationContext,
    env: BTreeMap<String, String>,
) -> AllocationRun {
    let Launch {
        program,
        script,
        display,
        timeout,
    } = launch;
    let timeout = *timeout;
    let worker = allocation.worker_ip.as_str();
    activity.started(worker, display);
    let started = Instant::now();
    let mut command = tokio::process::Command::new(program);
    command
        .arg(script)
        .current_dir(host.bucket.root())
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    // Its own process group keeps a terminal's Ctrl-C from reaching the process, so it is
    // killed when maand dies instead (it cannot work without maand's API anyway).
    let maand = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2),
    // getppid(2) and _exit(2), which are async-signal-safe; it touches no shared memory.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != maand {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let spawned = command.spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) => {
            let error = format!("cannot start {}: {error}", program.display());
            activity.finished(worker, None, started.elapsed(), Some(error.clone()));
            return AllocationRun {
                alloc_id: allocation.alloc_id.clone(),
                worker_ip: allocation.worker_ip.clone(),
                exit_code: None,
                error: Some(error),
                duration: started.elapsed(),
            };
        }
    };
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let group = child.id();
    let _tracked = group.map(crate::interrupt::track_group);
    // A health_check block's timeout_seconds bounds its commands; hook_time_limit all others.
    let limit = timeout.unwrap_or(host.time_limit);
    let ran = tokio::time::timeout(limit, async {
        tokio::join!(
            pump(activity, worker, Stream::Stdout, stdout),
            pump(activity, worker, Stream::Stderr, stderr),
            child.wait()
        )
    })
    .await;
    let Ok((_, last_stderr, status)) = ran else {
        // The process and everything it started in its group go; the group is reaped so no
        // process is left behind.
        if let Some(pid) = group {
            // SAFETY: kill(2) with a negative pid signals the process group the child leads
            // (spawned with process_group(0)); no memory is involved.
            unsafe {
                libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
            }
        }
        let _ = child.wait().await;
        let error = format!("timed out after {} s", limit.as_secs());
        let duration = started.elapsed();
        activity.finished(worker, None, duration, Some(error.clone()));
        return AllocationRun {
            alloc_id: allocation.alloc_id.clone(),
            worker_ip: allocation.worker_ip.clone(),
            exit_code: None,
            error: Some(error),
            duration,
        };
    };
    let duration = started.elapsed();
    let (exit_code, error) = match status {
        Ok(status) if status.success() => (Some(0), None),
        Ok(status) => {
            let why = match (
                status.code(),
                std::os::unix::process::ExitStatusExt::signal(&status),
            ) {
                (Some(code), _) => format!("exit code {code}"),
                (None, Some(signal)) => format!("killed by signal {signal}"),
                (None, None) => "ended abnormally".to_string(),
            };
            let why = match last_stderr {
                Some(line) => format!("{why}: {line}"),
                None => why,
            };
            (status.code(), Some(why))
        }
        Err(error) => (
            None,
            Some(format!("waiting for the process failed: {error}")),
        ),
    };
    activity.finished(
        worker,
        exit_code,
        duration,
        error.clone().filter(|_| exit_code.is_none()),
    );
    AllocationRun {
        alloc_id: allocation.alloc_id.clone(),
        worker_ip: allocation.worker_ip.clone(),
        exit_code,
        error,
        duration,
    }
}

/// Journals every line of one output stream; returns the last non-empty line.
async fn pump<J: HookJournal + ?Sized, R: AsyncRead + Unpin>(
    activity: &Activity<'_, J>,
    worker: &str,
    stream: Stream,
    reader: Option<R>,
) -> Option<String> {
    let mut reader = BufReader::new(reader?);
    let mut last = None;
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        match reader.read_until(b'\n', &mut buffer).await {
            Ok(0) | Err(_) => return last,
            Ok(_) => {
                let text = String::from_utf8_lossy(&buffer);
                let line = text.trim_end_matches(['\n', '\r']).to_string();
                if !line.trim().is_empty() {
                    last = Some(line.clone());
                }
                activity.line(worker, stream, line);
            }
        }
    }
}

/// Polls every future until all are done; outputs in input order.
async fn join_all<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}
