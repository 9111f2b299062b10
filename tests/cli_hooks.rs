//! Job commands end to end with real python3 and bun: `maand jobcommand`, `post_build` in
//! `maand build`, and the runtime API (KV read/write matrix, secrets, demands, semaphores,
//! tokens). Job commands run on the operator host, so only the SSH helper test starts a worker.

#[path = "support/hook_bucket.rs"]
mod hook_bucket;
mod support;

use hook_bucket::HookBucket;
use maand::activity::SharedRun;
use maand::bucket::Bucket;
use maand::events::{KvChange, KvValue};
use maand::hooks::{self, HookCatalog, HookHost, HookRequest};
use maand::workspace::CommandEvent;
use serde_json::Value;
use std::collections::BTreeMap;

/// Raw HTTP calls with full control over headers, for scripts that probe the API's rules.
/// `case(name, ...)` stores `[status, error message]`; `save()` writes them to
/// `out/<command>-<event>-<ip>.json`.
const PROBE_PY: &str = r#"
import json, os, urllib.error, urllib.parse, urllib.request
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

def call(method, path, body=None, query=None, token=True, alloc=None, event=None,
         content_type="application/json", raw_body=None):
    url = os.environ["MAAND_API_URL"] + path
    if query:
        url += "?" + urllib.parse.urlencode(query)
    headers = {"EVENT": event or os.environ["EVENT"], "COMMAND": os.environ["COMMAND"]}
    if token is True:
        headers["Authorization"] = "Bearer " + os.environ["MAAND_API_TOKEN"]
    elif token:
        headers["Authorization"] = "Bearer " + token
    if alloc is not False:
        headers["X-ALLOCATION-ID"] = alloc or os.environ["ALLOCATION_ID"]
    data = raw_body if raw_body is not None else (None if body is None else json.dumps(body).encode())
    if data is not None and content_type:
        headers["Content-Type"] = content_type
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with OPENER.open(request) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")

results = {}

def case(name, *args, **kwargs):
    status, body = call(*args, **kwargs)
    results[name] = [status, body.get("error") if isinstance(body, dict) else None]
    return body

def save():
    os.makedirs("out", exist_ok=True)
    name = f"out/{os.environ['COMMAND']}-{os.environ['EVENT']}-{os.environ['ALLOCATION_IP']}.json"
    with open(name, "w") as handle:
        json.dump(results, handle)
"#;

fn probe_script(body: &str) -> String {
    format!("{PROBE_PY}\n{body}\nsave()\n")
}

/// `[status, error]` per case from a probe script's output file.
fn probe_results(bucket: &HookBucket, file: &str) -> BTreeMap<String, (u64, Option<String>)> {
    let value: Value = serde_json::from_str(&bucket.read(file)).unwrap();
    value
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, result)| {
            (
                name.clone(),
                (
                    result[0].as_u64().unwrap(),
                    result[1].as_str().map(str::to_string),
                ),
            )
        })
        .collect()
}

fn assert_cases(
    results: &BTreeMap<String, (u64, Option<String>)>,
    expected: &[(&str, u64, Option<&str>)],
) {
    for (name, status, message) in expected {
        let (got_status, got_message) = results
            .get(*name)
            .unwrap_or_else(|| panic!("case {name} did not run: {results:?}"));
        assert_eq!(got_status, status, "case {name}: {results:?}");
        if let Some(message) = message {
            assert_eq!(
                got_message.as_deref(),
                Some(*message),
                "case {name}: {results:?}"
            );
        }
    }
}

const ALLOWED_NAMESPACE: &str = "Invalid or unauthorized namespace";

/// Workers 127.9.0.1 (api, db), 127.9.0.2 (db), 127.9.0.3 (other); jobs `db` (with
/// `command_schema` and vars), `other` (with vars) and `api`, whose `command_matrix` demands
/// `db.command_schema`.
fn matrix_bucket() -> HookBucket {
    let bucket = HookBucket::new(&[
        ("127.9.0.1", &["api", "db"]),
        ("127.9.0.2", &["db"]),
        ("127.9.0.3", &["other"]),
    ]);
    bucket.job(
        "db",
        r#"{"version": "1.0.0", "selectors": ["db"], "commands": {"command_schema": {"executed_on": ["cli"]}}}"#,
        &[(
            "command_schema.py",
            &probe_script(
                r#"os.makedirs("out", exist_ok=True)
with open("out/demands.json", "w") as handle:
    json.dump(call("GET", "/demands")[1], handle)"#,
            ),
        )],
    );
    bucket.write("workspace/jobs/db/vars.toml", "answer = \"42\"\n");
    bucket.job(
        "other",
        r#"{"version": "1.0.0", "selectors": ["other"]}"#,
        &[],
    );
    bucket.write("workspace/jobs/other/vars.toml", "answer = \"43\"\n");
    bucket.job(
        "api",
        r#"{"version": "1.0.0", "selectors": ["api"], "commands": {"command_matrix": {
            "executed_on": ["cli", "pre_deploy", "post_deploy", "health_check"],
            "demands": {"job": "db", "command": "command_schema", "config": {"min_version": "1.0.0", "flavour": "small"}}}}}"#,
        &[("command_matrix.py", &probe_script(MATRIX_PY))],
    );
    bucket.write("workspace/jobs/api/vars.toml", "old = \"1\"\n");
    bucket.maand_ok(&["build"]);
    bucket
}

const MATRIX_PY: &str = r#"
os.makedirs("out", exist_ok=True)

def get(name, namespace, key):
    case(name, "GET", "/kv", query={"namespace": namespace, "key": key})

def put(name, namespace, key, path="/kv"):
    case(name, "PUT", path, {"namespace": namespace, "key": key, "value": "v"})

