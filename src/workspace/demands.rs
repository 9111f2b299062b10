//! Command demands between jobs: each demand must name an existing job and one of its
//! commands, both jobs must declare a version, the upstream version must satisfy the
//! demand's bounds, and the demand graph must be acyclic. From that graph comes each job's
//! `deployment_seq` (its deploy wave). Pure: works on already-parsed jobs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::errors::{ErrorKind, FileReport, WorkspaceError};
use super::{manifest_file, JobDraft};

/// One demand edge: `job`'s `command` demands `upstream`.
struct Edge<'a> {
    job: &'a str,
    command: &'a str,
    upstream: &'a str,
}

/// Validates all demands and returns each job's deployment sequence. `known_jobs` are all
/// job directory names, including those whose manifest failed to load (demands on them are
/// not reported again).
pub(crate) fn check(
    jobs: &BTreeMap<String, JobDraft>,
    known_jobs: &BTreeSet<String>,
    root: &Path,
    errors: &mut Vec<WorkspaceError>,
) -> BTreeMap<String, u32> {
    let mut edges = Vec::new();
    // Job → why it must declare a version (first reason found).
    let mut needs_version: BTreeMap<&str, String> = BTreeMap::new();

    for (job, draft) in jobs {
        for (command_name, command) in &draft.job.manifest.commands {
            let Some(demand) = &command.demand else {
                continue;
            };
            let mut report = FileReport::new(manifest_file(root, job), errors);
            let location = format!("commands.{command_name}.demands");
            let Some(upstream) = jobs.get(&demand.job) else {
                if !known_jobs.contains(&demand.job) {
                    let existing: Vec<&str> = jobs.keys().map(String::as_str).collect();
                    report.at(
                        &format!("{location}.job"),
                        ErrorKind::InvalidJobCommandDemand,
                        format!(
                            "there is no job {:?} (jobs: {}); name an existing job",
                            demand.job,
                            existing.join(", ")
                        ),
                    );
                }
                continue;
            };
            if !upstream.declared_commands.contains(&demand.command) {
                let commands: Vec<&str> = upstream
                    .declared_commands
                    .iter()
                    .map(String::as_str)
                    .collect();
                report.at(
                    &format!("{location}.command"),
                    ErrorKind::InvalidJobCommandDemand,
                    format!(
                        "job {} has no command {:?} (its commands: {}); name one of them or add it to {}'s manifest",
                        demand.job,
                        demand.command,
                        if commands.is_empty() { "none".to_string() } else { commands.join(", ") },
                        demand.job
                    ),
                );
                continue;
            }
            edges.push(Edge {
                job,
                command: command_name,
                upstream: &demand.job,
            });
            needs_version.entry(job).or_insert_with(|| {
                format!("its command {command_name} demands job {}", demand.job)
            });
            needs_version
                .entry(&demand.job)
                .or_insert_with(|| format!("job {job} demands it ({command_name})"));

            let upstream_manifest = &upstream.job.manifest;
            if !upstream_manifest.version_declared || upstream.version_unreadable {
                continue;
            }
            let version = &upstream_manifest.version;
            if let Some(min) = &demand.min_version {
                if version.cmp_precedence(min).is_lt() {
                    report.at(
                        &format!("{location}.config.min_version"),
                        ErrorKind::JobCommandDemandVersionMismatch,
                        format!(
                            "job {} is at version {version}, below min_version {min}; raise {}'s version or lower min_version",
                            demand.job, demand.job
                        ),
                    );
                }
            }
            if let Some(max) = &demand.max_version {
                if version.cmp_precedence(max).is_gt() {
                    report.at(
                        &format!("{location}.config.max_version"),
                        ErrorKind::JobCommandDemandVersionMismatch,
                        format!(
                            "job {} is at version {version}, above max_version {max}; lower {}'s version or raise max_version",
                            demand.job, demand.job
                        ),
                    );
                }
            }
        }
    }

    for (job, reason) in &needs_version {
        let Some(draft) = jobs.get(*job) else {
            continue;
        };
        if draft.job.manifest.version_declared {
            continue;
        }
        FileReport::new(manifest_file(root, job), errors).at(
            "version",
            ErrorKind::InvalidJobVersion,
            format!("job {job} must declare \"version\" because {reason}; add e.g. \"version\": \"1.0.0\""),
        );
    }

    let graph = Graph::new(jobs.keys().map(String::as_str), &edges);
    for cycle in graph.cycles() {
        let first = cycle[0];
        let second = cycle[1];
        let command = edges
            .iter()
            .find(|e| e.job == first && e.upstream == second)
            .map_or("", |e| e.command);
        let path: Vec<&str> = cycle.iter().copied().chain([first]).collect();
        FileReport::new(manifest_file(root, first), errors).at(
            &format!("commands.{command}.demands"),
            ErrorKind::CircularJobCommandDependency,
            format!(
                "command demands form a cycle: {}; remove one of these demands so the jobs can be deployed in order",
                path.join(" -> ")
            ),
        );
    }
    graph.sequences()
}

