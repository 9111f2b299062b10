{{ range .Labels }}{{ $.Job }}:{{ . }} {{ end }}
{{ with "inner" }}{{ . }} on {{ $.WorkerIP }}{{ end }}
{{ range $i, $l := .Labels }}{{ $i }}/{{ len $.Labels }} {{ end }}
