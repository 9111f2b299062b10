//! Conversion of Go templates: lexer, parser and emitter, source in, tera out; and the
//! rendered output of converted templates against what Go 1.19's `text/template` printed
//! for the same template, data and KV (the expected strings were produced by Go).

use std::collections::BTreeMap;

use super::*;
use crate::templates::{render, KvSource, ReadScope, TemplateContext};

/// The tera text `source` converts to.
fn tera(source: &str) -> String {
    convert(source)
        .unwrap_or_else(|error| panic!("{source:?} failed: {error}"))
        .unwrap_or_else(|| panic!("{source:?} was not recognised as Go"))
}

fn refusal(source: &str) -> ConvertError {
    match convert(source) {
        Err(error) => error,
        Ok(result) => panic!("{source:?} was converted: {result:?}"),
    }
}

struct Kv(BTreeMap<(String, String), String>);

impl Kv {
    fn fixture() -> Kv {
        let entries = [
            ("vars/job/api", "cluster_name", "prod"),
            ("vars/job/api", "memory", "16384"),
            ("vars/job/api", "list", "a,b,c"),
            ("vars/job/api", "empty", ""),
            ("vars/job/api", "neg", "-7"),
            ("vars/job/api", "spaced", "  42 "),
            ("maand/bucket", "api_http_port", "8080"),
            ("secrets/job/api", "db_password", "s3cret"),
        ];
        Kv(entries
            .into_iter()
            .map(|(ns, key, value)| ((ns.to_string(), key.to_string()), value.to_string()))
            .collect())
    }
}

impl KvSource for Kv {
    fn get(&self, namespace: &str, key: &str) -> Option<String> {
        self.0
            .get(&(namespace.to_string(), key.to_string()))
            .cloned()
    }

    fn keys(&self, namespace: &str) -> Vec<String> {
        self.0
            .keys()
            .filter(|(ns, _)| ns == namespace)
            .map(|(_, key)| key.clone())
            .collect()
    }

    fn secret(&self, job: &str, key: &str) -> Result<Option<String>, String> {
        Ok(self.get(&format!("secrets/job/{job}"), key))
    }
}

fn render_converted(go_source: &str) -> String {
    let converted = convert(go_source)
        .unwrap_or_else(|error| panic!("{go_source:?} failed: {error}"))
        .unwrap_or_else(|| go_source.to_string());
    let ctx = TemplateContext {
        allocation_id: "alloc-1".to_string(),
        job: "api".to_string(),
        worker_ip: "127.0.0.5".to_string(),
        worker_id: "w-1".to_string(),
        labels: vec!["worker".to_string(), "api".to_string()],
        current_version: "1.1.0".to_string(),
        new_version: "1.2.0".to_string(),
        bucket_path: "/opt/worker/b1".to_string(),
        job_path: "/opt/worker/b1/jobs/api".to_string(),
    };
    let scope = ReadScope {
        job: "api",
        worker_ip: "127.0.0.5",
        upstream_jobs: &[],
    };
    render("t.tpl", &converted, &ctx, &scope, &Kv::fixture())
        .unwrap_or_else(|error| panic!("{go_source:?} converted to {converted:?} failed: {error}"))
}

