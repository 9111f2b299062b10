{{ eq .Job "db" "cache" "app" }}
{{ eq .Job "db" "cache" }}
{{ if eq (get "vars/bucket" "env") "dev" "staging" }}non-prod{{ else }}prod{{ end }}
{{ eq 3 1 2 3 }}
{{ eq (int (get "maand/job/app" "workers_length")) 3 }}
{{ eq "" (getOptional "vars/job/app" "missing") }}
