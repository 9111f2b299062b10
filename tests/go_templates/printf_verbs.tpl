s: {{ printf "%s" .Job }}
d: {{ printf "%d" 42 }}
neg d: {{ printf "%d" -42 }}
v string: {{ printf "%v" .Job }}
v int: {{ printf "%v" 7 }}
v list: {{ printf "%v" .Labels }}
v bool: {{ printf "%v" true }}
q: {{ printf "%q" .Job }}
q escapes: {{ printf "%q" (get "vars/job/app" "quoted") }}
02d: {{ printf "%02d" 7 }}
02d wide: {{ printf "%02d" 123 }}
03d negative: {{ printf "%03d" -5 }}
percent: {{ printf "100%%" }}
several: {{ printf "%s:%d/%v" .WorkerIP 8080 "x" }}
no verbs: {{ printf "plain" }}
