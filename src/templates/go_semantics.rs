//! Tera functions and filters that behave exactly like Go `text/template` and the Go maand's
//! template functions, for templates converted by [`super::go`]: Go's value printing (`fmt`'s
//! `%v`, `print`, `println`, `printf`), integer arithmetic on 64-bit ints (`div` truncates
//! toward zero, overflow wraps), `eq`/`ne`/`lt`/... with Go's type rules, `index`, `slice`,
//! `len` (bytes of a string), `split`, `join`, `trim`, `upper`/`lower` (Unicode simple case
//! mapping) and `int` (`strconv.Atoi` after trimming).
//!
//! The values a template handles are strings, 64-bit integers, bools and lists of strings;
//! anything else is an error, as it would be in Go. Pure functions of their arguments.

use tera::{Error, Kwargs, State, Tera, TeraResult, Value};
use unicode_general_category::{get_general_category, GeneralCategory};

/// A Go value as the Go maand's templates see it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum GoValue {
    Str(String),
    Int(i64),
    Bool(bool),
    List(Vec<String>),
}

impl GoValue {
    fn from_tera(value: &Value) -> TeraResult<GoValue> {
        if let Some(s) = value.as_str() {
            return Ok(GoValue::Str(s.to_string()));
        }
        if let Some(b) = value.as_bool() {
            return Ok(GoValue::Bool(b));
        }
        if value.is_number() {
            return value
                .as_i64()
                .map(GoValue::Int)
                .ok_or_else(|| Error::message(format!("{value} is not a 64-bit integer")));
        }
        if let Some(items) = value.as_array() {
            return items
                .iter()
                .map(|item| {
                    item.as_str().map(str::to_string).ok_or_else(|| {
                        Error::message(format!("a list may only hold strings, found {item}"))
                    })
                })
                .collect::<TeraResult<Vec<_>>>()
                .map(GoValue::List);
        }
        Err(Error::message(format!(
            "a {} value has no Go equivalent here",
            value.name()
        )))
    }

    fn into_tera(self) -> Value {
        match self {
            GoValue::Str(s) => Value::from(s),
            GoValue::Int(n) => Value::from(n),
            GoValue::Bool(b) => Value::from(b),
            GoValue::List(items) => {
                Value::from(items.into_iter().map(Value::from).collect::<Vec<_>>())
            }
        }
    }

    fn truthy(&self) -> bool {
        match self {
            GoValue::Str(s) => !s.is_empty(),
            GoValue::Int(n) => *n != 0,
            GoValue::Bool(b) => *b,
            GoValue::List(items) => !items.is_empty(),
        }
    }

    /// The Go type name, as `fmt` prints it in errors.
    fn type_name(&self) -> &'static str {
        match self {
            GoValue::Str(_) => "string",
            GoValue::Int(_) => "int",
            GoValue::Bool(_) => "bool",
            GoValue::List(_) => "[]string",
        }
    }
}