get("r_bucket", "maand/bucket", "bucket_id")
get("r_own_worker", "maand/worker/127.9.0.1", "worker_ip")
get("r_other_worker", "maand/worker/127.9.0.2", "worker_ip")
get("r_own_job", "maand/job/api", "workers")
get("r_own_allocation", "maand/job/api/worker/127.9.0.1", "version")
get("r_upstream_job", "maand/job/db", "version")
get("r_upstream_vars", "vars/job/db", "answer")
get("r_upstream_allocation", "maand/job/db/worker/127.9.0.1", "version")
get("r_undemanded_job", "maand/job/other", "version")
get("r_undemanded_vars", "vars/job/other", "answer")
get("r_missing", "vars/job/api", "nope")
case("r_json_body", "GET", "/kv", {"namespace": "maand/bucket", "key": "bucket_id"})

put("w_own_vars", "vars/job/api", "k")
put("w_rollout_order", "maand/job/api", "rollout_order")
put("w_own_job_other_key", "maand/job/api", "version")
put("w_upstream_vars", "vars/job/db", "k")
put("w_bucket", "maand/bucket", "k")
put("w_bucket_vars", "vars/bucket", "k")
put("w_bucket_job_vars", "vars/bucket/job/api", "k")
put("w_allocation", "maand/job/api/worker/127.9.0.1", "k")
put("w_worker", "maand/worker/127.9.0.1", "k")
put("w_secret_through_kv", "secrets/job/api", "k")
put("w_vars_through_secret", "vars/job/api", "k", path="/kv/secret")
put("w_upstream_secret", "secrets/job/db", "k", path="/kv/secret")
case("d_bucket", "DELETE", "/kv", {"namespace": "maand/bucket", "key": "bucket_id"})
case("d_own_vars", "DELETE", "/kv", {"namespace": "vars/job/api", "key": "old"})

case("p_no_token", "GET", "/kv", query={"namespace": "maand/bucket", "key": "bucket_id"}, token=False)
case("p_wrong_token", "GET", "/kv", query={"namespace": "maand/bucket", "key": "bucket_id"}, token="0" * 64)
case("p_no_allocation", "GET", "/kv", query={"namespace": "maand/bucket", "key": "bucket_id"}, alloc=False)
case("p_other_allocation", "GET", "/kv", query={"namespace": "maand/bucket", "key": "bucket_id"},
     alloc="00000000-0000-0000-0000-000000000000")
case("p_wrong_event", "GET", "/kv", query={"namespace": "maand/bucket", "key": "bucket_id"}, event="post_build")
case("p_no_content_type", "PUT", "/kv", {"namespace": "vars/job/api", "key": "k", "value": "v"}, content_type=None)
case("p_invalid_json", "PUT", "/kv", raw_body=b"{nope")
case("p_missing_key", "PUT", "/kv", {"namespace": "vars/job/api", "value": "v"})
case("p_missing_value", "PUT", "/kv", {"namespace": "vars/job/api", "key": "k"})

keys = case("k_default", "GET", "/kv/keys")
with open("out/keys.json", "w") as handle:
    json.dump(keys, handle)
case("k_undemanded", "GET", "/kv/keys", query={"namespace": "vars/job/other"})
case("demands", "GET", "/demands")
results["extra_env"] = [int(os.environ.get("BATCH_INDEX", "0")), None]
"#;

#[test]
fn the_runtime_api_follows_the_documented_read_write_matrix() {
    let bucket = matrix_bucket();
    bucket.maand_ok(&["jobcommand", "command_matrix", "api"]);
    let results = probe_results(&bucket, "out/command_matrix-cli-127.9.0.1.json");
    let forbidden = Some(ALLOWED_NAMESPACE);
    assert_cases(
        &results,
        &[
            ("r_bucket", 200, None),
            ("r_own_worker", 200, None),
            ("r_other_worker", 400, forbidden),
            ("r_own_job", 200, None),
            ("r_own_allocation", 200, None),
            ("r_upstream_job", 200, None),
            ("r_upstream_vars", 200, None),
            ("r_upstream_allocation", 400, forbidden),
            ("r_undemanded_job", 400, forbidden),
            ("r_undemanded_vars", 400, forbidden),
            ("r_missing", 404, Some("KV get operation failed")),
            ("r_json_body", 200, None),
            ("w_own_vars", 200, None),
            ("w_rollout_order", 200, None),
            ("w_own_job_other_key", 400, forbidden),
            ("w_upstream_vars", 400, forbidden),
            ("w_bucket", 400, forbidden),
            ("w_bucket_vars", 400, forbidden),
            ("w_bucket_job_vars", 400, forbidden),
            ("w_allocation", 400, forbidden),
            ("w_worker", 400, forbidden),
            ("w_secret_through_kv", 400, forbidden),
            ("w_vars_through_secret", 400, forbidden),
            ("w_upstream_secret", 400, forbidden),
            ("d_bucket", 400, forbidden),
            ("d_own_vars", 200, None),
            ("p_no_token", 401, None),
            ("p_wrong_token", 401, None),
            (
                "p_no_allocation",
                400,
                Some("X-ALLOCATION-ID header is missing"),
            ),
            ("p_other_allocation", 404, Some("Invalid allocation ID")),
            ("p_wrong_event", 400, None),
            (
                "p_no_content_type",
                415,
                Some("Content-Type must be application/json"),
            ),
            ("p_invalid_json", 400, Some("Invalid JSON format")),
            (
                "p_missing_key",
                400,
                Some("Both namespace and key are required"),
            ),
            ("p_missing_value", 400, None),
            ("k_default", 200, None),
            ("k_undemanded", 400, forbidden),
            ("demands", 200, None),
        ],
    );
    let keys: Value = serde_json::from_str(&bucket.read("out/keys.json")).unwrap();
    assert_eq!(keys["keys"]["vars/job/api"], serde_json::json!(["k"]));
    assert_eq!(keys["keys"]["secrets/job/api"], serde_json::json!([]));

    // The allowed writes were recorded when the command succeeded; the refused ones were not.
    let latest = |namespace: &str, key: &str| {
        bucket.sql(&format!(
            "SELECT value || '|' || deleted FROM kv WHERE namespace = '{namespace}' AND key = '{key}' ORDER BY version DESC LIMIT 1"
        ))
    };
    assert_eq!(latest("vars/job/api", "k"), "v|0");
    assert_eq!(latest("vars/job/api", "old"), "|1");
    assert_eq!(latest("maand/job/api", "rollout_order"), "v|0");
    assert_eq!(latest("vars/job/db", "k"), "");
    assert_eq!(latest("vars/bucket", "k"), "");
}

