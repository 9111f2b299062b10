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
    runner_step(bucket_id, step, limit, None, argv)
}

/// Like [`step_command`], but the runner first brings the worker's copy of `job` up to date from
/// `delta` (see `apply_delta` in `maand_runner.py`), prints [`DELTA_APPLIED`], and only then
/// claims the step. Before that line nothing is claimed: a runner that exits without it (the
/// worker's copy drifted, or an older runner that cannot apply deltas) has run nothing.
pub fn step_command_applying(
    bucket_id: &str,
    step: &StepReceiptKey,
    limit: Duration,
    (job, delta): (&str, Vec<u8>),
    argv: &[String],
) -> Result<RemoteCommand, RemoteError> {
    Ok(runner_step(bucket_id, step, limit, Some(job), argv)?.with_input(delta))
}

/// The line the runner prints once a delta is applied, before the step's own output.
pub const DELTA_APPLIED: &str = "runner: applied the delta";

fn runner_step(
    bucket_id: &str,
    step: &StepReceiptKey,
    limit: Duration,
    apply: Option<&str>,
    argv: &[String],
) -> Result<RemoteCommand, RemoteError> {
    for (what, name) in [
        ("bucket id", bucket_id),
        ("deploy id", step.deploy_id.as_str()),
        ("step key", step.key.as_str()),
        ("job name", apply.unwrap_or("job")),
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
    // `-S`: the runner needs nothing from site-packages, and skipping them is a good part of
    // the interpreter's start, paid on every lifecycle step.
    let mut words = vec![
        "python3".to_string(),
        "-S".into(),
        runner,
        "step".into(),
        step.deploy_id.clone(),
        step.key.clone(),
        seconds.to_string(),
    ];
    if let Some(job) = apply {
        words.extend(["--apply".to_string(), job.to_string()]);
    }
    words.push("--".into());
    words.extend(argv.iter().cloned());
    // The runner stops the step at its limit itself, so no `timeout` runs in front of it.
    Ok(
        RemoteCommand::new(words, Duration::from_secs(seconds) + FOLLOW_ALLOWANCE)?
            .privileged()
            .limited_by_itself(),
    )
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
pub fn is_safe_name(name: &str) -> bool {
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
                "-S",
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

    /// Runs the real runner's step mode on this host in `root` (as a worker's bucket dir).
    fn run_step(
        root: &std::path::Path,
        key: &str,
        limit: &str,
        script: &str,
    ) -> std::process::Output {
        std::process::Command::new("python3")
            .arg(root.join("bin/runner.py"))
            .args(["step", "d1", key, limit, "--", "sh", "-c", script])
            .current_dir(root)
            .output()
            .unwrap()
    }

    fn runner_root() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("bin")).unwrap();
        for (name, source) in super::super::RUNNER_FILES {
            std::fs::write(root.path().join("bin").join(name), source).unwrap();
        }
        root
    }

    #[test]
    fn a_step_asked_again_is_replayed_from_its_receipt_not_run_again() {
        let root = runner_root();
        let script = "echo ran >> runs; echo hello; echo oops >&2; exit 3";
        let first = run_step(root.path(), "4.0", "30", script);
        let again = run_step(root.path(), "4.0", "30", script);
        for out in [&first, &again] {
            assert_eq!(out.status.code(), Some(3));
            assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
            assert!(String::from_utf8_lossy(&out.stderr).contains("oops"));
        }
        assert!(String::from_utf8_lossy(&again.stderr).contains("already finished on this worker"));
        assert_eq!(
            std::fs::read_to_string(root.path().join("runs")).unwrap(),
            "ran\n"
        );
        let receipt: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(root.path().join("steps/d1/4.0.receipt")).unwrap(),
        )
        .unwrap();
        assert_eq!(receipt["exit_code"], 3);
        assert_eq!(receipt["deploy"], "d1");
        // Another attempt of the same step is a new run.
        run_step(root.path(), "4.1", "30", script);
        assert_eq!(
            std::fs::read_to_string(root.path().join("runs")).unwrap(),
            "ran\nran\n"
        );
    }

    #[test]
    fn a_step_past_its_limit_has_its_whole_process_group_killed() {
        let root = runner_root();
        let out = run_step(root.path(), "1.0", "1", "sleep 7304 & sleep 7304");
        assert_eq!(out.status.code(), Some(STEP_TIMED_OUT));
        assert!(String::from_utf8_lossy(&out.stderr).contains("timed out after 1 s"));
        let left = std::process::Command::new("pgrep")
            .args(["-f", "sleep 7304"])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&left.stdout), "");
    }

    #[test]
    fn a_service_the_step_leaves_running_does_not_hold_the_step_open() {
        let root = runner_root();
        let started = std::time::Instant::now();
        let out = run_step(
            root.path(),
            "2.0",
            "30",
            "sleep 7305 >/dev/null 2>&1 & echo started",
        );
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "started\n");
        assert!(started.elapsed() < Duration::from_secs(20), "held open");
        let _ = std::process::Command::new("pkill")
            .args(["-f", "sleep 7305"])
            .status();
    }

    #[test]
    fn a_program_that_cannot_start_ends_the_step_with_127_and_says_why() {
        let root = runner_root();
        let out = std::process::Command::new("python3")
            .arg(root.path().join("bin/runner.py"))
            .args(["step", "d1", "3.0", "30", "--", "/nonexistent/program"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(127));
        assert!(String::from_utf8_lossy(&out.stderr).contains("cannot start /nonexistent/program"));
    }

    /// Runs the real runner's step mode with `program`, returning its stdout and exit code.
    fn run_program(root: &std::path::Path, key: &str, program: &[&str]) -> (String, Option<i32>) {
        let out = std::process::Command::new("python3")
            .arg(root.join("bin/runner.py"))
            .args(["step", "d1", key, "30", "--"])
            .args(program)
            .env("MAAND_RUNNER_TEST", "inherited")
            .output()
            .unwrap();
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            out.status.code(),
        )
    }

    #[test]
    fn programs_are_found_in_path_and_env_assignments_apply_as_env_would() {
        let root = runner_root();
        let echo = "echo ${A:-unset} ${B:-unset} ${MAAND_RUNNER_TEST:-unset}";
        assert_eq!(
            run_program(
                root.path(),
                "4.0",
                &["env", "A=1", "B=x=y", "sh", "-c", echo]
            ),
            ("1 x=y inherited\n".to_string(), Some(0))
        );
        // Options are env's own business: env itself runs.
        assert_eq!(
            run_program(
                root.path(),
                "4.1",
                &["env", "-i", "A=2", "/bin/sh", "-c", echo]
            ),
            ("2 unset unset\n".to_string(), Some(0))
        );
        assert_eq!(
            run_program(root.path(), "4.2", &["sh", "-c", echo]),
            ("unset unset inherited\n".to_string(), Some(0))
        );
        assert_eq!(
            run_program(root.path(), "4.3", &["env", "A=1", "no-such-program-7305"]).1,
            Some(127)
        );
    }

    /// Runs the real runner's step mode with `--apply app`, `delta` on stdin.
    fn run_applying(root: &std::path::Path, key: &str, delta: &str) -> std::process::Output {
        use std::io::Write;
        let mut child = std::process::Command::new("python3")
            .arg(root.join("bin/runner.py"))
            .args(["step", "d1", key, "30", "--apply", "app", "--"])
            // Long enough that files the delta wrote are older than the step's end, even where
            // file times advance once per clock tick.
            .args(["sh", "-c", "sleep 0.02; echo ran >> runs; echo restarted"])
            .current_dir(root)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(delta.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    fn sha256(text: &str) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(text.as_bytes()))
    }

    /// A worker's copy of job `app` as maand last shipped it, and a delta that changes
    /// `conf/app.conf`, keeps `Makefile` and removes `old.txt`.
    fn shipped_app() -> (tempfile::TempDir, String) {
        let root = runner_root();
        let job = root.path().join("jobs/app");
        std::fs::create_dir_all(job.join("conf")).unwrap();
        std::fs::create_dir_all(job.join("data")).unwrap();
        std::fs::write(job.join("Makefile"), "start:\n").unwrap();
        std::fs::write(job.join("conf/app.conf"), "port=0").unwrap();
        std::fs::write(job.join("old.txt"), "old").unwrap();
        std::fs::write(job.join("data/state"), "kept").unwrap();
        let delta = format!(
            "maand-delta 1\nF 644 2 worker.json\nV 644 {} jobs/app/Makefile\n\
             F 600 6 jobs/app/conf/app.conf\nD jobs/app/old.txt\n.\n{{}}port=1",
            sha256("start:\n")
        );
        (root, delta)
    }

    fn read(root: &std::path::Path, path: &str) -> String {
        std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| format!("<{e}>"))
    }

    #[test]
    fn a_delta_is_applied_before_the_step_and_not_again_on_a_replay() {
        use std::os::unix::fs::PermissionsExt;
        let (root, delta) = shipped_app();
        let out = run_applying(root.path(), "5.0", &delta);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!(
                ">f+++++++++ worker.json\n>fc........ jobs/app/conf/app.conf\n\
                 *deleting   jobs/app/old.txt\n{DELTA_APPLIED}\nrestarted\n"
            )
        );
        assert_eq!(read(root.path(), "worker.json"), "{}");
        assert_eq!(read(root.path(), "jobs/app/conf/app.conf"), "port=1");
        let mode = std::fs::metadata(root.path().join("jobs/app/conf/app.conf"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!root.path().join("jobs/app/old.txt").exists());
        assert_eq!(read(root.path(), "jobs/app/data/state"), "kept");
        // Resumed after maand lost track: the same delta and step key apply cleanly and the
        // step is replayed from its receipt.
        let again = run_applying(root.path(), "5.0", &delta);
        assert_eq!(again.status.code(), Some(0), "{again:?}");
        assert_eq!(
            String::from_utf8_lossy(&again.stdout),
            format!("{DELTA_APPLIED}\nrestarted\n"),
            "files already as the delta has them are not written again"
        );
        assert!(String::from_utf8_lossy(&again.stderr).contains("already finished on this worker"));
        assert_eq!(read(root.path(), "runs"), "ran\n");
    }

    #[test]
    fn a_copy_changed_on_the_worker_is_left_alone_and_nothing_runs() {
        for (what, change) in [
            ("edited", "jobs/app/Makefile"),
            ("extra", "jobs/app/conf/extra.conf"),
        ] {
            let (root, delta) = shipped_app();
            std::fs::write(root.path().join(change), "by hand").unwrap();
            let out = run_applying(root.path(), "5.0", &delta);
            assert_eq!(out.status.code(), Some(3), "{what}: {out:?}");
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("copied with rsync instead"),
                "{what}: {out:?}"
            );
            assert!(!String::from_utf8_lossy(&out.stdout).contains(DELTA_APPLIED));
            assert_eq!(
                read(root.path(), "jobs/app/conf/app.conf"),
                "port=0",
                "{what}"
            );
            assert_eq!(read(root.path(), "jobs/app/old.txt"), "old", "{what}");
            assert!(!root.path().join("worker.json").exists(), "{what}");
            assert!(!root.path().join("runs").exists(), "{what}");
            assert!(
                !root.path().join("steps/d1").exists(),
                "{what}: a step was claimed"
            );
        }
    }

    /// The job files `shipped/app` vouches for, in its order.
    fn remembered(root: &std::path::Path) -> Vec<String> {
        read(root, "shipped/app")
            .lines()
            .map(|line| line.splitn(6, ' ').nth(5).unwrap_or_default().to_string())
            .collect()
    }

    #[test]
    fn the_files_a_delta_leaves_are_remembered_and_then_checked_by_their_identity() {
        let (root, _) = shipped_app();
        // Older than the delta's checks, even where file times advance once per clock tick.
        std::thread::sleep(Duration::from_millis(30));
        let delta = |makefile: &str, key: &str| {
            let delta = format!(
                "maand-delta 2\nF 644 2 {} worker.json\nV 644 {} jobs/app/Makefile\n\
                 F 600 6 {} jobs/app/conf/app.conf\nD jobs/app/old.txt\n.\n{{}}port=1",
                sha256("{}"),
                sha256(makefile),
                sha256("port=1")
            );
            run_applying(root.path(), key, &delta)
        };
        let out = delta("start:\n", "5.0");
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        assert_eq!(
            remembered(root.path()),
            ["jobs/app/Makefile", "jobs/app/conf/app.conf"]
        );
        // An entry whose size, times and inode match is taken at its word: the file is not
        // read (here the index is edited to claim other content for the Makefile).
        let index =
            read(root.path(), "shipped/app").replace(&sha256("start:\n"), &sha256("claimed"));
        std::fs::write(root.path().join("shipped/app"), index).unwrap();
        let out = delta("claimed", "6.0");
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        // Edited in place with the same size: its change time moved, so it is hashed again
        // and the edit is seen, whatever the index says.
        std::fs::write(root.path().join("jobs/app/Makefile"), "stort:\n").unwrap();
        let out = delta("claimed", "7.0");
        assert_eq!(out.status.code(), Some(3), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("jobs/app/Makefile was changed"));
        // An unreadable index is no index: files are hashed.
        std::fs::write(root.path().join("jobs/app/Makefile"), "start:\n").unwrap();
        std::fs::write(root.path().join("shipped/app"), "not an index").unwrap();
        let out = delta("start:\n", "8.0");
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        assert_eq!(read(root.path(), "runs"), "ran\nran\nran\n");
    }

    #[test]
    fn a_delta_reaching_outside_the_job_is_refused_whole() {
        for path in [
            "jobs/app/../../escape",
            "jobs/other/Makefile",
            "jobs/app/data/state",
            "jobs/app/logs/x",
            "/etc/passwd",
            "steps/d1/5.0.receipt",
        ] {
            let (root, _) = shipped_app();
            let delta = format!("maand-delta 1\nF 644 2 worker.json\nF 644 1 {path}\n.\n{{}}x");
            let out = run_applying(root.path(), "5.0", &delta);
            assert_eq!(out.status.code(), Some(2), "{path}: {out:?}");
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("refusing delta entry"),
                "{path}: {out:?}"
            );
            assert!(!root.path().join("worker.json").exists(), "{path}");
            assert_eq!(read(root.path(), "jobs/app/data/state"), "kept");
        }
        let (root, _) = shipped_app();
        let out = run_applying(
            root.path(),
            "5.0",
            "maand-delta 1\nF 644 9 worker.json\n.\n{}",
        );
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("the delta ended early"));
        assert!(!root.path().join("worker.json").exists());
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
