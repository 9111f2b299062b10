{{- $me := .WorkerIP -}}
{{- $seen := false -}}
{{- range $i, $ip := split (get "maand/worker" "app_workers") "," -}}
{{- if eq $ip $me -}}
{{- $seen = true -}}
me({{ $i }})
{{- else -}}
other({{ $i }})
{{- end }}
{{ end -}}
seen={{ $seen }}
