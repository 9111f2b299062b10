//! Converts a job template written for the Go maand (Go `text/template` with the Go maand's
//! functions) into an equivalent tera template for [`super::render`].
//!
//! Three stages: [`lexer`] tokens, [`parser`] syntax tree (with Go's parse-time checks), and
//! [`emit`] tera text. The emitter tracks what kind of value (string, integer, bool, list)
//! each expression can hold, and emits plain tera where tera behaves like Go for those kinds
//! and a call to one of the `go_*` functions of [`super::go_semantics`] where it does not
//! (printing lists, `printf`, integer arithmetic, `len` of a string, comparisons of mixed
//! kinds, ...). Text is trimmed at conversion time as Go's `{{-`/`-}}` ask and emitted so
//! tera never reads a delimiter in it. `define`d templates are expanded inline at each
//! `template`/`block` call. Whatever it cannot express exactly is refused with the line and
//! column of the Go construct: the output never renders differently from Go.
//!
//! Pure: text in, text out. The user-facing description is the "Converting Go templates"
//! section of `docs/templates.md`.

mod emit;
mod lexer;
mod parser;
#[cfg(test)]
mod tests;

use std::fmt;

/// A position in the Go source: 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pos {
    pub(crate) line: usize,
    pub(crate) col: usize,
}

/// Why a template cannot be converted: where, which Go construct, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertError {
    pub line: usize,
    pub col: usize,
    /// The Go construct refused or malformed, e.g. `range`, `$x =`, `printf`.
    pub construct: String,
    pub message: String,
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.line, self.col, self.construct, self.message
        )
    }
}

impl std::error::Error for ConvertError {}

/// What a source text is, as far as conversion is concerned.
enum Syntax {
    /// No Go action, or valid tera already: leave it alone.
    Tera,
    /// A Go template (it parses as one, and not as tera).
    Go(parser::Tree),
}

fn classify(source: &str) -> Result<Syntax, ConvertError> {
    if !lexer::has_action(source) {
        return Ok(Syntax::Tera);
    }
    let parsed = lexer::lex(source).and_then(parser::parse);
    let valid_tera = super::check_syntax(source).is_ok();
    match parsed {
        Ok(_) if valid_tera => Ok(Syntax::Tera),
        Ok(tree) => Ok(Syntax::Go(tree)),
        Err(_) if valid_tera => Ok(Syntax::Tera),
        Err(error) => Err(error),
    }
}

/// Converts `source`. `Ok(None)` when it is not a Go template (it has no action, or it is
/// already tera): converting a converted file changes nothing. A file that is neither valid
/// Go nor valid tera gets Go's parse error.
pub fn convert(source: &str) -> Result<Option<String>, ConvertError> {
    match classify(source)? {
        Syntax::Tera => Ok(None),
        Syntax::Go(tree) => emit::emit(&tree).map(Some),
    }
}

/// Whether `source` is a Go template that still needs `maand template convert`: it parses as
/// Go `text/template` and is not valid tera.
pub fn is_go_syntax(source: &str) -> bool {
    matches!(classify(source), Ok(Syntax::Go(_)))
}
