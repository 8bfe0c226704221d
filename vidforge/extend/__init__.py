"""vidforge extend: long videos from a short-clip video model, with Reuse and Diffuse (Gu et al.
2023, clip by clip) or FIFO-Diffusion (Kim et al. 2024, a queue of frames at increasing noise).

Public API: :func:`run` (the command), the model-agnostic samplers
:func:`sample_reuse_and_diffuse` and :func:`sample_fifo`, and the Reuse-and-Diffuse strategies as
pure functions.
"""

from vidforge._lazy import lazy_getattr
from vidforge.extend.options import ExtendOptions

__getattr__ = lazy_getattr(
    __name__,
    {
        "ClipPlan": "vidforge.extend.pipeline",
        "FifoState": "vidforge.extend.fifo",
        "sample_fifo": "vidforge.extend.fifo",
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
    "FifoState",
    "ReuseState",
    "frame_noise_reversion",
    "invert_clip",
    "past_dependent_noise_sampling",
    "run",
    "sample_clip",
    "sample_fifo",
    "sample_reuse_and_diffuse",
    "staged_guidance_schedule",
    "staged_guidance_steps",
]
