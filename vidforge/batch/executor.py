"""One executor, two engines: what is finished is skipped, the rest runs grouped by model, and
every outcome is written to ``results.jsonl`` as it arrives.

``results.jsonl`` holds one JSON object per job and run, appended as jobs finish::

    {"id": "3", "line": 3, "command": "stylize", "input": "...", "output": "...",
     "status": "ok" | "failed" | "skipped", "seconds": 12.3, "error": null,
     "worker": "host:pid", "node": "host or Ray node IP", "device": "cuda:1",
     "settings_hash": "...", "input_sha256": "...", "frames": 48}

A re-run with the same JOBS reads it back and skips the jobs it lists as finished whose output
still exists with the same settings and inputs (:func:`vidforge.batch.jobs.is_done`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from vidforge.batch.jobs import Job, inputs_digest, is_done, read_results
from vidforge.batch.worker import outcome
from vidforge.errors import OptionError

ENGINES = ("local", "ray")


def execute(
    jobs: list[Job],
    engine: str = "local",
    *,
    devices: list[str] | None = None,
    address: str | None = None,
    workers: int | None = None,
    max_retries: int = 2,
    results: str | os.PathLike | None = None,
    overwrite: bool = False,
    skip_existing: bool = True,
    bars=None,
    on_result: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Run ``jobs``; return one outcome per job (skipped ones first, then in finishing order).

    ``results``: the ``results.jsonl`` to read finished jobs from and append outcomes to.
    ``on_result(outcome)`` is called as each job finishes. ``devices``: the local engine's;
    ``address``, ``workers``, ``max_retries``: the Ray engine's."""
    from vidforge.core.progress import Bars

    bars = bars or Bars(disable=True)
    check_engine(engine)
    if engine == "ray":  # a missing Ray is said before any work, even when nothing is left to run
        from vidforge.batch.ray_engine import import_ray

        import_ray()
    # 0. What is finished already: the outputs' settings records, an earlier results.jsonl
    previous = read_results(results) if results is not None else {}
    finished = [skip_existing and is_done(job, previous) for job in jobs]
    done = [job for job, f in zip(jobs, finished, strict=True) if f]
    todo = [job for job, f in zip(jobs, finished, strict=True) if not f]
    order: dict[tuple, int] = {}  # groups in the order they first appear in JOBS
    todo.sort(key=lambda job: order.setdefault(job.group, len(order)))
    skipped = (outcome(job, "skipped", input_sha256=inputs_digest(job)) for job in done)
    outcomes = [_keep(result, results, on_result) for result in skipped]
    if not todo:
        return outcomes
    # 1. The rest, grouped by model (each loads once per worker), streamed back as they finish
    if engine == "ray":
        from vidforge.batch.ray_engine import run_ray

        stream = run_ray(todo, address, workers, max_retries, overwrite)
    else:
        from vidforge.batch.local import run_local

        stream = run_local(todo, devices, overwrite, bars)
    for result in bars.track(stream, "jobs", total=len(todo)):
        outcomes.append(_keep(result, results, on_result))
    return outcomes


def check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise OptionError(f"--engine must be one of {', '.join(ENGINES)} (got {engine!r})")


def _keep(result: dict, results, on_result) -> dict:
    if results is not None:
        with open(results, "a") as f:
            f.write(json.dumps(result) + "\n")
    if on_result is not None:
        on_result(result)
    return result


# ---------------------------------------------------------------------------------------- report


def counts(outcomes: list[dict]) -> dict[str, int]:
    return {s: sum(o["status"] == s for o in outcomes) for s in ("ok", "skipped", "failed")}


def summary(outcomes: list[dict], results: str | os.PathLike | None = None) -> str:
    """``8 jobs: 6 ok, 1 skipped, 1 failed in 93.0 s -> out/results.jsonl``."""
    n = counts(outcomes)
    seconds = sum(o["seconds"] for o in outcomes)
    jobs = f"{len(outcomes)} job" + ("" if len(outcomes) == 1 else "s")
    text = f"{jobs}: {n['ok']} ok, {n['skipped']} skipped, {n['failed']} failed"
    return text + f" ({seconds:.1f} s of work)" + (f" -> {results}" if results else "")


MAX_ROWS = 50  # longer tables show only failed jobs


def print_table(outcomes: list[dict]) -> None:
    """The final table on stderr: one row per job (only the failed ones past :data:`MAX_ROWS`)."""
    from rich.table import Table

    from vidforge.core.progress import stderr

    rows = outcomes if len(outcomes) <= MAX_ROWS else [o for o in outcomes if o["status"] == "failed"]
    table = Table("job", "command", "status", "seconds", "worker", "output / error", title_justify="left")
    style = {"ok": "green", "skipped": "dim", "failed": "red"}
    for o in rows:
        status = f"[{style[o['status']]}]{o['status']}[/]"
        detail = o["error"] if o["status"] == "failed" else Path(o["output"]).name
        table.add_row(str(o["id"]), o["command"], status, f"{o['seconds']:.1f}", o["worker"] or "", detail)
    stderr.print(table)


def error_lines(outcomes: list[dict]) -> Iterator[str]:
    """One ``error:`` line per failed job, naming its input unless the message already does."""
    for o in outcomes:
        if o["status"] == "failed":
            name = o["input"] or f"job {o['id']}"
            yield f"error: {o['error']}" if name in (o["error"] or "") else f"error: {name}: {o['error']}"
