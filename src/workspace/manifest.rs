//! A job's `manifest.json`: the typed [`Manifest`] with every documented default applied,
//! and the rules that can be checked from the manifest and the job's own files alone.
//! Cross-job rules (demands, port conflicts) live in `demands` and `ports`; placement and
//! capacity belong to the build step.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use semver::Version;
use serde_json::{Map, Value};

use super::errors::{ErrorKind, FileReport};
use super::files::JobFile;
use super::json_reader::{self, Field, Object};
use super::names;
use super::units;
use super::version::parse_version;
use crate::certs::CertSubject;

const KIND: ErrorKind = ErrorKind::InvalidManifest;

/// A parsed job manifest with defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Target version; `0.0.0` when the manifest does not declare one.
    pub version: Version,
    /// Whether `version` was written in the manifest (jobs taking part in demands must).
    pub version_declared: bool,
    /// Worker labels required for placement (all must match). Defaults to the job name
    /// when omitted or empty.
    pub selectors: BTreeSet<String>,
    /// Rolling restart/reload batch size during upgrades; at least 1, default 1.
    pub max_concurrent_upgrades: u32,
    /// Rolling start batch size on first deploy; 0 (the default) starts all at once.
    pub max_concurrent_starts: u32,
    /// Minimum number of non-removed allocations placement must produce; 0 = no minimum.
    pub min_allocations_count: u32,
    /// How deploy applies upgrades; default [`RestartPolicy::Always`].
    pub restart_policy: RestartPolicy,
    /// Globs (relative to the job directory) whose changes force a restart under
    /// [`RestartPolicy::Reload`]; empty for other policies.
    pub restart_globs: Vec<String>,
    /// Memory/CPU bounds and named ports.
    pub resources: Resources,
    /// Commands by name (`command_*`).
    pub commands: BTreeMap<String, Command>,
    /// Built-in health probes, when declared.
    pub health_check: Option<HealthCheck>,
    /// Certificate definitions by name.
    pub certs: BTreeMap<String, CertSpec>,
}

impl Manifest {
    /// Whether any command replaces the Makefile lifecycle (`executed_on` has `job_control`).
    pub fn has_job_control(&self) -> bool {
        self.commands
            .values()
            .any(|c| c.executed_on.contains(&CommandEvent::JobControl))
    }

    /// A matcher for [`Manifest::restart_globs`]: `*` stays within one path segment and
    /// `**` crosses segments, so `bin/**` matches everything under `bin/`.
    pub fn restart_glob_set(&self) -> Result<globset::GlobSet, globset::Error> {
        let mut builder = globset::GlobSetBuilder::new();
        for glob in &self.restart_globs {
            builder.add(restart_glob(glob)?);
        }
        builder.build()
    }
}

fn restart_glob(text: &str) -> Result<globset::Glob, globset::Error> {
    globset::GlobBuilder::new(text)
        .literal_separator(true)
        .build()
}

/// What deploy does to an allocation whose content or version changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestartPolicy {
    /// `make restart` on every upgrade.
    #[default]
    Always,
    /// `make reload`, or `make restart` when a changed path matches `restart_globs`.
    Reload,
    /// Sync and promote only; no lifecycle target.
    Never,
}

impl RestartPolicy {
    /// The manifest spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::Always => "always",
            RestartPolicy::Reload => "reload",
            RestartPolicy::Never => "never",
        }
    }
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `resources` of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resources {
    /// Memory bounds in megabytes.
    pub memory_mb: Bounds,
    /// CPU bounds in megahertz.
    pub cpu_mhz: Bounds,
    /// Named ports.
    pub ports: BTreeMap<String, PortSpec>,
}

/// A min/max pair; 0 means "no bound on that side". When only `min` is given, `max`
/// equals `min`. Always `min <= max` unless `max` is 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Bounds {
    /// Lower bound (0 = none).
    pub min: u64,
    /// Upper bound (0 = none).
    pub max: u64,
}

impl Bounds {
    /// Whether neither side is set.
    pub fn is_unset(&self) -> bool {
        self.min == 0 && self.max == 0
    }

    /// Whether a reservation lies within the bounds.
    pub fn admits(&self, amount: u64) -> bool {
        amount >= self.min && (self.max == 0 || amount <= self.max)
    }
}

/// How a named port gets its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortSpec {
    /// `{}`: the build assigns a free port from the bucket pool.
    Pool,
    /// A fixed port number from the manifest.
    Fixed(u16),
}

/// One entry of `commands`.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// The command name (`command_*`).
    pub name: String,
    /// The events that run it; never empty.
    pub executed_on: BTreeSet<CommandEvent>,
    /// Upstream dependency, when declared.
    pub demand: Option<Demand>,
    /// The script implementing it.
    pub script: CommandScript,
}

