//! Generated templates that once disagreed with Go, shrunk, kept in
//! `proptest-regressions/template_oracle.txt` and replayed before new random ones on every run.
//! One JSON object per line: the template itself (so a stored failure stays the same template
//! when the generator changes) and the two parts of the fixture the generator varies, the
//! worker's labels and the job's `vars/job/<job>` namespace; the rest is
//! `tests/go_templates/fixture.json`. Lines starting with `#` are comments.

use std::collections::BTreeMap;
use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::fixture::Fixture;
use crate::Case;

#[derive(Serialize, Deserialize)]
struct Stored {
    name: String,
    template: String,
    labels: Vec<String>,
    job_vars: BTreeMap<String, String>,
}

fn job_vars_namespace(fixture: &Fixture) -> String {
    format!("vars/job/{}", fixture.context.job)
}

pub const PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/proptest-regressions/template_oracle.txt"
);

const HEADER: &str = "\
# Generated Go templates that disagreed with Go's text/template once, shrunk: one JSON object
# per line ({name, template, labels, job_vars}; the rest of the fixture is
# tests/go_templates/fixture.json). tests/template_oracle replays every line before new
# random templates. Commit this file; delete a line only if the case is wrong, never to make
# the test pass.
";

/// The stored cases, each with `base` as the rest of its fixture.
pub fn load(base: &Fixture) -> Vec<Case> {
    let text = match std::fs::read_to_string(PATH) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("reading {PATH}: {e}"),
    };
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty() && !line.starts_with('#'))
        .map(|(number, line)| {
            let stored: Stored = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{PATH}:{}: not a stored case: {e}", number + 1));
            let mut fixture = base.clone();
            fixture.context.labels = stored.labels;
            fixture.kv.insert(job_vars_namespace(base), stored.job_vars);
            Case {
                name: stored.name,
                template: stored.template,
                fixture,
            }
        })
        .collect()
}

pub fn append(case: &Case) {
    let is_new = !std::path::Path::new(PATH).exists();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(PATH)
        .unwrap_or_else(|e| panic!("opening {PATH}: {e}"));
    let mut text = if is_new {
        HEADER.to_string()
    } else {
        String::new()
    };
    let stored = Stored {
        name: case.name.clone(),
        template: case.template.clone(),
        labels: case.fixture.context.labels.clone(),
        job_vars: case
            .fixture
            .kv
            .get(&job_vars_namespace(&case.fixture))
            .cloned()
            .unwrap_or_default(),
    };
    text.push_str(&serde_json::to_string(&stored).expect("a stored case serializes"));
    text.push('\n');
    file.write_all(text.as_bytes())
        .unwrap_or_else(|e| panic!("writing {PATH}: {e}"));
}
