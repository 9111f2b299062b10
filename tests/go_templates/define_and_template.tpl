{{- define "endpoint" -}}
http://{{ . }}:{{ get "maand/bucket" "app_port_http" }}
{{- end -}}
{{- define "header" }}# {{ .Job }} on {{ .WorkerIP }}{{ end -}}
{{ template "header" . }}
self: {{ template "endpoint" .WorkerIP }}
{{ range split (get "maand/job/app/worker/127.0.0.12" "peers") "," -}}
peer: {{ template "endpoint" . }}
{{ end -}}