/// When a command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CommandEvent {
    /// After `maand build` commits.
    PostBuild,
    /// Before a job is synced during deploy.
    PreDeploy,
    /// After a job's rollout succeeds.
    PostDeploy,
    /// Replaces the Makefile lifecycle during deploy.
    JobControl,
    /// Job health checks.
    HealthCheck,
    /// Operator-triggered via the CLI.
    Cli,
    /// After each batch of allocations starts/restarts/reloads.
    AfterAllocationStarted,
    /// After each allocation stops.
    AfterAllocationStopped,
}

impl CommandEvent {
    /// Every event, in documentation order.
    pub const ALL: [CommandEvent; 8] = [
        CommandEvent::PostBuild,
        CommandEvent::PreDeploy,
        CommandEvent::PostDeploy,
        CommandEvent::JobControl,
        CommandEvent::HealthCheck,
        CommandEvent::Cli,
        CommandEvent::AfterAllocationStarted,
        CommandEvent::AfterAllocationStopped,
    ];

    /// The manifest spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandEvent::PostBuild => "post_build",
            CommandEvent::PreDeploy => "pre_deploy",
            CommandEvent::PostDeploy => "post_deploy",
            CommandEvent::JobControl => "job_control",
            CommandEvent::HealthCheck => "health_check",
            CommandEvent::Cli => "cli",
            CommandEvent::AfterAllocationStarted => "after_allocation_started",
            CommandEvent::AfterAllocationStopped => "after_allocation_stopped",
        }
    }

    /// Reads the manifest spelling.
    pub fn from_name(name: &str) -> Option<CommandEvent> {
        CommandEvent::ALL.into_iter().find(|e| e.as_str() == name)
    }
}

impl fmt::Display for CommandEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A command's dependency on a command of another job.
#[derive(Debug, Clone, PartialEq)]
pub struct Demand {
    /// Upstream job name.
    pub job: String,
    /// Upstream command name.
    pub command: String,
    /// The raw `config` object, handed to scripts at runtime (includes the version keys).
    pub config: Map<String, Value>,
    /// Lowest acceptable upstream version (`config.min_version`).
    pub min_version: Option<Version>,
    /// Highest acceptable upstream version (`config.max_version`).
    pub max_version: Option<Version>,
}

/// The script file that implements a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandScript {
    /// Path relative to the job directory, e.g. `_modules/command_migrate.py`.
    pub path: String,
    /// How the script is run.
    pub runtime: ScriptRuntime,
}

/// Interpreter for a command script, chosen by file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptRuntime {
    /// `.py`, run with python3.
    Python,
    /// `.ts`, run with bun.
    TypeScript,
    /// `.js`, run with bun.
    JavaScript,
}

impl ScriptRuntime {
    const ALL: [(ScriptRuntime, &'static str); 3] = [
        (ScriptRuntime::Python, "py"),
        (ScriptRuntime::TypeScript, "ts"),
        (ScriptRuntime::JavaScript, "js"),
    ];
}

/// Built-in health probes (`health_check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// Probes; all must pass on every allocation. Empty only when the job registers a command
    /// for the `health_check` event: the block then only sets that command's timeout and wait.
    pub checks: Vec<Probe>,
    /// Per-check timeout (each probe, and each run of a `health_check` command); default 5
    /// seconds.
    pub timeout_seconds: u32,
    /// Retry policy when waiting for health; default 30 attempts, 1 second apart.
    pub wait: HealthWait,
}

/// Retry policy for waiting on health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthWait {
    /// Attempts before giving up (at least 1).
    pub attempts: u32,
    /// Pause between attempts.
    pub interval_seconds: u32,
}

impl Default for HealthWait {
    fn default() -> Self {
        HealthWait {
            attempts: 30,
            interval_seconds: 1,
        }
    }
}

const DEFAULT_PROBE_TIMEOUT_SECONDS: u32 = 5;

/// One health probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// TCP connect to the allocation's port.
    Tcp {
        /// A port name from `resources.ports`.
        port: String,
    },
    /// HTTP request to the allocation's port.
    Http {
        /// A port name from `resources.ports`.
        port: String,
        /// Request path, starting with `/`; default `/`.
        path: String,
        /// Expected status; default 200.
        expect_status: u16,
        /// Scheme; default [`HttpScheme::Http`].
        scheme: HttpScheme,
    },
    /// One shell line run on the worker over SSH; exit 0 means healthy.
    Ssh {
        /// The command line (single line).
        command: String,
    },
}

/// Scheme of an HTTP probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HttpScheme {
    /// Plain HTTP.
    #[default]
    Http,
    /// HTTP over TLS.
    Https,
}

/// One certificate definition (`certs.<name>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSpec {
    /// `subject`: `common_name` (required) and the optional `organization`,
    /// `organizational_unit`, `country`, `province` and `locality`.
    pub subject: CertSubject,
    /// PKCS#8 private key (`PRIVATE KEY`) instead of PKCS#1 (`RSA PRIVATE KEY`); default false.
    pub pkcs8: bool,
    /// One shared cert for all allocations instead of one per worker; default false.
    pub one: bool,
}

