//! Writes the tera equivalent of a parsed Go template.
//!
//! Every expression is emitted together with the kinds of value it can hold ([`Kinds`]);
//! plain tera is used where tera behaves like Go for those kinds, a `go_*` function or filter
//! (see [`crate::templates::go_semantics`]) where it does not. Go variables get unique tera
//! names (Go's block scoping then needs nothing from tera), `define`d templates are expanded
//! inline at each call, and text is emitted so that tera reads it literally.
//!
//! Anything that cannot be expressed exactly is a [`ConvertError`] at the Go construct.

use std::collections::{BTreeMap, BTreeSet};

use super::parser::{Command, Control, Define, Node, Operand, Pipeline, Term, Tree, FUNCTIONS};
use super::{ConvertError, Pos};
use crate::templates::go_semantics::{self, GoValue};

/// The kinds of value an expression may hold at run time (a bit set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Kinds(u8);

const STR: Kinds = Kinds(1);
const INT: Kinds = Kinds(2);
const BOOL: Kinds = Kinds(4);
const LIST: Kinds = Kinds(8);

impl Kinds {
    fn union(self, other: Kinds) -> Kinds {
        Kinds(self.0 | other.0)
    }

    fn overlaps(self, other: Kinds) -> bool {
        self.0 & other.0 != 0
    }
}

/// A tera expression.
#[derive(Debug, Clone)]
struct Expr {
    code: String,
    kinds: Kinds,
    /// Safe to use as an operand without parentheses.
    atomic: bool,
    /// Its value, when known at conversion time (then it is written as text when printed).
    constant: Option<GoValue>,
}

impl Expr {
    fn new(code: impl Into<String>, kinds: Kinds, atomic: bool) -> Expr {
        Expr {
            code: code.into(),
            kinds,
            atomic,
            constant: None,
        }
    }

    fn operand(&self) -> String {
        if self.atomic {
            self.code.clone()
        } else {
            format!("({})", self.code)
        }
    }

    /// A tera variable name holds it (no need to copy it into another one).
    fn is_variable(&self) -> bool {
        self.constant.is_none()
            && !self.code.is_empty()
            && self
                .code
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
    }
}

/// What a Go value evaluates to during conversion.
#[derive(Debug, Clone)]
enum Value {
    /// The template data of the Go maand (the allocation); `worker` is `.WorkerData`.
    Data {
        worker: bool,
    },
    /// `nil`, or the dot of a template called without an argument.
    Nil,
    Expr(Expr),
}

/// A Go variable: the tera name holding it, or the template data itself.
#[derive(Debug, Clone)]
struct Binding {
    value: Value,
    /// Number of enclosing tera `for` loops where it was declared.
    loop_depth: usize,
    /// Index in declaration order, the key of [`Plan`].
    id: usize,
}

/// The variables and the dot of one template being expanded.
struct Frame {
    dollar: Value,
    dot: Value,
    /// Go scopes, innermost last: Go name (without `$`) and binding.
    scopes: Vec<Vec<(String, Binding)>>,
}

/// Tera's reserved words, the context variables and `loop`: never used for a Go variable.
const RESERVED: &[&str] = &[
    "true",
    "True",
    "false",
    "False",
    "loop",
    "self",
    "and",
    "or",
    "not",
    "is",
    "in",
    "continue",
    "break",
    "none",
    "None",
    "null",
    "if",
    "else",
    "allocation_id",
    "job",
    "worker_ip",
    "worker_id",
    "labels",
    "current_version",
    "new_version",
    "bucket_path",
    "job_path",
    "get",
    "get_optional",
    "get_secret",
    "keys",
];

/// The fields of the Go maand's template data and our context variables.
const DATA_FIELDS: &[(&str, &str, Kinds)] = &[
    ("AllocationID", "allocation_id", STR),
    ("Job", "job", STR),
    ("CurrentVersion", "current_version", STR),
    ("NewVersion", "new_version", STR),
    ("WorkerIP", "worker_ip", STR),
    ("WorkerID", "worker_id", STR),
    ("Labels", "labels", LIST),
    ("BucketPath", "bucket_path", STR),
    ("JobPath", "job_path", STR),
];

const WORKER_FIELDS: &[&str] = &["WorkerIP", "WorkerID", "Labels"];

struct Emitter<'t> {
    defines: &'t BTreeMap<String, Define>,
    out: String,
    /// Text not yet written (adjacent text and constants are merged).
    pending: String,
    frames: Vec<Frame>,
    loop_depth: usize,
    names: BTreeSet<String>,
    next_id: usize,
    /// What the previous pass learnt about the variables.
    plan: Plan,
    /// What this pass learns.
    observed: Plan,
    /// `define`d templates being expanded (recursion is refused).
    expanding: Vec<String>,
}

