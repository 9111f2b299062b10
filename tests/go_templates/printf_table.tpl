{{ range $i, $ip := split (get "maand/worker" "app_workers") "," -}}
{{ printf "%-4d%-16s%s" $i $ip (printf "node-%02d" (add $i 1)) }}
{{ end -}}