/// A manifest as parsed, plus what cross-job checks need to avoid repeating its errors.
pub(crate) struct ParsedManifest {
    pub(crate) manifest: Manifest,
    /// `version` was present but unreadable (already reported).
    pub(crate) version_unreadable: bool,
    /// Every key of `commands`, including commands dropped for errors (so a demand on
    /// them is not reported a second time as unknown).
    pub(crate) declared_commands: BTreeSet<String>,
    /// Some command lists `job_control` in `executed_on`, even if that command was
    /// dropped for another error (so the Makefile rule does not pile on).
    pub(crate) declares_job_control: bool,
    /// Things that work but should change (old field names), for the operator.
    pub(crate) warnings: Vec<String>,
}

/// Field names of the Go maand that still work, with the name that replaced each.
const RENAMED_FIELDS: &[(&str, &str)] = &[
    ("deploy_parallel_count", "max_concurrent_starts"),
    ("update_parallel_count", "max_concurrent_upgrades"),
];

const TOP_LEVEL: &[&str] = &[
    "version",
    "selectors",
    "max_concurrent_upgrades",
    "max_concurrent_starts",
    "deploy_parallel_count",
    "update_parallel_count",
    "min_allocations_count",
    "restart_policy",
    "restart_globs",
    "resources",
    "commands",
    "health_check",
    "certs",
];

/// Parses `manifest.json` of job `job`. `files` are the job's files (to find command
/// scripts). Problems are reported; fields with problems fall back to their defaults so
/// later checks can still run. Returns `None` only when the file is not a JSON object.
pub(crate) fn parse(
    content: &[u8],
    job: &str,
    files: &[JobFile],
    report: &mut FileReport<'_>,
) -> Option<ParsedManifest> {
    let root = json_reader::parse_file(content, KIND, report)?;
    let object = Object::expect(&root, "", KIND, report)?;
    object.reject_unknown(TOP_LEVEL, KIND, report);

    let (version, version_declared, version_unreadable) = match object.get("version") {
        None => (Version::new(0, 0, 0), false, false),
        Some(value) => match version_value(field(&object, "version", value), report) {
            Some(version) => (version, true, false),
            None => (Version::new(0, 0, 0), true, true),
        },
    };

    let selectors = parse_selectors(&object, job, report);
    let (upgrades_key, starts_key, warnings) = rollout_field_names(&object, report);
    let max_concurrent_upgrades = count_or(&object, upgrades_key, 1, 1, report);
    let max_concurrent_starts = count_or(&object, starts_key, 0, 0, report);
    let min_allocations_count = count_or(&object, "min_allocations_count", 0, 0, report);
    let restart_policy = parse_restart_policy(&object, report);
    let restart_globs = parse_restart_globs(&object, restart_policy, report);
    let resources = object
        .get("resources")
        .map(|value| parse_resources(value, &object.path_of("resources"), report))
        .unwrap_or_default();
    let commands = object
        .get("commands")
        .map(|value| parse_commands(value, job, files, report))
        .unwrap_or_default();
    let declared_commands = match object.get("commands") {
        Some(Value::Object(map)) => map.keys().cloned().collect(),
        _ => BTreeSet::new(),
    };
    let declares_job_control = declares_event(&object, CommandEvent::JobControl);
    let health_check = object.get("health_check").and_then(|value| {
        let has_command = declares_event(&object, CommandEvent::HealthCheck);
        parse_health_check(value, &resources.ports, has_command, report)
    });
    let certs = object
        .get("certs")
        .map(|value| parse_certs(value, report))
        .unwrap_or_default();

    Some(ParsedManifest {
        manifest: Manifest {
            version,
            version_declared,
            selectors,
            max_concurrent_upgrades,
            max_concurrent_starts,
            min_allocations_count,
            restart_policy,
            restart_globs,
            resources,
            commands,
            health_check,
            certs,
        },
        version_unreadable,
        declared_commands,
        declares_job_control,
        warnings,
    })
}

/// Whether some entry of `commands` lists `event` in `executed_on`, even one dropped for
/// another error (so rules that depend on it do not pile on).
fn declares_event(object: &Object<'_>, event: CommandEvent) -> bool {
    let Some(Value::Object(commands)) = object.get("commands") else {
        return false;
    };
    commands.values().any(|command| {
        command
            .get("executed_on")
            .and_then(Value::as_array)
            .is_some_and(|events| events.iter().any(|e| e.as_str() == Some(event.as_str())))
    })
}

