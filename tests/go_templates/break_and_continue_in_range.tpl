{{ range $i, $ip := split (get "maand/worker" "app_workers") "," -}}
{{ if eq $i 1 }}{{ continue }}{{ end -}}
{{ if eq $i 2 }}{{ break }}{{ end -}}
{{ $ip }}
{{ end -}}
