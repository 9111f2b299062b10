//! `maand init`: create or upgrade the bucket, or import a Go maand bucket in place.

use crate::bucket::init::{decide_init, lay_out, InitOutcome};
use crate::bucket::{self, Bucket};
use crate::catalog::read;
use crate::certs::{self, BucketCa};
use crate::events::RunStarted;
use crate::gobucket::{self, Detected};
use crate::kv::secret::SecretKey;
use crate::run::Run;

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Import a Go maand bucket found here without asking first (needed without a terminal).
    #[arg(long)]
    pub yes: bool,
}

pub fn run(bucket: &Bucket, args: &InitArgs, argv: &[String]) -> anyhow::Result<i32> {
    match gobucket::detect(&bucket.db_path())? {
        Detected::Go { .. } => return import_go_bucket(bucket, args, argv),
        Detected::Foreign(tables) => anyhow::bail!(
            "{} is a SQLite database of neither this maand nor the Go maand (tables: {}); move it away or pass --bucket DIR",
            bucket.db_path().display(),
            tables.join(", ")
        ),
        Detected::Absent | Detected::Ours => {}
    }
    let existing_id = match bucket.db_path().exists() {
        true => {
            let conn = bucket::open(&bucket.db_path())?;
            match bucket::schema_state(&conn, &bucket.db_path())? {
                bucket::SchemaState::Fresh => None,
                _ => read::bucket_id(&conn)?,
            }
        }
        false => None,
    };
    if existing_id.is_none() {
        let traces = bucket::init::earlier_bucket_traces(bucket);
        if !traces.is_empty() {
            anyhow::bail!("{}", bucket::init::explain_traces(bucket, &traces));
        }
    }
    lay_out(bucket)?;
    let lock = Run::lock(bucket, "init")?;
    let db_path = bucket.db_path();
    let mut conn = bucket::open(&db_path)?;
    let schema_before = bucket::migrate(&mut conn, &db_path)?;
    let bucket_id = existing_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());

    let ca = ensure_ca(bucket, &bucket_id)?;
    if existing_id.is_some() && !bucket.kv_key_path().exists() {
        let sealed = read::sealed_value_count(&conn)?;
        if sealed > 0 {
            anyhow::bail!(
                "{} is missing, but the catalog holds {sealed} value(s) sealed with it (secrets and certificate keys); a new key could not open them. Restore secrets/kv.key from a backup of this bucket and run `maand init` again. Nothing was changed",
                bucket.kv_key_path().display()
            );
        }
    }
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

/// Says what the import will do, asks (unless `--yes`), imports, and finishes the layout.
fn import_go_bucket(bucket: &Bucket, args: &InitArgs, argv: &[String]) -> anyhow::Result<i32> {
    use std::io::{BufRead, IsTerminal, Write};
    let _lock = Run::lock(bucket, "init")?;
    let go = gobucket::apply::inspect(bucket)?;
    let summary = gobucket::decide::summarize(&go);
    println!(
        "{} holds a bucket of the Go maand (schema_version {}, bucket id {}).",
        bucket.db_path().display(),
        go.schema_version,
        summary.bucket_id
    );
    println!("maand init will import it in place:");
    println!(
        "  - keep the Go database, unchanged, as {}",
        gobucket::KEPT_COPY
    );
    println!(
        "  - record the bucket identity (same bucket id, update_seq {}), {} worker(s), {} job(s), {} allocation(s) and {} port(s)",
        summary.update_seq, summary.workers, summary.jobs, summary.allocations, summary.ports
    );
    println!(
        "  - record {} KV key(s) with their whole history ({} version(s)); {} secret value(s) re-encrypted bound to their namespace and key",
        summary.kv_keys, summary.kv_versions, summary.secrets
    );
    println!(
        "  - mark {} deployed allocation(s) adopted: the first `maand deploy` compares each with its worker and restarts only what differs",
        summary.adopted
    );
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            anyhow::bail!("refusing to import without confirmation: no terminal to ask on; run `maand init --yes` to import");
        }
        print!("Import it? [y/N] ");
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            println!("nothing imported");
            return Ok(1);
        }
    }
    let started = RunStarted {
        command: "init".into(),
        argv: argv.to_vec(),
        maand_version: env!("CARGO_PKG_VERSION").to_string(),
        user: whoami::username(),
        host: whoami::fallible::hostname().unwrap_or_else(|_| "unknown".into()),
        pid: std::process::id(),
    };
    let summary = gobucket::apply::import_in_place(bucket, started, crate::run::now_ms)?;
    lay_out(bucket)?;
    ensure_kv_key(bucket)?;
    let conn = bucket::open(&bucket.db_path())?;
    let format = bucket.conf().map(|c| c.log_format).unwrap_or_default();
    if let Err(error) = crate::logs::files::export(&conn, &bucket.logs_dir(), format) {
        tracing::warn!("could not update {}: {error}", bucket.logs_dir().display());
    }
    println!(
        "imported the Go maand bucket {} (the Go database is kept as {}); next: `maand template convert`, `maand build`, `maand deploy` (see docs/migrating.md)",
        summary.bucket_id,
        gobucket::KEPT_COPY
    );
    Ok(0)
}
