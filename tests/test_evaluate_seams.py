"""``evaluate --metric seams``: a hard cut and a jump back in a smooth synthetic video are flagged,
at the right frame pair; a smooth pan (steady or accelerating) is not."""

import json

import numpy as np
import pytest

from vidforge.cli import main
from vidforge.core.writers import write_video
from vidforge.evaluate import metrics
from vidforge.evaluate.options import EvaluateOptions

THRESHOLD = EvaluateOptions.seam_threshold


def pan(num_frames=40, seed=0, height=48, width=64, speed=lambda t: 1.0, scale=12):
    """A smooth texture (features ~``scale`` px) panned right by ``speed(t)`` px per frame, sampled
    with bilinear interpolation: ``(F, H, W, 3)`` uint8."""
    import cv2

    rng = np.random.default_rng(seed)
    offsets = np.concatenate([[0.0], np.cumsum([speed(t) for t in range(num_frames - 1)])])
    big_w = width + int(np.ceil(offsets[-1])) + 2 * scale
    base = rng.integers(0, 256, (height // scale + 2, big_w // scale + 2, 3), dtype=np.uint8)
    base = cv2.resize(base, (base.shape[1] * scale, base.shape[0] * scale), interpolation=cv2.INTER_CUBIC)
    base = base[:height].astype(np.float32)
    frames = []
    for x in offsets:
        m = np.float32([[1, 0, x], [0, 1, 0]])
        frames.append(cv2.warpAffine(base, m, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP))
    return np.clip(np.round(np.stack(frames)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("speed", [lambda t: 1.0, lambda t: 2.0, lambda t: 0.5 + 0.06 * t])
def test_a_smooth_pan_has_no_seams(speed):
    value, per_pair, found = metrics.seams(pan(speed=speed), THRESHOLD)
    assert found == [] and value < 1.3
    assert len(per_pair) == 39


def test_a_hard_cut_is_flagged_at_its_pair():
    video = np.concatenate([pan(20), pan(20, seed=1)])
    value, per_pair, found = metrics.seams(video, THRESHOLD)
    assert found == [19] and value == per_pair[19] > 5


def test_a_jump_back_is_flagged_at_its_pair():
    """Frame 19 followed by frame 15 (a jump back of M = 4 frames, as the old extend layout made at
    every clip boundary), then on smoothly again."""
    video = pan(40)
    jumped = video[list(range(20)) + list(range(15, 35))]
    value, per_pair, found = metrics.seams(jumped, THRESHOLD)
    assert found == [19] and value == per_pair[19] > THRESHOLD
    assert max(per_pair[:19] + per_pair[20:]) < 1.3


def test_ratio_by_hand():
    changes = np.array([1.0, 1.0, 1.0, 4.0, 1.0, 2.0, 0.0])
    ratios = metrics.seam_ratios(changes, window=2)
    eps = metrics.SEAM_EPS
    assert ratios[3] == pytest.approx((4 + eps) / (1 + eps))  # neighbours 1, 1, 1, 2: median 1
    assert ratios[6] == pytest.approx(eps / (1.5 + eps))  # only 2 neighbours before it: 1, 2


def test_cli_json_table_and_plot(tmp_path, capsys):
    video = pan(20)[list(range(10)) + list(range(6, 16))]
    path = write_video(tmp_path / "jump" / "%05d.png", video, fps=8)
    with pytest.raises(SystemExit) as info:
        main(["evaluate", str(path), "--metric", "seams", "--json", "--plot", str(tmp_path / "p.png")])
    out, _ = capsys.readouterr()
    assert info.value.code == 0
    seams = json.loads(out)["videos"][0]["metrics"]["seams"]
    assert seams["seams"] == [9] and seams["threshold"] == THRESHOLD and seams["window"] == 4
    assert len(seams["per_frame"]) == 19 and seams["value"] == pytest.approx(
        max(seams["per_frame"]), abs=1e-6
    )
    assert "median" in seams["variant"] and (tmp_path / "p.png").stat().st_size > 0
    with pytest.raises(SystemExit) as info:
        main(["evaluate", str(path), "--metric", "seams", "--seam-threshold", "50"])
    _, err = capsys.readouterr()
    assert info.value.code == 0 and "seams in jump: none" in err
    with pytest.raises(SystemExit) as info:
        main(["evaluate", str(path), "--metric", "seams", "--seam-threshold", "1"])
    assert info.value.code == 2 and "--seam-threshold must be above 1" in capsys.readouterr().err