#[test]
fn demands_list_the_commands_that_depend_on_the_running_one() {
    let bucket = matrix_bucket();
    bucket.maand_ok(&["jobcommand", "command_schema", "db"]);
    let demands: Value = serde_json::from_str(&bucket.read("out/demands.json")).unwrap();
    assert_eq!(
        demands,
        serde_json::json!([{
            "job": "api",
            "command": "command_matrix",
            "demand_config": {"min_version": "1.0.0", "flavour": "small"}
        }])
    );
}

/// Runs `command_matrix` of `api` for `event` through the library, the way deploy does.
fn run_event(bucket: &HookBucket, event: CommandEvent) -> hooks::HookOutcome {
    let maand_bucket = Bucket::at(bucket.path());
    let run = maand::run::Run::begin(&maand_bucket, "test", &[]).unwrap();
    let shared = SharedRun::new(run);
    let host = HookHost::new(&maand_bucket).unwrap();
    let catalog = shared.with(|run| HookCatalog::load(run.conn())).unwrap();
    let request = HookRequest {
        job: "api".into(),
        command: "command_matrix".into(),
        event,
        allocations: catalog.active_allocations("api"),
        concurrency: 0,
        extra_env: BTreeMap::from([("BATCH_INDEX".to_string(), "7".to_string())]),
        verbose: false,
        timeout: None,
    };
    let outcome = hooks::run_hook_blocking(&host, &catalog, &shared, &request).unwrap();
    let run = shared.into_run().unwrap();
    run.finish(&Ok::<(), String>(())).unwrap();
    outcome
}

#[test]
fn a_command_past_its_timeout_is_killed_with_what_it_started_and_fails() {
    let bucket = HookBucket::new(&[("127.0.0.1", &["api"])]);
    // The script starts a child that holds stdout open: only killing the whole process group
    // lets the run end.
    bucket.job(
        "api",
        r#"{"selectors": ["api"], "commands": {"command_slow": {"executed_on": ["health_check"]}}}"#,
        &[(
            "command_slow.py",
            "import subprocess, time\nprint('started', flush=True)\nsubprocess.Popen(['sleep', '3600'])\ntime.sleep(3600)\n",
        )],
    );
    bucket.maand_ok(&["build"]);
    let maand_bucket = Bucket::at(bucket.path());
    let run = maand::run::Run::begin(&maand_bucket, "test", &[]).unwrap();
    let shared = SharedRun::new(run);
    let host = HookHost::new(&maand_bucket).unwrap();
    let catalog = shared.with(|run| HookCatalog::load(run.conn())).unwrap();
    let request = HookRequest {
        job: "api".into(),
        command: "command_slow".into(),
        event: CommandEvent::HealthCheck,
        allocations: catalog.active_allocations("api"),
        concurrency: 0,
        extra_env: BTreeMap::new(),
        verbose: false,
        timeout: Some(std::time::Duration::from_secs(1)),
    };
    let outcome = hooks::run_hook_blocking(&host, &catalog, &shared, &request).unwrap();
    shared
        .into_run()
        .unwrap()
        .finish(&Ok::<(), String>(()))
        .unwrap();
    assert_eq!(outcome.runs.len(), 1);
    let error = outcome.runs[0].error.clone().unwrap_or_default();
    assert!(error.contains("timed out after 1 s"), "{error}");
    assert_eq!(outcome.runs[0].exit_code, None);
}

#[test]
fn health_check_commands_may_not_write_kv_at_all() {
    let bucket = matrix_bucket();
    let outcome = run_event(&bucket, CommandEvent::HealthCheck);
    assert!(outcome.succeeded(), "{:?}", outcome.runs);
    let results = probe_results(&bucket, "out/command_matrix-health_check-127.9.0.1.json");
    let refused = Some("KV writes are not allowed during health_check");
    assert_cases(
        &results,
        &[
            ("r_bucket", 200, None),
            ("w_own_vars", 400, refused),
            ("w_rollout_order", 400, refused),
            ("extra_env", 7, None),
            ("w_bucket", 400, refused),
            ("d_own_vars", 400, refused),
        ],
    );
    assert!(outcome.kv_changes.is_empty(), "{:?}", outcome.kv_changes);
}

#[test]
fn rollout_order_is_writable_on_pre_deploy_but_not_post_deploy() {
    let bucket = matrix_bucket();
    let pre = run_event(&bucket, CommandEvent::PreDeploy);
    let results = probe_results(&bucket, "out/command_matrix-pre_deploy-127.9.0.1.json");
    assert_cases(
        &results,
        &[("w_rollout_order", 200, None), ("w_own_vars", 200, None)],
    );
    let rollout = pre
        .kv_changes
        .iter()
        .find(|c| c.namespace == "maand/job/api")
        .expect("pre_deploy returns the rollout_order change");
    assert_eq!(
        rollout.changes,
        vec![KvChange::Put {
            key: "rollout_order".into(),
            value: KvValue::Plain("v".into())
        }]
    );

    let post = run_event(&bucket, CommandEvent::PostDeploy);
    let results = probe_results(&bucket, "out/command_matrix-post_deploy-127.9.0.1.json");
    assert_cases(
        &results,
        &[
            ("w_rollout_order", 400, Some(ALLOWED_NAMESPACE)),
            ("w_own_vars", 200, None),
        ],
    );
    assert!(post
        .kv_changes
        .iter()
        .all(|c| c.namespace != "maand/job/api"));
    // Nothing was recorded: the library hands the changes back to its caller.
    assert_eq!(
        bucket.sql("SELECT count(*) FROM kv WHERE namespace = 'vars/job/api' AND key = 'k'"),
        "0"
    );
}