/// Go template, and what Go printed for it.
const RENDERED_BY_GO: &[(&str, &str)] = &[
    ("ip={{ .WorkerIP }} job={{ .Job }} id={{.AllocationID}} cur={{ .CurrentVersion }} new={{ .NewVersion }} wid={{ .WorkerID }} bp={{ .BucketPath }} jp={{ .JobPath }}", "ip=127.0.0.5 job=api id=alloc-1 cur=1.1.0 new=1.2.0 wid=w-1 bp=/opt/worker/b1 jp=/opt/worker/b1/jobs/api"),
    ("{{ .Labels }}|{{ join .Labels \",\" }}|{{ $.WorkerData.WorkerIP }}", "[worker api]|worker,api|127.0.0.5"),
    ("{{ get \"vars/job/api\" \"cluster_name\" }}:{{ getOptional \"vars/job/api\" \"nope\" }}:{{ getSecret \"db_password\" }}", "prod::s3cret"),
    ("{{ range keys \"vars/job/api\" }}{{ . }},{{ end }}", "cluster_name,empty,list,memory,neg,spaced,"),
    ("{{ range $i, $v := split (get \"vars/job/api\" \"list\") \",\" }}{{ $i }}={{ $v }};{{ end }}", "0=a;1=b;2=c;"),
    ("{{ range $v := .Labels }}[{{ $v }}]{{ else }}none{{ end }}", "[worker][api]"),
    ("{{ range split \"\" \",\" }}x{{ . }}y{{ end }}", "xy"),
    ("{{ range (split (getOptional \"vars/job/api\" \"empty\") \",\") }}{{ if . }}yes{{ else }}empty{{ end }}{{ end }}", "empty"),
    ("{{ split \"a,b\" \",\" }} {{ true }} {{ 42 }} {{ -3 }}", "[a b] true 42 -3"),
    ("{{ div -7 2 }} {{ div 7 2 }} {{ add 1 2 }} {{ sub 1 5 }} {{ mul 6 7 }} {{ min 3 9 }} {{ max 3 9 }}", "-3 3 3 -4 42 3 9"),
    ("{{ $m := int (get \"vars/job/api\" \"memory\") }}{{ div $m 1024 }}GB {{ int (get \"vars/job/api\" \"spaced\") }} {{ int 5 }}", "16GB 42 5"),
    ("{{ printf \"%s-%d-%v-%q-%02d-%5s|%-4d|\" \"a\" 5 true \"q\" 7 \"r\" 3 }}", "a-5-true-\"q\"-07-    r|3   |"),
    ("{{ printf \"maand/worker/%s\" .WorkerIP }} {{ printf \"%d%%\" 50 }} {{ printf \"%v\" .Labels }}", "maand/worker/127.0.0.5 50% [worker api]"),
    ("{{ print 1 2 \"a\" 3 }} {{ print \"x\" }} {{ println \"a\" 1 }}", "1 2a3 x a 1\n"),
    ("{{ eq 1 1 }} {{ eq \"a\" \"b\" \"a\" }} {{ ne \"a\" \"b\" }} {{ lt 1 2 }} {{ le 2 2 }} {{ gt \"b\" \"a\" }} {{ ge 1 2 }}", "true true true true true true false"),
    ("{{ and 1 0 }} {{ and 1 2 }} {{ or 0 \"\" }} {{ or \"\" \"x\" }} {{ not 0 }} {{ not \"a\" }} {{ and .Labels \"z\" }}", "0 2  x true false z"),
    ("{{ len \"héllo\" }} {{ len .Labels }} {{ len (split \"a,b,c\" \",\") }}", "6 2 3"),
    ("{{ index .Labels 1 }} {{ index (split \"a,b\" \",\") 0 }} {{ index \"abc\" 0 }} {{ slice \"abcdef\" 1 3 }} {{ slice .Labels 1 }}", "api a 97 bc [api]"),
    ("{{ if eq .Job \"api\" }}api{{ else if eq .Job \"db\" }}db{{ else }}other{{ end }}", "api"),
    ("{{ if $x := getOptional \"vars/job/api\" \"nope\" }}set {{ $x }}{{ else }}unset{{ end }}", "unset"),
    ("{{ with get \"vars/job/api\" \"cluster_name\" }}cluster {{ . }}{{ end }}{{ with getOptional \"vars/job/api\" \"empty\" }}x{{ else }}no{{ end }}", "cluster prodno"),
    ("{{ with $c := get \"vars/job/api\" \"cluster_name\" }}{{ $c }}/{{ . }}{{ end }}", "prod/prod"),
    ("{{ $n := 0 }}{{ range .Labels }}{{ $n = add $n 1 }}{{ end }}{{ $n }}", "2"),
    ("{{ $x := \"a\" }}{{ if true }}{{ $x := \"b\" }}{{ $x }}{{ end }}{{ $x }}", "ba"),
    ("{{ $x := \"a\" }}{{ if true }}{{ $x = \"b\" }}{{ end }}{{ $x }}", "b"),
    ("a  {{- \" b \" -}}  c", "a b c"),
    ("a\n{{- /* comment */ -}}\nb {{/* another */}} c\n{{- 3 }}", "ab  c3"),
    ("line1\n  {{- if true }}\n  x\n  {{- end }}\ntail\n", "line1\n  x\ntail\n"),
    ("{{ 017 }} {{ 'a' }}", "15 97"),
    ("{{-3}}", "-3"),
    ("{{ define \"unit\" }}{{ if ge . 1024 }}{{ div . 1024 }}GB{{ else }}{{ . }}MB{{ end }}{{ end }}{{ template \"unit\" 2048 }} {{ template \"unit\" 512 }}", "2GB 512MB"),
    ("{{ block \"greet\" .Job }}hello {{ . }}{{ end }}!", "hello api!"),
    ("{{ define \"ctx\" }}{{ .WorkerIP }}/{{ $.Job }}{{ end }}{{ template \"ctx\" . }}", "127.0.0.5/api"),
    ("literal {{ \"{{\" }} braces {{ \"}}\" }} and {% raw %} {# x #}", "literal {{ braces }} and {% raw %} {# x #}"),
    ("{{ \"{{ $labels.instance }}\" }} end {", "{{ $labels.instance }} end {"),
    ("{{ range .Labels }}{{ if eq . \"api\" }}{{ break }}{{ end }}{{ . }}{{ end }}", "worker"),
    ("{{ range .Labels }}{{ if eq . \"worker\" }}{{ continue }}{{ end }}{{ . }}{{ end }}", "api"),
    ("{{ $parts := split \"x:y:z\" \":\" }}{{ index $parts 2 }}{{ len $parts }}", "z3"),
    ("{{ upper \"héllo\" }} {{ lower \"ABC\" }} {{ trim \"  x  \" }}", "HÉLLO abc x"),
    ("{{ \"a\" | printf \"%s!\" }} {{ .Job | upper }} {{ get \"vars/job/api\" \"list\" | split \",\" }}", "a! API [,]"),
    ("{{ printf \"%s\" (printf \"%d\" (add 1 2)) }}", "3"),
    ("{{ 0x1F }} {{ 'a' }} {{ 1_000 }} {{ 017 }}", "31 97 1000 15"),
    ("{{`raw \"string\"`}} {{ \"tab\\there\" }}", "raw \"string\" tab\there"),
    ("{{- range $i, $l := .Labels }}{{ if $i }}, {{ end }}{{ $l }}{{ end }}", "worker, api"),
    ("{{ range $i, $a := .Labels }}{{ range $j, $b := $.Labels }}{{ $i }}{{ $j }} {{ end }}{{ end }}", "00 01 10 11 "),
    ("{{ $s := \"\" }}{{ range .Labels }}{{ $s = printf \"%s+%s\" $s . }}{{ end }}{{ $s }}", "+worker+api"),
    ("{{ if and (ne .Job \"\") (eq (len .Labels) 2) }}both{{ end }}", "both"),
    ("{{ if or (eq .Job \"x\") (get \"vars/job/api\" \"cluster_name\") }}or-ok{{ end }}", "or-ok"),
    ("{{ eq (index .Labels 0) \"worker\" }} {{ not (eq 1 2) }}", "true true"),
    ("{{ printf \"%-10s|%10s|%.2s\" \"ab\" \"cd\" \"efgh\" }}", "ab        |        cd|ef"),
    ("{{ printf \"%x %X %o %b %c %U\" 255 255 8 5 65 9731 }}", "ff FF 10 101 A U+2603"),
    ("x{{ if false }}no{{ end }}y", "xy"),
];

