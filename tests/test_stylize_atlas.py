"""`stylize --mode atlas`: the hash grid, the fit on a texture with known motion, a known colour
edit of the canonical image, the saved fit, and the CLI's edges.

One fit of a translating and zooming texture (48x32, 8 frames, tiny grid) is shared by the whole
module through the saved-fit cache in a module-scoped folder: the first run fits, the others load.
"""

import json
import shutil
import subprocess
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import moving_texture

from vidforge.cli import main
from vidforge.core.flow import video_flows
from vidforge.core.video_io import read_video
from vidforge.core.writers import write_video
from vidforge.evaluate.metrics import warp_error
from vidforge.stylize import StylizeOptions, run
from vidforge.stylize.atlas import pipeline as atlas_pipeline
from vidforge.stylize.atlas.cache import FIELDS_FILE, META_FILE
from vidforge.stylize.atlas.canonical import blend_mask
from vidforge.stylize.atlas.fields import HashGrid, anneal_weights, level_resolutions

# tiny sizes: 150 iterations of 1024 pixels, 8 levels of 2^12 entries
FIT = {"atlas_iterations": 150, "atlas_batch": 1024, "atlas_levels": 8, "atlas_table": 12}
FIT_ARGS = [a for k, v in FIT.items() for a in ("--" + k.replace("_", "-"), str(v))]
FAST = ["--model", "tiny", "--steps", "2", "--device", "cpu"]
PSNR_TARGET = 30.0  # dB, the target at tiny sizes (measured: 31.4 fields, 31.3 canonical)


def colour(frames: np.ndarray) -> np.ndarray:
    """The known edit: invert and rotate the channels (exact on uint8, commutes with sampling)."""
    return 255 - frames[..., [2, 0, 1]]


class ColourEdit:
    """A stand-in for StylizePipeline whose 'stylization' is :func:`colour`."""

    device = torch.device("cpu")
    attention_backend = "none"
    bundle = SimpleNamespace(vae_scale_factor=8, name="colour")

    def __init__(self, per_frame=colour):
        self.calls, self.streamed, self.per_frame = [], 0, per_frame

    def __call__(self, frames, options, bars=None):
        self.calls.append(frames.shape)
        return colour(frames)

    def stream(self, frames, options, bars=None, num_frames=None):
        for start in range(0, len(frames), options.batch_frames):
            self.streamed += 1
            yield self.per_frame(frames[start : start + options.batch_frames])


@pytest.fixture(scope="module")
def atlas(tmp_path_factory):
    """The texture as a PNG sequence (lossless, so the CLI reads exactly the fitted frames) and one
    fit of it with the colour edit, saved in a module-wide cache."""
    folder = tmp_path_factory.mktemp("atlas")
    frames = moving_texture(8, 32, 48)
    clip = write_video(folder / "clip" / "%05d.png", frames, fps=10)
    threads = torch.get_num_threads()
    # the fit's ops are small (1024 pixels): one thread avoids OpenMP spinning on shared cores
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VIDFORGE_CACHE", str(folder / "cache"))
        edit = ColourEdit()
        result = run(clip, StylizeOptions(style="ink", mode="atlas", **FIT), pipeline=edit)
        yield SimpleNamespace(clip=clip, cache=folder / "cache", frames=frames, result=result, edit=edit)
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------------ hash grid


def test_dense_level_interpolates_its_corners_exactly():
    grid = HashGrid(torch.tensor([[4.0, 2.0]]), features=2, log2_table=8)  # 5x3 corners: dense
    with torch.no_grad():
        grid.table.copy_(torch.arange(30.0).view(15, 2))
    node = grid(torch.tensor([[3 / 4, 1 / 2]]))  # corner (3, 1): index 3 + 1·5 = 8
    assert torch.equal(node, torch.tensor([[16.0, 17.0]]))
    middle = grid(torch.tensor([[3.5 / 4, 1 / 2]]))  # halfway between corners 8 and 9
    assert torch.allclose(middle, torch.tensor([[17.0, 18.0]]))


def test_hashed_levels_stay_in_their_table_and_are_continuous():
    resolutions = level_resolutions(6, 4, (300.0, 200.0, 7.0))
    grid = HashGrid(resolutions, features=2, log2_table=6)
    assert grid.dense < 6 and grid.table.shape[0] <= 6 * 2**6
    x = torch.rand(500, 3, generator=torch.Generator().manual_seed(0))
    out = grid(x)
    assert out.shape == (500, 12) and torch.isfinite(out).all()
    nearby = grid(x + 1e-6)
    assert (nearby - out).abs().max() < 1e-6  # table entries are ±1e-4; a 1e-6 step moves little


def test_levels_are_geometric_and_anneal_opens_them_coarse_to_fine():
    res = level_resolutions(5, 16, (256.0, 128.0))
    assert torch.equal(res[-1], torch.tensor([256.0, 128.0])) and res[0, 0] == 16
    assert (res[1:] >= res[:-1]).all()
    assert anneal_weights(4, 0.0).sum() == 0
    assert torch.equal(anneal_weights(4, 1.0), torch.ones(4))
    half = anneal_weights(4, 0.5)
    assert half[0] == 1 and half[1] == 1 and half[3] == 0


