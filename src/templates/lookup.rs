//! The KV reads a template can make: `get`, `get_optional`, `get_secret` and `keys`.
//!
//! Before a render, [`Readable::fetch`] copies every namespace the allocation may read out of
//! the [`KvSource`] (tera functions must own their data, so they cannot borrow the source).
//! Secrets are decrypted up front too, but a secret that fails to decrypt only fails the render
//! if the template asks for it. During the render the functions record the first refused read
//! in a [`Lookups`] log, which [`super::render`] turns into a typed [`super::TemplateError`],
//! together with every secret value the template saw so they can be kept out of error text.
//!
//! It never writes to the source and never returns a value from a namespace outside the scope.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use tera::{Error, Kwargs, State, Tera, TeraResult, Value};

use super::KvSource;
use crate::kv::access::{self, ReadScope};

/// One value as the template will see it.
enum Entry {
    Plain(String),
    /// A decrypted secret, or why it could not be decrypted.
    Secret(Result<String, String>),
}

/// Everything one allocation may read, copied from the KV source.
pub(super) struct Readable {
    job: String,
    worker_ip: String,
    namespaces: BTreeMap<String, BTreeMap<String, Entry>>,
}

/// A read the template was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refusal {
    NamespaceDenied {
        namespace: String,
    },
    MissingKey {
        namespace: String,
        key: String,
    },
    SecretUnreadable {
        namespace: String,
        key: String,
        reason: String,
    },
}

/// What the functions observed during one render.
#[derive(Default)]
pub(super) struct Lookups {
    /// The first refused read; tera stops at the first function error.
    pub(super) refusal: Option<Refusal>,
    /// Every secret value handed to the template.
    pub(super) secrets_seen: BTreeSet<String>,
}

impl Readable {
    /// Copies the namespaces `scope` allows out of `kv`.
    pub(super) fn fetch(scope: &ReadScope<'_>, kv: &dyn KvSource) -> Readable {
        let secret_jobs: BTreeMap<String, &str> = std::iter::once(scope.job)
            .chain(scope.upstream_jobs.iter().map(String::as_str))
            .filter(|job| !job.is_empty())
            .map(|job| (access::job_secrets(job), job))
            .collect();
        let namespaces = scope
            .namespaces()
            .into_iter()
            .map(|namespace| {
                let entries = kv
                    .keys(&namespace)
                    .into_iter()
                    .filter_map(|key| {
                        let entry = match secret_jobs.get(&namespace) {
                            Some(job) => Entry::Secret(kv.secret(job, &key).transpose()?),
                            None => Entry::Plain(kv.get(&namespace, &key)?),
                        };
                        Some((key, entry))
                    })
                    .collect();
                (namespace, entries)
            })
            .collect();
        Readable {
            job: scope.job.to_string(),
            worker_ip: scope.worker_ip.to_string(),
            namespaces,
        }
    }

    /// Nothing to read: for checking a template's syntax.
    pub(super) fn empty() -> Readable {
        Readable {
            job: String::new(),
            worker_ip: String::new(),
            namespaces: BTreeMap::new(),
        }
    }

    /// The namespaces the template may read, sorted.
    pub(super) fn allowed(&self) -> Box<[String]> {
        self.namespaces.keys().cloned().collect()
    }

    pub(super) fn job(&self) -> &str {
        &self.job
    }

    pub(super) fn worker_ip(&self) -> &str {
        &self.worker_ip
    }

    fn namespace(
        &self,
        namespace: &str,
        lookups: &Mutex<Lookups>,
    ) -> TeraResult<&BTreeMap<String, Entry>> {
        self.namespaces.get(namespace).ok_or_else(|| {
            refuse(
                lookups,
                Refusal::NamespaceDenied {
                    namespace: namespace.to_string(),
                },
                format!("namespace `{namespace}` is not readable here"),
            )
        })
    }

