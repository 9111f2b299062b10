//! One worker's SSH session: an OpenSSH ControlMaster, opened by this maand command or found
//! open from an earlier one (see [`MasterPolicy`]), and the commands that run through it.
//! Every ssh invocation carries the same options (key, bucket known_hosts with trust on first
//! use, timeouts), so even a command that finds the master gone and dials directly is verified
//! exactly like the master was.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use super::command::RemoteCommand;
use super::config::{MasterPolicy, RemoteConfig};
use super::control::{self, MasterFiles};
use super::error::RemoteError;
use super::record::{Observer, RemoteRecord, Stream};

/// A per-command master exits on its own after this long idle, so a maand process killed
/// without cleanup leaves no ssh behind for long. A later command then starts a new master.
const MASTER_IDLE_EXIT: Duration = Duration::from_secs(120);
/// Keepalive probes of the master: a peer silent for interval × count is declared dead.
const SERVER_ALIVE_INTERVAL_SECS: u64 = 5;
const SERVER_ALIVE_COUNT_MAX: u64 = 3;
/// Longest output line kept whole; a longer one (a worker printing a file with no newlines)
/// arrives as several lines of this size, so memory stays bounded.
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// Most output bytes [`Session::capture`] keeps (its callers read small files and probe
/// results); a command printing more fails with [`RemoteError::OutputTooLarge`].
pub const MAX_CAPTURED_BYTES: usize = 4 * 1024 * 1024;
/// Time allowed for key exchange and authentication after the TCP connect succeeded.
const MIN_HANDSHAKE_ALLOWANCE: Duration = Duration::from_secs(5);

/// How a command ended on the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandOutcome {
    pub exit_code: i32,
    pub duration: Duration,
}

impl CommandOutcome {
    pub fn success(&self) -> bool {
        self.exit_code == 0
    }
}

/// A command's outcome with all its output lines kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedOutput {
    pub outcome: CommandOutcome,
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
}

/// A private directory (mode 0700) holding control sockets and master logs: either one maand
/// command's own, under the system temp directory and removed when the last session using it
/// is gone, or the bucket's shared one (see [`control::shared_control_dir`]), which stays.
#[derive(Debug)]
pub(crate) struct ControlDir {
    path: PathBuf,
    /// Masters outlive the command for this long; `None` closes them with their sessions.
    shared_idle: Option<Duration>,
    /// `ssh -O exit` processes started by dropped sessions, reaped when the directory goes.
    pending_exits: std::sync::Mutex<Vec<std::process::Child>>,
}

impl ControlDir {
    pub(crate) fn create() -> Result<ControlDir, RemoteError> {
        let base = std::env::temp_dir();
        control::sweep_abandoned_command_dirs(&base, control::COMMAND_DIR_SWEEP_AGE);
        loop {
            let path = base.join(control::command_dir_name(
                std::process::id(),
                rand::random::<u64>(),
            ));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {
                    return Ok(ControlDir {
                        path,
                        shared_idle: None,
                        pending_exits: std::sync::Mutex::default(),
                    })
                }
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(error) => {
                    return Err(RemoteError::LocalProcess {
                        program: "ssh".into(),
                        detail: format!(
                            "cannot create a control directory under {}: {error}",
                            base.display()
                        ),
                    })
                }
            }
        }
    }
}

impl ControlDir {
    /// The directory `policy` puts masters in, created or checked.
    pub(crate) fn for_policy(policy: &MasterPolicy) -> Result<ControlDir, RemoteError> {
        match policy {
            MasterPolicy::Shared { dir, idle } if !idle.is_zero() => {
                let path = control::shared_control_dir(dir);
                control::open_private_dir(&path)?;
                Ok(ControlDir {
                    path,
                    shared_idle: Some(*idle),
                    pending_exits: std::sync::Mutex::default(),
                })
            }
            _ => ControlDir::create(),
        }
    }
}

