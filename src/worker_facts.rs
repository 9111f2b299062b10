//! Worker capacity facts for `maand worker_facts`: the probe that reads a worker's memory and
//! CPU in one round trip, the arithmetic that turns its output into megabytes and megahertz,
//! and the edit of `workspace/workers.json` that writes them back.
//!
//! The edit works on the file's text, not on a re-serialised value: only the `memory` and
//! `cpu` values of probed workers change (or are added after an entry's last field), so key
//! order, array order, indentation and every other field stay exactly as the operator wrote
//! them. [`FactsUpdate::diff`] renders the same edits as a unified diff for `--dry-run`.
//!
//! Pure: this module never contacts a worker, never reads or writes a file and never prints;
//! [`refresh`] (the `refresh` submodule) is the use case that probes and writes.
//!
//! ## The CPU figure
//! CPU capacity is the sum of the speeds of the worker's online logical CPUs, in MHz:
//! 1. each online CPU's `cpufreq/cpuinfo_max_freq` (kHz) under `/sys/devices/system/cpu`,
//!    summed, when every online CPU has one;
//! 2. otherwise the number of online CPUs times the highest `cpu MHz` in `/proc/cpuinfo`
//!    (virtual machines usually expose no cpufreq, and report their nominal speed there);
//! 3. otherwise the number of online CPUs times `lscpu`'s `CPU max MHz`.
//!
//! Online CPUs are the `cpuN` directories whose `online` file is absent or `1`; when `/sys`
//! lists none, `nproc` counts them. Memory is `MemTotal` from `/proc/meminfo`, in whole MB
//! (kB / 1024, rounded down).

use std::fmt;

use serde_json::Value;

mod refresh;
pub use refresh::{refresh, FactsRequest, Refreshed};

use crate::workspace;

/// A POSIX sh script printing what [`parse_probe`] reads, one `key value...` line per fact.
/// Always exits 0; missing sources simply print nothing.
pub const PROBE_SCRIPT: &str = r#"awk '/^MemTotal:/ { print "memtotal_kb", $2 }' /proc/meminfo
for dir in /sys/devices/system/cpu/cpu[0-9]*; do
  [ -d "$dir" ] || continue
  online=1
  [ -r "$dir/online" ] && online=$(cat "$dir/online")
  [ "$online" = 1 ] || continue
  max=$(cat "$dir/cpufreq/cpuinfo_max_freq" 2>/dev/null) || max=
  echo "cpu ${dir##*/} ${max:--}"
done
awk -F: '/^cpu MHz/ { gsub(/[ \t]/, "", $2); print "cpuinfo_mhz", $2 }' /proc/cpuinfo 2>/dev/null
if command -v lscpu >/dev/null 2>&1; then
  LC_ALL=C lscpu 2>/dev/null | awk -F: '/^CPU max MHz/ { gsub(/[ \t]/, "", $2); print "lscpu_max_mhz", $2 }'
fi
echo "nproc $(nproc 2>/dev/null || echo -)"
exit 0
"#;

/// The workspace file this module edits, as named in messages.
const WORKERS_FILE: &str = "workspace/workers.json";

/// Where a worker's CPU speed came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuSource {
    /// Per-CPU `cpufreq/cpuinfo_max_freq`, summed.
    CpufreqMax,
    /// Online CPUs × the highest `cpu MHz` of `/proc/cpuinfo`.
    CpuinfoMhz,
    /// Online CPUs × `lscpu`'s `CPU max MHz`.
    LscpuMax,
}

impl CpuSource {
    pub fn as_str(self) -> &'static str {
        match self {
            CpuSource::CpufreqMax => "cpufreq max",
            CpuSource::CpuinfoMhz => "/proc/cpuinfo",
            CpuSource::LscpuMax => "lscpu",
        }
    }
}

/// What a worker reported about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    pub memory_mb: u64,
    pub cpu_mhz: u64,
    pub logical_cpus: u64,
    pub cpu_source: CpuSource,
}

