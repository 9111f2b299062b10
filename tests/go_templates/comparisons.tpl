{{ ne .Job "db" }} {{ ne 1 1 }}
{{ lt 1 2 }} {{ lt 2 1 }} {{ le 2 2 }} {{ le 3 2 }}
{{ gt 5 3 }} {{ gt -1 0 }} {{ ge 0 0 }} {{ ge -5 -4 }}
{{ lt "apple" "banana" }} {{ gt "b" "a" }} {{ le "a" "a" }} {{ ge "A" "a" }}
{{ lt (int (get "vars/job/app" "memory")) 16384 }}
{{ if ge (len .Labels) 3 }}three or more{{ end }}
