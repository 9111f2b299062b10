//! Splits a Go `text/template` source into tokens, the way Go's own lexer does: text between
//! actions (already trimmed where `{{- ` or ` -}}` asks for it), comments dropped, and the
//! words, literals and punctuation inside `{{ }}`.
//!
//! It knows nothing about what the tokens mean; [`super::parser`] does.

use super::{ConvertError, Pos};

/// One lexical item with the position of its first character.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Token {
    pub(super) kind: Tok,
    pub(super) pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    /// Literal text outside actions, trim markers already applied.
    Text(String),
    /// `{{` (with or without a trim marker).
    LeftDelim,
    /// `}}` (with or without a trim marker).
    RightDelim,
    /// Spaces, tabs and newlines inside an action (they separate arguments).
    Space,
    /// A bare word: a function name or a keyword (`if`, `range`, `end`, ...).
    Identifier(String),
    /// `.Name` (the dot is not part of the name).
    Field(String),
    /// `$name`, or `$` alone (the name is empty).
    Variable(String),
    /// `.` alone.
    Dot,
    Bool(bool),
    /// An integer constant, already evaluated; `text` keeps the source spelling.
    Number {
        value: i64,
        text: String,
    },
    /// A quoted or raw string, already unquoted.
    Str(String),
    /// `:=`
    Declare,
    /// `=`
    Assign,
    Comma,
    Pipe,
    LeftParen,
    RightParen,
}

const LEFT: &str = "{{";
const RIGHT: &str = "}}";

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_alphanumeric(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// Whether `source` holds at least one `{{`, i.e. could hold a Go action at all.
pub(super) fn has_action(source: &str) -> bool {
    source.contains(LEFT)
}

struct Lexer<'s> {
    source: &'s str,
    at: usize,
    line: usize,
    col: usize,
    tokens: Vec<Token>,
    go_only_meaning: bool,
}

/// The tokens of a source text.
pub(super) struct Lexed {
    pub(super) tokens: Vec<Token>,
    /// It holds a literal that tera would read with another meaning: a character constant, a
    /// non-decimal or signed-after-`{{` number, a raw string with a backslash.
    pub(super) go_only_meaning: bool,
}

/// Tokenizes `source`.
pub(super) fn lex(source: &str) -> Result<Lexed, ConvertError> {
    let mut lexer = Lexer {
        source,
        at: 0,
        line: 1,
        col: 1,
        tokens: Vec::new(),
        go_only_meaning: false,
    };
    lexer.run()?;
    Ok(Lexed {
        tokens: lexer.tokens,
        go_only_meaning: lexer.go_only_meaning,
    })
}

