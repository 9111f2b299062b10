//! `maand init`: create or upgrade the bucket.

use crate::bucket::init::{decide_init, lay_out, InitOutcome};
use crate::bucket::{self, Bucket};
use crate::catalog::read;
use crate::certs::{self, BucketCa};
use crate::kv::secret::SecretKey;
use crate::run::Run;

pub fn run(bucket: &Bucket, argv: &[String]) -> anyhow::Result<i32> {
    lay_out(bucket)?;
    let lock = Run::lock(bucket, "init")?;
    let db_path = bucket.db_path();
    let mut conn = bucket::open(&db_path)?;
    let schema_before = bucket::migrate(&mut conn, &db_path)?;
    let existing_id = read::bucket_id(&conn)?;
    let bucket_id = existing_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());

    let ca = ensure_ca(bucket, &bucket_id)?;
    ensure_kv_key(bucket)?;

    let mut run = Run::start(bucket, conn, lock, "init", argv)?;
    let (events, outcome) = decide_init(
        existing_id.as_deref(),
        schema_before,
        &bucket_id,
        ca.fingerprint().as_str(),
    );
    let result = run.record(&events, &[]);
    run.finish(&result)?;
    result?;
    match outcome {
        InitOutcome::Created { bucket_id } => {
            println!("maand bucket initialized (bucket id {bucket_id})")
        }
        InitOutcome::Upgraded {
            bucket_id,
            from,
            to,
        } => {
            println!("maand bucket upgraded from schema {from} to {to} (bucket id {bucket_id})")
        }
        InitOutcome::UpToDate { bucket_id } => {
            println!("maand bucket is up to date (bucket id {bucket_id})")
        }
    }
    Ok(0)
}

/// Loads the bucket CA, creating it only when neither file exists.
fn ensure_ca(bucket: &Bucket, bucket_id: &str) -> anyhow::Result<BucketCa> {
    let secrets = bucket.secrets_dir();
    if let Some(ca) = certs::read_bucket_ca(&secrets)? {
        return Ok(ca);
    }
    let ca = BucketCa::generate(
        bucket_id,
        certs::CA_KEY_BITS,
        time::OffsetDateTime::now_utc(),
        &mut rand::rng(),
    )?;
    certs::write_bucket_ca(&secrets, &ca)?;
    Ok(ca)
}

/// Creates `secrets/kv.key` when missing; checks an existing one is usable.
fn ensure_kv_key(bucket: &Bucket) -> anyhow::Result<()> {
    let path = bucket.kv_key_path();
    if path.exists() {
        SecretKey::load(&path)?;
    } else {
        SecretKey::generate(&mut rand::rng()).write_new(&path)?;
    }
    Ok(())
}
