{{- $count := 0 -}}
{{- $csv := "" -}}
{{- range $i, $ip := split (get "maand/worker" "app_workers") "," -}}
{{- $count = add $count 1 -}}
{{- if $i }}{{ $csv = printf "%s;%s" $csv $ip }}{{ else }}{{ $csv = $ip }}{{ end -}}
{{- end -}}
count={{ $count }} csv={{ $csv }}
