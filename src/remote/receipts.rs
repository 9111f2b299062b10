//! Steps that outlive the operator: the command lines that run a lifecycle step under the
//! worker-side runner's `step` mode, and the housekeeping of the receipts it leaves.
//!
//! The runner (see `runner.py`) starts the step's program detached from the SSH session, in its
//! own session and process group, with its output in `steps/<deploy>/<key>.out|.err` under the
//! bucket's directory on the worker, and writes `<key>.receipt` atomically when the program
//! ends. The SSH side only follows the output, so a killed maand or a dropped connection never
//! stops a step. Running the same `(deploy, key)` again starts nothing: the runner replays the
//! output and status of a finished step, or follows one still running — which is how a resumed
//! deploy learns the real outcome of a step it lost track of without repeating it.

use std::time::Duration;

use super::command::RemoteCommand;
use super::error::RemoteError;
use super::quote::shell_quote;
use super::worker_files::bucket_dir_on_worker;

/// Exit status the runner reports when the step's time limit stopped it.
pub const STEP_TIMED_OUT: i32 = 124;
/// Exit status the runner reports when the step's supervisor vanished without a receipt (the
/// worker restarted while the step ran): its outcome is unknown.
pub const STEP_VANISHED: i32 = 125;
/// How long past the step's own limit the follower may wait: the supervisor kills the step at
/// its limit and writes the receipt right after.
const FOLLOW_ALLOWANCE: Duration = Duration::from_secs(30);

/// One step on one worker: `key` names it within `deploy_id` (an attempt of a planned step).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepReceiptKey {
    pub deploy_id: String,
    pub key: String,
}

/// The command that runs `argv` as the step `step` on a worker of bucket `bucket_id` (or, when
/// the step already ran or runs there, replays or follows it), as root when the bucket uses
/// sudo. The step is stopped after `limit`.
pub fn step_command(
    bucket_id: &str,
    step: &StepReceiptKey,
    limit: Duration,
    argv: &[String],
) -> Result<RemoteCommand, RemoteError> {
    for (what, name) in [
        ("bucket id", bucket_id),
        ("deploy id", step.deploy_id.as_str()),
        ("step key", step.key.as_str()),
    ] {
        if !is_safe_name(name) {
            return Err(RemoteError::InvalidArgument {
                argument: name.to_string(),
                reason: format!("not a valid {what}"),
            });
        }
    }
    let seconds = limit.as_secs().max(1);
    let runner = format!("{}/bin/runner.py", bucket_dir_on_worker(bucket_id));
    let words = [
        "python3".to_string(),
        runner,
        "step".into(),
        step.deploy_id.clone(),
        step.key.clone(),
        seconds.to_string(),
        "--".into(),
    ]
    .into_iter()
    .chain(argv.iter().cloned());
    Ok(RemoteCommand::new(words, Duration::from_secs(seconds) + FOLLOW_ALLOWANCE)?.privileged())
}

/// The command that deletes the receipts and step logs of every deploy on a worker except
/// those in `keep` (deploys not finished yet, whose steps a resume may still ask about).
pub fn forget_steps_command(
    bucket_id: &str,
    keep: &[String],
    timeout: Duration,
) -> Result<RemoteCommand, RemoteError> {
    if let Some(bad) = std::iter::once(bucket_id)
        .chain(keep.iter().map(String::as_str))
        .find(|name| !is_safe_name(name))
    {
        return Err(RemoteError::InvalidArgument {
            argument: bad.to_string(),
            reason: "not a valid bucket or deploy id".into(),
        });
    }
    let steps = format!("{}/steps", bucket_dir_on_worker(bucket_id));
    let mut script = format!(
        "cd {} 2>/dev/null || exit 0; find . -mindepth 1 -maxdepth 1",
        shell_quote(&steps)
    );
    for deploy in keep {
        script.push_str(&format!(" ! -name {}", shell_quote(deploy)));
    }
    script.push_str(" -exec rm -rf {} +");
    Ok(RemoteCommand::bash(&script, timeout)?.privileged())
}

/// What the runner accepts as a name: no path separators, no leading dot or dash, no `..`.
fn is_safe_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !name.contains("..")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> StepReceiptKey {
        StepReceiptKey {
            deploy_id: "0f9e-77".into(),
            key: "12.0".into(),
        }
    }

    #[test]
    fn a_step_runs_under_the_runner_with_its_limit_and_a_follow_allowance() {
        let argv = ["make".to_string(), "-C".into(), "dir with space".into()];
        let command = step_command("b1", &key(), Duration::from_secs(60), &argv).unwrap();
        assert_eq!(
            command.argv(),
            [
                "python3",
                "/opt/worker/b1/bin/runner.py",
                "step",
                "0f9e-77",
                "12.0",
                "60",
                "--",
                "make",
                "-C",
                "dir with space"
            ]
        );
        assert_eq!(command.timeout(), Duration::from_secs(90));
    }

    #[test]
    fn unsafe_keys_are_refused() {
        let bad = StepReceiptKey {
            deploy_id: "../x".into(),
            key: "1".into(),
        };
        assert!(step_command("b1", &bad, Duration::from_secs(1), &["true".into()]).is_err());
        assert!(forget_steps_command("b1", &["a/b".into()], Duration::from_secs(1)).is_err());
    }

    #[test]
    fn forgetting_keeps_the_unfinished_deploys() {
        let command = forget_steps_command("b1", &["d2".into()], Duration::from_secs(5)).unwrap();
        assert_eq!(
            command.argv()[2],
            "cd /opt/worker/b1/steps 2>/dev/null || exit 0; find . -mindepth 1 -maxdepth 1 ! -name d2 -exec rm -rf {} +"
        );
    }
}
