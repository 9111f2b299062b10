{{- $count := 0 -}}
{{- $pairs := "" -}}
{{- range $a := split "x,y" "," -}}
{{- range $b := split "1,2,3" "," -}}
{{- $count = add $count 1 -}}
{{- $pairs = printf "%s%s%s " $pairs $a $b -}}
{{- end -}}
{{- end -}}
count={{ $count }} pairs={{ $pairs }}
