"""The CLI: four commands, one-line errors with the right exit codes, no tracebacks, no half outputs.

Commands are invoked in-process through ``vidforge.cli.main`` (the console entry point, so usage
errors are formatted as in a shell) and once through a real subprocess.
"""

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from vidforge.cli import app, main

runner = CliRunner()


def run_main(args, capsys):
    with pytest.raises(SystemExit) as info:
        main(args)
    out, err = capsys.readouterr()
    return info.value.code, out, err


def assert_one_line_error(err, *fragments):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


def test_help_lists_the_four_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("stylize", "animate", "extend", "evaluate"):
        assert command in result.output


def test_version(capsys):
    code, out, _ = run_main(["--version"], capsys)
    assert code == 0 and out.strip() == "vidforge 0.1.0"


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["stylize", "x.mp4", "--style", "ink", "--steps", "0"], "--steps must be at least 1"),
        (["extend", "--prompt", "river", "--frames", "-5"], "--frames must be at least 1"),
        (["evaluate", "x.mp4", "--metric", "sharpness"], "unknown metric sharpness"),
        (["stylize", "x.mp4"], "--style must not be empty"),
        (["animate", "x.png", "--height", "100"], "--height must be a positive multiple of 64"),
        (["stylize", "x.mp4", "--style", "ink", "--attention", "magic"], "--attention must be one of"),
        (["nonsense"], "No such command"),
    ],
)
def test_impossible_values_are_usage_errors(capsys, args, fragment):
    code, out, err = run_main(args, capsys)
    assert code == 2
    assert out == ""
    assert_one_line_error(err, fragment)


def test_existing_output_needs_overwrite(capsys, tmp_path, clip_path):
    existing = tmp_path / "out.mp4"
    existing.write_bytes(b"keep me")
    code, _, err = run_main(["stylize", str(clip_path), "--style", "ink", "-o", str(existing)], capsys)
    assert code == 1
    assert_one_line_error(err, "already exists", "--overwrite")
    assert existing.read_bytes() == b"keep me"


def test_unknown_output_format(capsys, tmp_path, clip_path):
    code, _, err = run_main(
        ["stylize", str(clip_path), "--style", "ink", "-o", str(tmp_path / "o.avi")], capsys
    )
    assert code == 1
    assert_one_line_error(err, "unknown format '.avi'")


def test_real_subprocess_error_has_no_traceback(tmp_path):
    missing = tmp_path / "missing.mp4"
    proc = subprocess.run(
        [sys.executable, "-m", "vidforge", "stylize", str(missing), "--style", "ink", "--model", "tiny"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert_one_line_error(proc.stderr, "does not exist", str(missing))
    assert list(tmp_path.iterdir()) == []


def test_real_subprocess_help():
    proc = subprocess.run(
        [sys.executable, "-m", "vidforge", "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and "evaluate" in proc.stdout


def test_help_into_a_closed_pipe_exits_quietly():
    proc = subprocess.run(
        f"{sys.executable} -m vidforge evaluate --help | head -c 10",
        shell=True,
        capture_output=True,
        text=True,
    )
    assert "Traceback" not in proc.stderr and "Error" not in proc.stderr


def test_batch_script_keeps_going_and_reports_failures(tmp_path, clip_path):
    """examples/batch.sh over a folder with one good clip and one corrupt file: the good one is
    stylized and scored, the bad one named in one error line, and the script exits 1."""
    import json
    import os
    from pathlib import Path

    clips = tmp_path / "clips"
    clips.mkdir()
    clip_path.rename(clips / "good.mov")
    (clips / "broken.mp4").write_bytes(b"\x00\x01 not a video" * 200)
    out = tmp_path / "out"
    script = Path(__file__).parents[1] / "examples" / "batch.sh"
    env = {
        "VIDFORGE": str(Path(sys.executable).parent / "vidforge"),
        "PATH": "/usr/bin:/bin",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),  # this checkout's vidforge, if it is first
    }
    proc = subprocess.run(
        ["bash", str(script), str(clips), str(out), "ink wash", "--model", "tiny", "--steps", "1", "--max-frames", "3"],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "broken.mp4" in errors[0], proc.stderr
    assert sorted(p.name for p in out.glob("*.mp4")) == ["good.mp4"]
    metrics = json.loads((out / "metrics.json").read_text())["videos"][0]["metrics"]
    assert metrics["warp-error"]["value"] is not None and metrics["flicker"]["value"] is not None


def test_corrupt_video_in_a_real_shell_prints_exactly_one_line(tmp_path):
    """decord and ffmpeg print to file descriptor 2 themselves; a user must still see one line."""
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 20)
    proc = subprocess.run(
        [sys.executable, "-m", "vidforge", "stylize", str(broken), "--style", "ink", "--model", "tiny"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1
    assert_one_line_error(proc.stderr, "cannot decode video", str(broken))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.mp4"]
