{{ div 10 (int (get "vars/job/app" "count")) }}
