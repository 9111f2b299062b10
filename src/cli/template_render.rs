//! `maand template render JOB [--worker IP] [FILE]`: print what a job's templates render to
//! for one allocation, from the catalog as it stands. Read-only: opens no run, takes no lock,
//! records nothing and contacts no worker.

use std::io::Write;

use crate::bucket::{self, Bucket};
use crate::deploy::render::render_job_templates;
use crate::kv::secret::SecretKey;

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

pub fn run(bucket: &Bucket, args: &TemplateRenderArgs) -> anyhow::Result<i32> {
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