/// What one pass learns about the variables (by declaration index), for the next pass.
#[derive(Debug, Clone, Default, PartialEq)]
struct Plan {
    /// Kinds a variable may hold, `=` assignments included.
    kinds: BTreeMap<usize, Kinds>,
    /// Variables assigned with `=` somewhere.
    assigned: BTreeSet<usize>,
    /// Variables assigned from inside a deeper `range` than their declaration: kept at the
    /// top level of tera (`set_global`) under their unique name.
    global: BTreeSet<usize>,
}

/// Converts the tree. Runs until what is known of every variable is stable: an `=`
/// assignment can widen a variable, or need it global, after earlier code already used it.
pub(super) fn emit(tree: &Tree) -> Result<String, ConvertError> {
    let mut plan = Plan::default();
    for _ in 0..8 {
        let mut emitter = Emitter {
            defines: &tree.defines,
            out: String::new(),
            pending: String::new(),
            frames: vec![Frame {
                dollar: Value::Data { worker: false },
                dot: Value::Data { worker: false },
                scopes: vec![Vec::new()],
            }],
            loop_depth: 0,
            names: BTreeSet::new(),
            next_id: 0,
            plan: plan.clone(),
            observed: Plan {
                global: plan.global.clone(),
                ..Plan::default()
            },
            expanding: Vec::new(),
        };
        emitter.list(&tree.body)?;
        emitter.flush();
        if emitter.observed == plan {
            return Ok(emitter.out);
        }
        plan = emitter.observed;
    }
    Err(error(
        Pos { line: 1, col: 1 },
        "$x =",
        "the kinds of values assigned to variables do not settle",
    ))
}

fn error(pos: Pos, construct: &str, message: impl Into<String>) -> ConvertError {
    ConvertError {
        line: pos.line,
        col: pos.col,
        construct: construct.to_string(),
        message: message.into(),
    }
}

/// A tera string literal for `text`.
fn string_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Literal output text, written so tera never sees a delimiter in it.
fn protect(text: &str) -> String {
    let risky =
        text.contains("{{") || text.contains("{%") || text.contains("{#") || text.ends_with('{');
    if !risky {
        return text.to_string();
    }
    if !text.contains("endraw") {
        return format!("{{% raw %}}{text}{{% endraw %}}");
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '{' && matches!(chars.peek(), None | Some('{' | '%' | '#')) {
            out.push_str("{% raw %}{{% endraw %}");
        } else {
            out.push(c);
        }
    }
    out
}

fn kinds_name(kinds: Kinds) -> &'static str {
    match kinds {
        STR => "a string",
        INT => "an integer",
        BOOL => "a bool",
        LIST => "a list",
        _ => "a value",
    }
}

