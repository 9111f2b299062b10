services:
  {{ .Job }}:
    image: "example/{{ .Job }}:{{ .NewVersion }}"
    network_mode: host
    restart: always
    environment:
      CLUSTER: "{{ get "vars/job/app" "cluster_name" }}"
      LOG_LEVEL: "{{ or (getOptional "vars/job/app" "log_level") "info" }}"
      WORKER_INDEX: "{{ get "maand/job/app/worker/127.0.0.12" "allocation_index" }}"
      REPLICAS: {{ get "vars/bucket/job/app" "replicas" }}
      FEATURES: "{{ range $i, $f := split (get "vars/bucket/job/app" "feature_flags") "," }}{{ if $i }} {{ end }}--enable-{{ $f }}{{ end }}"
{{- if ne .CurrentVersion .NewVersion }}
      UPGRADING_FROM: "{{ .CurrentVersion }}"
{{- end }}
    volumes:
      - {{ .JobPath }}/data:/data
