//! Build-time rendering of `_prometheus/scrape.yaml.tpl` with tera.
//!
//! A smaller language than deploy templates: the variables `job`, `current_version` and
//! `new_version` (both the manifest version), and the functions `get(ns, key)`,
//! `get_secret(key)` and `keys(ns)` over the job-level namespaces. There is no worker, so no
//! `worker_ip`, no allocation namespace, no `get_optional` and no `scrape_configs()`.

use std::collections::BTreeMap;
use std::sync::Arc;

use tera::{Context, Error, Kwargs, State, Tera, TeraResult, Value};

/// The namespaces a job's scrape template may read, with their values.
#[derive(Debug, Clone, Default)]
pub struct JobKv {
    /// namespace → key → value (plain namespaces only).
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// key → decrypted value of `secrets/job/<job>`, or why it cannot be decrypted.
    pub secrets: BTreeMap<String, Result<String, String>>,
}

/// The job-level namespaces a scrape template may read with `get` and `keys`.
pub fn readable_namespaces(job: &str) -> [String; 6] {
    [
        "maand/bucket".into(),
        "vars/bucket".into(),
        "maand/worker".into(),
        format!("maand/job/{job}"),
        format!("vars/bucket/job/{job}"),
        format!("vars/job/{job}"),
    ]
}

/// Renders `source` for `job` at `version`; the error is a one-line explanation.
pub fn render(job: &str, version: &str, source: &str, kv: JobKv) -> Result<String, String> {
    let kv = Arc::new(kv);
    let mut tera = Tera::new();
    tera.autoescape_on(Vec::<&str>::new());
    let store = Arc::clone(&kv);
    tera.register_function("get", move |kwargs: Kwargs, _: &State| {
        let namespace = kwargs.must_get::<&str>("ns")?;
        let key = kwargs.must_get::<&str>("key")?;
        let values = store.namespaces.get(namespace).ok_or_else(|| {
            Error::message(format!(
                "namespace `{namespace}` is not readable from a scrape template"
            ))
        })?;
        values
            .get(key)
            .cloned()
            .ok_or_else(|| Error::message(format!("key `{key}` is not in namespace `{namespace}`")))
    });
    let store = Arc::clone(&kv);
    tera.register_function("keys", move |kwargs: Kwargs, _: &State| {
        let namespace = kwargs.must_get::<&str>("ns")?;
        let values = store.namespaces.get(namespace).ok_or_else(|| {
            Error::message(format!(
                "namespace `{namespace}` is not readable from a scrape template"
            ))
        })?;
        Ok::<_, Error>(Value::from(
            values
                .keys()
                .map(|k| Value::from(k.as_str()))
                .collect::<Vec<_>>(),
        ))
    });
    let store = Arc::clone(&kv);
    tera.register_function(
        "get_secret",
        move |kwargs: Kwargs, _: &State| -> TeraResult<String> {
            let key = kwargs.must_get::<&str>("key")?;
            match store.secrets.get(key) {
                Some(Ok(value)) => Ok(value.clone()),
                Some(Err(reason)) => Err(Error::message(format!(
                    "secret `{key}` cannot be read: {reason}"
                ))),
                None => Err(Error::message(format!("secret `{key}` is not set"))),
            }
        },
    );
    tera.add_raw_template("scrape.yaml.tpl", source)
        .map_err(|e| e.to_string())?;
    let mut context = Context::new();
    context.insert("job", job);
    context.insert("current_version", version);
    context.insert("new_version", version);
    let rendered = tera
        .render("scrape.yaml.tpl", &context)
        .map_err(|e| e.to_string());
    let secrets: Vec<&String> = kv
        .secrets
        .values()
        .filter_map(|s| s.as_ref().ok())
        .collect();
    // Keep secret values out of error text.
    rendered.map_err(|message| {
        secrets
            .iter()
            .filter(|s| !s.is_empty())
            .fold(message, |m, s| m.replace(s.as_str(), "<redacted>"))
    })
}
