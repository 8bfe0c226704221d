"""`vidforge batch --engine ray` on a local Ray instance (one for the module: each start costs seconds):
results stream back, a worker killed mid-job is replaced and its job runs again, a re-run skips all."""

import json
import logging
import os
import signal

import pytest
import ray
from conftest import textured_frames

from vidforge.batch.executor import execute
from vidforge.batch.jobs import read_jobs
from vidforge.cli import main
from vidforge.core.writers import write_video


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield
    ray.shutdown()


def test_ray_engine_survives_a_killed_worker_and_a_rerun_skips_every_job(local_ray, tmp_path, capsys):
    for i in range(3):
        write_video(tmp_path / f"clip{i}.mp4", textured_frames(3, 32, 32, seed=i), fps=8)
    tiny = {"model": "tiny", "steps": 2, "device": "cpu"}
    rows = [
        {"command": "stylize", "input": f"clip{i}.mp4", "style": s, **tiny}
        for i, s in enumerate(["ink", "oil", "ice"])
    ]
    rows.append({"command": "evaluate", "input": "clip0.mp4", "metric": "motion"})
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "out"

    killed = []

    def kill_the_first_worker(outcome):
        """When the first job is back, its actor has already been handed the next one: kill it."""
        if not killed:
            killed.append(int(outcome["worker"].rsplit(":", 1)[1]))
            os.kill(killed[0], signal.SIGKILL)

    outcomes = execute(
        read_jobs(jobs, out), "ray", workers=2, max_retries=2, results=out / "results.jsonl",
        on_result=kill_the_first_worker,
    )  # fmt: skip
    assert [o["status"] for o in outcomes] == ["ok"] * 4, outcomes
    pids = [int(o["worker"].rsplit(":", 1)[1]) for o in outcomes]
    assert pids[0] == killed[0] and killed[0] not in pids[1:]
    assert len(set(pids)) == 3  # the two actors, and the one Ray started in place of the killed one
    assert all(pid != os.getpid() for pid in pids)
    lines = (out / "results.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["id"] for line in lines) == ["1", "2", "3", "4"]
    assert sorted(p.name for p in out.iterdir()) == [
        "clip0.metrics.json", "clip0.mp4", "clip0.mp4.json", "clip1.mp4", "clip1.mp4.json", "clip2.mp4",
        "clip2.mp4.json", "results.jsonl",
    ]  # fmt: skip

    with pytest.raises(SystemExit) as info:
        main(["batch", str(jobs), "--output-dir", str(out), "--engine", "ray", "--json"])
    stdout, err = capsys.readouterr()
    assert info.value.code == 0, err
    assert [job["status"] for job in json.loads(stdout)["jobs"]] == ["skipped"] * 4