#[test]
fn converted_templates_render_what_go_renders() {
    let mut failures = Vec::new();
    for (source, expected) in RENDERED_BY_GO {
        let got = std::panic::catch_unwind(|| render_converted(source))
            .unwrap_or_else(|_| "<panicked>".to_string());
        if got != *expected {
            failures.push(format!(
                "{source:?}\n  go:   {expected:?}\n  tera: {got:?}\n  via:  {:?}",
                convert(source)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn dot_fields_become_context_variables() {
    assert_eq!(
        tera("ip={{ .WorkerIP }} v={{.NewVersion}} {{ $.WorkerData.WorkerID }}"),
        "ip={{ worker_ip }} v={{ new_version }} {{ worker_id }}"
    );
}

#[test]
fn kv_functions_become_named_argument_calls() {
    assert_eq!(
        tera(r#"{{ get "vars/job/api" "a" }}{{ getOptional "ns" "b" }}{{ getSecret "c" }}"#),
        r#"{{ get(ns="vars/job/api", key="a") }}{{ get_optional(ns="ns", key="b") }}{{ get_secret(key="c") }}"#
    );
    assert_eq!(
        tera("{{ scrapeConfigs }}\n{{ ruleFiles }}"),
        "{{ scrape_configs() }}\n{{ rule_files() }}"
    );
}

#[test]
fn calls_on_constants_are_computed_ahead() {
    assert_eq!(
        tera(
            r#"{{ .Job }}{{ printf "%05d" 7 }} {{ split "a,b" "," }} {{ div -7 2 }} {{ not "" }}"#
        ),
        "{{ job }}00007 [a b] -3 true"
    );
}

#[test]
fn printf_of_plain_verbs_becomes_concatenation() {
    assert_eq!(
        tera(r#"{{ get (printf "maand/worker/%s" .WorkerIP) "x" }}"#),
        r#"{{ get(ns="maand/worker/" ~ worker_ip, key="x") }}"#
    );
    assert_eq!(
        tera(r#"{{ printf "%05d" .Job }}"#),
        r#"{{ go_printf(format="%05d", a0=job) }}"#
    );
}

#[test]
fn lists_are_printed_the_go_way() {
    assert_eq!(tera("{{ .Labels }}"), "{{ labels | go_fmt }}");
}

#[test]
fn variables_get_unique_names_and_outer_assignments_use_set_global() {
    assert_eq!(
        tera("{{ $n := 0 }}{{ range .Labels }}{{ $n := 1 }}{{ $n }}{{ end }}{{ range .Labels }}{{ $n = add $n 1 }}{{ end }}{{ $n }}"),
        "{% set n = 0 %}{% for item in labels %}{% set n_2 = 1 %}{{ n_2 }}{% endfor %}\
         {% for item_2 in labels %}{% set_global n = go_add(a=n, b=1) %}{% endfor %}{{ n }}"
    );
}

#[test]
fn a_variable_assigned_from_a_nested_range_is_kept_global() {
    assert_eq!(
        tera("{{ range $i, $v := .Labels }}{{ range $.Labels }}{{ $i = 7 }}{{ $v = . }}{{ end }}{{ $i }}{{ $v }}{{ end }}"),
        "{% for v_item in labels %}{% set_global v = v_item %}{% set_global i = loop.index0 %}\
         {% for item in labels %}{% set_global i = 7 %}{% set_global v = item %}{% endfor %}{{ i }}{{ v }}{% endfor %}"
    );
}

#[test]
fn the_dot_of_a_template_called_without_argument_prints_no_value() {
    assert_eq!(
        tera(r#"{{ define "d" }}[{{ . }}]{{ end }}{{ template "d" }}{{ .Job }}"#),
        "[<no value>]{{ job }}"
    );
}

#[test]
fn range_with_index_and_else() {
    assert_eq!(
        tera("{{ range $i, $v := .Labels }}{{ $i }}{{ $v }}{{ else }}none{{ end }}"),
        "{% for v in labels %}{% set i = loop.index0 %}{{ i }}{{ v }}{% else %}none{% endfor %}"
    );
}

#[test]
fn else_if_chains_become_elif() {
    assert_eq!(
        tera(r#"{{ if eq .Job "a" }}A{{ else if not .Labels }}B{{ else }}C{{ end }}"#),
        r#"{% if job == "a" %}A{% elif not labels %}B{% else %}C{% endif %}"#
    );
}

#[test]
fn with_binds_the_dot_to_a_variable() {
    assert_eq!(
        tera(r#"{{ with getOptional "ns" "k" }}[{{ . }}]{{ else }}-{{ end }}"#),
        r#"{% set value = get_optional(ns="ns", key="k") %}{% if value %}[{{ value }}]{% else %}-{% endif %}"#
    );
}

#[test]
fn defined_templates_are_expanded_at_each_call() {
    assert_eq!(
        tera(r#"{{ define "u" }}<{{ . }}>{{ end }}{{ template "u" .Job }}{{ template "u" 5 }}"#),
        r#"<{{ job }}><5>"#
    );
}

#[test]
fn trim_markers_are_applied_to_the_text() {
    assert_eq!(tera("a \n {{- .Job -}} \n b"), "a{{ job }}b");
    assert_eq!(tera("a {{- /* note */ -}} b{{ .Job }}"), "ab{{ job }}");
}

#[test]
fn text_with_tera_delimiters_is_kept_literal() {
    assert_eq!(
        tera("{{ .Job }} {{ \"{{\" }}x{%"),
        "{{ job }}{% raw %} {{x{%{% endraw %}"
    );
    assert_eq!(
        tera("{{ .Job }}{# endraw"),
        "{{ job }}{% raw %}{{% endraw %}# endraw"
    );
}

#[test]
fn tera_files_and_files_without_actions_are_left_alone() {
    assert_eq!(convert("plain text").unwrap(), None);
    assert_eq!(
        convert("echo ${#ARGS[@]}").unwrap().as_deref(),
        Some("{% raw %}echo ${#ARGS[@]}{% endraw %}")
    );
    assert_eq!(convert("{{ worker_ip }}").unwrap(), None);
    assert_eq!(convert("{% if job %}x{% endif %}").unwrap(), None);
}

#[test]
fn converting_a_converted_file_changes_nothing() {
    for (source, _) in RENDERED_BY_GO {
        if let Ok(Some(converted)) = convert(source) {
            assert_eq!(convert(&converted), Ok(None), "{source:?} -> {converted:?}");
            assert!(!is_go_syntax(&converted));
        }
    }
}

#[test]
fn go_syntax_is_recognised() {
    assert!(is_go_syntax("{{ .WorkerIP }}"));
    assert!(is_go_syntax(r#"{{ get "a" "b" }}"#));
    assert!(!is_go_syntax("{{ worker_ip }}"));
    assert!(!is_go_syntax("no actions"));
    assert!(!is_go_syntax("echo ${#ARGS[@]}"));
}

#[test]
fn invalid_in_both_languages_is_an_error_at_the_go_position() {
    let error = refusal("line\n  {{ range $x := .Labels }}");
    assert_eq!((error.line, error.col), (2, 6));
    assert!(error.message.contains("not valid tera either"), "{error}");
    let error = refusal("{{ nosuch 1 }}");
    assert_eq!(error.to_string().split(": ").next(), Some("1:4"));
}

#[test]
fn unconvertible_constructs_are_refused_with_their_location() {
    let cases = [
        ("{{ .BucketID }}", "1:4: .BucketID"),
        ("{{ range 5 }}x{{ end }}", "1:4: range"),
        ("\n{{ . }}", "2:4: {{ . }}"),
        ("{{ html \"x\" }}", "1:4: html"),
        (
            r#"{{ define "r" }}{{ template "r" . }}{{ end }}{{ template "r" . }}"#,
            "1:20: template \"r\"",
        ),
        ("{{ add \"1\" 2 }}", "1:4: add"),
        ("{{ len 3 }}", "1:4: len"),
        ("{{ add 1.5 2 }}", "1:8: number"),
    ];
    for (source, expected) in cases {
        let error = refusal(source).to_string();
        assert!(error.starts_with(expected), "{source:?}: {error}");
    }
}

#[test]
fn lexer_reads_go_literals() {
    assert_eq!(lexer::parse_integer("0x1F"), Some(31));
    assert_eq!(lexer::parse_integer("-0o17"), Some(-15));
    assert_eq!(lexer::parse_integer("017"), Some(15));
    assert_eq!(lexer::parse_integer("1_000"), Some(1000));
    assert_eq!(lexer::parse_integer("0b101"), Some(5));
    assert_eq!(lexer::parse_integer("-9223372036854775808"), Some(i64::MIN));
    assert_eq!(lexer::parse_integer("1.5"), None);
    assert_eq!(lexer::parse_integer("08"), None);
    assert_eq!(
        lexer::unquote(r"a\tb\x41\u00e9\101", '"').as_deref(),
        Some("a\tbAéA")
    );
    assert_eq!(lexer::unquote(r"\'", '"'), None);
}

#[test]
fn lexer_marks_trim_and_comments() {
    let lexed = lexer::lex("a \n{{- .X -}}\n b{{/* c */}}").unwrap();
    let kinds: Vec<_> = lexed.tokens.into_iter().map(|token| token.kind).collect();
    assert_eq!(
        kinds,
        vec![
            lexer::Tok::Text("a".to_string()),
            lexer::Tok::LeftDelim,
            lexer::Tok::Field("X".to_string()),
            lexer::Tok::RightDelim,
            lexer::Tok::Text("b".to_string()),
        ]
    );
}

#[test]
fn parser_checks_functions_variables_and_ends() {
    let parse = |source: &str| lexer::lex(source).and_then(|lexed| parser::parse(lexed.tokens));
    assert!(parse("{{ $x }}")
        .unwrap_err()
        .message
        .contains("undefined variable"));
    assert!(parse("{{ foo }}")
        .unwrap_err()
        .message
        .contains("not defined"));
    assert!(parse("{{ if 1 }}").unwrap_err().message.contains("{{end}}"));
    assert!(parse("{{ break }}")
        .unwrap_err()
        .message
        .contains("outside"));
    assert!(parse(r#"{{ "a" | "b" }}"#)
        .unwrap_err()
        .message
        .contains("non executable"));
    let tree = parse(r#"{{ define "x" }}a{{ end }}{{ block "y" . }}b{{ end }}"#).unwrap();
    assert_eq!(tree.defines.keys().collect::<Vec<_>>(), ["x", "y"]);
}