def test_progress_bar_shows_the_fit_status():
    from vidforge.core.progress import Bars

    seen = []
    with Bars(disable=False) as bars:
        for _ in bars.track(range(2), "atlas fit", status=lambda: " loss 0.12345"):
            seen.append([task.description for task in bars._progress.tasks])
    assert seen == [["atlas fit"], ["atlas fit loss 0.12345"]]


# --------------------------------------------------------------------------- fit and known colour edit


def test_fit_reaches_the_psnr_target_on_a_translating_zooming_texture(atlas):
    info = atlas.result.info
    assert info["mode"] == "atlas" and info["atlas_fit"] == "fitted"
    assert info["atlas_psnr"] >= PSNR_TARGET, info  # C(D(x, y, t)) against the frames
    assert info["canonical_psnr"] >= PSNR_TARGET, info  # through the rendered canonical image
    width, height = (int(v) for v in info["canonical_size"].split("x"))
    assert width % 8 == 0 and height % 8 == 0 and width >= 48 and height >= 32  # covers every frame
    assert atlas.edit.calls == [(1, height, width, 3)]  # the edit ran once, on the canonical image
    assert (
        info["blended"] == 0 and atlas.edit.streamed == 0
    )  # no pixel above --atlas-blend: no per-frame pass


def test_colour_edit_of_the_canonical_image_renders_the_transformed_frames(atlas):
    out, expected = atlas.result.frames, colour(atlas.frames)
    assert out.shape == expected.shape == (8, 32, 48, 3)
    error = np.abs(out.astype(np.float32) - expected) / 255
    mse = float(np.mean(error**2))
    assert 10 * np.log10(1 / mse) >= PSNR_TARGET
    assert error.mean() <= 0.025  # mean absolute error at most 2.5% of the range (6 levels of 255)


def test_blend_mask_ramps_from_the_threshold_to_twice_it():
    frame = torch.zeros(3, 20, 20)
    rendered = frame.clone()
    rendered[:, :, 10:] = 0.3  # error 0.3 on the right half
    mask = blend_mask(rendered, frame, threshold=0.1)[0]
    assert mask[:, :7].max() == 0 and mask[:, 13:].min() == 1  # beyond the 5x5 box filter's reach
    assert blend_mask(rendered, frame, threshold=0.2)[0][:, 13:].max() == pytest.approx(0.5)


def test_per_frame_result_is_blended_where_the_atlas_error_is_high(atlas, monkeypatch):
    monkeypatch.setenv("VIDFORGE_CACHE", str(atlas.cache))
    black = ColourEdit(per_frame=np.zeros_like)  # per-frame result: black, to see where it goes
    options = StylizeOptions(style="ink", mode="atlas", **FIT, atlas_blend=0.02)
    result = run(atlas.clip, options, pipeline=black)
    assert result.info["atlas_fit"] == "cached"  # --atlas-blend does not change the fit
    assert black.streamed == 1 and 0 < result.info["blended"] < 0.5
    darker = result.frames.astype(int).sum(-1) < atlas.result.frames.astype(int).sum(-1) - 30
    assert 0 < darker.mean() < 0.5  # some pixels, not most, came from the per-frame result


def test_fit_is_deterministic_for_a_seed(atlas, tmp_path, monkeypatch):
    monkeypatch.setenv("VIDFORGE_CACHE", str(tmp_path))
    options = StylizeOptions(style="ink", mode="atlas", **{**FIT, "atlas_iterations": 10})
    frames = atlas.frames
    first = run(frames, options, pipeline=ColourEdit()).frames
    folder = next((tmp_path / "atlas").iterdir())
    saved = (folder / FIELDS_FILE).read_bytes()
    again = run(frames, StylizeOptions(**{**options.__dict__, "refit": True}), pipeline=ColourEdit())
    assert again.info["atlas_fit"] == "fitted"
    assert (folder / FIELDS_FILE).read_bytes() == saved
    assert np.array_equal(first, again.frames)


# ------------------------------------------------------------------------------------ the CLI, cache


def run_main(args, capsys):
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return info.value.code, out, err


