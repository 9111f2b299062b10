allocation_id={{ .AllocationID }}
job={{ .Job }}
current={{ .CurrentVersion }}
new={{ .NewVersion }}
ip={{ .WorkerIP }}
worker_id={{ .WorkerID }}
bucket_path={{ .BucketPath }}
job_path={{ .JobPath }}
