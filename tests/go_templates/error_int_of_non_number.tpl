{{ int (get "vars/job/app" "log_level") }}
