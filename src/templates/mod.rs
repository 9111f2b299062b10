//! Rendering of job `.tpl` files for one allocation (a job on one worker) with tera 2.
//!
//! Owns the template language maand offers: the context variables of the allocation, the KV
//! functions `get`, `get_optional`, `get_secret` and `keys` (limited to the namespaces the
//! allocation may read, see [`crate::kv::access`]), and the `min`/`max` filters tera lacks.
//! Everything else (`split`, `join`, `trim`, `upper`, `lower`, `int`, `+ - * // %`) is tera's
//! own. Templates converted from the Go maand ([`go`]) also call the `go_*` functions and
//! filters, which behave exactly like Go's `text/template` (see `go_semantics`). The
//! user-facing description is `docs/templates.md`.
//!
//! Pure: it never opens the database, never reads or writes files and never prints. Deploy
//! staging passes the template text and a [`KvSource`] and writes the result itself. No error
//! it returns ever contains a secret value.

mod error;
pub mod go;
mod go_semantics;
mod lookup;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, PoisonError};

use tera::{Context, Error, ErrorKind, Kwargs, State, Tera, TeraResult};

pub use crate::kv::access::ReadScope;
pub use error::TemplateError;
use lookup::{Lookups, Readable, Refusal};

/// What a template knows about the allocation it is rendered for. Each field is a template
/// variable of the same name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateContext {
    /// The allocation's stable id.
    pub allocation_id: String,
    /// The job being deployed.
    pub job: String,
    /// The worker's address, as written in `workers.json`.
    pub worker_ip: String,
    /// The worker's stable id.
    pub worker_id: String,
    /// The worker's labels.
    pub labels: Vec<String>,
    /// The version running on this allocation before this deploy.
    pub current_version: String,
    /// The version this deploy installs.
    pub new_version: String,
    /// The bucket's directory on the worker.
    pub bucket_path: String,
    /// The job's directory on the worker.
    pub job_path: String,
}

/// Read access to the KV store for one render.
pub trait KvSource {
    /// The latest value of `key` in `namespace`, `None` if it has none (or was deleted).
    fn get(&self, namespace: &str, key: &str) -> Option<String>;
    /// The keys that currently have a value in `namespace`.
    fn keys(&self, namespace: &str) -> Vec<String>;
    /// The decrypted value of `key` in `secrets/job/<job>`, `None` if there is none, or why it
    /// cannot be decrypted. The error text must not contain the value.
    fn secret(&self, job: &str, key: &str) -> Result<Option<String>, String>;
}

/// Renders `source`, the text of the job file `template_path` (relative to the job directory,
/// used in errors), for the allocation described by `ctx`. KV reads are limited to `scope`,
/// which must describe the same job and worker as `ctx`.
pub fn render(
    template_path: &str,
    source: &str,
    ctx: &TemplateContext,
    scope: &ReadScope<'_>,
    kv: &dyn KvSource,
) -> Result<String, TemplateError> {
    render_with(template_path, source, ctx, scope, kv, None)
}

/// The text a prometheus server job's templates insert with `scrape_configs()` (expanded
/// scrape configs as list items under `scrape_configs:`) and `rule_files()` (a `rule_files:`
/// key listing the assembled rule files). Built by [`crate::prometheus::assemble`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrometheusInserts {
    pub scrape_configs: String,
    pub rule_files: String,
}

/// [`render`] for a template of a prometheus server job: the same language plus the
/// functions `scrape_configs()` and `rule_files()`, which no other job's templates have.
pub fn render_server_template(
    template_path: &str,
    source: &str,
    ctx: &TemplateContext,
    scope: &ReadScope<'_>,
    kv: &dyn KvSource,
    inserts: &PrometheusInserts,
) -> Result<String, TemplateError> {
    render_with(template_path, source, ctx, scope, kv, Some(inserts))
}

