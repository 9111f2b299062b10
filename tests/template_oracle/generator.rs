//! Random Go templates over the grammar the converter supports, with the fixture they run
//! against.
//!
//! Every decision reads one byte of a proptest-supplied byte string, and byte 0 always means
//! the simplest choice (no node, a literal, no trim marker); the stream reads as zeros once
//! spent. So proptest's shrinking of the bytes (shorter, smaller) shrinks the template, and any
//! byte string is a valid program.
//!
//! Programs are typed the way Go evaluates them: a function gets arguments of the types its Go
//! signature takes, `int` only sees numeric strings, `div` never divides by zero, `index` and
//! `slice` stay in bounds (every list's length is known from the fixture), integers stay far
//! from overflow, and the dot and `$` have the type the enclosing `range`, `with` or `define`
//! gives them. Go must render them; both sides erroring is accepted by the harness too.

use std::collections::BTreeMap;

use crate::fixture::Fixture;

/// A generated template and the fixture it renders against.
pub struct Generated {
    pub template: String,
    pub fixture: Fixture,
}

/// The template and fixture `bytes` describe, starting from `base`.
pub fn generate(bytes: &[u8], base: &Fixture) -> Generated {
    let mut choices = Choices { bytes, at: 0 };
    let fixture = vary_fixture(&mut choices, base);
    let mut generator = Generator::new(&mut choices, &fixture);
    let template = generator.template();
    Generated { template, fixture }
}

struct Choices<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Choices<'_> {
    fn byte(&mut self) -> u8 {
        let byte = self.bytes.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        byte
    }

    /// A number in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        usize::from(self.byte()) % n.max(1)
    }

    /// True with about `percent` % probability; never for byte 0.
    fn maybe(&mut self, percent: u32) -> bool {
        u32::from(self.byte()) * 100 >= (100 - percent) * 256
    }

    fn pick<'t, T>(&mut self, items: &'t [T]) -> &'t T {
        &items[self.below(items.len())]
    }

    fn int_in(&mut self, low: i64, high: i64) -> i64 {
        let span = u64::try_from(high - low + 1).expect("a non-empty range");
        let raw = u64::from(self.byte()) << 8 | u64::from(self.byte());
        low + i64::try_from(raw % span).expect("fits")
    }
}

const LABELS: &[&str] = &["app", "db", "edge", "zookeeper"];
const STRING_VALUES: &[&str] = &[
    "",
    "hello",
    "Hello World",
    "  padded ",
    "a,b,c",
    "straße",
    "say \"hi\"",
    "0",
    "false",
    "x\ty",
];

