//! Broken workers fail alone: crashed, refusing and black-holed workers each produce their own
//! error within the configured deadlines while the rest of the fleet completes. Also: what
//! the prerequisite probe reports for workers missing tools.

mod support;

use std::sync::Arc;
use std::time::Duration;

use maand::remote::{
    check_worker_tools, Fleet, PrerequisiteError, RemoteCommand, RemoteError, Transfer,
    WorkerProblem,
};
use support::cluster::Cluster;
use support::remote::{config, Recorder};

fn command(argv: &[&str], timeout: Duration) -> RemoteCommand {
    RemoteCommand::new(argv.iter().copied(), timeout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_workers_fail_alone_with_their_own_error() {
    let cluster = Cluster::start(4);
    let [healthy, crashed, refusing, silent] = cluster.hosts() else {
        panic!("four hosts")
    };
    cluster.crash(crashed);
    cluster.refuse(refusing);
    cluster.blackhole(silent);
    let dir = tempfile::tempdir().unwrap();
    let settings = config(&cluster, &dir.path().join("known_hosts"));
    let connect_timeout = settings.connect_timeout;
    let fleet = Fleet::new(settings, 4).unwrap();
    let recorder = Arc::new(Recorder::default());
    let results = fleet
        .run(
            cluster.hosts(),
            &command(&["hostname"], Duration::from_secs(30)),
            recorder.clone(),
        )
        .await;

    let workers: Vec<&str> = results
        .iter()
        .map(|result| result.worker.as_str())
        .collect();
    assert_eq!(workers, cluster.hosts());
    assert!(results[0].result.as_ref().unwrap().success());
    assert!(
        matches!(&results[1].result, Err(RemoteError::Refused { worker, port: 22 }) if worker == crashed),
        "{:?}",
        results[1].result
    );
    assert!(
        matches!(&results[2].result, Err(RemoteError::Refused { worker, .. }) if worker == refusing),
        "{:?}",
        results[2].result
    );
    assert!(
        matches!(&results[3].result, Err(RemoteError::ConnectTimeout { worker, after, .. })
            if worker == silent && *after == connect_timeout),
        "{:?}",
        results[3].result
    );
    // Only the healthy worker ran anything.
    assert_eq!(recorder.records_of(healthy).len(), 3);
    for broken in [crashed, refusing, silent] {
        assert!(recorder.records_of(broken).is_empty());
    }

    // A worker that failed to connect is not dialled again within the same fleet.
    let again = fleet.session(silent).await.unwrap_err();
    assert_eq!(&again, results[3].result.as_ref().unwrap_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_session_keeps_working_when_new_connections_are_refused() {
    let cluster = Cluster::start(1);
    let host = &cluster.hosts()[0];
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::new(config(&cluster, &dir.path().join("known_hosts")), 1).unwrap();
    let session = fleet.session(host).await.unwrap();
    cluster.refuse(host);
    assert!(!cluster.ssh(host, "true").status.success());

    // Commands and rsync both travel through the already open master.
    let recorder = Recorder::default();
    let limit = Duration::from_secs(30);
    assert!(session
        .run(&command(&["true"], limit), &recorder)
        .await
        .unwrap()
        .success());
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("file"), "through the master").unwrap();
    let copy = Transfer {
        source: tree,
        destination: "/var/tmp/copy".into(),
        filters: vec![],
        delete: false,
        checksum: false,
        timeout: limit,
    };
    assert_eq!(
        session
            .sync(&copy, &recorder)
            .await
            .unwrap()
            .files_transferred,
        1
    );
    let read = session
        .capture(
            &command(&["sudo", "cat", "/var/tmp/copy/file"], limit),
            &recorder,
        )
        .await
        .unwrap();
    assert_eq!(read.stdout, ["through the master"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_black_holed_mid_session_hits_our_deadline_while_others_finish() {
    let cluster = Cluster::start(2);
    let [healthy, silent] = cluster.hosts() else {
        panic!("two hosts")
    };
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::new(config(&cluster, &dir.path().join("known_hosts")), 2).unwrap();
    fleet.session(healthy).await.unwrap();
    fleet.session(silent).await.unwrap();
    cluster.blackhole(silent);

    let deadline = Duration::from_secs(2);
    let results = fleet
        .run(
            cluster.hosts(),
            &command(&["echo", "alive"], deadline),
            Arc::new(Recorder::default()),
        )
        .await;
    assert!(results[0].result.as_ref().unwrap().success());
    assert!(
        matches!(&results[1].result, Err(RemoteError::CommandTimeout { worker, after, .. })
            if worker == silent && *after == deadline),
        "{:?}",
        results[1].result
    );
    cluster.heal(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_crashes_mid_session_reports_a_connection_error() {
    let cluster = Cluster::start(1);
    let host = &cluster.hosts()[0];
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::new(config(&cluster, &dir.path().join("known_hosts")), 1).unwrap();
    let session = fleet.session(host).await.unwrap();
    cluster.crash(host);
    let error = session
        .run(
            &command(&["true"], Duration::from_secs(30)),
            &Recorder::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&error, RemoteError::ConnectionLost { worker, .. } | RemoteError::Refused { worker, .. } if worker == host),
        "{error}"
    );

    // Once the worker is back, the same session reconnects.
    cluster.heal(host);
    assert!(session
        .run(
            &command(&["true"], Duration::from_secs(30)),
            &Recorder::default()
        )
        .await
        .unwrap()
        .success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_worker_tools_are_listed_per_worker() {
    let cluster = Cluster::start(4);
    let [ready, no_make, no_sudo, down] = cluster.hosts() else {
        panic!("four hosts")
    };
    cluster.as_root(
        no_make,
        "mount --bind /dev/null /usr/bin/make && mount --bind /dev/null /usr/bin/timeout",
    );
    cluster.as_root(no_sudo, "mount --bind /dev/null /usr/bin/sudo");
    cluster.crash(down);
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::new(config(&cluster, &dir.path().join("known_hosts")), 4).unwrap();
    let error = check_worker_tools(&fleet, cluster.hosts(), Arc::new(Recorder::default()))
        .await
        .unwrap_err();
    let PrerequisiteError::WorkersNotReady { problems } = &error else {
        panic!("{error}")
    };
    assert_eq!(problems.len(), 3, "{error}");
    assert_eq!(
        problems[0],
        WorkerProblem::Missing {
            worker: no_make.clone(),
            tools: vec!["make".into(), "timeout".into()]
        }
    );
    assert_eq!(
        problems[1],
        WorkerProblem::Missing {
            worker: no_sudo.clone(),
            tools: vec!["sudo".into()]
        }
    );
    assert!(
        matches!(&problems[2], WorkerProblem::Unreachable(RemoteError::Refused { worker, .. }) if worker == down)
    );
    let message = error.to_string();
    assert!(
        message.contains(&format!("{no_make}: missing make, timeout")),
        "{message}"
    );
    assert!(!message.contains(ready.as_str()), "{message}");

    let mut without_sudo = config(&cluster, &dir.path().join("known_hosts"));
    without_sudo.use_sudo = false;
    let fleet = Fleet::new(without_sudo, 4).unwrap();
    let ready_without_sudo = [ready.clone(), no_sudo.clone()];
    check_worker_tools(&fleet, &ready_without_sudo, Arc::new(Recorder::default()))
        .await
        .unwrap();
}
