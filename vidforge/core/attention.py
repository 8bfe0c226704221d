"""Attention backend: xformers when its kernels really run on this device, PyTorch SDPA otherwise.

Every attention in vidforge goes through :func:`attention` (our own modules) or through the
diffusers processors installed by :func:`apply_attention_backend` (diffusers models), so the
backend is chosen in one place and reported once.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from vidforge.errors import VidforgeError

BACKENDS = ("auto", "xformers", "sdpa")
_active = "sdpa"


@functools.cache
def xformers_available(device_type: str) -> bool:
    """True only if xformers imports *and* its memory-efficient kernel runs on ``device_type``."""
    if device_type != "cuda":
        return False
    try:
        import xformers.ops as xops

        q = torch.randn(1, 8, 1, 64, device="cuda", dtype=torch.float16)
        xops.memory_efficient_attention(q, q, q)
        return True
    except Exception:  # ImportError, missing CUDA kernels, wrong torch build...
        return False


def select_backend(name: str = "auto", device: torch.device | str = "cpu") -> str:
    """Resolve ``auto``/``xformers``/``sdpa`` for ``device`` and make it the active backend."""
    global _active
    if name not in BACKENDS:
        raise VidforgeError(f"--attention: unknown backend {name!r} (choose from {', '.join(BACKENDS)})")
    device_type = torch.device(device).type
    if name == "xformers" and not xformers_available(device_type):
        raise VidforgeError(
            "--attention xformers: xformers kernels do not load on this device "
            "(install the extra with `pip install vidforge[xformers]` on a CUDA machine, or use --attention sdpa)"
        )
    if name == "auto":
        name = "xformers" if xformers_available(device_type) else "sdpa"
    _active = name
    return name


def active_backend() -> str:
    return _active


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """Fused attention over ``(B, heads, L, D)`` tensors; never materialises the score matrix."""
    if _active == "xformers" and q.is_cuda:
        import xformers.ops as xops

        # xformers takes (B, L, heads, D)
        out = xops.memory_efficient_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), scale=scale
        )
        return out.transpose(1, 2)
    return F.scaled_dot_product_attention(q, k, v, scale=scale)


def apply_attention_backend(model: torch.nn.Module, backend: str | None = None) -> str:
    """Install the backend's diffusers attention processors on every attention layer of ``model``."""
    from diffusers.models.attention_processor import AttnProcessor2_0, XFormersAttnProcessor

    backend = backend or _active
    if not hasattr(model, "set_attn_processor"):
        return backend
    model.set_attn_processor(XFormersAttnProcessor() if backend == "xformers" else AttnProcessor2_0())
    return backend
