//! A cluster of real sshd workers for one test, started through `tests/cluster/up` and torn
//! down through `tests/cluster/down` when the [`Cluster`] is dropped (also while a test panics).
//!
//! Every `Cluster` leases its own address block (127.B.0.i, B in 20..=254) and state directory,
//! so tests running at the same time - in one binary or in several - never share a worker. The
//! lease is a `flock` on `/run/maand-testbed/block-B.lock`, which the kernel releases when the
//! process dies, however it dies. Leasing also enforces a machine-wide budget of workers
//! (`MAAND_TESTBED_MAX_WORKERS`, default 32): a test that would exceed it waits for others to
//! finish. This module never decides anything about maand; it only provides hosts.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread;
use std::time::Duration;

const SCRIPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cluster");
const LEASE_DIR: &str = "/run/maand-testbed";
const FIRST_BLOCK: u8 = 20;
const LAST_BLOCK: u8 = 254;
const DEFAULT_MAX_WORKERS: usize = 32;

/// Running workers of one leased block.
pub struct Cluster {
    lease: BlockLease,
    hosts: Vec<String>,
    user: String,
    port: u16,
    key_path: PathBuf,
    known_hosts_path: PathBuf,
}

impl Cluster {
    /// Starts `n` fresh workers (anything left in the leased block by a killed test run is
    /// removed first). Panics with the script's output when the workers cannot be started.
    pub fn start(n: usize) -> Cluster {
        assert!(n >= 1, "a cluster needs at least one worker");
        let lease = BlockLease::acquire(n);
        run_script("down", &["--block", &lease.block.to_string()]);
        let output = run_script("up", &[&n.to_string(), "--block", &lease.block.to_string()]);
        let env = String::from_utf8_lossy(&output.stdout).into_owned();
        let field = |name: &str| -> String {
            env.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
                .unwrap_or_else(|| panic!("tests/cluster/up printed no {name}:\n{env}"))
                .to_string()
        };
        let hosts = field("MAAND_TESTBED_HOSTS")
            .split(',')
            .map(str::to_string)
            .collect();
        Cluster {
            hosts,
            user: field("MAAND_TESTBED_USER"),
            port: field("MAAND_TESTBED_PORT")
                .parse()
                .expect("MAAND_TESTBED_PORT is a port number"),
            key_path: field("MAAND_TESTBED_KEY").into(),
            known_hosts_path: field("MAAND_TESTBED_KNOWN_HOSTS").into(),
            lease,
        }
    }

    /// Worker addresses, worker 1 first.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    /// The login user on every worker (it has passwordless sudo).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The SSH port of every worker.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Private key authorized for [`Cluster::user`] on every worker.
    pub fn key_path(&self) -> &Path {
        &self.key_path
    }

    /// A known_hosts file with the current host key of every worker.
    pub fn known_hosts_path(&self) -> &Path {
        &self.known_hosts_path
    }

    /// The leased address block B (workers are 127.B.0.i).
    pub fn block(&self) -> u8 {
        self.lease.block
    }

    /// What `host`'s sshd logged since the worker last started (one `Accepted publickey`
    /// line per authenticated connection).
    pub fn sshd_log(&self, host: &str) -> String {
        let index = host.rsplit('.').next().expect("a 127.B.0.i address");
        let state = self
            .known_hosts_path
            .parent()
            .expect("known_hosts lives in the block's state directory");
        fs::read_to_string(state.join(format!("w{index}/sshd.log"))).unwrap_or_default()
    }