impl Drop for ControlDir {
    fn drop(&mut self) {
        let exits =
            std::mem::take(&mut *self.pending_exits.lock().unwrap_or_else(|p| p.into_inner()));
        for mut exit in exits {
            let _ = exit.wait();
        }
        if self.shared_idle.is_none() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The connection to one worker.
#[derive(Debug)]
pub struct Session {
    worker: String,
    config: Arc<RemoteConfig>,
    socket: PathBuf,
    master_log: PathBuf,
    /// The native multiplexing client of the master at `socket`: it opens sessions over the
    /// socket without an `ssh` process (and never closes the master itself).
    mux: openssh::Session,
    /// The files of a shared master; `None` for a master of this command only.
    shared: Option<MasterFiles>,
    /// Serialises (re)starting the master; true once this session checked or started it.
    master: Mutex<bool>,
    _control: Arc<ControlDir>,
}

impl Session {
    /// Starts the master for `worker`, or checks the shared one that is open already. A
    /// per-command master's socket is slot `slot` of `control`.
    pub(crate) async fn connect(
        config: Arc<RemoteConfig>,
        control: Arc<ControlDir>,
        slot: usize,
        worker: &str,
    ) -> Result<Session, RemoteError> {
        check_worker_name(worker)?;
        let shared = control
            .shared_idle
            .map(|_| MasterFiles::new(&control.path, &config, worker));
        let (socket, master_log) = match &shared {
            Some(files) => (files.socket.clone(), files.log.clone()),
            None => (
                control.path.join(format!("{slot}.sock")),
                control.path.join(format!("{slot}.log")),
            ),
        };
        let session = Session {
            worker: worker.to_string(),
            mux: openssh::Session::resume_mux(socket.clone().into_boxed_path(), None),
            socket,
            master_log,
            shared,
            config,
            master: Mutex::new(false),
            _control: control,
        };
        session.ensure_master().await?;
        Ok(session)
    }

    /// The worker's address, as given.
    pub fn worker(&self) -> &str {
        &self.worker
    }

    pub(crate) fn config(&self) -> &RemoteConfig {
        &self.config
    }

    /// Runs `command`, reporting its lines to `observer` as they arrive.
    pub async fn run(
        &self,
        command: &RemoteCommand,
        observer: &dyn Observer,
    ) -> Result<CommandOutcome, RemoteError> {
        Ok(self.execute(command, observer, false).await?.outcome)
    }

    /// Like [`Session::run`], and also returns every output line.
    pub async fn capture(
        &self,
        command: &RemoteCommand,
        observer: &dyn Observer,
    ) -> Result<CapturedOutput, RemoteError> {
        self.execute(command, observer, true).await
    }

    async fn execute(
        &self,
        command: &RemoteCommand,
        observer: &dyn Observer,
        keep_output: bool,
    ) -> Result<CapturedOutput, RemoteError> {
        self.ensure_master().await?;
        let line = command.render(self.config.use_sudo);
        let stop = if command.finishes_on_interrupt() {
            OnInterrupt::Finish
        } else {
            OnInterrupt::Stop
        };
        let description = command.describe(self.config.use_sudo);
        observer.record(RemoteRecord::CommandStarted {
            worker: self.worker.clone(),
            command: description.clone(),
        });
        let started = Instant::now();
        // The deadline covers opening the session too: the master answers only once the worker
        // confirmed the channel, which a worker gone silent never does.
        let opened = tokio::time::timeout(
            command.timeout(),
            self.open_over_master(&line, &description, stop, command.input()),
        )
        .await
        .unwrap_or_else(|_elapsed| {
            Err(RemoteError::CommandTimeout {
                worker: self.worker.clone(),
                command: description.clone(),
                after: command.timeout(),
            })
        });
        let running = match opened {
            Ok(running) => running,
            Err(error) => {
                observer.record(RemoteRecord::CommandFailed {
                    worker: self.worker.clone(),
                    error: error.to_string(),
                    duration: started.elapsed(),
                });
                return Err(error);
            }
        };
        let finished = self
            .follow(
                running,
                &description,
                (command.timeout(), started),
                observer,
                keep_output,
            )
            .await?;
        let captured: usize = finished
            .stdout
            .iter()
            .chain(&finished.stderr)
            .map(|l| l.len() + 1)
            .sum();
        if captured > MAX_CAPTURED_BYTES {
            return Err(RemoteError::OutputTooLarge {
                worker: self.worker.clone(),
                command: description,
                limit: MAX_CAPTURED_BYTES,
            });
        }
        Ok(finished)
    }

    /// Opens a session for `line` over the master with the native multiplexing client (no
    /// `ssh` process per command). A master that stopped answering since it was checked (killed,
    /// its worker gone) is started again once.
    async fn open_over_master(
        &self,
        line: &str,
        description: &str,
        stop: OnInterrupt,
        input: Option<std::sync::Arc<[u8]>>,
    ) -> Result<Running<'_>, RemoteError> {
        let mut retried = false;
        loop {
            let mut remote = self.mux.raw_command(line);
            // A command that stops on interrupt gets a stdin pipe held open while it runs: the
            // worker-side wrapper (see `RemoteCommand::render`) stops the command when it
            // closes, whether maand closes it on Ctrl-C or dies.
            remote
                .stdin(match (stop, &input) {
                    (OnInterrupt::Stop, _) | (_, Some(_)) => openssh::Stdio::piped(),
                    (OnInterrupt::Finish, None) => openssh::Stdio::null(),
                })
                .stdout(openssh::Stdio::piped())
                .stderr(openssh::Stdio::piped());
            match remote.spawn().await {
                Ok(mut child) => {
                    let stdin = child.stdin().take();
                    let stdout = child.stdout().take().map(|s| Box::new(s) as OutputStream);
                    let stderr = child.stderr().take().map(|s| Box::new(s) as OutputStream);
                    return Ok(Running {
                        process: Process::OverMaster(Some(child)),
                        stdin,
                        input: input.clone(),
                        stdout,
                        stderr,
                    });
                }
                Err(openssh::Error::SshMux(_)) if !retried => {
                    retried = true;
                    *self.master.lock().await = false;
                    if !self.master_alive().await {
                        let _ = std::fs::remove_file(&self.socket);
                    }
                    self.ensure_master().await?;
                }
                Err(error) => {
                    return Err(RemoteError::ConnectionLost {
                        worker: self.worker.clone(),
                        command: description.to_string(),
                        detail: format!("cannot open a session over the SSH master: {error}"),
                    })
                }
            }
        }
    }

    /// Spawns `process` (rsync and the ssh it starts), streams its output to `observer` and
    /// enforces `timeout`. Records `CommandStarted` with `description`, then `CommandFinished`
    /// or `CommandFailed`.
    pub(crate) async fn supervise(
        &self,
        mut process: Command,
        description: &str,
        timeout: Duration,
        observer: &dyn Observer,
        keep_output: bool,
    ) -> Result<CapturedOutput, RemoteError> {
        let program = process
            .as_std()
            .get_program()
            .to_string_lossy()
            .into_owned();
        process
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = process.spawn().map_err(|error| RemoteError::LocalProcess {
            program: program.clone(),
            detail: error.to_string(),
        })?;
        let stdout = child.stdout.take().map(|s| Box::new(s) as OutputStream);
        let stderr = child.stderr.take().map(|s| Box::new(s) as OutputStream);
        let running = Running {
            process: Process::Local { child, program },
            stdin: None,
            input: None,
            stdout,
            stderr,
        };
        observer.record(RemoteRecord::CommandStarted {
            worker: self.worker.clone(),
            command: description.to_string(),
        });
        let started = Instant::now();
        self.follow(
            running,
            description,
            (timeout, started),
            observer,
            keep_output,
        )
        .await
    }

    /// Follows a command started at `started` (its `CommandStarted` recorded) to its end:
    /// streams its output to `observer`, stops it once `timeout` has passed since `started`,
    /// and stops it on the worker at the operator's interrupt when it holds stdin.
    async fn follow(
        &self,
        mut running: Running<'_>,
        description: &str,
        (timeout, started): (Duration, Instant),
        observer: &dyn Observer,
        keep_output: bool,
    ) -> Result<CapturedOutput, RemoteError> {
        let _tracked = running.local_group().map(crate::interrupt::track_group);
        let mut held_stdin = running.stdin.take();
        let input = running.input.take();
        let drained = async {
            let drain = self.drain(&mut running, observer, keep_output);
            tokio::pin!(drain);
            if let Some(input) = input {
                // The command reads its input while its output is drained; a command that ends
                // without reading it all tells by its exit status, not by this write.
                let mut stdin = held_stdin.take();
                let feed = async move {
                    if let Some(stdin) = stdin.as_mut() {
                        let _ = stdin.write_all(&input).await;
                        let _ = stdin.shutdown().await;
                    }
                    drop(stdin);
                };
                return tokio::join!(drain, feed).0;
            }
            if held_stdin.is_some() {
                tokio::select! {
                    result = &mut drain => return result,
                    () = crate::interrupt::stopped() => held_stdin = None,
                }
            }
            drain.await
        };
        let ran = tokio::time::timeout(timeout.saturating_sub(started.elapsed()), drained).await;
        let duration = started.elapsed();
        let failure = match ran {
            Ok(Ok((ended, stdout, stderr))) => match ended {
                Ended::Code(255) if !self.master_alive().await => RemoteError::ConnectionLost {
                    worker: self.worker.clone(),
                    command: description.to_string(),
                    detail: last_lines(&stderr, "the connection ended without an exit status"),
                },
                Ended::Code(exit_code) => {
                    observer.record(RemoteRecord::CommandFinished {
                        worker: self.worker.clone(),
                        exit_code,
                        duration,
                    });
                    return Ok(CapturedOutput {
                        outcome: CommandOutcome {
                            exit_code,
                            duration,
                        },
                        stdout,
                        stderr,
                    });
                }
                Ended::Signalled => RemoteError::ConnectionLost {
                    worker: self.worker.clone(),
                    command: description.to_string(),
                    detail: format!("{} was killed by a signal", running.program()),
                },
            },
            Ok(Err(error)) => RemoteError::LocalProcess {
                program: running.program().to_string(),
                detail: error.to_string(),
            },
            Err(_elapsed) => {
                running.stop().await;
                RemoteError::CommandTimeout {
                    worker: self.worker.clone(),
                    command: description.to_string(),
                    after: timeout,
                }
            }
        };
        observer.record(RemoteRecord::CommandFailed {
            worker: self.worker.clone(),
            error: failure.to_string(),
            duration,
        });
        Err(failure)
    }

    /// Reads both output streams line by line until they close, then waits for the end.
    async fn drain(
        &self,
        running: &mut Running<'_>,
        observer: &dyn Observer,
        keep_output: bool,
    ) -> std::io::Result<(Ended, Vec<String>, Vec<String>)> {
        let stdout = running.stdout.take().expect("stdout is piped");
        let stderr = running.stderr.take().expect("stderr is piped");
        let (stdout, stderr) = tokio::join!(
            self.forward_lines(stdout, Stream::Stdout, observer, keep_output),
            self.forward_lines(stderr, Stream::Stderr, observer, keep_output),
        );
        let ended = running.wait().await?;
        Ok((ended, stdout?, stderr?))
    }

    async fn forward_lines(
        &self,
        reader: impl AsyncRead + Unpin,
        stream: Stream,
        observer: &dyn Observer,
        keep_output: bool,
    ) -> std::io::Result<Vec<String>> {
        let mut reader = BufReader::new(reader);
        let mut kept = Vec::new();
        let mut kept_bytes = 0;
        let mut buffer = Vec::new();
        loop {
            buffer.clear();
            if read_line_bounded(&mut reader, &mut buffer, MAX_LINE_BYTES).await? == 0 {
                return Ok(kept);
            }
            if buffer.last() == Some(&b'\n') {
                buffer.pop();
                if buffer.last() == Some(&b'\r') {
                    buffer.pop();
                }
            }
            let line = String::from_utf8_lossy(&buffer).into_owned();
            // Past the capture limit lines still stream to the observer; keeping one more
            // than the limit is enough for the caller to refuse the output.
            if keep_output && kept_bytes <= MAX_CAPTURED_BYTES {
                kept_bytes += line.len() + 1;
                kept.push(line.clone());
            }
            observer.record(RemoteRecord::OutputLine {
                worker: self.worker.clone(),
                stream,
                line,
            });
        }
    }

    /// Starts the master unless its socket is there already (it goes away when the master
    /// exits: idle, worker gone, or closed). A shared master found open is checked once per
    /// session: it must answer, and have been opened with the current key and known_hosts
    /// lines; otherwise it is closed and a new one started.
    async fn ensure_master(&self) -> Result<(), RemoteError> {
        let mut checked = self.master.lock().await;
        let Some(files) = &self.shared else {
            if self.socket.exists() {
                return Ok(());
            }
            return self.start_master(MASTER_IDLE_EXIT).await;
        };
        if *checked && self.socket.exists() {
            return Ok(());
        }
        let idle = self._control.shared_idle.unwrap_or(MASTER_IDLE_EXIT);
        let _other_processes = files.lock().await?;
        let fingerprint = control::credential_fingerprint(&self.config, &self.worker)?;
        if control::socket_present(&self.socket)? {
            let same_credentials = files.recorded_fingerprint().as_deref() == Some(&fingerprint);
            // A live master accepts on its socket; a stale socket (master killed) refuses.
            // Connecting costs no process, unlike `ssh -O check`.
            let listening = std::os::unix::net::UnixStream::connect(&self.socket).is_ok();
            if same_credentials && listening {
                *checked = true;
                return Ok(());
            }
            self.exit_master().await;
            files.forget();
        }
        self.start_master(idle).await?;
        // Recorded after the connection: a first contact has just added the worker's host key.
        files.record_fingerprint(&control::credential_fingerprint(
            &self.config,
            &self.worker,
        )?)?;
        *checked = true;
        Ok(())
    }

    /// Opens a master that exits after `idle` without sessions.
    async fn start_master(&self, idle: Duration) -> Result<(), RemoteError> {
        let _ = std::fs::remove_file(&self.master_log);
        let mut ssh = Command::new("ssh");
        ssh.args(["-M", "-f", "-N", "-E"])
            .arg(&self.master_log)
            .arg("-o")
            .arg(format!("ControlPersist={}", idle.as_secs().max(1)))
            .args(self.ssh_options())
            .arg("--")
            .arg(&self.worker)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let limit =
            self.config.connect_timeout + self.config.connect_timeout.max(MIN_HANDSHAKE_ALLOWANCE);
        let mut child = ssh.spawn().map_err(|error| RemoteError::LocalProcess {
            program: "ssh".into(),
            detail: error.to_string(),
        })?;
        // With -f, ssh returns as soon as the master is authenticated and in the background.
        match tokio::time::timeout(limit, child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => {
                let log = std::fs::read_to_string(&self.master_log).unwrap_or_default();
                Err(self.connect_failure(&log, status))
            }
            Ok(Err(error)) => Err(RemoteError::LocalProcess {
                program: "ssh".into(),
                detail: error.to_string(),
            }),
            Err(_elapsed) => {
                let _ = child.kill().await;
                Err(RemoteError::ConnectTimeout {
                    worker: self.worker.clone(),
                    port: self.config.port,
                    after: limit,
                })
            }
        }
    }

    /// Names what went wrong from the master's log.
    fn connect_failure(&self, log: &str, status: ExitStatus) -> RemoteError {
        let worker = self.worker.clone();
        if log.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") {
            let line = log.lines().find_map(|line| {
                let rest = line.strip_prefix("Offending ")?;
                rest.rsplit_once(':')?.1.trim().parse().ok()
            });
            return RemoteError::HostKeyChanged {
                worker,
                known_hosts: self.config.known_hosts_path.clone(),
                line,
            };
        }
        if log.contains("Connection refused") {
            return RemoteError::Refused {
                worker,
                port: self.config.port,
            };
        }
        if log.contains("timed out") {
            return RemoteError::ConnectTimeout {
                worker,
                port: self.config.port,
                after: self.config.connect_timeout,
            };
        }
        if log.contains("Permission denied") {
            return RemoteError::AuthenticationRejected {
                worker,
                user: self.config.user.clone(),
                key: self.config.key_path.clone(),
            };
        }
        let lines: Vec<String> = log.lines().map(str::to_string).collect();
        RemoteError::ConnectFailed {
            worker,
            detail: last_lines(&lines, &format!("ssh exited with {status}")),
        }
    }