impl<'s> Lexer<'s> {
    fn rest(&self) -> &'s str {
        &self.source[self.at..]
    }

    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            col: self.col,
        }
    }

    fn advance(&mut self, bytes: usize) {
        for c in self.source[self.at..self.at + bytes].chars() {
            if c == '\n' {
                self.line += 1;
                self.col = 1;
            } else {
                self.col += 1;
            }
        }
        self.at += bytes;
    }

    fn push(&mut self, kind: Tok, pos: Pos) {
        self.tokens.push(Token { kind, pos });
    }

    fn error(&self, pos: Pos, construct: &str, message: impl Into<String>) -> ConvertError {
        ConvertError {
            line: pos.line,
            col: pos.col,
            construct: construct.to_string(),
            message: message.into(),
        }
    }

    fn run(&mut self) -> Result<(), ConvertError> {
        let mut trim_next_text = false;
        while self.at < self.source.len() {
            let text_pos = self.pos();
            let end = self.rest().find(LEFT).unwrap_or(self.rest().len());
            let mut text = &self.rest()[..end];
            if trim_next_text {
                text = text.trim_start_matches(is_space);
            }
            let at_action = end < self.rest().len();
            let after = &self.rest()[end..];
            let trim_left = at_action && has_left_trim(&after[LEFT.len()..]);
            if trim_left {
                text = text.trim_end_matches(is_space);
            }
            if !text.is_empty() {
                self.push(Tok::Text(text.to_string()), text_pos);
            }
            self.advance(end);
            if !at_action {
                break;
            }
            trim_next_text = self.action(trim_left)?;
        }
        Ok(())
    }

    /// Lexes one action starting at `{{`; returns whether it ended with a right trim marker.
    fn action(&mut self, trim_left: bool) -> Result<bool, ConvertError> {
        let start = self.pos();
        self.advance(LEFT.len());
        if trim_left {
            self.advance(2);
        }
        if self.rest().starts_with("/*") {
            return self.comment(start);
        }
        self.push(Tok::LeftDelim, start);
        loop {
            if let Some(trim) = self.at_right_delim() {
                let pos = self.pos();
                self.advance(if trim { 2 + RIGHT.len() } else { RIGHT.len() });
                self.push(Tok::RightDelim, pos);
                return Ok(trim);
            }
            let pos = self.pos();
            let Some(c) = self.rest().chars().next() else {
                return Err(self.error(start, "action", "unclosed action: `}}` is missing"));
            };
            match c {
                c if is_space(c) => {
                    let len = self.rest().len() - self.rest().trim_start_matches(is_space).len();
                    self.advance(len);
                    self.push(Tok::Space, pos);
                }
                '=' => {
                    self.advance(1);
                    self.push(Tok::Assign, pos);
                }
                ':' => {
                    if !self.rest().starts_with(":=") {
                        return Err(self.error(pos, "action", "expected :="));
                    }
                    self.advance(2);
                    self.push(Tok::Declare, pos);
                }
                '|' => {
                    self.advance(1);
                    self.push(Tok::Pipe, pos);
                }
                ',' => {
                    self.advance(1);
                    self.push(Tok::Comma, pos);
                }
                '(' => {
                    self.advance(1);
                    self.push(Tok::LeftParen, pos);
                }
                ')' => {
                    self.advance(1);
                    self.push(Tok::RightParen, pos);
                }
                '"' => {
                    let value = self.quoted(pos)?;
                    self.push(Tok::Str(value), pos);
                }
                '`' => {
                    let Some(len) = self.rest()[1..].find('`') else {
                        return Err(self.error(
                            pos,
                            "raw string",
                            "unterminated raw quoted string",
                        ));
                    };
                    let value = self.rest()[1..1 + len].replace('\r', "");
                    self.go_only_meaning |= value.contains('\\');
                    self.advance(len + 2);
                    self.push(Tok::Str(value), pos);
                }
                '\'' => {
                    let value = self.char_constant(pos)?;
                    self.go_only_meaning = true;
                    self.push(
                        Tok::Number {
                            value,
                            text: String::new(),
                        },
                        pos,
                    );
                }
                '$' => {
                    let name = self.word(1);
                    self.advance(1 + name.len());
                    self.push(Tok::Variable(name.to_string()), pos);
                }
                '.' => {
                    let next = self.rest()[1..].chars().next();
                    if next.is_some_and(|c| c.is_ascii_digit()) {
                        return Err(self.error(
                            pos,
                            "number",
                            "floating-point numbers are not supported by the converter",
                        ));
                    }
                    let name = self.word(1);
                    self.advance(1 + name.len());
                    if name.is_empty() {
                        self.push(Tok::Dot, pos);
                    } else {
                        self.push(Tok::Field(name.to_string()), pos);
                    }
                }
                '+' | '-' | '0'..='9' => {
                    let after_delim = matches!(
                        self.tokens.last(),
                        Some(Token {
                            kind: Tok::LeftDelim,
                            ..
                        })
                    );
                    let token = self.number(pos)?;
                    if let Tok::Number { text, .. } = &token {
                        let plain = text.strip_prefix('-').unwrap_or(text);
                        self.go_only_meaning |= (after_delim && !plain.eq(text))
                            || text.starts_with('+')
                            || !(plain == "0"
                                || (!plain.starts_with('0')
                                    && plain.chars().all(|c| c.is_ascii_digit())));
                    }
                    self.push(token, pos);
                }
                c if is_alphanumeric(c) => {
                    let word = self.word(0);
                    self.advance(word.len());
                    let kind = match word {
                        "true" => Tok::Bool(true),
                        "false" => Tok::Bool(false),
                        _ => Tok::Identifier(word.to_string()),
                    };
                    self.push(kind, pos);
                }
                other => {
                    return Err(self.error(
                        pos,
                        "action",
                        format!("unrecognized character in action: {other:?}"),
                    ));
                }
            }
        }
    }

    /// `Some(trim)` when the rest starts with `}}` or ` -}}`.
    fn at_right_delim(&self) -> Option<bool> {
        let rest = self.rest();
        let mut chars = rest.chars();
        if let (Some(space), Some('-')) = (chars.next(), chars.next()) {
            if is_space(space) && rest[space.len_utf8() + 1..].starts_with(RIGHT) {
                return Some(true);
            }
        }
        rest.starts_with(RIGHT).then_some(false)
    }

    fn comment(&mut self, start: Pos) -> Result<bool, ConvertError> {
        let Some(end) = self.rest().find("*/") else {
            return Err(self.error(start, "comment", "unclosed comment"));
        };
        self.advance(end + 2);
        match self.at_right_delim() {
            Some(trim) => {
                self.advance(if trim { 2 + RIGHT.len() } else { RIGHT.len() });
                Ok(trim)
            }
            None => Err(self.error(start, "comment", "comment ends before closing delimiter")),
        }
    }

    /// The alphanumeric word starting `skip` bytes into the rest.
    fn word(&self, skip: usize) -> &'s str {
        let rest = &self.rest()[skip..];
        let len = rest.len() - rest.trim_start_matches(is_alphanumeric).len();
        &rest[..len]
    }

    fn number(&mut self, pos: Pos) -> Result<Tok, ConvertError> {
        let rest = self.rest();
        let len = rest
            .char_indices()
            .take_while(|(i, c)| {
                c.is_ascii_alphanumeric()
                    || *c == '_'
                    || *c == '.'
                    || (*i == 0 && "+-".contains(*c))
            })
            .count();
        let text = &rest[..len];
        self.advance(len);
        match parse_integer(text) {
            Some(value) => Ok(Tok::Number {
                value,
                text: text.to_string(),
            }),
            None => Err(self.error(
                pos,
                "number",
                format!(
                    "`{text}` is not an integer the converter supports (floating-point and \
                     complex constants are refused)"
                ),
            )),
        }
    }

    fn quoted(&mut self, pos: Pos) -> Result<String, ConvertError> {
        let rest = self.rest();
        let mut escaped = false;
        let mut end = None;
        for (i, c) in rest.char_indices().skip(1) {
            match c {
                '\n' => break,
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        let Some(end) = end else {
            return Err(self.error(pos, "string", "unterminated quoted string"));
        };
        let body = &rest[1..end];
        self.advance(end + 1);
        unquote(body, '"')
            .ok_or_else(|| self.error(pos, "string", format!("invalid string literal \"{body}\"")))
    }

    fn char_constant(&mut self, pos: Pos) -> Result<i64, ConvertError> {
        let rest = self.rest();
        let mut escaped = false;
        let mut end = None;
        for (i, c) in rest.char_indices().skip(1) {
            match c {
                '\n' => break,
                '\\' if !escaped => escaped = true,
                '\'' if !escaped => {
                    end = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        let Some(end) = end else {
            return Err(self.error(pos, "character constant", "unterminated character constant"));
        };
        let body = &rest[1..end];
        self.advance(end + 1);
        let value = unquote(body, '\'').filter(|value| value.chars().count() == 1);
        match value.and_then(|value| value.chars().next()) {
            Some(c) => Ok(i64::from(u32::from(c))),
            None => Err(self.error(
                pos,
                "character constant",
                format!("invalid character constant '{body}'"),
            )),
        }
    }
}

/// Whether the text after `{{` starts with Go's left trim marker `- `.
fn has_left_trim(after_delim: &str) -> bool {
    let mut chars = after_delim.chars();
    chars.next() == Some('-') && chars.next().is_some_and(is_space)
}

/// Go's integer constant syntax: decimal, `0x`, `0o`, `0b`, legacy octal `0777`, `_` between
/// digits, an optional sign. `None` for anything else (floats included).
pub(super) fn parse_integer(text: &str) -> Option<i64> {
    let (negative, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let lower = digits.to_ascii_lowercase();
    let (radix, body) = if let Some(body) = lower.strip_prefix("0x") {
        (16, body.to_string())
    } else if let Some(body) = lower.strip_prefix("0o") {
        (8, body.to_string())
    } else if let Some(body) = lower.strip_prefix("0b") {
        (2, body.to_string())
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower[1..].to_string())
    } else {
        (10, lower.clone())
    };
    let body = body.strip_prefix('_').unwrap_or(&body);
    if body.is_empty() || body.starts_with('_') || body.ends_with('_') || body.contains("__") {
        return None;
    }
    let cleaned: String = body.chars().filter(|c| *c != '_').collect();
    if !cleaned.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u64::from_str_radix(&cleaned, radix).ok()?;
    if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// Go's escape sequences in a quoted string or character constant body. `None` when an escape
/// is invalid or the bytes it produces are not UTF-8.
pub(super) fn unquote(body: &str, quote: char) -> Option<String> {
    let mut bytes = Vec::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0; 4];
            bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let escaped = chars.next()?;
        let simple = match escaped {
            'a' => Some(0x07),
            'b' => Some(0x08),
            'f' => Some(0x0c),
            'n' => Some(b'\n'),
            'r' => Some(b'\r'),
            't' => Some(b'\t'),
            'v' => Some(0x0b),
            '\\' => Some(b'\\'),
            c if c == quote => Some(c as u8),
            _ => None,
        };
        if let Some(byte) = simple {
            bytes.push(byte);
            continue;
        }
        let hex = |chars: &mut std::str::Chars<'_>, count: usize| -> Option<u32> {
            let digits: String = chars.by_ref().take(count).collect();
            (digits.len() == count)
                .then(|| u32::from_str_radix(&digits, 16).ok())
                .flatten()
        };
        match escaped {
            'x' => bytes.push(u8::try_from(hex(&mut chars, 2)?).ok()?),
            'u' | 'U' => {
                let code = hex(&mut chars, if escaped == 'u' { 4 } else { 8 })?;
                let c = char::from_u32(code)?;
                let mut buf = [0; 4];
                bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            '0'..='7' => {
                let rest: String = chars.by_ref().take(2).collect();
                let digits = format!("{escaped}{rest}");
                if digits.len() != 3 {
                    return None;
                }
                bytes.push(u8::try_from(u32::from_str_radix(&digits, 8).ok()?).ok()?);
            }
            _ => return None,
        }
    }
    String::from_utf8(bytes).ok()
}