impl Emitter<'_> {
    fn frame(&mut self) -> &mut Frame {
        self.frames.last_mut().expect("a frame is always open")
    }

    fn flush(&mut self) {
        if !self.pending.is_empty() {
            let text = std::mem::take(&mut self.pending);
            self.out.push_str(&protect(&text));
        }
    }

    fn tag(&mut self, tag: &str) {
        self.flush();
        self.out.push_str(tag);
    }

    /// A tera variable name for the Go name `base`, unused in this template.
    fn fresh(&mut self, base: &str) -> String {
        let mut clean: String = base
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if clean.is_empty()
            || clean.starts_with(|c: char| c.is_ascii_digit())
            || clean.starts_with("__")
        {
            clean = format!("v_{clean}");
        }
        let mut name = clean.clone();
        let mut n = 2;
        while RESERVED.contains(&name.as_str())
            || FUNCTIONS.contains(&name.as_str())
            || self.names.contains(&name)
        {
            name = format!("{clean}_{n}");
            n += 1;
        }
        self.names.insert(name.clone());
        name
    }

    fn declare(&mut self, go_name: &str, value: Value) {
        let id = self.next_id;
        self.next_id += 1;
        let loop_depth = if self.plan.global.contains(&id) {
            0
        } else {
            self.loop_depth
        };
        let binding = Binding {
            value,
            loop_depth,
            id,
        };
        self.frame()
            .scopes
            .last_mut()
            .expect("a scope is always open")
            .push((go_name.to_string(), binding));
    }

    /// A new tera variable for `$go_name` holding `expr`; writes the `set`.
    fn declare_expr(&mut self, go_name: &str, expr: Expr) -> Expr {
        let id = self.next_id;
        let kinds = expr
            .kinds
            .union(self.plan.kinds.get(&id).copied().unwrap_or(Kinds(0)));
        let name = self.fresh(go_name);
        let keyword = if self.plan.global.contains(&id) && self.loop_depth > 0 {
            "set_global"
        } else {
            "set"
        };
        self.tag(&format!("{{% {keyword} {name} = {} %}}", expr.code));
        let held = Expr::new(name, kinds, true);
        self.declare(go_name, Value::Expr(held.clone()));
        self.observed.kinds.entry(id).or_insert(kinds);
        held
    }

    fn lookup(&self, go_name: &str, pos: Pos) -> Result<Binding, ConvertError> {
        let frame = self.frames.last().expect("a frame is always open");
        if go_name.is_empty() {
            return Ok(Binding {
                value: frame.dollar.clone(),
                loop_depth: 0,
                id: usize::MAX,
            });
        }
        frame
            .scopes
            .iter()
            .rev()
            .flat_map(|scope| scope.iter().rev())
            .find(|(name, _)| name == go_name)
            .map(|(_, binding)| binding.clone())
            .ok_or_else(|| {
                error(
                    pos,
                    &format!("${go_name}"),
                    "this variable is declared in another branch and has no value here (Go \
                     fails at run time)",
                )
            })
    }

    fn push_scope(&mut self) {
        self.frame().scopes.push(Vec::new());
    }

    fn pop_scope(&mut self) {
        self.frame().scopes.pop();
    }

    fn list(&mut self, nodes: &[Node]) -> Result<(), ConvertError> {
        for node in nodes {
            self.node(node)?;
        }
        Ok(())
    }

    fn node(&mut self, node: &Node) -> Result<(), ConvertError> {
        match node {
            Node::Text(text) => {
                self.pending.push_str(text);
                Ok(())
            }
            Node::Action(pipe) => self.action(pipe),
            Node::If(control) => self.if_node(control),
            Node::Range(control) => self.range(control),
            Node::With(control) => self.with(control),
            Node::Template { name, arg, pos } => self.template(name, arg.as_ref(), *pos),
            Node::Break(_) => {
                self.tag("{% break %}");
                Ok(())
            }
            Node::Continue(_) => {
                self.tag("{% continue %}");
                Ok(())
            }
        }
    }

    fn action(&mut self, pipe: &Pipeline) -> Result<(), ConvertError> {
        if pipe.assign {
            return self.assign(pipe);
        }
        let value = self.pipeline(pipe)?;
        if let Some(name) = pipe.vars.first() {
            match value {
                Value::Expr(expr) => {
                    self.declare_expr(name, expr);
                }
                Value::Data { .. } => self.declare(name, value),
                Value::Nil => {
                    return Err(error(
                        pipe.pos,
                        &format!("${name} :="),
                        "nil values are not supported",
                    ))
                }
            }
            return Ok(());
        }
        if let Value::Nil = value {
            // What Go prints for a missing value (the dot of `template "x"` without argument).
            self.pending.push_str("<no value>");
            return Ok(());
        }
        let expr = self.printable(value, pipe.pos)?;
        match &expr.constant {
            Some(value) => self
                .pending
                .push_str(&go_semantics::sprint(std::slice::from_ref(value))),
            None => {
                let code = if [STR, INT, BOOL].contains(&expr.kinds) {
                    expr.code
                } else {
                    format!("{} | go_fmt", expr.operand())
                };
                self.tag(&format!("{{{{ {code} }}}}"));
            }
        }
        Ok(())
    }

    fn printable(&self, value: Value, pos: Pos) -> Result<Expr, ConvertError> {
        match value {
            Value::Expr(expr) => Ok(expr),
            Value::Data { .. } => Err(error(
                pos,
                "{{ . }}",
                "printing the whole template data (a Go struct) is not supported",
            )),
            Value::Nil => Err(error(pos, "nil", "printing nil is not supported")),
        }
    }

    fn assign(&mut self, pipe: &Pipeline) -> Result<(), ConvertError> {
        let go_name = &pipe.vars[0];
        let construct = format!("${go_name} =");
        let binding = self.lookup(go_name, pipe.pos)?;
        let Value::Expr(target) = binding.value else {
            return Err(error(
                pipe.pos,
                &construct,
                "assigning to a variable that holds the template data or $ is not supported",
            ));
        };
        let expr = match self.pipeline(pipe)? {
            Value::Expr(expr) => expr,
            _ => {
                return Err(error(
                    pipe.pos,
                    &construct,
                    "only strings, integers, bools and lists can be assigned",
                ))
            }
        };
        self.observed.assigned.insert(binding.id);
        let keyword = if binding.loop_depth == self.loop_depth {
            "set"
        } else if binding.loop_depth == 0 {
            "set_global"
        } else {
            // Declared inside an outer `range`: the next pass declares it globally.
            self.observed.global.insert(binding.id);
            "set_global"
        };
        let widened = target.kinds.union(expr.kinds);
        let entry = self.observed.kinds.entry(binding.id).or_insert(widened);
        *entry = entry.union(widened);
        self.tag(&format!(
            "{{% {keyword} {} = {} %}}",
            target.code, expr.code
        ));
        Ok(())
    }

    /// The condition of `if`/`with`: declares the pipeline's variable if it has one.
    fn condition(&mut self, pipe: &Pipeline, construct: &str) -> Result<Value, ConvertError> {
        if pipe.assign {
            return Err(error(
                pipe.pos,
                construct,
                "an assignment (=) as the condition is not supported",
            ));
        }
        let value = self.pipeline(pipe)?;
        match (pipe.vars.first(), value) {
            (Some(name), Value::Expr(expr)) => Ok(Value::Expr(self.declare_expr(name, expr))),
            (Some(name), data @ Value::Data { .. }) => {
                self.declare(name, data.clone());
                Ok(data)
            }
            (_, Value::Nil) => Err(error(
                pipe.pos,
                construct,
                "a nil condition is not supported",
            )),
            (None, value) => Ok(value),
        }
    }

    fn if_node(&mut self, control: &Control) -> Result<(), ConvertError> {
        self.push_scope();
        let result = self.if_chain(control, "if");
        self.pop_scope();
        result
    }

    fn if_chain(&mut self, control: &Control, keyword: &str) -> Result<(), ConvertError> {
        let condition = match self.condition(&control.pipe, "if")? {
            Value::Expr(expr) => expr.code,
            _ => "true".to_string(),
        };
        self.tag(&format!("{{% {keyword} {condition} %}}"));
        self.push_scope();
        self.list(&control.body)?;
        self.pop_scope();
        match control.otherwise.as_deref() {
            None => {}
            Some([Node::If(nested)]) if nested.pipe.vars.is_empty() => {
                self.push_scope();
                let result = self.if_chain(nested, "elif");
                self.pop_scope();
                return result;
            }
            Some(otherwise) => {
                self.tag("{% else %}");
                self.push_scope();
                self.list(otherwise)?;
                self.pop_scope();
            }
        }
        self.tag("{% endif %}");
        Ok(())
    }

    fn range(&mut self, control: &Control) -> Result<(), ConvertError> {
        let pipe = &control.pipe;
        if pipe.assign {
            return Err(error(
                control.pos,
                "range",
                "`range $x = ...` (assigning the loop values to existing variables) is not supported",
            ));
        }
        let declared = pipe.vars.clone();
        let unnamed = Pipeline {
            vars: Vec::new(),
            ..pipe.clone()
        };
        let list = match self.pipeline(&unnamed)? {
            Value::Expr(expr) if expr.kinds == LIST => expr,
            Value::Expr(expr) => {
                return Err(error(
                    control.pos,
                    "range",
                    format!(
                        "range over {} is not supported: only lists (split, keys, .Labels) can \
                         be iterated",
                        kinds_name(expr.kinds)
                    ),
                ))
            }
            _ => {
                return Err(error(
                    control.pos,
                    "range",
                    "range over the template data or nil is not supported",
                ))
            }
        };
        let (index_name, element_name) = match declared.as_slice() {
            [] => (None, None),
            [element] => (None, Some(element.clone())),
            [index, element] => (Some(index.clone()), Some(element.clone())),
            _ => return Err(error(control.pos, "range", "too many variables")),
        };
        self.push_scope();
        // An element variable assigned with `=` gets its own tera variable: the loop's own
        // one holds the dot.
        let element_id = self.next_id;
        let separate = element_name.is_some() && self.plan.assigned.contains(&element_id);
        let item = match (&element_name, separate) {
            (Some(name), false) => self.fresh(name),
            (Some(name), true) => self.fresh(&format!("{name}_item")),
            (None, _) => self.fresh("item"),
        };
        self.tag(&format!("{{% for {item} in {} %}}", list.code));
        self.loop_depth += 1;
        let element = Expr::new(item, STR, true);
        if let Some(name) = &element_name {
            if separate {
                self.declare_expr(name, element.clone());
            } else {
                self.declare(name, Value::Expr(element.clone()));
            }
        }
        if let Some(name) = &index_name {
            self.declare_expr(name, Expr::new("loop.index0", INT, true));
        }
        let outer_dot = std::mem::replace(&mut self.frame().dot, Value::Expr(element));
        self.push_scope();
        let body = self.list(&control.body);
        self.pop_scope();
        self.frame().dot = outer_dot;
        self.loop_depth -= 1;
        body?;
        if let Some(otherwise) = &control.otherwise {
            self.tag("{% else %}");
            self.push_scope();
            self.list(otherwise)?;
            self.pop_scope();
        }
        self.tag("{% endfor %}");
        self.pop_scope();
        Ok(())
    }

    fn with(&mut self, control: &Control) -> Result<(), ConvertError> {
        self.push_scope();
        let result = self.with_inner(control);
        self.pop_scope();
        result
    }

    fn with_inner(&mut self, control: &Control) -> Result<(), ConvertError> {
        // Dot gets a name of its own even when the pipeline is a variable: the body may assign
        // that variable (`$x = …`), and dot must keep the value `with` started with.
        let value = match self.condition(&control.pipe, "with")? {
            Value::Expr(expr) => {
                let name = self.fresh("value");
                self.tag(&format!("{{% set {name} = {} %}}", expr.code));
                Value::Expr(Expr::new(name, expr.kinds, true))
            }
            value => value,
        };
        let Value::Expr(held) = &value else {
            // The template data is a struct: always true.
            let outer = std::mem::replace(&mut self.frame().dot, value);
            self.push_scope();
            let result = self.list(&control.body);
            self.pop_scope();
            self.frame().dot = outer;
            return result;
        };
        self.tag(&format!("{{% if {} %}}", held.code));
        let outer = std::mem::replace(&mut self.frame().dot, value.clone());
        self.push_scope();
        let body = self.list(&control.body);
        self.pop_scope();
        self.frame().dot = outer;
        body?;
        if let Some(otherwise) = &control.otherwise {
            self.tag("{% else %}");
            self.push_scope();
            self.list(otherwise)?;
            self.pop_scope();
        }
        self.tag("{% endif %}");
        Ok(())
    }

    fn template(
        &mut self,
        name: &str,
        arg: Option<&Pipeline>,
        pos: Pos,
    ) -> Result<(), ConvertError> {
        let construct = format!("template \"{name}\"");
        let Some(define) = self.defines.get(name) else {
            return Err(error(
                pos,
                &construct,
                format!("no template \"{name}\" is defined in this file"),
            ));
        };
        if self.expanding.iter().any(|open| open == name) {
            return Err(error(
                pos,
                &construct,
                "recursive templates are not supported",
            ));
        }
        let dot = match arg {
            None => Value::Nil,
            Some(pipe) => match self.pipeline(pipe)? {
                Value::Expr(expr) if !expr.is_variable() && expr.constant.is_none() => {
                    let held = self.fresh(&format!("{name}_arg"));
                    self.tag(&format!("{{% set {held} = {} %}}", expr.code));
                    Value::Expr(Expr::new(held, expr.kinds, true))
                }
                value => value,
            },
        };
        self.expanding.push(name.to_string());
        self.frames.push(Frame {
            dollar: dot.clone(),
            dot,
            scopes: vec![Vec::new()],
        });
        let result = self.list(&define.body);
        self.frames.pop();
        self.expanding.pop();
        result
    }

    fn pipeline(&mut self, pipe: &Pipeline) -> Result<Value, ConvertError> {
        let mut piped: Option<Value> = None;
        for command in &pipe.commands {
            piped = Some(self.command(command, piped)?);
        }
        Ok(piped.expect("the parser refuses empty pipelines"))
    }

    fn command(&mut self, command: &Command, piped: Option<Value>) -> Result<Value, ConvertError> {
        let first = &command.args[0];
        if let (Term::Function(name), true) = (&first.term, first.fields.is_empty()) {
            let mut args = Vec::with_capacity(command.args.len());
            for arg in &command.args[1..] {
                args.push((self.operand(arg)?, arg.pos));
            }
            if let Some(value) = piped {
                args.push((value, command.pos));
            }
            return self.call(name, args, first.pos);
        }
        if command.args.len() > 1 || piped.is_some() {
            return Err(error(
                first.pos,
                "command",
                "only a function can be given arguments (Go fails at run time)",
            ));
        }
        self.operand(first)
    }

    fn operand(&mut self, operand: &Operand) -> Result<Value, ConvertError> {
        let pos = operand.pos;
        let base = match &operand.term {
            Term::Bool(b) => Value::Expr(constant(GoValue::Bool(*b))),
            Term::Number(n) => Value::Expr(constant(GoValue::Int(*n))),
            Term::Str(s) => Value::Expr(constant(GoValue::Str(s.clone()))),
            Term::Nil => Value::Nil,
            Term::Dot => self.frames.last().expect("a frame").dot.clone(),
            Term::Variable(name) => self.lookup(name, pos)?.value,
            Term::Function(name) => self.call(name, Vec::new(), pos)?,
            Term::Pipe(pipe) => self.pipeline(pipe)?,
        };
        operand
            .fields
            .iter()
            .try_fold(base, |value, field| self.field(value, field, pos))
    }

    fn field(&self, value: Value, field: &str, pos: Pos) -> Result<Value, ConvertError> {
        let construct = format!(".{field}");
        match value {
            Value::Data { worker } => {
                if !worker && field == "WorkerData" {
                    return Ok(Value::Data { worker: true });
                }
                if worker && !WORKER_FIELDS.contains(&field) {
                    return Err(error(
                        pos,
                        &construct,
                        format!("the worker data has no field {field} that maand-rs provides"),
                    ));
                }
                match DATA_FIELDS.iter().find(|(go, _, _)| *go == field) {
                    Some((_, tera, kinds)) => Ok(Value::Expr(Expr::new(*tera, *kinds, true))),
                    None if matches!(field, "BucketID" | "UpdateSeq") => Err(error(
                        pos,
                        &construct,
                        format!("maand-rs templates have no {field}; read it from KV instead"),
                    )),
                    None => Err(error(
                        pos,
                        &construct,
                        format!("the template data has no field {field}"),
                    )),
                }
            }
            Value::Nil => Err(error(
                pos,
                &construct,
                "a field of nil (Go fails at run time)",
            )),
            Value::Expr(expr) => Err(error(
                pos,
                &construct,
                format!(
                    "{} has no fields (Go fails at run time)",
                    kinds_name(expr.kinds)
                ),
            )),
        }
    }

    fn call(
        &mut self,
        name: &str,
        args: Vec<(Value, Pos)>,
        pos: Pos,
    ) -> Result<Value, ConvertError> {
        let mut exprs = Vec::with_capacity(args.len());
        for (value, arg_pos) in args {
            match value {
                Value::Expr(expr) => exprs.push(expr),
                Value::Data { .. } => {
                    return Err(error(
                        arg_pos,
                        name,
                        "the template data (a Go struct) cannot be passed to a function",
                    ))
                }
                Value::Nil => return Err(error(arg_pos, name, "nil arguments are not supported")),
            }
        }
        call(name, exprs, pos).map(Value::Expr)
    }
}

