"""``vidforge evaluate`` from the command line: known answers on synthetic PNG-sequence videos
(lossless), the JSON shape, CSV and plot files, and one-line errors for bad inputs."""

import csv
import json

import numpy as np
import pytest
import torch
from test_evaluate_metrics import alternate_gain, shifted_error, sliding_frames

from vidforge.cli import main
from vidforge.core.writers import write_video


def evaluate(args, capsys):
    with pytest.raises(SystemExit) as info:
        main(["evaluate", *map(str, args)])
    out, err = capsys.readouterr()
    return info.value.code, out, err


@pytest.fixture
def videos(tmp_path):
    """source (sliding texture), output (same frames, alternating brightness), constant, black/white."""
    source = sliding_frames(num_frames=6, shift=(2, 1))
    output = alternate_gain(source)
    paths = {
        "source": write_video(tmp_path / "source" / "%05d.png", source, fps=8),
        "output": write_video(tmp_path / "output" / "%05d.png", output, fps=8),
        "constant": write_video(
            tmp_path / "constant" / "%05d.png", np.full((5, 32, 32, 3), 90, np.uint8), fps=8
        ),
        "black_white": write_video(
            tmp_path / "bw" / "%05d.png",
            np.stack([np.zeros((32, 32, 3)), np.full((32, 32, 3), 255)] * 3).astype(np.uint8),
            8,
        ),
    }
    expected = np.mean([shifted_error(output, t, t + 1, (2, 1), "l2") for t in range(5)])
    return paths, expected


def test_weight_free_metrics_known_answers_json(videos, capsys):
    paths, expected = videos
    code, out, err = evaluate([paths["output"], "--source", paths["source"], "--json"], capsys)
    assert code == 0, err
    doc = json.loads(out)  # stdout holds the JSON object and nothing else
    assert set(doc) == {"videos", "mean", "sets"} and doc["sets"] == {}  # one shape for any count
    assert len(doc["videos"]) == 1 and doc["videos"][0]["video"] == str(paths["output"])
    m = doc["videos"][0]["metrics"]
    assert doc["mean"]["metrics"]["flicker"]["value"] == m["flicker"]["value"]
    assert set(m) == {"warp-error", "flicker", "motion", "repetition"}
    for result in m.values():
        assert isinstance(result["value"], float) and isinstance(result["variant"], str)
        assert all(isinstance(v, float) for v in result["per_frame"])
    assert m["warp-error"]["value"] == pytest.approx(expected, rel=0.1)
    assert m["warp-error"]["flow"] == "dis" and m["warp-error"]["flow_on"] == "source"
    assert "DIS" in m["warp-error"]["variant"] and len(m["warp-error"]["per_frame"]) == 5
    assert m["motion"]["value"] == pytest.approx(np.sqrt(5), rel=0.05)
    assert m["repetition"]["value"] < 0.1


def test_warp_error_without_source_says_so(videos, capsys):
    paths, _ = videos
    code, out, _ = evaluate([paths["source"], "--metric", "warp-error", "--json"], capsys)
    result = json.loads(out)["videos"][0]["metrics"]["warp-error"]
    assert code == 0 and result["flow_on"] == "video" and "no --source" in result["variant"]
    assert result["value"] < 2e-3