#[test]
fn secrets_round_trip_sealed_and_their_plaintext_is_written_nowhere() {
    let bucket = HookBucket::new(&[("127.9.0.1", &["db", "web"]), ("127.9.0.2", &["db"])]);
    // The plaintext is computed at run time so the scripts (stored in the catalog) do not hold it.
    let plaintext = "plain-Pa55word-7f3c9e";
    let make = r#"PLAIN = "".join(reversed("e9c3f7-dr0w55aP-nialp"))"#;
    bucket.job(
        "db",
        r#"{"version": "1.0.0", "selectors": ["db"], "commands": {
            "command_put": {"executed_on": ["cli"]},
            "command_check": {"executed_on": ["cli"]}}}"#,
        &[
            (
                "command_put.py",
                &format!("import maand\n{make}\nmaand.put_job_secret('db_password', PLAIN).raise_for_status()\n"),
            ),
            (
                "command_check.py",
                &format!(
                    "import sys, maand\n{make}\n\
                     ok = maand.get_job_secret('db_password') == PLAIN\n\
                     ok = ok and maand.list_job_keys().json()['keys']['secrets/job/db'] == ['db_password']\n\
                     print('secret matches' if ok else 'secret differs')\n\
                     sys.exit(0 if ok else 3)\n"
                ),
            ),
        ],
    );
    bucket.job(
        "web",
        r#"{"version": "1.0.0", "selectors": ["web"], "commands": {"command_read": {"executed_on": ["cli"],
            "demands": {"job": "db", "command": "command_check", "config": {}}}}}"#,
        &[(
            "command_read.py",
            &format!(
                "import sys, maand\n{make}\n\
                 sys.exit(0 if maand.get_kv_value('secrets/job/db', 'db_password') == PLAIN else 3)\n"
            ),
        )],
    );
    bucket.maand_ok(&["build"]);
    bucket.maand_ok(&["jobcommand", "command_put", "db", "-c", "2"]);
    let stored = bucket.sql(
        "SELECT value || '|' || sealed FROM kv WHERE namespace = 'secrets/job/db' AND key = 'db_password'",
    );
    assert!(
        stored.starts_with("v1:") && stored.ends_with("|1"),
        "{stored}"
    );
    let out = bucket.maand_ok(&["jobcommand", "command_check", "db", "--verbose"]);
    assert!(out.contains("ok"), "{out}");
    bucket.maand_ok(&["jobcommand", "command_read", "web"]);
    let cat = bucket.maand_ok(&["cat", "kv"]);
    assert!(!cat.contains(plaintext), "{cat}");
    for dir in ["data", "logs", "tmp"] {
        let leaks = bucket.files_containing(dir, plaintext);
        assert!(leaks.is_empty(), "plaintext found in {leaks:?}");
    }
    // The same plaintext again records no new version.
    bucket.maand_ok(&["jobcommand", "command_put", "db"]);
    assert_eq!(
        bucket.sql(
            "SELECT count(*) FROM kv WHERE namespace = 'secrets/job/db' AND key = 'db_password'"
        ),
        "1"
    );
}