/// The tera literal for a value known at conversion time.
fn constant(value: GoValue) -> Expr {
    let (code, kinds) = match &value {
        GoValue::Str(s) => (string_literal(s), STR),
        GoValue::Int(i64::MIN) => ("(-9223372036854775807 - 1)".to_string(), INT),
        GoValue::Int(n) if *n < 0 => (format!("({n})"), INT),
        GoValue::Int(n) => (n.to_string(), INT),
        GoValue::Bool(b) => (b.to_string(), BOOL),
        GoValue::List(items) => {
            let items: Vec<String> = items.iter().map(|item| string_literal(item)).collect();
            (format!("[{}]", items.join(", ")), LIST)
        }
    };
    Expr {
        code,
        kinds,
        atomic: true,
        constant: Some(value),
    }
}

/// Functions whose result depends on more than their arguments: never evaluated ahead.
const READS_KV: &[&str] = &[
    "get",
    "getOptional",
    "getSecret",
    "keys",
    "scrapeConfigs",
    "ruleFiles",
];

/// The tera expression for a Go function call; computed at conversion time when every
/// argument is a constant and the function reads nothing else (an error there is left for
/// run time, where Go fails too).
fn call(name: &str, args: Vec<Expr>, pos: Pos) -> Result<Expr, ConvertError> {
    let values: Option<Vec<GoValue>> = args.iter().map(|arg| arg.constant.clone()).collect();
    let expr = emit_call(name, args, pos)?;
    if READS_KV.contains(&name) {
        return Ok(expr);
    }
    match values.and_then(|values| go_semantics::evaluate(name, &values).ok()) {
        Some(value) => Ok(constant(value)),
        None => Ok(expr),
    }
}