/// `base` with generated labels and a generated `vars/job/<job>` namespace: numeric keys
/// `n0`..`n2`, string keys `s0`..`s2` and a comma list `peers`.
fn vary_fixture(c: &mut Choices<'_>, base: &Fixture) -> Fixture {
    let mut fixture = base.clone();
    let label_count = c.below(4);
    fixture.context.labels = (0..label_count)
        .map(|_| c.pick(LABELS).to_string())
        .collect();
    let mut vars = BTreeMap::new();
    for key in ["n0", "n1", "n2"] {
        vars.insert(key.to_string(), c.int_in(-10_000, 10_000).to_string());
    }
    for key in ["s0", "s1", "s2"] {
        vars.insert(key.to_string(), c.pick(STRING_VALUES).to_string());
    }
    let peer_count = c.below(4);
    let peers: Vec<String> = (0..peer_count)
        .map(|_| format!("127.0.0.{}", 10 + c.below(20)))
        .collect();
    vars.insert("peers".to_string(), peers.join(","));
    fixture
        .kv
        .insert(format!("vars/job/{}", fixture.context.job), vars);
    fixture
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ty {
    /// The allocation context: only its fields are used, it is never printed.
    Ctx,
    Str,
    Int,
    Bool,
    List,
}

/// One expression in Go syntax; `atomic` ones need no parentheses as an argument.
struct Expr {
    text: String,
    atomic: bool,
}

impl Expr {
    fn atom(text: impl Into<String>) -> Expr {
        Expr {
            text: text.into(),
            atomic: true,
        }
    }

    fn call(text: impl Into<String>) -> Expr {
        Expr {
            text: text.into(),
            atomic: false,
        }
    }

    fn arg(&self) -> String {
        if self.atomic {
            self.text.clone()
        } else {
            format!("({})", self.text)
        }
    }
}

/// What names mean where a node is generated.
#[derive(Clone)]
struct Env {
    dot: Ty,
    root: Ty,
    /// Variables in scope, innermost block last.
    scopes: Vec<Vec<(String, Ty)>>,
    /// Defined templates this place may call (each takes a string).
    callable: usize,
    /// Inside a `range` body (of this template), where `break` and `continue` are allowed.
    in_range: bool,
}

impl Env {
    fn vars_of(&self, ty: Ty) -> Vec<String> {
        self.scopes
            .iter()
            .flatten()
            .filter(|(_, t)| *t == ty)
            .map(|(name, _)| name.clone())
            .collect()
    }

    fn declare(&mut self, name: &str, ty: Ty) {
        self.scopes
            .last_mut()
            .expect("a scope")
            .push((name.to_string(), ty));
    }

    fn nested(&self, dot: Ty) -> Env {
        let mut env = self.clone();
        env.dot = dot;
        env.scopes.push(Vec::new());
        env
    }
}

/// A KV read the fixture can answer.
struct KvKey {
    namespace: String,
    key: String,
    value: String,
}

struct Generator<'c, 'b> {
    c: &'c mut Choices<'b>,
    readable: Vec<KvKey>,
    secrets: Vec<String>,
    labels: usize,
    readable_namespaces: Vec<String>,
    next_name: usize,
    /// Nodes still allowed, so templates stay small.
    budget: usize,
}

const MAX_DEPTH: usize = 3;

impl<'c, 'b> Generator<'c, 'b> {
    fn new(c: &'c mut Choices<'b>, fixture: &Fixture) -> Generator<'c, 'b> {
        let secrets_namespace = format!("secrets/job/{}", fixture.context.job);
        let readable_namespaces: Vec<String> = fixture
            .scope()
            .namespaces()
            .into_iter()
            .filter(|ns| !ns.starts_with("secrets/"))
            .collect();
        let readable = readable_namespaces
            .iter()
            .filter(|ns| **ns != secrets_namespace)
            .flat_map(|ns| {
                fixture
                    .kv
                    .get(ns)
                    .into_iter()
                    .flatten()
                    .map(|(key, value)| KvKey {
                        namespace: ns.clone(),
                        key: key.clone(),
                        value: value.clone(),
                    })
            })
            .collect();
        Generator {
            c,
            readable,
            secrets: fixture.secrets.keys().cloned().collect(),
            labels: fixture.context.labels.len(),
            readable_namespaces,
            next_name: 0,
            budget: 40,
        }
    }

    fn fresh(&mut self, prefix: &str) -> String {
        self.next_name += 1;
        format!("{prefix}{}", self.next_name)
    }

    /// Defines (before or after the body, which calls them) around a top-level body.
    fn template(&mut self) -> String {
        let define_count = self.c.below(3);
        let mut defines = Vec::new();
        for index in 0..define_count {
            let env = Env {
                dot: Ty::Str,
                root: Ty::Str,
                scopes: vec![Vec::new()],
                callable: index,
                in_range: false,
            };
            let body = self.block(&env, 1);
            defines.push(format!("{{{{ define \"t{index}\" }}}}{body}{{{{ end }}}}"));
        }
        let env = Env {
            dot: Ty::Ctx,
            root: Ty::Ctx,
            scopes: vec![Vec::new()],
            callable: define_count,
            in_range: false,
        };
        let body = self.block(&env, 0);
        if self.c.maybe(50) {
            format!("{body}{}", defines.concat())
        } else {
            format!("{}{body}", defines.concat())
        }
    }

    fn open(&mut self) -> &'static str {
        if self.c.maybe(30) {
            "{{- "
        } else {
            "{{ "
        }
    }

    fn close(&mut self) -> &'static str {
        if self.c.maybe(30) {
            " -}}"
        } else {
            " }}"
        }
    }

    fn action(&mut self, inner: &str) -> String {
        let open = self.open();
        let close = self.close();
        format!("{open}{inner}{close}")
    }

    fn block(&mut self, env: &Env, depth: usize) -> String {
        let mut env = env.clone();
        let count = self.c.below(5);
        let mut out = String::new();
        for _ in 0..count {
            if self.budget == 0 {
                break;
            }
            self.budget -= 1;
            out.push_str(&self.node(&mut env, depth));
        }
        out
    }

    fn node(&mut self, env: &mut Env, depth: usize) -> String {
        let kinds = if depth < MAX_DEPTH { 12 } else { 6 };
        match self.c.below(kinds) {
            0 => self.text(),
            1 | 2 => {
                let ty = *self.c.pick(&[Ty::Str, Ty::Int, Ty::Bool, Ty::List]);
                let expr = self.expr(env, ty, 3);
                self.action(&expr.text)
            }
            3 => {
                let text = *self.c.pick(&[" note ", "", " a\nmulti-line note "]);
                if self.c.maybe(30) {
                    format!("{{{{- /*{text}*/ -}}}}")
                } else {
                    format!("{{{{/*{text}*/}}}}")
                }
            }
            4 => {
                let ty = *self.c.pick(&[Ty::Str, Ty::Int, Ty::Bool, Ty::List]);
                let name = self.fresh("$v");
                let value = self.value_for_variable(env, ty);
                env.declare(&name, ty);
                self.action(&format!("{name} := {value}"))
            }
            5 => self.assignment(env),
            6 => self.if_node(env, depth),
            7 => self.range_node(env, depth),
            8 => self.with_node(env, depth),
            9 => self.template_call(env),
            10 => self.block_node(env, depth),
            _ => self.loop_exit(env),
        }
    }

    fn text(&mut self) -> String {
        self.c
            .pick(&[
                "",
                "a",
                "b c",
                " ",
                "  ",
                "\n",
                "\n\n",
                "\t",
                "x=",
                ", ",
                "\n  - ",
                "{#",
                "%}",
                "{%",
                "#}",
                "}",
                "}}",
                "é",
                "line\n",
                " {% raw %} ",
                "${#x[@]}",
                "\r\n",
                " \r\n\t",
            ])
            .to_string()
    }

    fn assignment(&mut self, env: &mut Env) -> String {
        let vars: Vec<(String, Ty)> = env
            .scopes
            .iter()
            .flatten()
            .filter(|(_, ty)| *ty != Ty::Ctx)
            .cloned()
            .collect();
        if vars.is_empty() {
            return self.text();
        }
        let (name, ty) = self.c.pick(&vars).clone();
        let value = self.value_for_variable(env, ty);
        self.action(&format!("{name} = {value}"))
    }

    /// A value to store in a variable (or bind with `with`). Integers are clamped to
    /// ±100000: a variable can be re-assigned from itself in a loop, and clamping keeps every
    /// product far from overflow.
    fn value_for_variable(&mut self, env: &Env, ty: Ty) -> String {
        let expr = self.expr(env, ty, 3);
        if ty == Ty::Int {
            format!("min 100000 (max -100000 {})", expr.arg())
        } else {
            expr.text
        }
    }

    fn any_condition(&mut self, env: &Env) -> Expr {
        let ty = *self.c.pick(&[Ty::Bool, Ty::Str, Ty::Int, Ty::List]);
        self.expr(env, ty, 2)
    }

    fn if_node(&mut self, env: &Env, depth: usize) -> String {
        let cond = self.any_condition(env);
        let mut out = self.action(&format!("if {}", cond.text));
        out.push_str(&self.block(&env.nested(env.dot), depth + 1));
        let else_ifs = self.c.below(3);
        for _ in 0..else_ifs {
            let cond = self.any_condition(env);
            out.push_str(&self.action(&format!("else if {}", cond.text)));
            out.push_str(&self.block(&env.nested(env.dot), depth + 1));
        }
        if self.c.maybe(50) {
            out.push_str(&self.action("else"));
            out.push_str(&self.block(&env.nested(env.dot), depth + 1));
        }
        out.push_str(&self.action("end"));
        out
    }

    fn range_node(&mut self, env: &Env, depth: usize) -> String {
        let (list, _) = self.list(env, 2);
        let mut body_env = env.nested(Ty::Str);
        body_env.in_range = true;
        let header = match self.c.below(3) {
            0 => format!("range {}", list.text),
            1 => {
                let value = self.fresh("$e");
                body_env.declare(&value, Ty::Str);
                format!("range {value} := {}", list.text)
            }
            _ => {
                let index = self.fresh("$i");
                let value = self.fresh("$e");
                body_env.declare(&index, Ty::Int);
                body_env.declare(&value, Ty::Str);
                format!("range {index}, {value} := {}", list.text)
            }
        };
        let mut out = self.action(&header);
        out.push_str(&self.block(&body_env, depth + 1));
        if self.c.maybe(40) {
            out.push_str(&self.action("else"));
            out.push_str(&self.block(&env.nested(env.dot), depth + 1));
        }
        out.push_str(&self.action("end"));
        out
    }

    fn with_node(&mut self, env: &Env, depth: usize) -> String {
        let ty = *self.c.pick(&[Ty::Str, Ty::Int, Ty::List, Ty::Bool]);
        let value = self.value_for_variable(env, ty);
        let mut body_env = env.nested(ty);
        let header = if self.c.maybe(30) {
            let name = self.fresh("$w");
            body_env.declare(&name, ty);
            format!("with {name} := {value}")
        } else {
            format!("with {value}")
        };
        let mut out = self.action(&header);
        out.push_str(&self.block(&body_env, depth + 1));
        if self.c.maybe(40) {
            out.push_str(&self.action("else"));
            out.push_str(&self.block(&env.nested(env.dot), depth + 1));
        }
        out.push_str(&self.action("end"));
        out
    }

    /// `{{ break }}` or `{{ continue }}`, usually behind a condition, inside a `range` body.
    fn loop_exit(&mut self, env: &Env) -> String {
        if !env.in_range {
            return self.text();
        }
        let keyword = *self.c.pick(&["continue", "break"]);
        let exit = self.action(keyword);
        if self.c.maybe(70) {
            let cond = self.any_condition(env);
            let open = self.action(&format!("if {}", cond.text));
            let end = self.action("end");
            format!("{open}{exit}{end}")
        } else {
            exit
        }
    }

    fn template_call(&mut self, env: &Env) -> String {
        if env.callable == 0 {
            return self.text();
        }
        let index = self.c.below(env.callable);
        let arg = self.expr(env, Ty::Str, 2);
        self.action(&format!("template \"t{index}\" {}", arg.arg()))
    }

    /// `block` defines and runs a template in place; its body sees only its string argument.
    fn block_node(&mut self, env: &Env, depth: usize) -> String {
        let name = self.fresh("b");
        let arg = self.expr(env, Ty::Str, 2);
        let body_env = Env {
            dot: Ty::Str,
            root: Ty::Str,
            scopes: vec![Vec::new()],
            callable: env.callable,
            in_range: false,
        };
        let mut out = self.action(&format!("block \"{name}\" {}", arg.arg()));
        out.push_str(&self.block(&body_env, depth + 1));
        out.push_str(&self.action("end"));
        out
    }

    fn expr(&mut self, env: &Env, ty: Ty, depth: usize) -> Expr {
        match ty {
            Ty::Str => self.string(env, depth),
            Ty::Int => self.int(env, depth),
            Ty::Bool => self.boolean(env, depth),
            Ty::List => self.list(env, depth).0,
            Ty::Ctx => unreachable!("the context is never generated as a value"),
        }
    }

    fn variable(&mut self, env: &Env, ty: Ty) -> Option<Expr> {
        let vars = env.vars_of(ty);
        if vars.is_empty() {
            return None;
        }
        Some(Expr::atom(self.c.pick(&vars).clone()))
    }

    fn string_literal(&mut self) -> String {
        let value = *self.c.pick(&[
            "",
            "a",
            "x y",
            "hello",
            "a,b,c",
            " pad ",
            "Straße",
            "q\"t",
            "0",
            "false",
            "é",
            "line\nbreak",
            "tab\there",
            "back\\slash",
            "127.0.0.1",
        ]);
        go_quote(value)
    }

    fn string(&mut self, env: &Env, depth: usize) -> Expr {
        let leaves = 7;
        let options = if depth == 0 { leaves } else { 19 };
        match self.c.below(options) {
            0 => Expr::atom(self.string_literal()),
            1 => self.field(env).unwrap_or_else(|| Expr::atom("\"field\"")),
            2 => self
                .variable(env, Ty::Str)
                .unwrap_or_else(|| Expr::atom("\"novar\"")),
            3 => match (env.dot, env.root) {
                (Ty::Str, _) => Expr::atom("."),
                (_, Ty::Str) => Expr::atom("$"),
                _ => Expr::atom("`raw \"text\"`"),
            },
            4 => {
                let key = self.c.pick(&self.readable).clone_key();
                Expr::call(format!("get {} {}", go_quote(&key.0), go_quote(&key.1)))
            }
            5 => {
                let namespace = self.c.pick(&self.readable_namespaces).clone();
                let key = if self.c.maybe(50) {
                    self.c.pick(&self.readable).key.clone()
                } else {
                    "no_such_key".to_string()
                };
                Expr::call(format!(
                    "getOptional {} {}",
                    go_quote(&namespace),
                    go_quote(&key)
                ))
            }
            6 => {
                let key = self.c.pick(&self.secrets).clone();
                Expr::call(format!("getSecret {}", go_quote(&key)))
            }
            7 => {
                let function = *self.c.pick(&["upper", "lower", "trim"]);
                let inner = self.string(env, depth - 1);
                if self.c.maybe(30) {
                    Expr::call(format!("{} | {function}", inner.text))
                } else {
                    Expr::call(format!("{function} {}", inner.arg()))
                }
            }
            8 | 9 => self.printf(env, depth - 1),
            10 => {
                let (list, _) = self.list(env, depth - 1);
                let sep = go_quote(self.c.pick::<&str>(&[",", "", " | ", "\n"]));
                Expr::call(format!("join {} {sep}", list.arg()))
            }
            11 => {
                let (list, len) = self.list(env, depth - 1);
                match len {
                    Some(len) if len > 0 => {
                        let at = self.c.below(len);
                        Expr::call(format!("index {} {at}", list.arg()))
                    }
                    _ => Expr::atom(self.string_literal()),
                }
            }
            12 => {
                let text = *self.c.pick(&["abcdef", "127.0.0.1", "", "xy"]);
                let start = self.c.below(text.len() + 1);
                let end = start + self.c.below(text.len() - start + 1);
                let quoted = go_quote(text);
                match self.c.below(3) {
                    0 => Expr::call(format!("slice {quoted} {start}")),
                    1 => Expr::call(format!("slice {quoted} {start} {end}")),
                    _ => Expr::call(format!("slice {quoted}")),
                }
            }
            13 | 14 => {
                let function = *self.c.pick(&["and", "or"]);
                let count = 2 + self.c.below(2);
                let args: Vec<String> = (0..count)
                    .map(|_| self.string(env, depth - 1).arg())
                    .collect();
                Expr::call(format!("{function} {}", args.join(" ")))
            }
            15 => {
                let count = self.c.below(4);
                let args: Vec<String> = (0..count)
                    .map(|_| {
                        let ty = *self.c.pick(&[Ty::Str, Ty::Int, Ty::Bool]);
                        self.expr(env, ty, depth - 1).arg()
                    })
                    .collect();
                Expr::call(format!("print {}", args.join(" ")).trim_end().to_string())
            }
            16 => {
                let inner = self.string(env, depth - 1);
                Expr::call(format!("{} | printf \"%s;%s\" \"p\"", inner.text))
            }
            17 => {
                let key = self.c.pick(&self.readable).clone_key();
                Expr::call(format!(
                    "get (printf \"%s\" {}) {}",
                    go_quote(&key.0),
                    go_quote(&key.1)
                ))
            }
            _ => {
                let ty = *self.c.pick(&[Ty::Str, Ty::Int, Ty::Bool, Ty::List]);
                let inner = self.expr(env, ty, depth - 1);
                Expr::call(format!("printf \"%v\" {}", inner.arg()))
            }
        }
    }

    fn field(&mut self, env: &Env) -> Option<Expr> {
        let name = *self.c.pick(&[
            "Job",
            "WorkerIP",
            "NewVersion",
            "CurrentVersion",
            "AllocationID",
            "WorkerID",
            "BucketPath",
            "JobPath",
        ]);
        match (env.dot, env.root) {
            (Ty::Ctx, _) => Some(Expr::atom(format!(".{name}"))),
            (_, Ty::Ctx) => Some(Expr::atom(format!("$.{name}"))),
            _ => None,
        }
    }

    fn printf(&mut self, env: &Env, depth: usize) -> Expr {
        let verbs: &[(&str, Option<Ty>)] = &[
            ("%s", Some(Ty::Str)),
            ("%d", Some(Ty::Int)),
            ("%v", None),
            ("%q", Some(Ty::Str)),
            ("%02d", Some(Ty::Int)),
            ("%5s", Some(Ty::Str)),
            ("%-5s|", Some(Ty::Str)),
            ("%3d", Some(Ty::Int)),
            ("%-4d|", Some(Ty::Int)),
            ("%%", Some(Ty::Ctx)),
        ];
        let count = self.c.below(4);
        let mut format = String::new();
        let mut args = Vec::new();
        for _ in 0..count {
            format.push_str(self.c.pick::<&str>(&["", "-", ":", " ", "x"]));
            let (verb, ty) = *self.c.pick(verbs);
            format.push_str(verb);
            match ty {
                Some(Ty::Ctx) => {}
                Some(ty) => args.push(self.expr(env, ty, depth).arg()),
                None => {
                    let ty = *self.c.pick(&[Ty::Str, Ty::Int, Ty::Bool, Ty::List]);
                    args.push(self.expr(env, ty, depth).arg());
                }
            }
        }
        let mut call = format!("printf {}", go_quote(&format));
        for arg in args {
            call.push(' ');
            call.push_str(&arg);
        }
        Expr::call(call)
    }

    /// A string `int` accepts.
    fn numeric_string(&mut self, env: &Env, depth: usize) -> Expr {
        let numeric: Vec<(String, String)> = self
            .readable
            .iter()
            .filter(|kv| {
                kv.value
                    .trim()
                    .parse::<i32>()
                    .is_ok_and(|n| n.abs() <= 100_000)
            })
            .map(|kv| (kv.namespace.clone(), kv.key.clone()))
            .collect();
        match self.c.below(if depth == 0 { 2 } else { 4 }) {
            0 => Expr::atom(go_quote(
                self.c.pick::<&str>(&["42", " 7 ", "-3", "0", "+5", "0010"]),
            )),
            1 => {
                let (namespace, key) = self.c.pick(&numeric).clone();
                Expr::call(format!("get {} {}", go_quote(&namespace), go_quote(&key)))
            }
            2 => {
                let inner = self.int(env, depth - 1);
                Expr::call(format!("printf \"%d\" {}", inner.arg()))
            }
            _ => {
                let inner = self.numeric_string(env, depth - 1);
                Expr::call(format!("trim {}", inner.arg()))
            }
        }
    }

    fn int(&mut self, env: &Env, depth: usize) -> Expr {
        let leaves = 3;
        let options = if depth == 0 { leaves } else { 13 };
        match self.c.below(options) {
            0 => Expr::atom(self.c.int_in(-20, 100).to_string()),
            1 => self
                .variable(env, Ty::Int)
                .unwrap_or_else(|| Expr::atom("3")),
            2 => match env.dot {
                Ty::Int => Expr::atom("."),
                _ => Expr::atom(self.c.int_in(0, 9).to_string()),
            },
            3..=5 => {
                let function = *self.c.pick(&["add", "sub", "mul", "min", "max"]);
                let a = self.int(env, depth - 1);
                // A product grows by at most 9x per level: no overflow anywhere near.
                let b = if function == "mul" {
                    Expr::atom(self.c.int_in(-9, 9).to_string())
                } else {
                    self.int(env, depth - 1)
                };
                if self.c.maybe(25) {
                    Expr::call(format!("{} | {function} {}", b.text, a.arg()))
                } else {
                    Expr::call(format!("{function} {} {}", a.arg(), b.arg()))
                }
            }
            6 | 7 => {
                let a = self.int(env, depth - 1);
                let divisor = if self.c.maybe(50) {
                    let inner = self.int(env, depth - 1);
                    format!("(max 1 {})", inner.arg())
                } else {
                    self.c
                        .pick(&["2", "-2", "3", "-3", "7", "1", "-1", "64", "1024"])
                        .to_string()
                };
                Expr::call(format!("div {} {divisor}", a.arg()))
            }
            8 | 9 => {
                let inner = self.numeric_string(env, depth - 1);
                Expr::call(format!("int {}", inner.arg()))
            }
            10 => {
                if self.c.maybe(50) {
                    let (list, _) = self.list(env, depth - 1);
                    Expr::call(format!("len {}", list.arg()))
                } else {
                    let inner = self.string(env, depth - 1);
                    Expr::call(format!("len {}", inner.arg()))
                }
            }
            _ => {
                let function = *self.c.pick(&["and", "or"]);
                let a = self.int(env, depth - 1);
                let b = self.int(env, depth - 1);
                Expr::call(format!("{function} {} {}", a.arg(), b.arg()))
            }
        }
    }

    fn boolean(&mut self, env: &Env, depth: usize) -> Expr {
        let leaves = 2;
        let options = if depth == 0 { leaves } else { 9 };
        match self.c.below(options) {
            0 => Expr::atom(*self.c.pick(&["true", "false"])),
            1 => self
                .variable(env, Ty::Bool)
                .unwrap_or_else(|| Expr::atom("false")),
            2 | 3 => {
                let ty = *self.c.pick(&[Ty::Str, Ty::Int]);
                let count = 2 + self.c.below(3);
                let args: Vec<String> = (0..count)
                    .map(|_| self.expr(env, ty, depth - 1).arg())
                    .collect();
                Expr::call(format!("eq {}", args.join(" ")))
            }
            4 | 5 => {
                let function = *self.c.pick(&["ne", "lt", "le", "gt", "ge"]);
                let ty = *self.c.pick(&[Ty::Str, Ty::Int]);
                let a = self.expr(env, ty, depth - 1);
                let b = self.expr(env, ty, depth - 1);
                Expr::call(format!("{function} {} {}", a.arg(), b.arg()))
            }
            6 => {
                let ty = *self.c.pick(&[Ty::Str, Ty::Int, Ty::Bool, Ty::List]);
                let inner = self.expr(env, ty, depth - 1);
                Expr::call(format!("not {}", inner.arg()))
            }
            _ => {
                let function = *self.c.pick(&["and", "or"]);
                let a = self.boolean(env, depth - 1);
                let b = self.boolean(env, depth - 1);
                Expr::call(format!("{function} {} {}", a.arg(), b.arg()))
            }
        }
    }

    /// A list of strings and its length when it is known here.
    fn list(&mut self, env: &Env, depth: usize) -> (Expr, Option<usize>) {
        let leaves = 4;
        let options = if depth == 0 { leaves } else { 7 };
        match self.c.below(options) {
            0 => {
                let text =
                    *self
                        .c
                        .pick(&["a,b,c", "", "x", "a,,b", "127.0.0.1,127.0.0.2", "héllo"]);
                let sep = *self.c.pick(&[",", "", ";"]);
                let len = go_split_len(text, sep);
                (
                    Expr::call(format!("split {} {}", go_quote(text), go_quote(sep))),
                    Some(len),
                )
            }
            1 => match (env.dot, env.root) {
                (Ty::Ctx, _) => (Expr::atom(".Labels"), Some(self.labels)),
                (_, Ty::Ctx) => (Expr::atom("$.Labels"), Some(self.labels)),
                (Ty::List, _) => (Expr::atom("."), None),
                _ => (Expr::call("split \"p,q\" \",\""), Some(2)),
            },
            2 => {
                let comma_lists: Vec<&KvKey> = self
                    .readable
                    .iter()
                    .filter(|kv| kv.value.contains(',') || kv.key == "peers")
                    .collect();
                let kv = *self.c.pick(&comma_lists);
                let len = go_split_len(&kv.value, ",");
                (
                    Expr::call(format!(
                        "split (get {} {}) \",\"",
                        go_quote(&kv.namespace),
                        go_quote(&kv.key)
                    )),
                    Some(len),
                )
            }
            3 => match self.variable(env, Ty::List) {
                Some(var) => (var, None),
                None => (Expr::call("split \"v\" \",\""), Some(1)),
            },
            4 | 5 => {
                let namespace = self.c.pick(&self.readable_namespaces).clone();
                let len = self
                    .readable
                    .iter()
                    .filter(|kv| kv.namespace == namespace)
                    .count();
                (
                    Expr::call(format!("keys {}", go_quote(&namespace))),
                    Some(len),
                )
            }
            _ => {
                let (inner, len) = self.list(env, depth - 1);
                match len {
                    Some(len) => {
                        let start = self.c.below(len + 1);
                        if self.c.maybe(50) {
                            let end = start + self.c.below(len - start + 1);
                            (
                                Expr::call(format!("slice {} {start} {end}", inner.arg())),
                                Some(end - start),
                            )
                        } else {
                            (
                                Expr::call(format!("slice {} {start}", inner.arg())),
                                Some(len - start),
                            )
                        }
                    }
                    None => (inner, None),
                }
            }
        }
    }
}

impl KvKey {
    fn clone_key(&self) -> (String, String) {
        (self.namespace.clone(), self.key.clone())
    }
}

/// How many elements Go's `strings.Split(text, sep)` returns.
fn go_split_len(text: &str, sep: &str) -> usize {
    if sep.is_empty() {
        text.chars().count()
    } else {
        text.split(sep).count()
    }
}

/// `value` as a Go interpreted string literal.
pub fn go_quote(value: &str) -> String {
    let mut out = String::from("\"");
    for ch in value.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            other => out.push(other),
        }
    }
    out.push('"');
    out
}