/// Registers every `go_*` function and filter on `tera`.
pub(crate) fn register(tera: &mut Tera) {
    tera.register_filter("go_fmt", |value: Value, _: Kwargs, _: &State| {
        Ok::<_, Error>(sprint(&[GoValue::from_tera(&value)?]))
    });
    tera.register_function("go_print", |kwargs: Kwargs, _: &State| {
        Ok::<_, Error>(sprint(&numbered(&kwargs)?))
    });
    tera.register_function("go_println", |kwargs: Kwargs, _: &State| {
        Ok::<_, Error>(sprintln(&numbered(&kwargs)?))
    });
    tera.register_function("go_printf", |kwargs: Kwargs, _: &State| {
        let format = kwargs.must_get::<&str>("format")?;
        Ok::<_, Error>(sprintf(format, &numbered(&kwargs)?))
    });
    for (name, op) in [
        ("go_add", Arith::Add),
        ("go_sub", Arith::Sub),
        ("go_mul", Arith::Mul),
        ("go_div", Arith::Div),
        ("go_min", Arith::Min),
        ("go_max", Arith::Max),
    ] {
        tera.register_function(name, move |kwargs: Kwargs, _: &State| {
            arithmetic(op, int_arg(&kwargs, "a")?, int_arg(&kwargs, "b")?)
        });
    }
    tera.register_function("go_eq", |kwargs: Kwargs, _: &State| {
        let value = value_arg(&kwargs, "value")?;
        let mut equal = false;
        for other in numbered(&kwargs)? {
            equal |= go_equal(&value, &other)?;
        }
        Ok::<_, Error>(equal)
    });
    tera.register_function("go_ne", |kwargs: Kwargs, _: &State| {
        Ok::<_, Error>(!go_equal(
            &value_arg(&kwargs, "a")?,
            &value_arg(&kwargs, "b")?,
        )?)
    });
    for (name, wanted) in [
        ("go_lt", &[std::cmp::Ordering::Less][..]),
        (
            "go_le",
            &[std::cmp::Ordering::Less, std::cmp::Ordering::Equal][..],
        ),
        ("go_gt", &[std::cmp::Ordering::Greater][..]),
        (
            "go_ge",
            &[std::cmp::Ordering::Greater, std::cmp::Ordering::Equal][..],
        ),
    ] {
        tera.register_function(name, move |kwargs: Kwargs, _: &State| {
            let ordering = go_compare(&value_arg(&kwargs, "a")?, &value_arg(&kwargs, "b")?)?;
            Ok::<_, Error>(wanted.contains(&ordering))
        });
    }
    tera.register_function("go_index", |kwargs: Kwargs, _: &State| {
        let value = value_arg(&kwargs, "value")?;
        let at = numbered_ints(&kwargs)?;
        Ok::<_, Error>(index(value, &at)?.into_tera())
    });
    tera.register_function("go_slice", |kwargs: Kwargs, _: &State| {
        let value = value_arg(&kwargs, "value")?;
        let at = numbered_ints(&kwargs)?;
        Ok::<_, Error>(slice(value, &at)?.into_tera())
    });
    tera.register_filter(
        "go_len",
        |value: Value, _: Kwargs, _: &State| match GoValue::from_tera(&value)? {
            GoValue::Str(s) => Ok(Value::from(s.len())),
            GoValue::List(items) => Ok(Value::from(items.len())),
            other => Err(Error::message(format!("len of type {}", other.type_name()))),
        },
    );
    tera.register_filter("go_split", |value: Value, kwargs: Kwargs, _: &State| {
        let s = string(&GoValue::from_tera(&value)?, "split")?;
        let sep = kwargs.must_get::<&str>("sep")?;
        Ok::<_, Error>(GoValue::List(split(&s, sep)).into_tera())
    });
    tera.register_filter("go_join", |value: Value, kwargs: Kwargs, _: &State| {
        let GoValue::List(items) = GoValue::from_tera(&value)? else {
            return Err(Error::message("join takes a list of strings"));
        };
        let sep = kwargs.must_get::<&str>("sep")?;
        Ok(Value::from(items.join(sep)))
    });
    tera.register_filter("go_trim", |value: Value, _: Kwargs, _: &State| {
        Ok::<_, Error>(Value::from(
            string(&GoValue::from_tera(&value)?, "trim")?.trim(),
        ))
    });
    tera.register_filter("go_upper", |value: Value, _: Kwargs, _: &State| {
        Ok::<_, Error>(Value::from(to_upper(&string(
            &GoValue::from_tera(&value)?,
            "upper",
        )?)))
    });
    tera.register_filter("go_lower", |value: Value, _: Kwargs, _: &State| {
        Ok::<_, Error>(Value::from(to_lower(&string(
            &GoValue::from_tera(&value)?,
            "lower",
        )?)))
    });
    tera.register_filter("go_int", |value: Value, _: Kwargs, _: &State| {
        Ok::<_, Error>(Value::from(to_int(&GoValue::from_tera(&value)?)?))
    });
}