def one_line_error(err, *fragments):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_restyle_reuses_the_saved_fit_and_keeps_count_fps_size_audio(atlas, tmp_path, capsys, monkeypatch):
    import imageio_ffmpeg

    silent = write_video(tmp_path / "silent.mp4", atlas.frames, fps=10)
    clip = tmp_path / "clip.mp4"
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-i", silent, "-f", "lavfi", "-i",
         "sine=frequency=440:duration=2", "-c:v", "copy", "-c:a", "aac", clip],
        check=True,
    )  # fmt: skip
    monkeypatch.setenv("VIDFORGE_CACHE", str(tmp_path / "cache"))
    short = ["--atlas-iterations", "10", *FIT_ARGS[2:]]  # the mp4's frames are not the PNGs': a new fit
    outputs = {}
    for style in ("ink", "oil"):
        outputs[style] = tmp_path / f"{style}.mp4"
        args = ["stylize", clip, "--style", style, "--mode", "atlas", "-o", outputs[style], "--json"]
        code, stdout, err = run_main([*args, *FAST, *short], capsys)
        assert code == 0, err
        assert json.loads(stdout)["details"]["atlas_fit"] == ("fitted" if style == "ink" else "cached")

        def no_fit(*args, **kwargs):
            raise AssertionError("the saved fit should have been used")

        monkeypatch.setattr(atlas_pipeline, "fit", no_fit)  # from the second style on
    for out in outputs.values():
        video = read_video(out)
        assert video.num_frames == 8 and video.size == (48, 32)
        assert video.fps == pytest.approx(10.0) and video.has_audio
    assert not np.array_equal(read_video(outputs["ink"]).frames, read_video(outputs["oil"]).frames)


def test_atlas_output_has_lower_warp_error_than_frames_mode(atlas, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("VIDFORGE_CACHE", str(atlas.cache))
    errors = {}
    flows = video_flows(atlas.frames)
    for mode in ("frames", "atlas"):
        out = tmp_path / f"{mode}.mp4"
        code, _, err = run_main(
            ["stylize", atlas.clip, "--style", "ink", "--mode", mode, "-o", out, *FAST, *FIT_ARGS], capsys
        )
        assert code == 0, err
        errors[mode] = warp_error(read_video(out).frames, zip(*flows, strict=True))[0]
    assert errors["atlas"] < errors["frames"], errors


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--atlas-iterations", "0"], "--atlas-iterations"),
        (["--atlas-batch", "-4"], "--atlas-batch"),
        (["--atlas-levels", "-1"], "--atlas-levels"),
        (["--atlas-table", "40"], "--atlas-table"),
        (["--atlas-blend", "-0.5"], "--atlas-blend"),
        (["--mode", "layers"], "--mode"),
    ],
)
def test_impossible_atlas_options_exit_2(atlas, tmp_path, capsys, extra, fragment):
    args = ["stylize", atlas.clip, "--style", "ink", "--mode", "atlas", "-o", tmp_path / "o.mp4"]
    code, _, err = run_main([*args, *FAST, *extra], capsys)
    assert code == 2
    one_line_error(err, fragment)
    assert not (tmp_path / "o.mp4").exists()


def corrupt(folder, how):
    if how == "garbage tensors":
        (folder / FIELDS_FILE).write_bytes(b"\x00" * 100)
    elif how == "truncated tensors":
        data = (folder / FIELDS_FILE).read_bytes()
        (folder / FIELDS_FILE).write_bytes(data[: len(data) // 2])
    elif how == "bad json":
        (folder / META_FILE).write_text("{not json")
    elif how == "other config":
        meta = json.loads((folder / META_FILE).read_text())
        meta["config"]["levels"] = 7
        (folder / META_FILE).write_text(json.dumps(meta))
    elif how == "other format":
        meta = json.loads((folder / META_FILE).read_text())
        meta["format"] = 99
        (folder / META_FILE).write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "how", ["garbage tensors", "truncated tensors", "bad json", "other config", "other format"]
)
def test_corrupt_or_mismatched_saved_fit_exits_1(atlas, tmp_path, capsys, monkeypatch, how):
    cache = tmp_path / "cache"
    shutil.copytree(atlas.cache, cache)
    monkeypatch.setenv("VIDFORGE_CACHE", str(cache))
    corrupt(next((cache / "atlas").iterdir()), how)
    out = tmp_path / "o.mp4"
    args = ["stylize", atlas.clip, "--style", "ink", "--mode", "atlas", "-o", out, *FAST, *FIT_ARGS]
    code, _, err = run_main(args, capsys)
    assert code == 1
    one_line_error(err, "saved atlas fit", "--refit")
    assert not out.exists()


def test_refit_replaces_a_corrupt_saved_fit(atlas, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("VIDFORGE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "o.mp4"
    short = {**FIT, "atlas_iterations": 5}  # a short fit: only the cache's paths are tested
    args = [
        "stylize",
        atlas.clip,
        "--style",
        "ink",
        "--mode",
        "atlas",
        "-o",
        out,
        *FAST,
        "--overwrite",
        "--json",
    ]
    args += [a for k, v in short.items() for a in ("--" + k.replace("_", "-"), str(v))]
    assert run_main(args, capsys)[0] == 0
    folder = next((tmp_path / "cache" / "atlas").iterdir())
    corrupt(folder, "garbage tensors")
    assert run_main(args, capsys)[0] == 1
    code, stdout, err = run_main([*args, "--refit"], capsys)
    assert code == 0, err
    assert json.loads(stdout)["details"]["atlas_fit"] == "fitted"
    code, stdout, err = run_main(args, capsys)
    assert code == 0 and json.loads(stdout)["details"]["atlas_fit"] == "cached"
