"""vidforge extend: long videos clip by clip with Reuse and Diffuse (Gu et al. 2023).

Public API: :func:`run` (the command), the model-agnostic sampler
:func:`sample_reuse_and_diffuse` and the three strategies as pure functions.
"""

from vidforge.extend.options import ExtendOptions
from vidforge.extend.pipeline import ClipPlan, run
from vidforge.extend.reuse import (
    frame_noise_reversion,
    past_dependent_noise_sampling,
    staged_guidance_schedule,
    staged_guidance_steps,
)
from vidforge.extend.sampler import (
    ReuseState,
    classifier_free_guidance,
    ddim_inversion,
    sample_clip,
    sample_reuse_and_diffuse,
)

__all__ = [
    "ClipPlan",
    "ExtendOptions",
    "ReuseState",
    "classifier_free_guidance",
    "ddim_inversion",
    "frame_noise_reversion",
    "past_dependent_noise_sampling",
    "run",
    "sample_clip",
    "sample_reuse_and_diffuse",
    "staged_guidance_schedule",
    "staged_guidance_steps",
]
