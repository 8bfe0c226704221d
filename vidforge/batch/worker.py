"""A worker runs jobs one after another and keeps its loaded model between them.

The same :class:`Worker` runs in this process (``--engine local``), in one process per GPU
(``--devices``), or inside a Ray actor (``--engine ray``). It keeps ONE model at a time (GPU
memory): jobs arrive grouped by model, so each model loads once per worker. A job that fails
(unreadable input, impossible option, out of memory) gives a ``"failed"`` outcome with a one-line
error; the worker goes on with the next job.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from pathlib import Path

from vidforge.batch.jobs import Job, inputs_digest, settings_hash
from vidforge.errors import VidforgeError, first_line


def outcome(job: Job, status: str, seconds: float = 0.0, error: str | None = None, **extra) -> dict:
    """One line of ``results.jsonl``."""
    return {
        "id": job.id,
        "line": job.line,
        "command": job.command,
        "input": job.input or next(iter(job.sources), None),  # extend: its --init or --image
        "output": job.output,
        "status": status,  # "ok", "failed" or "skipped"
        "seconds": round(seconds, 3),
        "error": error,
        "worker": extra.pop("worker", None),
        "node": extra.pop("node", None),
        "settings_hash": settings_hash(job),
        **extra,
    }


class Worker:
    """Runs jobs in this process on ``device`` (None: each job's own ``--device``)."""

    def __init__(self, device: str | None = None, node: str | None = None, shown_device: str | None = None):
        self.device = device
        self.shown_device = shown_device or device  # a GPU worker sees its GPU as cuda:0
        self.node = node or socket.gethostname()
        self.name = f"{self.node}:{os.getpid()}"
        self.loads = 0  # models loaded so far (one per group of jobs, ideally)
        self._key = None
        self._model = None

    def run(self, job: Job, overwrite: bool = False, bars=None) -> dict:
        """Run ``job``; never raises for a failed job (Ctrl-C still stops)."""
        start = time.perf_counter()
        where = {"worker": self.name, "node": self.node, "device": self.shown_device}
        try:
            _make_folder(job.output)
            check_sources(job)
            result = RUNNERS[job.command](self, job, overwrite, bars)
        except VidforgeError as e:
            return outcome(job, "failed", time.perf_counter() - start, first_line(e), **where)
        except MemoryError:
            return outcome(job, "failed", time.perf_counter() - start, "out of memory", **where)
        except Exception as e:
            if os.environ.get("VIDFORGE_DEBUG") == "1":
                raise
            self.forget()  # a model left in a bad state (e.g. after CUDA out of memory) is reloaded
            error = f"out of GPU memory ({first_line(e)})" if type(e).__name__ == "OutOfMemoryError" else (
                f"internal error: {type(e).__name__}: {first_line(e)}"
            )  # fmt: skip
            return outcome(job, "failed", time.perf_counter() - start, error, **where)
        frames = getattr(result, "num_frames", None)
        return outcome(
            job, "ok", time.perf_counter() - start, frames=frames, input_sha256=inputs_digest(job), **where
        )

    def model(self, job: Job, load):
        """The model ``job`` needs, loaded by ``load(options)`` unless it is the one already held."""
        options = job.options
        if self.device is not None and options.device == "auto":  # the worker's device
            options = dataclasses.replace(options, device=self.device)
        key = (job.command, job.task, options.model, options.device, options.dtype, options.attention)
        key += (getattr(options, "clip_model", None),)
        if key != self._key:
            self.forget()
            self._model = load(options)
            self._key = key
            self.loads += 1
        return self._model

    def forget(self) -> None:
        """Drop the held model (and free its GPU memory)."""
        held, self._model, self._key = self._model, None, None
        if held is not None:
            del held
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()


def check_sources(job: Job) -> None:
    """An unreadable input fails its job before any model loads: a re-run whose only unfinished
    jobs are bad files loads nothing. (Probing decodes one frame; the command checks again.)"""
    from vidforge.batch.jobs import COMMANDS
    from vidforge.core.video_io import load_image, probe_video

    kinds = {"input": COMMANDS[job.command].reads, "init": "video", "image": "image", "end_image": "image"}
    for name, kind in kinds.items():
        value = job.input if name == "input" else getattr(job.options, name, None)
        if value is None or kind is None:
            continue
        if kind == "video":
            probe_video(value)
        else:
            load_image(value, "image" if name == "input" else f"--{name.replace('_', '-')}")


def _make_folder(output: str) -> None:
    """The output's folder (each node creates it on the shared filesystem as needed); a
    ``DIR/%05d.png`` pattern's own folder is made by its writer."""
    from vidforge.core.video_io import media_path

    media_path(output).parent.mkdir(parents=True, exist_ok=True)


# ------------------------------------------------------------------------------------ per command
# A loaded model runs with the job's own options; ``--device auto`` then means the model's device.


def _load_stylize(options):
    from vidforge.stylize import StylizePipeline

    return StylizePipeline.from_options(options)


def _stylize(worker: Worker, job: Job, overwrite: bool, bars):
    from vidforge import stylize

    pipeline = worker.model(job, _load_stylize)
    return stylize.run(job.input, job.options, job.output, bars, pipeline=pipeline, overwrite=overwrite)


def _load_animate(options):
    """animate's own loader: refuses options the release cannot take, then loads and prepares."""
    from vidforge.animate.pipeline import prepare_model, select_hardware
    from vidforge.core.attention import select_backend

    device, dtype = select_hardware(options, None)
    return prepare_model(None, options, device, dtype, select_backend(options.attention, device))


def _animate(worker: Worker, job: Job, overwrite: bool, bars):
    from vidforge import animate

    bundle = worker.model(job, _load_animate)
    return animate.run(job.input, job.options, job.output, bars, model=bundle, overwrite=overwrite)


def _load_extend(options):
    from vidforge.extend.pipeline import load_extend_model

    return load_extend_model(options, options.image is not None)


def _extend(worker: Worker, job: Job, overwrite: bool, bars):
    from vidforge import extend

    bundle = worker.model(job, _load_extend)
    return extend.run(job.options, job.output, bars, model=bundle, overwrite=overwrite)


def _evaluate(worker: Worker, job: Job, overwrite: bool, bars):
    """Score the input and write the report (``.json``: as ``--json`` prints it; ``.csv``); a
    failed metric fails the job (the report is still written)."""
    from vidforge import evaluate
    from vidforge.core.writers import atomic_path
    from vidforge.evaluate.report import write_csv

    output = Path(job.output)
    if output.exists() and not overwrite:
        raise VidforgeError(f"output {job.output!r} already exists (pass --overwrite to replace it)")
    report = evaluate.run([job.input], job.options, bars=bars)
    if output.suffix.lower() == ".csv":
        write_csv(report, output)
    else:
        with atomic_path(output) as tmp:
            tmp.write_text(report.to_json() + "\n")
    if report.failed:
        raise VidforgeError("; ".join(report.errors))
    return report


RUNNERS = {"stylize": _stylize, "animate": _animate, "extend": _extend, "evaluate": _evaluate}
