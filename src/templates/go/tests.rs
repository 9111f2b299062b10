//! Conversion of Go templates: lexer, parser and emitter, source in, tera out.

use super::*;

fn tera(source: &str) -> String {
    convert(source)
        .unwrap_or_else(|error| panic!("{source:?} failed: {error}"))
        .unwrap_or_else(|| panic!("{source:?} was not recognised as Go"))
}

#[test]
fn dot_fields_become_context_variables() {
    assert_eq!(
        tera("ip={{ .WorkerIP }} v={{.NewVersion}}"),
        "ip={{ worker_ip }} v={{ new_version }}"
    );
}
