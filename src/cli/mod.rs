//! The command line: clap definitions, dispatch, and rendering of results.
//!
//! Each command group has its own file. Handlers parse nothing themselves (clap does), call one
//! domain function, and render what it returns. Domain modules never print; this layer does.
//!
//! A command file imports no other command file: what several share (flags, renderers) is in
//! `args`, the one module they may import; everything else they need is a domain module. Only
//! this file, which declares and dispatches them all, names them. A test keeps it so.

mod args;
mod build;
mod cat;
mod cat_prometheus;
mod deploy;
mod disconnect;
mod gc;
mod health_check;
mod info;
mod init;
mod job;
mod jobcommand;
mod journal_cmd;
mod logs_cmd;
mod run_command;
mod template;
mod worker_facts;

use clap::{CommandFactory, Parser, Subcommand};
use std::path::PathBuf;

/// maand: an agentless workload orchestrator with an append-only journal.
///
/// Run commands from the bucket directory (the one `maand init` created), or point at it with
/// --bucket. Every command that changes anything records its events in data/maand.db; `maand
/// logs show` replays them.
#[derive(Debug, Parser)]
#[command(
    name = "maand",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// The bucket directory. Defaults to the current directory.
    #[arg(long, global = true, env = "MAAND_BUCKET", value_name = "DIR")]
    pub bucket: Option<PathBuf>,

    /// More diagnostics on stderr (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a bucket in the bucket directory, or upgrade an existing one.
    ///
    /// On a new directory: writes maand.conf (defaults), data/maand.db, workspace/ (workers.json,
    /// jobs/, bucket.conf), secrets/ca.crt + ca.key (the bucket CA), secrets/kv.key (the key that
    /// encrypts secrets), tmp/ and logs/. On an existing bucket: applies pending schema
    /// migrations and creates anything missing; never overwrites a file, never changes the
    /// bucket id or the CA. Contacts no worker.
    ///
    /// In a directory holding a bucket of the Go maand, imports it in place (after asking, or
    /// with --yes): same bucket id, KV history, secrets and certificates; the Go database is
    /// kept as data/go-maand.db. See docs/migrating.md.
    Init(init::InitArgs),
    /// Read the workspace and bring the catalog (workers, jobs, allocations, ports, KV,
    /// certificates) in line with it. Contacts no worker.
    ///
    /// Every problem in the workspace is reported at once, each naming the file and field to
    /// fix; a failed build changes nothing in the catalog. Building an unchanged workspace
    /// records no catalog events.
    Build(build::BuildArgs),
    /// Push jobs to workers and roll them out, wave by wave, recording every step.
    ///
    /// Jobs whose allocations already run the staged content and version are skipped. Every
    /// step (copy, start/restart/reload, promote, stop, cleanup) is recorded before and after
    /// it runs, so a deploy that failed or was killed continues with `--resume`.
    Deploy(deploy::DeployArgs),
    /// Delete what removed allocations left behind: their whole job trees on workers (data
    /// and logs too), their catalog rows and KV, the KV of jobs that have no allocation left,
    /// and the history of deleted KV keys. Never deletes journal events.
    Gc(gc::GcArgs),
    /// Check that workers answer over SSH and that jobs are healthy on their active
    /// allocations, and print a table of every check.
    ///
    /// First every worker (only those of the selected jobs with --jobs) must answer on
    /// ssh_port with an SSH identification line. Then each job's manifest probes run from
    /// this host against each active allocation (tcp: connect to worker:port; http/https:
    /// GET, expecting the status; ssh: the command on the worker, exit 0), then its
    /// health_check commands on the allocations whose probes passed. Jobs without either are
    /// listed as having no health check; they do not fail the command. Every attempt on
    /// every allocation is recorded (`maand logs show --event health_checked`), and the
    /// latest result marks `maand cat deployments` (health_failed). Fails when a worker did
    /// not answer or an allocation is unhealthy. --verbose echoes ssh probe and command
    /// output. See docs/health.md.
    ///
    /// Examples:
    ///   maand health_check
    ///   maand health_check --jobs api,worker
    ///   maand health_check --jobs api --wait --verbose
    #[command(name = "health_check", alias = "health-check", verbatim_doc_comment)]
    HealthCheck(health_check::HealthCheckArgs),
    /// Close the bucket's SSH connections to workers now.
    ///
    /// Commands that reach workers leave their SSH connection (one per worker) open for
    /// ssh_master_idle seconds (maand.conf, default 60) so the next command skips the
    /// handshake. This closes every one of them at once. Contacts no worker and records
    /// nothing.
    Disconnect,
    /// Show the bucket id, update sequence, catalog counts and journal position.
    Info(info::InfoArgs),
    /// Print a catalog table (workers, jobs, allocations, deployments, job_commands,
    /// job_ports, certs, kv) as aligned text, or as JSON with --json. Read-only: records
    /// nothing and never waits for the bucket lock. `--at RUN|SEQ` shows the table as it was
    /// at an earlier point of history.
    Cat(cat::CatArgs),
    /// Work with jobs: `job create` scaffolds a job directory in the workspace; `job start`,
    /// `stop`, `restart`, `status` and `run --target T` run Makefile targets on its workers.
    #[command(subcommand)]
    Job(job::JobCommand),
    /// Check or rebuild the journal and the projections folded from it.
    #[command(subcommand)]
    Journal(journal_cmd::JournalCommand),
    /// Read the journal: runs, commands and their output.
    #[command(subcommand)]
    Logs(logs_cmd::LogsCommand),
    /// Run a shell command on workers of the catalog (after `maand build`) over SSH.
    ///
    /// Output streams live as `worker | line` (`!` for stderr) and is journaled; a summary per
    /// worker (exit code or error, duration) follows. Fails when the command failed on any
    /// worker or a worker could not be reached; the others still run. Takes the bucket lock.
    ///
    /// Examples:
    ///   maand run_command uptime
    ///   maand run_command "df -h /opt/worker" -w 127.9.0.1,127.9.0.2
    ///   maand run_command hostname -l web -c 4
    #[command(name = "run_command", alias = "run-command", verbatim_doc_comment)]
    RunCommand(run_command::RunCommandArgs),
    /// Work with job templates: `template convert` translates templates written for the Go
    /// maand (Go text/template) into tera; `template render` prints what a job's templates
    /// render to for one allocation.
    #[command(subcommand)]
    Template(template::TemplateCommand),
    /// Run a job command (a script under the job's _modules/) for the `cli` event, on this
    /// host, once per active allocation of the job (of every job registering it when JOB is
    /// omitted).
    ///
    /// The command must list `cli` in its executed_on. Scripts reach maand through the
    /// runtime API (KV, demands, semaphores); what they write to KV is recorded only when
    /// every allocation succeeded. --verbose echoes their output as `job@worker | line`;
    /// it is journaled either way. See docs/hooks.md.
    ///
    /// Examples:
    ///   maand jobcommand command_migrate api --verbose
    ///   maand jobcommand command_cluster_status -c 4
    #[command(name = "jobcommand", alias = "job_command", verbatim_doc_comment)]
    JobCommand(jobcommand::JobCommandArgs),
    /// Probe workers for memory (MB) and CPU (MHz) and write the figures into workers.json.
    ///
    /// Workers come from workspace/workers.json, so this works before the first build. Only
    /// the `memory` and `cpu` values of probed workers change; every other field, the key
    /// order and the formatting stay as they are. When any probe fails nothing is written.
    /// CPU is the sum over online logical CPUs of their top speed (see docs/operations.md).
    ///
    /// Examples:
    ///   maand worker_facts --dry-run
    ///   maand worker_facts -w 127.9.0.1,127.9.0.2 -c 2
    ///   maand worker_facts --build
    #[command(name = "worker_facts", alias = "worker-facts", verbatim_doc_comment)]
    WorkerFacts(worker_facts::WorkerFactsArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completions {
        /// The shell to generate completions for.
        shell: clap_complete::Shell,
    },
    /// Write man pages for maand and every subcommand into a directory.
    Man {
        /// Output directory (created if missing).
        #[arg(long, default_value = "man")]
        out: PathBuf,
    },
}

