"""The ``local`` engine: jobs on this machine, nothing to start.

Without ``--devices`` (or with one device) the jobs run in this process, one after another, on
one :class:`~vidforge.batch.worker.Worker` that keeps its model; their progress bars show under
the jobs bar. ``--devices cuda:0,cuda:1`` (or ``all``) starts one worker process per device
(``concurrent.futures`` with spawned processes, each seeing only its GPU through
``CUDA_VISIBLE_DEVICES``); a free worker takes the next job, in the executor's order (grouped by
model), so each worker loads each model at most once. ``--devices all`` on a machine without
CUDA runs in this process on the CPU.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

from vidforge.batch.jobs import Job
from vidforge.batch.worker import Worker, outcome
from vidforge.errors import OptionError, first_line

DEVICE = re.compile(r"cpu|cuda(:\d+)?")


def parse_devices(text: str | None) -> list[str]:
    """``--devices``: ``cuda:0,cuda:1``, ``all`` (every visible GPU; none: []), ``cpu``; several
    ``cpu`` entries start that many CPU worker processes."""
    if text is None or not text.strip():
        return []
    if text.strip() == "all":
        import torch

        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    devices = [d.strip() for d in text.split(",") if d.strip()]
    bad = [d for d in devices if not DEVICE.fullmatch(d)]
    if bad or not devices:
        raise OptionError(f"--devices {text!r}: expected all, or a list like cuda:0,cuda:1 (or cpu)")
    gpus = [d for d in devices if d != "cpu"]
    if len(set(gpus)) != len(gpus):
        raise OptionError(f"--devices {text!r}: a GPU is named twice (one worker per GPU)")
    return devices


def run_local(
    jobs: list[Job], devices: list[str] | None = None, overwrite: bool = False, bars=None
) -> Iterator[dict]:
    """Outcomes as jobs finish: in this process for zero or one device, else one process per device."""
    devices = devices or []
    if len(devices) <= 1:
        worker = Worker(devices[0] if devices else None)
        for job in jobs:
            yield worker.run(job, overwrite, bars)
        return
    yield from _run_processes(jobs, devices, overwrite)


def _run_processes(jobs: list[Job], devices: list[str], overwrite: bool) -> Iterator[dict]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("spawn")  # CUDA cannot be used in a forked child
    slots = context.Queue()
    for device in devices:
        slots.put(device)
    threads = max(1, (os.cpu_count() or 1) // len(devices))
    pool = ProcessPoolExecutor(len(devices), context, initializer=_start_worker, initargs=(slots, threads))
    try:
        futures = {pool.submit(_run_job, job, overwrite): job for job in jobs}
        for future in as_completed(futures):
            try:
                yield future.result()
            except BrokenProcessPool as e:
                error = f"a worker process died ({first_line(e) or 'killed'})"
                yield outcome(futures[future], "failed", error=error)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


_worker: Worker | None = None  # the worker of a worker process


def _start_worker(slots, threads: int) -> None:
    """In a new worker process: take a device, see only it."""
    global _worker
    device = slots.get()
    if device.startswith("cuda"):
        os.environ["CUDA_VISIBLE_DEVICES"] = device.partition(":")[2] or "0"
        _worker = Worker("cuda:0", shown_device=device)
        return
    import torch

    torch.set_num_threads(threads)
    _worker = Worker(device)


def _run_job(job: Job, overwrite: bool) -> dict:
    return _worker.run(job, overwrite)
