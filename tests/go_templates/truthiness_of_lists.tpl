split of empty: {{ if split "" "," }}T{{ else }}F{{ end }} len={{ len (split "" ",") }}
empty keys: {{ if keys "vars/job/clickhouse" }}T{{ else }}F{{ end }}
some keys: {{ if keys "vars/bucket" }}T{{ else }}F{{ end }}
empty slice: {{ if slice .Labels 0 0 }}T{{ else }}F{{ end }}
optional workers: {{ if getOptional "maand/job/clickhouse" "workers" }}T{{ else }}F{{ end }}
