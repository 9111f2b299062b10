upstream {{ .Job }}_backend {
{{- range $i, $ip := split (get "maand/worker" "app_workers") "," }}
    server {{ $ip }}:{{ get "maand/bucket" "app_port_http" }}{{ if eq $ip $.WorkerIP }} backup{{ end }};
{{- end }}
}
server {
    listen {{ .WorkerIP }}:80;
    server_name {{ lower (printf "%s.%s.example" .Job (get "vars/bucket" "region")) }};
}
