scope: {{ get "vars/job/app" "cluster_name" }}
name: {{ .Job }}-{{ get (printf "maand/worker/%s" .WorkerIP) "postgres_allocation_index" }}
zookeeper:
  hosts: [{{ range $i, $ip := split (get "maand/job/zookeeper" "workers") "," }}{{ if $i }}, {{ end }}'{{ $ip }}:{{ get "maand/bucket" "zookeeper_port_client" }}'{{ end }}]
postgresql:
  listen: {{ .WorkerIP }}:5432
  authentication:
    superuser:
      password: {{ printf "%q" (getSecret "db_password") }}
