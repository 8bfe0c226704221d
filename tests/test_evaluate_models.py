"""Model-based evaluate metrics: CLIP (tiny random open_clip), PIC (stand-in distance), FVD/KVD
(known Gaussian answers, tiny random TorchScript feature extractor). No download anywhere."""

import numpy as np
import pytest
import torch
from test_evaluate_metrics import sliding_frames

from vidforge.core.progress import Bars
from vidforge.core.writers import write_video
from vidforge.errors import VidforgeError
from vidforge.evaluate import EvaluateOptions, clip_metrics, fvd, perceptual, run
from vidforge.evaluate.pipeline import FlowCache


@pytest.fixture(scope="module")
def tiny_clip():
    from vidforge.models.clip import load_clip

    return load_clip("tiny", "cpu")


def moving_frames(num_frames=6, size=32, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (size, size * 2, 3), dtype=np.uint8)
    return np.stack([base[:, t * 3 : t * 3 + size] for t in range(num_frames)])


def unit(rows):
    rows = torch.tensor(rows, dtype=torch.float32)
    return rows / rows.norm(dim=-1, keepdim=True)


# ------------------------------------------------------------------------------------------------ CLIP


def test_clip_frame_consecutive_and_all_pairs_by_hand():
    emb = unit([[1, 0], [1, 0], [0, 1]])
    value, per = clip_metrics.clip_frame(emb, "consecutive")
    assert value == pytest.approx(0.5) and per == pytest.approx([1.0, 0.0])
    value, per = clip_metrics.clip_frame(emb, "all-pairs")
    assert value == pytest.approx(1 / 3)  # pairs (0,1)=1, (0,2)=0, (1,2)=0
    assert per == pytest.approx([0.5, 0.5, 0.0])


def test_clip_text_and_content_by_hand():
    emb = unit([[1, 0], [1, 1], [0, 1]])
    value, per = clip_metrics.clip_text(emb, unit([[1, 0]])[0])
    assert per == pytest.approx([1.0, 2**-0.5, 0.0], abs=1e-6)
    assert value == pytest.approx((1 + 2**-0.5) / 3)
    value, per = clip_metrics.clip_content(emb, unit([[0, 1], [1, 1], [1, 0]]))
    assert per == pytest.approx([0.0, 1.0, 0.0], abs=1e-6)


def test_tiny_clip_metrics_symmetry_and_ranges(tiny_clip):
    frames_a, frames_b = moving_frames(seed=0), moving_frames(seed=1)
    emb_a = clip_metrics.embed_frames(tiny_clip, frames_a, batch_size=4)
    emb_b = clip_metrics.embed_frames(tiny_clip, frames_b)
    assert emb_a.shape == (6, 32)
    assert torch.allclose(emb_a.norm(dim=-1), torch.ones(6), atol=1e-5)
    # batching does not change embeddings
    assert torch.allclose(emb_a, clip_metrics.embed_frames(tiny_clip, frames_a, batch_size=6), atol=1e-5)
    ab, ba = clip_metrics.clip_content(emb_a, emb_b), clip_metrics.clip_content(emb_b, emb_a)
    assert ab[0] == pytest.approx(ba[0]) and -1 <= ab[0] <= 1
    assert clip_metrics.clip_content(emb_a, emb_a)[0] == pytest.approx(1.0, abs=1e-5)
    text = clip_metrics.embed_text(tiny_clip, "a red car")
    value, per = clip_metrics.clip_text(emb_a, text)
    assert len(per) == 6 and all(-1 <= v <= 1 for v in per)
    consecutive = clip_metrics.clip_frame(emb_a, "consecutive")[0]
    all_pairs = clip_metrics.clip_frame(emb_a, "all-pairs")[0]
    assert -1 <= all_pairs <= 1 and -1 <= consecutive <= 1
    sims = (emb_a @ emb_a.T).numpy()
    assert all_pairs == pytest.approx(sims[np.triu_indices(6, 1)].mean(), abs=1e-5)
    assert consecutive == pytest.approx(np.diag(sims, 1).mean(), abs=1e-5)


