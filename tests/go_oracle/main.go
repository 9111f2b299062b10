// Command go_oracle renders Go text/template files the way the Go maand renders job `.tpl`
// files at deploy time, so maand-rs tests can compare the Go->tera converter's output with
// the real text/template byte for byte.
//
// Input (stdin): a JSON array of {"name", "template", "fixture"} where fixture is
//
//	{"context": {"AllocationID", "Job", "CurrentVersion", "NewVersion", "WorkerIP",
//	             "WorkerID", "Labels", "BucketPath", "JobPath"},
//	 "kv": {namespace: {key: value}},
//	 "secrets": {key: value},            // the namespace secrets/job/<Job>
//	 "upstream_jobs": [job]}             // jobs the allocation's commands demand
//
// Output (stdout): a JSON array, in input order, of {"name", "output"} or {"name", "error"}.
// A parse error, an execution error or a panic of a function is an error.
//
// The func map follows the Go maand's deploy/templates.go: the same names, argument and
// result types, and the same panics (missing key, disallowed namespace, bad integer). The
// one deliberate difference: `keys` returns the keys sorted, where the Go maand returns them
// in Go map order (random from one run to the next).
//
// Standard library only: it builds offline with `go build`.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/template"
)

// WorkerData mirrors the Go maand's worker.json struct; AllocationData embeds it, so its
// fields are promoted (`.WorkerIP`, `.Labels`, ...) exactly as in the Go maand.
type WorkerData struct {
	BucketID  string
	WorkerID  string
	WorkerIP  string
	Labels    []string
	UpdateSeq int
}

// AllocationData mirrors the Go maand's template dot context.
type AllocationData struct {
	AllocationID   string
	Job            string
	CurrentVersion string
	NewVersion     string
	WorkerData
	BucketPath string
	JobPath    string
}

type fixtureContext struct {
	AllocationID   string
	Job            string
	CurrentVersion string
	NewVersion     string
	WorkerIP       string
	WorkerID       string
	Labels         []string
	BucketPath     string
	JobPath        string
}

type fixture struct {
	Context      fixtureContext               `json:"context"`
	KV           map[string]map[string]string `json:"kv"`
	Secrets      map[string]string            `json:"secrets"`
	UpstreamJobs []string                     `json:"upstream_jobs"`
}

type request struct {
	Name     string  `json:"name"`
	Template string  `json:"template"`
	Fixture  fixture `json:"fixture"`
}

type response struct {
	Name   string  `json:"name"`
	Output *string `json:"output,omitempty"`
	Error  *string `json:"error,omitempty"`
}

var errNotFound = errors.New("key not found")

// store is the KV an allocation sees: plain namespaces plus its job's secrets.
type store struct {
	job     string
	kv      map[string]map[string]string
	secrets map[string]string
	allowed map[string]bool
}

func secretNamespace(job string) string { return "secrets/job/" + job }

// allowedNamespaces is maand's read rule for the allocation of job on workerIP.
func allowedNamespaces(job, workerIP string, upstream []string) map[string]bool {
	allowed := map[string]bool{}
	for _, ns := range []string{
		"maand/bucket",
		"vars/bucket",
		"maand/worker",
		"maand/worker/" + workerIP,
		"maand/worker/" + workerIP + "/tags",
		"maand/job/" + job,
		"vars/bucket/job/" + job,
		"vars/job/" + job,
		secretNamespace(job),
		"maand/job/" + job + "/worker/" + workerIP,
	} {
		allowed[ns] = true
	}
	for _, up := range upstream {
		if up == "" {
			continue
		}
		allowed["maand/job/"+up] = true
		allowed["vars/job/"+up] = true
		allowed[secretNamespace(up)] = true
	}
	return allowed
}

func (s *store) namespace(ns string) map[string]string {
	if ns == secretNamespace(s.job) {
		return s.secrets
	}
	return s.kv[ns]
}

func (s *store) lookup(ns, key string) (string, error) {
	value, ok := s.namespace(ns)[key]
	if !ok {
		return "", fmt.Errorf("%w: %s/%s", errNotFound, ns, key)
	}
	return value, nil
}

