{{ min 1 2 }} {{ min 2 1 }} {{ max 1 2 }} {{ max 2 1 }}
{{ min -3 -4 }} {{ max -3 -4 }} {{ min 5 5 }}
{{ min 128 (max 4 (div 8192 64)) }}
{{ max (int (get "vars/job/app" "count")) 1 }}
