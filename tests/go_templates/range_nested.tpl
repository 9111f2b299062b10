{{- range $i, $a := split "a,b" "," -}}
{{- range $j, $b := split "1,2,3" "," -}}
{{ $i }}{{ $j }}:{{ $a }}{{ $b }} {{ end }}
{{ end -}}
