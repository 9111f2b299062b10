//! `maand logs show` over a real deploy that fails, in all three formats, as insta snapshots.
//! Times, ids, addresses and durations are replaced so the snapshots hold the shape only.

mod support;

use support::bucket::TestBucket;
use support::cluster::Cluster;

fn snapshot(bucket: &TestBucket, name: &str, args: &[&str]) {
    let out = bucket.maand_ok(args);
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(&bucket.bucket_id, "[bucket-id]");
    settings.add_filter(
        r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{3}Z)?",
        "[time]",
    );
    settings.add_filter(
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        "[uuid]",
    );
    settings.add_filter(r"run=[0-9a-f]{8}\b", "run=[run]");
    settings.add_filter(r"127\.\d+\.0\.(\d+)", "[worker-$1]");
    settings.add_filter(r"seq=\d+|\x22seq\x22:\d+", "seq=[seq]");
    settings.add_filter(
        r"duration_ms=\d+|\x22duration_ms\x22:\x22\d+\x22",
        "duration_ms=[ms]",
    );
    settings.add_filter(r"\d+\.\ds", "[secs]");
    settings.add_filter(r"pid=\d+|\x22pid\x22:\x22\d+\x22", "pid=[pid]");
    settings.add_filter(r"host=\S+|\x22host\x22:\x22[^\x22]*\x22", "host=[host]");
    settings.add_filter(r"user=\S+|\x22user\x22:\x22[^\x22]*\x22", "user=[user]");
    settings.add_filter(r"/\S*/maand\b", "maand");
    settings.set_description(format!("maand {}", args.join(" ")));
    settings.bind(|| insta::assert_snapshot!(name, out));
}

#[test]
fn logs_of_a_failed_deploy_in_raw_json_and_human_form() {
    let cluster = Cluster::start(1);
    let bucket = TestBucket::new(&cluster, &[&["a"]]);
    bucket.write(
        "workspace/jobs/api/manifest.json",
        r#"{"version": "1.0.0", "selectors": ["a"]}"#,
    );
    // stdout and stderr travel apart (two files on the worker, two channels over SSH), so lines
    // printed within the same instant may arrive in either order; the pause keeps the
    // snapshot's order.
    bucket.write(
        "workspace/jobs/api/Makefile",
        "start:\n\t@echo starting api\n\t@sleep 1\n\t@echo port busy >&2\n\t@exit 3\n",
    );
    bucket.maand_ok(&["build"]);
    let failed = bucket.maand(&["deploy"]);
    assert!(!failed.status.success());

    snapshot(
        &bucket,
        "rollout_raw",
        &["logs", "show", "--phase", "rollout"],
    );
    snapshot(
        &bucket,
        "rollout_json",
        &["logs", "show", "--phase", "rollout", "--format", "json"],
    );
    snapshot(
        &bucket,
        "rollout_human",
        &["logs", "show", "--phase", "rollout", "--format", "human"],
    );
    snapshot(
        &bucket,
        "step_failed_human",
        &[
            "logs",
            "show",
            "--event",
            "step_failed",
            "--format",
            "human",
        ],
    );
    snapshot(
        &bucket,
        "run_finished_raw",
        &["logs", "show", "--event", "run_finished", "--tail", "1"],
    );
    // The log files under logs/ hold the same records.
    let worker_log = std::fs::read_to_string(
        bucket
            .path()
            .join(format!("logs/{}.log", cluster.hosts()[0])),
    )
    .unwrap();
    assert!(
        worker_log.contains("msg=\"port busy\"") && worker_log.contains("event=command_end"),
        "{worker_log}"
    );
}
