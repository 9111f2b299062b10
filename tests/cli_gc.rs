//! `maand gc` against real workers: removed allocations lose their trees (data and logs too),
//! their rows and KV; the journal keeps everything and still verifies.

mod support;

use support::bucket::TestBucket;
use support::cluster::Cluster;

const MAKEFILE: &str = "start:\n\t@mkdir -p data logs && echo on > data/state\nstop:\n\t@echo off > data/state\nrestart: stop start\n";

#[test]
fn gc_after_removing_a_job_and_a_worker_deletes_trees_and_rows_and_keeps_the_journal_valid() {
    let cluster = Cluster::start(3);
    let bucket = TestBucket::new(&cluster, &[&["a"], &["a"], &["a"]]);
    for job in ["keep", "gone"] {
        bucket.write(
            &format!("workspace/jobs/{job}/manifest.json"),
            r#"{"version": "1.0.0", "selectors": ["a"]}"#,
        );
        bucket.write(&format!("workspace/jobs/{job}/Makefile"), MAKEFILE);
    }
    bucket.write("workspace/jobs/gone/vars.toml", "x = \"1\"\n");
    bucket.maand_ok(&["build"]);
    bucket.maand_ok(&["deploy"]);
    let events_before: u64 = bucket.sql("SELECT max(seq) FROM journal").parse().unwrap();

    // Remove the job `gone` and the third worker.
    bucket.remove("workspace/jobs/gone");
    let [first, second, third] = [
        &cluster.hosts()[0],
        &cluster.hosts()[1],
        &cluster.hosts()[2],
    ];
    bucket.write(
        "workspace/workers.json",
        &format!(
            r#"[{{"host": "{first}", "labels": ["a"]}}, {{"host": "{second}", "labels": ["a"]}}]"#
        ),
    );
    bucket.maand_ok(&["build"]);
    bucket.maand_ok(&["deploy"]);
    // deploy keeps data/ of the removed job on the remaining workers.
    let dir = format!("{}/jobs/gone", bucket.remote_dir());
    assert_eq!(
        cluster.ssh_ok(first, &format!("ls -A {dir}")).trim(),
        "data\nlogs"
    );

    let out = bucket.maand_ok(&["gc"]);
    assert!(out.contains("removed 4 allocation tree(s)"), "{out}");
    assert_eq!(
        cluster
            .ssh_ok(
                first,
                &format!("test -e {dir} && echo present || echo absent")
            )
            .trim(),
        "absent"
    );
    assert_eq!(
        cluster
            .ssh_ok(
                first,
                &format!("cat {}/jobs/keep/data/state", bucket.remote_dir())
            )
            .trim(),
        "on"
    );
    assert_eq!(
        bucket.sql("SELECT count(*) FROM allocations WHERE removed = 1"),
        "0"
    );
    assert_eq!(
        bucket.sql(&format!(
            "SELECT count(*) FROM allocations WHERE worker_ip = '{third}'"
        )),
        "0"
    );
    assert_eq!(bucket.sql("SELECT count(*) FROM kv WHERE namespace LIKE 'maand/job/gone%' OR namespace = 'vars/job/gone'"), "0");
    assert_eq!(bucket.sql("SELECT count(*) FROM kv WHERE deleted = 1"), "0");
    // History stays: the journal only grew, and it still verifies.
    let events_after: u64 = bucket.sql("SELECT max(seq) FROM journal").parse().unwrap();
    assert!(events_after > events_before);
    bucket.maand_ok(&["journal", "verify"]);
    // The earlier state is still visible through time travel.
    let then = bucket.maand_ok(&["cat", "allocations", "--at", &events_before.to_string()]);
    assert!(then.contains("gone"), "{then}");
    // A second gc finds nothing left to do.
    assert!(bucket
        .maand_ok(&["gc"])
        .contains("removed 0 allocation tree(s)"));
}
