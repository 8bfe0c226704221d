"""vidforge extend: long videos clip by clip with Reuse and Diffuse (Gu et al. 2023).

Public API: :func:`run` (the command), the model-agnostic sampler
:func:`sample_reuse_and_diffuse` and the three strategies as pure functions.
"""

from vidforge._lazy import lazy_getattr
from vidforge.extend.options import ExtendOptions

__getattr__ = lazy_getattr(
    __name__,
    {
        "ClipPlan": "vidforge.extend.pipeline",
        "run": "vidforge.extend.pipeline",
        "ReuseState": "vidforge.extend.sampler",
        "invert_clip": "vidforge.extend.sampler",
        "sample_clip": "vidforge.extend.sampler",
        "sample_reuse_and_diffuse": "vidforge.extend.sampler",
        "frame_noise_reversion": "vidforge.extend.reuse",
        "past_dependent_noise_sampling": "vidforge.extend.reuse",
        "staged_guidance_schedule": "vidforge.extend.reuse",
        "staged_guidance_steps": "vidforge.extend.reuse",
    },
)

__all__ = [
    "ClipPlan",
    "ExtendOptions",
    "ReuseState",
    "frame_noise_reversion",
    "invert_clip",
    "past_dependent_noise_sampling",
    "run",
    "sample_clip",
    "sample_reuse_and_diffuse",
    "staged_guidance_schedule",
    "staged_guidance_steps",
]
