{{ get "vars/job/other_job" "anything" }}
