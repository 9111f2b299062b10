{{ range split "1,2" "," }}{{ block "item" . }}item-{{ . }}{{ end }} {{ end }}
