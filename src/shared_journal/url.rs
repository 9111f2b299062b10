//! Owns the shared journal's address: parsing `journal_url`, refusing a password in it (the URL
//! is stored in maand.conf), and completing the connection settings the way libpq would — the
//! user from `PGUSER` or the login name, the password from `PGPASSWORD` or the password file
//! (`PGPASSFILE`, default `~/.pgpass`). It never connects.

use super::SharedJournalError;
use postgres::config::Host;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// How long connecting may take before the server counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle seconds before TCP keepalives probe a silent server, so a vanished host is noticed.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(15);

/// A validated `postgres://…` URL (or libpq `key=value` string) holding no password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalUrl {
    text: String,
}

impl JournalUrl {
    /// Parses `text`, refusing a password in it.
    pub fn parse(text: &str) -> Result<JournalUrl, SharedJournalError> {
        let bad = |problem: String| SharedJournalError::BadUrl {
            url: text.to_string(),
            problem,
        };
        let config = postgres::Config::from_str(text)
            .map_err(|error| bad(format!("not a PostgreSQL URL: {error}")))?;
        if config.get_password().is_some() {
            return Err(SharedJournalError::BadUrl {
                url: "(not repeated: it holds a password)".into(),
                problem: "the URL holds a password, and the URL is stored in maand.conf; remove it from the URL and put it in PGPASSWORD or ~/.pgpass".into(),
            });
        }
        if config.get_hosts().is_empty() {
            return Err(bad(
                "no host: name one, e.g. postgres://maand@db.example/maand".into(),
            ));
        }
        Ok(JournalUrl {
            text: text.to_string(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The connection settings: the URL's, completed with the user, password, timeouts and
    /// keepalives.
    pub(super) fn config(&self) -> postgres::Config {
        let mut config =
            postgres::Config::from_str(&self.text).expect("JournalUrl holds a parsed URL");
        if config.get_user().is_none() {
            let user = std::env::var("PGUSER").unwrap_or_else(|_| whoami::username());
            config.user(&user);
        }
        if let Some(password) = password_for(&config) {
            config.password(password);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.keepalives_idle(KEEPALIVE_IDLE);
        config.application_name("maand");
        config
    }
}

impl std::fmt::Display for JournalUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// `PGPASSWORD`, else the first matching line of the password file.
fn password_for(config: &postgres::Config) -> Option<String> {
    if let Ok(password) = std::env::var("PGPASSWORD") {
        return Some(password);
    }
    let path = std::env::var_os("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".pgpass")))?;
    let text = std::fs::read_to_string(&path).ok()?;
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).ok()?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                "ignoring {}: it may be read by others (mode {:o}); run `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                path.display()
            );
            return None;
        }
    }
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(name)) => name.clone(),
        // libpq matches a socket connection against `localhost`.
        Some(Host::Unix(_)) | None => "localhost".to_string(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let user = config.get_user().unwrap_or_default().to_string();
    let dbname = config.get_dbname().unwrap_or(&user).to_string();
    pgpass_lookup(&text, [&host, &port, &dbname, &user])
}

/// The password of the first `host:port:database:user:password` line matching `wanted`
/// (`*` matches anything; `\:` and `\\` escape), as libpq reads the password file.
fn pgpass_lookup(text: &str, wanted: [&String; 4]) -> Option<String> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| {
            let fields = split_pgpass_line(line);
            (fields.len() == 5).then_some(fields)
        })
        .find(|fields| {
            fields[..4]
                .iter()
                .zip(wanted)
                .all(|(field, want)| field == "*" || field == want)
        })
        .map(|fields| fields[4].clone())
}

fn split_pgpass_line(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    fields.last_mut().expect("one field").push(next);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            other => fields.last_mut().expect("one field").push(other),
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(values: [&str; 4]) -> [String; 4] {
        values.map(str::to_string)
    }

    #[test]
    fn a_password_in_the_url_is_refused_without_repeating_it() {
        let err = JournalUrl::parse("postgres://ops:s3cret@db.example/maand").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("PGPASSWORD or ~/.pgpass"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
    }

    #[test]
    fn a_url_without_password_is_kept_as_written() {
        let url = JournalUrl::parse("postgres://ops@127.0.0.1:5433/maand").unwrap();
        assert_eq!(url.as_str(), "postgres://ops@127.0.0.1:5433/maand");
    }

    #[test]
    fn garbage_is_refused_naming_the_url() {
        let err = JournalUrl::parse("postgres://[::1").unwrap_err();
        assert!(err.to_string().contains("postgres://[::1"), "{err}");
    }

    #[test]
    fn pgpass_takes_the_first_matching_line_with_wildcards_and_escapes() {
        let file = "# comment\nother:5432:*:ops:wrong\n127.0.0.1:5433:maand:ops:pa\\:ss\n*:*:*:*:fallback\n";
        let [host, port, db, user] = strings(["127.0.0.1", "5433", "maand", "ops"]);
        assert_eq!(
            pgpass_lookup(file, [&host, &port, &db, &user]).as_deref(),
            Some("pa:ss")
        );
        let [host, port, db, user] = strings(["elsewhere", "1", "x", "y"]);
        assert_eq!(
            pgpass_lookup(file, [&host, &port, &db, &user]).as_deref(),
            Some("fallback")
        );
    }
}
