storage "raft" {
  path    = "{{ .JobPath }}/data"
  node_id = "{{ .Job }}-{{ get "maand/job/app/worker/127.0.0.12" "allocation_index" }}"
{{- range split (get "maand/job/app" "workers") "," }}
{{- if ne . $.WorkerIP }}
  retry_join {
    leader_api_addr = "https://{{ . }}:8200"
  }
{{- end }}
{{- end }}
}
api_addr     = "https://{{ .WorkerIP }}:8200"
cluster_addr = "https://{{ .WorkerIP }}:8201"
