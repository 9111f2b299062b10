{{ range .Labels }}{{ end }}{{ if .BucketPath }}{{ end }}done
