bucket: {{ get "maand/bucket" "bucket_id" }}
bucket vars: {{ get "vars/bucket" "region" }}
workers: {{ get "maand/worker" "app_workers" }}
this worker: {{ get "maand/worker/127.0.0.12" "app_allocation_index" }}
tags: {{ get "maand/worker/127.0.0.12/tags" "rack" }}
job: {{ get "maand/job/app" "version" }}
job bucket vars: {{ get "vars/bucket/job/app" "replicas" }}
job vars: {{ get "vars/job/app" "cluster_name" }}
allocation: {{ get "maand/job/app/worker/127.0.0.12" "peers" }}
upstream job: {{ get "maand/job/postgres" "version" }}
upstream vars: {{ get "vars/job/postgres" "max_connections" }}
secret via get: {{ get "secrets/job/app" "api_token" }}