impl Cli {
    fn bucket(&self) -> anyhow::Result<crate::bucket::Bucket> {
        let root = match &self.bucket {
            Some(dir) => dir.clone(),
            None => std::env::current_dir()?,
        };
        Ok(crate::bucket::Bucket::at(root))
    }
}

/// The command name as recorded in the journal (`journal verify`, `logs show`, `init`, ...).
fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Init(_) => "init",
        Command::Build(_) => "build",
        Command::Deploy(_) => "deploy",
        Command::Gc(_) => "gc",
        Command::HealthCheck(_) => "health_check",
        Command::Disconnect => "disconnect",
        Command::Info(_) => "info",
        Command::Cat(_) => "cat",
        Command::Job(command) => command.name(),
        Command::Journal(journal_cmd::JournalCommand::Verify) => "journal verify",
        Command::Journal(journal_cmd::JournalCommand::Rebuild { .. }) => "journal rebuild",
        Command::Journal(journal_cmd::JournalCommand::Push { .. }) => "journal push",
        Command::Logs(_) => "logs show",
        Command::RunCommand(_) => "run_command",
        Command::Template(command) => command.name(),
        Command::JobCommand(_) => "jobcommand",
        Command::WorkerFacts(_) => "worker_facts",
        Command::Completions { .. } => "completions",
        Command::Man { .. } => "man",
    }
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "maand=debug,journal=debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Parses the command line, runs the command, and returns the process exit code.
pub fn main() -> i32 {
    // Like other Unix tools, end quietly when the reader of our output goes away
    // (`maand logs show | head`) instead of panicking on a broken pipe.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let name = command_name(&cli.command);
    if works_on_workers(&cli.command) {
        if let Err(error) = crate::interrupt::install() {
            eprintln!("warning: Ctrl-C will not stop {name} cleanly: {error}");
        }
    }
    let code = match dispatch(&cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", describe(&err));
            1
        }
    };
    if crate::interrupt::requested() {
        // An interrupted command leaves no SSH master behind, warm ones included.
        if let Ok(bucket) = cli.bucket() {
            if let Err(error) = crate::remote::close_masters(&bucket.ssh_control_dir()) {
                eprintln!("warning: could not close the SSH connections: {error}");
            }
        }
        eprintln!("{}", crate::interrupt::continue_hint(name));
        return crate::interrupt::EXIT_INTERRUPTED;
    }
    code
}

