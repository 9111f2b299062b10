//! The runtime HTTP API job commands call: routes, request parsing and the documented status
//! codes, on top of a [`Session`].
//!
//! It listens on 127.0.0.1 only, on a port the kernel picks, and answers nothing without the
//! bearer token issued to the calling allocation's process. Every request also carries the
//! documented scope headers (`X-ALLOCATION-ID`, `EVENT`, `COMMAND`), checked against the token.
//! Bodies are JSON; `GET` routes also take their fields as query parameters (fetch cannot send
//! a body with `GET`). Responses are JSON; errors are `{"error": ..., "detail": ...}`. This
//! module decides no access rule itself (that is the session's) and never logs a request body.

use super::session::{ApiError, Caller, Session};
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Default `capacity` of `POST /semaphore/acquire`.
const DEFAULT_CAPACITY: u32 = 1;
/// Default `timeout_seconds` of `POST /semaphore/acquire`.
const DEFAULT_TIMEOUT_SECONDS: u64 = 600;

type Params = Query<HashMap<String, String>>;

/// The routes of the runtime API over one session.
pub(crate) fn router(session: Arc<Session>) -> Router {
    Router::new()
        .route("/kv", get(kv_get).put(kv_put).delete(kv_delete))
        .route("/kv/secret", put(secret_put).delete(secret_delete))
        .route("/kv/keys", get(kv_keys))
        .route("/demands", get(demands))
        .route("/semaphore/acquire", post(semaphore_acquire))
        .route("/semaphore/release", post(semaphore_release))
        .route("/semaphore/status", get(semaphore_status))
        .with_state(session)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KvBody {
    namespace: Option<String>,
    key: Option<String>,
    value: Option<String>,
}

impl KvBody {
    fn entry(&self) -> Result<(&str, &str), ApiError> {
        match (self.namespace.as_deref(), self.key.as_deref()) {
            (Some(namespace), Some(key)) if !namespace.is_empty() && !key.is_empty() => {
                Ok((namespace, key))
            }
            _ => Err(ApiError::MissingNamespaceOrKey),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysBody {
    namespace: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SemaphoreBody {
    name: Option<String>,
    capacity: Option<u32>,
    timeout_seconds: Option<u64>,
}

impl SemaphoreBody {
    fn name(&self) -> Result<&str, ApiError> {
        self.name
            .as_deref()
            .ok_or_else(|| ApiError::SemaphoreRequest("name is required".into()))
    }
}

fn respond(status: u16, value: serde_json::Value) -> Response {
    let mut response = Response::new(Body::from(value.to_string()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn failure(error: ApiError) -> Response {
    let mut body = json!({ "error": error.message() });
    if let Some(detail) = error.detail() {
        body["detail"] = json!(detail);
    }
    respond(error.status(), body)
}

fn reply(result: Result<serde_json::Value, ApiError>) -> Response {
    match result {
        Ok(value) => respond(200, value),
        Err(error) => failure(error),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Checks the token and the scope headers; returns the calling allocation.
fn authenticate(session: &Session, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let caller = header(headers, AUTHORIZATION.as_str())
        .and_then(|value| value.strip_prefix("Bearer "))
        .and_then(|token| session.caller(token.trim()))
        .ok_or(ApiError::Unauthorized)?;
    let alloc_id = header(headers, "x-allocation-id").ok_or(ApiError::MissingAllocation)?;
    if alloc_id != caller.alloc_id {
        return Err(ApiError::InvalidAllocation);
    }
    match header(headers, "event") {
        Some(event) if event == session.event.as_str() => {}
        Some(event) => {
            return Err(ApiError::Scope(format!(
                "EVENT is {event} but the running command is on {}",
                session.event
            )))
        }
        None => return Err(ApiError::Scope("the EVENT header is missing".into())),
    }
    match header(headers, "command") {
        Some(command) if command == session.command => {}
        Some(command) => {
            return Err(ApiError::Scope(format!(
                "COMMAND is {command} but the running command is {}",
                session.command
            )))
        }
        None => return Err(ApiError::Scope("the COMMAND header is missing".into())),
    }
    Ok(caller)
}

/// The request's fields: from the JSON body when there is one (which must be declared as
/// JSON), else from the query string. `needs_json` routes require a JSON content type.
fn fields<T: DeserializeOwned + Default>(
    headers: &HeaderMap,
    body: &Bytes,
    query: &HashMap<String, String>,
    needs_json: bool,
) -> Result<T, ApiError> {
    let declared_json = header(headers, CONTENT_TYPE.as_str())
        .map(|v| {
            v.trim()
                .to_ascii_lowercase()
                .starts_with("application/json")
        })
        .unwrap_or(false);
    if (needs_json || !body.is_empty()) && !declared_json {
        return Err(ApiError::ContentType);
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        let object: serde_json::Map<String, serde_json::Value> = query
            .iter()
            .map(|(k, v)| (k.clone(), query_value(k, v)))
            .collect();
        return serde_json::from_value(serde_json::Value::Object(object))
            .map_err(|e| ApiError::InvalidJson(e.to_string()));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::InvalidJson(e.to_string()))
}

/// Query parameters are text; the numeric fields of the API are numbers in JSON.
fn query_value(key: &str, value: &str) -> serde_json::Value {
    match (key, value.parse::<u64>()) {
        ("capacity" | "timeout_seconds", Ok(number)) => json!(number),
        _ => json!(value),
    }
}

async fn kv_get(
    State(session): State<Arc<Session>>,
    Query(query): Params,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    reply((|| {
        let caller = authenticate(&session, &headers)?;
        let request: KvBody = fields(&headers, &body, &query, false)?;
        let (namespace, key) = request.entry()?;
        let value = session.get(&caller, namespace, key)?;
        Ok(json!({ "namespace": namespace, "key": key, "value": value }))
    })())
}

fn write(
    session: &Session,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
    secret: bool,
) -> Result<serde_json::Value, ApiError> {
    authenticate(session, headers)?;
    let request: KvBody = fields(headers, body, query, true)?;
    let (namespace, key) = request.entry()?;
    let value = request.value.as_deref().ok_or(ApiError::MissingValue)?;
    session.put(namespace, key, value, secret)?;
    Ok(json!({ "namespace": namespace, "key": key, "stored": true }))
}

fn remove(
    session: &Session,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
    secret: bool,
) -> Result<serde_json::Value, ApiError> {
    authenticate(session, headers)?;
    let request: KvBody = fields(headers, body, query, true)?;
    let (namespace, key) = request.entry()?;
    let existed = session.delete(namespace, key, secret)?;
    Ok(json!({ "namespace": namespace, "key": key, "deleted": existed }))
}

async fn kv_put(
    State(session): State<Arc<Session>>,
    Query(query): Params,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    reply(write(&session, &query, &headers, &body, false))
}

async fn kv_delete(
    State(session): State<Arc<Session>>,
    Query(query): Params,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    reply(remove(&session, &query, &headers, &body, false))
}

async fn secret_put(
    State(session): State<Arc<Session>>,
    Query(query): Params,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    reply(write(&session, &query, &headers, &body, true))
}

async fn secret_delete(
    State(session): State<Arc<Session>>,
    Query(query): Params,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    reply(remove(&session, &query, &headers, &body, true))
}

async fn kv_keys(
    State(session): State<Arc<Session>>,
    Query(query): Params,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    reply((|| {
        let caller = authenticate(&session, &headers)?;
        let request: KeysBody = fields(&headers, &body, &query, false)?;
        let keys = session.keys(&caller, request.namespace.as_deref())?;
        Ok(json!({ "keys": keys }))
    })())
}

async fn demands(State(session): State<Arc<Session>>, headers: HeaderMap) -> Response {
    reply(authenticate(&session, &headers).map(|_| json!(session.demands())))
}

async fn semaphore_acquire(
    State(session): State<Arc<Session>>,
    Query(query): Params,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let prepared = (|| {
        let caller = authenticate(&session, &headers)?;
        let request: SemaphoreBody = fields(&headers, &body, &query, true)?;
        let name = request.name()?.to_string();
        Ok((caller, name, request))
    })();
    let (caller, name, request) = match prepared {
        Ok(prepared) => prepared,
        Err(error) => return failure(error),
    };
    let capacity = request.capacity.unwrap_or(DEFAULT_CAPACITY);
    let timeout = Duration::from_secs(request.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS));
    reply(
        session
            .acquire(&caller, &name, capacity, timeout)
            .await
            .map(|()| {
                json!({
                    "name": name,
                    "allocation_id": caller.alloc_id,
                    "capacity": capacity,
                    "acquired": true,
                })
            }),
    )
}

async fn semaphore_release(
    State(session): State<Arc<Session>>,
    Query(query): Params,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    reply((|| {
        let caller = authenticate(&session, &headers)?;
        let request: SemaphoreBody = fields(&headers, &body, &query, true)?;
        let name = request.name()?;
        session.release(&caller, name)?;
        Ok(json!({ "name": name, "allocation_id": caller.alloc_id, "released": true }))
    })())
}

async fn semaphore_status(
    State(session): State<Arc<Session>>,
    Query(query): Params,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    reply((|| {
        authenticate(&session, &headers)?;
        let request: SemaphoreBody = fields(&headers, &body, &query, false)?;
        let status = session.status(request.name()?)?;
        Ok(json!(status))
    })())
}