    /// Asks the master to exit and waits for the answer.
    async fn exit_master(&self) {
        let _ = Command::new("ssh")
            .arg("-S")
            .arg(&self.socket)
            .args(["-O", "exit", "--"])
            .arg(&self.worker)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
    }

    /// Whether the master answers an alive check on its socket.
    async fn master_alive(&self) -> bool {
        self.mux.check().await.is_ok()
    }

    /// Options of every ssh invocation for this worker: master, commands and rsync's ssh.
    pub(crate) fn ssh_options(&self) -> Vec<String> {
        let config = &self.config;
        let connect_secs = config.connect_timeout.as_secs().max(1);
        let mut options = vec!["-S".to_string(), path_text(&self.socket)];
        for option in [
            "BatchMode=yes".to_string(),
            "StrictHostKeyChecking=accept-new".to_string(),
            format!(
                "UserKnownHostsFile=\"{}\"",
                path_text(&config.known_hosts_path)
            ),
            "GlobalKnownHostsFile=/dev/null".to_string(),
            "HashKnownHosts=no".to_string(),
            "IdentitiesOnly=yes".to_string(),
            format!("ConnectTimeout={connect_secs}"),
            format!("ServerAliveInterval={SERVER_ALIVE_INTERVAL_SECS}"),
            format!("ServerAliveCountMax={SERVER_ALIVE_COUNT_MAX}"),
            "LogLevel=ERROR".to_string(),
        ] {
            options.push("-o".to_string());
            options.push(option);
        }
        options.extend([
            "-i".to_string(),
            path_text(&config.key_path),
            "-p".to_string(),
            config.port.to_string(),
            "-l".to_string(),
            config.user.clone(),
        ]);
        options
    }
}