/// Probe output that does not say what is needed, or a `workers.json` this module cannot
/// edit. Each message names the worker or the place in the file and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FactsError {
    #[error("worker {worker}: the capacity probe found no MemTotal in /proc/meminfo; check that /proc is mounted on the worker, or set \"memory\" in {WORKERS_FILE} by hand")]
    NoMemory { worker: String },
    #[error("worker {worker}: the capacity probe could not count the online CPUs (no /sys/devices/system/cpu/cpuN and no nproc); set \"cpu\" in {WORKERS_FILE} by hand")]
    NoCpuCount { worker: String },
    #[error("worker {worker}: no CPU speed found (no cpufreq cpuinfo_max_freq, no \"cpu MHz\" in /proc/cpuinfo, no \"CPU max MHz\" from lscpu); set \"cpu\" in {WORKERS_FILE} by hand")]
    NoCpuSpeed { worker: String },
    #[error("worker {worker}: the capacity probe printed {line:?}, which is not a number where one was expected")]
    Garbled { worker: String, line: String },
    #[error("{WORKERS_FILE}{}: {reason}", location.as_deref().map(|l| format!(" at {l}")).unwrap_or_default())]
    WorkersFile {
        location: Option<String>,
        reason: String,
    },
}

/// Reads the output of [`PROBE_SCRIPT`] run on `worker`.
pub fn parse_probe(worker: &str, output: &str) -> Result<Capacity, FactsError> {
    let garbled = |line: &str| FactsError::Garbled {
        worker: worker.to_string(),
        line: line.to_string(),
    };
    let mut memtotal_kb = None;
    let mut cpu_max_khz: Vec<Option<u64>> = Vec::new();
    let mut cpuinfo_mhz: Option<f64> = None;
    let mut lscpu_max_mhz = None;
    let mut nproc = None;
    for line in output.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["memtotal_kb", kb] => {
                memtotal_kb = Some(kb.parse::<u64>().map_err(|_| garbled(line))?)
            }
            ["cpu", _name, "-"] => cpu_max_khz.push(None),
            ["cpu", _name, khz] => {
                cpu_max_khz.push(Some(khz.parse::<u64>().map_err(|_| garbled(line))?))
            }
            ["cpuinfo_mhz", mhz] => {
                let mhz = parse_mhz(mhz).ok_or_else(|| garbled(line))?;
                cpuinfo_mhz = Some(cpuinfo_mhz.map_or(mhz, |seen: f64| seen.max(mhz)));
            }
            ["lscpu_max_mhz", mhz] => {
                lscpu_max_mhz = Some(parse_mhz(mhz).ok_or_else(|| garbled(line))?)
            }
            ["nproc", "-"] => {}
            ["nproc", count] => nproc = Some(count.parse::<u64>().map_err(|_| garbled(line))?),
            _ => {}
        }
    }
    let memory_mb = memtotal_kb.ok_or_else(|| FactsError::NoMemory {
        worker: worker.to_string(),
    })? / 1024;
    let logical_cpus = match cpu_max_khz.len() as u64 {
        0 => nproc
            .filter(|&n| n > 0)
            .ok_or_else(|| FactsError::NoCpuCount {
                worker: worker.to_string(),
            })?,
        n => n,
    };
    let all_cpufreq: Option<Vec<u64>> = cpu_max_khz.iter().copied().collect();
    let (cpu_mhz, cpu_source) = match (all_cpufreq, cpuinfo_mhz, lscpu_max_mhz) {
        (Some(khz), _, _) if !khz.is_empty() && khz.iter().all(|&k| k > 0) => {
            (khz.iter().sum::<u64>() / 1000, CpuSource::CpufreqMax)
        }
        (_, Some(mhz), _) if mhz >= 1.0 => (logical_cpus * mhz as u64, CpuSource::CpuinfoMhz),
        (_, _, Some(mhz)) if mhz >= 1.0 => (logical_cpus * mhz as u64, CpuSource::LscpuMax),
        _ => {
            return Err(FactsError::NoCpuSpeed {
                worker: worker.to_string(),
            })
        }
    };
    Ok(Capacity {
        memory_mb,
        cpu_mhz,
        logical_cpus,
        cpu_source,
    })
}

fn parse_mhz(text: &str) -> Option<f64> {
    text.parse::<f64>()
        .ok()
        .filter(|mhz| mhz.is_finite() && *mhz >= 0.0)
}

/// The text of a `memory` value this module writes.
pub fn memory_text(memory_mb: u64) -> String {
    format!("{memory_mb} mb")
}

/// The text of a `cpu` value this module writes.
pub fn cpu_text(cpu_mhz: u64) -> String {
    format!("{cpu_mhz} mhz")
}

