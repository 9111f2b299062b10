{{- $list := split (get "maand/worker" "zookeeper_workers") "," -}}
{{- $last := sub (len $list) 1 -}}
[{{ range $i, $ip := $list }}"{{ $ip }}"{{ if lt $i $last }}, {{ end }}{{ end }}]
{{ range $i, $ip := $list }}{{ if eq $i 0 }}first={{ $ip }} {{ end }}{{ if eq $i $last }}last={{ $ip }}{{ end }}{{ end }}
