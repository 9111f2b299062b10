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
    /// Text without any action that tera would read differently.
    GoText(parser::Tree),
}

fn classify(source: &str) -> Result<Syntax, ConvertError> {
    if !lexer::has_action(source) {
        // Plain text to Go. Tera would read a `{#` (a bash `${#array[@]}`) as a comment, and
        // refuses a stray `{%`: such text is protected, everything else is left alone.
        let tera_reads_it =
            outside_raw_blocks(source).contains("{#") || super::check_syntax(source).is_err();
        return Ok(if tera_reads_it {
            Syntax::GoText(parser::Tree {
                body: vec![parser::Node::Text(source.to_string())],
                defines: Default::default(),
            })
        } else {
            Syntax::Tera
        });
    }
    let lexed = match lexer::lex(source) {
        Ok(lexed) => lexed,
        Err(error) => return not_go(source, error),
    };
    let go_only_meaning = lexed.go_only_meaning;
    let tree = match parser::parse(lexed.tokens) {
        Ok(tree) => tree,
        Err(error) => return not_go(source, error),
    };
    // Valid in both languages: tera when every `{{` sits in a `{% raw %}` block (the
    // converter's own output: what it writes for an action is never valid Go), or when it
    // only prints literals which mean the same in both.
    let outside_raw = outside_raw_blocks(source);
    let actions_in_raw_only = !outside_raw.contains("{{");
    // Literal-only actions mean the same in both, but text around them may not: tera reads a
    // `{#` (a bash `${#array[@]}`) as the start of a comment, Go as text.
    let same_in_both =
        !go_only_meaning && prints_only_literals(&tree) && !outside_raw.contains("{#");
    if (actions_in_raw_only || same_in_both) && super::check_syntax(source).is_ok() {
        return Ok(Syntax::Tera);
    }
    Ok(Syntax::Go(tree))
}

/// `source` without its `{% raw %}…{% endraw %}` blocks (as the converter writes them).
fn outside_raw_blocks(source: &str) -> String {
    let mut out = String::new();
    let mut rest = source;
    while let Some(start) = rest.find("{% raw %}") {
        out.push_str(&rest[..start]);
        match rest[start..].find("{% endraw %}") {
            Some(end) => rest = &rest[start + end + "{% endraw %}".len()..],
            None => {
                rest = &rest[start..];
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Every action prints a lone literal (`{{ "text" }}`, `{{ 42 }}`, `{{ true }}`).
fn prints_only_literals(tree: &parser::Tree) -> bool {
    use parser::{Node, Term};
    tree.defines.is_empty()
        && tree.body.iter().all(|node| match node {
            Node::Text(_) => true,
            Node::Action(pipe) => {
                pipe.vars.is_empty()
                    && matches!(pipe.commands.as_slice(), [command]
                        if matches!(command.args.as_slice(), [operand]
                            if operand.fields.is_empty()
                                && matches!(operand.term, Term::Bool(_) | Term::Number(_) | Term::Str(_))))
            }
            _ => false,
        })
}

/// A source that does not parse as Go: tera if it is valid tera, else an error for both.
fn not_go(source: &str, go_error: ConvertError) -> Result<Syntax, ConvertError> {
    match super::check_syntax(source) {
        Ok(()) => Ok(Syntax::Tera),
        Err(tera_error) => Err(ConvertError {
            message: format!(
                "{} (and it is not valid tera either: {})",
                go_error.message,
                tera_error.lines().next().unwrap_or_default()
            ),
            ..go_error
        }),
    }
}

/// Converts `source`. `Ok(None)` when it is not a Go template (it has no action, or it is
/// already tera): converting a converted file changes nothing. A file that is neither valid
/// Go nor valid tera gets Go's parse error.
pub fn convert(source: &str) -> Result<Option<String>, ConvertError> {
    match classify(source)? {
        Syntax::Tera => Ok(None),
        Syntax::Go(tree) | Syntax::GoText(tree) => emit::emit(&tree).map(Some),
    }
}

/// Whether `source` is a Go template that still needs `maand template convert`: it has
/// actions, parses as Go `text/template` and is not valid tera. (Plain text that tera reads
/// differently, which `convert` also protects, does not count.)
pub fn is_go_syntax(source: &str) -> bool {
    matches!(classify(source), Ok(Syntax::Go(_)))
}
