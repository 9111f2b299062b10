{{- $threads := int (get "vars/job/app" "threads") -}}
workers = {{ min 64 (max 2 (min (mul $threads 2) (int (get "maand/job/app" "cpu")))) }}
cache_mb = {{ max 16 (min 4096 (max (div (int (get "vars/job/app" "memory")) 8) 32)) }}
