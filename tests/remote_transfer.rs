//! rsync transfers to real workers through the session's master: first copy, nothing-changed
//! copy, filters, deletion, and sudo on the receiving side.

mod support;

use std::path::Path;
use std::time::Duration;

use maand::remote::{FilterRule, Fleet, Transfer};
use support::cluster::Cluster;
use support::remote::{config, Recorder};

const LIMIT: Duration = Duration::from_secs(60);

fn write(root: &Path, relative: &str, contents: &str) {
    let path = root.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, contents).unwrap();
}

/// A local tree readable by everyone: rsync copies the source directory's own mode onto the
/// destination, and a 0700 temp dir would lock the worker's user out.
fn source_tree(dir: &tempfile::TempDir) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let root = dir.path().join("tree");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    root
}

fn transfer(source: &Path, destination: &str) -> Transfer {
    Transfer {
        source: source.to_path_buf(),
        destination: destination.into(),
        filters: vec![],
        delete: false,
        checksum: false,
        timeout: LIMIT,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_transfer_of_an_unchanged_tree_moves_nothing() {
    let cluster = Cluster::start(1);
    let host = &cluster.hosts()[0];
    let dir = tempfile::tempdir().unwrap();
    let tree = source_tree(&dir);
    for index in 0..5 {
        write(
            &tree,
            &format!("jobs/api/file{index}.txt"),
            &format!("content {index}"),
        );
    }
    let fleet = Fleet::new(config(&cluster, &dir.path().join("known_hosts")), 4).unwrap();
    let session = fleet.session(host).await.unwrap();
    let recorder = Recorder::default();
    let copy = transfer(&tree, "/opt/worker/bucket-1");

    let first = session.sync(&copy, &recorder).await.unwrap();
    assert_eq!(first.files_transferred, 5, "{:?}", first.changes);
    assert_eq!(
        cluster.ssh_ok(host, "cat /opt/worker/bucket-1/jobs/api/file3.txt"),
        "content 3"
    );
    // The receiving rsync ran as root: the tree belongs to root, as deploys expect.
    assert_eq!(
        cluster.ssh_ok(host, "stat -c %U /opt/worker/bucket-1/jobs/api/file3.txt"),
        "root\n"
    );

    let again = session.sync(&copy, &recorder).await.unwrap();
    assert_eq!(again.files_transferred, 0, "{:?}", again.changes);

    write(&tree, "jobs/api/file1.txt", "changed");
    let changed = session.sync(&copy, &recorder).await.unwrap();
    assert_eq!(changed.files_transferred, 1, "{:?}", changed.changes);
    assert_eq!(
        cluster.ssh_ok(host, "cat /opt/worker/bucket-1/jobs/api/file1.txt"),
        "changed"
    );
}

/// With checksums (how deploys copy), a tree written anew with the same contents touches
/// nothing on the worker: unchanged files keep their times there (what `make` reads), and a
/// changed file is sent with the time of its transfer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checksum_transfer_leaves_unchanged_files_and_their_times_alone() {
    let cluster = Cluster::start(1);
    let host = &cluster.hosts()[0];
    let dir = tempfile::tempdir().unwrap();
    let tree = source_tree(&dir);
    for index in 0..3 {
        write(
            &tree,
            &format!("app/file{index}.txt"),
            &format!("content {index}"),
        );
    }
    let fleet = Fleet::new(config(&cluster, &dir.path().join("known_hosts")), 4).unwrap();
    let session = fleet.session(host).await.unwrap();
    let recorder = Recorder::default();
    let copy = Transfer {
        checksum: true,
        ..transfer(&tree, "/opt/worker/bucket-2")
    };
    session.sync(&copy, &recorder).await.unwrap();
    let times = "stat -c %Y /opt/worker/bucket-2/app/file0.txt /opt/worker/bucket-2/app/file1.txt";
    cluster.ssh_ok(host, "sudo touch -d @1000000000 /opt/worker/bucket-2/app/file0.txt /opt/worker/bucket-2/app/file1.txt");

    // Restaged: same contents, new times here.
    std::thread::sleep(Duration::from_millis(1100));
    for index in 0..3 {
        write(
            &tree,
            &format!("app/file{index}.txt"),
            &format!("content {index}"),
        );
    }
    let again = session.sync(&copy, &recorder).await.unwrap();
    assert_eq!(again.files_transferred, 0, "{:?}", again.changes);
    assert!(again.changes.is_empty(), "{:?}", again.changes);
    assert_eq!(cluster.ssh_ok(host, times), "1000000000\n1000000000\n");

    write(&tree, "app/file1.txt", "changed");
    let changed = session.sync(&copy, &recorder).await.unwrap();
    assert_eq!(changed.files_transferred, 1, "{:?}", changed.changes);
    let after = cluster.ssh_ok(host, times);
    let mut lines = after.lines();
    assert_eq!(lines.next(), Some("1000000000"), "{after}");
    assert!(
        lines.next().unwrap().parse::<u64>().unwrap() > 1_000_000_000,
        "{after}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_choose_what_is_copied_and_protect_excluded_paths_from_deletion() {
    let cluster = Cluster::start(1);
    let host = &cluster.hosts()[0];
    let dir = tempfile::tempdir().unwrap();
    let tree = source_tree(&dir);
    write(&tree, "worker.json", "{}");
    write(&tree, "jobs/api/Makefile", "api");
    write(&tree, "jobs/api/data/local-only", "never shipped");
    write(&tree, "jobs/db/Makefile", "db");
    cluster.ssh_ok(
        host,
        "sudo -n mkdir -p /opt/worker/b/jobs/api/data /opt/worker/b/jobs/api/logs /opt/worker/b/jobs/db && \
         echo state | sudo -n tee /opt/worker/b/jobs/api/data/state >/dev/null && \
         echo log | sudo -n tee /opt/worker/b/jobs/api/logs/out.log >/dev/null && \
         echo old | sudo -n tee /opt/worker/b/jobs/api/stale >/dev/null && \
         echo other | sudo -n tee /opt/worker/b/jobs/db/untouched >/dev/null",
    );
    let fleet = Fleet::new(config(&cluster, &dir.path().join("known_hosts")), 4).unwrap();
    let session = fleet.session(host).await.unwrap();
    let mut only_api = transfer(&tree, "/opt/worker/b");
    only_api.delete = true;
    only_api.filters = vec![
        FilterRule::Exclude("/jobs/*/data/".into()),
        FilterRule::Exclude("/jobs/*/logs/".into()),
        FilterRule::Include("/jobs/".into()),
        FilterRule::Include("/jobs/api/".into()),
        FilterRule::Exclude("/jobs/*".into()),
    ];
    let summary = session.sync(&only_api, &Recorder::default()).await.unwrap();
    assert_eq!(summary.files_transferred, 2, "{:?}", summary.changes);
    assert_eq!(summary.deleted, 1, "{:?}", summary.changes);
    let listing = cluster.ssh_ok(host, "cd /opt/worker/b && sudo -n find . -type f | sort");
    assert_eq!(
        listing,
        "./jobs/api/Makefile\n./jobs/api/data/state\n./jobs/api/logs/out.log\n./jobs/db/untouched\n./worker.json\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_are_recorded_as_commands_with_their_changes() {
    let cluster = Cluster::start(1);
    let host = &cluster.hosts()[0];
    let dir = tempfile::tempdir().unwrap();
    let tree = source_tree(&dir);
    write(&tree, "a.txt", "a");
    let fleet = Fleet::new(config(&cluster, &dir.path().join("known_hosts")), 4).unwrap();
    let session = fleet.session(host).await.unwrap();
    let recorder = Recorder::default();
    session
        .sync(&transfer(&tree, "/var/tmp/deep/new/dir"), &recorder)
        .await
        .unwrap();
    let records = recorder.records();
    use maand::remote::RemoteRecord;
    assert!(
        matches!(&records[0], RemoteRecord::CommandStarted { command, .. }
        if command.starts_with("rsync ") && command.ends_with(&format!("{}@{host}:/var/tmp/deep/new/dir/", cluster.user())))
    );
    assert!(records.iter().any(|record| matches!(record,
        RemoteRecord::OutputLine { line, .. } if line.starts_with("<f") && line.ends_with("a.txt"))));
    assert!(matches!(
        records.last(),
        Some(RemoteRecord::CommandFinished { exit_code: 0, .. })
    ));
    assert_eq!(cluster.ssh_ok(host, "cat /var/tmp/deep/new/dir/a.txt"), "a");
}
