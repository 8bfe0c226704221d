"""vidforge batch: many inputs and JOBS files, run on this machine or on a Ray cluster.

* :mod:`vidforge.batch.jobs`: jobs (command, options, input, output) from JSONL/CSV files or
  from a command's inputs, the output naming rule, and :func:`is_done` (what can be skipped);
* :mod:`vidforge.batch.worker`: runs jobs one after another, keeping the loaded model;
* :mod:`vidforge.batch.local` and :mod:`vidforge.batch.ray_engine`: the two engines;
* :mod:`vidforge.batch.executor`: skip what is finished, run the rest grouped by model, write
  ``results.jsonl`` as jobs finish.

This package sits above the commands: it imports them, they never import it.
"""

from vidforge._lazy import lazy_getattr

__getattr__ = lazy_getattr(
    __name__,
    {
        "Job": "vidforge.batch.jobs",
        "read_jobs": "vidforge.batch.jobs",
        "input_jobs": "vidforge.batch.jobs",
        "output_for": "vidforge.batch.jobs",
        "is_done": "vidforge.batch.jobs",
        "Worker": "vidforge.batch.worker",
        "execute": "vidforge.batch.executor",
    },
)

__all__ = ["Job", "Worker", "execute", "input_jobs", "is_done", "output_for", "read_jobs"]
