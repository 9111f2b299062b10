[tags]
{{ range keys "maand/worker/127.0.0.12/tags" -}}
{{ . }} = "{{ get "maand/worker/127.0.0.12/tags" . }}"
{{ end -}}
[app]
{{ range $k := keys "vars/job/app" }}{{ $k }};{{ end }}
