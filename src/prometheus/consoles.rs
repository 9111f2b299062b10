//! Console pages for the prometheus server job: runbooks rendered from markdown and the
//! dashboards index. Pages are served by Prometheus' `/consoles/` handler, which runs every
//! file as a Go template, so generated text never contains a literal `{{`.

use pulldown_cmark::{html, Options, Parser};

/// Where runbook pages go, relative to the prometheus job directory.
pub const RUNBOOKS_OUT: &str = "consoles/runbooks";
/// Where dashboards go, relative to the prometheus job directory.
pub const DASHBOARDS_OUT: &str = "consoles/dashboards";
/// The gitignore-style file that hides dashboards from the index.
pub const DASHBOARD_IGNORE: &str = ".dashboardignore";

const STYLE: &str = "body { font-family: sans-serif; margin: 2em auto; max-width: 60em; line-height: 1.5; color: #222; }\n\
nav { margin-bottom: 1em; }\n\
pre { background: #f4f4f4; padding: 0.8em; overflow-x: auto; }\n\
code { background: #f4f4f4; }\n\
table { border-collapse: collapse; }\n\
td, th { border: 1px solid #ccc; padding: 0.3em 0.6em; }\n";

/// The shared stylesheet of runbook and dashboard indexes.
pub fn stylesheet() -> &'static [u8] {
    STYLE.as_bytes()
}

/// Escapes text for HTML element content and attribute values.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Keeps Prometheus' template engine from reading `{{` in generated pages.
fn inert(html: String) -> String {
    html.replace("{{", "&#123;&#123;")
        .replace("}}", "&#125;&#125;")
}

fn page(title: &str, stylesheet: &str, nav: &str, body: &str) -> Vec<u8> {
    inert(format!(
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n\
         <link rel=\"stylesheet\" href=\"{stylesheet}\">\n</head>\n<body>\n{nav}<main>\n{body}</main>\n</body>\n</html>\n",
        escape(title)
    ))
    .into_bytes()
}

/// A runbook page: the markdown rendered as CommonMark (with tables and strikethrough).
pub fn runbook_page(job: &str, slug: &str, markdown: &str) -> Vec<u8> {
    let mut options = Options::empty();
    options.insert(Options::ENABLE_TABLES);
    options.insert(Options::ENABLE_STRIKETHROUGH);
    let mut body = String::new();
    html::push_html(&mut body, Parser::new_ext(markdown, options));
    page(
        &format!("{job} / {slug}"),
        "../style.css",
        "<nav><a href=\"../index.html\">All runbooks</a></nav>\n",
        &body,
    )
}

/// An index page listing `(job, relative link)` entries grouped by job.
pub fn index_page(title: &str, entries: &[(String, String)]) -> Vec<u8> {
    let mut body = format!("<h1>{}</h1>\n", escape(title));
    let mut current: Option<&str> = None;
    for (job, link) in entries {
        if current != Some(job.as_str()) {
            if current.is_some() {
                body.push_str("</ul>\n");
            }
            body.push_str(&format!("<h2>{}</h2>\n<ul>\n", escape(job)));
            current = Some(job);
        }
        body.push_str(&format!(
            "<li><a href=\"{}/{}\">{}</a></li>\n",
            escape(job),
            escape(link),
            escape(link)
        ));
    }
    if current.is_some() {
        body.push_str("</ul>\n");
    } else {
        body.push_str("<p>None.</p>\n");
    }
    page(title, "style.css", "", &body)
}

/// A matcher for a `.dashboardignore` text (gitignore rules, paths relative to
/// `_prometheus/dashboards/`).
pub fn dashboard_ignore(text: &str) -> Result<ignore::gitignore::Gitignore, String> {
    let mut builder = ignore::gitignore::GitignoreBuilder::new("");
    for line in text.lines() {
        builder
            .add_line(None, line)
            .map_err(|e| format!("{DASHBOARD_IGNORE}: {e}"))?;
    }
    builder
        .build()
        .map_err(|e| format!("{DASHBOARD_IGNORE}: {e}"))
}

/// Whether `path` (relative to the dashboards folder) is hidden from the index.
pub fn is_ignored(matcher: &ignore::gitignore::Gitignore, path: &str) -> bool {
    matcher.matched_path_or_any_parents(path, false).is_ignore()
}
