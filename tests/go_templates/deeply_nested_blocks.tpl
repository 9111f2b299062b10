{{- range $i, $a := .Labels -}}
{{- with $a -}}
{{- if eq $i 0 -}}
{{- range split "x,y" "," -}}
{{ $a }}.{{ . }}{{ if eq . "x" }},{{ end }}
{{- end -}}
{{- else if eq $i 1 -}}
;{{ . }}
{{- else -}}
;{{ printf "%s#%d" . $i }}
{{- end -}}
{{- end -}}
{{- end }}
