first line
{{- .Job -}}
  second {{ .WorkerIP }}
{{ range split "a,b" "," -}}
  item {{ . }}
{{ end -}}
last
