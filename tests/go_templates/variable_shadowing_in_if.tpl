{{- $x := "outer" -}}
{{- if true -}}
{{- $x := "inner" -}}
in-if: {{ $x }}
{{ end -}}
after-if: {{ $x }}
{{ if true }}{{ $x = "assigned" }}{{ end -}}
after-assign: {{ $x }}
{{ range split "1,2" "," }}{{ $x := . }}[{{ $x }}]{{ end }} {{ $x }}
