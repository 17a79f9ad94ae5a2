"""Archive jobs: many files, resumable, on local workers or a Ray cluster."""
