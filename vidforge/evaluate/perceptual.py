"""Perceptual input consistency (PIC, DynamiCrafter, Xing et al. 2023).

``PIC = 1/L Σ_l (1 - D(x_in, x_l))`` over the L output frames, with ``D`` a perceptual distance:
DreamSim (the paper's choice; ``pip install 'vidforge[dreamsim]'``) or LPIPS-AlexNet (documented
fallback variant; ``pip install 'vidforge[lpips]'``). Both are optional extras: when missing, or when
their weights are not cached, ``pic`` fails alone with a one-line message.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vidforge.errors import VidforgeError

# (B, 3, H, W) in [0, 1] twice -> (B,) distances
Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

DREAMSIM_SIZE = 224


def pic(image_in: np.ndarray, frames: np.ndarray, distance: Distance, batch_size: int = 8):
    """PIC of ``(F, H, W, 3)`` uint8 ``frames`` against the ``(H', W', 3)`` uint8 input image
    (resized to cover the frames' size and centre-cropped, as ``animate`` prepares it). Returns ``(value, per_frame)``; per_frame is
    ``1 - D(x_in, x_l)`` for each frame."""
    from vidforge.core.video_io import resize_cover

    h, w = frames.shape[1:3]
    x_in = resize_cover(image_in[None], (w, h))
    x_in = torch.from_numpy(np.ascontiguousarray(x_in)).permute(0, 3, 1, 2).float() / 255.0
    per_frame: list[float] = []
    with torch.no_grad():
        for i in range(0, len(frames), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(frames[i : i + batch_size])).permute(0, 3, 1, 2)
            x = x.float() / 255.0
            d = distance(x_in.expand(len(x), -1, -1, -1), x)
            per_frame += (1.0 - d.flatten().float().cpu()).tolist()
    return float(np.mean(per_frame)), per_frame


def load_distance(name: str, device: torch.device) -> tuple[Distance, str]:
    """``(distance, description)`` for ``dreamsim`` or ``lpips``; VidforgeError when unavailable."""
    return (_load_dreamsim if name == "dreamsim" else _load_lpips)(device)


def _cache_root() -> Path:
    return Path(torch.hub.get_dir()).parent


def _load_dreamsim(device: torch.device) -> tuple[Distance, str]:
    try:
        from dreamsim import dreamsim
    except ImportError:
        raise VidforgeError(
            "pic: DreamSim is not installed (pip install 'vidforge[dreamsim]'), or use --pic-distance lpips"
        ) from None
    cache = _cache_root() / "dreamsim"
    if not cache.is_dir() or not any(cache.iterdir()):
        raise VidforgeError(
            f"pic: DreamSim weights are not cached in {cache}; on a connected machine run "
            f"python -c \"from dreamsim import dreamsim; dreamsim(pretrained=True, cache_dir='{cache}')\""
        )
    try:
        model, _ = dreamsim(pretrained=True, cache_dir=str(cache), device=str(device))
    except Exception as e:
        raise VidforgeError(f"pic: cannot load DreamSim from {cache} ({type(e).__name__})") from e

    def distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        size = (DREAMSIM_SIZE, DREAMSIM_SIZE)
        a, b = (F.interpolate(x.to(device), size=size, mode="bicubic", antialias=True) for x in (a, b))
        return model(a.clamp(0, 1), b.clamp(0, 1))

    return distance, "DreamSim ensemble (224x224)"


def _load_lpips(device: torch.device) -> tuple[Distance, str]:
    try:
        import lpips
    except ImportError:
        raise VidforgeError(
            "pic: LPIPS is not installed (pip install 'vidforge[lpips]'), or use --pic-distance dreamsim"
        ) from None
    from torchvision.models import AlexNet_Weights

    backbone = Path(torch.hub.get_dir()) / "checkpoints" / AlexNet_Weights.DEFAULT.url.rsplit("/", 1)[-1]
    if not backbone.exists():
        raise VidforgeError(
            f"pic: LPIPS needs torchvision's AlexNet weights in {backbone.parent}; download "
            f"{AlexNet_Weights.DEFAULT.url} there on a connected machine"
        )
    try:
        model = lpips.LPIPS(net="alex", verbose=False).eval().to(device)
    except Exception as e:
        raise VidforgeError(f"pic: cannot load LPIPS ({type(e).__name__})") from e

    def distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return model(a.to(device) * 2 - 1, b.to(device) * 2 - 1).flatten()

    return distance, "LPIPS-AlexNet v0.1 (fallback variant; the paper uses DreamSim)"
