{{- define "who" -}}
{{ .Job }}@{{ .WorkerIP }} ({{ .NewVersion }})
{{- end -}}
{{- define "wrap" -}}
<{{ template "who" . }}>
{{- end -}}
{{ template "wrap" . }}
{{ template "who" $ }}
