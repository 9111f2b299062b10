{{ if eq (get "vars/bucket" "env") "prod" }}production{{ end }}
{{ if ne (get "maand/job/app" "workers_length") "0" }}has workers{{ end }}
{{ if eq (getOptional "maand/job/clickhouse" "workers") "" }}no clickhouse workers{{ end }}
{{ if eq (len (split (get "maand/job/app" "workers") ",")) (int (get "maand/job/app" "workers_length")) }}consistent{{ end }}
