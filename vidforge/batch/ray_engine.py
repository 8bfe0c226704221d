"""The ``ray`` engine: jobs on a Ray cluster (``pip install "vidforge[ray]"``).

One actor per GPU of the cluster (``num_gpus=1``, so Ray gives it one GPU and places it on any
node), or CPU actors on a cluster without GPUs. Each actor is a
:class:`~vidforge.batch.worker.Worker` that keeps its loaded model across jobs. Jobs go to
whichever actor is free (Ray's ``ActorPool``), in the executor's order (grouped by model); results
come back as they finish. When an actor's process dies, Ray starts it again (on any node with a
free GPU) and runs its job again, up to ``--max-retries`` times. Without ``--address`` a local Ray
instance is started (and stopped at the end). The driver only reads JOBS, hands out jobs and
writes ``results.jsonl``; workers read the inputs and write the outputs at the paths given, so
those paths must be the same on every node (a shared filesystem).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

from vidforge.batch.jobs import Job
from vidforge.batch.worker import Worker, outcome
from vidforge.errors import OptionError, VidforgeError, first_line

CPUS_PER_WORKER = 2  # CPU-only clusters: one actor per 2 CPUs by default


def import_ray():
    """Ray, or the one-line error that names the extra to install."""
    try:
        import ray
    except ImportError:
        raise VidforgeError('--engine ray needs Ray: pip install "vidforge[ray]"') from None
    return ray


class RayWorker:
    """The actor: one :class:`Worker` that stays alive, with its model, from job to job."""

    def __init__(self):
        import ray

        gpus = ray.get_runtime_context().get_accelerator_ids().get("GPU") or []
        shown = f"cuda:{gpus[0]}" if gpus else "cpu"
        self.worker = Worker(None, node=ray.util.get_node_ip_address(), shown_device=shown)

    def run(self, job: Job, overwrite: bool) -> dict:
        return self.worker.run(job, overwrite)


def run_ray(
    jobs: list[Job],
    address: str | None = None,
    workers: int | None = None,
    max_retries: int = 2,
    overwrite: bool = False,
) -> Iterator[dict]:
    """Outcomes as jobs finish on Ray actors (connect to ``address``, or start a local instance
    unless Ray is already initialised in this process)."""
    ray = import_ray()
    # Ray's driver prints the cluster's messages ("Task RayWorker.run failed ... will be retried")
    # to stdout, which --json keeps for one JSON object: they go to stderr
    with contextlib.redirect_stdout(sys.stderr):
        started = connect(ray, address)
        actors = []
        try:
            actors = start_actors(ray, workers, max_retries, len(jobs))
            yield from _stream(ray, actors, jobs, overwrite, max_retries)
        finally:
            for actor in actors:
                ray.kill(actor)
            if started:
                ray.shutdown()


def connect(ray, address: str | None) -> bool:
    """Join ``address`` (``auto``, ``HOST:PORT``, ``ray://HOST:PORT``) or start a local instance;
    False when this process already is connected (then it is left running)."""
    if ray.is_initialized():
        return False
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
    try:
        if address:
            ray.init(address=address, **quiet)
        else:
            ray.init(include_dashboard=False, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise VidforgeError(
            f"--address {address or '(local)'}: cannot start or reach Ray ({first_line(e)})"
        ) from e
    return True


def start_actors(ray, workers: int | None, max_retries: int, num_jobs: int) -> list:
    """One actor per GPU (``num_gpus=1``), or CPU actors; never more than there are jobs, nor more
    than the cluster can hold at once (an actor waiting for resources would hold its jobs)."""
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
    if workers is not None and workers > (gpus or cpus):
        unit = "GPUs" if gpus else "CPUs"
        raise OptionError(f"--workers {workers}: the Ray cluster has {gpus or cpus} {unit}")
    count = min(workers or gpus or max(1, cpus // CPUS_PER_WORKER), max(num_jobs, 1))
    if gpus:
        resource = {"num_gpus": 1}
    else:
        largest = max(int(n["Resources"].get("CPU", 1)) for n in ray.nodes() if n.get("Alive"))
        resource = {"num_cpus": max(1, min(cpus // count, largest))}
    actor = ray.remote(RayWorker).options(max_restarts=-1, max_task_retries=max_retries, **resource)
    return [actor.remote() for _ in range(count)]


def _stream(ray, actors: list, jobs: list[Job], overwrite: bool, max_retries: int) -> Iterator[dict]:
    from ray.util import ActorPool

    pool = ActorPool(actors)
    for job in jobs:
        pool.submit(lambda actor, job: actor.run.remote(job, overwrite), job)
    waiting = {job.id: job for job in jobs}
    error = "worker lost"
    while pool.has_next():
        try:
            result = pool.get_next_unordered()
        except ray.exceptions.RayError as e:  # a job's worker died more than --max-retries times
            error = first_line(e)[:200]
            continue
        waiting.pop(result["id"], None)
        yield result
    for job in waiting.values():  # the jobs whose workers kept dying (ActorPool does not say which)
        message = f"its worker died {max_retries + 1} times (--max-retries {max_retries}): {error}"
        yield outcome(job, "failed", error=message)
