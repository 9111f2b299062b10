//! Go's own `text/template`, run as a child process: builds `tests/go_oracle/main.go` once per
//! test binary and renders batches of templates with it (one Go process per batch).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::fixture::Fixture;

/// One template for Go to render.
#[derive(Serialize)]
pub struct Request<'a> {
    pub name: &'a str,
    pub template: &'a str,
    pub fixture: &'a Fixture,
}

#[derive(Deserialize)]
struct Response {
    name: String,
    output: Option<String>,
    error: Option<String>,
}

const INSTALL_HINT: &str = "the template oracle tests render every template with Go's own \
    text/template and need the Go toolchain: run `scripts/install-deps.sh` (as root; it \
    installs Debian's golang-go)";

/// The built oracle binary, built on first use in this process.
fn oracle_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(build_oracle)
}

/// Builds the oracle under cargo's temp dir. Each process builds into its own file and renames
/// it into place, so test processes running in parallel never see a half-written binary; the
/// shared Go build cache makes every build after the first a cache hit.
fn build_oracle() -> PathBuf {
    let source_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go_oracle");
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go_oracle");
    std::fs::create_dir_all(&work).unwrap_or_else(|e| panic!("creating {}: {e}", work.display()));
    let partial = work.join(format!("go_oracle.{}.partial", std::process::id()));
    let binary = work.join("go_oracle");
    let built = Command::new("go")
        .args(["build", "-o"])
        .arg(&partial)
        .arg("main.go")
        .current_dir(&source_dir)
        .env("GOCACHE", work.join("cache"))
        .env("GOPATH", work.join("gopath"))
        .env("GOFLAGS", "")
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GO111MODULE", "on")
        .output();
    let built = match built {
        Ok(built) => built,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("`go` is not installed: {INSTALL_HINT}")
        }
        Err(e) => panic!("running `go build` failed ({e}): {INSTALL_HINT}"),
    };
    assert!(
        built.status.success(),
        "`go build` of {} failed:\n{}",
        source_dir.join("main.go").display(),
        String::from_utf8_lossy(&built.stderr)
    );
    std::fs::rename(&partial, &binary)
        .unwrap_or_else(|e| panic!("moving the oracle to {}: {e}", binary.display()));
    binary
}

/// Renders every request with Go in one process: per request, the output or Go's error text.
pub fn render_batch(requests: &[Request<'_>]) -> Vec<Result<String, String>> {
    let input = serde_json::to_vec(requests).expect("requests serialize");
    let mut child = Command::new(oracle_binary())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the Go oracle starts");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let finished = child.wait_with_output().expect("the Go oracle runs");
    writer
        .join()
        .expect("stdin writer thread")
        .expect("writing the batch to the Go oracle");
    assert!(
        finished.status.success(),
        "the Go oracle failed ({}):\n{}",
        finished.status,
        String::from_utf8_lossy(&finished.stderr)
    );
    let responses: Vec<Response> =
        serde_json::from_slice(&finished.stdout).expect("the Go oracle prints a JSON array");
    assert_eq!(
        responses.len(),
        requests.len(),
        "one Go answer per template"
    );
    responses
        .into_iter()
        .zip(requests)
        .map(|(response, request)| {
            assert_eq!(response.name, request.name, "Go answers in request order");
            match (response.output, response.error) {
                (Some(output), None) => Ok(output),
                (None, Some(error)) => Err(error),
                _ => panic!(
                    "Go answered {} with neither or both of output/error",
                    request.name
                ),
            }
        })
        .collect()
}