def test_run_clip_metrics_on_tiny_model(tmp_path):
    frames = moving_frames(num_frames=5)
    video = write_video(tmp_path / "v" / "%05d.png", frames, fps=8)  # PNG sequence: lossless
    opts = EvaluateOptions(
        metrics=("clip-text", "clip-frame", "clip-content"),
        prompt="a texture",
        source=str(video),
        clip_model="tiny",
        clip_frame_variant="all-pairs",
    )
    m = run([str(video)], opts).videos[0].metrics
    assert not any(r.error for r in m.values())
    assert m["clip-content"].value == pytest.approx(1.0, abs=1e-5)  # source == output
    assert m["clip-text"].extra["score_x100"] == pytest.approx(100 * m["clip-text"].value)
    assert "tiny" in m["clip-text"].variant and "all-pairs" in m["clip-frame"].variant
    assert len(m["clip-frame"].per_frame) == 5


def test_missing_clip_weights_fail_only_that_metric(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    video = write_video(tmp_path / "v" / "%05d.png", moving_frames(4), fps=8)
    report = run(
        [str(video)], EvaluateOptions(metrics=("flicker", "clip-frame"), clip_model="ViT-B-32/openai")
    )
    m = report.videos[0].metrics
    assert m["flicker"].value is not None and m["flicker"].error is None
    assert m["clip-frame"].value is None and "hf download" in m["clip-frame"].error
    assert report.failed and len(report.errors) == 1 and "\n" not in report.errors[0]


# ------------------------------------------------------------------------------------------------- PIC


def mean_abs_distance(a, b):
    return (a - b).abs().mean(dim=(1, 2, 3))


def test_pic_formula_with_stand_in_distance():
    image = np.full((8, 8, 3), 100, np.uint8)
    frames = np.stack([image, image + 51, image])
    value, per = perceptual.pic(image, frames, mean_abs_distance)
    assert per == pytest.approx([1.0, 0.8, 1.0], abs=1e-6)
    assert value == pytest.approx(2.8 / 3)
    # the input image is resized to the frames' size first
    assert perceptual.pic(np.full((16, 12, 3), 100, np.uint8), frames, mean_abs_distance)[0] == pytest.approx(
        2.8 / 3
    )


def test_run_pic_with_image_source_and_missing_extras(tmp_path):
    from PIL import Image

    image = np.full((16, 16, 3), 100, np.uint8)
    Image.fromarray(image).save(tmp_path / "in.png")
    frames = np.stack([image, image + 51, image, image])
    video = write_video(tmp_path / "v" / "%05d.png", frames, fps=8)
    opts = EvaluateOptions(metrics=("pic",), source=str(tmp_path / "in.png"))
    result = run([str(video)], opts, distance=mean_abs_distance).videos[0].metrics["pic"]
    assert result.value == pytest.approx(1 - 0.2 / 4) and "--source image" in result.variant
    opts = EvaluateOptions(metrics=("pic",), source=str(video))  # a video source: its first frame
    result = run([str(video)], opts, distance=mean_abs_distance).videos[0].metrics["pic"]
    assert result.value == pytest.approx(1 - 0.2 / 4) and "first frame" in result.variant
    for name, extra in (("dreamsim", "vidforge[dreamsim]"), ("lpips", "vidforge[lpips]")):
        missing = run([str(video)], EvaluateOptions(metrics=("pic",), source=str(video), pic_distance=name))
        assert extra in missing.videos[0].metrics["pic"].error


# ------------------------------------------------------------------------------------------- FVD / KVD


def normal_quantiles(n, mean=0.0):
    """Deterministic N(mean, 1) sample with near-exact moments (inverse CDF at midpoints)."""
    q = torch.special.ndtri((torch.arange(n, dtype=torch.float64) + 0.5) / n).numpy()
    return (np.random.default_rng(0).permutation(q) + mean)[:, None]


def test_frechet_distance_known_gaussians():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, (20000, 4))
    b = rng.normal(0, 1, (20000, 4)) + np.array([1.0, 2.0, 0.0, 0.0])
    c = rng.normal(0, 2, (20000, 4))
    assert fvd.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    assert fvd.frechet_distance(a, b) == pytest.approx(5.0, rel=0.03)  # |μ|² = 1 + 4
    assert fvd.frechet_distance(a, c) == pytest.approx(4.0, rel=0.05)  # d·(σ_a - σ_b)² = 4·1
    assert fvd.frechet_distance(a, b) == pytest.approx(fvd.frechet_distance(b, a), rel=1e-6)