/// The result of the Go function `name` (a builtin or one of the Go maand's functions that
/// read no KV) applied to `args`, as Go computes it.
pub(crate) fn evaluate(name: &str, args: &[GoValue]) -> TeraResult<GoValue> {
    let int = |value: &GoValue| match value {
        GoValue::Int(n) => Ok(*n),
        other => Err(Error::message(format!(
            "expected int; got {}",
            other.type_name()
        ))),
    };
    let text = |value: &GoValue| string(value, name);
    let ints = |values: &[GoValue]| values.iter().map(int).collect::<TeraResult<Vec<i64>>>();
    let two = || -> TeraResult<(&GoValue, &GoValue)> {
        match args {
            [a, b] => Ok((a, b)),
            _ => Err(Error::message(format!("{name} takes two arguments"))),
        }
    };
    let one = || -> TeraResult<&GoValue> {
        match args {
            [a] => Ok(a),
            _ => Err(Error::message(format!("{name} takes one argument"))),
        }
    };
    let ordering = |wanted: &[std::cmp::Ordering]| -> TeraResult<GoValue> {
        let (a, b) = two()?;
        Ok(GoValue::Bool(wanted.contains(&go_compare(a, b)?)))
    };
    use std::cmp::Ordering::{Equal, Greater, Less};
    Ok(match name {
        "and" => args
            .iter()
            .find(|arg| !arg.truthy())
            .or(args.last())
            .cloned()
            .ok_or_else(|| Error::message("and takes arguments"))?,
        "or" => args
            .iter()
            .find(|arg| arg.truthy())
            .or(args.last())
            .cloned()
            .ok_or_else(|| Error::message("or takes arguments"))?,
        "not" => GoValue::Bool(!one()?.truthy()),
        "len" => match one()? {
            GoValue::Str(s) => GoValue::Int(s.len() as i64),
            GoValue::List(items) => GoValue::Int(items.len() as i64),
            other => return Err(Error::message(format!("len of type {}", other.type_name()))),
        },
        "index" => match args.split_first() {
            Some((value, at)) => index(value.clone(), &ints(at)?)?,
            None => return Err(Error::message("index takes arguments")),
        },
        "slice" => match args.split_first() {
            Some((value, at)) => slice(value.clone(), &ints(at)?)?,
            None => return Err(Error::message("slice takes arguments")),
        },
        "print" => GoValue::Str(sprint(args)),
        "println" => GoValue::Str(sprintln(args)),
        "printf" => match args.split_first() {
            Some((format, rest)) => GoValue::Str(sprintf(&text(format)?, rest)),
            None => return Err(Error::message("printf takes a format")),
        },
        "eq" => match args.split_first() {
            Some((value, others)) if !others.is_empty() => {
                let mut equal = false;
                for other in others {
                    equal |= go_equal(value, other)?;
                }
                GoValue::Bool(equal)
            }
            _ => return Err(Error::message("missing argument for comparison")),
        },
        "ne" => {
            let (a, b) = two()?;
            GoValue::Bool(!go_equal(a, b)?)
        }
        "lt" => ordering(&[Less])?,
        "le" => ordering(&[Less, Equal])?,
        "gt" => ordering(&[Greater])?,
        "ge" => ordering(&[Greater, Equal])?,
        "split" => {
            let (s, sep) = two()?;
            GoValue::List(split(&text(s)?, &text(sep)?))
        }
        "join" => match two()? {
            (GoValue::List(items), sep) => GoValue::Str(items.join(&text(sep)?)),
            _ => return Err(Error::message("join takes a list of strings")),
        },
        "trim" => GoValue::Str(text(one()?)?.trim().to_string()),
        "upper" => GoValue::Str(to_upper(&text(one()?)?)),
        "lower" => GoValue::Str(to_lower(&text(one()?)?)),
        "int" => GoValue::Int(to_int(one()?)?),
        "add" | "sub" | "mul" | "div" | "min" | "max" => {
            let (a, b) = two()?;
            let (a, b) = (int(a)?, int(b)?);
            GoValue::Int(match name {
                "add" => a.wrapping_add(b),
                "sub" => a.wrapping_sub(b),
                "mul" => a.wrapping_mul(b),
                "div" if b == 0 => return Err(Error::message("integer divide by zero")),
                "div" => a.wrapping_div(b),
                "min" => a.min(b),
                _ => a.max(b),
            })
        }
        other => return Err(Error::message(format!("{other} is not evaluated ahead"))),
    })
}

