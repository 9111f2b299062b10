//! The character rules for every name the workspace introduces. These names end up in
//! shell command lines, remote paths, KV keys and file names, so each rule is a small
//! allow-list rather than a deny-list. Pure; owns only the rules and their wording.
//!
//! | Name | Rule |
//! |------|------|
//! | job | `[a-z0-9][a-z0-9_-]*`, at most 63 characters, not `data`, `logs` or `bin` |
//! | label / selector | `[a-z0-9][a-z0-9_.-]*`, at most 63 characters |
//! | worker host | an IPv4/IPv6 address, or a DNS hostname (RFC 1123 labels joined by `.`) |
//! | tag / variable key | `[A-Za-z0-9_][A-Za-z0-9_.-]*`, at most 128 characters |
//! | port name | `[a-z][a-z0-9_]*`, at most 63 characters |
//! | command | `command_` followed by `[a-z0-9_]+`, at most 63 characters |
//! | cert name | `[a-z0-9][a-z0-9_-]*`, at most 63 characters |
//! | job config selector | empty, or `[a-z0-9][a-z0-9_-]*`, at most 63 characters |

use std::net::IpAddr;

/// A name that breaks its rule. `Display` says what the name is for, what it must look like,
/// and quotes the offending value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a valid {what}: {rule}")]
pub struct InvalidName {
    /// What the name is for ("job name", "worker label", …).
    pub what: &'static str,
    /// The rejected text.
    pub value: String,
    /// The rule it breaks, phrased as what to write instead.
    pub rule: String,
}

/// Names workers use for runtime directories (inside every job directory, and under the
/// bucket root on the worker). Neither a job nor a top-level entry of a job may take them.
pub const RESERVED_RUNTIME_DIRS: [&str; 3] = ["data", "logs", "bin"];

const MAX_NAME: usize = 63;

fn is_lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn check(
    what: &'static str,
    value: &str,
    rule: &str,
    max: usize,
    first: impl Fn(char) -> bool,
    rest: impl Fn(char) -> bool,
) -> Result<(), InvalidName> {
    let mut chars = value.chars();
    let ok = value.len() <= max && chars.next().is_some_and(&first) && chars.all(&rest);
    if ok {
        Ok(())
    } else {
        Err(InvalidName {
            what,
            value: value.to_string(),
            rule: format!("{rule}, at most {max} characters"),
        })
    }
}

/// Checks a job name (the directory name under `workspace/jobs/`).
pub fn validate_job_name(name: &str) -> Result<(), InvalidName> {
    check(
        "job name",
        name,
        "use lowercase letters, digits, '_' and '-', starting with a letter or digit",
        MAX_NAME,
        is_lower_alnum,
        |c| is_lower_alnum(c) || c == '_' || c == '-',
    )?;
    if RESERVED_RUNTIME_DIRS.contains(&name) {
        return Err(InvalidName {
            what: "job name",
            value: name.to_string(),
            rule: "data, logs and bin are reserved for worker runtime directories".to_string(),
        });
    }
    Ok(())
}

/// Checks a worker label or a job selector.
pub fn validate_label(label: &str) -> Result<(), InvalidName> {
    check(
        "label",
        label,
        "use lowercase letters, digits, '_', '.' and '-', starting with a letter or digit",
        MAX_NAME,
        is_lower_alnum,
        |c| is_lower_alnum(c) || matches!(c, '_' | '.' | '-'),
    )
}

/// Checks a tag key (`workers.json`) or a variable key (TOML files).
pub fn validate_key(what: &'static str, key: &str) -> Result<(), InvalidName> {
    check(
        what,
        key,
        "use letters, digits, '_', '.' and '-', starting with a letter, digit or '_'",
        128,
        |c| c.is_ascii_alphanumeric() || c == '_',
        |c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'),
    )
}

/// Checks a port name from `resources.ports`.
pub fn validate_port_name(name: &str) -> Result<(), InvalidName> {
    check(
        "port name",
        name,
        "use a lowercase identifier: lowercase letters, digits and '_', starting with a letter (e.g. \"http_port\")",
        MAX_NAME,
        |c| c.is_ascii_lowercase(),
        |c| is_lower_alnum(c) || c == '_',
    )
}

/// Checks a command name from `commands`.
pub fn validate_command_name(name: &str) -> Result<(), InvalidName> {
    let rule = "start with \"command_\" followed by lowercase letters, digits and '_' (e.g. \"command_migrate\")";
    match name.strip_prefix("command_") {
        Some(rest) if !rest.is_empty() => check(
            "command name",
            name,
            rule,
            MAX_NAME,
            |c| c.is_ascii_lowercase(),
            |c| is_lower_alnum(c) || c == '_',
        ),
        _ => Err(InvalidName {
            what: "command name",
            value: name.to_string(),
            rule: rule.to_string(),
        }),
    }
}