impl Drop for Session {
    /// Asks a per-command master to exit without waiting (a shared one stays for the next
    /// command): the control directory, dropped after the last
    /// session, waits for every `ssh -O exit` at once, so closing a fleet costs one round trip
    /// rather than one per worker.
    fn drop(&mut self) {
        if self.shared.is_none() && self.socket.exists() {
            let exit = std::process::Command::new("ssh")
                .arg("-S")
                .arg(&self.socket)
                .args(["-O", "exit", "--"])
                .arg(&self.worker)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            if let Ok(child) = exit {
                self._control
                    .pending_exits
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(child);
            }
        }
    }
}

/// What a running command does when the operator interrupts maand (see `crate::interrupt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnInterrupt {
    /// It is stopped on the worker (its stdin is closed).
    Stop,
    /// It runs to its end (a deploy step, a copy).
    Finish,
}

/// Output of a running command, read line by line.
type OutputStream = Box<dyn AsyncRead + Unpin + Send>;
/// A command in flight.
struct Running<'a> {
    process: Process<'a>,
    /// The write end of the command's stdin: held open until the command should stop, or
    /// written `input` and closed.
    stdin: Option<openssh::ChildStdin>,
    input: Option<std::sync::Arc<[u8]>>,
    stdout: Option<OutputStream>,
    stderr: Option<OutputStream>,
}