def test_flicker_constant_and_black_white_and_mean_row(videos, capsys, tmp_path):
    paths, _ = videos
    args = [paths["constant"], paths["black_white"], "-m", "flicker", "-m", "repetition", "--json"]
    code, out, _ = evaluate([*args, "--csv", tmp_path / "s.csv", "--plot", tmp_path / "p.png"], capsys)
    doc = json.loads(out)
    assert code == 0 and set(doc) == {"videos", "mean", "sets"}
    constant, black_white = (v["metrics"]["flicker"]["value"] for v in doc["videos"])
    assert constant == 1.0 and black_white == 0.0
    assert doc["mean"]["video"] == "mean"
    assert doc["mean"]["metrics"]["flicker"]["value"] == pytest.approx(0.5)
    assert doc["mean"]["metrics"]["flicker"]["n"] == 2
    rows = list(csv.reader((tmp_path / "s.csv").open()))
    assert rows[0] == ["video", "flicker", "repetition"] and [r[0] for r in rows[1:]][-1] == "mean"
    assert all(float(cell) >= 0 for row in rows[1:] for cell in row[1:])  # numbers only
    assert float(rows[3][1]) == 0.5 and len(rows) == 4
    variants = dict(list(csv.reader((tmp_path / "s.variants.csv").open()))[1:])
    assert set(variants) == {"flicker", "repetition"} and "VBench" in variants["flicker"]
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_folder_and_list_inputs_and_table(videos, capsys, tmp_path):
    paths, _ = videos
    folder = tmp_path / "outs"
    folder.mkdir()
    for name in ("a", "b"):
        write_video(folder / f"{name}" / "%05d.png", np.full((3, 16, 16, 3), 50, np.uint8), fps=8)
    listing = tmp_path / "list.txt"
    listing.write_text("# outputs\nouts/a\n\nbw\n")
    code, out, err = evaluate([folder, listing, "-m", "flicker"], capsys)
    assert code == 0 and out == ""  # the table goes to stderr, stdout stays clean
    assert "mean" in err and "VBench temporal flickering" in err
    rows = [line.split("│")[1].strip() for line in err.splitlines() if line.count("│") > 2]
    assert sorted(rows) == ["a", "b", "bw", "mean"]  # outs/a listed twice, scored once


def test_looping_video_has_high_repetition(capsys, tmp_path):
    clip = sliding_frames(num_frames=4, shift=(3, 0))
    loop = write_video(tmp_path / "loop" / "%05d.png", np.concatenate([clip] * 3), fps=8)
    code, out, _ = evaluate([loop, "-m", "repetition", "--json"], capsys)
    result = json.loads(out)["videos"][0]["metrics"]["repetition"]
    assert code == 0 and result["value"] > 0.9 and result["lag"] == 4


