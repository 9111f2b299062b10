[{{ getOptional "vars/job/app" "log_level" }}]
[{{ getOptional "vars/job/app" "nope" }}]
[{{ getOptional "vars/job/clickhouse" "nope" }}]
[{{ getOptional "maand/job/clickhouse" "workers" }}]
[{{ getOptional "secrets/job/app" "missing_secret" }}]
{{ $level := getOptional "vars/job/app" "nope" }}{{ if eq $level "" }}{{ $level = "warn" }}{{ end }}level={{ $level }}
