empty string: {{ if "" }}T{{ else }}F{{ end }}
space: {{ if " " }}T{{ else }}F{{ end }}
word false: {{ if "false" }}T{{ else }}F{{ end }}
string zero: {{ if "0" }}T{{ else }}F{{ end }}
int zero: {{ if 0 }}T{{ else }}F{{ end }}
int one: {{ if 1 }}T{{ else }}F{{ end }}
negative: {{ if -1 }}T{{ else }}F{{ end }}
labels: {{ if .Labels }}T{{ else }}F{{ end }}
kv empty: {{ if get "vars/bucket" "empty" }}T{{ else }}F{{ end }}
kv zero: {{ if get "vars/bucket" "zero" }}T{{ else }}F{{ end }}
int of kv zero: {{ if int (get "vars/bucket" "zero") }}T{{ else }}F{{ end }}
sub to zero: {{ if sub 3 3 }}T{{ else }}F{{ end }}
true: {{ if true }}T{{ else }}F{{ end }}
false: {{ if false }}T{{ else }}F{{ end }}
