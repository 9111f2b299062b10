{{ not "" }} {{ not "x" }} {{ not 0 }} {{ not 5 }} {{ not .Labels }} {{ not (keys "vars/job/clickhouse") }} {{ not true }}
{{ if not (getOptional "vars/job/app" "missing") }}missing{{ end }}
