//! A team shares one bucket: two bucket directories play two operators on one shared journal
//! kept by a real, throwaway PostgreSQL cluster (tests/support/postgres.rs). Each test starts
//! its own cluster on a free loopback port. The deploy tests add a real sshd worker
//! (tests/cluster); the library-level tests (lost race, another history, the interleaving
//! property) drive `SharedJournal` directly on caches in temporary directories.

mod support;

use maand::catalog;
use maand::shared_journal::{Holder, JournalUrl, SharedJournal, SharedJournalError};
use rusqlite::Connection;
use std::path::Path;
use std::process::Output;
use support::bucket::{run_maand, run_maand_ok};
use support::postgres::Postgres;

fn write(root: &Path, path: &str, text: &str) {
    let path = root.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The workspace of a small bucket: `workers` (hosts on 127.9.0.x, never contacted by build)
/// all carrying the label `web`, and the job `web`.
fn write_workspace(root: &Path, workers: &[&str]) {
    let list: Vec<String> = workers
        .iter()
        .map(|host| format!(r#"{{"host": "{host}", "labels": ["web"]}}"#))
        .collect();
    write(
        root,
        "workspace/workers.json",
        &format!("[{}]", list.join(",")),
    );
    write(
        root,
        "workspace/jobs/web/manifest.json",
        r#"{"version": "1.0.0", "selectors": ["web"], "resources": {"ports": {"web_port": {}}}}"#,
    );
    write(
        root,
        "workspace/jobs/web/Makefile",
        "start:\n\t@echo start\n",
    );
}

/// Copies what operators share out of band: the secrets directory.
fn share_secrets(from: &Path, to: &Path) {
    for name in ["kv.key", "ca.crt", "ca.key"] {
        let target = to.join("secrets").join(name);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(from.join("secrets").join(name), &target).unwrap();
    }
}

fn bucket_id(bucket: &Path) -> String {
    let info: serde_json::Value =
        serde_json::from_str(&run_maand_ok(bucket, &["info", "--json"])).unwrap();
    info["bucket_id"].as_str().unwrap().to_string()
}

fn cache(bucket: &Path) -> Connection {
    Connection::open(bucket.join("data/maand.db")).unwrap()
}

fn journal_rows(bucket: &Path) -> Vec<journal::StoredEvent> {
    let conn = cache(bucket);
    journal::events_from(&conn, 0)
        .collect::<Result<_, _>>()
        .unwrap()
}

fn journal_head(bucket: &Path) -> u64 {
    journal::head(&cache(bucket)).unwrap()
}

fn projections(bucket: &Path) -> Vec<String> {
    catalog::projection_dump(&cache(bucket)).unwrap()
}

/// Operator A creates a shared bucket in `a`; operator B joins it in `b` (with A's secrets).
fn two_operators(pg: &Postgres) -> (tempfile::TempDir, tempfile::TempDir, String) {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    run_maand_ok(a.path(), &["init", "--journal", &pg.url()]);
    let id = bucket_id(a.path());
    share_secrets(a.path(), b.path());
    let joined = run_maand_ok(b.path(), &["init", "--join", &pg.url(), &id]);
    assert!(joined.contains(&format!("joined bucket {id}")), "{joined}");
    (a, b, id)
}

#[test]
fn what_one_operator_builds_the_other_sees_and_interleaved_builds_converge() {
    let pg = Postgres::start();
    let (a, b, _) = two_operators(&pg);
    write_workspace(a.path(), &["127.9.0.1"]);
    run_maand_ok(a.path(), &["build"]);

    let workers = run_maand_ok(b.path(), &["cat", "workers"]);
    assert!(workers.contains("127.9.0.1"), "{workers}");

    write_workspace(b.path(), &["127.9.0.1", "127.9.0.2"]);
    run_maand_ok(b.path(), &["build"]);
    run_maand_ok(a.path(), &["build"]);
    run_maand_ok(b.path(), &["build"]);
    // A's workspace has one worker again: its build removes B's second one.
    run_maand_ok(a.path(), &["build"]);
    let workers = run_maand_ok(b.path(), &["cat", "workers"]);
    assert!(!workers.contains("127.9.0.2"), "{workers}");

    for operator in [a.path(), b.path()] {
        let verify = run_maand_ok(operator, &["journal", "verify"]);
        assert!(
            verify.contains("projections equal a replay from event 1"),
            "{verify}"
        );
    }
    assert_eq!(journal_rows(a.path()), journal_rows(b.path()));
    assert_eq!(projections(a.path()), projections(b.path()));
}

#[test]
fn a_joined_bucket_without_the_team_s_ca_says_to_copy_it_rather_than_make_one() {
    let pg = Postgres::start();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    run_maand_ok(a.path(), &["init", "--journal", &pg.url()]);
    let id = bucket_id(a.path());
    run_maand_ok(b.path(), &["init", "--join", &pg.url(), &id]);
    write_workspace(b.path(), &["127.9.0.1"]);
    let build = run_maand(b.path(), &["build"]);
    assert!(!build.status.success());
    assert!(
        stderr(&build).contains("copy secrets/ca.crt and secrets/ca.key from another operator"),
        "{}",
        stderr(&build)
    );
    assert!(!b.path().join("secrets/ca.key").exists());
}

#[test]
fn a_command_of_a_second_operator_is_refused_naming_the_holder_of_the_lock() {
    let pg = Postgres::start();
    let (_a, b, id) = two_operators(&pg);
    let url = JournalUrl::parse(&pg.url()).unwrap();
    let holder = SharedJournal::connect(&url, &id).unwrap();
    holder
        .lock(&Holder {
            host: "host-a".into(),
            user: "alice".into(),
            pid: 4242,
            command: "maand deploy".into(),
            started: "2026-01-01T00:00:00.000Z".into(),
        })
        .unwrap();
    let head = journal_head(b.path());
    write_workspace(b.path(), &["127.9.0.1"]);
    let out = run_maand(b.path(), &["build"]);
    assert!(!out.status.success());
    let text = stderr(&out);
    assert!(
        text.contains("maand deploy")
            && text.contains("alice")
            && text.contains("host-a")
            && text.contains("pid 4242"),
        "{text}"
    );
    assert_eq!(
        journal_head(b.path()),
        head,
        "a refused command records nothing"
    );
    drop(holder);
    run_maand_ok(b.path(), &["build"]);
}

#[test]
fn killing_the_holder_with_sigkill_releases_the_lock_and_its_run_is_closed_as_abandoned() {
    use std::os::unix::process::CommandExt;
    let pg = Postgres::start();
    let (a, b, _) = two_operators(&pg);
    write_workspace(a.path(), &["127.9.0.1"]);
    let started = a.path().join("hook-started");
    write(
        a.path(),
        "workspace/jobs/web/manifest.json",
        r#"{"version": "1.0.0", "selectors": ["web"], "commands": {"command_wait": {"executed_on": ["post_build"]}}}"#,
    );
    write(
        a.path(),
        "workspace/jobs/web/_modules/command_wait.py",
        &format!(
            "import time\nopen({:?}, 'w').close()\ntime.sleep(120)\n",
            started.display().to_string()
        ),
    );
    let mut holder = std::process::Command::new(support::bucket::maand_binary())
        .arg("build")
        .current_dir(a.path())
        .env_remove("MAAND_BUCKET")
        .process_group(0)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !started.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the post_build hook never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    write_workspace(b.path(), &["127.9.0.1"]);
    let refused = run_maand(b.path(), &["build"]);
    assert!(!refused.status.success());
    let text = stderr(&refused);
    assert!(
        text.contains("maand build") && text.contains(&format!("pid {}", holder.id())),
        "{text}"
    );

    // SAFETY: kill(2) on the process group this test spawned.
    unsafe { libc::kill(-(holder.id() as i32), libc::SIGKILL) };
    holder.wait().unwrap();
    run_maand_ok(b.path(), &["build"]);
    let outcomes = run_maand_ok(
        b.path(),
        &[
            "logs",
            "show",
            "--event",
            "run_abandoned",
            "--format",
            "json",
        ],
    );
    assert!(outcomes.contains("run_abandoned"), "{outcomes}");
    // A catches up with B's work when it comes back.
    run_maand_ok(a.path(), &["info"]);
    assert_eq!(journal_rows(a.path()), journal_rows(b.path()));
}

#[test]
fn with_postgresql_down_changes_fail_before_anything_and_reads_answer_from_the_cache() {
    let pg = Postgres::start();
    let (a, b, _) = two_operators(&pg);
    write_workspace(a.path(), &["127.9.0.1"]);
    run_maand_ok(a.path(), &["build"]);
    run_maand_ok(b.path(), &["cat", "workers"]);
    pg.stop_immediately();

    let head = journal_head(b.path());
    write_workspace(b.path(), &["127.9.0.1", "127.9.0.2"]);
    let out = run_maand(b.path(), &["build"]);
    assert!(!out.status.success());
    let text = stderr(&out);
    assert!(
        text.contains("cannot reach the shared journal") && text.contains(&pg.url()),
        "{text}"
    );
    assert_eq!(journal_head(b.path()), head, "nothing was recorded");

    let read = run_maand(b.path(), &["cat", "workers"]);
    assert!(read.status.success(), "{}", stderr(&read));
    assert!(String::from_utf8_lossy(&read.stdout).contains("127.9.0.1"));
    let warning = stderr(&read);
    assert!(
        warning.contains("answering from the local cache") && warning.contains("last caught up"),
        "{warning}"
    );

    pg.restart();
    run_maand_ok(b.path(), &["build"]);
    run_maand_ok(a.path(), &["info"]);
    assert_eq!(projections(a.path()), projections(b.path()));
}

#[test]
fn a_local_bucket_pushed_to_postgresql_can_be_joined_and_keeps_its_history() {
    let pg = Postgres::start();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    run_maand_ok(a.path(), &["init"]);
    write_workspace(a.path(), &["127.9.0.1"]);
    run_maand_ok(a.path(), &["build"]);
    let before = journal_rows(a.path());
    let id = bucket_id(a.path());

    let pushed = run_maand_ok(a.path(), &["journal", "push", &pg.url()]);
    assert!(
        pushed.contains(&format!("init --join {} {id}", pg.url())),
        "{pushed}"
    );
    let conf = std::fs::read_to_string(a.path().join("maand.conf")).unwrap();
    assert!(conf.contains("journal_url") && conf.contains(&id), "{conf}");
    let again = run_maand(a.path(), &["journal", "push", &pg.url()]);
    assert!(
        stderr(&again).contains("already names a shared journal"),
        "{}",
        stderr(&again)
    );

    share_secrets(a.path(), b.path());
    run_maand_ok(b.path(), &["init", "--join", &pg.url(), &id]);
    let after = journal_rows(b.path());
    assert_eq!(
        after[..before.len()],
        before[..],
        "history is kept row for row"
    );
    assert_eq!(projections(a.path()), projections(b.path()));
    assert!(run_maand_ok(b.path(), &["journal", "verify"]).contains("projections equal"));
}

#[test]
fn joining_an_unknown_bucket_or_passing_a_password_in_the_url_is_refused_clearly() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let out = run_maand(dir.path(), &["init", "--join", &pg.url(), "no-such-bucket"]);
    assert!(
        stderr(&out).contains("holds no bucket no-such-bucket"),
        "{}",
        stderr(&out)
    );
    let with_password = pg.url().replace("maand@", "maand:hunter2@");
    let out = run_maand(dir.path(), &["init", "--journal", &with_password]);
    let text = stderr(&out);
    assert!(
        !out.status.success() && text.contains("PGPASSWORD"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!dir.path().join("data/maand.db").exists());
}

/// A migrated, empty catalog database standing for one operator's cache.
fn library_cache(dir: &Path) -> (maand::bucket::Bucket, Connection) {
    let bucket = maand::bucket::Bucket::at(dir);
    std::fs::create_dir_all(bucket.data_dir()).unwrap();
    let mut conn = maand::bucket::open(&bucket.db_path()).unwrap();
    maand::bucket::migrate(&mut conn, &bucket.db_path()).unwrap();
    (bucket, conn)
}

fn kv_event(key: &str, value: &str) -> maand::events::Event {
    use maand::events::{Event, KvChange, KvChanged, KvValue};
    Event::KvChanged(KvChanged {
        namespace: "vars/bucket".into(),
        changes: vec![KvChange::Put {
            key: key.into(),
            value: KvValue::Plain(value.into()),
        }],
    })
}

#[test]
fn an_append_decided_on_a_stale_cache_is_refused_as_a_lost_race_and_stores_nothing() {
    let pg = Postgres::start();
    let url = JournalUrl::parse(&pg.url()).unwrap();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ((bucket_a, mut cache_a), (bucket_b, mut cache_b)) =
        (library_cache(dir_a.path()), library_cache(dir_b.path()));
    // Two sessions without the bucket lock: only the head check stands between them.
    SharedJournal::connect(&url, "race")
        .unwrap()
        .install()
        .unwrap();
    let (a, b) = (
        SharedJournal::connect(&url, "race").unwrap(),
        SharedJournal::connect(&url, "race").unwrap(),
    );
    a.record(
        &mut cache_a,
        &bucket_a,
        "run-a",
        1,
        &[kv_event("k", "a")],
        &[],
    )
    .unwrap();
    let lost = b
        .record(
            &mut cache_b,
            &bucket_b,
            "run-b",
            2,
            &[kv_event("k", "b")],
            &[],
        )
        .unwrap_err();
    assert!(
        matches!(lost, SharedJournalError::LostRace { seq: 1, .. }),
        "{lost}"
    );
    assert!(lost.to_string().contains("decides anew"), "{lost}");
    assert_eq!(
        journal::head(&cache_b).unwrap(),
        0,
        "the loser's cache is untouched"
    );
    // Re-read, re-decide: after pulling A's event, B's append lands after it.
    b.pull(&mut cache_b, &bucket_b).unwrap();
    b.record(
        &mut cache_b,
        &bucket_b,
        "run-b",
        2,
        &[kv_event("k", "b")],
        &[],
    )
    .unwrap();
    a.pull(&mut cache_a, &bucket_a).unwrap();
    assert_eq!(
        catalog::projection_dump(&cache_a).unwrap(),
        catalog::projection_dump(&cache_b).unwrap()
    );
    assert_eq!(journal::head(&cache_a).unwrap(), 2);
}

#[test]
fn a_cache_of_another_history_is_refused_instead_of_merged() {
    let pg = Postgres::start();
    let url = JournalUrl::parse(&pg.url()).unwrap();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ((bucket_a, mut cache_a), (bucket_b, mut cache_b)) =
        (library_cache(dir_a.path()), library_cache(dir_b.path()));
    let shared = SharedJournal::connect(&url, "history").unwrap();
    shared.install().unwrap();
    shared
        .record(
            &mut cache_a,
            &bucket_a,
            "run-a",
            1,
            &[kv_event("k", "a")],
            &[],
        )
        .unwrap();
    // B's cache holds a different first event, written without the shared journal.
    catalog::commit(&mut cache_b, "run-b", 1, &[kv_event("k", "b")], &[]).unwrap();
    let refused = shared.pull(&mut cache_b, &bucket_b).unwrap_err();
    assert!(
        matches!(refused, SharedJournalError::NotThisHistory { seq: 1, .. }),
        "{refused}"
    );
    let refused = shared
        .record(
            &mut cache_b,
            &bucket_b,
            "run-b",
            2,
            &[kv_event("k", "c")],
            &[],
        )
        .unwrap_err();
    assert!(
        matches!(refused, SharedJournalError::NotThisHistory { .. }),
        "{refused}"
    );
}

#[test]
fn the_shared_journal_refuses_updates_and_deletes_of_events() {
    let pg = Postgres::start();
    let (a, _b, id) = two_operators(&pg);
    drop(a);
    let mut client = pg.client();
    for statement in [
        "UPDATE maand_journal SET kind = 'x' WHERE bucket = $1",
        "DELETE FROM maand_journal WHERE bucket = $1",
    ] {
        let err = client.execute(statement, &[&id]).unwrap_err();
        assert!(
            err.to_string().contains("append-only") || format!("{err:?}").contains("append-only"),
            "{err:?}"
        );
    }
}

/// Appends `<target> <CURRENT_VERSION>-><NEW_VERSION>` to data/events on the worker for every
/// lifecycle target; `restart` sleeps 3 s in the middle, long enough to kill something.
const COUNTING_MAKEFILE: &str = "\
.PHONY: start stop restart reload
start:
\t@mkdir -p data && echo \"start $(CURRENT_VERSION)->$(NEW_VERSION)\" >> data/events
stop:
\t@mkdir -p data && echo stop >> data/events
restart:
\t@mkdir -p data && echo \"restart-begin $(CURRENT_VERSION)->$(NEW_VERSION)\" >> data/events
\t@sleep 3
\t@echo restart-end >> data/events
reload:
\t@mkdir -p data && echo reload >> data/events
";

/// Operator A's bucket on one testbed worker, built with the job `app` at version 1.0.0 and
/// pushed to the shared journal; operator B joined with A's secrets (worker key and host keys
/// included).
fn team_on_a_worker(
    cluster: &support::cluster::Cluster,
    pg: &Postgres,
) -> (support::bucket::TestBucket, tempfile::TempDir) {
    let a = support::bucket::TestBucket::new(cluster, &[&["w"]]);
    a.write(
        "workspace/jobs/app/manifest.json",
        r#"{"version": "1.0.0", "selectors": ["w"]}"#,
    );
    a.write("workspace/jobs/app/Makefile", COUNTING_MAKEFILE);
    a.maand_ok(&["build"]);
    a.maand_ok(&["journal", "push", &pg.url()]);
    let b = tempfile::tempdir().unwrap();
    share_secrets(a.path(), b.path());
    for file in ["worker.key", "known_hosts"] {
        let target = b.path().join("secrets").join(file);
        std::fs::copy(a.path().join("secrets").join(file), &target).unwrap();
    }
    run_maand_ok(b.path(), &["init", "--join", &pg.url(), &a.bucket_id]);
    support::bucket::close_masters_at_exit(b.path());
    (a, b)
}

fn worker_events(
    cluster: &support::cluster::Cluster,
    a: &support::bucket::TestBucket,
    host: &str,
) -> Vec<String> {
    let out = cluster.ssh(
        host,
        &format!("cat {}/jobs/app/data/events 2>/dev/null", a.remote_dir()),
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Waits for the resumed restart to end on `host`, then checks the job started once and
/// restarted once there: the resume repeated nothing.
fn assert_started_once_then_restarted_once(
    cluster: &support::cluster::Cluster,
    a: &support::bucket::TestBucket,
    host: &str,
) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !worker_events(cluster, a, host).contains(&"restart-end".to_string()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the restart never ended"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        worker_events(cluster, a, host),
        [
            "start 0.0.0->1.0.0",
            "restart-begin 1.0.0->1.1.0",
            "restart-end"
        ]
    );
}

fn spawn_deploy(bucket: &Path) -> std::process::Child {
    std::process::Command::new(support::bucket::maand_binary())
        .arg("deploy")
        .current_dir(bucket)
        .env_remove("MAAND_BUCKET")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_for_restart_begin(
    cluster: &support::cluster::Cluster,
    a: &support::bucket::TestBucket,
    host: &str,
) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !worker_events(cluster, a, host)
        .iter()
        .any(|line| line.starts_with("restart-begin"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the restart never began"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn b_deploys_what_a_built_and_a_resumes_b_s_killed_deploy_without_repeating_a_step() {
    let cluster = support::cluster::Cluster::start(1);
    let host = cluster.hosts()[0].clone();
    let pg = Postgres::start();
    let (a, b) = team_on_a_worker(&cluster, &pg);
    run_maand_ok(b.path(), &["deploy"]);
    assert_eq!(worker_events(&cluster, &a, &host), ["start 0.0.0->1.0.0"]);

    a.write(
        "workspace/jobs/app/manifest.json",
        r#"{"version": "1.1.0", "selectors": ["w"]}"#,
    );
    a.maand_ok(&["build"]);
    let mut deploy = spawn_deploy(b.path());
    wait_for_restart_begin(&cluster, &a, &host);
    // While B deploys, A's deploy is refused and told who holds the bucket.
    let refused = a.maand(&["deploy"]);
    assert!(
        stderr(&refused).contains("maand deploy") && stderr(&refused).contains("locked"),
        "{}",
        stderr(&refused)
    );
    deploy.kill().unwrap();
    deploy.wait().unwrap();

    let resumed = a.maand_ok(&["deploy", "--resume"]);
    assert!(!resumed.is_empty());
    assert_started_once_then_restarted_once(&cluster, &a, &host);
    assert_eq!(
        a.sql("SELECT status FROM deploy_steps WHERE kind LIKE '%restart%'"),
        "succeeded"
    );
    run_maand_ok(b.path(), &["info"]);
    assert_eq!(journal_rows(a.path()), journal_rows(b.path()));
    for operator in [a.path(), b.path()] {
        assert!(run_maand_ok(operator, &["journal", "verify"]).contains("projections equal"));
    }
}

#[test]
fn postgresql_lost_mid_deploy_stops_the_deploy_and_resume_finishes_it_once() {
    let cluster = support::cluster::Cluster::start(1);
    let host = cluster.hosts()[0].clone();
    let pg = Postgres::start();
    let (a, b) = team_on_a_worker(&cluster, &pg);
    run_maand_ok(b.path(), &["deploy"]);
    a.write(
        "workspace/jobs/app/manifest.json",
        r#"{"version": "1.1.0", "selectors": ["w"]}"#,
    );
    a.maand_ok(&["build"]);

    let deploy = spawn_deploy(b.path());
    wait_for_restart_begin(&cluster, &a, &host);
    pg.stop_immediately();
    let out = deploy.wait_with_output().unwrap();
    assert!(
        !out.status.success(),
        "the deploy cannot finish without its journal"
    );
    let text = stderr(&out);
    assert!(
        text.contains("connection to the shared journal") && text.contains("--resume"),
        "{text}"
    );

    pg.restart();
    run_maand_ok(b.path(), &["deploy", "--resume"]);
    assert_started_once_then_restarted_once(&cluster, &a, &host);
    run_maand_ok(a.path(), &["info"]);
    assert_eq!(journal_rows(a.path()), journal_rows(b.path()));
    assert!(run_maand_ok(a.path(), &["journal", "verify"]).contains("projections equal"));
}

/// One step of an operator in the interleaving property test.
#[derive(Debug, Clone)]
enum Step {
    /// Catch up with the shared journal.
    Pull,
    /// Decide and record a batch of events (on a lost race: pull, decide again, record).
    Record(Vec<maand::events::Event>),
}

fn arbitrary_event() -> impl proptest::strategy::Strategy<Value = maand::events::Event> {
    use maand::events::{Event, KvChange, KvChanged, KvValue, WorkerRecord, WorkerRemoved};
    use proptest::prelude::*;
    let key = prop::sample::select(vec!["a", "b", "c"]);
    let host = prop::sample::select(vec!["127.9.0.1", "127.9.0.2"]);
    prop_oneof![
        (key.clone(), "[a-z]{1,4}").prop_map(|(key, value)| kv_event(key, &value)),
        key.prop_map(|key| Event::KvChanged(KvChanged {
            namespace: "vars/bucket".into(),
            changes: vec![KvChange::Delete { key: key.into() }],
        })),
        (host.clone(), 0u32..3).prop_map(|(host, position)| Event::WorkerUpserted(WorkerRecord {
            host: host.into(),
            worker_id: format!("id-{host}"),
            hostname: None,
            labels: vec!["web".into()],
            memory_mb: None,
            cpu_mhz: None,
            tags: vec![],
            position,
        })),
        host.prop_map(|host| Event::WorkerRemoved(WorkerRemoved { host: host.into() })),
        Just(Event::KvChanged(KvChanged {
            namespace: "vars/job/web".into(),
            changes: vec![KvChange::Put {
                key: "sealed".into(),
                value: KvValue::Sealed("c2VhbGVk".into()),
            }],
        })),
    ]
}

#[test]
fn random_interleavings_of_two_operators_leave_both_caches_equal_to_a_replay_of_the_shared_journal()
{
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let pg = Postgres::start();
    let url = JournalUrl::parse(&pg.url()).unwrap();
    let step = prop_oneof![
        Just(Step::Pull),
        prop::collection::vec(arbitrary_event(), 1..4).prop_map(Step::Record),
    ];
    let schedule = prop::collection::vec((any::<bool>(), step), 1..24);
    SharedJournal::connect(&url, "install")
        .unwrap()
        .install()
        .unwrap();
    let mut runner = TestRunner::new(Config {
        cases: 24,
        ..Config::default()
    });
    runner
        .run(&schedule, |schedule| {
            let bucket_id = uuid::Uuid::new_v4().to_string();
            let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
            let mut operators: Vec<_> = dirs
                .iter()
                .map(|dir| {
                    let (bucket, conn) = library_cache(dir.path());
                    (
                        bucket,
                        conn,
                        SharedJournal::connect(&url, &bucket_id).unwrap(),
                    )
                })
                .collect();
            for (turn, (second, step)) in schedule.iter().enumerate() {
                let (bucket, conn, shared) = &mut operators[usize::from(*second)];
                match step {
                    Step::Pull => {
                        shared.pull(conn, bucket).unwrap();
                    }
                    Step::Record(events) => {
                        let run = format!("run-{turn}");
                        match shared.record(conn, bucket, &run, turn as i64, events, &[]) {
                            Ok(_) => {}
                            Err(SharedJournalError::LostRace { .. }) => {
                                shared.pull(conn, bucket).unwrap();
                                shared
                                    .record(conn, bucket, &run, turn as i64, events, &[])
                                    .unwrap();
                            }
                            Err(other) => panic!("{other}"),
                        }
                    }
                }
            }
            for (bucket, conn, shared) in &mut operators {
                shared.pull(conn, bucket).unwrap();
            }
            // A third cache pulls the shared journal from scratch and replays it from event 1.
            let replay_dir = tempfile::tempdir().unwrap();
            let (replay_bucket, mut replayed) = library_cache(replay_dir.path());
            SharedJournal::connect(&url, &bucket_id)
                .unwrap()
                .pull(&mut replayed, &replay_bucket)
                .unwrap();
            catalog::rebuild(&mut replayed).unwrap();
            let truth = catalog::projection_dump(&replayed).unwrap();
            let rows = |conn: &Connection| -> Vec<journal::StoredEvent> {
                journal::events_from(conn, 0)
                    .collect::<Result<_, _>>()
                    .unwrap()
            };
            for (_, conn, _) in &operators {
                prop_assert_eq!(&catalog::projection_dump(conn).unwrap(), &truth);
                prop_assert_eq!(rows(conn), rows(&replayed));
                prop_assert!(journal::verify(conn).unwrap().is_intact());
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn init_on_a_joined_host_without_the_team_s_keys_refuses_to_make_new_ones() {
    let pg = Postgres::start();
    let a = tempfile::tempdir().unwrap();
    run_maand_ok(a.path(), &["init", "--journal", &pg.url()]);
    let id = bucket_id(a.path());
    let b = tempfile::tempdir().unwrap();
    let joined = run_maand_ok(b.path(), &["init", "--join", &pg.url(), &id]);
    assert!(
        joined.contains("kv.key") && joined.contains("ca.key"),
        "{joined}"
    );
    let head = journal_head(b.path());
    let out = run_maand(b.path(), &["init"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("come from another operator"),
        "{}",
        stderr(&out)
    );
    assert!(!b.path().join("secrets/ca.key").exists());
    assert_eq!(journal_head(b.path()), head);
    share_secrets(a.path(), b.path());
    let out = run_maand_ok(b.path(), &["init"]);
    assert!(out.contains("up to date"), "{out}");
    let info = run_maand_ok(b.path(), &["info"]);
    assert!(
        info.contains("Shared Journal") && info.contains(&pg.url()),
        "{info}"
    );
}

#[test]
fn a_go_bucket_is_imported_locally_before_it_is_shared_never_straight_into_a_shared_one() {
    use support::go_bucket::{write_go_db, GoBucketSpec};
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    write_go_db(
        &dir.path().join("data/maand.db"),
        &GoBucketSpec {
            bucket_id: "go-bucket".into(),
            update_seq: 1,
            schema_version: 1,
            workers: vec![],
            jobs: vec![],
            deployed: vec![],
            kv: vec![],
        },
    );
    let url = "postgres://maand@127.0.0.1:9/postgres";
    let out = run_maand(dir.path(), &["init", "--journal", url]);
    assert!(
        stderr(&out).contains("import it with `maand init` first"),
        "{}",
        stderr(&out)
    );
    write(
        dir.path(),
        "maand.conf",
        &format!("journal_url = {url:?}\njournal_bucket = \"go-bucket\"\n"),
    );
    let out = run_maand(dir.path(), &["init", "--yes"]);
    assert!(
        stderr(&out).contains("names a shared journal"),
        "{}",
        stderr(&out)
    );
    assert!(
        !dir.path().join("data/go-maand.db").exists(),
        "nothing was imported"
    );
}

#[test]
fn init_with_a_maand_conf_that_names_a_shared_journal_creates_the_bucket_there_once() {
    let pg = Postgres::start();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let conf = format!(
        "journal_url = {:?}\njournal_bucket = \"team-bucket\"\n",
        pg.url()
    );
    write(a.path(), "maand.conf", &conf);
    run_maand_ok(a.path(), &["init"]);
    assert_eq!(bucket_id(a.path()), "team-bucket");
    // A second directory with the same maand.conf must join, not create the bucket again.
    write(b.path(), "maand.conf", &conf);
    let out = run_maand(b.path(), &["init"]);
    assert!(
        stderr(&out).contains("already holds bucket team-bucket")
            && stderr(&out).contains("init --join"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn with_sslmode_require_maand_speaks_tls_and_trusts_only_the_ca_it_is_given() {
    let certs = support::postgres::TestCertificates::generate();
    let pg = Postgres::start_with_tls(&certs);
    let url = format!("{}?sslmode=require", pg.url());
    let dir = tempfile::tempdir().unwrap();
    let (right_ca, wrong_ca) = (dir.path().join("ca.pem"), dir.path().join("other-ca.pem"));
    std::fs::write(&right_ca, &certs.ca_pem).unwrap();
    std::fs::write(
        &wrong_ca,
        support::postgres::TestCertificates::generate().ca_pem,
    )
    .unwrap();
    let maand = |bucket: &Path, ca: &Path, args: &[&str]| {
        std::process::Command::new(support::bucket::maand_binary())
            .args(args)
            .current_dir(bucket)
            .env_remove("MAAND_BUCKET")
            .env("PGSSLROOTCERT", ca)
            .output()
            .unwrap()
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // A plain connection would not care which CA the client trusts: TLS is verified.
    let refused = maand(a.path(), &wrong_ca, &["init", "--journal", &url]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("cannot reach the shared journal"),
        "{}",
        stderr(&refused)
    );
    assert!(!a.path().join("data/maand.db").exists());

    let created = maand(a.path(), &right_ca, &["init", "--journal", &url]);
    assert!(created.status.success(), "{}", stderr(&created));
    let id = bucket_id(a.path());
    let joined = maand(b.path(), &right_ca, &["init", "--join", &url, &id]);
    assert!(joined.status.success(), "{}", stderr(&joined));
    assert_eq!(journal_rows(a.path()), journal_rows(b.path()));
}
