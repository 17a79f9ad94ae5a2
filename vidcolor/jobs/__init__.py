"""Archive jobs: many files, resumable, on local workers or a Ray cluster.

`driver` runs a batch (`run_batch`, configured by `BatchConfig`); `plan` finds its inputs and where
their outputs go; `manifest` keeps the job's SQLite record and its folder's lock; `pools` holds the
workers, local processes or Ray actors, each with one loaded model.
"""

from vidcolor.jobs.driver import BatchConfig, Summary, run_batch

__all__ = ["BatchConfig", "Summary", "run_batch"]
