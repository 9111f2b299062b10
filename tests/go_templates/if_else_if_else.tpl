{{- $env := get "vars/bucket" "env" -}}
{{ if eq $env "dev" }}debug{{ else if eq $env "staging" }}verbose{{ else if eq $env "prod" }}quiet{{ else }}unknown{{ end }}
{{ if eq .Job "db" }}db{{ else if eq .Job "cache" }}cache{{ end }}|
{{ if gt (len .Labels) 5 }}many{{ else }}few{{ end }}
