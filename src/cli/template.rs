//! `maand template`: work with job templates. `template convert` translates the `.tpl` files of
//! a workspace written for the Go maand (Go `text/template`) into tera, and renames the Go
//! maand's old manifest keys: what to change is found by [`crate::workspace::plan_go_conversion`]
//! (the translation itself is [`crate::templates::go`]); this file prints it or writes it.
//! `template render JOB [--worker IP] [FILE]` prints what a job's templates render to for one
//! allocation, from the catalog as it stands: it opens no run, takes no lock, records nothing
//! and contacts no worker.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use clap::Subcommand;

use crate::bucket::{self, write_atomically, Bucket};
use crate::deploy::render::render_job_templates;
use crate::kv::secret::SecretKey;
use crate::workspace::{self, Conversion};

#[derive(Debug, Subcommand)]
pub enum TemplateCommand {
    /// Translate job templates written for the Go maand (Go text/template) into tera.
    ///
    /// Walks workspace/jobs/<job>/**/*.tpl of every job (or of the JOBs named). Each file in
    /// Go syntax is rewritten whole (temporary file + rename, mode kept) so that it renders
    /// exactly what the Go maand rendered; files already in tera are left alone, so running
    /// it twice changes nothing. A file using a construct the converter cannot express
    /// exactly is reported as jobs/<job>/<path>:line:col and left untouched; the others are
    /// still converted and the command fails at the end. The job's manifest.json also gets
    /// the Go maand's old keys renamed (deploy_parallel_count -> max_concurrent_starts,
    /// update_parallel_count -> max_concurrent_upgrades), everything else kept as written.
    /// Contacts no worker and records nothing. See docs/templates.md.
    ///
    /// Examples:
    ///   maand template convert --dry-run
    ///   maand template convert api prometheus
    ///   maand template convert --check
    #[command(verbatim_doc_comment)]
    Convert(ConvertArgs),
    /// Print what a job's templates render to for one of its allocations, from the catalog
    /// as it stands (after `maand build`), like `helm template`. Contacts no worker and
    /// records nothing.
    ///
    /// Templates see exactly what deploy staging gives them: the allocation's context and
    /// the KV its job may read. KV that pre_deploy hooks would write during a deploy is not
    /// there yet. See docs/templates.md.
    ///
    /// Examples:
    ///   maand template render api
    ///   maand template render api config.yml.tpl --worker 127.9.0.2
    #[command(verbatim_doc_comment)]
    Render(TemplateRenderArgs),
}

