{{- $port := get "maand/bucket" "app_port_http" -}}
{{- $host := .WorkerIP -}}
listen {{ $host }}:{{ $port }}
{{- $port = get "maand/bucket" "app_port_admin" }}
admin {{ $host }}:{{ $port }}
{{ $n := 5 }}{{ $n = add $n 1 }}n={{ $n }}