def test_failed_metric_alone_exit_1(videos, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    paths, _ = videos
    code, out, err = evaluate([paths["constant"], "-m", "flicker", "-m", "clip-frame", "--json"], capsys)
    metrics = json.loads(out)["videos"][0]["metrics"]
    assert code == 1
    assert metrics["flicker"]["value"] == 1.0
    assert metrics["clip-frame"]["value"] is None and "ViT-L-14" in metrics["clip-frame"]["variant"]
    lines = [ln for ln in err.splitlines() if ln.strip() and " (100%) " not in ln]  # progress lines aside
    assert len(lines) == 1 and lines[0].startswith("error: ") and "clip-frame" in lines[0]


def test_corrupt_file_is_one_line_error(capsys, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 10)
    code, out, err = evaluate([bad], capsys)
    assert code == 1 and out == ""
    assert err.startswith("error: cannot decode video") and len(err.strip().splitlines()) == 1


def test_mismatched_source_length(videos, capsys):
    paths, _ = videos
    code, out, err = evaluate([paths["constant"], "--source", paths["source"], "-m", "warp-error"], capsys)
    assert code == 1
    assert "has 6 frames but the video has 5" in err and "--max-frames 5" in err
    code, _, err = evaluate(
        [paths["constant"], "--source", paths["source"], "-m", "warp-error", "--max-frames", "5", "-q"],
        capsys,
    )
    assert code == 0 and err == ""  # same length and, after resizing the source, same size


@pytest.mark.parametrize(
    "args, code, fragment",
    [
        (["-m", "sharpness"], 2, "unknown metric sharpness"),
        (["-m", "clip-text"], 2, "--metric clip-text needs --prompt"),
        (["-m", "fvd"], 2, "--metric fvd needs --source"),
        (["--plot", "scores.jpg"], 1, "--plot 'scores.jpg': the file name must end in .png"),
        (["--flow", "farneback"], 2, "--flow must be dis or raft"),
    ],
)
def test_bad_options(videos, capsys, args, code, fragment):
    paths, _ = videos
    got, out, err = evaluate([paths["constant"], *args], capsys)
    assert got == code and out == "" and fragment in err and len(err.strip().splitlines()) == 1


def test_missing_input(capsys, tmp_path):
    code, _, err = evaluate([tmp_path / "nope.mp4"], capsys)
    assert code == 1 and "does not exist" in err


def test_source_folder_pairs_with_inputs_in_order(videos, capsys, tmp_path):
    paths, expected = videos
    outs, srcs = tmp_path / "outs", tmp_path / "srcs"
    outs.mkdir(), srcs.mkdir()
    source = sliding_frames(num_frames=6, shift=(2, 1))
    for i in range(2):
        write_video(srcs / f"{i}" / "%05d.png", source, fps=8)
        write_video(outs / f"{i}" / "%05d.png", alternate_gain(source), fps=8)
    code, out, _ = evaluate(
        [outs, "--source", srcs, "-m", "warp-error", "--warp-variant", "dvp", "--json"], capsys
    )
    doc = json.loads(out)
    assert code == 0
    for video in doc["videos"]:
        result = video["metrics"]["warp-error"]
        assert result["flow_on"] == "source" and result["norm"] == "l1" and "DVP" in result["variant"]
    code, _, err = evaluate(
        [outs, "--source", tmp_path / "srcs", paths["constant"], "-m", "warp-error"], capsys
    )
    assert code == 1 and "cannot be paired" in err


def test_nan_values_become_null_in_json():
    from vidforge.evaluate.report import MetricResult, Report, VideoReport

    report = Report(
        [
            VideoReport(
                "v.mp4", {"m": MetricResult(float("nan"), "x", [1.0, float("nan")], {"s": float("inf")})}
            )
        ]
    )
    doc = json.loads(report.to_json())
    assert doc["videos"][0]["metrics"]["m"] == {
        "value": None,
        "variant": "x",
        "s": None,
        "per_frame": [1.0, None],
    }


def test_vbench_format_has_vbench_layout_for_the_shared_dimension(videos, capsys):
    paths, _ = videos
    args = [paths["constant"], paths["black_white"], "-m", "flicker", "-m", "motion", "--format", "vbench"]
    code, out, err = evaluate(args, capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert set(doc) == {"temporal_flickering"}  # motion is not VBench's dynamic degree: left out
    mean, per_video = doc["temporal_flickering"]
    assert mean == pytest.approx(0.5)
    assert per_video == [
        {"video_path": str(paths["constant"]), "video_results": 1.0},
        {"video_path": str(paths["black_white"]), "video_results": 0.0},
    ]
    code, out, err = evaluate([paths["constant"], "-m", "motion", "--format", "vbench"], capsys)
    assert code == 2 and out == "" and "flicker (temporal_flickering)" in err


def test_prompts_file_gives_each_video_its_prompt(videos, tmp_path):
    from vidforge.evaluate import EvaluateOptions, run

    paths, _ = videos
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({"constant": "grey", paths["black_white"].name: "stripes"}))
    seen = []

    class FakeClip:
        name = "fake"

        def encode_images(self, images):
            return torch.full((len(images), 4), 0.5)  # unit rows

        def encode_text(self, texts):
            seen.extend(texts)
            return torch.full((len(texts), 4), 0.5)

    options = EvaluateOptions(metrics=("clip-text",), prompts=str(prompts), prompt="fallback")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("vidforge.evaluate.pipeline._load_clip", lambda spec, device: FakeClip())
        report = run([paths["constant"], paths["black_white"], paths["source"]], options)
    assert seen == ["grey", "stripes", "fallback"]
    assert [v.metrics["clip-text"].extra["prompt"] for v in report.videos] == seen
    assert all(v.metrics["clip-text"].value == pytest.approx(1.0) for v in report.videos)


@pytest.mark.parametrize(
    "content, message",
    [(None, "does not exist"), ("{not json", "not a readable JSON"), ('["a"]', "JSON object"),
     ('{"a.mp4": ""}', "non-empty prompt")],
)  # fmt: skip
def test_bad_prompts_file_is_one_error_line(videos, tmp_path, capsys, content, message):
    paths, _ = videos
    prompts = tmp_path / "prompts.json"
    if content is not None:
        prompts.write_text(content)
    code, out, err = evaluate([paths["constant"], "-m", "clip-text", "--prompts", prompts], capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 1 and out == "" and len(lines) == 1 and message in lines[0]
