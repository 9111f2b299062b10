{{ range keys "maand/worker/127.0.0.99" }}{{ . }}{{ end }}