/// Which keys hold the rollout batch sizes: the current names, or the Go maand's old names
/// (`update_parallel_count`, `deploy_parallel_count`), which take effect with one warning for
/// the file. Both names of one setting in one manifest are an error. Returns the key for
/// upgrades, the key for starts, and the warnings.
fn rollout_field_names(
    object: &Object<'_>,
    report: &mut FileReport<'_>,
) -> (&'static str, &'static str, Vec<String>) {
    let mut chosen = Vec::with_capacity(RENAMED_FIELDS.len());
    let mut renamed = Vec::new();
    for (old, new) in RENAMED_FIELDS {
        match (object.get(old).is_some(), object.get(new).is_some()) {
            (true, true) => {
                report.at(
                    old,
                    KIND,
                    format!("both {new} and {old} are set; {old} is the old name of {new}, keep only {new}"),
                );
                chosen.push(*new);
            }
            (true, false) => {
                renamed.push(format!("{old} (now {new})"));
                chosen.push(*old);
            }
            _ => chosen.push(*new),
        }
    }
    let warnings = if renamed.is_empty() {
        Vec::new()
    } else {
        let (noun, pronoun) = if renamed.len() == 1 {
            ("name", "it")
        } else {
            ("names", "them")
        };
        vec![format!(
            "uses the Go maand's old field {noun} {}; {pronoun} still take{} effect, but rename {pronoun}",
            renamed.join(", "),
            if renamed.len() == 1 { "s" } else { "" }
        )]
    };
    (chosen[1], chosen[0], warnings)
}

/// Pairs a value with a path string owned by the caller's stack frame.
fn field<'v>(object: &Object<'_>, key: &str, value: &'v Value) -> OwnedField<'v> {
    OwnedField {
        value,
        path: object.path_of(key),
    }
}

/// A value with an owned JSON path.
struct OwnedField<'v> {
    value: &'v Value,
    path: String,
}

impl<'v> OwnedField<'v> {
    fn borrow(&self) -> Field<'_> {
        Field {
            value: self.value,
            path: &self.path,
        }
    }
}

/// A version given as a string (`"2.1"`) or, in demand bounds, an integer (`2`).
fn version_value(field: OwnedField<'_>, report: &mut FileReport<'_>) -> Option<Version> {
    match field.value {
        Value::String(text) => match parse_version(text) {
            Ok(version) => Some(version),
            Err(error) => {
                report.at(&field.path, ErrorKind::InvalidJobVersion, error.to_string());
                None
            }
        },
        other => {
            report.at(
                &field.path,
                ErrorKind::InvalidJobVersion,
                format!(
                    "must be a version string such as \"1.0.0\", found {}",
                    json_reader::describe(other)
                ),
            );
            None
        }
    }
}

fn bound_version(field: OwnedField<'_>, report: &mut FileReport<'_>) -> Option<Version> {
    match field.value.as_u64() {
        Some(major) => Some(Version::new(major, 0, 0)),
        None => version_value(field, report),
    }
}

fn parse_selectors(
    object: &Object<'_>,
    job: &str,
    report: &mut FileReport<'_>,
) -> BTreeSet<String> {
    let mut selectors = BTreeSet::new();
    if let Some(value) = object.get("selectors") {
        let owned = field(object, "selectors", value);
        for (path, selector) in
            json_reader::strings(owned.borrow(), KIND, report).unwrap_or_default()
        {
            match names::validate_label(selector) {
                Ok(()) => {
                    selectors.insert(selector.to_string());
                }
                Err(error) => report.at(
                    &path,
                    KIND,
                    format!("{error}; selectors are worker labels, fix or remove it"),
                ),
            }
        }
    }
    if selectors.is_empty() {
        selectors.insert(job.to_string());
    }
    selectors
}

fn count_or(
    object: &Object<'_>,
    key: &str,
    default: u32,
    min: u32,
    report: &mut FileReport<'_>,
) -> u32 {
    match object.get(key) {
        None => default,
        Some(value) => {
            let owned = field(object, key, value);
            json_reader::count(owned.borrow(), min, KIND, report).unwrap_or(default)
        }
    }
}

fn parse_restart_policy(object: &Object<'_>, report: &mut FileReport<'_>) -> RestartPolicy {
    let Some(value) = object.get("restart_policy") else {
        return RestartPolicy::default();
    };
    let owned = field(object, "restart_policy", value);
    let Some(text) = json_reader::string(owned.borrow(), KIND, report) else {
        return RestartPolicy::default();
    };
    match text {
        "always" => RestartPolicy::Always,
        "reload" => RestartPolicy::Reload,
        "never" => RestartPolicy::Never,
        other => {
            report.at(
                &owned.path,
                KIND,
                format!(
                    "unknown restart policy {other:?}; use \"always\", \"reload\" or \"never\""
                ),
            );
            RestartPolicy::default()
        }
    }
}

fn parse_restart_globs(
    object: &Object<'_>,
    policy: RestartPolicy,
    report: &mut FileReport<'_>,
) -> Vec<String> {
    let Some(value) = object.get("restart_globs") else {
        return Vec::new();
    };
    let owned = field(object, "restart_globs", value);
    let Some(entries) = json_reader::strings(owned.borrow(), KIND, report) else {
        return Vec::new();
    };
    if !entries.is_empty() && policy != RestartPolicy::Reload {
        report.at(
            &owned.path,
            KIND,
            format!(
                "restart_globs only applies when restart_policy is \"reload\" (it is \"{policy}\"); set \"restart_policy\": \"reload\" or remove restart_globs"
            ),
        );
        return Vec::new();
    }
    let mut globs = Vec::with_capacity(entries.len());
    for (path, glob) in entries {
        if glob.is_empty() || glob.starts_with('/') || glob.split('/').any(|part| part == "..") {
            report.at(
                &path,
                KIND,
                format!("{glob:?} must be a non-empty path pattern relative to the job directory, without a leading '/' or '..' (e.g. \"bin/**\")"),
            );
            continue;
        }
        match restart_glob(glob) {
            Ok(_) => globs.push(glob.to_string()),
            Err(error) => report.at(
                &path,
                KIND,
                format!(
                    "{glob:?} is not a valid glob: {}; fix the pattern",
                    error.kind()
                ),
            ),
        }
    }
    globs
}

