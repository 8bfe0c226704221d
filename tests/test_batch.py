"""Many inputs per command and `vidforge batch` with the local engine, on the tiny models."""

import json
import os
import sys
from pathlib import Path

import pytest
from conftest import textured_frames

from vidforge.cli import main
from vidforge.core.writers import write_video

FAST = ["--model", "tiny", "--steps", "1", "--device", "cpu"]
STILL = Path(__file__).parents[1] / "examples" / "still.png"


def run_main(args, capsys):
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return info.value.code, out, err


@pytest.fixture
def count_loads(monkeypatch):
    """Every model load, by task (the commands import load_model from vidforge.models at call time)."""
    import vidforge.models

    loads = []
    real = vidforge.models.load_model

    def counting(name, task, *args, **kwargs):
        loads.append(task)
        return real(name, task, *args, **kwargs)

    monkeypatch.setattr(vidforge.models, "load_model", counting)
    return loads


def test_a_folder_loads_the_model_once_a_bad_file_fails_alone_and_skip_existing_does_no_work(
    tmp_path, clips, capsys, count_loads
):
    (clips / "broken.mp4").write_bytes(b"\x00\x01 not a video" * 200)
    out = tmp_path / "out"
    code, _, err = run_main(["stylize", clips, "--style", "ink", "--output-dir", out, *FAST], capsys)
    assert code == 1, err
    # the naming rule, DIR/STEM.mp4, each with its settings record
    assert sorted(p.name for p in out.iterdir()) == ["a.mp4", "a.mp4.json", "b.mp4", "b.mp4.json"]
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "broken.mp4" in errors[0] and "cannot decode" in errors[0], err
    assert "Traceback" not in err
    assert count_loads == ["stylize"]  # one load for the three inputs

    # --skip-existing reads the settings records the run wrote beside its outputs; the bad file,
    # the only job left, fails before any model loads
    args = ["stylize", clips, "--style", "ink", "--output-dir", out, "--skip-existing", "--json", *FAST]
    code, _, err = run_main(args, capsys)
    assert code == 1 and "cannot decode" in err and count_loads == ["stylize"], err
    (clips / "broken.mp4").unlink()
    code, stdout, err = run_main(args, capsys)
    assert code == 0, err
    report = json.loads(stdout)
    assert [job["status"] for job in report["jobs"]] == ["skipped", "skipped"]
    assert count_loads == ["stylize"]  # no work: no model loaded
    # other options: not the recorded settings, so not skipped (and the output is kept: no --overwrite)
    code, _, err = run_main([*args, "--steps", "2"], capsys)
    assert code == 1 and err.count("already exists") == 2, err


def test_evaluate_scores_every_readable_video_of_a_folder(clips, capsys):
    (clips / "broken.mp4").write_bytes(b"\x00\x01 not a video" * 200)
    code, stdout, err = run_main(["evaluate", clips, "--metric", "flicker", "--json"], capsys)
    assert code == 1
    videos = {Path(v["video"]).name: v for v in json.loads(stdout)["videos"]}
    assert videos["a.mp4"]["metrics"]["flicker"]["value"] is not None
    assert videos["b.mov"]["metrics"]["flicker"]["value"] is not None
    assert "cannot decode video" in videos["broken.mp4"]["error"]
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "broken.mp4" in errors[0], err


def test_several_images_and_the_single_input_path_unchanged(tmp_path, capsys, count_loads):
    listing = tmp_path / "stills.txt"
    listing.write_text(f"{STILL}\n")
    other = tmp_path / "other.png"
    other.write_bytes(STILL.read_bytes())
    args = ["animate", listing, other, "--frames", "2", "--output-dir", tmp_path / "out", "-q", *FAST]
    code, _, err = run_main(args, capsys)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "other.mp4",
        "other.mp4.json",
        "still.mp4",
        "still.mp4.json",
    ]
    assert count_loads == ["animate"]
    code, _, err = run_main(["animate", STILL, other, "-o", tmp_path / "x.mp4", *FAST], capsys)
    assert code == 2 and "for several inputs give --output-dir" in err
    code, _, err = run_main(["animate", other, "--frames", "2", *FAST], capsys)  # one input: as before
    assert code == 0 and "frames in" in err and (tmp_path / "other_animated.mp4").exists()