/// Three workers carrying label `mig` and the job `mig` with the given commands.
fn three_allocations(commands: &str, scripts: &[(&str, &str)]) -> HookBucket {
    let bucket = HookBucket::new(&[
        ("127.9.0.1", &["mig"]),
        ("127.9.0.2", &["mig"]),
        ("127.9.0.3", &["mig"]),
    ]);
    bucket.job(
        "mig",
        &format!(r#"{{"version": "1.0.0", "selectors": ["mig"], "commands": {commands}}}"#),
        scripts,
    );
    bucket.maand_ok(&["build"]);
    bucket
}

#[test]
fn a_semaphore_of_capacity_one_serialises_concurrent_allocations() {
    let script = r#"
import json, os, time, maand
answer = maand.acquire_semaphore("migrate", capacity=1, timeout_seconds=600)
answer.raise_for_status()
body = answer.json()
start = time.time_ns()
status = maand.semaphore_status("migrate").json()
time.sleep(0.3)
end = time.time_ns()
maand.release_semaphore("migrate").raise_for_status()
os.makedirs("out", exist_ok=True)
with open(f"out/sem-{maand.allocation_ip()}.json", "w") as handle:
    json.dump({"start": start, "end": end, "acquired": body, "status": status, "me": maand.allocation_id()}, handle)
"#;
    let bucket = three_allocations(
        r#"{"command_serial": {"executed_on": ["cli"]}}"#,
        &[("command_serial.py", script)],
    );
    bucket.maand_ok(&["jobcommand", "command_serial", "mig", "-c", "3"]);
    let mut intervals = Vec::new();
    for ip in ["127.9.0.1", "127.9.0.2", "127.9.0.3"] {
        let record: Value =
            serde_json::from_str(&bucket.read(&format!("out/sem-{ip}.json"))).unwrap();
        assert_eq!(record["acquired"]["acquired"], true);
        assert_eq!(record["acquired"]["capacity"], 1);
        assert_eq!(record["acquired"]["allocation_id"], record["me"]);
        assert_eq!(
            record["status"]["holders"],
            serde_json::json!([record["me"]])
        );
        assert_eq!(record["status"]["available"], 0);
        intervals.push((
            record["start"].as_u64().unwrap(),
            record["end"].as_u64().unwrap(),
        ));
    }
    intervals.sort();
    for pair in intervals.windows(2) {
        assert!(
            pair[0].1 <= pair[1].0,
            "critical sections overlap: {intervals:?}"
        );
    }
}

#[test]
fn semaphore_requests_are_checked_and_slots_of_ended_processes_are_released() {
    let rules = probe_script(
        r#"
case("release_unheld", "POST", "/semaphore/release", {"name": "x"})
case("capacity_zero", "POST", "/semaphore/acquire", {"name": "x", "capacity": 0})
case("capacity_65", "POST", "/semaphore/acquire", {"name": "x", "capacity": 65})
case("timeout_3601", "POST", "/semaphore/acquire", {"name": "x", "timeout_seconds": 3601})
case("status_unknown", "GET", "/semaphore/status", query={"name": "never"})
case("acquire", "POST", "/semaphore/acquire", {"name": "twice"})
case("acquire_again", "POST", "/semaphore/acquire", {"name": "twice"})
case("other_capacity", "POST", "/semaphore/acquire", {"name": "twice", "capacity": 2})
# Held on purpose: the next allocation gets it only if ending the process releases it.
case("left_held", "POST", "/semaphore/acquire", {"name": "left", "timeout_seconds": 600})
"#,
    );
    let bucket = three_allocations(
        r#"{"command_rules": {"executed_on": ["cli"]}}"#,
        &[("command_rules.py", &rules)],
    );
    bucket.maand_ok(&["jobcommand", "command_rules", "mig", "-c", "1"]);
    for ip in ["127.9.0.1", "127.9.0.2", "127.9.0.3"] {
        let results = probe_results(&bucket, &format!("out/command_rules-cli-{ip}.json"));
        assert_cases(
            &results,
            &[
                (
                    "release_unheld",
                    409,
                    Some("Semaphore acquire or release failed"),
                ),
                ("capacity_zero", 400, None),
                ("capacity_65", 400, None),
                ("timeout_3601", 400, None),
                ("status_unknown", 404, None),
                ("acquire", 200, None),
                ("acquire_again", 409, None),
                ("other_capacity", 409, None),
                ("left_held", 200, None),
            ],
        );
    }
}

#[test]
fn a_full_semaphore_times_out_with_408() {
    let script = probe_script(
        r#"
import time
index = int(os.environ["ALLOCATION_INDEX"])
os.makedirs("out", exist_ok=True)
if index == 0:
    case("hold", "POST", "/semaphore/acquire", {"name": "gate"})
    open("out/held", "w").close()
    while not os.path.exists("out/timed-out"):
        time.sleep(0.05)
    case("release", "POST", "/semaphore/release", {"name": "gate"})
elif index == 1:
    while not os.path.exists("out/held"):
        time.sleep(0.05)
    case("wait", "POST", "/semaphore/acquire", {"name": "gate", "timeout_seconds": 1})
    open("out/timed-out", "w").close()
"#,
    );
    let bucket = three_allocations(
        r#"{"command_gate": {"executed_on": ["cli"]}}"#,
        &[("command_gate.py", &script)],
    );
    bucket.maand_ok(&["jobcommand", "command_gate", "mig", "-c", "3"]);
    let holder = probe_results(&bucket, "out/command_gate-cli-127.9.0.1.json");
    assert_cases(&holder, &[("hold", 200, None), ("release", 200, None)]);
    let waiter = probe_results(&bucket, "out/command_gate-cli-127.9.0.2.json");
    assert_cases(
        &waiter,
        &[("wait", 408, Some("Timed out waiting for semaphore"))],
    );
}

#[test]
fn jobcommand_runs_once_per_active_allocation_with_the_documented_environment() {
    let bucket = HookBucket::new(&[
        ("127.9.0.1", &["env"]),
        ("127.9.0.2", &["env"]),
        ("127.9.0.3", &["env"]),
    ]);
    bucket.job(
        "envjob",
        r#"{"version": "2.0.0", "selectors": ["env"], "commands": {"command_env": {"executed_on": ["cli"]}}}"#,
        &[(
            "command_env.py",
            r#"
import json, os
os.makedirs("out", exist_ok=True)
with open(f"out/env-{os.environ['ALLOCATION_IP']}.json", "w") as handle:
    json.dump({"env": dict(os.environ), "cwd": os.getcwd()}, handle)
print("env of", os.environ["ALLOCATION_IP"])
"#,
        )],
    );
    bucket.write(
        "workspace/disabled.json",
        r#"{"jobs": {"envjob": {"allocations": ["127.9.0.3"]}}}"#,
    );
    bucket.maand_ok(&["build"]);
    let out = bucket.maand_ok(&["job_command", "command_env", "envjob", "-c", "2"]);
    assert!(
        out.contains("127.9.0.1") && out.contains("127.9.0.2"),
        "{out}"
    );
    assert!(
        !bucket.path().join("out/env-127.9.0.3.json").exists(),
        "the disabled allocation ran"
    );
    let bucket_id = bucket.sql("SELECT bucket_id FROM bucket");
    let mut tokens = Vec::new();
    for (index, ip) in ["127.9.0.1", "127.9.0.2"].iter().enumerate() {
        let record: Value =
            serde_json::from_str(&bucket.read(&format!("out/env-{ip}.json"))).unwrap();
        let env = &record["env"];
        let alloc_id = bucket.sql(&format!(
            "SELECT alloc_id FROM allocations WHERE job = 'envjob' AND worker_ip = '{ip}'"
        ));
        assert_eq!(env["ALLOCATION_ID"], alloc_id.as_str());
        assert_eq!(env["ALLOCATION_IP"], *ip);
        assert_eq!(env["ALLOCATION_INDEX"], index.to_string().as_str());
        assert_eq!(env["JOB"], "envjob");
        assert_eq!(env["EVENT"], "cli");
        assert_eq!(env["COMMAND"], "command_env");
        assert_eq!(env["DISABLED"], "0");
        assert_eq!(env["CURRENT_VERSION"], "0.0.0");
        assert_eq!(env["NEW_VERSION"], "2.0.0");
        assert_eq!(env["JOB_COMMAND_API_HOST"], "127.0.0.1");
        let port = env["JOB_COMMAND_API_PORT"].as_str().unwrap();
        assert!(port.parse::<u16>().is_ok(), "{port}");
        assert_eq!(
            env["MAAND_API_URL"],
            format!("http://127.0.0.1:{port}").as_str()
        );
        assert_eq!(env["MAAND_BUCKET_ID"], bucket_id.as_str());
        assert_eq!(
            env["MAAND_SSH_KNOWN_HOSTS"],
            bucket
                .path()
                .join("secrets/known_hosts")
                .display()
                .to_string()
                .as_str()
        );
        let token = env["MAAND_API_TOKEN"].as_str().unwrap().to_string();
        assert_eq!(token.len(), 64);
        tokens.push(token);
        assert_eq!(
            std::fs::canonicalize(record["cwd"].as_str().unwrap()).unwrap(),
            std::fs::canonicalize(bucket.path()).unwrap()
        );
    }
    assert_ne!(tokens[0], tokens[1], "each process gets its own token");

    let log = bucket.maand_ok(&["logs", "show", "--phase", "job_command", "--format", "json"]);
    for ip in ["127.9.0.1", "127.9.0.2"] {
        let events: Vec<Value> = log
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|e| e["worker"] == ip)
            .collect();
        let kinds: Vec<&str> = events
            .iter()
            .map(|e| e["event"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            ["command_begin", "command_output", "command_end"],
            "{log}"
        );
        assert_eq!(events[0]["action"], "command_env");
        assert_eq!(events[1]["msg"], format!("env of {ip}").as_str());
    }
    let leftovers: Vec<_> = std::fs::read_dir(bucket.path().join("tmp/hooks"))
        .map(|d| d.collect())
        .unwrap_or_default();
    assert!(
        leftovers.is_empty(),
        "staged files left behind: {leftovers:?}"
    );
}

#[test]
fn a_job_virtualenv_interpreter_is_preferred() {
    let bucket = HookBucket::new(&[("127.9.0.1", &["py"])]);
    bucket.job(
        "py",
        r#"{"selectors": ["py"], "commands": {"command_which": {"executed_on": ["cli"]}}}"#,
        &[(
            "command_which.py",
            "import os, sys\nsys.exit(0 if os.environ.get('FROM_VENV') == '1' else 5)\n",
        )],
    );
    let venv = "workspace/jobs/py/_modules/.venv/bin/python";
    bucket.write(venv, "#!/bin/sh\nFROM_VENV=1 exec python3 \"$@\"\n");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        bucket.path().join(venv),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    bucket.maand_ok(&["build"]);
    bucket.maand_ok(&["jobcommand", "command_which", "py"]);
}

#[test]
fn a_failing_allocation_fails_the_command_and_nothing_it_wrote_is_recorded() {
    let bucket = HookBucket::new(&[("127.9.0.1", &["f"]), ("127.9.0.2", &["f"])]);
    bucket.job(
        "flaky",
        r#"{"selectors": ["f"], "commands": {"command_half": {"executed_on": ["cli"]}}}"#,
        &[(
            "command_half.py",
            r#"
import sys, maand
maand.put_job_variable("touched_" + maand.allocation_ip(), "yes").raise_for_status()
if maand.allocation_index() == 1:
    print("cannot reach the database", file=sys.stderr)
    sys.exit(3)
"#,
        )],
    );
    bucket.maand_ok(&["build"]);
    let out = bucket.maand_fails(&["jobcommand", "command_half", "flaky"]);
    assert!(out.contains("failed on 1 of 2 allocations"), "{out}");
    assert!(
        out.contains("flaky@127.9.0.2 (exit code 3: cannot reach the database)"),
        "{out}"
    );
    assert!(out.contains("127.9.0.1") && out.contains("ok"), "{out}");
    assert_eq!(
        bucket.sql("SELECT count(*) FROM kv WHERE namespace = 'vars/job/flaky'"),
        "0"
    );
    assert_eq!(
        bucket.sql("SELECT outcome FROM runs WHERE command = 'jobcommand'"),
        "failed"
    );

    // The reporter: a line per allocation as it ends, and the same as JSON lines with a recap.
    assert!(
        out.lines()
            .any(|l| l.starts_with("flaky@127.9.0.2  command_half  exit 3  ")),
        "{out}"
    );
    let json = bucket.maand(&["jobcommand", "command_half", "flaky", "--json"]);
    assert!(!json.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&json.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let (recap, work) = lines.split_last().unwrap();
    assert_eq!(recap["type"], "recap");
    assert_eq!(work.len(), 2, "{lines:?}");
    assert!(work
        .iter()
        .all(|w| w["type"] == "work" && w["job"] == "flaky" && w["action"] == "command_half"));
    assert!(recap["summary"]
        .as_str()
        .unwrap()
        .starts_with("1 ok, 1 failed in "));
}

#[test]
fn jobcommand_names_what_to_fix_when_the_command_cannot_run() {
    let bucket = HookBucket::new(&[("127.9.0.1", &["a", "b"])]);
    let ping = "print('ping')\n";
    bucket.job(
        "a",
        r#"{"selectors": ["a"], "commands": {"command_ping": {"executed_on": ["cli"]}, "command_build_only": {"executed_on": ["post_build"]}}}"#,
        &[("command_ping.py", ping), ("command_build_only.py", ping)],
    );
    bucket.job(
        "b",
        r#"{"selectors": ["b"], "commands": {"command_ping": {"executed_on": ["cli"]}}}"#,
        &[("command_ping.py", ping)],
    );
    bucket.maand_ok(&["build"]);

    let out = bucket.maand_fails(&["jobcommand", "command_build_only", "a"]);
    assert!(
        out.contains("post_build")
            && out.contains("add \"cli\"")
            && out.contains("workspace/jobs/a/manifest.json"),
        "{out}"
    );
    let out = bucket.maand_fails(&["jobcommand", "command_nope", "a"]);
    assert!(out.contains("job a has no command command_nope"), "{out}");
    let out = bucket.maand_fails(&["jobcommand", "command_ping", "zz"]);
    assert!(out.contains("job zz is not in the catalog"), "{out}");
    let out = bucket.maand_fails(&["jobcommand", "command_nope"]);
    assert!(
        out.contains("no job has a command named command_nope"),
        "{out}"
    );

    // Without a job, every job registering the command for cli runs it (the recap table's
    // rows, between its header and the summary line).
    let out = bucket.maand_ok(&["jobcommand", "command_ping"]);
    let table = &out[out.find("JOB").expect("the recap table")..];
    let jobs: Vec<&str> = table
        .lines()
        .skip(1)
        .filter(|l| !l.contains(" failed in "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(jobs, ["a", "b"], "{out}");
}

/// `base` (deployment_seq 0) and `top` (seq 1, demands base) with post_build hooks that log
/// their order; top reads what base wrote in the same pass.
fn post_build_bucket(base_script: &str) -> HookBucket {
    let bucket = HookBucket::new(&[
        ("127.9.0.1", &["base", "top"]),
        ("127.9.0.2", &["base", "top"]),
    ]);
    bucket.job(
        "top",
        r#"{"version": "1.0.0", "selectors": ["top"], "commands": {"command_after": {"executed_on": ["post_build"],
            "demands": {"job": "base", "command": "command_seed", "config": {}}}}}"#,
        &[(
            "command_after.py",
            r#"
import os, maand
os.makedirs("out", exist_ok=True)
with open("out/order.log", "a") as handle:
    handle.write(f"top {maand.allocation_ip()}\n")
seed = maand.get_kv_value("vars/job/base", "seed")
maand.put_job_variable("got", seed).raise_for_status()
"#,
        )],
    );
    bucket.job(
        "base",
        r#"{"version": "1.0.0", "selectors": ["base"], "commands": {"command_seed": {"executed_on": ["post_build"]}}}"#,
        &[("command_seed.py", base_script)],
    );
    bucket
}

const SEED_PY: &str = r#"
import os, maand
os.makedirs("out", exist_ok=True)
with open("out/order.log", "a") as handle:
    handle.write(f"base {maand.allocation_ip()}\n")
maand.put_job_variable("seed", "from-base").raise_for_status()
"#;

#[test]
fn post_build_hooks_run_in_deployment_seq_order_and_record_their_kv() {
    let bucket = post_build_bucket(SEED_PY);
    bucket.write(
        "workspace/disabled.json",
        r#"{"jobs": {"top": {"allocations": ["127.9.0.2"]}}}"#,
    );
    let out = bucket.maand_ok(&["build"]);
    assert!(
        out.contains("post_build: command_seed of job base ran on 2 allocation(s)")
            && out.contains("post_build: command_after of job top ran on 1 allocation(s)"),
        "{out}"
    );
    let order: Vec<String> = bucket
        .read("out/order.log")
        .lines()
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    assert_eq!(order, ["base", "base", "top"]);
    assert_eq!(
        bucket.sql("SELECT value FROM kv WHERE namespace = 'vars/job/top' AND key = 'got'"),
        "from-base"
    );
    assert_eq!(
        bucket.sql("SELECT value FROM kv WHERE namespace = 'vars/job/base' AND key = 'seed'"),
        "from-base"
    );
}

#[test]
fn a_failing_post_build_hook_fails_the_build_but_keeps_the_catalog_commit() {
    let failing = "import sys\nprint('seed source unavailable', file=sys.stderr)\nsys.exit(4)\n";
    let bucket = post_build_bucket(failing);
    let out = bucket.maand_fails(&["build"]);
    assert!(out.contains("post_build failed"), "{out}");
    assert!(
        out.contains("base command_seed@127.9.0.1: exit code 4: seed source unavailable"),
        "{out}"
    );
    assert!(
        !bucket.path().join("out/order.log").exists(),
        "top ran although base failed"
    );
    assert_eq!(bucket.sql("SELECT count(*) FROM jobs"), "2");
    assert_eq!(
        bucket.sql("SELECT outcome FROM runs WHERE command = 'build'"),
        "failed"
    );

    bucket.write("workspace/jobs/base/_modules/command_seed.py", SEED_PY);
    bucket.maand_ok(&["build"]);
    assert_eq!(
        bucket.sql("SELECT value FROM kv WHERE namespace = 'vars/job/top' AND key = 'got'"),
        "from-base"
    );
}

#[test]
fn bun_commands_use_the_typescript_client() {
    let bucket = HookBucket::new(&[("127.9.0.1", &["bun"]), ("127.9.0.2", &["bun"])]);
    bucket.job(
        "bunjob",
        r#"{"version": "1.0.0", "selectors": ["bun"], "commands": {
            "command_ts": {"executed_on": ["cli"]},
            "command_js": {"executed_on": ["cli"]}}}"#,
        &[
            (
                "command_ts.ts",
                r#"
import * as maand from "maand";
import { allocationIp } from "./maand";
import { mkdirSync, writeFileSync } from "node:fs";

const ip: string = allocationIp();
await maand.raiseForStatus(await maand.putJobVariable(`from_${ip}`, maand.jobName()));
await maand.raiseForStatus(await maand.putJobSecret(`token_${ip}`, "t-" + maand.allocationIndex()));
const own = await maand.kvGet(`vars/job/bunjob`, `from_${ip}`);
const secret = await maand.kvGet(`secrets/job/bunjob`, `token_${ip}`);
const acquired = await (await maand.acquireSemaphore("ts", 1, 60)).json();
await maand.raiseForStatus(await maand.releaseSemaphore("ts"));
const forbidden = (await maand.getStoreValue("maand/worker/127.9.0.9", "worker_ip")).status;
const keys = await (await maand.listJobKeys()).json();
mkdirSync("out", { recursive: true });
writeFileSync(`out/bun-${ip}.json`, JSON.stringify({ own, secret, acquired, forbidden, keys,
  event: maand.commandEvent(), command: maand.commandName(), disabled: maand.isAllocationDisabled() }));
"#,
            ),
            (
                "command_js.js",
                "import { jobName, putJobVariable, raiseForStatus } from \"maand\";\nawait raiseForStatus(await putJobVariable(\"js\", jobName()));\n",
            ),
        ],
    );
    bucket.maand_ok(&["build"]);
    bucket.maand_ok(&["jobcommand", "command_ts", "bunjob", "-c", "2"]);
    for (index, ip) in ["127.9.0.1", "127.9.0.2"].iter().enumerate() {
        let record: Value =
            serde_json::from_str(&bucket.read(&format!("out/bun-{ip}.json"))).unwrap();
        assert_eq!(record["own"], "bunjob");
        assert_eq!(record["secret"], format!("t-{index}").as_str());
        assert_eq!(record["acquired"]["acquired"], true);
        assert_eq!(record["forbidden"], 400);
        assert_eq!(record["event"], "cli");
        assert_eq!(record["command"], "command_ts");
        assert_eq!(record["disabled"], false);
        assert!(record["keys"]["keys"]["secrets/job/bunjob"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(format!("token_{ip}"))));
    }
    assert_eq!(
        bucket.sql("SELECT group_concat(key) FROM (SELECT key FROM kv WHERE namespace = 'vars/job/bunjob' ORDER BY key)"),
        "from_127.9.0.1,from_127.9.0.2"
    );
    assert_eq!(
        bucket.sql("SELECT group_concat(sealed) FROM kv WHERE namespace = 'secrets/job/bunjob'"),
        "1,1"
    );
    bucket.maand_ok(&["jobcommand", "command_js", "bunjob"]);
    assert_eq!(
        bucket.sql("SELECT value FROM kv WHERE namespace = 'vars/job/bunjob' AND key = 'js'"),
        "bunjob"
    );
}