/// One member of a JSON object: where its key starts and where its value lies.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Member {
    key: String,
    /// Text between the key's closing quote and the value (`: `).
    colon: String,
    value_start: usize,
    value_end: usize,
    /// Whitespace between the preceding `{` or `,` and the key.
    lead: String,
}

/// One worker entry of `workers.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerEntry {
    /// Canonical host (see [`workspace::parse_host`]).
    pub host: String,
    /// Labels as written, plus the implicit `worker` label.
    pub labels: Vec<String>,
    /// Index in the array.
    pub position: usize,
    memory: Option<Value>,
    cpu: Option<Value>,
    members: Vec<Member>,
}

/// `workers.json` with the position of every entry's members, ready to be edited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkersFile {
    text: String,
    entries: Vec<WorkerEntry>,
}

impl WorkersFile {
    /// Reads the file's text. Every entry must be an object with a valid `host`; other fields
    /// are left to `maand build` to judge.
    pub fn parse(text: &str) -> Result<WorkersFile, FactsError> {
        let value: Value = serde_json::from_str(text).map_err(|error| FactsError::WorkersFile {
            location: None,
            reason: format!(
                "not valid JSON at line {}, column {}; fix the syntax",
                error.line(),
                error.column()
            ),
        })?;
        let Value::Array(values) = value else {
            return Err(FactsError::WorkersFile {
                location: None,
                reason: "must be a JSON array of workers like [{\"host\": \"127.9.0.1\"}]".into(),
            });
        };
        let objects = Scanner::new(text).top_level_objects()?;
        if objects.len() != values.len() {
            return Err(FactsError::WorkersFile {
                location: None,
                reason: "every entry must be a JSON object with a \"host\"".into(),
            });
        }
        let mut entries = Vec::with_capacity(values.len());
        for (position, (value, members)) in values.iter().zip(objects).enumerate() {
            let location = Some(format!("[{position}]"));
            let bad = |reason: String| FactsError::WorkersFile {
                location: location.clone(),
                reason,
            };
            let Value::Object(object) = value else {
                return Err(bad(
                    "must be an object like {\"host\": \"127.9.0.1\"}".into()
                ));
            };
            let host = object.get("host").and_then(Value::as_str).ok_or_else(|| {
                bad("needs a \"host\" string, e.g. \"host\": \"127.9.0.1\"".into())
            })?;
            let host = workspace::parse_host(host).map_err(|error| bad(error.to_string()))?;
            let mut labels = vec![workspace::DEFAULT_LABEL.to_string()];
            if let Some(list) = object.get("labels").and_then(Value::as_array) {
                for label in list.iter().filter_map(Value::as_str) {
                    if !labels.iter().any(|known| known == label) {
                        labels.push(label.to_string());
                    }
                }
            }
            entries.push(WorkerEntry {
                host,
                labels,
                position,
                memory: object.get("memory").cloned(),
                cpu: object.get("cpu").cloned(),
                members,
            });
        }
        for (index, entry) in entries.iter().enumerate() {
            if let Some(first) = entries[..index].iter().find(|e| e.host == entry.host) {
                return Err(FactsError::WorkersFile {
                    location: Some(format!("[{index}].host")),
                    reason: format!(
                        "host {} is already declared at [{}]; each worker must appear once",
                        entry.host, first.position
                    ),
                });
            }
        }
        Ok(WorkersFile {
            text: text.to_string(),
            entries,
        })
    }

    /// The entries in file order.
    pub fn entries(&self) -> &[WorkerEntry] {
        &self.entries
    }

