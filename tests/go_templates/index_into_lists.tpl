{{ index .Labels 1 }}
{{ index (split "a:b,c:d" ",") 1 }}
{{ index (split (index (split "a:b,c:d" ",") 0) ":") 1 }}
{{- $workers := split (get "maand/worker" "clickhouse_workers") "," }}
{{ index $workers 0 }} and {{ index $workers 1 }}
{{ index (keys "vars/bucket") 0 }}
