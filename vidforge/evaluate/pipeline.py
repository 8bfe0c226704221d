"""``vidforge evaluate``: decode each video once, compute flows once per pair, score every metric.

A metric that cannot run (missing weights, missing extra, mismatched source) fails alone: its
entry carries a one-line ``error`` and the others still run; ``Report.failed`` then tells the CLI to
exit 1. Bad inputs (missing or corrupt video, unknown metric) stop the run with a VidforgeError.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from vidforge.core.flow import compute_flow, raft_flows
from vidforge.core.progress import Bars, Timer
from vidforge.core.video_io import (
    Video,
    VideoInput,
    load_video,
    media_path,
    read_image,
    read_video,
    resize_frames,
)
from vidforge.errors import VidforgeError, first_line
from vidforge.evaluate import clip_metrics, fvd, metrics, perceptual
from vidforge.evaluate.inputs import expand_inputs, is_image, is_png_sequence
from vidforge.evaluate.metrics import FlowPair
from vidforge.evaluate.options import SET_METRICS, EvaluateOptions
from vidforge.evaluate.prompts import load_prompts, prompt_for
from vidforge.evaluate.report import MetricResult, Report, VideoReport, failure

FLOW_NAMES = {"dis": "OpenCV DIS (medium preset)", "raft": "torchvision RAFT-large (C_T_SKHT_V2)"}


FLOW_CHUNK = 8  # frame pairs computed together (in parallel threads for DIS, one batch for RAFT)


class FlowCache:
    """Optical flow of one video for the metrics that need it.

    :meth:`pairs` streams ``(w_ab, w_ba)`` for a list of frame pairs, each flow computed once, in
    chunks (DIS in parallel threads, RAFT batched), so memory stays bounded for long videos. The mean
    magnitude of every consecutive forward flow is kept on the way, so ``motion`` reuses the flows
    that ``warp-error`` computed instead of computing them again."""

    def __init__(self, frames: np.ndarray, method: str, bars: Bars, workers: int | None = None):
        self.frames, self.method, self.bars = frames, method, bars
        self.workers = workers or min(8, os.cpu_count() or 1)
        self.magnitudes: dict[int, float] = {}  # t -> mean |w_{t→t+1}|

    def _submit(self, pool: ThreadPoolExecutor, chunk: list[tuple[int, int]]) -> list[Future]:
        """Start computing ``w_ab`` and ``w_ba`` for every pair of ``chunk``; returns futures."""
        pairs = [p for a, b in chunk for p in ((a, b), (b, a))]
        if self.method == "raft":  # one batched call (GPU); resolved on the calling thread
            frames_a = np.stack([self.frames[a] for a, _ in pairs])
            frames_b = np.stack([self.frames[b] for _, b in pairs])
            done = Future()
            done.set_result(list(raft_flows(frames_a, frames_b)))
            return [done]
        return [pool.submit(compute_flow, self.frames[a], self.frames[b], "dis") for a, b in pairs]

    def pairs(self, pairs: list[tuple[int, int]], description: str = "optical flow") -> Iterator[FlowPair]:
        """Yield ``(w_ab, w_ba)`` for each ``(a, b)`` in ``pairs``, in order.

        DIS runs in worker threads (OpenCV releases the GIL) one chunk ahead of the consumer, so the
        metric's own arithmetic overlaps with the next flows."""
        chunks = [pairs[i : i + FLOW_CHUNK] for i in range(0, len(pairs), FLOW_CHUNK)]
        with ThreadPoolExecutor(self.workers) as pool:
            pending = self._submit(pool, chunks[0]) if chunks else []
            for k in self.bars.track(range(len(chunks)), description):
                flows = [w for f in pending for w in ([f.result()] if self.method != "raft" else f.result())]
                pending = self._submit(pool, chunks[k + 1]) if k + 1 < len(chunks) else []
                for i, (a, b) in enumerate(chunks[k]):
                    w_ab, w_ba = flows[2 * i], flows[2 * i + 1]
                    if b == a + 1:
                        self.magnitudes[a] = metrics.flow_magnitude(w_ab)
                    elif a == b + 1:
                        self.magnitudes[b] = metrics.flow_magnitude(w_ba)
                    yield w_ab, w_ba

    def consecutive(self) -> Iterator[FlowPair]:
        return self.pairs([(t, t + 1) for t in range(len(self.frames) - 1)])

    def consecutive_magnitudes(self) -> list[float]:
        """Mean forward-flow magnitude of each pair (t, t+1), computing only what is missing."""
        missing = [(t, t + 1) for t in range(len(self.frames) - 1) if t not in self.magnitudes]
        for _ in self.pairs(missing):
            pass
        return [self.magnitudes[t] for t in range(len(self.frames) - 1)]