    /// The file's current text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The edits that make the probed workers' `memory` and `cpu` say what `facts` found.
    /// Values that already mean the same amount (`"16 gb"` for 16384 MB) are left alone.
    /// Hosts in `facts` that the file does not list are ignored.
    pub fn plan(&self, facts: &[(String, Capacity)]) -> FactsUpdate {
        let mut changes = Vec::new();
        let mut edits = Vec::new();
        for entry in &self.entries {
            let Some((_, capacity)) = facts.iter().find(|(host, _)| *host == entry.host) else {
                continue;
            };
            let memory = field_change(
                entry.memory.as_ref(),
                capacity.memory_mb,
                workspace::parse_memory_mb,
                memory_text(capacity.memory_mb),
            );
            let cpu = field_change(
                entry.cpu.as_ref(),
                capacity.cpu_mhz,
                workspace::parse_cpu_mhz,
                cpu_text(capacity.cpu_mhz),
            );
            if memory.is_none() && cpu.is_none() {
                continue;
            }
            let mut missing = Vec::new();
            for (key, change) in [("memory", &memory), ("cpu", &cpu)] {
                let Some(change) = change else { continue };
                let value = json_string(&change.new);
                let present: Vec<&Member> = entry.members.iter().filter(|m| m.key == key).collect();
                if present.is_empty() {
                    missing.push((key, value));
                } else {
                    edits.extend(present.into_iter().map(|member| Edit {
                        start: member.value_start,
                        end: member.value_end,
                        replacement: value.clone(),
                    }));
                }
            }
            if !missing.is_empty() {
                let last = entry.members.last().expect("an entry has a host member");
                let lead = if last.lead.contains('\n') {
                    last.lead.clone()
                } else {
                    " ".to_string()
                };
                let mut replacement = String::new();
                for (key, value) in missing {
                    replacement.push_str(&format!(
                        ",{lead}{}{}{value}",
                        json_string(key),
                        last.colon
                    ));
                }
                edits.push(Edit {
                    start: last.value_end,
                    end: last.value_end,
                    replacement,
                });
            }
            changes.push(WorkerChange {
                host: entry.host.clone(),
                memory,
                cpu,
            });
        }
        edits.sort_by_key(|edit| (edit.start, edit.end));
        FactsUpdate {
            old_text: self.text.clone(),
            edits,
            changes,
        }
    }
}

/// How one field of one worker changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldChange {
    /// The value as the file has it (`None` when the field is absent).
    pub old: Option<String>,
    pub new: String,
}

/// What changes for one worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerChange {
    pub host: String,
    pub memory: Option<FieldChange>,
    pub cpu: Option<FieldChange>,
}

impl fmt::Display for WorkerChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.host)?;
        let mut first = true;
        for (key, change) in [("memory", &self.memory), ("cpu", &self.cpu)] {
            let Some(change) = change else { continue };
            if !first {
                write!(f, ",")?;
            }
            first = false;
            write!(
                f,
                " {key} {} -> {:?}",
                change.old.as_deref().unwrap_or("(unset)"),
                change.new
            )?;
        }
        Ok(())
    }
}

/// The planned rewrite of `workers.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactsUpdate {
    old_text: String,
    /// Sorted, non-overlapping.
    edits: Vec<Edit>,
    changes: Vec<WorkerChange>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Edit {
    start: usize,
    end: usize,
    replacement: String,
}

impl FactsUpdate {
    /// One entry per worker whose `memory` or `cpu` changes, in file order.
    pub fn changes(&self) -> &[WorkerChange] {
        &self.changes
    }

    /// True when the file already says what the workers reported.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The new file text.
    pub fn new_text(&self) -> String {
        apply(&self.old_text, &self.edits)
    }

    /// The change as a unified diff (no context lines) of `workspace/workers.json`; empty when
    /// nothing changes.
    pub fn diff(&self) -> String {
        if self.edits.is_empty() {
            return String::new();
        }
        let text = &self.old_text;
        let line_start = |at: usize| text[..at].rfind('\n').map_or(0, |i| i + 1);
        let line_end = |at: usize| text[at..].find('\n').map_or(text.len(), |i| at + i + 1);
        let line_number = |at: usize| text[..at].matches('\n').count() + 1;
        // Group edits whose lines touch, so each hunk shows whole lines once.
        let mut hunks: Vec<(usize, usize, Vec<&Edit>)> = Vec::new();
        for edit in &self.edits {
            let start = line_start(edit.start);
            let end = line_end(edit.end.max(edit.start));
            match hunks.last_mut() {
                Some((_, hunk_end, group)) if start < *hunk_end => {
                    *hunk_end = (*hunk_end).max(end);
                    group.push(edit);
                }
                _ => hunks.push((start, end, vec![edit])),
            }
        }
        let mut out = format!("--- {WORKERS_FILE}\n+++ {WORKERS_FILE}\n");
        let mut shift: isize = 0;
        for (start, end, group) in hunks {
            let old = &text[start..end];
            let relative: Vec<Edit> = group
                .iter()
                .map(|edit| Edit {
                    start: edit.start - start,
                    end: edit.end - start,
                    replacement: edit.replacement.clone(),
                })
                .collect();
            let new = apply(old, &relative);
            let old_lines: Vec<&str> = old.lines().collect();
            let new_lines: Vec<&str> = new.lines().collect();
            let old_first = line_number(start);
            let new_first = (old_first as isize + shift) as usize;
            out.push_str(&format!(
                "@@ -{old_first},{} +{new_first},{} @@\n",
                old_lines.len(),
                new_lines.len()
            ));
            for line in &old_lines {
                out.push_str(&format!("-{line}\n"));
            }
            for line in &new_lines {
                out.push_str(&format!("+{line}\n"));
            }
            shift += new_lines.len() as isize - old_lines.len() as isize;
        }
        out
    }
}

