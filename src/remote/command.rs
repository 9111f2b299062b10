//! A command to run on a worker, as an argument vector, and its rendering into the single
//! command line the worker's login shell parses. Rendering quotes every word with
//! [`shell_quote`]; nothing else in maand builds remote command lines.

use std::time::Duration;

use super::error::RemoteError;
use super::quote::shell_quote;

/// Extra time the worker-side `timeout` allows beyond ours: our own deadline always fires
/// first, and the worker's then stops whatever the dropped connection left running.
const WORKER_SIDE_GRACE_SECS: u64 = 2;
/// Seconds between the worker-side `timeout`'s TERM and its KILL.
const WORKER_SIDE_KILL_AFTER_SECS: u64 = 5;

/// The worker-side wrapper of a command that stops when its SSH session's stdin closes (maand
/// closes it on Ctrl-C; the kernel closes it when maand dies): the command runs in a session
/// and process group of its own (`setsid`) with stdin from /dev/null, while a watcher reads the
/// session's stdin; at its end the watcher sends TERM to the command's whole group, then KILL.
/// (A background job of a shell without job control reads /dev/null unless told otherwise,
/// hence the explicit `<&3` for the watcher.)
const STOP_WHEN_STDIN_CLOSES: &str = "exec 3<&0; setsid \"$@\" </dev/null 3<&- & pid=$!; \
(while read -r _; do :; done; kill -TERM -\"$pid\" 2>/dev/null; sleep 5; kill -KILL -\"$pid\" 2>/dev/null) <&3 >/dev/null 2>&1 & watcher=$!; exec 3<&-; \
wait \"$pid\"; code=$?; kill \"$watcher\" 2>/dev/null; exit \"$code\"";

/// What to run on a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteCommand {
    argv: Vec<String>,
    timeout: Duration,
    privileged: bool,
    worker_side_limit: bool,
    finish_on_interrupt: bool,
    /// Bytes written to the command's stdin (then closed).
    input: Option<std::sync::Arc<[u8]>>,
}