def write_jobs(path: Path, *rows) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_batch_runs_mixed_commands_grouped_by_model_and_a_rerun_skips_them(
    tmp_path, clips, capsys, count_loads
):
    tiny = {"model": "tiny", "steps": 1, "device": "cpu"}
    jobs = write_jobs(
        tmp_path / "jobs.jsonl",
        {"command": "stylize", "input": "clips/a.mp4", "output": "ink.mp4", "style": "ink", **tiny},
        {
            "command": "animate",
            "input": str(STILL),
            "output": "still.mp4",
            "prompt": "waves",
            "frames": 2,
            **tiny,
        },
        {"command": "extend", "prompt": "a river", "frames": 4, "output": "river.mp4", **tiny},
        {
            "command": "stylize",
            "input": "clips/b.mov",
            "output": "oil.mp4",
            "style": "oil",
            "seed": 3,
            **tiny,
        },
    )
    out = tmp_path / "out"
    code, _, err = run_main(["batch", jobs, "--output-dir", out], capsys)
    assert code == 0, err
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["id"], r["status"]) for r in lines] == [("1", "ok"), ("4", "ok"), ("2", "ok"), ("3", "ok")]
    assert sorted(count_loads) == ["animate", "extend", "stylize"]  # each model once; stylize jobs together
    assert all(r["worker"] == f"{r['node']}:{os.getpid()}" and r["settings_hash"] for r in lines)
    assert {p.name for p in out.glob("*.mp4")} == {"ink.mp4", "still.mp4", "river.mp4", "oil.mp4"}
    assert "4 jobs: 4 ok, 0 skipped, 0 failed" in err and "┃ job" in err  # summary and final table

    code, stdout, err = run_main(["batch", jobs, "--output-dir", out, "--json"], capsys)
    assert code == 0, err
    assert json.loads(stdout)["skipped"] == 4 and sorted(count_loads) == ["animate", "extend", "stylize"]
    assert len((out / "results.jsonl").read_text().splitlines()) == 8  # the re-run's lines appended


def test_worker_processes_and_a_missing_ray(tmp_path, clips, capsys, monkeypatch):
    jobs = write_jobs(
        tmp_path / "jobs.jsonl",
        *({"command": "evaluate", "input": f"clips/{n}", "metric": "flicker"} for n in ("a.mp4", "b.mov")),
    )
    code, stdout, err = run_main(["batch", jobs, "--devices", "cpu,cpu", "--json"], capsys)
    assert code == 0, err
    report = json.loads(stdout)
    assert report["ok"] == 2 and all(not job["worker"].endswith(f":{os.getpid()}") for job in report["jobs"])
    assert (
        json.loads((clips / "a.metrics.json").read_text())["videos"][0]["metrics"]["flicker"]["value"]
        is not None
    )

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as when it is not installed
    code, stdout, err = run_main(["batch", jobs, "--engine", "ray"], capsys)
    assert code == 1 and stdout == ""
    assert err.strip() == 'error: --engine ray needs Ray: pip install "vidforge[ray]"'


def test_skip_existing_matches_extend_records_with_the_method_defaults_filled_in(tmp_path, capsys):
    out = tmp_path / "long.mp4"
    args = ["extend", "--prompt", "a boat", "--frames", "10", "-o", out, "--steps", "1", "--model", "tiny",
            "--device", "cpu", "--progress", "none"]  # fmt: skip
    code, _, err = run_main(args, capsys)
    assert code == 0, err
    code, stdout, err = run_main([*args, "--skip-existing", "--json"], capsys)
    assert code == 0 and json.loads(stdout)["status"] == "skipped", err
    code, _, err = run_main([*args, "--skip-existing", "--eta", "0.5"], capsys)  # not the recorded eta (0)
    assert code == 1 and "already exists" in err


def test_one_input_without_output_follows_the_naming_rule(tmp_path, capsys):
    """A numbered-PNG input is named after its folder (it used to give ``frames/%05d_stylized.mp4``)."""
    write_video(tmp_path / "frames" / "%05d.png", textured_frames(3, 32, 32), fps=8)
    code, _, err = run_main(["stylize", tmp_path / "frames" / "%05d.png", "--style", "ink", *FAST], capsys)
    assert code == 0, err
    assert (tmp_path / "frames_stylized.mp4").exists() and not list((tmp_path / "frames").glob("*.mp4"))
