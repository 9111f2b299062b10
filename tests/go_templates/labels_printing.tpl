raw: {{ .Labels }}
joined: {{ join .Labels "," }}
count: {{ len .Labels }}
first: {{ index .Labels 0 }}
last: {{ index .Labels (sub (len .Labels) 1) }}
