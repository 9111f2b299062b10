{{ eq true true }} {{ eq (eq 1 1) true }} {{ ne true false }} {{ eq false (lt 2 1) }}
{{ if eq (not .Labels) false }}labels present{{ end }}