fn parse_resources(value: &Value, path: &str, report: &mut FileReport<'_>) -> Resources {
    let mut resources = Resources::default();
    let Some(object) = Object::expect(value, path, KIND, report) else {
        return resources;
    };
    object.reject_unknown(&["memory", "cpu", "ports"], KIND, report);
    if let Some(value) = object.get("memory") {
        resources.memory_mb = parse_bounds(
            field(&object, "memory", value),
            units::parse_memory_mb,
            "\"256 mb\"",
            report,
        );
    }
    if let Some(value) = object.get("cpu") {
        resources.cpu_mhz = parse_bounds(
            field(&object, "cpu", value),
            units::parse_cpu_mhz,
            "\"500 mhz\"",
            report,
        );
    }
    if let Some(value) = object.get("ports") {
        resources.ports = parse_ports(value, &object.path_of("ports"), report);
    }
    resources
}

fn parse_bounds(
    owned: OwnedField<'_>,
    parse: fn(&str) -> Result<u64, units::QuantityError>,
    example: &str,
    report: &mut FileReport<'_>,
) -> Bounds {
    let Some(object) = Object::expect(owned.value, &owned.path, KIND, report) else {
        return Bounds::default();
    };
    object.reject_unknown(&["min", "max"], KIND, report);
    let mut amount = |key: &str| -> Option<u64> {
        let value = object.get(key)?;
        let path = object.path_of(key);
        match value {
            Value::String(text) => parse(text)
                .map_err(|error| report.at(&path, KIND, error.to_string()))
                .ok(),
            Value::Number(n) if n.as_u64().is_some() => n.as_u64(),
            other => {
                report.at(
                    &path,
                    KIND,
                    format!(
                        "must be a quantity string such as {example}, found {}",
                        json_reader::describe(other)
                    ),
                );
                None
            }
        }
    };
    let min = amount("min").unwrap_or(0);
    let max = amount("max").unwrap_or(0);
    let max = if max == 0 { min } else { max };
    if min > max {
        report.at(
            &owned.path,
            KIND,
            format!("min ({min}) is greater than max ({max}); lower min or raise max"),
        );
        return Bounds::default();
    }
    Bounds { min, max }
}

fn parse_ports(
    value: &Value,
    path: &str,
    report: &mut FileReport<'_>,
) -> BTreeMap<String, PortSpec> {
    let mut ports = BTreeMap::new();
    let Some(object) = Object::expect(value, path, KIND, report) else {
        return ports;
    };
    for (name, value) in object.entries() {
        let port_path = object.path_of(name);
        if let Err(error) = names::validate_port_name(name) {
            report.at(
                &port_path,
                ErrorKind::PortKeyFormat,
                format!("{error}; rename the port"),
            );
            continue;
        }
        let spec = match value {
            Value::Object(map) if map.is_empty() => Some(PortSpec::Pool),
            Value::Number(n) => n
                .as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .filter(|n| *n >= 1)
                .map(PortSpec::Fixed),
            _ => None,
        };
        match spec {
            Some(spec) => {
                ports.insert(name.clone(), spec);
            }
            None => report.at(
                &port_path,
                ErrorKind::InvalidManifestPort,
                format!(
                    "port value {} is not allowed; write {{}} to have the build assign a port from the bucket pool, or a fixed port number from 1 to 65535",
                    json_reader::describe(value)
                ),
            ),
        }
    }
    ports
}

fn parse_commands(
    value: &Value,
    job: &str,
    files: &[JobFile],
    report: &mut FileReport<'_>,
) -> BTreeMap<String, Command> {
    let mut commands = BTreeMap::new();
    let Some(object) = Object::expect(value, "commands", KIND, report) else {
        return commands;
    };
    for (name, value) in object.entries() {
        let path = object.path_of(name);
        if let Err(error) = names::validate_command_name(name) {
            report.at(
                &path,
                KIND,
                format!("{error}; rename the command and its script under _modules/"),
            );
            continue;
        }
        let Some(command) = Object::expect(value, &path, KIND, report) else {
            continue;
        };
        command.reject_unknown(&["executed_on", "demands"], KIND, report);
        let executed_on = parse_executed_on(&command, report);
        let demand = command
            .get("demands")
            .and_then(|value| parse_demand(value, &command.path_of("demands"), job, report));
        let Some(script) = find_script(name, &path, files, report) else {
            continue;
        };
        if executed_on.is_empty() {
            continue;
        }
        commands.insert(
            name.clone(),
            Command {
                name: name.clone(),
                executed_on,
                demand,
                script,
            },
        );
    }
    commands
}

