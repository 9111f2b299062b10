<clickhouse>
    <keeper_server>
        <server_id>{{ add (int (get (printf "maand/worker/%s" .WorkerIP) "clickhouse_keeper_allocation_index")) 1 }}</server_id>
        <raft_configuration>
{{- range $i, $ip := split (get "maand/worker" "clickhouse_keeper_workers") "," }}
            <server>
                <id>{{ add $i 1 }}</id>
                <hostname>{{ $ip }}</hostname>
                <port>{{ get "maand/bucket" "clickhouse_keeper_port_raft" }}</port>
            </server>
{{- end }}
        </raft_configuration>
    </keeper_server>
    <macros>
        <replica>{{ .WorkerIP }}</replica>
        <shard>{{ printf "%02d" 1 }}</shard>
    </macros>
</clickhouse>