fn value_arg(kwargs: &Kwargs, name: &str) -> TeraResult<GoValue> {
    GoValue::from_tera(&kwargs.must_get::<Value>(name)?)
}

/// The variadic arguments `a0=`, `a1=`, ... in order.
fn numbered(kwargs: &Kwargs) -> TeraResult<Vec<GoValue>> {
    let mut args: Vec<(usize, GoValue)> = Vec::new();
    for (name, value) in kwargs.iter() {
        let name = name.to_string();
        if let Some(index) = name.strip_prefix('a').and_then(|n| n.parse::<usize>().ok()) {
            args.push((index, GoValue::from_tera(value)?));
        }
    }
    args.sort_by_key(|(index, _)| *index);
    Ok(args.into_iter().map(|(_, value)| value).collect())
}

fn int_arg(kwargs: &Kwargs, name: &str) -> TeraResult<i64> {
    match value_arg(kwargs, name)? {
        GoValue::Int(n) => Ok(n),
        other => Err(Error::message(format!(
            "wrong type for value; expected int; got {}",
            other.type_name()
        ))),
    }
}

fn numbered_ints(kwargs: &Kwargs) -> TeraResult<Vec<i64>> {
    numbered(kwargs)?
        .into_iter()
        .map(|value| match value {
            GoValue::Int(n) => Ok(n),
            other => Err(Error::message(format!(
                "cannot index with type {}",
                other.type_name()
            ))),
        })
        .collect()
}

fn string(value: &GoValue, function: &str) -> TeraResult<String> {
    match value {
        GoValue::Str(s) => Ok(s.clone()),
        other => Err(Error::message(format!(
            "{function}: wrong type for value; expected string; got {}",
            other.type_name()
        ))),
    }
}

#[derive(Debug, Clone, Copy)]
enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Min,
    Max,
}

/// Go's `int` arithmetic: wrapping, division truncating toward zero.
fn arithmetic(op: Arith, a: i64, b: i64) -> TeraResult<Value> {
    let result = match op {
        Arith::Add => a.wrapping_add(b),
        Arith::Sub => a.wrapping_sub(b),
        Arith::Mul => a.wrapping_mul(b),
        Arith::Div if b == 0 => {
            return Err(Error::message("runtime error: integer divide by zero"))
        }
        Arith::Div => a.wrapping_div(b),
        Arith::Min => a.min(b),
        Arith::Max => a.max(b),
    };
    Ok(Value::from(result))
}

/// Go's `eq` for two basic values of the same kind.
pub(crate) fn go_equal(a: &GoValue, b: &GoValue) -> TeraResult<bool> {
    match (a, b) {
        (GoValue::Str(x), GoValue::Str(y)) => Ok(x == y),
        (GoValue::Int(x), GoValue::Int(y)) => Ok(x == y),
        (GoValue::Bool(x), GoValue::Bool(y)) => Ok(x == y),
        (GoValue::List(_), _) | (_, GoValue::List(_)) => Err(Error::message(
            "error calling eq: invalid type for comparison",
        )),
        _ => Err(Error::message(
            "error calling eq: incompatible types for comparison",
        )),
    }
}