fn parse_executed_on(command: &Object<'_>, report: &mut FileReport<'_>) -> BTreeSet<CommandEvent> {
    let allowed = || {
        CommandEvent::ALL
            .iter()
            .map(|e| e.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut events = BTreeSet::new();
    let Some(value) = command.get("executed_on") else {
        report.at(
            &command.path,
            KIND,
            format!(
                "missing \"executed_on\"; list the events that run this command, from: {}",
                allowed()
            ),
        );
        return events;
    };
    let owned = field(command, "executed_on", value);
    let Some(entries) = json_reader::strings(owned.borrow(), KIND, report) else {
        return events;
    };
    if entries.is_empty() {
        report.at(
            &owned.path,
            KIND,
            format!("is empty; list at least one event from: {}", allowed()),
        );
    }
    for (path, name) in entries {
        match CommandEvent::from_name(name) {
            Some(event) => {
                events.insert(event);
            }
            None => report.at(
                &path,
                KIND,
                format!("unknown event {name:?}; use one of: {}", allowed()),
            ),
        }
    }
    events
}

fn parse_demand(
    value: &Value,
    path: &str,
    job: &str,
    report: &mut FileReport<'_>,
) -> Option<Demand> {
    const DEMAND: ErrorKind = ErrorKind::InvalidJobCommandDemand;
    let object = Object::expect(value, path, DEMAND, report)?;
    object.reject_unknown(&["job", "command", "config"], DEMAND, report);
    let text = |key: &str, report: &mut FileReport<'_>| -> Option<String> {
        match object.get(key) {
            None => Some(String::new()),
            Some(value) => {
                let owned = field(&object, key, value);
                json_reader::string(owned.borrow(), DEMAND, report).map(str::to_string)
            }
        }
    };
    let upstream_job = text("job", report)?;
    let upstream_command = text("command", report)?;
    let config = match object.get("config") {
        None => Map::new(),
        Some(Value::Object(map)) => map.clone(),
        Some(other) => {
            report.at(
                &object.path_of("config"),
                DEMAND,
                format!(
                    "must be a JSON object, found {}; use {{}} when there is nothing to pass",
                    json_reader::type_name(other)
                ),
            );
            return None;
        }
    };
    match (upstream_job.is_empty(), upstream_command.is_empty()) {
        (true, true) => return None,
        (false, true) | (true, false) => {
            report.at(
                path,
                DEMAND,
                "\"job\" and \"command\" must be set together (or both left empty for no demand); fill in the missing one",
            );
            return None;
        }
        (false, false) => {}
    }
    if let Err(error) = names::validate_job_name(&upstream_job) {
        report.at(
            &object.path_of("job"),
            DEMAND,
            format!("{error}; name an existing job"),
        );
        return None;
    }
    if let Err(error) = names::validate_command_name(&upstream_command) {
        report.at(
            &object.path_of("command"),
            DEMAND,
            format!("{error}; name a command of job {upstream_job}"),
        );
        return None;
    }
    if upstream_job == job {
        report.at(
            &object.path_of("job"),
            DEMAND,
            format!("a command of job {job} cannot demand its own job; demand another job or remove the demand"),
        );
        return None;
    }
    let config_path = object.path_of("config");
    let bound = |key: &str, report: &mut FileReport<'_>| {
        config.get(key).map(|value| {
            bound_version(
                OwnedField {
                    value,
                    path: json_reader::join(&config_path, key),
                },
                report,
            )
        })
    };
    let min_version = bound("min_version", report);
    let max_version = bound("max_version", report);
    if matches!(min_version, Some(None)) || matches!(max_version, Some(None)) {
        return None;
    }
    let (min_version, max_version) = (min_version.flatten(), max_version.flatten());
    if let (Some(min), Some(max)) = (&min_version, &max_version) {
        if min.cmp_precedence(max).is_gt() {
            report.at(
                &config_path,
                ErrorKind::InvalidJobVersion,
                format!(
                    "min_version {min} is greater than max_version {max}; swap or correct them"
                ),
            );
            return None;
        }
    }
    Some(Demand {
        job: upstream_job,
        command: upstream_command,
        config,
        min_version,
        max_version,
    })
}

fn find_script(
    name: &str,
    path: &str,
    files: &[JobFile],
    report: &mut FileReport<'_>,
) -> Option<CommandScript> {
    let found: Vec<CommandScript> = ScriptRuntime::ALL
        .iter()
        .filter_map(|(runtime, extension)| {
            let script = format!("_modules/{name}.{extension}");
            files
                .iter()
                .any(|f| f.path == script)
                .then_some(CommandScript {
                    path: script,
                    runtime: *runtime,
                })
        })
        .collect();
    match found.as_slice() {
        [one] => Some(one.clone()),
        [] => {
            report.at(
                path,
                ErrorKind::InvalidJobCommandScript,
                format!("no script for {name}; add exactly one of _modules/{name}.py, _modules/{name}.ts or _modules/{name}.js"),
            );
            None
        }
        many => {
            let listed: Vec<&str> = many.iter().map(|s| s.path.as_str()).collect();
            report.at(
                path,
                ErrorKind::InvalidJobCommandScript,
                format!(
                    "several scripts for {name} ({}); keep exactly one",
                    listed.join(", ")
                ),
            );
            None
        }
    }
}

