//! `maand disconnect`: close the bucket's open SSH masters now instead of after their idle
//! time.

use crate::bucket::Bucket;

pub fn run(bucket: &Bucket) -> anyhow::Result<i32> {
    bucket.require_exists()?;
    let closed = crate::remote::close_masters(&bucket.ssh_control_dir())?;
    match closed {
        0 => println!("no open SSH connections"),
        1 => println!("closed 1 SSH connection"),
        n => println!("closed {n} SSH connections"),
    }
    Ok(0)
}
