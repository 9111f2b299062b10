//! Warm SSH masters: a bucket's commands share one master per worker, kept open for
//! `ssh_master_idle` seconds after the last command and closed by `maand disconnect`. Real
//! workers from the testbed; key exchanges are counted in each worker's sshd log.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use support::bucket::{set_master_idle, TestBucket};
use support::cluster::Cluster;

/// Authenticated connections `host` accepted since it started.
fn logins(cluster: &Cluster, host: &str) -> usize {
    cluster.sshd_log(host).matches("Accepted publickey").count()
}

/// Running ssh masters (`ssh -M`) to any of `hosts`, from the process table.
fn masters_to(hosts: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_master = args
            .first()
            .is_some_and(|a| a == "ssh" || a.ends_with("/ssh"))
            && args.iter().any(|a| a == "-M");
        if is_master && args.iter().any(|a| hosts.contains(a)) {
            found.push(args.join(" "));
        }
    }
    found
}

/// Waits (polling) until no master to `hosts` runs; panics with the survivors after a minute.
fn wait_for_no_masters(hosts: &[String]) {
    for _ in 0..600 {
        if masters_to(hosts).is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("masters still running: {:#?}", masters_to(hosts));
}

/// A bucket on `cluster` whose masters stay open for `idle` seconds. Dropping it closes them
/// (`maand disconnect`), so a failing test leaves none behind.
struct WarmBucket {
    bucket: TestBucket,
}

impl WarmBucket {
    fn new(cluster: &Cluster, idle: u32) -> WarmBucket {
        let labels: Vec<&[&str]> = cluster.hosts().iter().map(|_| &["web"][..]).collect();
        let bucket = TestBucket::new(cluster, &labels);
        set_master_idle(bucket.path(), idle);
        bucket.maand_ok(&["build"]);
        WarmBucket { bucket }
    }

    fn control_dir(&self) -> PathBuf {
        self.bucket.path().join("data/ssh")
    }

    fn sockets(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.control_dir())
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|e| e == "s"))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for WarmBucket {
    fn drop(&mut self) {
        let _ = self.bucket.maand(&["disconnect"]);
    }
}

#[test]
fn a_second_command_within_the_idle_time_reuses_the_master_until_disconnect() {
    let cluster = Cluster::start(2);
    let hosts = cluster.hosts().to_vec();
    let warm = WarmBucket::new(&cluster, 60);
    let before: Vec<usize> = hosts.iter().map(|h| logins(&cluster, h)).collect();

    warm.bucket.maand_ok(&["run_command", "true", "-c", "2"]);
    let first: Vec<usize> = hosts.iter().map(|h| logins(&cluster, h)).collect();
    let opened: Vec<usize> = before.iter().map(|n| n + 1).collect();
    assert_eq!(first, opened);
    assert_eq!(
        masters_to(&hosts).len(),
        2,
        "one master per worker stays open"
    );
    assert_eq!(warm.sockets().len(), 2);

    warm.bucket
        .maand_ok(&["run_command", "echo again", "-c", "2"]);
    warm.bucket.maand_ok(&["worker_facts"]);
    let second: Vec<usize> = hosts.iter().map(|h| logins(&cluster, h)).collect();
    assert_eq!(second, first, "no new key exchange within the idle time");

    let out = warm.bucket.maand_ok(&["disconnect"]);
    assert_eq!(out.trim(), "closed 2 SSH connections");
    wait_for_no_masters(&hosts);
    assert!(warm.sockets().is_empty());
    assert_eq!(
        warm.bucket.maand_ok(&["disconnect"]).trim(),
        "no open SSH connections"
    );

    warm.bucket.maand_ok(&["run_command", "true", "-c", "2"]);
    let third: Vec<usize> = hosts.iter().map(|h| logins(&cluster, h)).collect();
    let reopened: Vec<usize> = before.iter().map(|n| n + 2).collect();
    assert_eq!(third, reopened, "a new master after disconnect");
}