/// Commands that start work on workers or run hooks: Ctrl-C lets them stop cleanly (see
/// [`crate::interrupt`]). The others keep Ctrl-C's default: they stop at once.
fn works_on_workers(command: &Command) -> bool {
    matches!(
        command,
        Command::Build(_)
            | Command::Deploy(_)
            | Command::Gc(_)
            | Command::HealthCheck(_)
            | Command::Job(_)
            | Command::RunCommand(_)
            | Command::JobCommand(_)
            | Command::WorkerFacts(_)
    )
}

/// The error and its causes on one line, each said once: a cause whose text the message
/// already holds (most of our errors quote their source) is left out, and so is SQLite's
/// numeric restatement of a message it already gave.
fn describe(err: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        let restated_code = cause.downcast_ref::<rusqlite::ffi::Error>().is_some();
        if message.is_empty() {
            message = text;
        } else if !message.contains(&text) && !restated_code {
            message.push_str(": ");
            message.push_str(&text);
        }
    }
    message
}

/// Commands that only read the catalog: on a bucket with a shared journal they first pull what
/// other operators appended, and answer from the local cache (saying how stale) when
/// PostgreSQL cannot be reached.
fn reads_catalog(command: &Command) -> bool {
    matches!(
        command,
        Command::Info(_)
            | Command::Cat(_)
            | Command::Logs(_)
            | Command::Journal(journal_cmd::JournalCommand::Verify)
    )
}

/// Brings the local cache of a shared bucket up to date for a read command; warns (and goes
/// on) when the shared journal cannot be reached.
fn refresh_shared_cache(bucket: &crate::bucket::Bucket) {
    if let Err(error) = crate::shared_journal::catch_up(bucket) {
        let staleness = match crate::shared_journal::last_sync(bucket) {
            Some(sync) => format!(
                "which last caught up with it at {} ({}s ago, head {})",
                crate::run::format_time_ms(sync.synced_ms),
                (crate::run::now_ms() - sync.synced_ms).max(0) / 1000,
                sync.head
            ),
            None => "which has no record of ever catching up with it".into(),
        };
        eprintln!(
            "warning: {error}\nwarning: answering from the local cache data/maand.db, {staleness}"
        );
    }
}