    /// Runs `script` as the cluster user on `host` over a fresh, strictly checked connection
    /// that shares nothing with maand's own sessions: the independent witness tests use to
    /// look at a worker.
    pub fn ssh(&self, host: &str, script: &str) -> Output {
        Command::new("ssh")
            .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                self.known_hosts_path.display()
            ))
            .arg("-i")
            .arg(&self.key_path)
            .args([
                "-p",
                &self.port.to_string(),
                "-l",
                &self.user,
                host,
                "--",
                script,
            ])
            .output()
            .expect("ssh runs")
    }

    /// Like [`Cluster::ssh`], but panics unless the script succeeds; returns its stdout.
    pub fn ssh_ok(&self, host: &str, script: &str) -> String {
        let output = self.ssh(host, script);
        assert!(
            output.status.success(),
            "`{script}` on {host} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("utf-8 output")
    }

    /// Runs `script` as root inside the worker's own namespaces (its view of the filesystem),
    /// as the worker's administrator would; panics unless it succeeds. Returns its stdout.
    pub fn as_root(&self, host: &str, script: &str) -> String {
        String::from_utf8(run_script("exec", &[host, script]).stdout).expect("utf-8 output")
    }

    /// Kills the worker's whole namespace; its files survive, as after a power cut.
    pub fn crash(&self, host: &str) {
        self.fault("crash", host);
    }

    /// Rejects new TCP connections to the worker's port 22; established ones keep working.
    pub fn refuse(&self, host: &str) {
        self.fault("refuse", host);
    }

    /// Drops every packet to and from the worker.
    pub fn blackhole(&self, host: &str) {
        self.fault("blackhole", host);
    }

    /// Gives the worker a new host key and restarts it.
    pub fn rekey(&self, host: &str) {
        self.fault("rekey", host);
    }

    /// Removes the worker's packet rules and starts it again if it is down.
    pub fn heal(&self, host: &str) {
        self.fault("heal", host);
    }

    fn fault(&self, kind: &str, host: &str) {
        run_script("fault", &[kind, host]);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let block = self.lease.block.to_string();
        match Command::new(Path::new(SCRIPTS).join("down"))
            .args(["--block", &block])
            .output()
        {
            Ok(output) if output.status.success() => {}
            Ok(output) => eprintln!(
                "tests/cluster/down --block {block} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ),
            Err(error) => eprintln!("tests/cluster/down --block {block} did not run: {error}"),
        }
    }
}

fn run_script(name: &str, args: &[&str]) -> Output {
    let path = Path::new(SCRIPTS).join(name);
    let output = Command::new(&path)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("{} did not run: {error}", path.display()));
    assert!(
        output.status.success(),
        "{} {} failed ({}):\n{}{}",
        path.display(),
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// An exclusive claim on one address block, held for as long as its lock file stays open.
struct BlockLease {
    block: u8,
    _lock: File,
}

impl BlockLease {
    /// Claims a free block for `workers` workers, waiting while the machine-wide worker budget
    /// is used up by other clusters.
    fn acquire(workers: usize) -> BlockLease {
        let budget = std::env::var("MAAND_TESTBED_MAX_WORKERS")
            .ok()
            .map(|value| {
                value
                    .parse::<usize>()
                    .expect("MAAND_TESTBED_MAX_WORKERS is a number")
            })
            .unwrap_or(DEFAULT_MAX_WORKERS);
        assert!(
            workers <= budget,
            "a cluster of {workers} workers exceeds MAAND_TESTBED_MAX_WORKERS={budget}"
        );
        fs::create_dir_all(LEASE_DIR).expect("create /run/maand-testbed");
        loop {
            if let Some(lease) = Self::try_acquire(workers, budget) {
                return lease;
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    fn try_acquire(workers: usize, budget: usize) -> Option<BlockLease> {
        let dir = Path::new(LEASE_DIR);
        // Serialises leasing, so the budget count and the claim happen as one step.
        let registry = open_lock(&dir.join("lease.lock"));
        registry.lock().expect("lock /run/maand-testbed/lease.lock");
        let mut in_use = 0;
        let mut free = None;
        for block in FIRST_BLOCK..=LAST_BLOCK {
            let path = dir.join(format!("block-{block}.lock"));
            // A lock file that does not exist is held by nobody; create only the one we claim.
            if free.is_some() && !path.exists() {
                continue;
            }
            let lock = open_lock(&path);
            match lock.try_lock() {
                Ok(()) if free.is_none() => free = Some((block, lock)),
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    in_use += read_size(&dir.join(format!("block-{block}.size")));
                }
                Err(TryLockError::Error(error)) => panic!("lock block {block}: {error}"),
            }
        }
        let (block, lock) = free.expect("all test address blocks are in use");
        if in_use + workers > budget {
            return None;
        }
        fs::write(dir.join(format!("block-{block}.size")), workers.to_string())
            .expect("record the block's worker count");
        Some(BlockLease { block, _lock: lock })
    }
}

fn open_lock(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .unwrap_or_else(|error| panic!("open {}: {error}", path.display()))
}

fn read_size(path: &Path) -> usize {
    let mut text = String::new();
    File::open(path)
        .and_then(|mut file| file.read_to_string(&mut text))
        .ok()
        .and_then(|_| text.trim().parse().ok())
        .unwrap_or(0)
}
