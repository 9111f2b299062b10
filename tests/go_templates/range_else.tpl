{{ range keys "vars/job/clickhouse" }}{{ . }}{{ else }}no keys{{ end }}
{{ range $i, $k := keys "vars/job/clickhouse" }}{{ $i }}{{ else }}still none{{ end }}
{{ range slice .Labels 3 }}{{ . }}{{ else }}nothing after 3{{ end }}
{{ range .Labels }}{{ . }} {{ else }}never{{ end }}