class Lazy:
    """Load a model on first use, once; a loading error is remembered and re-raised per metric."""

    def __init__(self, load: Callable):
        self._load, self._value, self._error = load, None, None

    def get(self):
        if self._error is not None:
            raise self._error
        if self._value is None:
            try:
                self._value = self._load()
            except VidforgeError as e:
                self._error = e
                raise
        return self._value


# ------------------------------------------------------------------------------------------------ run


@torch.no_grad()
def run(
    videos: list[VideoInput] | VideoInput,
    options: EvaluateOptions | None = None,
    bars: Bars | None = None,
    distance: perceptual.Distance | None = None,
) -> Report:
    """Score ``videos`` (files, folders, ``.txt`` lists, frames or :class:`Video` objects) with
    ``options.metrics``.

    ``distance`` replaces the PIC distance model (DreamSim/LPIPS), e.g. for tests."""
    options = options or EvaluateOptions()
    bars = bars or Bars(disable=True)
    timer = Timer()

    # 0. Check inputs: options, the video list, the source (one video, an image, or a set)
    options.validate()
    items = [videos] if isinstance(videos, str | Path | np.ndarray | Video) else list(videos)
    paths = expand_inputs(items)
    sources, reference = _prepare_sources(options, len(paths))
    prompts = load_prompts(options.prompts)
    device = _device(options)

    # 1. Models, loaded on first use and shared by all videos
    models = {
        "clip": Lazy(lambda: _load_clip(options.clip_model, device)),
        "pic": Lazy(lambda: (distance, "stand-in distance") if distance else _load_pic(options, device)),
        "i3d": Lazy(lambda: fvd.load_i3d(fvd.find_i3d(options.i3d), device)),
    }

    # 2. Per video: decode once, share frames, flows and embeddings across metrics
    reports, features = [], []
    decoded_sources: dict[Path, np.ndarray] = {}  # one --source video shared by all outputs
    per_video = [m for m in dict.fromkeys(options.metrics) if m not in SET_METRICS]
    wants_sets = any(m in SET_METRICS for m in options.metrics)
    for path, source in bars.track(list(zip(paths, sources, strict=True)), "videos", total=len(paths)):
        label = str(path) if isinstance(path, Path) else f"video {len(reports)}"
        try:
            frames = load_video(path, options.max_frames, options.resize).frames
        except VidforgeError as e:  # an unreadable video fails alone; the others are still scored
            if len(paths) == 1:
                raise
            reports.append(VideoReport(label, {}, error=str(e)))
            continue
        prompt = prompt_for(path, prompts, options.prompt)
        scorer = VideoScorer(frames, source, options, models, bars, decoded_sources, prompt)
        reports.append(VideoReport(label, {m: scorer.score(m) for m in per_video}, len(frames)))
        if wants_sets:
            features.append(_features(frames, path, options, models["i3d"], device))

    # 3. Set metrics: FVD / KVD between the videos and the --source reference set
    sets = _set_metrics(options, features, reference, models["i3d"], device, bars) if wants_sets else {}
    return Report(reports, sets, timer.seconds)


def _device(options: EvaluateOptions) -> torch.device:
    from vidforge.core.device import select_device

    return select_device(options.device)


def _prepare_sources(options: EvaluateOptions, num_videos: int):
    """Per-video source (``Path``, or None) and the fvd/kvd reference set (list of paths)."""
    if options.source is None:
        return [None] * num_videos, []
    source = media_path(options.source)
    if not source.exists():
        raise VidforgeError(f"--source {options.source!r} does not exist")
    is_set = source.suffix.lower() == ".txt" or (source.is_dir() and not is_png_sequence(source))
    if not is_set:
        return [source] * num_videos, [source]
    reference = expand_inputs([str(source)], "--source")
    if len(reference) == num_videos:
        return reference, reference  # paired with the inputs in order
    return [_Unpaired(len(reference), num_videos)] * num_videos, reference


