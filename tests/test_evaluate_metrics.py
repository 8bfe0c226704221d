"""Weight-free evaluate metrics on synthetic videos whose answer is known."""

import numpy as np
import pytest

from vidforge.core.flow import compute_flow
from vidforge.evaluate import metrics


def sliding_frames(num_frames=6, height=64, width=64, shift=(2, 1), seed=0):
    """Crops of one larger smooth texture, the window moving by whole pixels ``shift = (dx, dy)``
    per frame (no wrap-around): ``frame_{t+k}(x) = frame_t(x + k·shift)``."""
    import cv2

    dx, dy = shift
    rng = np.random.default_rng(seed)
    big_h, big_w = height + num_frames * dy + 8, width + num_frames * dx + 8
    base = rng.integers(0, 256, (big_h // 4 + 1, big_w // 4 + 1, 3), dtype=np.uint8)
    base = cv2.resize(base, (base.shape[1] * 4, base.shape[0] * 4), interpolation=cv2.INTER_CUBIC)
    return np.stack([base[t * dy : t * dy + height, t * dx : t * dx + width] for t in range(num_frames)])


def flow_pairs(frames, pairs):
    """``(w_ab, w_ba)`` for each pair, OpenCV DIS as ``evaluate`` uses by default."""
    return [(compute_flow(frames[a], frames[b]), compute_flow(frames[b], frames[a])) for a, b in pairs]


def consecutive_flows(frames):
    return flow_pairs(frames, [(t, t + 1) for t in range(len(frames) - 1)])


def dvp_flows(frames):
    short, long = metrics.dvp_pairs(len(frames))
    return flow_pairs(frames, short), flow_pairs(frames, long)


def alternate_gain(frames, gains=(1.0, 0.8)):
    g = np.array([gains[t % 2] for t in range(len(frames))])[:, None, None, None]
    return np.round(frames * g).astype(np.uint8)


def shifted_error(out, a, b, shift, norm):
    """Exact error between O_a and O_b aligned by the known whole-pixel shift, on the pixels visible
    in both frames: O_a(x) = O_b(x - (b-a)·shift)."""
    k = b - a
    dx, dy = shift[0] * k, shift[1] * k
    h, w = out.shape[1:3]
    ya, xa = slice(max(dy, 0), h + min(dy, 0)), slice(max(dx, 0), w + min(dx, 0))
    yb, xb = slice(max(-dy, 0), h + min(-dy, 0)), slice(max(-dx, 0), w + min(-dx, 0))
    diff = out[a, ya, xa].astype(np.float64) / 255 - out[b, yb, xb].astype(np.float64) / 255
    return float((diff**2).mean() if norm == "l2" else np.abs(diff).mean())


# ------------------------------------------------------------------------------------------ warp error


def test_warp_error_pair_formula_by_hand():
    a = np.zeros((4, 4, 3), np.uint8)
    b = np.full((4, 4, 3), 255, np.uint8)
    b[:, 2:] = 0  # right half equal to a
    flow = np.zeros((4, 4, 2), np.float32)
    mask = np.zeros((4, 4), bool)
    mask[:, 1:3] = True  # one differing column (error 1) and one equal column (error 0)
    assert metrics.warp_error_pair(a, b, flow, mask, "l2") == pytest.approx(0.5)
    assert metrics.warp_error_pair(a, b // 2, flow, mask, "l1") == pytest.approx(0.5 * 127 / 255)
    assert metrics.warp_error_pair(a, b, flow, np.zeros((4, 4), bool)) == 0.0  # all occluded


def test_warp_error_near_zero_for_consistent_translation():
    frames = sliding_frames()
    value, per_pair = metrics.warp_error(frames, consecutive_flows(frames))
    assert len(per_pair) == len(frames) - 1
    assert value < 2e-3


def test_warp_error_alternating_brightness_matches_analytic_value():
    source = sliding_frames(shift=(2, 1))
    output = alternate_gain(source)
    value, per_pair = metrics.warp_error(output, consecutive_flows(source))
    expected = [shifted_error(output, t, t + 1, (2, 1), "l2") for t in range(len(output) - 1)]
    assert value == pytest.approx(np.mean(expected), rel=0.1)
    assert per_pair == pytest.approx(expected, rel=0.15)
    assert value > 10 * metrics.warp_error(source, consecutive_flows(source))[0]


def test_warp_error_dvp_short_plus_long_term():
    source = sliding_frames(num_frames=5, shift=(1, 1))
    output = alternate_gain(source, (1.0, 0.85))
    value, per_frame = metrics.warp_error_dvp(output, *dvp_flows(source))
    expected = [
        shifted_error(output, t, t - 1, (1, 1), "l1") + shifted_error(output, t, 0, (1, 1), "l1")
        for t in range(1, len(output))
    ]
    assert len(per_frame) == len(output) - 1
    assert value == pytest.approx(np.mean(expected), rel=0.1)
    # long term: odd frames differ from frame 0 in brightness, even frames do not
    assert per_frame[1] < per_frame[0]
    assert metrics.warp_error_dvp(source, *dvp_flows(source))[0] < 0.2 * value


# ---------------------------------------------------------------------------------- flicker and motion


def test_flicker_known_values():
    constant = np.full((5, 8, 8, 3), 77, np.uint8)
    black_white = np.stack([np.zeros((8, 8, 3)), np.full((8, 8, 3), 255)] * 3).astype(np.uint8)
    step = np.stack([np.zeros((8, 8, 3)), np.full((8, 8, 3), 51)]).astype(np.uint8)
    assert metrics.flicker(constant)[0] == 1.0
    assert metrics.flicker(black_white) == (0.0, [0.0] * 5)
    assert metrics.flicker(step)[0] == pytest.approx(0.8)


def test_motion_is_the_shift_length():
    frames = sliding_frames(shift=(2, 1))
    value, per_pair = metrics.motion(metrics.flow_magnitude(w_ab) for w_ab, _ in consecutive_flows(frames))
    assert value == pytest.approx(np.sqrt(5), rel=0.05)
    assert len(per_pair) == len(frames) - 1


# ------------------------------------------------------------------------------------------ repetition


def test_repetition_low_for_constant_motion_and_static():
    assert metrics.repetition(sliding_frames(num_frames=16, shift=(2, 0)))[0] < 0.05
    value, per_frame, lag = metrics.repetition(np.repeat(sliding_frames(1), 6, axis=0))
    assert value == 0.0 and lag is None and len(per_frame) == 6


def test_repetition_high_for_loop_with_its_period():
    clip = sliding_frames(num_frames=5, shift=(2, 0))
    value, _, lag = metrics.repetition(np.concatenate([clip] * 3))
    assert value > 0.9
    assert lag == 5


def test_repetition_high_for_ping_pong():
    clip = sliding_frames(num_frames=6, shift=(2, 0))
    ping_pong = np.concatenate([clip, clip[::-1][1:], clip[1:]])  # 0..5, 4..0, 1..5
    value, per_frame, _ = metrics.repetition(ping_pong)
    assert value > 0.8
    assert max(per_frame) > 0.95


def test_frame_distances_symmetric_zero_diagonal():
    d = metrics.frame_distances(sliding_frames(num_frames=4))
    assert np.allclose(d, d.T) and np.allclose(np.diag(d), 0)
    assert d[0, 2] > d[0, 1] > 0  # further in time, further in picture under constant motion


def test_repetition_on_three_frames_skips_the_middle_frame():
    # Only frames 0 and 2 have a frame at lag >= 2; the middle one has no defined score.
    frames = sliding_frames(num_frames=3, shift=(2, 0))
    value, per_frame, _ = metrics.repetition(frames)
    assert np.isnan(per_frame[1]) and not np.isnan(per_frame[0]) and not np.isnan(per_frame[2])
    assert value == pytest.approx(np.mean([per_frame[0], per_frame[2]]))
    aba = np.stack([frames[0], frames[1], frames[0]])  # A B A: frame 2 returns exactly to frame 0
    assert metrics.repetition(aba)[0] > 0.9
