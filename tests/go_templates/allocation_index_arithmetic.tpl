{{- $index := int (get "maand/job/app/worker/127.0.0.12" "allocation_index") -}}
{{- $total := int (get "maand/job/app" "workers_length") -}}
node_id={{ add $index 1 }}
of={{ $total }}
is_first={{ eq $index 0 }}
is_last={{ eq $index (sub $total 1) }}
port={{ add (int (get "maand/bucket" "port_min")) (mul $index 10) }}
half={{ div $total 2 }} quorum={{ add (div $total 2) 1 }}