class _Unpaired:
    """Marks a source set that cannot be paired with the inputs one-to-one."""

    def __init__(self, num_sources: int, num_videos: int):
        self.message = (
            f"--source holds {num_sources} videos for {num_videos} inputs, so they cannot be paired; "
            "pass one source video, or a folder/list with one source per input (same order)"
        )


def _load_clip(spec: str, device: torch.device):
    from vidforge.models.clip import load_clip

    return load_clip(spec, device)


def _load_pic(options: EvaluateOptions, device: torch.device):
    return perceptual.load_distance(options.pic_distance, device)


# ------------------------------------------------------------------------------------ per-video metrics


class VideoScorer:
    """All metrics of one video. Frames, source frames, flows and CLIP embeddings are computed at
    most once and shared."""

    def __init__(
        self, frames, source, options: EvaluateOptions, models: dict, bars: Bars, decoded_sources=None,
        prompt: str | None = None,
    ):  # fmt: skip
        self.frames, self.source, self.options, self.models, self.bars = frames, source, options, models, bars
        self.prompt = prompt if prompt is not None else options.prompt
        self.decoded_sources = decoded_sources if decoded_sources is not None else {}
        self.flow = FlowCache(frames, options.flow, bars)
        self._source_frames = None
        self._source_flow = None
        self._embeddings: dict[str, torch.Tensor] = {}

    def score(self, name: str) -> MetricResult:
        compute = getattr(self, "_" + name.replace("-", "_"))
        try:
            return compute()
        except Exception as e:  # one metric failing must not hide the others
            message = first_line(e)
            if not isinstance(e, VidforgeError):
                message = f"internal error: {type(e).__name__}: {message}"
            return failure(self._variant(name), message)

    def _variant(self, name: str) -> str:
        return {
            "warp-error": f"{self.options.warp_variant}, flow {self.options.flow}",
            "clip-text": f"open_clip {self.options.clip_model}",
            "clip-frame": f"open_clip {self.options.clip_model}, {self.options.clip_frame_variant}",
            "clip-content": f"open_clip {self.options.clip_model}",
            "pic": f"1 - D(x_in, x_l), D = {self.options.pic_distance}",
        }.get(name, name)

    # ------------------------------------------------------------------------------ shared inputs

    def source_video(self) -> np.ndarray:
        """Source frames at the output's size and length (VidforgeError when they cannot match)."""
        if self._source_frames is None:
            if self.source is None:
                raise VidforgeError("needs --source (the input video)")
            if isinstance(self.source, _Unpaired):
                raise VidforgeError(self.source.message)
            if is_image(self.source):
                raise VidforgeError(f"--source {str(self.source)!r} is an image; this metric needs a video")
            if self.source not in self.decoded_sources:
                self.decoded_sources.clear()  # keep at most one decoded source in memory
                self.decoded_sources[self.source] = read_video(
                    self.source, self.options.max_frames, self.options.resize
                ).frames
            src = self.decoded_sources[self.source]
            if len(src) != len(self.frames):
                raise VidforgeError(
                    f"--source {str(self.source)!r} has {len(src)} frames but the video has "
                    f"{len(self.frames)}; pass --max-frames {min(len(src), len(self.frames))} to compare "
                    "the first frames"
                )
            h, w = self.frames.shape[1:3]
            self._source_frames = resize_frames(src, (w, h))
        return self._source_frames

    def embeddings(self, which: str = "video") -> torch.Tensor:
        if which not in self._embeddings:
            frames = self.frames if which == "video" else self.source_video()
            self._embeddings[which] = clip_metrics.embed_frames(self.models["clip"].get(), frames)
        return self._embeddings[which]

    def _needs_frames(self, name: str, minimum: int) -> None:
        if len(self.frames) < minimum:
            raise VidforgeError(f"{name} needs at least {minimum} frames (the video has {len(self.frames)})")

    # ---------------------------------------------------------------------------------- metrics

    def _warp_error(self) -> MetricResult:
        self._needs_frames("warp-error", 2)
        o = self.options
        if self.source is not None:
            src = self.source_video()
            if self._source_flow is None:
                self._source_flow = FlowCache(src, o.flow, self.bars)
            flow, flow_on = self._source_flow, f"source video {Path(self.source).name}"
        else:
            flow, flow_on = self.flow, "the video itself (no --source given)"
        if o.warp_variant == "lai":
            value, per_frame = metrics.warp_error(self.frames, flow.consecutive())
        else:
            short, long = metrics.dvp_pairs(len(self.frames))
            value, per_frame = metrics.warp_error_dvp(self.frames, flow.pairs(short), flow.pairs(long))
        if o.warp_variant == "lai":
            form = "Lai et al. 2018: Σ M·(warp(O_t+1) - O_t)² / ΣM, per pixel-channel MSE"
        else:
            form = "DVP (Lei et al. 2020): L1, E(O_t, O_t-1) + E(O_t, O_0)"
        variant = (
            f"{o.warp_variant}: {form}, RGB in [0, 1], lower is better; flow {FLOW_NAMES[o.flow]} on "
            f"{flow_on}; occlusion = forward-backward test OR motion boundary"
        )
        extra = {"flow": o.flow, "flow_on": "source" if self.source is not None else "video", "norm": "l2"}
        if o.warp_variant == "dvp":
            extra["norm"] = "l1"
        return MetricResult(value, variant, per_frame, extra)

    def _flicker(self) -> MetricResult:
        self._needs_frames("flicker", 2)
        value, per_frame = metrics.flicker(self.frames)
        variant = (
            "VBench temporal flickering: (255 - mean|f_t - f_t+1|) / 255 on uint8 RGB; 1 = steady, 0 = max"
        )
        return MetricResult(value, variant, per_frame, {"range": [0, 1]})

    def _motion(self) -> MetricResult:
        self._needs_frames("motion", 2)
        value, per_frame = metrics.motion(self.flow.consecutive_magnitudes())
        h, w = self.frames.shape[1:3]
        variant = f"mean optical-flow magnitude, pixels per frame at {w}x{h}, {FLOW_NAMES[self.options.flow]}"
        return MetricResult(value, variant, per_frame, {"flow": self.options.flow, "size": [w, h]})

    def _repetition(self) -> MetricResult:
        self._needs_frames("repetition", 3)
        value, per_frame, lag = metrics.repetition(self.frames)
        variant = (
            "frame self-similarity at lag >= 2 (32x32 thumbnails, L1): mean_t clip(1 - (ρ_t+ε)/(δ_t+ε)); "
            "0 = never returns, 1 = loop / ping-pong"
        )
        return MetricResult(value, variant, per_frame, {"lag": lag, "range": [0, 1]})

    def _seams(self) -> MetricResult:
        self._needs_frames("seams", 3)
        threshold, window = self.options.seam_threshold, metrics.SEAM_WINDOW
        value, per_frame, found = metrics.seams(self.frames, threshold, window)
        variant = (
            f"worst (c_t + ε) / (median of c_s, 1 <= |s-t| <= {window}, + ε), c_t = mean|f_t - f_t+1| on RGB "
            f"in [0, 1], ε = {metrics.SEAM_EPS}; seams: pairs t (frames t, t+1) above {threshold:g}; "
            "1 = as smooth as the neighbourhood"
        )
        return MetricResult(
            value, variant, per_frame, {"threshold": threshold, "window": window, "seams": found}
        )

    def _clip_text(self) -> MetricResult:
        if self.prompt is None:
            raise VidforgeError(
                f"--prompts {self.options.prompts!r} has no prompt for this video (and no --prompt)"
            )
        clip = self.models["clip"].get()
        value, per_frame = clip_metrics.clip_text(
            self.embeddings(), clip_metrics.embed_text(clip, self.prompt)
        )
        variant = (
            f"open_clip {clip.name}: mean cos(frame, prompt), raw cosine in [-1, 1] (score = 100 x cosine)"
        )
        extra = {"score_x100": 100 * value, "model": clip.name, "prompt": self.prompt}
        return MetricResult(value, variant, per_frame, extra)

    def _clip_frame(self) -> MetricResult:
        self._needs_frames("clip-frame", 2)
        clip = self.models["clip"].get()
        kind = self.options.clip_frame_variant
        value, per_frame = clip_metrics.clip_frame(self.embeddings(), kind)
        what = "consecutive frames" if kind == "consecutive" else "all frame pairs (Tune-A-Video)"
        variant = f"{kind}: open_clip {clip.name}, mean cos over {what}, in [-1, 1]"
        return MetricResult(value, variant, per_frame, {"score_x100": 100 * value, "model": clip.name})

    def _clip_content(self) -> MetricResult:
        clip = self.models["clip"].get()
        value, per_frame = clip_metrics.clip_content(self.embeddings("source"), self.embeddings())
        variant = f"open_clip {clip.name}: mean cos(input frame t, output frame t), in [-1, 1]"
        return MetricResult(value, variant, per_frame, {"score_x100": 100 * value, "model": clip.name})

    def _pic(self) -> MetricResult:
        if self.source is None or isinstance(self.source, _Unpaired):
            self.source_video()  # raises the right message
        distance, described = self.models["pic"].get()
        if is_image(self.source):
            image_in, what = read_image(self.source), "the --source image"
        else:
            decoded = self.decoded_sources.get(self.source)
            image_in = decoded[0] if decoded is not None else read_video(self.source, 1).frames[0]
            what = "the first frame of the source video"
        value, per_frame = perceptual.pic(image_in, self.frames, distance)
        variant = f"DynamiCrafter PIC: 1/L Σ (1 - D(x_in, x_l)), D = {described}; x_in = {what}"
        return MetricResult(value, variant, per_frame, {"distance": self.options.pic_distance})