func (s *store) mustBeAllowed(ns string) {
	if !s.allowed[ns] {
		panic(fmt.Sprintf("%s namespace is not available for job %s", ns, s.job))
	}
}

func (s *store) funcMap() template.FuncMap {
	return template.FuncMap{
		"get": func(ns, key string) string {
			s.mustBeAllowed(ns)
			value, err := s.lookup(ns, key)
			if err != nil {
				panic(err)
			}
			return value
		},
		"getOptional": func(ns, key string) string {
			s.mustBeAllowed(ns)
			value, err := s.lookup(ns, key)
			if err != nil {
				return ""
			}
			return value
		},
		"keys": func(ns string) []string {
			s.mustBeAllowed(ns)
			keys := make([]string, 0)
			for key := range s.namespace(ns) {
				keys = append(keys, key)
			}
			sort.Strings(keys)
			return keys
		},
		"getSecret": func(key string) string {
			value, err := s.lookup(secretNamespace(s.job), key)
			if err != nil {
				panic(err)
			}
			return value
		},
		"split": strings.Split,
		"trim":  strings.TrimSpace,
		"upper": strings.ToUpper,
		"lower": strings.ToLower,
		"join":  strings.Join,
		"add":   func(a, b int) int { return a + b },
		"sub":   func(a, b int) int { return a - b },
		"mul":   func(a, b int) int { return a * b },
		"div":   func(a, b int) int { return a / b },
		"min": func(a, b int) int {
			if a < b {
				return a
			}
			return b
		},
		"max": func(a, b int) int {
			if a > b {
				return a
			}
			return b
		},
		"int": func(v any) int {
			switch n := v.(type) {
			case int:
				return n
			case int64:
				return int(n)
			case string:
				i, err := strconv.Atoi(strings.TrimSpace(n))
				if err != nil {
					panic(err)
				}
				return i
			default:
				panic("int: expected string or integer")
			}
		},
	}
}

func render(req request) (out string, err error) {
	defer func() {
		if recovered := recover(); recovered != nil {
			err = fmt.Errorf("panic: %v", recovered)
		}
	}()
	f := req.Fixture
	s := &store{
		job:     f.Context.Job,
		kv:      f.KV,
		secrets: f.Secrets,
		allowed: allowedNamespaces(f.Context.Job, f.Context.WorkerIP, f.UpstreamJobs),
	}
	labels := f.Context.Labels
	if labels == nil {
		labels = []string{}
	}
	data := AllocationData{
		AllocationID:   f.Context.AllocationID,
		Job:            f.Context.Job,
		CurrentVersion: f.Context.CurrentVersion,
		NewVersion:     f.Context.NewVersion,
		WorkerData: WorkerData{
			WorkerID: f.Context.WorkerID,
			WorkerIP: f.Context.WorkerIP,
			Labels:   labels,
		},
		BucketPath: f.Context.BucketPath,
		JobPath:    f.Context.JobPath,
	}
	tmpl, err := template.New("template").Funcs(s.funcMap()).Parse(req.Template)
	if err != nil {
		return "", fmt.Errorf("parse: %w", err)
	}
	var b strings.Builder
	if err := tmpl.Execute(&b, data); err != nil {
		return "", fmt.Errorf("execute: %w", err)
	}
	return b.String(), nil
}

func main() {
	input, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "go_oracle: reading stdin:", err)
		os.Exit(2)
	}
	var requests []request
	if err := json.Unmarshal(input, &requests); err != nil {
		fmt.Fprintln(os.Stderr, "go_oracle: stdin is not a JSON array of {name, template, fixture}:", err)
		os.Exit(2)
	}
	responses := make([]response, 0, len(requests))
	for _, req := range requests {
		out, err := render(req)
		res := response{Name: req.Name}
		if err != nil {
			msg := err.Error()
			res.Error = &msg
		} else {
			res.Output = &out
		}
		responses = append(responses, res)
	}
	encoder := json.NewEncoder(os.Stdout)
	encoder.SetEscapeHTML(false)
	if err := encoder.Encode(responses); err != nil {
		fmt.Fprintln(os.Stderr, "go_oracle: writing stdout:", err)
		os.Exit(2)
	}
}
