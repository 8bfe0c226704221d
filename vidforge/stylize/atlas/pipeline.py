"""``stylize --mode atlas``: edit once in a canonical image, render every frame from it.

StableVideo (Chai et al. 2023) edits atlases of Layered Neural Atlases so nothing can flicker; this
follows CoDeF (Ouyang et al. 2024) for the decomposition: a deformation field ``D(x, y, t)`` and a
canonical content field ``C(u, v)``, fitted per video in minutes (:mod:`.fields`, :mod:`.fit`).
:class:`AtlasStylizer` continues ``stylize.run()`` after its steps 0-3 (options checked, input
opened, model loaded, frames at the processing size), and ``run()`` writes what it yields:

4. read every frame (the fit draws pixels from all of them);
5. fit the fields, or load the saved fit of the same frames and settings (:mod:`.cache`);
6. render the canonical image over the region every frame maps into (:mod:`.canonical`);
7. stylize it once with Style-A-Video (one frame, the same options);
8. render every frame by sampling the edited canonical image at ``D(x, y, t)``; where the atlas
   cannot reproduce the input (``--atlas-blend``), blend in the per-frame result; stream out.

Memory grows with the video's length here (all frames are held for the fit), unlike ``--mode frames``.
"""

from __future__ import annotations

import numpy as np
import torch

from vidforge.core.progress import Bars
from vidforge.stylize.atlas.cache import fit_folder, fit_key, load_fit, save_fit
from vidforge.stylize.atlas.canonical import (
    Canvas,
    blend_mask,
    canvas_from_fields,
    render_canonical,
    render_frame,
    to_images,
)
from vidforge.stylize.atlas.fields import AtlasFields, FieldConfig
from vidforge.stylize.atlas.fit import FitSettings, fit, psnr_from_mse, render_fields, video_tensors
from vidforge.stylize.options import StylizeOptions


def field_config(frames: np.ndarray, options: StylizeOptions) -> FieldConfig:
    num, height, width = frames.shape[:3]
    return FieldConfig(width, height, num, levels=options.atlas_levels, log2_table=options.atlas_table)


def fit_settings(options: StylizeOptions) -> FitSettings:
    return FitSettings(options.atlas_iterations, options.atlas_batch, seed=options.seed)


def new_fields(config: FieldConfig, seed: int, device) -> AtlasFields:
    """Fields with seeded initial weights (the global RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fields = AtlasFields(config)
    return fields.to(device)


@torch.no_grad()
def reconstruction_psnr(fields: AtlasFields, frames: torch.Tensor) -> float:
    """PSNR (dB) of ``C(D(·, ·, t))`` against all frames ``(F, H, W, 3)`` uint8, pooled over pixels."""
    errors = [
        torch.mean((render_fields(fields, t) - frames[t].float() / 255) ** 2) for t in range(len(frames))
    ]
    return psnr_from_mse(float(torch.stack(errors).mean()))


def fitted_fields(
    frames: np.ndarray, options: StylizeOptions, device, bars: Bars
) -> tuple[AtlasFields, dict]:
    """Step 5: the saved fit of these frames and settings, or a new fit (then saved)."""
    config, settings = field_config(frames, options), fit_settings(options)
    key = fit_key(frames, config, settings)
    folder = fit_folder(key)
    loaded = None if options.refit else load_fit(folder, key, config, device)
    if loaded is not None:
        fields, meta = loaded
        return fields, {"atlas_fit": "cached", "atlas_dir": str(folder), **fit_report(meta)}
    fields = new_fields(config, settings.seed, device)
    video = video_tensors(frames, device, bars)
    stats = fit(fields, video, settings, bars)
    meta = {
        "key": key,
        "settings": settings.__dict__,
        "psnr": round(reconstruction_psnr(fields, video.frames), 3),
        "fit_seconds": round(stats["seconds"], 3),
        "device": str(device),
    }
    del video
    save_fit(folder, fields, meta)
    return fields, {"atlas_fit": "fitted", "atlas_dir": str(folder), **fit_report(meta)}


def fit_report(meta: dict) -> dict:
    return {"atlas_psnr": meta.get("psnr"), "fit_seconds": meta.get("fit_seconds")}


@torch.no_grad()
def render_atlas(
    fields: AtlasFields, frames: np.ndarray, canonical, edited, canvas: Canvas, threshold: float, bars: Bars
):
    """Step 8a: every frame from the edited canonical image, ``(F, H, W, 3)`` uint8, the blend masks
    ``(F, H, W)`` uint8 (255 = all per-frame; None when ``threshold`` is 0) and the squared error
    of the original canonical image's rendering (for its PSNR)."""
    device = fields.deform.grid.table.device
    images = to_images(edited, canonical, device=device)
    out = np.empty_like(frames)
    masks = np.zeros(frames.shape[:3], np.uint8) if threshold > 0 else None
    squared = 0.0
    for t in bars.track(range(len(frames)), "atlas render"):
        styled, original = render_frame(fields, t, images, canvas)
        frame = to_images(frames[t], device=device)[0]
        squared += float(torch.mean((original - frame) ** 2))
        out[t] = (styled.permute(1, 2, 0) * 255).round().byte().cpu().numpy()
        if masks is not None:
            masks[t] = (blend_mask(original, frame, threshold)[0] * 255).round().byte().cpu().numpy()
    return out, masks, squared / len(frames)


