{{ keys "vars/bucket" }}
{{ join (keys "maand/worker/127.0.0.12/tags") "," }}
{{ len (keys "vars/job/app") }}
{{ range keys "secrets/job/app" }}{{ . }} {{ end }}