fn dispatch(cli: &Cli) -> anyhow::Result<i32> {
    let argv: Vec<String> = std::env::args().collect();
    let name = command_name(&cli.command);
    tracing::debug!(command = name, "dispatch");
    if reads_catalog(&cli.command) {
        refresh_shared_cache(&cli.bucket()?);
    }
    match &cli.command {
        Command::Init(args) => init::run(&cli.bucket()?, args, &argv),
        Command::Build(args) => build::run(&cli.bucket()?, args, &argv),
        Command::Deploy(args) => deploy::run(&cli.bucket()?, args, &argv),
        Command::Gc(args) => gc::run(&cli.bucket()?, args, &argv),
        Command::HealthCheck(args) => {
            health_check::run(&cli.bucket()?, args, cli.verbose > 0, &argv)
        }
        Command::Disconnect => disconnect::run(&cli.bucket()?),
        Command::Info(args) => info::run(&cli.bucket()?, args),
        Command::Cat(args) => cat::run(&cli.bucket()?, args, cat_prometheus::run),
        Command::Job(command) => job::run(&cli.bucket()?, command, &argv),
        Command::Journal(command) => journal_cmd::run(&cli.bucket()?, command, name, &argv),
        Command::Logs(command) => logs_cmd::run(&cli.bucket()?, command),
        Command::RunCommand(args) => run_command::run(&cli.bucket()?, args, &argv),
        Command::Template(command) => template::run(&cli.bucket()?, command),
        Command::JobCommand(args) => jobcommand::run(&cli.bucket()?, args, cli.verbose > 0, &argv),
        Command::WorkerFacts(args) => worker_facts::run(&cli.bucket()?, args, &argv),
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "maand", &mut std::io::stdout());
            Ok(0)
        }
        Command::Man { out } => {
            std::fs::create_dir_all(out)?;
            clap_mangen::generate_to(Cli::command(), out)?;
            println!("man pages written to {}", out.display());
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::describe;
    use std::path::Path;

    /// The modules a `path::to::` prefix names at the start of `rest`: one, or each of a
    /// `{a, b::c}` group.
    fn named_modules(rest: &str) -> Vec<String> {
        let word = |text: &str| -> String {
            text.trim()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect()
        };
        match rest.strip_prefix('{') {
            Some(group) => group
                .split('}')
                .next()
                .unwrap_or_default()
                .split(',')
                .map(word)
                .collect(),
            None => vec![word(rest)],
        }
    }

    #[test]
    fn no_cli_module_imports_another_but_the_shared_arguments() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cli");
        let mut sources = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "rs") {
                let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
                sources.push((stem, std::fs::read_to_string(&path).unwrap()));
            }
        }
        let modules: Vec<&str> = sources.iter().map(|(stem, _)| stem.as_str()).collect();
        assert!(
            modules.contains(&"args") && modules.contains(&"build"),
            "{modules:?}"
        );
        let mut offences = Vec::new();
        for (stem, text) in &sources {
            if stem == "mod" || stem == "args" {
                continue;
            }
            for (number, line) in text.lines().enumerate() {
                for prefix in ["super::", "crate::cli::"] {
                    for (at, _) in line.match_indices(prefix) {
                        for named in named_modules(&line[at + prefix.len()..]) {
                            if named != "args"
                                && named != *stem
                                && modules.contains(&named.as_str())
                            {
                                offences.push(format!(
                                    "src/cli/{stem}.rs:{}: {}",
                                    number + 1,
                                    line.trim()
                                ));
                            }
                        }
                    }
                }
            }
        }
        assert!(
            offences.is_empty(),
            "cli modules may import only cli/args.rs (shared flags and renderers); move the rest to a domain module:\n{}",
            offences.join("\n")
        );
    }

    #[test]
    fn the_layering_check_sees_single_and_grouped_imports() {
        assert_eq!(named_modules("build::{self, BuildArgs};"), ["build"]);
        assert_eq!(
            named_modules("{args, health_check::Scope};"),
            ["args", "health_check"]
        );
        assert_eq!(named_modules("*;"), [""]);
    }

    #[test]
    fn an_error_that_quotes_its_cause_says_it_once() {
        let sqlite = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(11),
            Some("database disk image is malformed".into()),
        );
        let err = anyhow::Error::new(crate::bucket::BucketError::Sqlite {
            path: "data/maand.db".into(),
            source: sqlite,
        });
        assert_eq!(
            describe(&err),
            "data/maand.db: database disk image is malformed"
        );
    }

    #[test]
    fn a_context_that_does_not_quote_its_cause_is_followed_by_it() {
        let err = anyhow::anyhow!("disk full").context("writing tmp/x");
        assert_eq!(describe(&err), "writing tmp/x: disk full");
    }
}