/// The job-level demand graph (edge: dependent → upstream).
struct Graph<'a> {
    upstreams: BTreeMap<&'a str, BTreeSet<&'a str>>,
}

impl<'a> Graph<'a> {
    fn new(jobs: impl Iterator<Item = &'a str>, edges: &[Edge<'a>]) -> Self {
        let mut upstreams: BTreeMap<&str, BTreeSet<&str>> =
            jobs.map(|j| (j, BTreeSet::new())).collect();
        for edge in edges {
            upstreams.entry(edge.job).or_default().insert(edge.upstream);
        }
        Graph { upstreams }
    }

    /// One cycle per strongly connected component with more than one job, each starting at
    /// its alphabetically first job.
    fn cycles(&self) -> Vec<Vec<&'a str>> {
        self.components()
            .into_iter()
            .filter(|component| component.len() > 1)
            .map(|component| {
                let start = *component.iter().next().expect("component is not empty");
                self.cycle_through(start, &component)
            })
            .collect()
    }

    /// A path `start -> … -> (back to start)` within `component`, without the final
    /// repetition of `start`.
    fn cycle_through(&self, start: &'a str, component: &BTreeSet<&'a str>) -> Vec<&'a str> {
        // Breadth-first search for the shortest way back to `start`.
        let mut previous: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        while let Some(node) = queue.pop_front() {
            for &next in &self.upstreams[node] {
                if !component.contains(next) {
                    continue;
                }
                if next == start {
                    let mut path = vec![node];
                    let mut current = node;
                    while current != start {
                        current = previous[current];
                        path.push(current);
                    }
                    path.reverse();
                    return path;
                }
                if !previous.contains_key(next) {
                    previous.insert(next, node);
                    queue.push_back(next);
                }
            }
        }
        vec![start]
    }

    /// Strongly connected components (Tarjan), each as a sorted set.
    fn components(&self) -> Vec<BTreeSet<&'a str>> {
        struct State<'a> {
            index: BTreeMap<&'a str, usize>,
            low: BTreeMap<&'a str, usize>,
            stack: Vec<&'a str>,
            on_stack: BTreeSet<&'a str>,
            components: Vec<BTreeSet<&'a str>>,
        }
        fn visit<'a>(graph: &Graph<'a>, node: &'a str, state: &mut State<'a>) {
            let index = state.index.len();
            state.index.insert(node, index);
            state.low.insert(node, index);
            state.stack.push(node);
            state.on_stack.insert(node);
            for &next in &graph.upstreams[node] {
                if !state.index.contains_key(next) {
                    visit(graph, next, state);
                    let low = state.low[node].min(state.low[next]);
                    state.low.insert(node, low);
                } else if state.on_stack.contains(next) {
                    let low = state.low[node].min(state.index[next]);
                    state.low.insert(node, low);
                }
            }
            if state.low[node] == state.index[node] {
                let mut component = BTreeSet::new();
                while let Some(member) = state.stack.pop() {
                    state.on_stack.remove(member);
                    component.insert(member);
                    if member == node {
                        break;
                    }
                }
                state.components.push(component);
            }
        }
        let mut state = State {
            index: BTreeMap::new(),
            low: BTreeMap::new(),
            stack: Vec::new(),
            on_stack: BTreeSet::new(),
            components: Vec::new(),
        };
        for &node in self.upstreams.keys() {
            if !state.index.contains_key(node) {
                visit(self, node, &mut state);
            }
        }
        state.components
    }

    /// Longest demand chain below each job: 0 without upstreams, else 1 + the highest
    /// upstream sequence. Jobs on a cycle (already reported) are given 0.
    fn sequences(&self) -> BTreeMap<String, u32> {
        let cyclic: BTreeSet<&str> = self
            .components()
            .into_iter()
            .filter(|c| c.len() > 1)
            .flatten()
            .collect();
        let mut memo: BTreeMap<&str, u32> = BTreeMap::new();
        fn depth<'a>(
            graph: &Graph<'a>,
            node: &'a str,
            cyclic: &BTreeSet<&'a str>,
            memo: &mut BTreeMap<&'a str, u32>,
        ) -> u32 {
            if cyclic.contains(node) {
                return 0;
            }
            if let Some(&known) = memo.get(node) {
                return known;
            }
            let result = graph.upstreams[node]
                .iter()
                .map(|&up| depth(graph, up, cyclic, memo) + 1)
                .max()
                .unwrap_or(0);
            memo.insert(node, result);
            result
        }
        self.upstreams
            .keys()
            .map(|&job| (job.to_string(), depth(self, job, &cyclic, &mut memo)))
            .collect()
    }
}
