before
{{ block "section" . }}job={{ .Job }} worker={{ .WorkerIP }}{{ end }}
between
{{ template "section" . }}
after