fn render_with(
    template_path: &str,
    source: &str,
    ctx: &TemplateContext,
    scope: &ReadScope<'_>,
    kv: &dyn KvSource,
    inserts: Option<&PrometheusInserts>,
) -> Result<String, TemplateError> {
    if ctx.job != scope.job || ctx.worker_ip != scope.worker_ip {
        return Err(TemplateError::ScopeMismatch {
            template: template_path.to_string(),
            context_job: ctx.job.clone(),
            context_worker_ip: ctx.worker_ip.clone(),
            scope_job: scope.job.to_string(),
            scope_worker_ip: scope.worker_ip.to_string(),
        });
    }
    let readable = Arc::new(Readable::fetch(scope, kv));
    let lookups = Arc::new(Mutex::new(Lookups::default()));

    let mut tera = engine(&readable, &lookups);
    if let Some(inserts) = inserts {
        let scrape_configs = inserts.scrape_configs.clone();
        tera.register_function("scrape_configs", move |_: Kwargs, _: &State| {
            Ok::<_, Error>(scrape_configs.clone())
        });
        let rule_files = inserts.rule_files.clone();
        tera.register_function("rule_files", move |_: Kwargs, _: &State| {
            Ok::<_, Error>(rule_files.clone())
        });
    }
    tera.add_raw_template(template_path, source)
        .map_err(|error| TemplateError::Syntax {
            template: template_path.to_string(),
            line: line_of(&error),
            detail: error.to_string(),
        })?;
    tera.render(template_path, &variables(ctx))
        .map_err(|error| {
            let lookups = lookups.lock().unwrap_or_else(PoisonError::into_inner);
            explain(template_path, &error, &readable, &lookups)
        })
}

/// A tera instance with every function and filter a template may call, reading `readable`.
fn engine(readable: &Arc<Readable>, lookups: &Arc<Mutex<Lookups>>) -> Tera {
    let mut tera = Tera::new();
    // Templates produce configuration files, not HTML: never escape anything.
    tera.autoescape_on(Vec::<&str>::new());
    lookup::register(&mut tera, readable, lookups);
    tera.register_filter("min", |values: Vec<i128>, _: Kwargs, _: &State| {
        extreme("min", values.into_iter().min())
    });
    tera.register_filter("max", |values: Vec<i128>, _: Kwargs, _: &State| {
        extreme("max", values.into_iter().max())
    });
    go_semantics::register(&mut tera);
    tera
}

/// Whether `source` is a valid template: tera syntax, and only functions, filters and tests
/// that exist. Reads nothing; the error is tera's report (with line and column).
pub fn check_syntax(source: &str) -> Result<(), String> {
    let readable = Arc::new(Readable::empty());
    let lookups = Arc::new(Mutex::new(Lookups::default()));
    engine(&readable, &lookups)
        .add_raw_template("template", source)
        .map_err(|error| error.to_string())
}

fn variables(ctx: &TemplateContext) -> Context {
    let mut context = Context::new();
    context.insert("allocation_id", &ctx.allocation_id);
    context.insert("job", &ctx.job);
    context.insert("worker_ip", &ctx.worker_ip);
    context.insert("worker_id", &ctx.worker_id);
    context.insert("labels", &ctx.labels);
    context.insert("current_version", &ctx.current_version);
    context.insert("new_version", &ctx.new_version);
    context.insert("bucket_path", &ctx.bucket_path);
    context.insert("job_path", &ctx.job_path);
    context
}

fn extreme(filter: &str, found: Option<i128>) -> TeraResult<i128> {
    found.ok_or_else(|| {
        Error::message(format!(
            "`{filter}` needs a list with at least one integer, e.g. [a, b] | {filter}"
        ))
    })
}

/// The 1-based template line tera located the error on, if it did.
fn line_of(error: &Error) -> Option<u32> {
    match error.kind() {
        ErrorKind::SyntaxError(report) | ErrorKind::RenderingError(report) => {
            u32::try_from(report.span().start_line).ok()
        }
        _ => None,
    }
}

