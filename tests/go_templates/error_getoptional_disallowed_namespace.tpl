[{{ getOptional "vars/job/other_job" "k" }}]
