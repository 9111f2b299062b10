//! `maand build`: parse the flags, run [`crate::build::run_build`] in a run of its own, print
//! the summary.

use crate::bucket::Bucket;
use crate::build::{self, BuildOptions};
use crate::run::Run;

use super::args::{hook_echo, print_build_summary, warn};

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// Also delete the vars/job/<job> and secrets/job/<job> keys of every job that has no
    /// active allocation (removed jobs, fully disabled jobs). Without it those keys are kept.
    #[arg(long)]
    pub purge_job_kv: bool,
}

pub fn run(bucket: &Bucket, args: &BuildArgs, argv: &[String]) -> anyhow::Result<i32> {
    let mut run = Run::begin(bucket, "build", argv)?;
    let options = BuildOptions {
        purge_job_kv: args.purge_job_kv,
        echo: hook_echo(),
    };
    let result = build::run_build(bucket, &mut run, &options, &mut warn);
    run.finish(&result)?;
    print_build_summary(&result?);
    Ok(0)
}
