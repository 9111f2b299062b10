

   {{- /* everything before this is trimmed */ -}}
body {{ .Job }}
{{- range .Labels }}
{{ . }}
{{- else -}}
none
{{- end -}}



