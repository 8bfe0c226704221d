"""Fréchet and kernel video distances (FVD, Unterthiner et al. 2018; KVD, the KID estimator of
Bińkowski et al. 2018 on video features), following StyleGAN-V's protocol.

The distances are pure functions over features ``(N, D)``. Features come from I3D as StyleGAN-V
ships it (``i3d_torchscript.pt``: called as ``detector(videos, rescale=False, resize=False,
return_features=True)`` on ``(B, 3, T, 224, 224)`` videos in [-1, 1], returning ``(B, 400)`` logits
before the softmax). vidforge never downloads it: pass ``--i3d PATH`` or put the file in the torch
hub checkpoint cache.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vidforge.errors import VidforgeError

I3D_FILE = "i3d_torchscript.pt"
I3D_URL = "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt"
RESIZE_MODE = "shorter side to {size} (bilinear, antialiased), centre crop {size}x{size}, [-1, 1]"


# ------------------------------------------------------------------------------------------ distances


def _sqrtm_psd(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (negative eigenvalues from
    rounding are clipped to 0)."""
    eigvals, eigvecs = np.linalg.eigh(matrix)
    return (eigvecs * np.sqrt(np.clip(eigvals, 0, None))) @ eigvecs.T


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """``|μ_a - μ_b|² + Tr(Σ_a + Σ_b - 2 (Σ_a Σ_b)^{1/2})`` between Gaussians fitted to ``(N, D)``
    and ``(M, D)`` features (unbiased covariances, as ``np.cov``).

    ``Tr((Σ_a Σ_b)^{1/2})`` is computed as ``Σ sqrt(eig(Σ_a^{1/2} Σ_b Σ_a^{1/2}))``: the same eigenvalues,
    from a symmetric matrix, so no complex square roots appear."""
    a, b = np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    sigma_a = np.atleast_2d(np.cov(a, rowvar=False))
    sigma_b = np.atleast_2d(np.cov(b, rowvar=False))
    root_a = _sqrtm_psd(sigma_a)
    cross = np.linalg.eigvalsh(root_a @ sigma_b @ root_a)
    trace_sqrt = np.sqrt(np.clip(cross, 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(sigma_a) + np.trace(sigma_b) - 2 * trace_sqrt)


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """KID's kernel ``k(x, y) = (xᵀy / D + 1)³``."""
    k = x @ y.T / x.shape[1] + 1.0
    return k * k * k


def kernel_distance(
    feats_a: np.ndarray, feats_b: np.ndarray, num_subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> float:
    """Unbiased MMD² with the polynomial kernel, averaged over ``num_subsets`` random subsets of
    ``m = min(N, M, subset_size)`` features of each set (StyleGAN2-ADA / StyleGAN-V estimator):

    ``MMD² = Σ_{i≠j} k(x_i,x_j)/(m(m-1)) + Σ_{i≠j} k(y_i,y_j)/(m(m-1)) - 2 Σ_{i,j} k(x_i,y_j)/m²``.
    """
    a, b = np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64)
    m = min(len(a), len(b), subset_size)
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(num_subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
        same = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
        total += same - 2 * k_xy.sum() / (m * m)
    return float(total / num_subsets)


# ---------------------------------------------------------------------------------------- I3D features


def find_i3d(path: str | None) -> Path:
    """``--i3d PATH`` when given, else the torch hub checkpoint cache; VidforgeError when absent."""
    if path is not None:
        found = Path(path).expanduser()
        if not found.is_file():
            raise VidforgeError(f"--i3d {path!r}: no such file")
        return found
    cached = Path(torch.hub.get_dir()) / "checkpoints" / I3D_FILE
    if not cached.is_file():
        raise VidforgeError(
            f"fvd/kvd: I3D weights not found in {cached.parent}; download {I3D_URL} (StyleGAN-V's "
            "TorchScript I3D) there on a connected machine, or pass --i3d PATH"
        )
    return cached


def load_i3d(path: Path, device: torch.device):
    """Load a TorchScript I3D feature extractor (never a pickle)."""
    import warnings

    try:
        with warnings.catch_warnings():  # TorchScript is deprecated, but it is the format I3D ships in
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(str(path), map_location=device).eval()
    except Exception as e:
        raise VidforgeError(f"--i3d {str(path)!r}: not a TorchScript I3D model ({type(e).__name__})") from e


def preprocess_video(frames: np.ndarray, num_frames: int, size: int) -> torch.Tensor:
    """First ``num_frames`` of ``(F, H, W, 3)`` uint8 -> ``(3, T, size, size)`` in [-1, 1]: shorter side
    resized to ``size`` (bilinear, antialiased), then a centre crop."""
    x = torch.from_numpy(np.ascontiguousarray(frames[:num_frames])).permute(0, 3, 1, 2).float() / 255.0
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    new = (max(size, round(h * scale)), max(size, round(w * scale)))
    x = F.interpolate(x, size=new, mode="bilinear", align_corners=False, antialias=True)
    top, left = (new[0] - size) // 2, (new[1] - size) // 2
    x = x[..., top : top + size, left : left + size]
    return (x * 2 - 1).permute(1, 0, 2, 3).contiguous()


def i3d_features(detector, videos: list[np.ndarray], num_frames: int, size: int, device) -> np.ndarray:
    """``(N, D)`` features, one video at a time (memory stays bounded for long lists)."""
    feats = []
    with torch.no_grad():
        for frames in videos:
            x = preprocess_video(frames, num_frames, size)[None].to(device)
            feats.append(detector(x, rescale=False, resize=False, return_features=True).float().cpu())
    return torch.cat(feats).numpy()
