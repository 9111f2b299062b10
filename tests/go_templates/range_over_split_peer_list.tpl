peers:
{{- range $i, $peer := split (get "maand/job/app/worker/127.0.0.12" "peers") "," }}
  - id: {{ $i }}
    address: {{ $peer }}:{{ get "maand/bucket" "app_port_http" }}
{{- end }}
