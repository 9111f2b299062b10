{{ template "late" 3 }}
{{ define "late" }}late:{{ add . 1 }}{{ end }}
end