/// Go's ordering for `lt`, `le`, `gt`, `ge`: strings and integers only.
pub(crate) fn go_compare(a: &GoValue, b: &GoValue) -> TeraResult<std::cmp::Ordering> {
    match (a, b) {
        (GoValue::Str(x), GoValue::Str(y)) => Ok(x.as_bytes().cmp(y.as_bytes())),
        (GoValue::Int(x), GoValue::Int(y)) => Ok(x.cmp(y)),
        (GoValue::Bool(_), _) | (GoValue::List(_), _) => {
            Err(Error::message("invalid type for comparison"))
        }
        _ => Err(Error::message("incompatible types for comparison")),
    }
}

/// Go's `index`: list items, or bytes of a string (as integers).
pub(crate) fn index(mut value: GoValue, at: &[i64]) -> TeraResult<GoValue> {
    for &i in at {
        value = match value {
            GoValue::List(items) => {
                let item = usize::try_from(i).ok().and_then(|i| items.get(i));
                GoValue::Str(item.cloned().ok_or_else(|| {
                    Error::message(format!("error calling index: index out of range: {i}"))
                })?)
            }
            GoValue::Str(s) => {
                let byte = usize::try_from(i).ok().and_then(|i| s.as_bytes().get(i));
                GoValue::Int(i64::from(*byte.ok_or_else(|| {
                    Error::message(format!("error calling index: index out of range: {i}"))
                })?))
            }
            other => {
                return Err(Error::message(format!(
                    "error calling index: can't index item of type {}",
                    other.type_name()
                )))
            }
        };
    }
    Ok(value)
}

/// Go's `slice`: `slice x`, `slice x i`, `slice x i j` (and `i j k` for lists).
pub(crate) fn slice(value: GoValue, at: &[i64]) -> TeraResult<GoValue> {
    let len = match &value {
        GoValue::Str(s) => s.len(),
        GoValue::List(items) => items.len(),
        other => {
            return Err(Error::message(format!(
                "error calling slice: can't slice item of type {}",
                other.type_name()
            )))
        }
    };
    if at.len() > 3 || (at.len() == 3 && matches!(value, GoValue::Str(_))) {
        return Err(Error::message(
            "error calling slice: too many slice indexes",
        ));
    }
    let bound = |i: i64, cap: usize| -> TeraResult<usize> {
        usize::try_from(i)
            .ok()
            .filter(|i| *i <= cap)
            .ok_or_else(|| Error::message(format!("error calling slice: index out of range: {i}")))
    };
    let low = at.first().map_or(Ok(0), |i| bound(*i, len))?;
    let high = at.get(1).map_or(Ok(len), |i| bound(*i, len))?;
    if let Some(max) = at.get(2) {
        let max = bound(*max, len)?;
        if high > max {
            return Err(Error::message(format!(
                "error calling slice: invalid slice index: {high} > {max}"
            )));
        }
    }
    if low > high {
        return Err(Error::message(format!(
            "error calling slice: invalid slice index: {low} > {high}"
        )));
    }
    match value {
        GoValue::Str(s) => s
            .get(low..high)
            .map(|part| GoValue::Str(part.to_string()))
            .ok_or_else(|| {
                Error::message(
                    "slice: the bytes cut a UTF-8 character in two, which maand cannot output",
                )
            }),
        GoValue::List(items) => Ok(GoValue::List(items[low..high].to_vec())),
        _ => unreachable!("checked above"),
    }
}

/// `strings.Split`.
pub(crate) fn split(s: &str, sep: &str) -> Vec<String> {
    if sep.is_empty() {
        return s.chars().map(String::from).collect();
    }
    s.split(sep).map(str::to_string).collect()
}

/// The Maand `int`: an int as is, a string through `strconv.Atoi(strings.TrimSpace(s))`.
pub(crate) fn to_int(value: &GoValue) -> TeraResult<i64> {
    match value {
        GoValue::Int(n) => Ok(*n),
        GoValue::Str(s) => {
            let trimmed = s.trim();
            trimmed.parse::<i64>().map_err(|_| {
                Error::message(format!(
                    "strconv.Atoi: parsing {}: invalid syntax or out of range",
                    quote(trimmed, false)
                ))
            })
        }
        other => Err(Error::message(format!(
            "int: expected string or integer, got {}",
            other.type_name()
        ))),
    }
}