fn arity(name: &str, args: &[Expr], wanted: usize, pos: Pos) -> Result<(), ConvertError> {
    if args.len() == wanted {
        Ok(())
    } else {
        Err(error(
            pos,
            name,
            format!(
                "wrong number of args for {name}: want {wanted} got {} (Go fails at run time)",
                args.len()
            ),
        ))
    }
}

fn at_least(name: &str, args: &[Expr], wanted: usize, pos: Pos) -> Result<(), ConvertError> {
    if args.len() >= wanted {
        Ok(())
    } else {
        Err(error(
            pos,
            name,
            format!(
                "{name} needs at least {wanted} argument(s), got {} (Go fails at run time)",
                args.len()
            ),
        ))
    }
}

/// Refuses an argument that can never have the kind the Go function takes.
fn expect(name: &str, arg: &Expr, kinds: Kinds, pos: Pos) -> Result<(), ConvertError> {
    if arg.kinds.overlaps(kinds) {
        Ok(())
    } else {
        Err(error(
            pos,
            name,
            format!(
                "{name} takes {}, not {} (Go fails at run time)",
                kinds_name(kinds),
                kinds_name(arg.kinds)
            ),
        ))
    }
}

/// `, a0=x, a1=y`: variadic arguments as named ones, after a first argument (tera refuses
/// arrays nested in arrays, which list literals holding calls on lists would be).
fn numbered(args: &[Expr]) -> String {
    args.iter()
        .enumerate()
        .map(|(i, arg)| format!(", a{i}={}", arg.code))
        .collect()
}

