left:   {{- .Job }}  |
right: {{ .Job -}}    |
both:    {{- .Job -}}    |
none:  {{ .Job }}  |
