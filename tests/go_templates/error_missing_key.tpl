before
{{ get "vars/job/app" "no_such_key" }}
after
