//! Reading JSON workspace files field by field while recording every problem with its JSON
//! path (`resources.ports.http_port`, `[2].host`), instead of stopping at the first one as a
//! derived deserializer would. Owns path spelling, unknown-field detection and the wording
//! of type mismatches; knows nothing about what the fields mean.

use std::path::Path;

use serde_json::{Map, Value};

use super::errors::{ErrorKind, FileReport};

/// Reads and parses a JSON file; a syntax error is reported (with line and column) and
/// yields `None`.
pub(crate) fn parse_file(
    content: &[u8],
    kind: ErrorKind,
    report: &mut FileReport<'_>,
) -> Option<Value> {
    match serde_json::from_slice::<Value>(content) {
        Ok(value) => Some(value),
        Err(error) => {
            report.whole(
                kind,
                format!(
                    "not valid JSON at line {}, column {}: {}; fix the syntax",
                    error.line(),
                    error.column(),
                    syntax_reason(&error)
                ),
            );
            None
        }
    }
}

fn syntax_reason(error: &serde_json::Error) -> String {
    // serde_json appends " at line L column C"; the position is already given.
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    }
}

/// `parent.key`, or `key` at the root.
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// `parent[index]`.
pub(crate) fn index(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// The JSON type of a value, for messages.
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A value together with its JSON path.
#[derive(Clone, Copy)]
pub(crate) struct Field<'v> {
    pub(crate) value: &'v Value,
    pub(crate) path: &'v str,
}

/// A JSON object being read, with the path it was found at.
pub(crate) struct Object<'v> {
    pub(crate) path: String,
    map: &'v Map<String, Value>,
}

impl<'v> Object<'v> {
    /// Expects `value` to be an object; reports otherwise.
    pub(crate) fn expect(
        value: &'v Value,
        path: &str,
        kind: ErrorKind,
        report: &mut FileReport<'_>,
    ) -> Option<Self> {
        match value {
            Value::Object(map) => Some(Object {
                path: path.to_string(),
                map,
            }),
            other => {
                let place = if path.is_empty() {
                    "the file"
                } else {
                    "this field"
                };
                report.at(
                    path,
                    kind,
                    format!(
                        "{place} must be a JSON object {{...}}, found {}",
                        type_name(other)
                    ),
                );
                None
            }
        }
    }

    /// Reports every key not in `allowed`, suggesting the closest allowed spelling.
    pub(crate) fn reject_unknown(
        &self,
        allowed: &[&str],
        kind: ErrorKind,
        report: &mut FileReport<'_>,
    ) {
        for key in self.map.keys() {
            if allowed.contains(&key.as_str()) {
                continue;
            }
            let hint = match closest(key, allowed) {
                Some(best) => format!("did you mean \"{best}\"? "),
                None => String::new(),
            };
            report.at(
                &join(&self.path, key),
                kind,
                format!(
                    "unknown field \"{key}\"; {hint}allowed fields here: {}; fix the spelling or remove it",
                    allowed.join(", ")
                ),
            );
        }
    }

    /// The value at `key`, if present.
    pub(crate) fn get(&self, key: &str) -> Option<&'v Value> {
        self.map.get(key)
    }

    /// All entries in key order.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&'v String, &'v Value)> + 'v {
        self.map.iter()
    }

    /// The JSON path of `key` inside this object.
    pub(crate) fn path_of(&self, key: &str) -> String {
        join(&self.path, key)
    }
}

/// Expects a string.
pub(crate) fn string<'v>(
    field: Field<'v>,
    kind: ErrorKind,
    report: &mut FileReport<'_>,
) -> Option<&'v str> {
    match field.value {
        Value::String(s) => Some(s),
        other => {
            report.at(
                field.path,
                kind,
                format!("must be a string, found {}", type_name(other)),
            );
            None
        }
    }
}

/// Expects a boolean.
pub(crate) fn boolean(
    field: Field<'_>,
    kind: ErrorKind,
    report: &mut FileReport<'_>,
) -> Option<bool> {
    match field.value {
        Value::Bool(b) => Some(*b),
        other => {
            report.at(
                field.path,
                kind,
                format!("must be true or false, found {}", type_name(other)),
            );
            None
        }
    }
}

/// Expects a non-negative integer that fits in `u32` and is at least `min`.
pub(crate) fn count(
    field: Field<'_>,
    min: u32,
    kind: ErrorKind,
    report: &mut FileReport<'_>,
) -> Option<u32> {
    let value = field.value.as_u64().and_then(|n| u32::try_from(n).ok());
    match value {
        Some(n) if n >= min => Some(n),
        _ => {
            report.at(
                field.path,
                kind,
                format!(
                    "must be a whole number of at least {min}, found {}; write e.g. {}",
                    describe(field.value),
                    min.max(1)
                ),
            );
            None
        }
    }
}

/// Expects an array of strings.
pub(crate) fn strings<'v>(
    field: Field<'v>,
    kind: ErrorKind,
    report: &mut FileReport<'_>,
) -> Option<Vec<(String, &'v str)>> {
    let Value::Array(items) = field.value else {
        report.at(
            field.path,
            kind,
            format!(
                "must be an array of strings such as [\"a\", \"b\"], found {}",
                type_name(field.value)
            ),
        );
        return None;
    };
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let path = index(field.path, i);
        match item {
            Value::String(s) => out.push((path, s.as_str())),
            other => {
                ok = false;
                report.at(
                    &path,
                    kind,
                    format!("must be a string, found {}", type_name(other)),
                );
            }
        }
    }
    ok.then_some(out)
}

/// A short rendering of a value for messages (`70000`, `"abc"`, `an object`).
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Bool(b) => b.to_string(),
        other => type_name(other).to_string(),
    }
}

/// The allowed name closest to `key` by edit distance, if it is plausibly a typo.
fn closest<'a>(key: &str, allowed: &[&'a str]) -> Option<&'a str> {
    allowed
        .iter()
        .map(|candidate| (edit_distance(key, candidate), *candidate))
        .filter(|(distance, candidate)| *distance <= 2.max(candidate.len() / 4))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

/// Reads a whole file for a parser, reporting an I/O failure as [`ErrorKind::Io`].
pub(crate) fn read_file(path: &Path, report: &mut FileReport<'_>) -> Option<Vec<u8>> {
    match std::fs::read(path) {
        Ok(content) => Some(content),
        Err(error) => {
            report.whole(
                ErrorKind::Io,
                format!("cannot read the file: {error}; check that it exists and is readable"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_join_keys_and_indexes() {
        assert_eq!(join("", "resources"), "resources");
        assert_eq!(join("resources", "ports"), "resources.ports");
        assert_eq!(index("", 2), "[2]");
        assert_eq!(join(&index("", 2), "host"), "[2].host");
    }

    #[test]
    fn unknown_fields_suggest_the_closest_allowed_name() {
        assert_eq!(closest("memry", &["memory", "cpu"]), Some("memory"));
        assert_eq!(closest("zzzzzz", &["memory", "cpu"]), None);
    }
}