/// Applies sorted, non-overlapping `edits` to `text`.
fn apply(text: &str, edits: &[Edit]) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    let mut at = 0;
    for edit in edits {
        out.push_str(&text[at..edit.start]);
        out.push_str(&edit.replacement);
        at = edit.end;
    }
    out.push_str(&text[at..]);
    out
}

/// The change of one capacity field, or `None` when the file already states `amount`.
fn field_change(
    current: Option<&Value>,
    amount: u64,
    parse: fn(&str) -> Result<u64, workspace::QuantityError>,
    new: String,
) -> Option<FieldChange> {
    let stated = match current {
        Some(Value::String(text)) => parse(text).ok(),
        Some(Value::Number(number)) => number.as_u64(),
        _ => None,
    };
    if stated == Some(amount) {
        return None;
    }
    Some(FieldChange {
        old: current.map(|value| match value {
            Value::String(text) => format!("{text:?}"),
            other => other.to_string(),
        }),
        new,
    })
}

fn json_string(text: &str) -> String {
    serde_json::to_string(text).expect("strings serialise")
}

/// Finds the spans of the members of the top-level array's objects. Runs only on text that
/// `serde_json` has accepted, so it checks structure, not syntax.
struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Scanner<'a> {
        Scanner {
            text,
            bytes: text.as_bytes(),
            at: 0,
        }
    }

    fn structure_error(&self) -> FactsError {
        FactsError::WorkersFile {
            location: None,
            reason: "every entry must be a JSON object with a \"host\"".into(),
        }
    }

    fn skip_whitespace(&mut self) -> &'a str {
        let start = self.at;
        while self
            .bytes
            .get(self.at)
            .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        {
            self.at += 1;
        }
        &self.text[start..self.at]
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn expect(&mut self, byte: u8) -> Result<(), FactsError> {
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.structure_error())
        }
    }

    fn top_level_objects(mut self) -> Result<Vec<Vec<Member>>, FactsError> {
        self.skip_whitespace();
        self.expect(b'[')?;
        let mut objects = Vec::new();
        loop {
            self.skip_whitespace();
            match self.peek() {
                Some(b']') => return Ok(objects),
                Some(b',') => self.at += 1,
                Some(b'{') => objects.push(self.object()?),
                _ => return Err(self.structure_error()),
            }
        }
    }

    fn object(&mut self) -> Result<Vec<Member>, FactsError> {
        self.expect(b'{')?;
        let mut members = Vec::new();
        loop {
            let lead = self.skip_whitespace().to_string();
            match self.peek() {
                Some(b'}') => {
                    self.at += 1;
                    return Ok(members);
                }
                Some(b',') => {
                    self.at += 1;
                    continue;
                }
                Some(b'"') => {}
                _ => return Err(self.structure_error()),
            }
            let key_start = self.at;
            self.skip_string()?;
            let key: String = serde_json::from_str(&self.text[key_start..self.at])
                .map_err(|_| self.structure_error())?;
            let colon_start = self.at;
            self.skip_whitespace();
            self.expect(b':')?;
            self.skip_whitespace();
            let colon = self.text[colon_start..self.at].to_string();
            let value_start = self.at;
            self.skip_value()?;
            members.push(Member {
                key,
                colon,
                value_start,
                value_end: self.at,
                lead,
            });
        }
    }

    fn skip_string(&mut self) -> Result<(), FactsError> {
        self.expect(b'"')?;
        while let Some(byte) = self.peek() {
            self.at += 1;
            match byte {
                b'\\' => self.at += 1,
                b'"' => return Ok(()),
                _ => {}
            }
        }
        Err(self.structure_error())
    }

    fn skip_value(&mut self) -> Result<(), FactsError> {
        match self.peek() {
            Some(b'"') => self.skip_string(),
            Some(b'{' | b'[') => {
                let mut depth = 0usize;
                while let Some(byte) = self.peek() {
                    match byte {
                        b'"' => {
                            self.skip_string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.at += 1;
                                return Ok(());
                            }
                        }
                        _ => {}
                    }
                    self.at += 1;
                }
                Err(self.structure_error())
            }
            Some(_) => {
                while self.peek().is_some_and(|b| {
                    !matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                }) {
                    self.at += 1;
                }
                Ok(())
            }
            None => Err(self.structure_error()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capacity(memory_mb: u64, cpu_mhz: u64) -> Capacity {
        Capacity {
            memory_mb,
            cpu_mhz,
            logical_cpus: 2,
            cpu_source: CpuSource::CpuinfoMhz,
        }
    }

    #[test]
    fn cpufreq_maxima_are_summed_when_every_online_cpu_has_one() {
        let output = "memtotal_kb 16219136\ncpu cpu0 3600000\ncpu cpu1 2400000\ncpuinfo_mhz 1200.5\nnproc 2\n";
        let facts = parse_probe("127.9.0.1", output).unwrap();
        assert_eq!(facts.memory_mb, 15839);
        assert_eq!(facts.cpu_mhz, 6000);
        assert_eq!(facts.logical_cpus, 2);
        assert_eq!(facts.cpu_source, CpuSource::CpufreqMax);
    }

    #[test]
    fn without_cpufreq_the_highest_cpuinfo_speed_counts_for_every_cpu() {
        let output = "memtotal_kb 2048000\ncpu cpu0 -\ncpu cpu1 -\ncpu cpu2 -\ncpuinfo_mhz 2596.130\ncpuinfo_mhz 2601.9\nnproc 1\n";
        let facts = parse_probe("w", output).unwrap();
        assert_eq!(facts.cpu_mhz, 3 * 2601);
        assert_eq!(facts.cpu_source, CpuSource::CpuinfoMhz);
    }

    #[test]
    fn lscpu_and_nproc_are_the_last_resort() {
        let output = "memtotal_kb 1024\nlscpu_max_mhz 1800.0000\nnproc 4\n";
        let facts = parse_probe("w", output).unwrap();
        assert_eq!((facts.memory_mb, facts.cpu_mhz), (1, 7200));
        assert_eq!(facts.cpu_source, CpuSource::LscpuMax);
    }

    #[test]
    fn missing_facts_name_the_worker_and_the_source() {
        let error = parse_probe("127.9.0.9", "nproc 2\ncpuinfo_mhz 100\n").unwrap_err();
        assert_eq!(
            error,
            FactsError::NoMemory {
                worker: "127.9.0.9".into()
            }
        );
        let error = parse_probe("127.9.0.9", "memtotal_kb 10\ncpu cpu0 -\n").unwrap_err();
        assert!(
            error.to_string().contains("127.9.0.9: no CPU speed"),
            "{error}"
        );
        let error = parse_probe("w", "memtotal_kb lots\n").unwrap_err();
        assert!(matches!(error, FactsError::Garbled { .. }), "{error}");
    }

    #[test]
    fn the_probe_script_runs_here_and_parses() {
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(PROBE_SCRIPT)
            .output()
            .unwrap();
        assert!(output.status.success());
        let facts = parse_probe("localhost", &String::from_utf8(output.stdout).unwrap()).unwrap();
        assert!(facts.memory_mb > 0 && facts.cpu_mhz > 0 && facts.logical_cpus > 0);
    }

    const PRETTY: &str = r#"[
  {
    "host": "127.9.0.1",
    "labels": ["web"],
    "tags": {"zone": "a", "note": "x}y"}
  },
  {
    "cpu": "1 ghz",
    "host": "127.9.0.2",
    "memory": "16 gb",
    "hostname": "db"
  }
]
"#;

    #[test]
    fn missing_fields_are_added_after_the_last_one_with_its_indentation() {
        let file = WorkersFile::parse(PRETTY).unwrap();
        let update = file.plan(&[("127.9.0.1".into(), capacity(15839, 5192))]);
        assert_eq!(
            update.new_text(),
            PRETTY.replace(
                "\"note\": \"x}y\"}\n",
                "\"note\": \"x}y\"},\n    \"memory\": \"15839 mb\",\n    \"cpu\": \"5192 mhz\"\n"
            )
        );
        let reparsed: Value = serde_json::from_str(&update.new_text()).unwrap();
        assert_eq!(reparsed[0]["tags"]["note"], "x}y");
        assert_eq!(
            update.changes()[0].to_string(),
            "127.9.0.1: memory (unset) -> \"15839 mb\", cpu (unset) -> \"5192 mhz\""
        );
    }

    #[test]
    fn equal_amounts_in_other_units_are_left_alone_and_others_replaced_in_place() {
        let file = WorkersFile::parse(PRETTY).unwrap();
        let update = file.plan(&[("127.9.0.2".into(), capacity(16384, 2000))]);
        assert_eq!(
            update.new_text(),
            PRETTY.replace("\"1 ghz\"", "\"2000 mhz\"")
        );
        assert_eq!(update.changes().len(), 1);
        assert!(update.changes()[0].memory.is_none());
        let unchanged = file.plan(&[("127.9.0.2".into(), capacity(16384, 1000))]);
        assert!(unchanged.is_empty());
        assert_eq!(unchanged.new_text(), PRETTY);
        assert_eq!(unchanged.diff(), "");
    }

    #[test]
    fn one_line_files_stay_on_one_line() {
        let text = r#"[{"host":"127.9.0.1"}, {"host": "127.9.0.2", "memory": 512}]"#;
        let file = WorkersFile::parse(text).unwrap();
        let update = file.plan(&[
            ("127.9.0.1".into(), capacity(100, 200)),
            ("127.9.0.2".into(), capacity(100, 200)),
        ]);
        assert_eq!(
            update.new_text(),
            r#"[{"host":"127.9.0.1", "memory":"100 mb", "cpu":"200 mhz"}, {"host": "127.9.0.2", "memory": "100 mb", "cpu": "200 mhz"}]"#
        );
        assert_eq!(
            update.changes()[1].memory.as_ref().unwrap().old.as_deref(),
            Some("512")
        );
    }

    #[test]
    fn the_diff_shows_changed_lines_with_their_numbers() {
        let file = WorkersFile::parse(PRETTY).unwrap();
        let update = file.plan(&[
            ("127.9.0.1".into(), capacity(1, 2)),
            ("127.9.0.2".into(), capacity(16384, 2000)),
        ]);
        assert_eq!(
            update.diff(),
            "--- workspace/workers.json\n+++ workspace/workers.json\n\
             @@ -5,1 +5,3 @@\n\
             -    \"tags\": {\"zone\": \"a\", \"note\": \"x}y\"}\n\
             +    \"tags\": {\"zone\": \"a\", \"note\": \"x}y\"},\n\
             +    \"memory\": \"1 mb\",\n\
             +    \"cpu\": \"2 mhz\"\n\
             @@ -8,1 +10,1 @@\n\
             -    \"cpu\": \"1 ghz\",\n\
             +    \"cpu\": \"2000 mhz\",\n"
        );
    }

    #[test]
    fn entries_carry_canonical_hosts_and_labels_with_worker() {
        let file =
            WorkersFile::parse(r#"[{"host": "DB.Example.", "labels": ["db", "worker"]}]"#).unwrap();
        let entry = &file.entries()[0];
        assert_eq!(entry.host, "db.example");
        assert_eq!(entry.labels, ["worker", "db"]);
    }

    #[test]
    fn unusable_files_name_the_place_to_fix() {
        let error = WorkersFile::parse("[{\"host\": \"127.9.0.1\",}]").unwrap_err();
        assert!(error.to_string().contains("line 1"), "{error}");
        let error = WorkersFile::parse(r#"[{"labels": []}]"#).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("workers.json at [0]: needs a \"host\""),
            "{error}"
        );
        let error = WorkersFile::parse(r#"[{"host": "a.example"}, "b"]"#).unwrap_err();
        assert!(error.to_string().contains("object"), "{error}");
        let error = WorkersFile::parse(r#"[{"host": "::1"}, {"host": "0::1"}]"#).unwrap_err();
        assert!(error.to_string().contains("[1].host"), "{error}");
    }
}