/// Greek letters with iota subscript: their simple uppercase is a single titlecase letter
/// where the full (Rust) mapping has two letters.
fn simple_upper_special(c: char) -> Option<char> {
    let code = u32::from(c);
    let mapped = match code {
        0x1F80..=0x1F87 | 0x1F90..=0x1F97 | 0x1FA0..=0x1FA7 => code + 8,
        0x1FB3 => 0x1FBC,
        0x1FC3 => 0x1FCC,
        0x1FF3 => 0x1FFC,
        _ => return None,
    };
    char::from_u32(mapped)
}

/// `strings.ToUpper`: each character by its simple (one-to-one) mapping.
pub(crate) fn to_upper(s: &str) -> String {
    s.chars()
        .map(|c| {
            let mut full = c.to_uppercase();
            match (full.next(), full.next()) {
                (Some(single), None) => single,
                _ => simple_upper_special(c).unwrap_or(c),
            }
        })
        .collect()
}

/// `strings.ToLower`: each character by its simple (one-to-one) mapping.
pub(crate) fn to_lower(s: &str) -> String {
    s.chars()
        .map(|c| {
            let mut full = c.to_lowercase();
            match (full.next(), full.next()) {
                (Some(single), None) => single,
                _ if c == '\u{130}' => 'i',
                _ => c,
            }
        })
        .collect()
}

/// `fmt.Sprint`: a space between operands when neither is a string.
pub(crate) fn sprint(values: &[GoValue]) -> String {
    let mut out = String::new();
    let mut previous_string = false;
    for (i, value) in values.iter().enumerate() {
        let is_string = matches!(value, GoValue::Str(_));
        if i > 0 && !is_string && !previous_string {
            out.push(' ');
        }
        out.push_str(&Formatter::default().verb(value, 'v'));
        previous_string = is_string;
    }
    out
}

/// `fmt.Sprintln`: operands separated by spaces, then a newline.
pub(crate) fn sprintln(values: &[GoValue]) -> String {
    let parts: Vec<String> = values
        .iter()
        .map(|value| Formatter::default().verb(value, 'v'))
        .collect();
    format!("{}\n", parts.join(" "))
}

/// The flags, width and precision of one `printf` verb.
#[derive(Debug, Clone, Default)]
struct Formatter {
    plus: bool,
    minus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
    width: Option<usize>,
    precision: Option<usize>,
    /// `%#v`: Go syntax.
    sharp_v: bool,
}

