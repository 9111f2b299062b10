tickTime={{ get "vars/job/zookeeper" "tick_time" }}
clientPort={{ get "maand/bucket" "zookeeper_port_client" }}
{{- range $index, $ip := split (get "maand/job/zookeeper" "workers") "," }}
server.{{ add $index 1 }}={{ $ip }}:{{ get "maand/bucket" "zookeeper_port_follower" }}:{{ get "maand/bucket" "zookeeper_port_election" }}
{{- end }}