def test_kernel_distance_known_gaussians():
    # 1-D, k = (xy + 1)³: E k(x,x') = E[x³]² + 3 E[x²]² + 3 E[x]² + 1 with E[x³] = a³ + 3a, E[x²] = 1 + a²
    # a = 0: 4; b = 1: 16 + 12 + 3 + 1 = 32; cross: 0 + 3·1·2 + 0 + 1 = 7  ->  MMD² = 4 + 32 - 14 = 22
    x, y = normal_quantiles(3000), normal_quantiles(3000, mean=1.0)
    assert fvd.kernel_distance(x, y, num_subsets=1, subset_size=3000) == pytest.approx(22.0, rel=0.02)
    assert fvd.kernel_distance(x, y, num_subsets=10, subset_size=1000, seed=1) == pytest.approx(22.0, rel=0.1)
    assert abs(fvd.kernel_distance(x, normal_quantiles(3000), num_subsets=1, subset_size=3000)) < 0.05


def test_kernel_distance_is_the_unbiased_mmd_by_brute_force():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(6, 3)), rng.normal(size=(6, 3)) + 0.5

    def k(u, v):
        return (u @ v / 3 + 1) ** 3

    m = 6
    same = sum(k(x[i], x[j]) + k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    cross = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    assert fvd.kernel_distance(x, y, num_subsets=3, subset_size=6) == pytest.approx(same - 2 * cross)


class TinyI3D(torch.nn.Module):
    """Same call signature as StyleGAN-V's I3D TorchScript, random weights, 8-d features."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv3d(3, 8, kernel_size=3, stride=2)

    def forward(
        self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = True
    ) -> torch.Tensor:
        return self.conv(x).mean(dim=(2, 3, 4)) * 10


@pytest.fixture(scope="module")
def tiny_i3d(tmp_path_factory):
    path = tmp_path_factory.mktemp("i3d") / "tiny_i3d.pt"
    torch.jit.script(TinyI3D()).save(str(path))
    return path


def test_preprocess_video_shape_and_range():
    frames = np.zeros((5, 20, 40, 3), np.uint8)
    frames[..., 0] = 255
    x = fvd.preprocess_video(frames, 4, 16)
    assert x.shape == (3, 4, 16, 16)
    assert x[0].min() == pytest.approx(1.0) and x[1].max() == pytest.approx(-1.0)


def test_fvd_kvd_pipeline_with_tiny_extractor(tmp_path, tiny_i3d):
    gen, ref = tmp_path / "gen", tmp_path / "ref"
    gen.mkdir(), ref.mkdir()
    for i in range(3):
        write_video(gen / f"g{i}" / "%05d.png", moving_frames(5, seed=i), fps=8)
        write_video(ref / f"r{i}" / "%05d.png", moving_frames(5, seed=10 + i) // 2, fps=8)
    opts = dict(metrics=("fvd", "kvd"), i3d=str(tiny_i3d), fvd_frames=4, fvd_size=32, seed=3)
    report = run([str(gen)], EvaluateOptions(source=str(ref), **opts))
    fvd_result, kvd_result = report.sets["fvd"], report.sets["kvd"]
    assert not report.failed and fvd_result.value > 0
    assert (
        fvd_result.extra["n"] == [3, 3] and fvd_result.extra["frames"] == 4 and fvd_result.extra["seed"] == 3
    )
    assert "centre crop 32x32" in fvd_result.extra["resize"]
    assert kvd_result.value is not None and kvd_result.extra["subset_size"] == 3
    same = run([str(gen)], EvaluateOptions(source=str(gen), **opts))
    assert same.sets["fvd"].value == pytest.approx(0.0, abs=1e-6)
    assert same.sets["fvd"].value < fvd_result.value
    report_json = report.to_dict()
    assert set(report_json) == {"videos", "mean", "sets"} and report_json["sets"]["fvd"]["frames"] == 4


def test_fvd_refuses_single_video_and_missing_i3d(tmp_path, tiny_i3d, monkeypatch):
    gen = tmp_path / "gen"
    gen.mkdir()
    for i in range(2):
        write_video(gen / f"g{i}" / "%05d.png", moving_frames(5, seed=i), fps=8)
    one = write_video(tmp_path / "one" / "%05d.png", moving_frames(5), fps=8)
    opts = dict(metrics=("fvd", "flicker"), fvd_frames=4, fvd_size=32)
    report = run([str(one)], EvaluateOptions(source=str(gen), i3d=str(tiny_i3d), **opts))
    assert "at least 2 videos per set" in report.sets["fvd"].error
    assert report.videos[0].metrics["flicker"].value is not None
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty_hub"))
    report = run([str(gen)], EvaluateOptions(source=str(gen), **opts))
    assert "--i3d PATH" in report.sets["fvd"].error
    too_short = run(
        [str(gen)], EvaluateOptions(source=str(gen), i3d=str(tiny_i3d), **{**opts, "fvd_frames": 16})
    )
    assert "--fvd-frames 5" in too_short.sets["fvd"].error


def test_bad_i3d_file_is_refused(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torchscript archive")
    with pytest.raises(VidforgeError, match="not a TorchScript"):
        fvd.load_i3d(bad, torch.device("cpu"))


# ------------------------------------------------------------------------------------------------ RAFT


def test_raft_without_cached_weights_is_one_line_error(tmp_path, monkeypatch):
    from vidforge.core import flow

    flow._raft.cache_clear()
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    frames = moving_frames(3)
    with pytest.raises(VidforgeError, match="--flow dis") as e:
        flow.compute_flow(frames[0], frames[1], "raft")
    assert "\n" not in str(e.value)
    video = write_video(tmp_path / "v" / "%05d.png", frames, fps=8)
    m = run([str(video)], EvaluateOptions(metrics=("flicker", "motion"), flow="raft")).videos[0].metrics
    assert m["flicker"].error is None and "RAFT-large weights" in m["motion"].error


def test_raft_flows_pad_and_batch_with_random_model():
    from torchvision.models.optical_flow import raft_small

    from vidforge.core.flow import raft_flows

    torch.manual_seed(0)
    model = raft_small(weights=None).eval()
    frames = moving_frames(3, size=36)[:, :, :28]  # 36x28: not multiples of 8
    out = raft_flows(frames[:-1], frames[1:], model=model)
    assert out.shape == (2, 36, 28, 2) and out.dtype == np.float32


def test_flows_computed_once_and_shared_by_warp_error_and_motion(tmp_path, monkeypatch):
    from vidforge.evaluate import pipeline

    calls = []
    real = pipeline.compute_flow

    def counting(a, b, method):
        calls.append(method)
        return real(a, b, method)

    monkeypatch.setattr(pipeline, "compute_flow", counting)
    video = write_video(tmp_path / "v" / "%05d.png", sliding_frames(5, shift=(2, 1)), fps=8)
    m = run([str(video)], EvaluateOptions(metrics=("warp-error", "motion"))).videos[0].metrics
    assert len(calls) == 2 * 4  # forward + backward for each of the 4 pairs, none again for motion
    assert m["motion"].value == pytest.approx(np.sqrt(5), rel=0.05)  # the window moves (2, 1) px
    # serial and threaded DIS give the same flows
    frames = moving_frames(4)
    serial = list(FlowCache(frames, "dis", Bars(), workers=1).consecutive())
    threaded = list(FlowCache(frames, "dis", Bars(), workers=3).consecutive())
    assert all(
        np.array_equal(s[0], t[0]) and np.array_equal(s[1], t[1])
        for s, t in zip(serial, threaded, strict=True)
    )


def test_frames_score_like_the_file_they_came_from(tmp_path):
    """``run()`` takes frames as well as paths, in every command; evaluate too."""
    from conftest import textured_frames

    from vidforge.core.writers import write_video

    frames = textured_frames(6, 32, 32)
    path = write_video(tmp_path / "v" / "%05d.png", frames, fps=8)  # a lossless PNG sequence
    options = EvaluateOptions(metrics=("flicker", "motion"))
    from_path, from_frames = run([str(path)], options), run(frames, options)
    assert from_frames.videos[0].video == "video 0"
    for name in options.metrics:
        assert from_frames.videos[0].metrics[name].value == from_path.videos[0].metrics[name].value
