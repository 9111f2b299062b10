{{ div 7 2 }} {{ div -7 2 }} {{ div 7 -2 }} {{ div -7 -2 }}
{{ div 1 3 }} {{ div -1 3 }} {{ div 0 5 }} {{ div -9 3 }}
{{ div (int (get "vars/job/app" "negative")) 2 }}
{{ div (sub 0 (int (get "vars/job/app" "memory"))) 1000 }}
