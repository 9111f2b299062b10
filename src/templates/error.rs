//! Why a `.tpl` file could not be rendered, in words an operator can act on.
//!
//! Every variant names the template file (relative to the job directory). No variant ever
//! carries a value read from the KV store: namespaces and key names only.

/// A template that could not be turned into a file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The file is not valid tera syntax, or calls a function or filter that does not exist.
    #[error(
        "template {template}{}: syntax error: {detail}\n\
         templates use tera syntax, e.g. {{{{ get(ns=\"vars/job/<job>\", key=\"<key>\") }}}}; \
         see docs/templates.md",
        at_line(*line)
    )]
    Syntax {
        template: String,
        line: Option<u32>,
        detail: String,
    },

    /// The template read a namespace this allocation may not read.
    #[error(
        "template {template}{}: namespace `{namespace}` is not readable by job `{job}` on \
         worker {worker_ip}; it may read only {}. To read another job's `maand/job`, `vars/job` \
         or `secrets/job` namespace, make one of this job's commands demand that job in \
         manifest.json",
        at_line(*line),
        allowed.join(", ")
    )]
    NamespaceDenied {
        template: String,
        line: Option<u32>,
        namespace: String,
        job: String,
        worker_ip: String,
        allowed: Box<[String]>,
    },

    /// `get` or `get_secret` asked for a key that the namespace does not hold.
    #[error(
        "template {template}{}: key `{key}` is not in namespace `{namespace}`; {}, or use \
         get_optional(ns=\"{namespace}\", key=\"{key}\") if the template can do without it",
        at_line(*line),
        key_source_hint(namespace)
    )]
    MissingKey {
        template: String,
        line: Option<u32>,
        namespace: String,
        key: String,
    },

    /// A secret exists but could not be decrypted.
    #[error(
        "template {template}{}: secret `{key}` in namespace `{namespace}` cannot be read: \
         {reason}",
        at_line(*line)
    )]
    SecretUnreadable {
        template: String,
        line: Option<u32>,
        namespace: String,
        key: String,
        reason: String,
    },

    /// Anything else tera refused while rendering (undefined variable, bad filter argument,
    /// division by zero, ...). Secret values read by the template are redacted from `detail`.
    #[error("template {template}{}: rendering failed: {detail}", at_line(*line))]
    Render {
        template: String,
        line: Option<u32>,
        detail: String,
    },

    /// The caller passed a context and a read scope for different allocations.
    #[error(
        "template {template}: rendering for job `{context_job}` on worker {context_worker_ip} \
         was given the read scope of job `{scope_job}` on worker {scope_worker_ip}; \
         this is a bug in maand, please report it"
    )]
    ScopeMismatch {
        template: String,
        context_job: String,
        context_worker_ip: String,
        scope_job: String,
        scope_worker_ip: String,
    },
}

impl TemplateError {
    /// The template file the error is about, relative to the job directory.
    pub fn template(&self) -> &str {
        match self {
            TemplateError::Syntax { template, .. }
            | TemplateError::NamespaceDenied { template, .. }
            | TemplateError::MissingKey { template, .. }
            | TemplateError::SecretUnreadable { template, .. }
            | TemplateError::Render { template, .. }
            | TemplateError::ScopeMismatch { template, .. } => template,
        }
    }
}

fn at_line(line: Option<u32>) -> String {
    line.map(|line| format!(" line {line}")).unwrap_or_default()
}

/// Where the keys of a namespace come from, so a missing key says what to change.
fn key_source_hint(namespace: &str) -> &'static str {
    if namespace.starts_with("vars/job/") {
        "add it to the job's vars.toml or have a pre_deploy hook put it"
    } else if namespace.starts_with("secrets/job/") {
        "have a job command put it with put_job_secret before deploy"
    } else if namespace.starts_with("vars/bucket/job/") {
        "add it to the job's section of bucket.jobs.conf"
    } else if namespace == "vars/bucket" {
        "add it to bucket.conf"
    } else {
        "maand build writes this namespace: check the key name, that the job has an active \
         allocation, and run `maand build`"
    }
}
