{{ range $i, $k := keys "vars/bucket" -}}
{{ printf "%2d" $i }}. {{ $k }}={{ printf "%q" (get "vars/bucket" $k) }}
{{ end -}}
