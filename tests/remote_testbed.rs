//! The test cluster itself behaves like separate hosts: each worker has its own files, hostname
//! and process table, and the fault kinds do what the tests built on them assume.

mod support;

use support::cluster::Cluster;

#[test]
fn workers_have_separate_files_hostnames_and_process_tables() {
    let cluster = Cluster::start(2);
    let [one, two] = cluster.hosts() else {
        panic!("two hosts")
    };
    cluster.ssh_ok(one, "echo one > /tmp/marker && sudo -n mkdir -p /opt/x");
    cluster.ssh_ok(two, "echo two > /tmp/marker");
    assert_eq!(cluster.ssh_ok(one, "cat /tmp/marker"), "one\n");
    assert_eq!(cluster.ssh_ok(two, "cat /tmp/marker"), "two\n");
    assert_eq!(
        cluster.ssh_ok(two, "test -e /opt/x && echo yes || echo no"),
        "no\n"
    );
    assert_eq!(cluster.ssh_ok(one, "hostname"), "worker1\n");
    assert_eq!(cluster.ssh_ok(two, "hostname"), "worker2\n");
    assert_eq!(cluster.ssh_ok(one, "sudo -n id -u"), "0\n");
    let processes = cluster.ssh_ok(one, "ps -e -o comm=");
    assert!(
        processes.lines().filter(|line| *line == "sshd").count() <= 3,
        "worker 1 sees only its own sshd processes:\n{processes}"
    );
}

#[test]
fn crash_refuses_at_once_and_heal_brings_the_files_back() {
    let cluster = Cluster::start(1);
    let host = &cluster.hosts()[0];
    cluster.ssh_ok(host, "echo kept > /var/tmp/state");
    cluster.crash(host);
    let refused = cluster.ssh(host, "true");
    assert_eq!(refused.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("Connection refused"));
    cluster.heal(host);
    assert_eq!(cluster.ssh_ok(host, "cat /var/tmp/state"), "kept\n");
}

#[test]
fn refuse_rejects_new_connections_until_healed() {
    let cluster = Cluster::start(1);
    let host = &cluster.hosts()[0];
    cluster.refuse(host);
    let refused = cluster.ssh(host, "true");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("Connection refused"));
    cluster.heal(host);
    cluster.ssh_ok(host, "true");
}

#[test]
fn rekey_changes_the_host_key_and_updates_the_cluster_known_hosts() {
    let cluster = Cluster::start(1);
    let host = &cluster.hosts()[0];
    let before = std::fs::read_to_string(cluster.known_hosts_path()).unwrap();
    cluster.rekey(host);
    let after = std::fs::read_to_string(cluster.known_hosts_path()).unwrap();
    assert_ne!(before, after);
    cluster.ssh_ok(host, "true");
}

#[test]
fn clusters_started_together_get_distinct_blocks() {
    let first = Cluster::start(1);
    let second = Cluster::start(1);
    assert_ne!(first.block(), second.block());
    assert_ne!(first.hosts(), second.hosts());
}
