//! Alert and recording rule files under `_prometheus/alerts/`: their validation at build and
//! the `runbook` → `runbook_url` rewrite at deploy.

use super::Problem;
use serde_json::Value;
use std::collections::BTreeSet;

/// The folder of a job's rule files.
pub const ALERTS_DIR: &str = "_prometheus/alerts/";
/// The folder of a job's runbooks (`<slug>.md`).
pub const RUNBOOKS_DIR: &str = "_prometheus/runbooks/";

/// Whether a job file is a rule file: a `.yaml` or `.yml` directly under `_prometheus/alerts/`.
pub fn is_rule_file(path: &str) -> bool {
    path.strip_prefix(ALERTS_DIR).is_some_and(|name| {
        !name.contains('/') && (name.ends_with(".yaml") || name.ends_with(".yml"))
    })
}

/// The runbook slug of a job file under `_prometheus/runbooks/`, if it is a runbook.
pub fn runbook_slug(path: &str) -> Option<&str> {
    path.strip_prefix(RUNBOOKS_DIR)
        .filter(|name| !name.contains('/'))
        .and_then(|name| name.strip_suffix(".md"))
        .filter(|slug| !slug.is_empty())
}

/// The alert names a rule file defines, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleFile {
    pub alerts: Vec<String>,
}

/// Validates one rule file: a mapping with a `groups` list; each group has a `name` and a
/// `rules` list; each rule has `expr` and exactly one of `alert` or `record`; a
/// `annotations.runbook` names one of `runbooks`.
pub fn validate(
    job: &str,
    file: &str,
    text: &str,
    runbooks: &BTreeSet<String>,
) -> Result<RuleFile, Vec<Problem>> {
    let problem = |yaml_path: String, message: String| Problem {
        job: job.to_string(),
        file: file.to_string(),
        yaml_path,
        message,
    };
    let value: Value = serde_norway::from_str(text)
        .map_err(|e| vec![problem(String::new(), format!("not valid YAML: {e}"))])?;
    let Some(Value::Array(groups)) = value.get("groups") else {
        return Err(vec![problem(
            ".groups".into(),
            "a rule file is a mapping with a `groups` list (Prometheus rule file format)".into(),
        )]);
    };
    let mut problems = Vec::new();
    let mut found = RuleFile::default();
    for (g, group) in groups.iter().enumerate() {
        let at = format!(".groups[{g}]");
        if group
            .get("name")
            .and_then(Value::as_str)
            .is_none_or(|n| n.trim().is_empty())
        {
            problems.push(problem(
                format!("{at}.name"),
                "every group needs a name".into(),
            ));
        }
        let Some(Value::Array(rules)) = group.get("rules") else {
            problems.push(problem(
                format!("{at}.rules"),
                "every group needs a `rules` list".into(),
            ));
            continue;
        };
        for (r, rule) in rules.iter().enumerate() {
            let at = format!("{at}.rules[{r}]");
            if !rule.is_object() {
                problems.push(problem(at, "a rule must be a mapping".into()));
                continue;
            }
            let text_field = |name: &str| {
                rule.get(name)
                    .and_then(Value::as_str)
                    .filter(|s| !s.trim().is_empty())
            };
            let expr_ok = match rule.get("expr") {
                Some(Value::String(s)) => !s.trim().is_empty(),
                Some(Value::Number(_)) => true,
                _ => false,
            };
            if !expr_ok {
                problems.push(problem(
                    format!("{at}.expr"),
                    "every rule needs an expr".into(),
                ));
            }
            match (text_field("alert"), text_field("record")) {
                (Some(alert), None) => found.alerts.push(alert.to_string()),
                (None, Some(_)) => {}
                (Some(_), Some(_)) => problems.push(problem(
                    at.clone(),
                    "a rule sets both `alert` and `record`; keep exactly one".into(),
                )),
                (None, None) => problems.push(problem(
                    at.clone(),
                    "a rule needs exactly one of `alert` (alerting rule) or `record` (recording rule)".into(),
                )),
            }
            if let Some(runbook) = rule.get("annotations").and_then(|a| a.get("runbook")) {
                match runbook.as_str() {
                    Some(slug) if runbooks.contains(slug) => {}
                    Some(slug) => problems.push(problem(
                        format!("{at}.annotations.runbook"),
                        format!("runbook {slug:?} has no file: add {RUNBOOKS_DIR}{slug}.md or fix the name"),
                    )),
                    None => problems.push(problem(
                        format!("{at}.annotations.runbook"),
                        "runbook must be a string (the runbook's file name without .md)".into(),
                    )),
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(found)
    } else {
        Err(problems)
    }
}

/// The rule file with every `annotations.runbook` removed and, unless the rule already sets
/// one, `annotations.runbook_url` pointing at `<console_base>/<job>/<slug>.html`. A file
/// without `runbook` annotations is returned unchanged.
pub fn with_runbook_urls(text: &str, job: &str, console_base: &str) -> Result<String, String> {
    let mut value: Value =
        serde_norway::from_str(text).map_err(|e| format!("not valid YAML: {e}"))?;
    let mut changed = false;
    let groups = value.get_mut("groups").and_then(Value::as_array_mut);
    for group in groups.into_iter().flatten() {
        let rules = group.get_mut("rules").and_then(Value::as_array_mut);
        for rule in rules.into_iter().flatten() {
            let Some(annotations) = rule.get_mut("annotations").and_then(Value::as_object_mut)
            else {
                continue;
            };
            let Some(runbook) = annotations.remove("runbook") else {
                continue;
            };
            changed = true;
            if !annotations.contains_key("runbook_url") {
                let slug = runbook.as_str().unwrap_or_default();
                annotations.insert(
                    "runbook_url".into(),
                    Value::String(format!("{console_base}/{job}/{slug}.html")),
                );
            }
        }
    }
    if !changed {
        return Ok(text.to_string());
    }
    serde_norway::to_string(&value).map_err(|e| e.to_string())
}
