{{ int "42" }}
{{ int " 16 " }}
{{ int (get "vars/job/app" "threads") }}
{{ int 7 }}
{{ int "-12" }}
{{ add (int (get "vars/job/app" "memory")) 1 }}
