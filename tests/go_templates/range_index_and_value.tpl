{{ range $i, $v := split "alpha,beta,gamma" "," -}}
{{ $i }}={{ $v }}
{{ end -}}
