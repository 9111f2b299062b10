{{ "loud" | upper }}
{{ get "vars/job/app" "log_level" | upper | printf "level=%s" }}
{{ .Labels | len }}
{{ 3 | add 4 }}
{{ "," | join .Labels }}
{{ get "vars/job/app" "threads" | trim | int | mul 2 }}
{{ "a-b-c" | printf "%s/%s" .Job }}
