"""Benchmark ``vidforge batch``: jobs per minute of the engines on the same JOBS file.

    .venv/bin/python benchmarks/batch.py                      # 8 tiny stylize jobs, every engine
    .venv/bin/python benchmarks/batch.py --jobs 16 --steps 8 --engines local ray

Each engine runs ``vidforge batch`` in a fresh process on a fresh output folder, end to end as a
user runs it (Python and torch imports, Ray start-up, model loads, the jobs): jobs/minute is jobs
divided by that wall time. ``cpu_s`` is the CPU time the run used (all its processes: less
sensitive than wall time to other work on a shared machine); ``work_s`` sums the seconds the jobs
themselves report (a model load is counted in the first job of each worker). The load average is
printed before and after each run. Prints one JSON line per run. Not a test: run it by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ENGINES = {
    "local": ["--engine", "local"],
    "local-2proc": ["--engine", "local", "--devices", "cpu,cpu"],
    "ray": ["--engine", "ray"],
    "ray-2actors": ["--engine", "ray", "--workers", "2"],
}


def make_jobs(folder: Path, count: int, steps: int, frames: int, size: int) -> Path:
    """``count`` stylize jobs on ``tiny``, each on its own clip with its own seed."""
    from vidforge.core.writers import write_video

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import textured_frames

    lines = []
    for i in range(count):
        clip = write_video(folder / f"clip{i}.mp4", textured_frames(frames, size, size, seed=i), fps=12)
        job = {"command": "stylize", "input": str(clip), "output": f"clip{i}.mp4", "style": "ink wash",
               "model": "tiny", "steps": steps, "seed": i, "device": "cpu"}  # fmt: skip
        lines.append(json.dumps(job))
    jobs = folder / "jobs.jsonl"
    jobs.write_text("\n".join(lines) + "\n")
    return jobs


def run(engine: str, jobs: Path, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    load_before = os.getloadavg()
    cpu_before = _children_cpu()
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "vidforge", "batch", str(jobs), "--output-dir", str(out), "--json", *ENGINES[engine]],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    wall = time.perf_counter() - start
    cpu = _children_cpu() - cpu_before
    if proc.returncode != 0:
        raise SystemExit(f"{engine} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    report = json.loads(proc.stdout)
    jobs_done = report["ok"]
    return {
        "engine": engine,
        "jobs": jobs_done,
        "wall_s": round(wall, 1),
        "jobs_per_minute": round(60 * jobs_done / wall, 2),
        "cpu_s": round(cpu, 1),
        "work_s": round(sum(j["seconds"] for j in report["jobs"]), 1),
        "first_job_s": round(max(j["seconds"] for j in report["jobs"]), 1),
        "workers": len({j["worker"] for j in report["jobs"]}),
        "load_before": [round(v, 2) for v in load_before],
        "load_after": [round(v, 2) for v in os.getloadavg()],
    }


def _children_cpu() -> float:
    """User + system CPU seconds of finished child processes and theirs (Ray's included once they
    exit): the work a run costs, whatever else the machine is doing."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=list(ENGINES))
    parser.add_argument(
        "--repeat", type=int, default=1, help="Runs per engine (in turn, to share the noise)."
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        jobs = make_jobs(Path(tmp), args.jobs, args.steps, args.frames, args.size)
        print(json.dumps({"cpus": os.cpu_count(), **vars(args)}), flush=True)
        for r in range(args.repeat):
            for engine in args.engines:
                print(json.dumps(run(engine, jobs, Path(tmp) / f"out-{engine}-{r}")), flush=True)


if __name__ == "__main__":
    main()
