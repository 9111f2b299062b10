{{ range $label := .Labels }}<{{ $label }}>{{ end }}
{{ range .Labels }}({{ . }}){{ end }}