impl RemoteCommand {
    /// Runs `argv` (program first) on the worker, stopped after `timeout`. Every argument
    /// reaches the program verbatim, whatever characters it holds.
    pub fn new<I, S>(argv: I, timeout: Duration) -> Result<RemoteCommand, RemoteError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let argv: Vec<String> = argv.into_iter().map(Into::into).collect();
        if argv.is_empty() {
            return Err(RemoteError::InvalidArgument {
                argument: String::new(),
                reason: "a remote command needs a program to run".into(),
            });
        }
        if let Some(argument) = argv.iter().find(|argument| argument.contains('\0')) {
            return Err(RemoteError::InvalidArgument {
                argument: argument.clone(),
                reason: "contains a NUL character, which no command line can carry".into(),
            });
        }
        Ok(RemoteCommand {
            argv,
            timeout,
            privileged: false,
            worker_side_limit: true,
            finish_on_interrupt: false,
            input: None,
        })
    }

    /// Runs `script` with `bash -c` on the worker.
    pub fn bash(script: &str, timeout: Duration) -> Result<RemoteCommand, RemoteError> {
        RemoteCommand::new(["bash", "-c", script], timeout)
    }

    /// A POSIX `sh` script that must run even on a worker lacking `bash` or `timeout` (the
    /// prerequisite probe): no worker-side limit is added.
    pub(crate) fn probe(script: &str, timeout: Duration) -> RemoteCommand {
        RemoteCommand {
            argv: vec!["sh".into(), "-c".into(), script.into()],
            timeout,
            privileged: false,
            worker_side_limit: false,
            finish_on_interrupt: true,
            input: None,
        }
    }

    /// Leaves the time limit to the program itself (the runner's step mode enforces its own and
    /// always ends soon after it): no worker-side `timeout` is started in front of it.
    pub(crate) fn limited_by_itself(mut self) -> RemoteCommand {
        self.worker_side_limit = false;
        self
    }

    /// Feeds `input` to the command's stdin, which is then closed (for a command that runs to its
    /// end on interrupt: see [`RemoteCommand::finish_on_interrupt`]).
    pub(crate) fn with_input(mut self, input: Vec<u8>) -> RemoteCommand {
        self.input = Some(input.into());
        self
    }

    /// What the command reads on stdin, if anything.
    pub(crate) fn input(&self) -> Option<std::sync::Arc<[u8]>> {
        self.input.clone()
    }

    /// Runs the command as root through `sudo -n` when the bucket sets `use_sudo`.
    pub fn privileged(mut self) -> RemoteCommand {
        self.privileged = true;
        self
    }

    /// Lets the command run to its end when the operator interrupts maand (a deploy step:
    /// the journal then records what really happened). Other commands are stopped on the
    /// worker.
    pub fn finish_on_interrupt(mut self) -> RemoteCommand {
        self.finish_on_interrupt = true;
        self
    }

    /// Whether the command runs to its end when maand is interrupted.
    pub fn finishes_on_interrupt(&self) -> bool {
        self.finish_on_interrupt
    }

    /// The program and its arguments.
    pub fn argv(&self) -> &[String] {
        &self.argv
    }

    /// How long the command may run before it is stopped.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The command line as the journal shows it: what runs, without the worker-side wrapper
    /// that stops it on interrupt.
    pub(crate) fn describe(&self, use_sudo: bool) -> String {
        RemoteCommand {
            finish_on_interrupt: true,
            ..self.clone()
        }
        .render(use_sudo)
    }

    /// The command line handed to the worker's login shell.
    pub(crate) fn render(&self, use_sudo: bool) -> String {
        let mut words: Vec<String> = Vec::new();
        if self.privileged && use_sudo {
            words.extend(["sudo", "-n", "--"].map(String::from));
        }
        if self.worker_side_limit {
            let limit = self.timeout.as_secs() + u64::from(self.timeout.subsec_nanos() > 0);
            words.extend([
                "timeout".to_string(),
                "-k".to_string(),
                WORKER_SIDE_KILL_AFTER_SECS.to_string(),
                (limit + WORKER_SIDE_GRACE_SECS).to_string(),
            ]);
        }
        words.extend(self.argv.iter().cloned());
        if !self.finish_on_interrupt {
            let wrapper = ["sh", "-c", STOP_WHEN_STDIN_CLOSES, "maand-stop-watch"];
            words.splice(0..0, wrapper.map(String::from));
        }
        words
            .iter()
            .map(|word| shell_quote(word))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn privileged_commands_use_sudo_only_when_the_bucket_does() {
        let command = RemoteCommand::new(["id", "-u"], Duration::from_secs(30))
            .unwrap()
            .privileged()
            .finish_on_interrupt();
        assert_eq!(command.render(true), "sudo -n -- timeout -k 5 32 id -u");
        assert_eq!(command.render(false), "timeout -k 5 32 id -u");
    }

    #[test]
    fn every_word_is_quoted() {
        let command = RemoteCommand::new(["echo", "a b", "it's"], Duration::from_millis(1500))
            .unwrap()
            .finish_on_interrupt();
        assert_eq!(command.render(true), "timeout -k 5 4 echo 'a b' 'it'\\''s'");
    }

    #[test]
    fn a_command_that_stops_on_interrupt_runs_under_the_stdin_watcher() {
        let command = RemoteCommand::new(["sleep", "9"], Duration::from_secs(30)).unwrap();
        assert!(!command.finishes_on_interrupt());
        let line = command.render(false);
        assert!(
            line.starts_with("sh -c 'exec 3<&0; setsid \"$@\" </dev/null"),
            "{line}"
        );
        assert!(
            line.ends_with(" maand-stop-watch timeout -k 5 32 sleep 9"),
            "{line}"
        );
    }

    #[test]
    fn a_command_limited_by_itself_runs_without_timeout() {
        let command = RemoteCommand::new(["runner", "step"], Duration::from_secs(30))
            .unwrap()
            .privileged()
            .finish_on_interrupt()
            .limited_by_itself();
        assert_eq!(command.render(true), "sudo -n -- runner step");
        assert_eq!(command.timeout(), Duration::from_secs(30));
    }

    #[test]
    fn probes_have_no_worker_side_limit() {
        let probe = RemoteCommand::probe("command -v make", Duration::from_secs(5));
        assert_eq!(probe.render(true), "sh -c 'command -v make'");
    }

    #[test]
    fn nul_and_empty_commands_are_rejected() {
        assert!(RemoteCommand::new(["echo", "a\0b"], Duration::from_secs(1)).is_err());
        assert!(RemoteCommand::new(Vec::<String>::new(), Duration::from_secs(1)).is_err());
    }
}