/// What runs a command: a local process (rsync with its own ssh), or a session opened over the
/// master by the native multiplexing client.
enum Process<'a> {
    Local {
        child: Child,
        program: String,
    },
    /// `None` once waited for.
    OverMaster(Option<openssh::Child<&'a openssh::Session>>),
}

/// How a command ended, as far as the operator host can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// The exit status; 255 also when the connection or the remote process ended without one,
    /// as `ssh` itself reports those.
    Code(i32),
    /// The local process was killed by a signal.
    Signalled,
}

impl Running<'_> {
    fn program(&self) -> &str {
        match &self.process {
            Process::Local { program, .. } => program,
            Process::OverMaster(_) => "ssh",
        }
    }

    /// The local process group a second interrupt must kill, if there is one.
    fn local_group(&self) -> Option<u32> {
        match &self.process {
            Process::Local { child, .. } => child.id(),
            Process::OverMaster(_) => None,
        }
    }

    async fn wait(&mut self) -> std::io::Result<Ended> {
        match &mut self.process {
            Process::Local { child, .. } => {
                let status = child.wait().await?;
                Ok(status.code().map_or(Ended::Signalled, Ended::Code))
            }
            Process::OverMaster(child) => {
                let child = child.take().expect("a command is waited for once");
                match child.wait().await {
                    Ok(status) => Ok(status.code().map_or(Ended::Code(255), Ended::Code)),
                    // The client reports exit status 127 as an error of its own.
                    Err(openssh::Error::Remote(error))
                        if error.kind() == std::io::ErrorKind::NotFound =>
                    {
                        Ok(Ended::Code(127))
                    }
                    Err(
                        openssh::Error::RemoteProcessTerminated
                        | openssh::Error::Disconnected
                        | openssh::Error::SshMux(_)
                        | openssh::Error::Master(_),
                    ) => Ok(Ended::Code(255)),
                    Err(error) => Err(std::io::Error::other(error.to_string())),
                }
            }
        }
    }

    /// Stops the command at its deadline: kills the local process group, or closes the session
    /// (the master then closes the channel, which stops a command under the stdin watcher).
    async fn stop(&mut self) {
        self.stdin = None;
        match &mut self.process {
            Process::Local { child, .. } => kill_process_group(child).await,
            Process::OverMaster(child) => drop(child.take()),
        }
    }
}

