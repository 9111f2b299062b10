frontend pg
    bind *:5000
    default_backend pg_primary

backend pg_primary
    option httpchk
{{- range $i, $ip := split (get "maand/job/postgres" "workers") "," }}
    server pg{{ printf "%02d" (add $i 1) }} {{ $ip }}:5432 maxconn {{ div (int (get "vars/job/postgres" "max_connections")) 2 }} check port 8008
{{- end }}
