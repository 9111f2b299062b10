{{ if and .Labels (eq .Job "app") }}labelled app{{ end }}
{{ if or (eq .Job "db") (gt (len .Labels) 2) }}db or many labels{{ end }}
{{ if and (ge (int (get "vars/job/app" "memory")) 4096) (not (getOptional "vars/job/app" "missing")) }}big{{ end }}
{{ if or (getOptional "vars/job/app" "missing") (getOptional "vars/job/app" "empty") }}any{{ else }}none{{ end }}
