//! `maand init`: create or upgrade the bucket, import a Go maand bucket in place, or make a
//! local cache of a bucket kept in a shared journal (`--join`).

use crate::bucket::init::{decide_init, lay_out, InitOutcome};
use crate::bucket::{self, Bucket};
use crate::catalog::read;
use crate::certs::{self, BucketCa};
use crate::events::RunStarted;
use crate::gobucket::{self, Detected};
use crate::kv::secret::SecretKey;
use crate::run::Run;
use crate::shared_journal::{JournalUrl, SharedJournal};

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Import a Go maand bucket found here without asking first (needed without a terminal).
    #[arg(long)]
    pub yes: bool,
    /// Create the new bucket with its journal shared on PostgreSQL at URL
    /// (postgres://[user@]host[:port]/database): every command pulls from and appends to it,
    /// and data/maand.db is this host's cache. The URL is stored in maand.conf (journal_url,
    /// with journal_bucket), so it must not hold a password: put that in PGPASSWORD or
    /// ~/.pgpass. To share an existing bucket use `maand journal push URL`. See docs/team.md.
    #[arg(long, value_name = "URL", conflicts_with = "join")]
    pub journal: Option<String>,
    /// Make this directory a new local cache of the bucket BUCKET_ID kept in the shared journal
    /// at URL: pull and verify its whole journal and project it. Nothing is appended, and no CA
    /// or secrets key is generated: copy secrets/ (kv.key, ca.crt, ca.key, the SSH key) from
    /// another operator of the bucket. See docs/team.md.
    #[arg(long, num_args = 2, value_names = ["URL", "BUCKET_ID"])]
    pub join: Option<Vec<String>>,
}

