"""JOBS files (JSONL, CSV), the naming rule, input expansion and what counts as finished: no model runs."""

import json
from pathlib import Path

import pytest
from conftest import textured_frames

from vidforge.batch.jobs import (
    Job,
    JobsError,
    input_jobs,
    inputs_digest,
    is_done,
    output_for,
    read_jobs,
    read_results,
    settings_hash,
)
from vidforge.batch.local import parse_devices
from vidforge.core import settings
from vidforge.core.inputs import expand_inputs, names_several
from vidforge.core.writers import write_video
from vidforge.errors import OptionError, VidforgeError
from vidforge.stylize.options import StylizeOptions


def write_lines(path: Path, *rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_every_error_of_a_jobs_file_is_reported_with_its_line_before_any_work(tmp_path, clips):
    jobs = write_lines(
        tmp_path / "jobs.jsonl",
        {"command": "stylize", "input": "clips/a.mp4", "style": "ink", "stpes": 3},
        "{not json",
        "# a comment, then a blank line",
        "",
        {"command": "paint", "input": "clips/a.mp4"},
        {"command": "stylize", "input": "clips/missing.mp4", "style": "ink"},
        {"command": "stylize", "input": "clips/a.mp4", "output": "o.mp4", "style": "ink", "steps": "many"},
        {"command": "stylize", "input": "clips/a.mp4", "output": "p.mp4", "style": "ink"},
        {"command": "stylize", "input": "clips/b.mov", "output": "p.mp4", "style": "ink"},
        {"command": "animate", "input": "clips/a.mp4", "output": "y.avi"},
        {"command": "stylize", "input": "clips/a.mp4", "output": "z.mp4", "style": ""},
    )
    with pytest.raises(JobsError) as info:
        read_jobs(jobs)
    errors = info.value.errors
    assert [e.split(":")[1] for e in errors] == ["1", "2", "5", "6", "7", "9", "10", "11"]
    assert "unknown key 'stpes' (did you mean 'steps'?)" in errors[0]
    assert "not valid JSON" in errors[1]
    assert "'command' must be one of" in errors[2]
    assert "'clips/missing.mp4' does not exist" in errors[3]
    assert "--steps: expected int, got 'many'" in errors[4]
    assert "is also the output of jobs.jsonl:8" in errors[5]
    assert "unknown format '.avi'" in errors[6]
    assert "--style must not be empty" in errors[7]


def test_csv_and_jsonl_give_the_same_jobs(tmp_path, clips):
    row = {"command": "stylize", "input": "clips/a.mp4", "output": "a.mp4", "style": "ink wash", "steps": 3,
           "fuse-window": "0:0.25", "resize": "32x16", "vae_tiling": True, "max-frames": 2}  # fmt: skip
    jsonl = read_jobs(write_lines(tmp_path / "jobs.jsonl", row), output_dir=tmp_path / "out")
    csv_text = ",".join(row) + "\n" + ",".join(str(v).lower() if v is True else str(v) for v in row.values())
    (tmp_path / "jobs.csv").write_text(csv_text + "\n")
    csv = read_jobs(tmp_path / "jobs.csv", output_dir=tmp_path / "out")
    assert jsonl[0].options == csv[0].options
    options = csv[0].options
    assert (options.steps, options.fuse_window, options.resize, options.vae_tiling) == (
        3,
        (0.0, 0.25),
        (32, 16),
        True,
    )
    assert csv[0].output == str(tmp_path / "out" / "a.mp4") == jsonl[0].output  # relative: under --output-dir
    assert csv[0].input == str(tmp_path / "clips" / "a.mp4")  # relative: from the JOBS file's folder


def test_extend_input_and_evaluate_metrics(tmp_path, clips):
    jobs = read_jobs(
        write_lines(
            tmp_path / "jobs.jsonl",
            {"command": "extend", "input": "clips/a.mp4", "prompt": "a river", "guidance-scale": 3},
            {"command": "evaluate", "input": "clips/b.mov", "metric": "flicker,motion"},
        )
    )
    extend, evaluate = jobs
    assert extend.input is None and extend.options.init == str(tmp_path / "clips" / "a.mp4")
    assert extend.options.text_scale == 3.0 and extend.sources == [extend.options.init]
    assert extend.output == str(tmp_path / "clips" / "a_extended.mp4")  # the naming rule, beside the input
    assert evaluate.options.metrics == ("flicker", "motion")
    assert evaluate.output == str(tmp_path / "clips" / "b.metrics.json")


def test_naming_rule(tmp_path):
    assert output_for("stylize", "x/clip.mov", None) == Path("x/clip_stylized.mp4")
    assert output_for("stylize", "x/clip.mov", "out") == Path("out/clip.mp4")
    assert output_for("animate", "x/photo.png", None) == Path("x/photo_animated.mp4")
    assert output_for("extend", "x/clip.mp4", None) == Path("x/clip_extended.mp4")
    assert output_for("extend", None, "out") == Path("out/extended.mp4")
    assert output_for("evaluate", "x/clip.mp4", "out") == Path("out/clip.metrics.json")
    frames = tmp_path / "shot"  # a PNG-sequence folder is named after the folder
    frames.mkdir()
    assert output_for("stylize", frames / "%05d.png", "out") == Path("out/shot.mp4")


def test_inputs_with_the_same_name_are_refused_up_front(tmp_path, clips):
    write_video(clips / "a.mov", textured_frames(2, 32, 32), fps=8)
    paths = expand_inputs([clips])
    assert [p.name for p in paths] == ["a.mov", "a.mp4", "b.mov"]  # sorted; notes.md is not a video
    options = StylizeOptions(style="ink")
    with pytest.raises(VidforgeError, match="is also the output of"):
        input_jobs("stylize", paths, options, tmp_path / "out")
    with pytest.raises(VidforgeError, match="is an input of"):  # --output-dir is the input folder
        input_jobs("stylize", [clips / "b.mov", clips / "a.mp4"], options, clips)


def test_expanding_folders_and_lists(tmp_path, clips):
    images = tmp_path / "stills"
    images.mkdir()
    for name in ("b.webp", "a.jpg", "c.txt"):
        (images / name).write_bytes(b"x")
    assert [p.name for p in expand_inputs([images], "image", "image")] == ["a.jpg", "b.webp"]
    listing = tmp_path / "list.txt"
    listing.write_text("clips/b.mov  # a comment\n\nclips/a.mp4\nclips/b.mov\n")
    assert [p.name for p in expand_inputs([listing])] == ["b.mov", "a.mp4"]  # each once, in order
    assert names_several([listing]) and names_several([clips]) and names_several([images], "image")
    assert not names_several([clips / "a.mp4"])
    with pytest.raises(VidforgeError, match="is a directory without videos"):
        expand_inputs([images])


def test_is_done_needs_the_output_and_a_matching_settings_record(tmp_path, clips):
    """The one check behind --skip-existing: output + record with the same command, options after
    defaults and input content. The commands write the records; here the test writes them."""
    options = StylizeOptions(style="ink", model="tiny", steps=2)
    out = tmp_path / "a_ink.mp4"
    job = Job("1", "stylize", options, str(clips / "a.mp4"), str(out))
    inputs = {"input": settings.describe_input(clips / "a.mp4")}
    assert not is_done(job)  # no output
    out.write_bytes(b"video")
    assert not is_done(job)  # no record
    settings.write_settings(out, settings.record("stylize", options, inputs=inputs, output=out))
    assert is_done(job)
    for other in (
        Job("1", "stylize", StylizeOptions(style="ink", model="tiny", steps=3), job.input, job.output),
        Job(
            "1", "stylize", StylizeOptions(style="ink", model="tiny", steps=2, seed=5), job.input, job.output
        ),
        Job("1", "animate", options, job.input, job.output),
        Job("1", "stylize", options, str(clips / "b.mov"), job.output),  # other content
    ):
        assert not is_done(other)
    # seed -1 ("any seed") matches a record holding the seed that was drawn
    random = StylizeOptions(style="ink", model="tiny", steps=2, seed=-1)
    drawn = settings.resolve_seed(random)
    settings.write_settings(out, settings.record("stylize", drawn, inputs=inputs, output=out))
    assert is_done(Job("1", "stylize", random, job.input, job.output))
    assert not is_done(job)  # seed 0 asked for, another one recorded
    # the input changed since: not done
    settings.write_settings(out, settings.record("stylize", options, inputs=inputs, output=out))
    write_video(clips / "a.mp4", textured_frames(3, 32, 32, seed=7), fps=8)
    assert not is_done(job)


def test_is_done_from_an_earlier_results_file(tmp_path, clips):
    options = StylizeOptions(style="ink")
    out = tmp_path / "out.mp4"
    job = Job("1", "stylize", options, str(clips / "a.mp4"), str(out))
    results = tmp_path / "results.jsonl"
    line = {
        "output": str(out),
        "status": "ok",
        "settings_hash": settings_hash(job),
        "input_sha256": inputs_digest(job),
    }
    results.write_text(json.dumps(line) + "\n")
    assert not is_done(job, read_results(results))  # the output is gone
    out.write_bytes(b"video")
    assert is_done(job, read_results(results))
    changed = Job("1", "stylize", StylizeOptions(style="oil"), job.input, job.output)
    assert not is_done(changed, read_results(results))
    with results.open("a") as f:  # a later failure of the same output forgets the earlier success
        f.write(json.dumps({**line, "status": "failed"}) + "\n" + "garbage\n")
    assert not is_done(job, read_results(results))


def test_devices():
    assert parse_devices(None) == [] and parse_devices("cpu,cpu") == ["cpu", "cpu"]
    assert parse_devices("cuda:0, cuda:1") == ["cuda:0", "cuda:1"]
    import torch

    assert parse_devices("all") == [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    for bad in ("gpu0", "cuda:0,cuda:0", "auto", ","):
        with pytest.raises(OptionError, match="--devices"):
            parse_devices(bad)


@pytest.mark.parametrize("name", ["jobs.jsonl", "jobs.csv"])
def test_the_example_jobs_files_are_valid(name):
    examples = Path(__file__).parents[1] / "examples"
    jobs = read_jobs(examples / name, output_dir="/tmp/vidforge-examples")
    assert [job.id for job in jobs][:3] == ["ink", "oil", "waves"]
    assert all(job.output.startswith("/tmp/vidforge-examples/") for job in jobs)
