"""Equivalence with reference implementations, on the tiny models: the evidence that the methods are
wired right until real weights meet the code.

* stylize with its extras off is diffusers' ``StableDiffusionInstructPix2PixPipeline`` (the
  InstructPix2Pix guidance is the four-branch formula with ``--text-branch image``, ``sM = 0`` and
  ``sI = s'_I - s'_T``).
"""

import numpy as np
import torch
from conftest import textured_frames

from vidforge.stylize import StylizeOptions, StylizePipeline


def test_stylize_without_extras_equals_diffusers_instruct_pix2pix():
    from diffusers import DDIMScheduler, StableDiffusionInstructPix2PixPipeline
    from PIL import Image

    text_scale, ip2p_image_scale, steps = 3.0, 4.0, 4
    options = StylizeOptions(
        style="ink wash", model="tiny", steps=steps, device="cpu", text_branch="image",
        image_scale=ip2p_image_scale - text_scale, text_scale=text_scale, attn_scale=0.0,
        fuse_window=(0.0, 0.0), deflicker=0.0, clip_guidance=0.0, seed=4,
    )  # fmt: skip
    ours = StylizePipeline.from_options(options)
    frame = textured_frames(1, 64, 64)
    out = ours(frame, options)

    parts = ours.bundle
    pipe = StableDiffusionInstructPix2PixPipeline(
        vae=parts.vae, text_encoder=parts.text_encoder, tokenizer=None, unet=parts.unet,
        scheduler=DDIMScheduler.from_config(parts.noise_schedule.diffusers_config), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    null, style = ours.encode_prompt(options.style)
    reference = pipe(
        image=Image.fromarray(frame[0]), num_inference_steps=steps, guidance_scale=text_scale,
        image_guidance_scale=ip2p_image_scale, prompt_embeds=style, negative_prompt_embeds=null,
        generator=torch.Generator().manual_seed(options.seed), output_type="np",
    ).images  # fmt: skip
    reference = np.rint(reference * 255).astype(np.int16)
    assert reference.shape == out.shape
    assert np.abs(out.astype(np.int16) - reference).max() <= 1
