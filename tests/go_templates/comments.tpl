a{{/* a comment */}}b
c {{- /* trimmed comment */ -}} d
{{/* a comment
spanning
lines */}}
e{{- /* left trim only */}} f