pub fn run(bucket: &Bucket, args: &InitArgs, argv: &[String]) -> anyhow::Result<i32> {
    match gobucket::detect(&bucket.db_path())? {
        Detected::Go { .. } if args.journal.is_some() || args.join.is_some() => anyhow::bail!(
            "{} holds a bucket of the Go maand: import it with `maand init` first, then share its journal with `maand journal push URL`",
            bucket.db_path().display()
        ),
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
    if let Some(join) = &args.join {
        if let Some(id) = &existing_id {
            anyhow::bail!(
                "{} already holds bucket {id}; join in an empty directory (or pass --bucket DIR)",
                bucket.root().display()
            );
        }
        return join_shared_bucket(bucket, &join[0], &join[1]);
    }
    if existing_id.is_none() {
        let traces = bucket::init::earlier_bucket_traces(bucket);
        if !traces.is_empty() {
            anyhow::bail!("{}", bucket::init::explain_traces(bucket, &traces));
        }
    }
    let bucket_id = match (&existing_id, &args.journal) {
        (Some(id), Some(_)) => anyhow::bail!(
            "{} already holds bucket {id}; to share its journal run `maand journal push URL`",
            bucket.root().display()
        ),
        (Some(id), None) => id.clone(),
        (None, Some(url)) => new_shared_bucket(bucket, url)?,
        // A maand.conf written by hand may already name a shared journal.
        (None, None) => match bucket.conf().ok().as_ref().and_then(|c| c.shared_journal()) {
            Some((url, id)) => claim_shared_bucket(&url, id)?,
            None => uuid::Uuid::new_v4().to_string(),
        },
    };
    lay_out(bucket)?;
    let lock = Run::lock(bucket, "init")?;
    let db_path = bucket.db_path();
    let mut conn = bucket::open(&db_path)?;
    let schema_before = bucket::migrate(&mut conn, &db_path)?;

    if existing_id.is_some() && bucket.conf()?.journal_url.is_some() {
        // Keys made here would differ from the team's: they come from another operator.
        let missing = missing_team_keys(bucket);
        if !missing.is_empty() {
            anyhow::bail!(
                "this bucket's journal is shared, so its secrets come from another operator, not from `maand init`: copy {} (see docs/team.md). Nothing was changed",
                missing.join(", ")
            );
        }
    }
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

/// Prepares a new bucket whose journal is shared at `url`: checks PostgreSQL is reachable,
/// lays out the bucket and names the shared journal in maand.conf. Returns the new bucket id.
fn new_shared_bucket(bucket: &Bucket, url: &str) -> anyhow::Result<String> {
    let url = JournalUrl::parse(url)?;
    if bucket.conf_path().exists() && bucket.conf()?.journal_url.is_some() {
        anyhow::bail!(
            "{} already names a shared journal; remove --journal, or remove journal_url and journal_bucket from it",
            bucket.conf_path().display()
        );
    }
    let bucket_id = uuid::Uuid::new_v4().to_string();
    claim_shared_bucket(&url, &bucket_id)?;
    lay_out(bucket)?;
    append_shared_journal_lines(bucket, &url, &bucket_id)?;
    Ok(bucket_id)
}

/// Checks that the shared journal at `url` can be reached and holds no bucket `bucket_id`
/// yet, so a new bucket may take that id there.
fn claim_shared_bucket(url: &JournalUrl, bucket_id: &str) -> anyhow::Result<String> {
    let shared = SharedJournal::connect(url, bucket_id)?;
    let head = shared.head()?;
    if head > 0 {
        return Err(crate::shared_journal::SharedJournalError::AlreadyShared {
            url: url.to_string(),
            bucket: bucket_id.to_string(),
            head,
        }
        .into());
    }
    Ok(bucket_id.to_string())
}

fn append_shared_journal_lines(
    bucket: &Bucket,
    url: &JournalUrl,
    bucket_id: &str,
) -> anyhow::Result<()> {
    let mut text = std::fs::read_to_string(bucket.conf_path())?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&bucket::MaandConf::shared_journal_lines(url, bucket_id));
    bucket::write_atomically(&bucket.conf_path(), text.as_bytes(), 0o644)?;
    Ok(())
}

/// `init --join URL BUCKET_ID`: a new local cache of a shared bucket.
fn join_shared_bucket(bucket: &Bucket, url: &str, bucket_id: &str) -> anyhow::Result<i32> {
    let url = JournalUrl::parse(url)?;
    if bucket.conf_path().exists() && bucket.conf()?.journal_url.is_some() {
        anyhow::bail!(
            "{} already names a shared journal; join in an empty directory",
            bucket.conf_path().display()
        );
    }
    let shared = SharedJournal::connect(&url, bucket_id)?;
    if shared.head()? == 0 {
        return Err(crate::shared_journal::SharedJournalError::NoSuchBucket {
            url: url.to_string(),
            bucket: bucket_id.to_string(),
        }
        .into());
    }
    lay_out(bucket)?;
    let _lock = Run::lock(bucket, "init --join")?;
    let db_path = bucket.db_path();
    let mut conn = bucket::open(&db_path)?;
    bucket::migrate(&mut conn, &db_path)?;
    let pulled = shared.pull(&mut conn, bucket)?;
    append_shared_journal_lines(bucket, &url, bucket_id)?;
    let format = bucket.conf().map(|c| c.log_format).unwrap_or_default();
    if let Err(error) = crate::logs::files::export(&conn, &bucket.logs_dir(), format) {
        tracing::warn!("could not update {}: {error}", bucket.logs_dir().display());
    }
    println!(
        "joined bucket {bucket_id}: pulled {pulled} event(s) from the shared journal at {url} into data/maand.db"
    );
    let mut missing = missing_team_keys(bucket);
    let ssh_key = bucket.secrets_dir().join(bucket.conf()?.ssh_key);
    if !ssh_key.exists() {
        missing.push(ssh_key.display().to_string());
    }
    if !missing.is_empty() {
        println!(
            "copy these from another operator of the bucket before deploying (see docs/team.md): {}",
            missing.join(", ")
        );
    }
    Ok(0)
}

/// The bucket's keys that every operator of a shared bucket must hold (the same files on every
/// host) and that are not here.
fn missing_team_keys(bucket: &Bucket) -> Vec<String> {
    [
        bucket.kv_key_path(),
        bucket.ca_cert_path(),
        bucket.ca_key_path(),
    ]
    .iter()
    .filter(|path| !path.exists())
    .map(|path| path.display().to_string())
    .collect()
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
    if let Ok(bucket::MaandConf {
        journal_url: Some(url),
        ..
    }) = bucket.conf()
    {
        // The import commits straight into data/maand.db; on a shared bucket that would fork
        // the cache from the shared journal.
        anyhow::bail!(
            "{} names a shared journal ({url}): import the Go bucket into a bucket without journal_url first, then share it with `maand journal push`",
            bucket.conf_path().display()
        );
    }
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
