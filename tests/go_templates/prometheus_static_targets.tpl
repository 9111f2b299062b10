scrape_configs:
  - job_name: {{ printf "%q" .Job }}
    static_configs:
      - targets:
{{- range split (get "maand/job/app" "workers") "," }}
          - {{ printf "%q" (printf "%s:%s" . (get "maand/bucket" "app_port_admin")) }}
{{- end }}
        labels:
          env: {{ get "vars/bucket" "env" }}