/// Turns a failed render into the typed error: a refused KV read if a function recorded one,
/// otherwise tera's own message. Every secret the template saw is redacted from all text, even
/// from namespace and key names (a template could compute a key from a secret).
fn explain(template: &str, error: &Error, readable: &Readable, lookups: &Lookups) -> TemplateError {
    let template = template.to_string();
    let line = line_of(error);
    let clean = |text: &str| redact(text, &lookups.secrets_seen);
    match &lookups.refusal {
        Some(Refusal::NamespaceDenied { namespace }) => TemplateError::NamespaceDenied {
            template,
            line,
            namespace: clean(namespace),
            job: readable.job().to_string(),
            worker_ip: readable.worker_ip().to_string(),
            allowed: readable.allowed(),
        },
        Some(Refusal::MissingKey { namespace, key }) => TemplateError::MissingKey {
            template,
            line,
            namespace: clean(namespace),
            key: clean(key),
        },
        Some(Refusal::SecretUnreadable {
            namespace,
            key,
            reason,
        }) => TemplateError::SecretUnreadable {
            template,
            line,
            namespace: clean(namespace),
            key: clean(key),
            reason: clean(reason),
        },
        None => TemplateError::Render {
            template,
            line,
            detail: clean(&tera_detail(error, !lookups.secrets_seen.is_empty())),
        },
    }
}

const WITHHELD: &str = "(message withheld: this template read a secret and the message could \
                        quote it; replace get_secret/secrets reads with placeholder text to see it)";

/// Tera's report of `error`: message, file:line:column and the offending template line. Once
/// the template has read a secret, the message itself is withheld: tera quotes values in its
/// messages, and a secret may have been transformed (sliced, replaced, ...) beyond what
/// redaction can recognise. The location and the template's own text are kept.
fn tera_detail(error: &Error, read_secrets: bool) -> String {
    let report = error.to_string();
    if !read_secrets {
        return report;
    }
    match error.kind() {
        ErrorKind::SyntaxError(located) | ErrorKind::RenderingError(located) => {
            report.replacen(located.message(), WITHHELD, 1)
        }
        _ => WITHHELD.to_string(),
    }
}

const REDACTED: &str = "<redacted>";

/// `text` with every secret replaced. Tera's filters may have trimmed or re-cased a secret
/// before quoting it in an error, so each secret is matched trimmed and untrimmed, ignoring
/// ASCII case and also in its Unicode upper- and lower-case forms; longest forms go first so
/// no part of a longer secret survives.
fn redact<'s>(text: &str, secrets: impl IntoIterator<Item = &'s String>) -> String {
    let mut forms: Vec<String> = secrets
        .into_iter()
        .flat_map(|secret| [secret.clone(), secret.to_uppercase(), secret.to_lowercase()])
        .flat_map(|form| [form.trim().to_string(), form])
        .filter(|form| !form.is_empty())
        .collect();
    forms.sort();
    forms.dedup();
    forms.sort_by_key(|form| std::cmp::Reverse(form.len()));
    forms.iter().fold(text.to_string(), |text, form| {
        replace_ignoring_ascii_case(&text, form)
    })
}

fn replace_ignoring_ascii_case(text: &str, needle: &str) -> String {
    let (haystack, needle) = (text.as_bytes(), needle.as_bytes());
    let mut out = String::with_capacity(text.len());
    let (mut copied, mut at) = (0, 0);
    while at + needle.len() <= haystack.len() {
        let end = at + needle.len();
        if text.is_char_boundary(at)
            && text.is_char_boundary(end)
            && haystack[at..end].eq_ignore_ascii_case(needle)
        {
            out.push_str(&text[copied..at]);
            out.push_str(REDACTED);
            copied = end;
            at = end;
        } else {
            at += 1;
        }
    }
    out.push_str(&text[copied..]);
    out
}