/// `health_check`: probes, their timeout and wait. Without probes the block is valid only
/// when the job registers a command for the `health_check` event (`has_command`).
fn parse_health_check(
    value: &Value,
    ports: &BTreeMap<String, PortSpec>,
    has_command: bool,
    report: &mut FileReport<'_>,
) -> Option<HealthCheck> {
    let before = report.count();
    let object = Object::expect(value, "health_check", KIND, report)?;
    object.reject_unknown(&["checks", "timeout_seconds", "wait"], KIND, report);
    let mut checks = Vec::new();
    match object.get("checks") {
        Some(Value::Array(items)) if !items.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                let path = json_reader::index(&object.path_of("checks"), i);
                if let Some(probe) = parse_probe(item, &path, ports, report) {
                    checks.push(probe);
                }
            }
        }
        Some(Value::Array(_)) | None if has_command => {}
        Some(Value::Array(_)) | None => report.at(
            &object.path_of("checks"),
            KIND,
            "health_check has neither probes nor a health_check command; add a probe to checks, e.g. {\"type\": \"tcp\", \"port\": \"http_port\"}, or a command with \"executed_on\": [\"health_check\"], or remove health_check",
        ),
        Some(other) => report.at(
            &object.path_of("checks"),
            KIND,
            format!("must be an array of probes, found {}", json_reader::type_name(other)),
        ),
    }
    let timeout_seconds = count_or(
        &object,
        "timeout_seconds",
        DEFAULT_PROBE_TIMEOUT_SECONDS,
        1,
        report,
    );
    let mut wait = HealthWait::default();
    if let Some(value) = object.get("wait") {
        if let Some(wait_object) = Object::expect(value, &object.path_of("wait"), KIND, report) {
            wait_object.reject_unknown(&["attempts", "interval_seconds"], KIND, report);
            wait.attempts = count_or(&wait_object, "attempts", wait.attempts, 1, report);
            wait.interval_seconds = count_or(
                &wait_object,
                "interval_seconds",
                wait.interval_seconds,
                0,
                report,
            );
        }
    }
    (report.count() == before).then_some(HealthCheck {
        checks,
        timeout_seconds,
        wait,
    })
}

fn parse_probe(
    value: &Value,
    path: &str,
    ports: &BTreeMap<String, PortSpec>,
    report: &mut FileReport<'_>,
) -> Option<Probe> {
    let object = Object::expect(value, path, KIND, report)?;
    let kind = match object.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        _ => {
            report.at(
                &object.path_of("type"),
                KIND,
                "each probe needs \"type\": one of \"tcp\", \"http\", \"ssh\"",
            );
            return None;
        }
    };
    let required_text = |key: &str, report: &mut FileReport<'_>| -> Option<String> {
        match object.get(key) {
            Some(value) => {
                let owned = field(&object, key, value);
                json_reader::string(owned.borrow(), KIND, report).map(str::to_string)
            }
            None => {
                report.at(
                    &object.path,
                    KIND,
                    format!("a {kind} probe needs \"{key}\"; add it"),
                );
                None
            }
        }
    };
    let port = |report: &mut FileReport<'_>| -> Option<String> {
        let port = required_text("port", report)?;
        if ports.contains_key(&port) {
            Some(port)
        } else {
            let declared: Vec<&str> = ports.keys().map(String::as_str).collect();
            report.at(
                &object.path_of("port"),
                KIND,
                format!(
                    "port {port:?} is not declared in resources.ports (declared: {}); name a declared port or add it there",
                    if declared.is_empty() { "none".to_string() } else { declared.join(", ") }
                ),
            );
            None
        }
    };
    match kind {
        "tcp" => {
            object.reject_unknown(&["type", "port"], KIND, report);
            Some(Probe::Tcp {
                port: port(report)?,
            })
        }
        "http" => {
            object.reject_unknown(
                &["type", "port", "path", "expect_status", "scheme"],
                KIND,
                report,
            );
            let port = port(report);
            let path = match object.get("path") {
                None => Some("/".to_string()),
                Some(value) => {
                    let owned = field(&object, "path", value);
                    match json_reader::string(owned.borrow(), KIND, report) {
                        Some(p) if p.starts_with('/') && !p.chars().any(char::is_control) => {
                            Some(p.to_string())
                        }
                        Some(p) => {
                            report.at(
                                &owned.path,
                                KIND,
                                format!(
                                    "{p:?} must start with '/' and be one line, e.g. \"/health\""
                                ),
                            );
                            None
                        }
                        None => None,
                    }
                }
            };
            let expect_status = match object.get("expect_status") {
                None => Some(200),
                Some(value) => match value.as_u64().and_then(|n| u16::try_from(n).ok()) {
                    Some(status) if (100..=599).contains(&status) => Some(status),
                    _ => {
                        report.at(
                            &object.path_of("expect_status"),
                            KIND,
                            format!(
                                "must be an HTTP status code from 100 to 599, found {}",
                                json_reader::describe(value)
                            ),
                        );
                        None
                    }
                },
            };
            let scheme = match object.get("scheme") {
                None => Some(HttpScheme::Http),
                Some(Value::String(s)) if s == "http" => Some(HttpScheme::Http),
                Some(Value::String(s)) if s == "https" => Some(HttpScheme::Https),
                Some(other) => {
                    report.at(
                        &object.path_of("scheme"),
                        KIND,
                        format!(
                            "must be \"http\" or \"https\", found {}",
                            json_reader::describe(other)
                        ),
                    );
                    None
                }
            };
            Some(Probe::Http {
                port: port?,
                path: path?,
                expect_status: expect_status?,
                scheme: scheme?,
            })
        }
        "ssh" => {
            object.reject_unknown(&["type", "command"], KIND, report);
            let command = required_text("command", report)?;
            if command.trim().is_empty() || command.contains(['\n', '\r', '\0']) {
                report.at(
                    &object.path_of("command"),
                    KIND,
                    "must be one non-empty shell line, e.g. \"systemctl is-active myservice\"",
                );
                return None;
            }
            Some(Probe::Ssh { command })
        }
        other => {
            report.at(
                &object.path_of("type"),
                KIND,
                format!("unknown probe type {other:?}; use \"tcp\", \"http\" or \"ssh\""),
            );
            None
        }
    }
}

