//! `maand.conf`: SSH, certificate, environment-selector and log settings of a bucket.

use super::BucketError;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Encoding of the on-disk log files under `logs/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Kv,
    Json,
    Jsonl,
}

/// The settings in `maand.conf`. Every key has a default; unknown keys are rejected so a typo
/// never silently falls back to a default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MaandConf {
    pub ssh_user: String,
    pub ssh_key: String,
    pub ssh_port: u16,
    pub use_sudo: bool,
    pub certs_ttl: u32,
    pub certs_renewal_buffer: u32,
    pub job_config_selector: String,
    pub log_format: LogFormat,
    /// Bytes of one command's output (per worker) the journal keeps: the first and the last
    /// half; what lies between is dropped and its size recorded.
    pub journal_output_limit: u64,
    /// Seconds a lifecycle step (`make start|restart|reload|stop`) may run on a worker.
    pub step_time_limit: u32,
    /// Seconds one hook process (a job command run by deploy or `maand job run`) may run.
    pub hook_time_limit: u32,
    /// Seconds an SSH master stays open after the last command that used it; 0 closes every
    /// master when its command ends.
    pub ssh_master_idle: u32,
    /// The shared journal on PostgreSQL this bucket's `data/maand.db` caches (`postgres://…`,
    /// never with a password); unset for a bucket whose journal lives only in data/maand.db.
    pub journal_url: Option<String>,
    /// The bucket id under which the shared journal holds this bucket; set with `journal_url`.
    pub journal_bucket: Option<String>,
}

impl Default for MaandConf {
    fn default() -> Self {
        MaandConf {
            ssh_user: "agent".into(),
            ssh_key: "worker.key".into(),
            ssh_port: 22,
            use_sudo: true,
            certs_ttl: 60,
            certs_renewal_buffer: 0,
            job_config_selector: String::new(),
            log_format: LogFormat::Kv,
            journal_output_limit: 1024 * 1024,
            step_time_limit: 600,
            hook_time_limit: 600,
            ssh_master_idle: 60,
            journal_url: None,
            journal_bucket: None,
        }
    }
}

impl MaandConf {
    /// The shared journal this bucket caches, if it has one.
    pub fn shared_journal(&self) -> Option<(crate::shared_journal::JournalUrl, &str)> {
        let url = crate::shared_journal::JournalUrl::parse(self.journal_url.as_deref()?).ok()?;
        Some((url, self.journal_bucket.as_deref()?))
    }

    /// The lines naming a shared journal, as `maand init --journal|--join` and
    /// `maand journal push` append them to maand.conf.
    pub fn shared_journal_lines(url: &crate::shared_journal::JournalUrl, bucket: &str) -> String {
        format!(
            "# the shared journal this bucket's data/maand.db caches (see docs/team.md); the password comes from PGPASSWORD or ~/.pgpass\n\
             journal_url = {:?}\n\
             journal_bucket = {:?}\n",
            url.as_str(),
            bucket
        )
    }

    /// The file `maand init` writes on a new bucket.
    pub fn default_file_text() -> String {
        let conf = MaandConf::default();
        format!(
            "# maand bucket settings; see `maand init --help` and docs/configuration.md\n\
             ssh_user = {:?}\n\
             ssh_key = {:?}            # private key file under secrets/\n\
             ssh_port = {}\n\
             use_sudo = {}\n\
             certs_ttl = {}                # days a generated job certificate is valid\n\
             certs_renewal_buffer = 10     # renew job certificates this many days before expiry\n\
             job_config_selector = {:?}     # \"prod\" reads workspace/bucket.jobs.prod.conf\n\
             log_format = \"kv\"             # kv, json or jsonl for logs/*.log\n\
             journal_output_limit = {}   # bytes of a command's output per worker kept in the journal (first and last half)\n\
             ssh_master_idle = {}          # seconds an idle SSH master stays open for the next command; 0 = close at exit\n",
            conf.ssh_user,
            conf.ssh_key,
            conf.ssh_port,
            conf.use_sudo,
            conf.certs_ttl,
            conf.job_config_selector,
            conf.journal_output_limit,
            conf.ssh_master_idle,
        )
    }

    pub fn parse(path: &Path, text: &str) -> Result<MaandConf, BucketError> {
        let conf: MaandConf = toml::from_str(text).map_err(|e| BucketError::Conf {
            path: path.to_path_buf(),
            message: format!("{} (valid keys: ssh_user, ssh_key, ssh_port, use_sudo, certs_ttl, certs_renewal_buffer, job_config_selector, log_format, journal_output_limit, step_time_limit, hook_time_limit, ssh_master_idle, journal_url, journal_bucket)", e.message()),
        })?;
        conf.validate(path)?;
        Ok(conf)
    }

    pub fn read(path: &Path) -> Result<MaandConf, BucketError> {
        let text = std::fs::read_to_string(path).map_err(BucketError::io(path))?;
        MaandConf::parse(path, &text)
    }