    /// The value of `key`, `None` when the (readable) namespace does not hold it.
    fn value(
        &self,
        namespace: &str,
        key: &str,
        lookups: &Mutex<Lookups>,
    ) -> TeraResult<Option<String>> {
        match self.namespace(namespace, lookups)?.get(key) {
            None => Ok(None),
            Some(Entry::Plain(value)) => Ok(Some(value.clone())),
            Some(Entry::Secret(Ok(value))) => {
                lock(lookups).secrets_seen.insert(value.clone());
                Ok(Some(value.clone()))
            }
            Some(Entry::Secret(Err(reason))) => Err(refuse(
                lookups,
                Refusal::SecretUnreadable {
                    namespace: namespace.to_string(),
                    key: key.to_string(),
                    reason: reason.clone(),
                },
                format!("secret `{key}` in `{namespace}` cannot be read"),
            )),
        }
    }

    fn required(&self, namespace: &str, key: &str, lookups: &Mutex<Lookups>) -> TeraResult<String> {
        self.value(namespace, key, lookups)?.ok_or_else(|| {
            refuse(
                lookups,
                Refusal::MissingKey {
                    namespace: namespace.to_string(),
                    key: key.to_string(),
                },
                format!("key `{key}` is not in namespace `{namespace}`"),
            )
        })
    }
}

/// Registers `get`, `get_optional`, `get_secret` and `keys` on `tera`, reading from `readable`
/// and reporting into `lookups`.
pub(super) fn register(tera: &mut Tera, readable: &Arc<Readable>, lookups: &Arc<Mutex<Lookups>>) {
    let (source, log) = (Arc::clone(readable), Arc::clone(lookups));
    tera.register_function("get", move |kwargs: Kwargs, _: &State| {
        let (namespace, key) = namespace_and_key("get", &kwargs)?;
        source.required(namespace, key, &log)
    });

    let (source, log) = (Arc::clone(readable), Arc::clone(lookups));
    tera.register_function("get_optional", move |kwargs: Kwargs, _: &State| {
        let (namespace, key) = namespace_and_key("get_optional", &kwargs)?;
        Ok::<_, Error>(source.value(namespace, key, &log)?.unwrap_or_default())
    });

    let (source, log) = (Arc::clone(readable), Arc::clone(lookups));
    tera.register_function("get_secret", move |kwargs: Kwargs, _: &State| {
        only_arguments("get_secret", &kwargs, &["key"])?;
        let key = kwargs.must_get::<&str>("key")?;
        source.required(&access::job_secrets(source.job()), key, &log)
    });

    let (source, log) = (Arc::clone(readable), Arc::clone(lookups));
    tera.register_function("keys", move |kwargs: Kwargs, _: &State| {
        only_arguments("keys", &kwargs, &["ns"])?;
        let namespace = kwargs.must_get::<&str>("ns")?;
        let keys: Vec<Value> = source
            .namespace(namespace, &log)?
            .keys()
            .map(|key| Value::from(key.as_str()))
            .collect();
        Ok::<_, Error>(Value::from(keys))
    });
}

fn namespace_and_key<'k>(function: &str, kwargs: &'k Kwargs) -> TeraResult<(&'k str, &'k str)> {
    only_arguments(function, kwargs, &["ns", "key"])?;
    Ok((kwargs.must_get("ns")?, kwargs.must_get("key")?))
}

/// Rejects misspelled arguments, which tera would otherwise ignore.
fn only_arguments(function: &str, kwargs: &Kwargs, expected: &[&str]) -> TeraResult<()> {
    for (name, _) in kwargs.iter() {
        let name = name.to_string();
        if !expected.contains(&name.as_str()) {
            return Err(Error::message(format!(
                "`{function}` takes only {} but was given `{name}`",
                expected
                    .iter()
                    .map(|arg| format!("`{arg}`"))
                    .collect::<Vec<_>>()
                    .join(" and ")
            )));
        }
    }
    Ok(())
}

/// Records the refusal (the first one wins) and returns the error that stops tera.
fn refuse(lookups: &Mutex<Lookups>, refusal: Refusal, message: String) -> Error {
    lock(lookups).refusal.get_or_insert(refusal);
    Error::message(message)
}

/// The log stays usable even if a render thread panicked while holding it: it only collects.
fn lock(lookups: &Mutex<Lookups>) -> MutexGuard<'_, Lookups> {
    lookups
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
