{{- define "static" }}static text{{ end -}}
{{- define "shows_dot" }}[{{ . }}]{{ end -}}
{{ template "static" }}
{{ template "shows_dot" }}
{{ template "shows_dot" "given" }}