/// Checks a certificate name from `certs` (it becomes `<name>.crt` / `<name>.key`).
pub fn validate_cert_name(name: &str) -> Result<(), InvalidName> {
    check(
        "certificate name",
        name,
        "use lowercase letters, digits, '_' and '-', starting with a letter or digit",
        MAX_NAME,
        is_lower_alnum,
        |c| is_lower_alnum(c) || c == '_' || c == '-',
    )
}

/// Checks the `job_config_selector` from `maand.conf` (empty means no selector).
pub fn validate_job_config_selector(selector: &str) -> Result<(), InvalidName> {
    if selector.is_empty() {
        return Ok(());
    }
    check(
        "job_config_selector",
        selector,
        "use lowercase letters, digits, '_' and '-', starting with a letter or digit (e.g. \"prod\"), or \"\" for bucket.jobs.conf",
        MAX_NAME,
        is_lower_alnum,
        |c| is_lower_alnum(c) || c == '_' || c == '-',
    )
}

/// Checks a worker host and returns its canonical spelling: IP addresses in their standard
/// text form (`::1`, `127.9.0.1`), hostnames lowercased without a trailing dot.
pub fn parse_host(host: &str) -> Result<String, InvalidName> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ip.to_string());
    }
    validate_dns_name("worker host", host)?;
    Ok(host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase())
}

/// Checks a DNS hostname: dot-separated labels of letters, digits and '-', each 1–63
/// characters and not starting or ending with '-', 253 characters in all; the last label may
/// not be all digits (so a mistyped IPv4 address is not taken for a name).
pub fn validate_dns_name(what: &'static str, name: &str) -> Result<(), InvalidName> {
    let invalid = |rule: &str| InvalidName {
        what,
        value: name.to_string(),
        rule: rule.to_string(),
    };
    let general = "use an IPv4 or IPv6 address, or a DNS hostname made of letters, digits, '-' and '.' that does not start with '-' (no spaces, quotes or shell characters)";
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() || name.len() > 253 {
        return Err(invalid(general));
    }
    let labels: Vec<&str> = trimmed.split('.').collect();
    for label in &labels {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(invalid(general));
        }
    }
    if labels
        .last()
        .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(invalid(
            "it looks like an IP address but is not a valid one; write four numbers 0-255 separated by dots, or an IPv6 address",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_allow_lowercase_digits_dash_underscore() {
        for name in ["api", "api-staging", "node_exporter", "3d"] {
            assert!(validate_job_name(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn job_names_reject_paths_case_and_shell_characters() {
        for name in [
            "../etc", "Api", "-api", "_api", "a b", "a/b", "$(x)", "", "a.b",
        ] {
            assert!(validate_job_name(name).is_err(), "{name}");
        }
    }

    #[test]
    fn job_names_reject_reserved_runtime_directories() {
        let error = validate_job_name("data").unwrap_err();
        assert!(error.to_string().contains("reserved"), "{error}");
    }

    #[test]
    fn labels_reject_command_substitution() {
        let error = validate_label("$(reboot)").unwrap_err();
        assert!(error.to_string().contains("\"$(reboot)\""), "{error}");
        assert!(validate_label("zone.a-1_b").is_ok());
    }

    #[test]
    fn hosts_accept_ip_addresses_in_canonical_form() {
        assert_eq!(parse_host("127.9.0.1").unwrap(), "127.9.0.1");
        assert_eq!(parse_host("0:0::1").unwrap(), "::1");
    }

    #[test]
    fn hosts_accept_dns_names_lowercased() {
        assert_eq!(
            parse_host("Node-A.example.com").unwrap(),
            "node-a.example.com"
        );
        assert_eq!(parse_host("worker1").unwrap(), "worker1");
        assert_eq!(parse_host("node.example.").unwrap(), "node.example");
    }

    #[test]
    fn hosts_reject_shell_metacharacters_and_option_injection() {
        for host in [
            "127.9.0.1;rm -rf /",
            "-oProxyCommand=x",
            "a b",
            "`id`",
            "$(id)",
            "'h'",
            "\"h\"",
            "h|x",
            "",
            "host_name",
        ] {
            assert!(parse_host(host).is_err(), "{host}");
        }
    }

    #[test]
    fn hosts_reject_malformed_ipv4() {
        let error = parse_host("127.9.0.256").unwrap_err();
        assert!(error.to_string().contains("IP address"), "{error}");
    }

    #[test]
    fn command_names_need_the_prefix_and_a_body() {
        assert!(validate_command_name("command_migrate").is_ok());
        for name in ["command_", "migrate", "command_Migrate", "command_a-b"] {
            assert!(validate_command_name(name).is_err(), "{name}");
        }
    }

    #[test]
    fn port_names_are_lowercase_identifiers() {
        assert!(validate_port_name("http_port").is_ok());
        for name in ["HttpPort", "1port", "http-port", "_port"] {
            assert!(validate_port_name(name).is_err(), "{name}");
        }
    }

    #[test]
    fn empty_job_config_selector_means_default_file() {
        assert!(validate_job_config_selector("").is_ok());
        assert!(validate_job_config_selector("prod").is_ok());
        assert!(validate_job_config_selector("../prod").is_err());
    }
}
