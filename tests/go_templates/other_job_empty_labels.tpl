{{- /* rendered with other_job_empty_labels.json: job postgres, no labels */ -}}
job={{ .Job }} worker={{ .WorkerIP }}
labels={{ .Labels }} count={{ len .Labels }} joined=[{{ join .Labels "," }}]
{{ range .Labels }}{{ . }}{{ else }}no labels{{ end }}
{{ if .Labels }}labelled{{ else }}unlabelled{{ end }}
memory={{ get "vars/job/postgres" "memory" }}
index={{ get (printf "maand/worker/%s" .WorkerIP) "postgres_allocation_index" }}
password={{ getSecret "replication_password" }}
{{ with getOptional "vars/job/postgres" "archive_command" }}archive={{ . }}{{ else }}no archiving{{ end }}
