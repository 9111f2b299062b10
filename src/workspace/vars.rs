//! TOML variable files (`bucket.conf`, `bucket.jobs*.conf` sections, a job's `vars.toml`)
//! read into flat string maps, the shape the KV store takes. Owns TOML syntax reporting and
//! how scalars become strings; knows nothing about which keys are special.

use std::collections::BTreeMap;

use super::errors::{ErrorKind, FileReport};
use super::names;

/// Parses a TOML document, reporting a syntax error with its line and column.
pub(crate) fn parse_toml(
    content: &[u8],
    kind: ErrorKind,
    report: &mut FileReport<'_>,
) -> Option<toml::Table> {
    let Ok(text) = std::str::from_utf8(content) else {
        report.whole(kind, "the file is not valid UTF-8 text; save it as UTF-8");
        return None;
    };
    match text.parse::<toml::Table>() {
        Ok(table) => Some(table),
        Err(error) => {
            let position = error
                .span()
                .map(|span| {
                    let before = &text[..span.start.min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                    format!(" at line {line}, column {column}")
                })
                .unwrap_or_default();
            report.whole(
                kind,
                format!(
                    "not valid TOML{position}: {}; fix the syntax",
                    error.message().trim_end()
                ),
            );
            None
        }
    }
}

/// The text a scalar TOML value becomes in the KV store, or `None` for arrays and tables.
pub(crate) fn scalar_text(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Datetime(d) => Some(d.to_string()),
        toml::Value::Array(_) | toml::Value::Table(_) => None,
    }
}

/// A TOML type name for messages.
pub(crate) fn toml_type(value: &toml::Value) -> &'static str {
    match value {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a date-time",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

/// Reads one `key = value` pair as a variable, reporting bad keys and non-scalar values at
/// `location`.
pub(crate) fn variable(
    key: &str,
    value: &toml::Value,
    location: &str,
    kind: ErrorKind,
    report: &mut FileReport<'_>,
) -> Option<String> {
    if let Err(error) = names::validate_key("variable name", key) {
        report.at(location, kind, format!("{error}; rename the key"));
        return None;
    }
    match scalar_text(value) {
        Some(text) => Some(text),
        None => {
            report.at(
                location,
                kind,
                format!(
                    "variables must be strings, numbers or booleans, found {}; flatten it into separate keys or encode it as one string",
                    toml_type(value)
                ),
            );
            None
        }
    }
}

/// Parses a flat variables file (a job's `vars.toml`).
pub(crate) fn parse_flat(
    content: &[u8],
    kind: ErrorKind,
    report: &mut FileReport<'_>,
) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    let Some(table) = parse_toml(content, kind, report) else {
        return vars;
    };
    for (key, value) in &table {
        if let Some(text) = variable(key, value, key, kind, report) {
            vars.insert(key.clone(), text);
        }
    }
    vars
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::errors::WorkspaceError;
    use std::path::PathBuf;

    fn flat(text: &str) -> (BTreeMap<String, String>, Vec<WorkspaceError>) {
        let mut errors = Vec::new();
        let mut report = FileReport::new(PathBuf::from("vars.toml"), &mut errors);
        let vars = parse_flat(text.as_bytes(), ErrorKind::InvalidJobVars, &mut report);
        (vars, errors)
    }

    #[test]
    fn scalars_become_strings() {
        let (vars, errors) = flat("a = \"x\"\nb = 3\nc = 1.5\nd = true\n");
        assert!(errors.is_empty());
        let expected: BTreeMap<String, String> =
            [("a", "x"), ("b", "3"), ("c", "1.5"), ("d", "true")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        assert_eq!(vars, expected);
    }

    #[test]
    fn arrays_and_tables_are_rejected_by_key() {
        let (_, errors) = flat("list = [1, 2]\n[section]\nx = 1\n");
        let locations: Vec<_> = errors.iter().map(|e| e.location.clone().unwrap()).collect();
        assert_eq!(locations, ["list", "section"]);
    }

    #[test]
    fn syntax_error_names_the_line() {
        let (_, errors) = flat("a = 1\nb = = 2\n");
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].message.contains("line 2"),
            "{}",
            errors[0].message
        );
    }
}