def blended(atlas: np.ndarray, masks: np.ndarray | None, frames: np.ndarray, pipeline, options, bars):
    """Step 8b: chunks of the atlas frames, with the per-frame Style-A-Video result blended in by the
    masks; the per-frame pass runs only if some mask is non-zero."""
    size = options.batch_frames
    if masks is None or not masks.any():
        for start in range(0, len(atlas), size):
            yield atlas[start : start + size]
        return
    start = 0
    for per_frame in pipeline.stream(frames, options, bars):
        end = start + len(per_frame)
        m = masks[start:end, ..., None].astype(np.float32) / 255
        mixed = (1 - m) * atlas[start:end] + m * per_frame
        yield np.clip(np.round(mixed), 0, 255).astype(np.uint8)
        start = end


class AtlasStylizer:
    """``--mode atlas`` over a :class:`~vidforge.stylize.pipeline.StylizePipeline`: :meth:`stream`
    takes the input's chunks at the processing size and yields the output chunks (steps 4-8 of the
    module docstring); :meth:`summary` reports the fit and the blend after the stream ends."""

    def __init__(self, pipe, options: StylizeOptions):
        self.pipe, self.options = pipe, options
        self.report: dict = {}

    def summary(self) -> dict:
        return dict(self.report)

    def stream(self, chunks, bars: Bars | None = None, num_frames: int | None = None):
        bars = bars or Bars(disable=True)
        pipe, options = self.pipe, self.options
        # 4. Read every frame: the fit draws random pixels from all of them
        frames = np.concatenate(list(chunks))
        # 5. Fit the deformation and canonical fields, or load the saved fit
        with pipe.phases("atlas fit"):
            fields, report = fitted_fields(frames, options, pipe.device, bars)
        # 6. The canonical image over the region every frame maps into
        canvas = canvas_from_fields(fields, pipe.bundle.vae_scale_factor)
        canonical = render_canonical(fields, canvas)
        # 7. Edit once: Style-A-Video on the canonical image, same options
        edited = pipe(canonical[None], options, bars)[0]
        # 8. Render every frame from it; blend the per-frame result where the atlas fails
        with pipe.phases("atlas render"):
            atlas, masks, mse = render_atlas(
                fields, frames, canonical, edited, canvas, options.atlas_blend, bars
            )
        self.report = {
            **report,
            "canonical_psnr": round(psnr_from_mse(mse), 3),
            "canonical_size": f"{canvas.width}x{canvas.height}",
            "blended": round(float(masks.mean()) / 255, 5) if masks is not None else 0.0,
        }
        yield from blended(atlas, masks, frames, pipe, options, bars)
