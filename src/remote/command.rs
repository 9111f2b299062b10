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

/// What to run on a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteCommand {
    argv: Vec<String>,
    timeout: Duration,
    privileged: bool,
    worker_side_limit: bool,
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
        }
    }

    /// Runs the command as root through `sudo -n` when the bucket sets `use_sudo`.
    pub fn privileged(mut self) -> RemoteCommand {
        self.privileged = true;
        self
    }

    /// The program and its arguments.
    pub fn argv(&self) -> &[String] {
        &self.argv
    }

    /// How long the command may run before it is stopped.
    pub fn timeout(&self) -> Duration {
        self.timeout
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
            .privileged();
        assert_eq!(command.render(true), "sudo -n -- timeout -k 5 32 id -u");
        assert_eq!(command.render(false), "timeout -k 5 32 id -u");
    }

    #[test]
    fn every_word_is_quoted() {
        let command =
            RemoteCommand::new(["echo", "a b", "it's"], Duration::from_millis(1500)).unwrap();
        assert_eq!(command.render(true), "timeout -k 5 4 echo 'a b' 'it'\\''s'");
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