def _features(frames: np.ndarray, path, options: EvaluateOptions, i3d: Lazy, device):
    """``(1, D)`` I3D features of the first ``fvd_frames`` frames, or the VidforgeError preventing them
    (kept, so the set metrics fail with it while the per-video metrics still run)."""
    try:
        if len(frames) < options.fvd_frames:
            raise VidforgeError(
                f"{str(path)!r} has {len(frames)} frames but fvd/kvd use the first {options.fvd_frames} "
                f"(StyleGAN-V protocol); pass --fvd-frames {len(frames)} to use fewer for every video"
            )
        return fvd.i3d_features(i3d.get(), [frames], options.fvd_frames, options.fvd_size, device)
    except VidforgeError as e:
        return e


def _set_metrics(options, features, reference, i3d: Lazy, device, bars) -> dict[str, MetricResult]:
    """FVD / KVD between the evaluated videos' features and the ``--source`` reference set."""
    wanted = [m for m in dict.fromkeys(options.metrics) if m in SET_METRICS]
    try:
        if len(features) < 2 or len(reference) < 2:
            raise VidforgeError(
                f"needs at least 2 videos per set (got {len(features)} evaluated and {len(reference)} "
                "in --source); a distance between distributions needs several samples of each"
            )
        i3d.get()  # fail before decoding the reference set when I3D is missing
        ref_features = [
            _features(read_video(p, options.max_frames, options.resize).frames, p, options, i3d, device)
            for p in bars.track(reference, "reference videos")
        ]
        for f in features + ref_features:
            if isinstance(f, VidforgeError):
                raise f
        feats_a, feats_b = np.concatenate(features), np.concatenate(ref_features)
    except VidforgeError as e:
        return {m: failure(f"{m}: I3D features", str(e)) for m in wanted}
    common = {
        "features": f"I3D TorchScript ({Path(fvd.find_i3d(options.i3d)).name}), {feats_a.shape[1]}-d logits",
        "resize": fvd.RESIZE_MODE.format(size=options.fvd_size),
        "frames": options.fvd_frames,
        "n": [len(feats_a), len(feats_b)],
        "seed": options.seed,
    }
    out = {}
    if "fvd" in wanted:
        value = fvd.frechet_distance(feats_a, feats_b)
        out["fvd"] = MetricResult(
            value, "Fréchet distance of I3D features (StyleGAN-V protocol)", None, common
        )
    if "kvd" in wanted:
        value = fvd.kernel_distance(
            feats_a, feats_b, options.kvd_subsets, options.kvd_subset_size, seed=options.seed
        )
        extra = {
            **common,
            "subsets": options.kvd_subsets,
            "subset_size": min(options.kvd_subset_size, len(feats_a), len(feats_b)),
        }
        out["kvd"] = MetricResult(
            value, "unbiased MMD², kernel (xᵀy/d + 1)³, subset average (KID estimator)", None, extra
        )
    return out