impl TemplateCommand {
    /// The command name as recorded in the journal.
    pub fn name(&self) -> &'static str {
        match self {
            TemplateCommand::Convert(_) => "template convert",
            TemplateCommand::Render(_) => "template render",
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct ConvertArgs {
    /// Write nothing; list the files that still need converting (Go templates, old manifest
    /// keys) and fail if there is any. For CI.
    #[arg(long, conflicts_with = "dry_run")]
    pub check: bool,
    /// Write nothing; print what would change as a unified diff.
    #[arg(long)]
    pub dry_run: bool,
    /// Jobs to convert (directories under workspace/jobs). Default: every job.
    #[arg(value_name = "JOB")]
    pub jobs: Vec<String>,
}

pub fn run(bucket: &Bucket, command: &TemplateCommand) -> anyhow::Result<i32> {
    match command {
        TemplateCommand::Convert(args) => convert(bucket, args),
        TemplateCommand::Render(args) => render(bucket, args),
    }
}

#[derive(Debug, clap::Args)]
pub struct TemplateRenderArgs {
    /// The job whose templates to render.
    pub job: String,
    /// Render for the job's allocation on this worker. Without it: the job's first worker in
    /// workers.json order (stderr says which, when the job has several).
    #[arg(short, long, value_name = "IP")]
    pub worker: Option<String>,
    /// One template, relative to the job directory (`conf/app.yml.tpl`, or `conf/app.yml`).
    /// Its output is printed exactly, with no header. Without it: every .tpl file of the job,
    /// each after a `# <file>` header line.
    pub file: Option<String>,
}

fn render(bucket: &Bucket, args: &TemplateRenderArgs) -> anyhow::Result<i32> {
    let conn = bucket::open_checked(bucket)?;
    // Rendering only reads; make the connection refuse writes so nothing can be recorded.
    conn.pragma_update(None, "query_only", "ON")?;
    let kv_key = SecretKey::load(&bucket.kv_key_path()).ok();
    let rendered = render_job_templates(
        &conn,
        kv_key,
        &args.job,
        args.worker.as_deref(),
        args.file.as_deref(),
    )?;
    if args.worker.is_none() && rendered.workers.len() > 1 {
        eprintln!(
            "template render: job {} has {} allocations ({}); rendering for {}, choose another with --worker",
            args.job,
            rendered.workers.len(),
            rendered.workers.join(", "),
            rendered.worker
        );
    }
    let mut out = std::io::stdout().lock();
    if args.file.is_some() {
        for (_, content) in &rendered.files {
            out.write_all(content)?;
        }
    } else {
        for (path, content) in &rendered.files {
            writeln!(out, "# {path}")?;
            out.write_all(content)?;
            if !content.is_empty() && !content.ends_with(b"\n") {
                writeln!(out)?;
            }
        }
    }
    out.flush()?;
    Ok(0)
}

fn convert(bucket: &Bucket, args: &ConvertArgs) -> anyhow::Result<i32> {
    let jobs_dir = bucket.workspace_dir().join("jobs");
    if !jobs_dir.is_dir() {
        anyhow::bail!(
            "{} does not exist: run this in a bucket directory (or pass --bucket)",
            jobs_dir.display()
        );
    }
    let outcomes = workspace::plan_go_conversion(&jobs_dir, &args.jobs)?;

    let (mut converted, mut tera, mut refused) = (0, 0, 0);
    let mut pending = 0;
    for outcome in &outcomes {
        match outcome {
            Conversion::Rewrite { path, old, new } => {
                let shown = shown_path(bucket, path);
                pending += 1;
                if args.check {
                    println!("{shown}: needs `maand template convert`");
                } else if args.dry_run {
                    print!(
                        "{}",
                        similar::TextDiff::from_lines(old, new)
                            .unified_diff()
                            .header(&format!("a/{shown}"), &format!("b/{shown}"))
                    );
                } else {
                    let mode = std::fs::metadata(path)
                        .map(|metadata| metadata.permissions().mode() & 0o7777)
                        .unwrap_or(0o644);
                    match write_atomically(path, new.as_bytes(), mode) {
                        Ok(()) => {
                            converted += 1;
                            println!("converted {shown}");
                        }
                        Err(error) => {
                            refused += 1;
                            eprintln!("error: {shown}: cannot write: {error}");
                        }
                    }
                }
            }
            Conversion::AlreadyTera => tera += 1,
            Conversion::Unchanged => {}
            Conversion::Problem(problem) => {
                refused += 1;
                eprintln!("error: {problem}");
            }
        }
    }
    if args.check {
        println!("{pending} file(s) need converting, {refused} cannot be converted");
        return Ok(i32::from(pending + refused > 0));
    }
    if args.dry_run {
        converted = pending;
        println!("would convert {converted} files, {tera} already tera, {refused} refused");
    } else {
        println!("converted {converted} files, {tera} already tera, {refused} refused");
    }
    Ok(i32::from(refused > 0))
}

/// `workspace/jobs/<job>/<path>` shown relative to the workspace: `jobs/<job>/<path>`.
fn shown_path(bucket: &Bucket, path: &Path) -> String {
    path.strip_prefix(bucket.workspace_dir())
        .unwrap_or(path)
        .display()
        .to_string()
}
