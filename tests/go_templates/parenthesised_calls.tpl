{{ add (mul 2 3) (sub 10 4) }}
{{ upper (printf "%s-%s" .Job .WorkerIP) }}
{{ len (split (get "maand/job/app" "workers") ",") }}
{{ index (split (get "maand/job/app" "workers") ",") (int (get "maand/job/app/worker/127.0.0.12" "allocation_index")) }}
{{ max (min 10 (add 2 3)) (div 9 2) }}
