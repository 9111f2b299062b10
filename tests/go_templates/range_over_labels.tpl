{{- range $i, $label := .Labels -}}
{{- if $i }}, {{ end -}}
"{{ $label }}"
{{- end }}
{{ range .Labels }}{{ if eq . "zookeeper" }}has zookeeper{{ end }}{{ end }}
