{{- $nodeId := add (int (get (printf "maand/worker/%s" .WorkerIP) "kafka_broker_allocation_index")) 100 -}}
services:
  kafka-broker:
    hostname: "{{ .WorkerIP }}"
    environment:
      KAFKA_NODE_ID: {{ $nodeId }}
      KAFKA_CONTROLLER_QUORUM_VOTERS: '{{- range $index, $ip := split (get "maand/worker" "kafka_controller_workers") "," -}}{{ if $index }},{{ end }}{{ add $index 1 }}@{{ $ip }}:29093{{- end -}}'
      KAFKA_ADVERTISED_LISTENERS: 'PLAINTEXT://{{ .WorkerIP }}:29092'
      KAFKA_HEAP_OPTS: "-Xms{{ div (int (get "vars/job/app" "memory")) 2048 }}G"
