//! Generated templates that once disagreed with Go, shrunk, kept in
//! `proptest-regressions/template_oracle.txt` and replayed before new random ones on every run.
//! One JSON object per line (`name`, `template`, `fixture`), so a stored failure stays the same
//! template even when the generator changes; lines starting with `#` are comments.

use std::io::Write;

use crate::Case;

pub const PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/proptest-regressions/template_oracle.txt"
);

const HEADER: &str = "\
# Generated Go templates that disagreed with Go's text/template once, shrunk: one JSON object
# per line ({name, template, fixture}). tests/template_oracle replays every line before new
# random templates. Commit this file; delete a line only if the case is wrong, never to make
# the test pass.
";

pub fn load() -> Vec<Case> {
    let text = match std::fs::read_to_string(PATH) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("reading {PATH}: {e}"),
    };
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty() && !line.starts_with('#'))
        .map(|(number, line)| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{PATH}:{}: not a stored case: {e}", number + 1))
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
    text.push_str(&serde_json::to_string(case).expect("a case serializes"));
    text.push('\n');
    file.write_all(text.as_bytes())
        .unwrap_or_else(|e| panic!("writing {PATH}: {e}"));
}
