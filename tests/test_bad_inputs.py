"""Bad input across the four commands, through the real CLI: one ``error:`` line, exit 2 for
usage and 1 for runtime problems, no traceback, no leftover files, nothing outside the output
path touched. Then the cases that need a real process: SIGTERM, SIGKILL then --resume."""

import os
import signal
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest
from conftest import textured_frames
from PIL import Image
from typer.testing import CliRunner

from vidforge.cli import app
from vidforge.core.writers import write_video

runner = CliRunner()
TINY = ["--model", "tiny", "--steps", "2", "--device", "cpu", "--progress", "none"]


def huge_png(path, width=20000, height=20000):
    """A PNG whose header claims width x height (a decompression bomb), with almost no data."""
    raw = zlib.compress(b"\x00" * 16)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b""))
    return path


class Payload:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['VIDFORGE_TEST_MARKER']}",))


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Inputs, good and bad, in a folder of their own (outputs go elsewhere)."""
    d = tmp_path_factory.mktemp("media")
    write_video(d / "clip.mp4", textured_frames(6, 64, 64), fps=8)
    Image.fromarray(textured_frames(1, 64, 80)[0]).save(d / "image.png")
    (d / "empty.mp4").write_bytes(b"")
    (d / "corrupt.mp4").write_bytes(b"\x00\x01not a video" * 50)
    (d / "corrupt.png").write_bytes(b"not a png" * 9)
    (d / "nopng").mkdir()
    (d / "nopng" / "readme.txt").write_text("x")
    write_video(d / "tiny8.mp4", textured_frames(4, 8, 8), fps=8)
    mixed = d / "mixed"
    mixed.mkdir()
    Image.fromarray(textured_frames(1, 32, 32)[0]).save(mixed / "00000.png")
    Image.fromarray(textured_frames(1, 48, 32)[0]).save(mixed / "00001.png")
    for name, text in (("badfps", "fast"), ("zerofps", "0")):
        folder = d / name
        write_video(folder / "%05d.png", textured_frames(3, 32, 32), fps=8)
        (folder / "fps.txt").write_text(text)
    huge_png(d / "huge.png")
    os.environ["VIDFORGE_TEST_MARKER"] = str(d / "MARKER")
    import torch

    torch.save({"state_dict": {"w": torch.zeros(2)}, "evil": Payload()}, d / "evil.pt")
    (d / "a_file").write_text("x")
    return d


def rows(m, out):
    """(argv, exit code, what the error line says), 50 of them."""
    return [
        # stylize: inputs
        (["stylize", m / "missing.mp4", "--style", "x", "-o", out], 1, "does not exist"),
        (["stylize", m / "empty.mp4", "--style", "x", "-o", out], 1, "is empty"),
        (["stylize", m / "corrupt.mp4", "--style", "x", "-o", out], 1, "cannot decode video"),
        (["stylize", m / "nopng", "--style", "x", "-o", out], 1, "is a directory"),
        (["stylize", m / "image.png", "--style", "x", "-o", out], 1, "is an image file"),
        (["stylize", m / "mixed", "--style", "x", "-o", out, *TINY], 1, "the first is 32x32"),
        (["stylize", m / "badfps", "--style", "x", "-o", out], 1, "expected a frame rate"),
        (["stylize", m / "zerofps", "--style", "x", "-o", out], 1, "must be a positive number"),
        (["stylize", m / "tiny8.mp4", "--style", "x", "-o", out, *TINY], 1, "at least 12x12"),
        # stylize: options
        (["stylize", m / "clip.mp4", "--style", "x", "--image-scale", "nan", "-o", out], 2, "finite"),
        (["stylize", m / "clip.mp4", "--style", "x", "--image-scale", "inf", "-o", out], 2, "finite"),
        (["stylize", m / "clip.mp4", "--style", "x", "--text-scale", "1e308", "-o", out], 2, "--text-scale must be in"),
        (["stylize", m / "clip.mp4", "--style", "x", "--attn-scale", "-inf", "-o", out], 2, "finite"),
        (["stylize", m / "clip.mp4", "--style", "x", "--clip-guidance", "inf", "-o", out], 2, "finite"),
        (["stylize", m / "clip.mp4", "--style", "x", "--clip-guidance", "5", "-o", out], 2, "--clip-guidance must be in"),
        (["stylize", m / "clip.mp4", "--style", "x", "--steps", "0", "-o", out], 2, "--steps"),
        (["stylize", m / "clip.mp4", "--style", "x", "--steps", "5000", "-o", out], 2, "--steps"),
        (["stylize", m / "clip.mp4", "--style", "x", "--resize", "100000x100000", "-o", out], 2, "at most 8192"),
        (["stylize", m / "clip.mp4", "--style", "x", "--resize", "big", "-o", out], 2, "WIDTHxHEIGHT"),
        (["stylize", m / "clip.mp4", "--style", "x", "--seed", str(2**70), "-o", out], 2, "--seed must be"),
        (["stylize", m / "clip.mp4", "--style", "x", "--device", "tpu", "-o", out], 2, "unknown device"),
        (["stylize", m / "clip.mp4", "--style", "x", "--fuse-window", "0.5:0.2", "-o", out], 2, "--fuse-window"),
        (["stylize", m / "clip.mp4", "--style", "x", "--max-side", "10", "-o", out], 2, "--max-side"),
        (["stylize", m / "clip.mp4", "--style", "x", "--crf", "80", "-o", out], 2, "--crf must be in"),
        (["stylize", m / "clip.mp4", "--style", "x", "--progress", "loud", "-o", out], 2, "--progress must be"),
        # stylize: outputs and models
        (["stylize", m / "clip.mp4", "--style", "x", "-o", m / "nopng"], 1, "existing folder"),
        (["stylize", m / "clip.mp4", "--style", "x", "-o", m / "nowhere" / "o.mp4"], 1, "does not exist"),
        (["stylize", m / "clip.mp4", "--style", "x", "-o", m / "a_file" / "o.mp4"], 1, "is a file, not a folder"),
        (["stylize", m / "clip.mp4", "--style", "x", "-o", out.with_name("x" * 300 + ".mp4")], 1, "the file name is too long"),
        (["stylize", m / "clip.mp4", "--style", "x", "-o", out.with_suffix(".png")], 1, "numbered pattern"),
        (["stylize", m / "clip.mp4", "--style", "x", "-o", m / "clip.mp4", "--overwrite"], 1, "is the input"),
        (["stylize", m / "clip.mp4", "--style", "x", "-o", out.with_suffix(".avi")], 1, "unknown format"),
        (["stylize", m / "clip.mp4", "--style", "x", "--codec", "prores", "-o", out], 1, "holds h264"),
        (["stylize", m / "clip.mp4", "--style", "x", "--model", "nope", "-o", out], 1, "unknown model"),
        (["stylize", m / "clip.mp4", "--style", "x", "--settings", m / "none.json", "-o", out], 1, "does not exist"),
        # animate
        (["animate", m / "missing.png", "-o", out, *TINY], 1, "does not exist"),
        (["animate", m / "corrupt.png", "-o", out, *TINY], 1, "not a readable image"),
        (["animate", m / "huge.png", "-o", out, *TINY], 1, "too large"),
        (["animate", m / "image.png", "--frames", "0", "-o", out], 2, "--frames"),
        (["animate", m / "image.png", "--frames", "100000", "-o", out, *TINY], 1, "lower --frames"),
        (["animate", m / "image.png", "--eta", "2", "-o", out], 2, "--eta"),
        (["animate", m / "image.png", "--height", "100", "-o", out], 2, "multiple of 64"),
        (["animate", m / "image.png", "--output-fps", "0", "-o", out], 2, "--output-fps"),
        (["animate", m / "image.png", "--model", m / "evil.pt", "-o", out, "--device", "cpu"], 1, "checkpoint has names"),
        # extend
        (["extend", "--prompt", "x", "--fps", "inf", "-o", out, *TINY], 2, "finite"),
        (["extend", "--prompt", "x", "--noise-recycle", "inf", "-o", out], 2, "finite"),
        (["extend", "--prompt", "x", "--text-scale", "inf", "-o", out], 2, "finite"),
        (["extend", "--prompt", "x", "--prompt-frames", "8", "--frames", "12", "-o", out, *TINY], 2, "smaller than the clip length"),
        (["extend", "--prompt", "x", "--init", m / "missing.mp4", "-o", out, *TINY], 1, "does not exist"),
        (["extend", "--prompt", "x", "--resume", "-o", out, *TINY], 1, "no checkpoint"),
        (["extend", "--prompt", "x", "--staged-guidance", "2", "-o", out], 2, "--staged-guidance"),
        # evaluate
        (["evaluate", m / "missing.mp4"], 1, "does not exist"),
        (["evaluate", m / ("x" * 300 + ".mp4")], 1, "File name too long"),
        (["animate", m / ("x" * 300 + ".png"), "-o", out, *TINY], 1, "File name too long"),
        (["evaluate", m / "clip.mp4", "--metric", "nope"], 2, "unknown metric"),
        (["evaluate", m / "clip.mp4", "--max-frames", "1"], 2, "--max-frames"),
        (["evaluate", m / "clip.mp4", "--csv", out.with_suffix(".txt")], 1, ".csv"),
        (["evaluate", m / "clip.mp4", "--metric", "warp-error", "--source", m / "missing.mp4"], 1, "does not exist"),
    ]  # fmt: skip


def listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_every_bad_input_is_one_error_line_with_the_right_code_and_touches_nothing(media, tmp_path):
    out = tmp_path / "out.mp4"
    table = rows(media, out)
    assert len(table) >= 40
    before = listing(media)
    failures = []
    for argv, code, message in table:
        result = runner.invoke(app, [str(a) for a in argv])
        lines = result.stderr.strip().splitlines()
        ok = (
            result.exit_code == code and len(lines) == 1 and lines[0].startswith("error: ")
            and message in lines[0] and "Traceback" not in result.output and result.stdout == ""
        )  # fmt: skip
        if not ok:
            failures.append(
                f"{' '.join(map(str, argv[:3]))}...: exit {result.exit_code}, {result.stderr.strip()!r}"
            )
        if listing(tmp_path) != []:  # no output, no temporary part, no extend state
            failures.append(f"{argv[:3]} left {listing(tmp_path)}")
            for leftover in tmp_path.iterdir():
                subprocess.run(["rm", "-rf", str(leftover)])
    assert not failures, "\n".join(failures)
    assert listing(media) == before  # nothing outside the output path touched
    assert not (media / "MARKER").exists()  # the pickle's payload never ran


def start(argv, tmp_path):
    return subprocess.Popen(
        [sys.executable, "-m", "vidforge", *map(str, argv)], cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_for(condition, timeout=240):
    end = time.time() + timeout
    while time.time() < end:
        if condition():
            return True
        time.sleep(0.2)
    return False


def parts(folder):
    return [p for p in folder.iterdir() if ".part" in p.name]


def test_sigterm_stops_stylize_cleanly(tmp_path):
    clip = write_video(tmp_path / "in.mp4", textured_frames(48, 64, 64), fps=8)
    out = tmp_path / "out.mp4"
    proc = start(["stylize", clip, "--style", "x", "-o", out, "--batch-frames", "2", *TINY], tmp_path)
    assert wait_for(lambda: parts(tmp_path)), "the run never started writing"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and err.strip().splitlines() == ["error: terminated"]
    assert not out.exists() and parts(tmp_path) == []  # the old code left its .part file


def committed_chunks(state):
    import json

    try:
        return len(json.loads((state / "meta.json").read_text())["chunks"])
    except (OSError, ValueError, KeyError):
        return 0


def test_sigterm_leaves_extend_resumable_and_sigkill_parts_are_cleaned_on_resume(tmp_path):
    from vidforge.core.video_io import read_video

    common = [
        "extend",
        "--prompt",
        "x",
        "--frames",
        "60",
        "--height",
        "32",
        "--width",
        "32",
        *TINY,
        "--steps",
        "6",
    ]
    out = tmp_path / "out" / "%05d.png"
    state = tmp_path / "out.extend-state"
    proc = start([*common, "-o", out], tmp_path)
    assert wait_for(lambda: committed_chunks(state) >= 1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert (
        proc.returncode == 143
        and "continue with --resume" in err
        and err.strip().endswith("error: terminated")
    )
    assert read_video(out).num_frames >= 8 and state.exists() and parts(tmp_path) == []
    # SIGKILL cannot be handled: the run's temporary part stays, until --resume removes it
    proc = start([*common, "-o", out, "--resume"], tmp_path)
    assert wait_for(lambda: parts(tmp_path))
    proc.kill()
    proc.wait()
    assert parts(tmp_path)
    done = subprocess.run([sys.executable, "-m", "vidforge", *map(str, common), "-o", str(out), "--resume"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert parts(tmp_path) == [] and not state.exists()
    full = tmp_path / "full" / "%05d.png"
    whole = subprocess.run([sys.executable, "-m", "vidforge", *map(str, common), "-o", str(full)],
                           cwd=tmp_path, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert whole.returncode == 0, whole.stderr
    assert np.array_equal(read_video(out).frames, read_video(full).frames)  # resumed = uninterrupted