fn emit_call(name: &str, args: Vec<Expr>, pos: Pos) -> Result<Expr, ConvertError> {
    let a = |i: usize| -> &Expr { &args[i] };
    Ok(match name {
        "get" | "getOptional" => {
            arity(name, &args, 2, pos)?;
            expect(name, a(0), STR, pos)?;
            expect(name, a(1), STR, pos)?;
            let function = if name == "get" { "get" } else { "get_optional" };
            Expr::new(
                format!("{function}(ns={}, key={})", a(0).code, a(1).code),
                STR,
                true,
            )
        }
        "getSecret" => {
            arity(name, &args, 1, pos)?;
            expect(name, a(0), STR, pos)?;
            Expr::new(format!("get_secret(key={})", a(0).code), STR, true)
        }
        "keys" => {
            arity(name, &args, 1, pos)?;
            expect(name, a(0), STR, pos)?;
            Expr::new(format!("keys(ns={})", a(0).code), LIST, true)
        }
        "scrapeConfigs" | "ruleFiles" => {
            arity(name, &args, 0, pos)?;
            let function = if name == "scrapeConfigs" {
                "scrape_configs"
            } else {
                "rule_files"
            };
            Expr::new(format!("{function}()"), STR, true)
        }
        "split" => {
            arity(name, &args, 2, pos)?;
            expect(name, a(0), STR, pos)?;
            expect(name, a(1), STR, pos)?;
            let plain = a(0).kinds == STR
                && matches!(&a(1).constant, Some(GoValue::Str(sep)) if !sep.is_empty());
            let filter = if plain { "split(pat=" } else { "go_split(sep=" };
            Expr::new(
                format!("{} | {filter}{})", a(0).operand(), a(1).code),
                LIST,
                false,
            )
        }
        "join" => {
            arity(name, &args, 2, pos)?;
            expect(name, a(0), LIST, pos)?;
            expect(name, a(1), STR, pos)?;
            let filter = if a(0).kinds == LIST && a(1).kinds == STR {
                "join"
            } else {
                "go_join"
            };
            Expr::new(
                format!("{} | {filter}(sep={})", a(0).operand(), a(1).code),
                STR,
                false,
            )
        }
        "trim" | "upper" | "lower" => {
            arity(name, &args, 1, pos)?;
            expect(name, a(0), STR, pos)?;
            let filter = match name {
                "trim" if a(0).kinds == STR => "trim",
                "trim" => "go_trim",
                "upper" => "go_upper",
                _ => "go_lower",
            };
            Expr::new(format!("{} | {filter}", a(0).operand()), STR, false)
        }
        "int" => {
            arity(name, &args, 1, pos)?;
            expect(name, a(0), STR.union(INT), pos)?;
            if a(0).kinds == INT {
                return Ok(Expr {
                    constant: None,
                    ..a(0).clone()
                });
            }
            Expr::new(format!("{} | go_int", a(0).operand()), INT, false)
        }
        "add" | "sub" | "mul" | "div" => {
            arity(name, &args, 2, pos)?;
            expect(name, a(0), INT, pos)?;
            expect(name, a(1), INT, pos)?;
            Expr::new(
                format!("go_{name}(a={}, b={})", a(0).code, a(1).code),
                INT,
                true,
            )
        }
        "min" | "max" => {
            arity(name, &args, 2, pos)?;
            expect(name, a(0), INT, pos)?;
            expect(name, a(1), INT, pos)?;
            Expr::new(
                format!("go_{name}(a={}, b={})", a(0).code, a(1).code),
                INT,
                true,
            )
        }
        "and" | "or" => {
            at_least(name, &args, 1, pos)?;
            if args.len() == 1 {
                return Ok(Expr {
                    constant: None,
                    ..a(0).clone()
                });
            }
            let kinds = args
                .iter()
                .fold(Kinds(0), |kinds, arg| kinds.union(arg.kinds));
            let operands: Vec<String> = args.iter().map(Expr::operand).collect();
            Expr::new(operands.join(&format!(" {name} ")), kinds, false)
        }
        "not" => {
            arity(name, &args, 1, pos)?;
            Expr::new(format!("not {}", a(0).operand()), BOOL, false)
        }
        "len" => {
            arity(name, &args, 1, pos)?;
            expect(name, a(0), STR.union(LIST), pos)?;
            let filter = if a(0).kinds == LIST {
                "length"
            } else {
                "go_len"
            };
            Expr::new(format!("{} | {filter}", a(0).operand()), INT, false)
        }
        "index" => {
            at_least(name, &args, 1, pos)?;
            if args.len() == 1 {
                return Ok(Expr {
                    constant: None,
                    ..a(0).clone()
                });
            }
            expect(name, a(0), STR.union(LIST), pos)?;
            let mut kinds = a(0).kinds;
            for index in &args[1..] {
                expect(name, index, INT, pos)?;
                kinds = match kinds {
                    LIST => STR,
                    STR => INT,
                    _ => STR.union(INT),
                };
            }
            Expr::new(
                format!("go_index(value={}{})", a(0).code, numbered(&args[1..])),
                kinds,
                true,
            )
        }
        "slice" => {
            at_least(name, &args, 1, pos)?;
            expect(name, a(0), STR.union(LIST), pos)?;
            if args.len() > 4 {
                return Err(error(
                    pos,
                    name,
                    "too many slice indexes (Go fails at run time)",
                ));
            }
            for index in &args[1..] {
                expect(name, index, INT, pos)?;
            }
            Expr::new(
                format!("go_slice(value={}{})", a(0).code, numbered(&args[1..])),
                a(0).kinds,
                true,
            )
        }
        "eq" => {
            at_least(name, &args, 2, pos)?;
            let same = comparable_same(&args);
            if args.len() == 2 && same {
                Expr::new(
                    format!("{} == {}", a(0).operand(), a(1).operand()),
                    BOOL,
                    false,
                )
            } else {
                Expr::new(
                    format!("go_eq(value={}{})", a(0).code, numbered(&args[1..])),
                    BOOL,
                    true,
                )
            }
        }
        "ne" | "lt" | "le" | "gt" | "ge" => {
            arity(name, &args, 2, pos)?;
            let ordered = name != "ne";
            let plain = comparable_same(&args) && (!ordered || a(0).kinds != BOOL);
            if plain {
                let op = match name {
                    "ne" => "!=",
                    "lt" => "<",
                    "le" => "<=",
                    "gt" => ">",
                    _ => ">=",
                };
                Expr::new(
                    format!("{} {op} {}", a(0).operand(), a(1).operand()),
                    BOOL,
                    false,
                )
            } else {
                Expr::new(
                    format!("go_{name}(a={}, b={})", a(0).code, a(1).code),
                    BOOL,
                    true,
                )
            }
        }
        "printf" => {
            at_least(name, &args, 1, pos)?;
            expect(name, a(0), STR, pos)?;
            if let Some(GoValue::Str(format)) = &a(0).constant {
                if let Some(concatenation) = concatenate(format, &args[1..]) {
                    return Ok(concatenation);
                }
            }
            Expr::new(
                format!("go_printf(format={}{})", a(0).code, numbered(&args[1..])),
                STR,
                true,
            )
        }
        "print" if args.len() == 1 && a(0).kinds == STR => Expr {
            constant: None,
            ..a(0).clone()
        },
        "print" | "println" => Expr::new(
            format!("go_{name}({})", numbered(&args).trim_start_matches(", ")),
            STR,
            true,
        ),
        "call" | "html" | "js" | "urlquery" => {
            return Err(error(
                pos,
                name,
                format!("`{name}` is not supported: maand templates have no use for it"),
            ))
        }
        other => {
            return Err(error(
                pos,
                other,
                format!("function \"{other}\" not defined"),
            ))
        }
    })
}

