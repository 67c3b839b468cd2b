"""Jobs: the Job model, thin Celery tasks, and the services that run ingest, search, refine and train."""
