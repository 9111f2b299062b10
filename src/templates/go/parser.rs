//! Builds the syntax tree of a Go `text/template` from [`super::lexer`] tokens, with the checks
//! Go's parser makes before anything runs: known functions, declared variables, balanced
//! `end`s, `break`/`continue` only inside `range`, `define` only at the top level.
//!
//! It does not judge what can be converted; [`super::emit`] does.

use std::collections::BTreeMap;

use super::lexer::{Tok, Token};
use super::{ConvertError, Pos};

/// A parsed template file: its main body and the templates it defines (`define`, `block`).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Tree {
    pub(super) body: Vec<Node>,
    pub(super) defines: BTreeMap<String, Define>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Define {
    pub(super) body: Vec<Node>,
    pub(super) pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Node {
    Text(String),
    /// `{{ pipeline }}`: prints the value unless the pipeline declares or assigns a variable.
    Action(Pipeline),
    If(Control),
    Range(Control),
    With(Control),
    /// `{{ template "name" pipeline }}` (also what a `block` leaves in place).
    Template {
        name: String,
        arg: Option<Pipeline>,
        pos: Pos,
    },
    Break(Pos),
    Continue(Pos),
}

/// `if`, `range` and `with`: the pipeline, the body, and the `else` branch if any.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Control {
    pub(super) pipe: Pipeline,
    pub(super) body: Vec<Node>,
    pub(super) otherwise: Option<Vec<Node>>,
    pub(super) pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Pipeline {
    /// Variables declared (`:=`) or assigned (`=`), without the `$`.
    pub(super) vars: Vec<String>,
    pub(super) assign: bool,
    pub(super) commands: Vec<Command>,
    pub(super) pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Command {
    pub(super) args: Vec<Operand>,
    pub(super) pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Operand {
    pub(super) term: Term,
    /// `.A.B` after the term.
    pub(super) fields: Vec<String>,
    pub(super) pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Term {
    Bool(bool),
    Number(i64),
    Str(String),
    Nil,
    /// `.`; field access on the dot is `Dot` with fields.
    Dot,
    /// `$name`; `$` alone has an empty name.
    Variable(String),
    /// A function name.
    Function(String),
    /// `( pipeline )`.
    Pipe(Box<Pipeline>),
}

/// Go's built-in functions and the functions of the Go maand's deploy templates.
pub(super) const FUNCTIONS: &[&str] = &[
    "and",
    "or",
    "not",
    "len",
    "index",
    "slice",
    "print",
    "printf",
    "println",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "call",
    "html",
    "js",
    "urlquery",
    "get",
    "getOptional",
    "getSecret",
    "keys",
    "split",
    "join",
    "trim",
    "upper",
    "lower",
    "int",
    "add",
    "sub",
    "mul",
    "div",
    "min",
    "max",
    "scrapeConfigs",
    "ruleFiles",
];

/// How a list of nodes ended.
enum ListEnd {
    End,
    Else(Pos),
    /// `{{ else if pipeline }}`; the `if` keyword has been consumed.
    ElseIf(Pos),
    Eof,
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    /// Declared variables in scope, innermost last (`$` always first).
    vars: Vec<String>,
    range_depth: usize,
    defines: BTreeMap<String, Define>,
    last_pos: Pos,
}

/// Parses the tokens of one file.
pub(super) fn parse(tokens: Vec<Token>) -> Result<Tree, ConvertError> {
    let mut parser = Parser {
        tokens,
        at: 0,
        vars: vec![String::new()],
        range_depth: 0,
        defines: BTreeMap::new(),
        last_pos: Pos { line: 1, col: 1 },
    };
    let (body, end) = parser.list(true)?;
    match end {
        ListEnd::Eof => Ok(Tree {
            body,
            defines: parser.defines,
        }),
        ListEnd::End => Err(parser.error(parser.last_pos, "end", "unexpected {{end}}")),
        ListEnd::Else(pos) | ListEnd::ElseIf(pos) => {
            Err(parser.error(pos, "else", "unexpected {{else}}"))
        }
    }
}

fn error(pos: Pos, construct: &str, message: impl Into<String>) -> ConvertError {
    ConvertError {
        line: pos.line,
        col: pos.col,
        construct: construct.to_string(),
        message: message.into(),
    }
}

impl Parser {
    fn error(&self, pos: Pos, construct: &str, message: impl Into<String>) -> ConvertError {
        error(pos, construct, message)
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        if let Some(token) = &token {
            self.last_pos = token.pos;
            self.at += 1;
        }
        token
    }

    fn skip_space(&mut self) {
        while matches!(
            self.peek(),
            Some(Token {
                kind: Tok::Space,
                ..
            })
        ) {
            self.at += 1;
        }
    }

    /// The next token that is not a space; end of input is an error inside an action.
    fn next_non_space(&mut self) -> Result<Token, ConvertError> {
        self.skip_space();
        self.next()
            .ok_or_else(|| self.error(self.last_pos, "action", "unexpected end of input"))
    }

    fn peek_non_space(&mut self) -> Option<&Token> {
        self.skip_space();
        self.peek()
    }

    fn expect_right_delim(&mut self, construct: &str) -> Result<(), ConvertError> {
        let token = self.next_non_space()?;
        match token.kind {
            Tok::RightDelim => Ok(()),
            other => Err(self.error(
                token.pos,
                construct,
                format!("unexpected {} in {construct}", describe(&other)),
            )),
        }
    }

    /// Nodes until `{{end}}`, `{{else}}` or the end of input.
    fn list(&mut self, top_level: bool) -> Result<(Vec<Node>, ListEnd), ConvertError> {
        let mut nodes = Vec::new();
        while let Some(token) = self.next() {
            match token.kind {
                Tok::Text(text) => nodes.push(Node::Text(text)),
                Tok::LeftDelim => {
                    if let Some(end) = self.action(&mut nodes, top_level, token.pos)? {
                        return Ok((nodes, end));
                    }
                }
                other => {
                    return Err(self.error(
                        token.pos,
                        "template",
                        format!("unexpected {}", describe(&other)),
                    ))
                }
            }
        }
        Ok((nodes, ListEnd::Eof))
    }

    /// One action after `{{`; returns how the list ends if the action ends it.
    fn action(
        &mut self,
        nodes: &mut Vec<Node>,
        top_level: bool,
        pos: Pos,
    ) -> Result<Option<ListEnd>, ConvertError> {
        let Some(first) = self.peek_non_space().cloned() else {
            return Err(self.error(pos, "action", "unclosed action"));
        };
        if let Tok::Identifier(word) = &first.kind {
            let keyword_pos = first.pos;
            match word.as_str() {
                "end" => {
                    self.next();
                    self.expect_right_delim("end")?;
                    return Ok(Some(ListEnd::End));
                }
                "else" => {
                    self.next();
                    if let Some(Token {
                        kind: Tok::Identifier(word),
                        ..
                    }) = self.peek_non_space()
                    {
                        if word == "if" {
                            self.next();
                            return Ok(Some(ListEnd::ElseIf(keyword_pos)));
                        }
                    }
                    self.expect_right_delim("else")?;
                    return Ok(Some(ListEnd::Else(keyword_pos)));
                }
                "if" | "range" | "with" => {
                    self.next();
                    let control = self.control(word, keyword_pos)?;
                    nodes.push(match word.as_str() {
                        "if" => Node::If(control),
                        "range" => Node::Range(control),
                        _ => Node::With(control),
                    });
                    return Ok(None);
                }
                "define" => {
                    self.next();
                    if !top_level {
                        return Err(self.error(keyword_pos, "define", "unexpected define"));
                    }
                    self.define(keyword_pos)?;
                    return Ok(None);
                }
                "block" => {
                    self.next();
                    nodes.push(self.block(keyword_pos)?);
                    return Ok(None);
                }
                "template" => {
                    self.next();
                    nodes.push(self.template_call(keyword_pos)?);
                    return Ok(None);
                }
                "break" | "continue" => {
                    self.next();
                    if self.range_depth == 0 {
                        return Err(self.error(
                            keyword_pos,
                            word,
                            format!("{{{{{word}}}}} outside {{{{range}}}}"),
                        ));
                    }
                    self.expect_right_delim(word)?;
                    nodes.push(if word == "break" {
                        Node::Break(keyword_pos)
                    } else {
                        Node::Continue(keyword_pos)
                    });
                    return Ok(None);
                }
                "nil" => {}
                _ => {}
            }
        }
        let pipe = self.pipeline("command", false, pos)?;
        nodes.push(Node::Action(pipe));
        Ok(None)
    }

    fn control(&mut self, keyword: &str, pos: Pos) -> Result<Control, ConvertError> {
        let marker = self.vars.len();
        let pipe = self.pipeline(keyword, keyword == "range", pos)?;
        if keyword == "range" {
            self.range_depth += 1;
        }
        let (body, end) = self.list(false)?;
        if keyword == "range" {
            self.range_depth -= 1;
        }
        let otherwise = match end {
            ListEnd::End => None,
            ListEnd::Eof => {
                return Err(self.error(
                    pos,
                    keyword,
                    format!("unexpected EOF: {keyword} has no {{{{end}}}}"),
                ))
            }
            ListEnd::Else(_) => {
                let (otherwise, end) = self.list(false)?;
                if !matches!(end, ListEnd::End) {
                    return Err(self.error(pos, keyword, format!("{keyword} has no {{{{end}}}}")));
                }
                Some(otherwise)
            }
            ListEnd::ElseIf(else_pos) => {
                // `{{else if x}}...{{end}}` is `{{else}}{{if x}}...{{end}}{{end}}`.
                let nested = self.control("if", else_pos)?;
                Some(vec![Node::If(nested)])
            }
        };
        self.vars.truncate(marker);
        Ok(Control {
            pipe,
            body,
            otherwise,
            pos,
        })
    }

    fn template_name(&mut self, construct: &str) -> Result<(String, Pos), ConvertError> {
        let token = self.next_non_space()?;
        match token.kind {
            Tok::Str(name) => Ok((name, token.pos)),
            other => Err(self.error(
                token.pos,
                construct,
                format!(
                    "unexpected {} in {construct}: expected a quoted name",
                    describe(&other)
                ),
            )),
        }
    }

    fn define(&mut self, pos: Pos) -> Result<(), ConvertError> {
        let (name, _) = self.template_name("define")?;
        self.expect_right_delim("define")?;
        let outer_vars = std::mem::replace(&mut self.vars, vec![String::new()]);
        let outer_range = std::mem::replace(&mut self.range_depth, 0);
        let (body, end) = self.list(false)?;
        self.vars = outer_vars;
        self.range_depth = outer_range;
        if !matches!(end, ListEnd::End) {
            return Err(self.error(pos, "define", "define has no {{end}}"));
        }
        self.add_define(name, Define { body, pos });
        Ok(())
    }

    /// Go keeps the last definition of a name, except that an empty one does not replace a
    /// non-empty one.
    fn add_define(&mut self, name: String, define: Define) {
        let empty = define
            .body
            .iter()
            .all(|node| matches!(node, Node::Text(text) if text.trim_matches(|c: char| c.is_whitespace()).is_empty()));
        if empty && self.defines.contains_key(&name) {
            return;
        }
        self.defines.insert(name, define);
    }

    fn block(&mut self, pos: Pos) -> Result<Node, ConvertError> {
        let (name, _) = self.template_name("block")?;
        let arg = self.optional_pipeline("block", pos)?;
        let outer_vars = std::mem::replace(&mut self.vars, vec![String::new()]);
        let outer_range = std::mem::replace(&mut self.range_depth, 0);
        let (body, end) = self.list(false)?;
        self.vars = outer_vars;
        self.range_depth = outer_range;
        if !matches!(end, ListEnd::End) {
            return Err(self.error(pos, "block", "block has no {{end}}"));
        }
        self.add_define(name.clone(), Define { body, pos });
        Ok(Node::Template { name, arg, pos })
    }

    fn template_call(&mut self, pos: Pos) -> Result<Node, ConvertError> {
        let (name, _) = self.template_name("template")?;
        let arg = self.optional_pipeline("template", pos)?;
        Ok(Node::Template { name, arg, pos })
    }

    fn optional_pipeline(
        &mut self,
        construct: &str,
        pos: Pos,
    ) -> Result<Option<Pipeline>, ConvertError> {
        if matches!(
            self.peek_non_space(),
            Some(Token {
                kind: Tok::RightDelim,
                ..
            })
        ) {
            self.next();
            return Ok(None);
        }
        Ok(Some(self.pipeline(construct, false, pos)?))
    }

    /// A pipeline up to and including `}}`.
    fn pipeline(
        &mut self,
        construct: &str,
        in_range: bool,
        pos: Pos,
    ) -> Result<Pipeline, ConvertError> {
        let pos = self.peek_non_space().map_or(pos, |token| token.pos);
        let (vars, assign) = self.declarations(construct, in_range)?;
        let commands = self.commands(construct, false)?;
        if commands.is_empty() {
            return Err(self.error(pos, construct, format!("missing value for {construct}")));
        }
        for name in &vars {
            if !assign {
                self.vars.push(name.clone());
            }
        }
        Ok(Pipeline {
            vars,
            assign,
            commands,
            pos,
        })
    }

    /// `$x :=`, `$x =` or (in `range`) `$i, $v :=` at the start of a pipeline.
    fn declarations(
        &mut self,
        construct: &str,
        in_range: bool,
    ) -> Result<(Vec<String>, bool), ConvertError> {
        let start = self.at;
        self.skip_space();
        let Some(Token {
            kind: Tok::Variable(first),
            pos,
        }) = self.peek().cloned()
        else {
            self.at = start;
            return Ok((Vec::new(), false));
        };
        self.next();
        match self.peek_non_space().map(|token| token.kind.clone()) {
            Some(Tok::Declare) | Some(Tok::Assign) => {
                let assign = matches!(self.next().map(|t| t.kind), Some(Tok::Assign));
                if assign {
                    self.check_declared(&first, pos)?;
                }
                Ok((vec![first], assign))
            }
            Some(Tok::Comma) if in_range => {
                self.next();
                let token = self.next_non_space()?;
                let Tok::Variable(second) = token.kind else {
                    return Err(self.error(token.pos, construct, "expected a variable after ,"));
                };
                let token = self.next_non_space()?;
                let assign = match token.kind {
                    Tok::Declare => false,
                    Tok::Assign => true,
                    _ => {
                        return Err(self.error(
                            token.pos,
                            construct,
                            "expected := or = after variables",
                        ))
                    }
                };
                if assign {
                    self.check_declared(&first, pos)?;
                    self.check_declared(&second, pos)?;
                }
                Ok((vec![first, second], assign))
            }
            Some(Tok::Comma) => Err(self.error(
                pos,
                construct,
                format!("too many declarations in {construct}"),
            )),
            _ => {
                self.at = start;
                Ok((Vec::new(), false))
            }
        }
    }

    fn check_declared(&self, name: &str, pos: Pos) -> Result<(), ConvertError> {
        if self.vars.iter().any(|var| var == name) {
            Ok(())
        } else {
            Err(self.error(pos, "variable", format!("undefined variable \"${name}\"")))
        }
    }

    /// Commands separated by `|`, up to `}}` (or `)` inside parentheses).
    fn commands(&mut self, construct: &str, in_parens: bool) -> Result<Vec<Command>, ConvertError> {
        let mut commands = Vec::new();
        let mut args = Vec::new();
        let mut command_pos = None;
        loop {
            let Some(token) = self.peek_non_space().cloned() else {
                return Err(self.error(self.last_pos, construct, "unclosed action"));
            };
            match token.kind {
                Tok::RightDelim if !in_parens => {
                    self.next();
                    break;
                }
                Tok::RightParen if in_parens => {
                    self.next();
                    break;
                }
                Tok::Pipe => {
                    self.next();
                    if args.is_empty() {
                        return Err(self.error(token.pos, construct, "missing command before |"));
                    }
                    commands.push(Command {
                        args: std::mem::take(&mut args),
                        pos: command_pos.take().unwrap_or(token.pos),
                    });
                }
                _ => {
                    command_pos.get_or_insert(token.pos);
                    args.push(self.operand(construct)?);
                }
            }
        }
        if !args.is_empty() {
            commands.push(Command {
                args,
                pos: command_pos.unwrap_or(self.last_pos),
            });
        } else if !commands.is_empty() {
            return Err(self.error(self.last_pos, construct, "missing command after |"));
        }
        for (stage, command) in commands.iter().enumerate().skip(1) {
            if matches!(
                command.args[0].term,
                Term::Bool(_) | Term::Number(_) | Term::Str(_) | Term::Nil | Term::Dot
            ) && command.args[0].fields.is_empty()
            {
                return Err(self.error(
                    command.pos,
                    construct,
                    format!("non executable command in pipeline stage {}", stage + 1),
                ));
            }
        }
        Ok(commands)
    }

    fn operand(&mut self, construct: &str) -> Result<Operand, ConvertError> {
        let token = self.next_non_space()?;
        let pos = token.pos;
        let term = match token.kind {
            Tok::Bool(value) => Term::Bool(value),
            Tok::Number { value, .. } => Term::Number(value),
            Tok::Str(value) => Term::Str(value),
            Tok::Dot => Term::Dot,
            Tok::Field(name) => {
                let mut fields = vec![name];
                self.more_fields(&mut fields);
                return Ok(Operand {
                    term: Term::Dot,
                    fields,
                    pos,
                });
            }
            Tok::Variable(name) => {
                self.check_declared(&name, pos)?;
                Term::Variable(name)
            }
            Tok::Identifier(name) if name == "nil" => Term::Nil,
            Tok::Identifier(name) => {
                if !FUNCTIONS.contains(&name.as_str()) {
                    return Err(self.error(
                        pos,
                        "function",
                        format!("function \"{name}\" not defined"),
                    ));
                }
                Term::Function(name)
            }
            Tok::LeftParen => {
                let (vars, assign) = self.declarations(construct, false)?;
                if !vars.is_empty() {
                    return Err(self.error(
                        pos,
                        "parenthesized pipeline",
                        "a variable declared inside parentheses is not supported by the converter",
                    ));
                }
                let commands = self.commands(construct, true)?;
                if commands.is_empty() {
                    return Err(self.error(pos, construct, "missing value in parentheses"));
                }
                Term::Pipe(Box::new(Pipeline {
                    vars,
                    assign,
                    commands,
                    pos,
                }))
            }
            other => {
                return Err(self.error(
                    pos,
                    construct,
                    format!("unexpected {} in {construct}", describe(&other)),
                ))
            }
        };
        let mut fields = Vec::new();
        self.more_fields(&mut fields);
        if !fields.is_empty() {
            match term {
                Term::Bool(_) | Term::Number(_) | Term::Str(_) | Term::Nil | Term::Dot => {
                    return Err(self.error(pos, construct, "unexpected . after term"));
                }
                Term::Function(ref name) => {
                    return Err(self.error(
                        pos,
                        construct,
                        format!(
                            "a field of the result of `{name}` is not supported by the converter"
                        ),
                    ));
                }
                _ => {}
            }
        }
        Ok(Operand { term, fields, pos })
    }

    /// `.Name` tokens directly following (no space) the previous token.
    fn more_fields(&mut self, fields: &mut Vec<String>) {
        while let Some(Token {
            kind: Tok::Field(name),
            ..
        }) = self.peek()
        {
            fields.push(name.clone());
            self.at += 1;
        }
    }
}

fn describe(token: &Tok) -> String {
    match token {
        Tok::Text(_) => "text".to_string(),
        Tok::LeftDelim => "{{".to_string(),
        Tok::RightDelim => "}}".to_string(),
        Tok::Space => "space".to_string(),
        Tok::Identifier(name) => format!("<{name}>"),
        Tok::Field(name) => format!("<.{name}>"),
        Tok::Variable(name) => format!("<${name}>"),
        Tok::Dot => "<.>".to_string(),
        Tok::Bool(value) => format!("<{value}>"),
        Tok::Number { value, .. } => format!("<{value}>"),
        Tok::Str(value) => format!("{value:?}"),
        Tok::Declare => "\":=\"".to_string(),
        Tok::Assign => "\"=\"".to_string(),
        Tok::Comma => "\",\"".to_string(),
        Tok::Pipe => "\"|\"".to_string(),
        Tok::LeftParen => "\"(\"".to_string(),
        Tok::RightParen => "\")\"".to_string(),
    }
}
