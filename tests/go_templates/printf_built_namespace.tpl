{{- $ns := printf "maand/worker/%s" .WorkerIP -}}
index={{ get $ns "app_allocation_index" }}
broker={{ get (printf "maand/worker/%s" .WorkerIP) "kafka_broker_allocation_index" }}
alloc={{ get (printf "maand/job/%s/worker/%s" .Job .WorkerIP) "version" }}
vars={{ get (printf "vars/job/%s" .Job) "cluster_name" }}
