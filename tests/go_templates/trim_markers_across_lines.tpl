begin
{{- /* eats the newline before */ -}}

   
{{- .Job -}}


	end
items:
{{- range split "a,b,c" "," }}
  - {{ . }}
{{- end }}
done {{- "" }}   x   {{- "" -}}   y
