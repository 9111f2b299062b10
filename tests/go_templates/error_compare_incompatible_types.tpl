{{ if lt "a" 1 }}x{{ end }}