#[test]
fn a_master_closes_itself_after_the_idle_time() {
    let cluster = Cluster::start(1);
    let hosts = cluster.hosts().to_vec();
    let warm = WarmBucket::new(&cluster, 1);
    warm.bucket.maand_ok(&["run_command", "true"]);
    wait_for_no_masters(&hosts);
    assert!(warm.sockets().is_empty(), "{:?}", warm.sockets());
}

#[test]
fn with_no_idle_time_every_master_closes_when_its_command_ends() {
    let cluster = Cluster::start(2);
    let hosts = cluster.hosts().to_vec();
    let warm = WarmBucket::new(&cluster, 0);
    warm.bucket.maand_ok(&["run_command", "true", "-c", "2"]);
    assert!(masters_to(&hosts).is_empty(), "{:#?}", masters_to(&hosts));
    assert!(!warm.control_dir().exists());
}

#[test]
fn a_worker_restarted_between_commands_is_reconnected_transparently() {
    let cluster = Cluster::start(2);
    let hosts = cluster.hosts().to_vec();
    let warm = WarmBucket::new(&cluster, 60);
    warm.bucket.maand_ok(&["run_command", "true", "-c", "2"]);
    let first = logins(&cluster, &hosts[0]);
    cluster.crash(&hosts[1]);
    cluster.heal(&hosts[1]);
    warm.bucket
        .maand_ok(&["run_command", "hostname", "-c", "2"]);
    assert_eq!(
        logins(&cluster, &hosts[0]),
        first,
        "the other master was reused"
    );
    assert_eq!(
        logins(&cluster, &hosts[1]),
        1,
        "one login since the restart"
    );
}

#[test]
fn a_changed_known_hosts_entry_closes_the_workers_master() {
    let cluster = Cluster::start(2);
    let hosts = cluster.hosts().to_vec();
    let warm = WarmBucket::new(&cluster, 60);
    warm.bucket.maand_ok(&["run_command", "true", "-c", "2"]);
    let first: Vec<usize> = hosts.iter().map(|h| logins(&cluster, h)).collect();
    let known_hosts = warm.bucket.path().join("secrets/known_hosts");
    let text = std::fs::read_to_string(&known_hosts).unwrap();
    let without_second: String = text
        .lines()
        .filter(|line| !line.starts_with(&format!("{} ", hosts[1])))
        .map(|line| format!("{line}\n"))
        .collect();
    assert_ne!(text, without_second);
    std::fs::write(&known_hosts, without_second).unwrap();

    warm.bucket.maand_ok(&["run_command", "true", "-c", "2"]);
    assert_eq!(
        logins(&cluster, &hosts[0]),
        first[0],
        "the untouched worker's master was reused"
    );
    assert_eq!(
        logins(&cluster, &hosts[1]),
        first[1] + 1,
        "the changed worker got a new master"
    );
    assert_eq!(masters_to(&hosts).len(), 2, "the old master was closed");
    let relearned = std::fs::read_to_string(&known_hosts).unwrap();
    assert!(relearned.contains(&format!("{} ssh-ed25519", hosts[1])));
}

#[test]
fn a_tampered_socket_directory_is_refused_with_a_clear_error() {
    use std::os::unix::fs::PermissionsExt;
    let cluster = Cluster::start(1);
    let warm = WarmBucket::new(&cluster, 60);
    warm.bucket.maand_ok(&["run_command", "true"]);
    let dir = warm.control_dir();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();

    let out = warm.bucket.maand(&["run_command", "true"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&dir.display().to_string()), "{stderr}");
    assert!(stderr.contains("mode 0755"), "{stderr}");
    let refused = warm.bucket.maand(&["disconnect"]);
    assert!(!refused.status.success());

    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let socket = warm.sockets().pop().expect("the master's socket");
    let out = warm.bucket.maand(&["disconnect"]);
    assert!(out.status.success());
    std::fs::write(&socket, "not a socket").unwrap();
    let out = warm.bucket.maand(&["run_command", "true"]);
    assert!(!out.status.success());
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("is not a socket"), "{said}");
    std::fs::remove_file(&socket).unwrap();
}