/// Reads up to and including the next newline into `buffer`, but never more than `max` bytes;
/// returns the number of bytes read (0 at the end of the stream).
async fn read_line_bounded(
    reader: &mut (impl tokio::io::AsyncBufRead + Unpin),
    buffer: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<usize> {
    let mut read = 0;
    while read < max {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            break;
        }
        let room = (max - read).min(available.len());
        let (take, done) = match available[..room].iter().position(|&b| b == b'\n') {
            Some(newline) => (newline + 1, true),
            None => (room, false),
        };
        buffer.extend_from_slice(&available[..take]);
        reader.consume(take);
        read += take;
        if done {
            break;
        }
    }
    Ok(read)
}

/// Kills the whole process group of `child` (rsync and the ssh it started, or one ssh) and
/// reaps it.
async fn kill_process_group(child: &mut Child) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) with a negative pid signals the group `child` leads (it was spawned
        // with process_group(0)); no memory is involved.
        unsafe {
            libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
        }
    }
    let _ = child.kill().await;
}

/// The last few non-empty lines of `lines`, or `fallback` when there are none.
pub(crate) fn last_lines(lines: &[String], fallback: &str) -> String {
    let tail: Vec<&str> = lines
        .iter()
        .map(|line| line.trim())
        .filter(|line| !line.is_empty())
        .collect();
    if tail.is_empty() {
        return fallback.to_string();
    }
    tail[tail.len().saturating_sub(3)..].join("; ")
}