/// `fmt.Sprintf` for strings, ints, bools and string lists. Width and precision given by `*`
/// and explicit argument indexes (`%[1]d`) are written as Go writes a bad verb.
pub(crate) fn sprintf(format: &str, args: &[GoValue]) -> String {
    let mut out = String::new();
    let mut next_arg = 0;
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut f = Formatter::default();
        while let Some(&flag) = chars.peek() {
            match flag {
                '#' => f.sharp = true,
                '0' => f.zero = !f.minus,
                '+' => f.plus = true,
                '-' => {
                    f.minus = true;
                    f.zero = false;
                }
                ' ' => f.space = true,
                _ => break,
            }
            chars.next();
        }
        f.width = digits(&mut chars);
        if chars.peek() == Some(&'.') {
            chars.next();
            f.precision = Some(digits(&mut chars).unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        if verb == '*' || verb == '[' {
            out.push_str("%!(BADWIDTH)");
            continue;
        }
        let Some(arg) = args.get(next_arg) else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        next_arg += 1;
        if verb == 'v' {
            f.sharp_v = f.sharp;
            f.sharp = false;
            f.plus = false;
        }
        out.push_str(&f.verb(arg, verb));
    }
    if next_arg < args.len() {
        out.push_str("%!(EXTRA ");
        let extra: Vec<String> = args[next_arg..]
            .iter()
            .map(|arg| {
                format!(
                    "{}={}",
                    arg.type_name(),
                    Formatter::default().verb(arg, 'v')
                )
            })
            .collect();
        out.push_str(&extra.join(", "));
        out.push(')');
    }
    out
}

fn digits(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<usize> {
    let mut number: Option<usize> = None;
    while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
        number = Some(
            number
                .unwrap_or(0)
                .saturating_mul(10)
                .saturating_add(d as usize),
        );
        chars.next();
    }
    number
}

impl Formatter {
    fn verb(&self, value: &GoValue, verb: char) -> String {
        match value {
            GoValue::Str(s) => self
                .string(s, verb)
                .unwrap_or_else(|| self.bad_verb(value, verb)),
            GoValue::Int(n) => self
                .integer(*n, verb)
                .unwrap_or_else(|| self.bad_verb(value, verb)),
            GoValue::Bool(b) => match verb {
                't' | 'v' => self.pad(&b.to_string()),
                _ => self.bad_verb(value, verb),
            },
            GoValue::List(items) => {
                if self.sharp_v {
                    let quoted: Vec<String> = items.iter().map(|item| quote(item, false)).collect();
                    return format!("[]string{{{}}}", quoted.join(", "));
                }
                let parts: Vec<String> = items
                    .iter()
                    .map(|item| self.verb(&GoValue::Str(item.clone()), verb))
                    .collect();
                format!("[{}]", parts.join(" "))
            }
        }
    }

    fn bad_verb(&self, value: &GoValue, verb: char) -> String {
        let plain = Formatter {
            sharp_v: false,
            ..self.clone()
        };
        format!("%!{verb}({}={})", value.type_name(), plain.verb(value, 'v'))
    }

    fn string(&self, s: &str, verb: char) -> Option<String> {
        match verb {
            'v' if self.sharp_v => Some(self.pad(&quote(s, false))),
            's' | 'v' => {
                let truncated: String = match self.precision {
                    Some(p) => s.chars().take(p).collect(),
                    None => s.to_string(),
                };
                Some(self.pad(&truncated))
            }
            'q' => {
                let quoted = if self.sharp
                    && !s.contains('`')
                    && s.chars().all(|c| c == '\t' || !c.is_control())
                {
                    format!("`{s}`")
                } else {
                    quote(s, self.plus)
                };
                Some(self.pad(&quoted))
            }
            'x' | 'X' => {
                let bytes = match self.precision {
                    Some(p) => &s.as_bytes()[..p.min(s.len())],
                    None => s.as_bytes(),
                };
                let mut out = String::new();
                for (i, byte) in bytes.iter().enumerate() {
                    if self.space && i > 0 {
                        out.push(' ');
                    }
                    if self.sharp && (self.space || i == 0) {
                        out.push_str(if verb == 'x' { "0x" } else { "0X" });
                    }
                    if verb == 'x' {
                        out.push_str(&format!("{byte:02x}"));
                    } else {
                        out.push_str(&format!("{byte:02X}"));
                    }
                }
                Some(self.pad(&out))
            }
            _ => None,
        }
    }

    fn integer(&self, n: i64, verb: char) -> Option<String> {
        let (base, upper) = match verb {
            'd' | 'v' => (10, false),
            'b' => (2, false),
            'o' | 'O' => (8, false),
            'x' => (16, false),
            'X' => (16, true),
            'c' => {
                let c = u32::try_from(n)
                    .ok()
                    .and_then(char::from_u32)
                    .unwrap_or('\u{FFFD}');
                return Some(self.pad(&c.to_string()));
            }
            'q' => {
                let c = u32::try_from(n)
                    .ok()
                    .and_then(char::from_u32)
                    .unwrap_or('\u{FFFD}');
                return Some(self.pad(&quote_rune(c, self.plus)));
            }
            'U' => {
                let mut out = format!("U+{:04X}", n as u64);
                if self.sharp {
                    if let Some(c) = u32::try_from(n).ok().and_then(char::from_u32) {
                        if is_print(c) {
                            out.push_str(&format!(" '{c}'"));
                        }
                    }
                }
                return Some(self.pad(&out));
            }
            _ => return None,
        };
        let negative = n < 0;
        let magnitude = n.unsigned_abs();
        let mut body = match (base, upper) {
            (10, _) => magnitude.to_string(),
            (2, _) => format!("{magnitude:b}"),
            (8, _) => format!("{magnitude:o}"),
            (_, false) => format!("{magnitude:x}"),
            (_, true) => format!("{magnitude:X}"),
        };
        let mut precision = 0;
        if let Some(p) = self.precision {
            precision = p;
            if p == 0 && magnitude == 0 {
                return Some(self.pad_with(' ', ""));
            }
        } else if self.zero && !self.minus {
            if let Some(width) = self.width {
                precision = width;
                if negative || self.plus || self.space {
                    precision = precision.saturating_sub(1);
                }
            }
        }
        if body.len() < precision {
            body = format!("{}{body}", "0".repeat(precision - body.len()));
        }
        if self.sharp {
            match base {
                2 => body = format!("0b{body}"),
                8 if !body.starts_with('0') => body = format!("0{body}"),
                16 => body = format!("{}{body}", if upper { "0X" } else { "0x" }),
                _ => {}
            }
        }
        if verb == 'O' {
            body = format!("0o{body}");
        }
        let sign = if negative {
            "-"
        } else if self.plus {
            "+"
        } else if self.space {
            " "
        } else {
            ""
        };
        Some(self.pad_with(' ', &format!("{sign}{body}")))
    }

    /// Pads to the width, with zeros when the `0` flag asks (Go pads strings with zeros too).
    fn pad(&self, s: &str) -> String {
        self.pad_with(if self.zero { '0' } else { ' ' }, s)
    }

    fn pad_with(&self, fill: char, s: &str) -> String {
        let Some(width) = self.width else {
            return s.to_string();
        };
        let len = s.chars().count();
        if len >= width {
            return s.to_string();
        }
        let padding: String =
            std::iter::repeat_n(if self.minus { ' ' } else { fill }, width - len).collect();
        if self.minus {
            format!("{s}{padding}")
        } else {
            format!("{padding}{s}")
        }
    }
}

/// `strconv.IsPrint`: letters, marks, numbers, punctuation, symbols and the ASCII space.
fn is_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    use GeneralCategory as G;
    !matches!(
        get_general_category(c),
        G::SpaceSeparator
            | G::LineSeparator
            | G::ParagraphSeparator
            | G::Control
            | G::Format
            | G::Surrogate
            | G::PrivateUse
            | G::Unassigned
    )
}

fn escape_rune(out: &mut String, c: char, quote_char: char, ascii_only: bool) {
    if c == quote_char || c == '\\' {
        out.push('\\');
        out.push(c);
        return;
    }
    let printable = if ascii_only {
        c.is_ascii() && is_print(c)
    } else {
        is_print(c)
    };
    if printable {
        out.push(c);
        return;
    }
    match c {
        '\u{7}' => out.push_str("\\a"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{b}' => out.push_str("\\v"),
        c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\x{:02x}", c as u32)),
        c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
        c => out.push_str(&format!("\\U{:08x}", c as u32)),
    }
}

/// `strconv.Quote` (or `QuoteToASCII` when `ascii_only`).
pub(crate) fn quote(s: &str, ascii_only: bool) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        escape_rune(&mut out, c, '"', ascii_only);
    }
    out.push('"');
    out
}

/// `strconv.QuoteRune` (or `QuoteRuneToASCII`).
fn quote_rune(c: char, ascii_only: bool) -> String {
    let mut out = String::from("'");
    escape_rune(&mut out, c, '\'', ascii_only);
    out.push('\'');
    out
}

#[cfg(test)]
mod tests;
