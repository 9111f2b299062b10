{{ with .Labels }}{{ index . 0 }} of {{ len . }}{{ end }}
{{ with split (get "maand/job/zookeeper" "workers") "," }}{{ range . }}{{ . }} {{ end }}{{ end }}
{{ with keys "vars/job/clickhouse" }}non-empty{{ else }}empty{{ end }}
