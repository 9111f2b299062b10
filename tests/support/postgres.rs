//! A throwaway PostgreSQL cluster for tests: `initdb` into a temporary directory, a server on a
//! free loopback port (and a socket directory of its own), trust authentication for the user
//! `maand`, stopped (`-m immediate`) when the value is dropped. Server binaries are found under
//! `/usr/lib/postgresql/*/bin` (Debian's `postgresql` package; `scripts/install-deps.sh`
//! installs it). PostgreSQL refuses to run as root, so as root the cluster belongs to the
//! `postgres` system user and every server command runs through `runuser`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A running (or stopped, see [`Postgres::stop_immediately`]) test cluster.
pub struct Postgres {
    _dir: tempfile::TempDir,
    data: PathBuf,
    sockets: PathBuf,
    log: PathBuf,
    bin: PathBuf,
    port: u16,
    /// Extra server settings (`-c name=value …`), e.g. for TLS.
    settings: String,
}

/// The newest PostgreSQL server binary directory installed.
fn server_bin() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect(
            "PostgreSQL server binaries under /usr/lib/postgresql (run scripts/install-deps.sh)",
        )
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .expect("no /usr/lib/postgresql/<version>/bin/initdb: run scripts/install-deps.sh")
        .1
}

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A command that runs `program` as the cluster's owner.
fn as_owner(program: &Path) -> Command {
    if running_as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn run(mut command: Command, what: &str) {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_loopback_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

impl Postgres {
    /// Creates and starts a cluster; panics (with the server log) if it does not come up.
    pub fn start() -> Postgres {
        Postgres::start_with(None)
    }

    /// Like [`Postgres::start`], but the server also speaks TLS with `certs`' server
    /// certificate (plain connections are still accepted).
    pub fn start_with_tls(certs: &TestCertificates) -> Postgres {
        Postgres::start_with(Some(certs))
    }

    fn start_with(certs: Option<&TestCertificates>) -> Postgres {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temporary directory");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let data = dir.path().join("data");
        let sockets = dir.path().join("sockets");
        for owned in [&data, &sockets] {
            std::fs::create_dir(owned).unwrap();
            std::fs::set_permissions(owned, std::fs::Permissions::from_mode(0o700)).unwrap();
            if running_as_root() {
                run(
                    {
                        let mut chown = Command::new("chown");
                        chown.arg("postgres:postgres").arg(owned);
                        chown
                    },
                    "chown the cluster directory to postgres",
                );
            }
        }
        let bin = server_bin();
        let mut initdb = as_owner(&bin.join("initdb"));
        initdb.arg("-D").arg(&data).args([
            "-U",
            "maand",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        run(initdb, "initdb");
        let mut settings = String::new();
        if let Some(certs) = certs {
            use std::os::unix::fs::PermissionsExt;
            for (name, pem) in [
                ("server.crt", &certs.server_cert_pem),
                ("server.key", &certs.server_key_pem),
            ] {
                let path = data.join(name);
                std::fs::write(&path, pem).unwrap();
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
                if running_as_root() {
                    run(
                        {
                            let mut chown = Command::new("chown");
                            chown.arg("postgres:postgres").arg(&path);
                            chown
                        },
                        "chown the server certificate",
                    );
                }
            }
            settings = " -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key".into();
        }
        let mut cluster = Postgres {
            log: dir.path().join("server.log"),
            _dir: dir,
            data,
            sockets,
            bin,
            port: free_loopback_port(),
            settings,
        };
        if running_as_root() {
            std::fs::write(&cluster.log, "").unwrap();
            run(
                {
                    let mut chown = Command::new("chown");
                    chown.arg("postgres:postgres").arg(&cluster.log);
                    chown
                },
                "chown the server log",
            );
        }
        // The port was free a moment ago; another test may take it first: then pick another.
        for _ in 0..3 {
            if cluster.try_start_server().is_ok() {
                return cluster;
            }
            cluster.port = free_loopback_port();
        }
        cluster.start_server();
        cluster
    }

    fn start_server(&self) {
        if let Err(report) = self.try_start_server() {
            panic!("{report}");
        }
    }

    fn try_start_server(&self) -> Result<(), String> {
        let mut pg_ctl = as_owner(&self.bin.join("pg_ctl"));
        pg_ctl
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .arg("-o")
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50{}",
                self.port,
                self.sockets.display(),
                self.settings
            ))
            .args(["-w", "-t", "60", "start"]);
        let out = pg_ctl.output().expect("pg_ctl runs");
        if out.status.success() {
            return Ok(());
        }
        Err(format!(
            "PostgreSQL did not start on port {}:\n{}\n{}\nserver log:\n{}",
            self.port,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&self.log).unwrap_or_default()
        ))
    }

    /// The URL maand connects with (no password: the cluster trusts loopback connections).
    pub fn url(&self) -> String {
        format!("postgres://maand@127.0.0.1:{}/postgres", self.port)
    }

    /// A client connection, for tests that look at or tamper with the server's tables.
    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url(), postgres::NoTls)
            .expect("connect to the test cluster")
    }

    /// Kills the server the hard way (`pg_ctl stop -m immediate`): connections drop at once.
    pub fn stop_immediately(&self) {
        let mut pg_ctl = as_owner(&self.bin.join("pg_ctl"));
        pg_ctl
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"]);
        run(pg_ctl, "pg_ctl stop");
    }

    /// Starts the server again after [`Postgres::stop_immediately`], on the same port.
    pub fn restart(&self) {
        self.start_server();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.data.join("postmaster.pid").exists() {
            let _ = as_owner(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "immediate", "-w", "stop"])
                .output();
        }
    }
}

/// A CA and a server certificate for `127.0.0.1` signed by it, as PEM: what a TLS test cluster
/// serves and what its clients must trust.
pub struct TestCertificates {
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
}

impl TestCertificates {
    pub fn generate() -> TestCertificates {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let server_key = KeyPair::generate().unwrap();
        let server_cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&server_key, &issuer)
            .unwrap();
        TestCertificates {
            ca_pem: ca_cert.pem(),
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
        }
    }
}
