{{- define "kv_line" -}}
{{- $key := . -}}
{{ $key }}={{ get "vars/job/app" $key }}
{{- end -}}
{{- range keys "vars/job/app" }}
{{- if ne . "quoted" }}
{{ template "kv_line" . }}
{{- end }}
{{- end }}