fn parse_certs(value: &Value, report: &mut FileReport<'_>) -> BTreeMap<String, CertSpec> {
    let mut certs = BTreeMap::new();
    let Some(object) = Object::expect(value, "certs", KIND, report) else {
        return certs;
    };
    for (name, value) in object.entries() {
        let path = object.path_of(name);
        if let Err(error) = names::validate_cert_name(name) {
            report.at(&path, KIND, format!("{error}; rename the certificate"));
            continue;
        }
        let Some(cert) = Object::expect(value, &path, KIND, report) else {
            continue;
        };
        cert.reject_unknown(&["pkcs8", "one", "subject"], KIND, report);
        let flag = |key: &str, report: &mut FileReport<'_>| match cert.get(key) {
            None => Some(false),
            Some(value) => {
                let owned = field(&cert, key, value);
                json_reader::boolean(owned.borrow(), KIND, report)
            }
        };
        let pkcs8 = flag("pkcs8", report);
        let one = flag("one", report);
        let subject = parse_subject(&cert, report);
        if let (Some(pkcs8), Some(one), Some(subject)) = (pkcs8, one, subject) {
            certs.insert(
                name.clone(),
                CertSpec {
                    subject,
                    pkcs8,
                    one,
                },
            );
        }
    }
    certs
}

/// The optional subject attributes after `common_name`, as the manifest spells them.
const SUBJECT_ATTRIBUTES: &[&str] = &[
    "organization",
    "organizational_unit",
    "country",
    "province",
    "locality",
];

fn parse_subject(cert: &Object<'_>, report: &mut FileReport<'_>) -> Option<CertSubject> {
    let Some(value) = cert.get("subject") else {
        report.at(
            &cert.path,
            KIND,
            "missing \"subject\"; add e.g. \"subject\": {\"common_name\": \"api.internal\"}",
        );
        return None;
    };
    let subject = Object::expect(value, &cert.path_of("subject"), KIND, report)?;
    let mut allowed = vec!["common_name"];
    allowed.extend_from_slice(SUBJECT_ATTRIBUTES);
    subject.reject_unknown(&allowed, KIND, report);
    let Some(value) = subject.get("common_name") else {
        report.at(
            &subject.path,
            KIND,
            "missing \"common_name\"; add the certificate's subject CN, e.g. \"api.internal\"",
        );
        return None;
    };
    let text = |key: &str, value: &Value, report: &mut FileReport<'_>| {
        let owned = field(&subject, key, value);
        json_reader::string(owned.borrow(), KIND, report).map(str::to_string)
    };
    let mut parsed = CertSubject::with_common_name(&text("common_name", value, report)?);
    let mut complete = true;
    for key in SUBJECT_ATTRIBUTES {
        let Some(value) = subject.get(key) else {
            continue;
        };
        let Some(value) = text(key, value, report) else {
            complete = false;
            continue;
        };
        let slot = match *key {
            "organization" => &mut parsed.organization,
            "organizational_unit" => &mut parsed.organizational_unit,
            "country" => &mut parsed.country,
            "province" => &mut parsed.province,
            _ => &mut parsed.locality,
        };
        *slot = Some(value);
    }
    if !complete {
        return None;
    }
    if let Err(problem) = parsed.validate() {
        report.at(
            &subject.path_of(&problem.field),
            KIND,
            format!("{}; fix the value", problem.reason),
        );
        return None;
    }
    Some(parsed)
}