/// Paths in ssh options and rsync's `-e` are validated UTF-8 (see `check_local_path`).
fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Rejects local paths that ssh's option parser or rsync's `-e` splitting would mangle.
pub(crate) fn check_local_path(path: &Path, what: &str) -> Result<(), RemoteError> {
    let text = path.to_str().ok_or_else(|| RemoteError::InvalidArgument {
        argument: path.display().to_string(),
        reason: format!("the {what} path is not valid UTF-8; move it to a plain path"),
    })?;
    if text
        .chars()
        .any(|c| matches!(c, '\'' | '"' | '\\') || c.is_control())
    {
        return Err(RemoteError::InvalidArgument {
            argument: text.to_string(),
            reason: format!("the {what} path contains quotes, backslashes or control characters, which ssh options cannot carry; move it to a plain path"),
        });
    }
    Ok(())
}

/// A worker address must be a host name or IP address: it reaches ssh's and rsync's command
/// lines, where a leading `-` or a shell character would change their meaning.
fn check_worker_name(worker: &str) -> Result<(), RemoteError> {
    let valid = !worker.is_empty()
        && !worker.starts_with('-')
        && worker
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'));
    if valid {
        Ok(())
    } else {
        Err(RemoteError::InvalidWorker {
            worker: worker.to_string(),
            reason: "not a host name or IP address; fix its `host` in workspace/workers.json"
                .into(),
        })
    }
}
