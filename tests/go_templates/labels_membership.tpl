{{- $isZk := false -}}
{{- range .Labels }}{{ if eq . "zookeeper" }}{{ $isZk = true }}{{ end }}{{ end -}}
zookeeper label: {{ $isZk }}
{{ range $l := .Labels }}{{ if or (eq $l "kafka") (eq $l "app") }}{{ upper $l }} {{ end }}{{ end }}