/// All arguments surely hold the same one kind of basic value (string, integer or bool).
fn comparable_same(args: &[Expr]) -> bool {
    let first = args[0].kinds;
    [STR, INT, BOOL].contains(&first) && args.iter().all(|arg| arg.kinds == first)
}

/// `printf` with a constant format made only of `%s`/`%v` (strings) and `%d`/`%v` (integers)
/// without flags: the same as tera's `~` concatenation.
fn concatenate(format: &str, args: &[Expr]) -> Option<Expr> {
    let mut pieces: Vec<String> = Vec::new();
    let mut text = String::new();
    let mut args_iter = args.iter();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            text.push(c);
            continue;
        }
        let verb = chars.next()?;
        if verb == '%' {
            text.push('%');
            continue;
        }
        let arg = args_iter.next()?;
        let fits = match verb {
            's' => arg.kinds == STR,
            'd' => arg.kinds == INT,
            'v' => arg.kinds == STR || arg.kinds == INT,
            _ => false,
        };
        if !fits {
            return None;
        }
        if !text.is_empty() {
            pieces.push(string_literal(&std::mem::take(&mut text)));
        }
        pieces.push(arg.operand());
    }
    if args_iter.next().is_some() {
        return None;
    }
    if !text.is_empty() {
        pieces.push(string_literal(&text));
    }
    match pieces.len() {
        0 => Some(Expr::new("\"\"", STR, true)),
        // A lone integer must stay a string: go through `~ ""`.
        1 if args.first().is_some_and(|arg| arg.kinds == INT) => {
            Some(Expr::new(format!("{} ~ \"\"", pieces[0]), STR, false))
        }
        1 => Some(Expr::new(pieces.remove(0), STR, true)),
        _ => Some(Expr::new(pieces.join(" ~ "), STR, false)),
    }
}
