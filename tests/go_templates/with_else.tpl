{{ with getOptional "vars/job/app" "log_level" }}level={{ . }}{{ else }}level=default{{ end }}
{{ with getOptional "vars/job/app" "missing" }}has={{ . }}{{ else }}missing uses default{{ end }}
{{ with get "vars/bucket" "zero" }}zero-string={{ . }}{{ end }}
{{ with 0 }}int zero{{ else }}int zero is empty{{ end }}
{{ with $x := get "vars/bucket" "region" }}region={{ $x }}{{ end }}
