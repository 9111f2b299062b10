{{ printf "%s-%s"
   .Job
   .WorkerIP }}
{{ if
   eq .Job "app" }}multi-line if{{ end }}
