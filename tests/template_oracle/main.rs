//! Go's own `text/template` is the oracle for the Go→tera template converter: every template
//! is rendered by Go (`tests/go_oracle/main.go`, with the Go maand's functions) and by
//! `maand::templates::go::convert` followed by our tera render, over the same KV and context,
//! and the two outputs must be byte-identical. Where Go fails (a missing key, a disallowed
//! namespace, an invalid template...) our side must fail too.
//!
//! Two sources of templates: the corpus in `tests/go_templates/` (one construct or one real
//! job's config file each, with `fixture.json` or a `<name>.json` of its own) and a proptest
//! generator over the supported grammar (`generator.rs`), checked in batches of one Go process
//! each. Shrunk failures are kept in `proptest-regressions/template_oracle.txt`.
//!
//! Needs `go` on PATH (`scripts/install-deps.sh` installs it); without it the tests fail and
//! say so.

mod fixture;
mod generator;
mod oracle;
mod regressions;

use std::fmt::Write as _;
use std::path::Path;

use fixture::Fixture;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

/// One template to check.
struct Case {
    name: String,
    template: String,
    fixture: Fixture,
}

/// What our side made of a template.
struct Ours {
    /// The converted tera text, `None` when `convert` refused or found no Go syntax.
    tera: Option<String>,
    /// How the template was handled, for reports.
    route: &'static str,
    output: Result<String, String>,
}

const TEMPLATE_PATH: &str = "template.tpl";

fn ours(case: &Case) -> Ours {
    let render = |source: &str| {
        maand::templates::render(
            TEMPLATE_PATH,
            source,
            &case.fixture.template_context(),
            &case.fixture.scope(),
            &case.fixture,
        )
        .map_err(|error| error.to_string())
    };
    match maand::templates::go::convert(&case.template) {
        Ok(Some(tera)) => Ours {
            output: render(&tera),
            tera: Some(tera),
            route: "converted",
        },
        Ok(None) => Ours {
            output: render(&case.template),
            tera: None,
            route: "not Go syntax according to convert: rendered as is",
        },
        Err(error) => Ours {
            output: Err(format!("convert refused: {error}")),
            tera: None,
            route: "convert refused",
        },
    }
}

impl Case {
    fn request(&self) -> oracle::Request<'_> {
        oracle::Request {
            name: &self.name,
            template: &self.template,
            fixture: &self.fixture,
        }
    }
}

/// How our result disagrees with Go's, `None` when it agrees: the same output, or both fail.
fn verdict(go: &Result<String, String>, ours: &Result<String, String>) -> Option<&'static str> {
    match (go, ours) {
        (Ok(expected), Ok(actual)) if expected == actual => None,
        (Err(_), Err(_)) => None,
        (Ok(_), Ok(_)) => Some("outputs differ"),
        (Ok(_), Err(_)) => Some("Go renders it, ours fails"),
        (Err(_), Ok(_)) => Some("Go fails, ours renders"),
    }
}

/// Checks every case against Go in one Go process; returns one report per disagreement.
fn disagreements(cases: &[Case]) -> Vec<String> {
    if cases.is_empty() {
        return Vec::new();
    }
    let requests: Vec<oracle::Request<'_>> = cases.iter().map(Case::request).collect();
    let go = oracle::render_batch(&requests);
    cases
        .iter()
        .zip(go)
        .filter_map(|(case, go)| {
            let ours = ours(case);
            let verdict = verdict(&go, &ours.output)?;
            Some(report(case, verdict, &go, &ours))
        })
        .collect()
}

fn report(case: &Case, verdict: &str, go: &Result<String, String>, ours: &Ours) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "=== {}: {verdict}", case.name);
    let _ = writeln!(out, "--- Go template:\n{}", case.template);
    match &ours.tera {
        Some(tera) => {
            let _ = writeln!(out, "--- converted tera:\n{tera}");
        }
        None => {
            let _ = writeln!(out, "--- ({})", ours.route);
        }
    }
    let _ = writeln!(out, "--- Go:   {go:?}");
    let _ = writeln!(out, "--- ours: {:?}", ours.output);
    out
}

fn corpus_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/go_templates"))
}

fn shared_fixture() -> Fixture {
    let path = corpus_dir().join("fixture.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    Fixture::from_json(&text, &path.display().to_string())
}

/// Every `tests/go_templates/*.tpl`, sorted, with `<name>.json` as its fixture if present.
fn corpus() -> Vec<Case> {
    let shared = shared_fixture();
    let mut paths: Vec<_> = std::fs::read_dir(corpus_dir())
        .expect("tests/go_templates exists")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "tpl"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let template = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            let own = path.with_extension("json");
            let fixture = match std::fs::read_to_string(&own) {
                Ok(text) => Fixture::from_json(&text, &own.display().to_string()),
                Err(_) => shared.clone(),
            };
            Case {
                name,
                template,
                fixture,
            }
        })
        .collect()
}