    fn validate(&self, path: &Path) -> Result<(), BucketError> {
        let bad = |message: String| BucketError::Conf {
            path: path.to_path_buf(),
            message,
        };
        if !is_plain_name(&self.ssh_user) {
            return Err(bad(format!(
                "ssh_user {:?} is not a valid user name: use letters, digits, '.', '_' or '-'",
                self.ssh_user
            )));
        }
        if !is_plain_name(&self.ssh_key) {
            return Err(bad(format!(
                "ssh_key {:?} must be a file name inside secrets/ (no '/' or '..')",
                self.ssh_key
            )));
        }
        if self.ssh_port == 0 {
            return Err(bad("ssh_port must be between 1 and 65535".into()));
        }
        if self.certs_ttl == 0 {
            return Err(bad("certs_ttl must be at least 1 day".into()));
        }
        if self.certs_renewal_buffer >= self.certs_ttl {
            return Err(bad(format!(
                "certs_renewal_buffer ({}) must be smaller than certs_ttl ({}), or every build would renew every certificate",
                self.certs_renewal_buffer, self.certs_ttl
            )));
        }
        if self.step_time_limit == 0 || self.hook_time_limit == 0 {
            return Err(bad(
                "step_time_limit and hook_time_limit must be at least 1 second".into(),
            ));
        }
        if !self.job_config_selector.is_empty() && !is_plain_name(&self.job_config_selector) {
            return Err(bad(format!(
                "job_config_selector {:?} must use letters, digits, '.', '_' or '-' (it names workspace/bucket.jobs.<selector>.conf)",
                self.job_config_selector
            )));
        }
        match (&self.journal_url, &self.journal_bucket) {
            (None, None) => {}
            (Some(url), Some(bucket)) => {
                crate::shared_journal::JournalUrl::parse(url)
                    .map_err(|error| bad(error.to_string()))?;
                if bucket.is_empty() {
                    return Err(bad("journal_bucket must not be empty".into()));
                }
            }
            _ => {
                return Err(bad(
                    "journal_url and journal_bucket go together: set both (a shared bucket) or neither (a local bucket)".into(),
                ))
            }
        }
        if self.journal_output_limit < 1024 {
            return Err(bad(format!(
                "journal_output_limit ({}) must be at least 1024 bytes",
                self.journal_output_limit
            )));
        }
        Ok(())
    }
}

fn is_plain_name(value: &str) -> bool {
    !value.is_empty()
        && value != "."
        && value != ".."
        && !value.starts_with('-')
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_file_parses_to_the_defaults_with_a_ten_day_renewal_buffer() {
        let conf =
            MaandConf::parse(Path::new("maand.conf"), &MaandConf::default_file_text()).unwrap();
        assert_eq!(
            conf,
            MaandConf {
                certs_renewal_buffer: 10,
                ..MaandConf::default()
            }
        );
    }

    #[test]
    fn missing_keys_take_defaults() {
        let conf = MaandConf::parse(Path::new("maand.conf"), "ssh_user = \"ops\"\n").unwrap();
        assert_eq!(conf.ssh_user, "ops");
        assert_eq!(conf.ssh_port, 22);
    }

    #[test]
    fn unknown_key_is_rejected_naming_file_and_key() {
        let err = MaandConf::parse(Path::new("b/maand.conf"), "ssh_usr = \"x\"\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("b/maand.conf"), "{text}");
        assert!(text.contains("ssh_usr"), "{text}");
    }

    #[test]
    fn ssh_key_outside_secrets_is_rejected() {
        let err = MaandConf::parse(Path::new("maand.conf"), "ssh_key = \"../id\"\n").unwrap_err();
        assert!(err.to_string().contains("inside secrets/"));
    }

    #[test]
    fn hostile_user_is_rejected() {
        let err =
            MaandConf::parse(Path::new("maand.conf"), "ssh_user = \"a;rm -rf /\"\n").unwrap_err();
        assert!(err.to_string().contains("not a valid user name"));
    }

    #[test]
    fn time_limits_default_to_ten_minutes_and_refuse_zero() {
        let conf = MaandConf::parse(Path::new("m"), "hook_time_limit = 30").unwrap();
        assert_eq!((conf.step_time_limit, conf.hook_time_limit), (600, 30));
        let err = MaandConf::parse(Path::new("m"), "step_time_limit = 0").unwrap_err();
        assert!(err.to_string().contains("at least 1 second"), "{err}");
    }

    #[test]
    fn a_shared_journal_needs_url_and_bucket_together_and_no_password() {
        let url =
            crate::shared_journal::JournalUrl::parse("postgres://ops@127.0.0.1/maand").unwrap();
        let conf = MaandConf::parse(
            Path::new("m"),
            &MaandConf::shared_journal_lines(&url, "b-1"),
        )
        .unwrap();
        let (parsed, bucket) = conf.shared_journal().unwrap();
        assert_eq!(
            (parsed.as_str(), bucket),
            ("postgres://ops@127.0.0.1/maand", "b-1")
        );
        let err =
            MaandConf::parse(Path::new("m"), "journal_url = \"postgres://ops@h/db\"").unwrap_err();
        assert!(err.to_string().contains("go together"), "{err}");
        let err = MaandConf::parse(
            Path::new("m"),
            "journal_url = \"postgres://ops:pw@h/db\"\njournal_bucket = \"b\"",
        )
        .unwrap_err();
        assert!(err.to_string().contains("PGPASSWORD"), "{err}");
        assert!(MaandConf::default().shared_journal().is_none());
    }

    #[test]
    fn log_format_accepts_the_three_encodings() {
        for (text, want) in [
            ("kv", LogFormat::Kv),
            ("json", LogFormat::Json),
            ("jsonl", LogFormat::Jsonl),
        ] {
            let conf =
                MaandConf::parse(Path::new("m"), &format!("log_format = \"{text}\"")).unwrap();
            assert_eq!(conf.log_format, want);
        }
        assert!(MaandConf::parse(Path::new("m"), "log_format = \"xml\"").is_err());
    }
}
