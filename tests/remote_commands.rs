//! Commands on real workers through `maand::remote`: isolation, streaming, exit codes, sudo,
//! quoting, deadlines, host keys and the worker-side runner.

mod support;

use std::sync::Arc;
use std::time::Duration;

use maand::remote::{
    runner_command, stage_worker_files, Fleet, JobEntry, Observer, RemoteCommand, RemoteError,
    RemoteRecord, Stream, Transfer, WorkerFiles, WorkerIdentity,
};
use support::cluster::Cluster;
use support::remote::{config, Recorder};

const LIMIT: Duration = Duration::from_secs(30);

fn fleet(cluster: &Cluster, dir: &tempfile::TempDir) -> Fleet {
    Fleet::new(config(cluster, &dir.path().join("known_hosts")), 8).unwrap()
}

fn command(argv: &[&str]) -> RemoteCommand {
    RemoteCommand::new(argv.iter().copied(), LIMIT).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_path_holds_different_files_on_each_worker() {
    let cluster = Cluster::start(2);
    let dir = tempfile::tempdir().unwrap();
    let fleet = fleet(&cluster, &dir);
    let recorder = Arc::new(Recorder::default());
    let written = fleet
        .for_each(cluster.hosts(), {
            let recorder = recorder.clone();
            move |session| {
                let recorder = recorder.clone();
                async move {
                    let write = RemoteCommand::new(
                        [
                            "sh",
                            "-c",
                            "printf %s \"$1\" > /var/tmp/who",
                            "sh",
                            session.worker(),
                        ],
                        LIMIT,
                    )?;
                    session.run(&write, recorder.as_ref()).await?;
                    session
                        .capture(&command(&["cat", "/var/tmp/who"]), recorder.as_ref())
                        .await
                }
            }
        })
        .await;
    for result in written {
        let output = result.result.unwrap();
        assert_eq!(output.stdout, std::slice::from_ref(&result.worker));
        assert_eq!(
            cluster.ssh_ok(&result.worker, "cat /var/tmp/who"),
            result.worker
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_lines_stream_in_order_while_the_command_runs() {
    let cluster = Cluster::start(1);
    let host = cluster.hosts()[0].clone();
    let dir = tempfile::tempdir().unwrap();
    let session = fleet(&cluster, &dir).session(&host).await.unwrap();

    // The command only finishes once the test has seen its first line and answered: were lines
    // delivered at the end instead of as they come, it would run into its deadline.
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let recorder = Arc::new(Recorder::default());
    let observer = {
        let recorder = recorder.clone();
        move |record: RemoteRecord| {
            if let RemoteRecord::OutputLine { line, .. } = &record {
                if line == "waiting" {
                    seen_tx.send(()).unwrap();
                }
            }
            recorder.record(record);
        }
    };
    let script = "for i in 1 2 3; do echo out$i; sleep 0.2; echo err$i >&2; sleep 0.2; done; \
                  echo waiting; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo done";
    let waits = RemoteCommand::bash(script, LIMIT).unwrap();
    let run = session.run(&waits, &observer);
    let answer = async {
        seen_rx.recv().await.unwrap();
        cluster.ssh_ok(&host, "touch /tmp/go");
    };
    let (outcome, ()) = tokio::join!(run, answer);
    assert!(outcome.unwrap().success());

    let records = recorder.records();
    assert!(
        matches!(&records[0], RemoteRecord::CommandStarted { command, .. } if command.contains("echo out$i"))
    );
    assert!(matches!(
        records.last(),
        Some(RemoteRecord::CommandFinished { exit_code: 0, .. })
    ));
    let interleaved: Vec<String> = records
        .iter()
        .filter_map(|record| match record {
            RemoteRecord::OutputLine { line, .. } => Some(line.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        interleaved,
        ["out1", "err1", "out2", "err2", "out3", "err3", "waiting", "done"]
    );
    assert_eq!(
        recorder.lines(&host, Stream::Stderr),
        ["err1", "err2", "err3"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_are_outcomes_not_errors() {
    let cluster = Cluster::start(1);
    let host = &cluster.hosts()[0];
    let dir = tempfile::tempdir().unwrap();
    let session = fleet(&cluster, &dir).session(host).await.unwrap();
    let recorder = Recorder::default();
    for code in [0, 3, 255] {
        let outcome = session
            .run(&command(&["sh", "-c", &format!("exit {code}")]), &recorder)
            .await
            .unwrap();
        assert_eq!(outcome.exit_code, code);
    }
    let finished: Vec<i32> = recorder
        .records()
        .iter()
        .filter_map(|record| match record {
            RemoteRecord::CommandFinished { exit_code, .. } => Some(*exit_code),
            _ => None,
        })
        .collect();
    assert_eq!(finished, [0, 3, 255]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_commands_run_as_root_only_when_the_bucket_uses_sudo() {
    let cluster = Cluster::start(1);
    let host = &cluster.hosts()[0];
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::default();
    let whoami = command(&["id", "-un"]);

    let with_sudo = fleet(&cluster, &dir).session(host).await.unwrap();
    let root = with_sudo
        .capture(&whoami.clone().privileged(), &recorder)
        .await
        .unwrap();
    assert_eq!(root.stdout, ["root"]);
    let plain = with_sudo.capture(&whoami, &recorder).await.unwrap();
    assert_eq!(plain.stdout, [cluster.user()]);

    let mut settings = config(&cluster, &dir.path().join("known_hosts"));
    settings.use_sudo = false;
    let without_sudo = Fleet::new(settings, 1)
        .unwrap()
        .session(host)
        .await
        .unwrap();
    let still_user = without_sudo
        .capture(&whoami.privileged(), &recorder)
        .await
        .unwrap();
    assert_eq!(still_user.stdout, [cluster.user()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_arguments_reach_the_worker_verbatim_as_data() {
    let cluster = Cluster::start(1);
    let host = &cluster.hosts()[0];
    let dir = tempfile::tempdir().unwrap();
    let session = fleet(&cluster, &dir).session(host).await.unwrap();
    let hostile = [
        ";rm -rf /",
        "$(touch /tmp/pwned)",
        "`touch /tmp/pwned`",
        "it's \"quoted\"",
        "two\nlines",
        "*",
        "",
        "--help",
        "$HOME ~ !! \\ | & > <",
        "ünïcødé ✓",
    ];
    let echo_argv = "import json, sys; print(json.dumps(sys.argv[1:]))";
    for privileged in [false, true] {
        let mut argv = vec!["python3", "-c", echo_argv];
        argv.extend(hostile);
        let mut probe = command(&argv);
        if privileged {
            probe = probe.privileged();
        }
        let output = session.capture(&probe, &Recorder::default()).await.unwrap();
        let received: Vec<String> = serde_json::from_str(&output.stdout.join("\n")).unwrap();
        assert_eq!(received, hostile);
    }
    for word in hostile {
        let printed = RemoteCommand::new(["printf", "%s", word], LIMIT).unwrap();
        let output = session
            .capture(&printed, &Recorder::default())
            .await
            .unwrap();
        assert_eq!(output.stdout.join("\n"), word);
    }
    assert_eq!(
        cluster.ssh_ok(host, "test -e /tmp/pwned && echo pwned || echo clean"),
        "clean\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_past_its_deadline_is_stopped_and_the_session_stays_usable() {
    let cluster = Cluster::start(1);
    let host = &cluster.hosts()[0];
    let dir = tempfile::tempdir().unwrap();
    let session = fleet(&cluster, &dir).session(host).await.unwrap();
    let recorder = Recorder::default();
    let slow = RemoteCommand::new(["sleep", "600"], Duration::from_secs(1)).unwrap();
    let error = session.run(&slow, &recorder).await.unwrap_err();
    assert!(
        matches!(&error, RemoteError::CommandTimeout { worker, after, .. } if worker == host && *after == Duration::from_secs(1)),
        "{error}"
    );
    assert!(matches!(
        recorder.records().last(),
        Some(RemoteRecord::CommandFailed { .. })
    ));
    assert!(session
        .run(&command(&["true"]), &recorder)
        .await
        .unwrap()
        .success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_keys_are_trusted_on_first_use_and_a_changed_key_is_refused() {
    let cluster = Cluster::start(2);
    let [changed, unchanged] = cluster.hosts() else {
        panic!("two hosts")
    };
    let dir = tempfile::tempdir().unwrap();
    let known_hosts = dir.path().join("secrets").join("known_hosts");
    let settings = config(&cluster, &known_hosts);
    {
        let fleet = Fleet::new(settings.clone(), 2).unwrap();
        for result in fleet
            .run(
                cluster.hosts(),
                &command(&["true"]),
                Arc::new(Recorder::default()),
            )
            .await
        {
            result.result.unwrap();
        }
    }
    let recorded = std::fs::read_to_string(&known_hosts).unwrap();
    for host in cluster.hosts() {
        assert!(
            recorded
                .lines()
                .any(|line| line.starts_with(&format!("{host} "))),
            "{recorded}"
        );
    }

    cluster.rekey(changed);
    let fleet = Fleet::new(settings, 2).unwrap();
    let error = fleet.session(changed).await.unwrap_err();
    let RemoteError::HostKeyChanged {
        worker,
        known_hosts: file,
        line,
    } = &error
    else {
        panic!("expected a changed host key, got: {error}")
    };
    assert_eq!(worker, changed);
    assert_eq!(file, &known_hosts);
    let expected_line = recorded
        .lines()
        .position(|line| line.starts_with(&format!("{changed} ")))
        .map(|index| index as u32 + 1);
    assert_eq!(*line, expected_line);
    let message = error.to_string();
    assert!(
        message.contains(changed.as_str()) && message.contains("ssh-keygen -R"),
        "{message}"
    );
    assert_eq!(std::fs::read_to_string(&known_hosts).unwrap(), recorded);
    fleet.session(unchanged).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_runs_make_targets_with_versions_and_skips_disabled_jobs() {
    let cluster = Cluster::start(1);
    let host = &cluster.hosts()[0];
    let dir = tempfile::tempdir().unwrap();
    let stage = dir.path().join("stage");
    let job = |name: &str, disabled: bool| JobEntry {
        name: name.into(),
        disabled,
        current_version: "1.0.0".into(),
        new_version: "1.1.0".into(),
    };
    stage_worker_files(
        &stage,
        &WorkerFiles {
            identity: WorkerIdentity {
                bucket_id: "bucket-1".into(),
                worker_id: "w-1".into(),
                update_seq: 3,
                labels: vec!["worker".into()],
            },
            jobs: vec![job("api", false), job("paused", true), job("broken", false)],
        },
    )
    .unwrap();
    let makefile =
        "start stop:\n\t@echo \"$(notdir $(CURDIR)) $@ $$CURRENT_VERSION $$NEW_VERSION\"\n";
    for name in ["api", "paused"] {
        std::fs::create_dir_all(stage.join("jobs").join(name)).unwrap();
        std::fs::write(stage.join("jobs").join(name).join("Makefile"), makefile).unwrap();
    }
    std::fs::create_dir_all(stage.join("jobs/broken")).unwrap();
    std::fs::write(
        stage.join("jobs/broken/Makefile"),
        "start stop:\n\t@exit 4\n",
    )
    .unwrap();

    let fleet = fleet(&cluster, &dir);
    let session = fleet.session(host).await.unwrap();
    let recorder = Recorder::default();
    let transfer = Transfer {
        source: stage.clone(),
        destination: "/opt/worker/bucket-1".into(),
        filters: vec![],
        delete: true,
        checksum: false,
        timeout: LIMIT,
    };
    session.sync(&transfer, &recorder).await.unwrap();
    let identity: WorkerIdentity =
        serde_json::from_str(&cluster.ssh_ok(host, "cat /opt/worker/bucket-1/worker.json"))
            .unwrap();
    assert_eq!(identity.update_seq, 3);

    let start =
        runner_command("bucket-1", "start", &["api".into(), "paused".into()], LIMIT).unwrap();
    let started = session.capture(&start, &recorder).await.unwrap();
    assert!(started.outcome.success(), "{started:?}");
    assert_eq!(
        started.stdout,
        [
            "api start 1.0.0 1.1.0",
            "runner: paused: disabled, start skipped"
        ]
    );

    let stop_all = runner_command("bucket-1", "stop", &[], LIMIT).unwrap();
    let stopped = session.capture(&stop_all, &recorder).await.unwrap();
    assert_eq!(stopped.outcome.exit_code, 1, "{stopped:?}");
    assert_eq!(
        stopped.stdout,
        ["api stop 1.0.0 1.1.0", "paused stop 1.0.0 1.1.0"]
    );
    assert!(stopped
        .stderr
        .iter()
        .any(|line| line.starts_with("runner: broken: make stop failed")));

    let unknown = runner_command("bucket-1", "start", &["ghost".into()], LIMIT).unwrap();
    assert_eq!(session.run(&unknown, &recorder).await.unwrap().exit_code, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_output_without_newlines_arrives_in_bounded_lines_and_captures_are_capped() {
    let cluster = Cluster::start(1);
    let host = cluster.hosts()[0].clone();
    let dir = tempfile::tempdir().unwrap();
    let fleet = fleet(&cluster, &dir);
    let session = fleet.session(&host).await.unwrap();

    // One 1 MB "line": streamed as lines of at most MAX_LINE_BYTES, nothing lost.
    let recorder = Recorder::default();
    let one_line = command(&["sh", "-c", "head -c 1000000 /dev/zero | tr '\\0' x"]);
    session.run(&one_line, &recorder).await.unwrap();
    let lines = recorder.lines(&host, Stream::Stdout);
    assert!(lines
        .iter()
        .all(|l| l.len() <= maand::remote::MAX_LINE_BYTES));
    assert_eq!(lines.iter().map(String::len).sum::<usize>(), 1_000_000);

    // A capture (how maand reads worker files and probes) refuses more than its limit.
    let huge = command(&["sh", "-c", "seq 1 2000000"]);
    let err = session
        .capture(&huge, &Recorder::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, RemoteError::OutputTooLarge { ref worker, .. } if *worker == host),
        "{err}"
    );
    assert!(
        err.to_string().contains("printed more than 4194304 bytes"),
        "{err}"
    );
}