#[test]
fn the_corpus_covers_at_least_sixty_templates_and_go_agrees_with_their_names() {
    let cases = corpus();
    assert!(cases.len() >= 60, "only {} corpus templates", cases.len());
    let requests: Vec<oracle::Request<'_>> = cases.iter().map(Case::request).collect();
    let mut wrong = Vec::new();
    for (case, go) in cases.iter().zip(oracle::render_batch(&requests)) {
        let meant_to_fail = case.name.starts_with("error_");
        if go.is_err() != meant_to_fail {
            wrong.push(format!("{}: Go gave {go:?}", case.name));
        }
    }
    assert!(
        wrong.is_empty(),
        "corpus templates named error_* must fail in Go and all others render:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn every_corpus_template_renders_as_go_renders_it() {
    let cases = corpus();
    let reports = disagreements(&cases);
    assert!(
        reports.is_empty(),
        "{} of {} corpus templates disagree with Go ({}):\n\n{}",
        reports.len(),
        cases.len(),
        reports
            .iter()
            .map(|r| r
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("=== "))
            .collect::<Vec<_>>()
            .join("; "),
        reports.join("\n")
    );
}

/// Templates per Go process, and batches per run: 25 × 48 = 1,200 generated templates.
const BATCH: usize = 48;
const BATCHES: usize = 25;
/// Most shrink steps for one failing template (one Go process each).
const MAX_SHRINK_STEPS: usize = 2048;

/// The template and fixture `bytes` stand for (see `generator.rs`).
fn generated_case(bytes: &[u8], base: &Fixture, name: String) -> Case {
    let generated = generator::generate(bytes, base);
    Case {
        name,
        template: generated.template,
        fixture: generated.fixture,
    }
}

/// Shrinks a failing template alone (one Go process per step, not a whole batch): proptest's
/// value tree simplifies the bytes while the template still disagrees with Go.
fn shrink(tree: &mut impl ValueTree<Value = Vec<u8>>, base: &Fixture, name: &str) -> Case {
    let mut smallest = generated_case(&tree.current(), base, name.to_string());
    for _ in 0..MAX_SHRINK_STEPS {
        if !tree.simplify() {
            break;
        }
        let candidate = generated_case(&tree.current(), base, name.to_string());
        if disagreements(std::slice::from_ref(&candidate)).is_empty() {
            if !tree.complicate() {
                break;
            }
        } else {
            smallest = candidate;
        }
    }
    smallest
}

/// Random templates over the supported grammar, in batches of one Go process each, after
/// replaying every failure stored in `proptest-regressions/template_oracle.txt`. A template
/// that disagrees with Go is shrunk on its own and appended to that file (commit it).
#[test]
fn generated_templates_render_as_go_renders_them() {
    let base = shared_fixture();
    let stored = regressions::load(&base);
    let mut reports = disagreements(&stored);

    let mut runner = TestRunner::default();
    let program = prop::collection::vec(any::<u8>(), 0..384);
    for batch in 0..BATCHES {
        let mut trees: Vec<_> = (0..BATCH)
            .map(|_| program.new_tree(&mut runner).expect("a byte string"))
            .collect();
        let cases: Vec<Case> = trees
            .iter()
            .enumerate()
            .map(|(index, tree)| {
                generated_case(&tree.current(), &base, format!("generated {batch}.{index}"))
            })
            .collect();
        let requests: Vec<oracle::Request<'_>> = cases.iter().map(Case::request).collect();
        let go = oracle::render_batch(&requests);
        let failing: Vec<usize> = cases
            .iter()
            .zip(go)
            .enumerate()
            .filter(|(_, (case, go))| verdict(go, &ours(case).output).is_some())
            .map(|(index, _)| index)
            .collect();
        for index in failing {
            let name = format!("generated {batch}.{index} (shrunk)");
            let smallest = shrink(&mut trees[index], &base, &name);
            regressions::append(&smallest);
            reports.extend(disagreements(std::slice::from_ref(&smallest)));
        }
    }
    assert!(
        reports.is_empty(),
        "{} generated or stored templates disagree with Go (shrunk ones were added to {}):\n\n{}",
        reports.len(),
        regressions::PATH,
        reports.join("\n")
    );
}

/// The generator must stay inside what Go renders, or the property above would only compare
/// errors. Checked on a fixed spread of byte strings (xorshift), independent of proptest.
#[test]
fn the_generator_writes_templates_go_renders() {
    let base = shared_fixture();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next_byte = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state.to_le_bytes()[0]
    };
    let cases: Vec<Case> = (0..600)
        .map(|index| {
            let bytes: Vec<u8> = (0..384).map(|_| next_byte()).collect();
            let generated = generator::generate(&bytes, &base);
            Case {
                name: format!("generated #{index}"),
                template: generated.template,
                fixture: generated.fixture,
            }
        })
        .collect();
    let requests: Vec<oracle::Request<'_>> = cases.iter().map(Case::request).collect();
    let failures: Vec<String> = cases
        .iter()
        .zip(oracle::render_batch(&requests))
        .filter_map(|(case, go)| {
            let error = go.err()?;
            Some(format!(
                "--- {}\n{}\n--- Go: {error}",
                case.name, case.template
            ))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} generated templates fail in Go:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