#[test]
fn python_ssh_helpers_reach_the_allocations_worker_with_the_bucket_settings() {
    let cluster = support::cluster::Cluster::start(1);
    let bucket = support::bucket::TestBucket::new(&cluster, &[&["remote"]]);
    bucket.write(
        "workspace/jobs/remote/manifest.json",
        r#"{"version": "1.2.0", "selectors": ["remote"], "commands": {"command_remote": {"executed_on": ["cli"]}}}"#,
    );
    bucket.write(
        "workspace/jobs/remote/Makefile",
        "start:\n\t@true\nstatus:\n\t@echo status-of-$(NEW_VERSION)\n",
    );
    bucket.write(
        "workspace/jobs/remote/_modules/command_remote.py",
        r#"
import json, os, maand
shell = maand.run_ssh(maand.allocation_ip(), "echo remote-$(id -un)", capture_output=True)
argv = maand.run_ssh(maand.allocation_ip(), ["echo", "a b"], capture_output=True)
make = maand.run_make_target("status", capture_output=True)
runner = maand.run_runner_target("status", capture_output=True)
failed = maand.run_ssh(maand.allocation_ip(), "exit 7", check=False)
os.makedirs("out", exist_ok=True)
with open("out/ssh.json", "w") as handle:
    json.dump({"shell": shell.stdout, "argv": argv.stdout, "make": make.stdout,
               "runner": runner.stdout, "failed": failed.returncode, "ssh": list(maand.load_ssh())}, handle)
"#,
    );
    bucket.maand_ok(&["deploy", "--build"]);
    bucket.maand_ok(&["jobcommand", "command_remote", "remote"]);
    let record: Value =
        serde_json::from_str(&std::fs::read_to_string(bucket.path().join("out/ssh.json")).unwrap())
            .unwrap();
    assert_eq!(
        record["shell"],
        format!("remote-{}\n", cluster.user()).as_str()
    );
    assert_eq!(record["argv"], "a b\n");
    assert!(
        record["make"].as_str().unwrap().contains("status-of-1.2.0"),
        "{record}"
    );
    assert!(
        record["runner"]
            .as_str()
            .unwrap()
            .contains("status-of-1.2.0"),
        "{record}"
    );
    assert_eq!(record["failed"], 7);
    assert_eq!(record["ssh"][0], cluster.user());
    assert_eq!(
        record["ssh"][1],
        bucket
            .path()
            .join("secrets/worker.key")
            .display()
            .to_string()
            .as_str()
    );
}

#[test]
fn a_missing_interpreter_is_named_with_what_to_install() {
    let bucket = HookBucket::new(&[("127.9.0.1", &["i"])]);
    bucket.job(
        "interp",
        r#"{"selectors": ["i"], "commands": {"command_py": {"executed_on": ["cli"]}, "command_ts": {"executed_on": ["cli"]}}}"#,
        &[
            ("command_py.py", "print('never')\n"),
            ("command_ts.ts", "console.log('never');\n"),
        ],
    );
    bucket.maand_ok(&["build"]);
    let empty = tempfile::tempdir().unwrap();
    for (command, tool, advice) in [
        ("command_py", "python3", "apt install python3"),
        ("command_ts", "bun", "npm install -g bun"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_maand"))
            .args(["jobcommand", command, "interp"])
            .current_dir(bucket.path())
            .env("PATH", empty.path())
            .env_remove("MAAND_BUCKET")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains(&format!("needs {tool}, which is not on PATH"))
                && stderr.contains(advice),
            "{stderr}"
        );
    }
}
