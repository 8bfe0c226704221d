"""CoDeF's two fields (Ouyang et al. 2024, arXiv 2308.07926) over multi-resolution hash grids
(Müller et al. 2022, instant-ngp), in plain PyTorch: no CUDA-only extension, so the same code runs
on the CPU (tests) and on CUDA.

* Deformation field ``D(x, y, t) -> (u, v)``: a 3D hash grid over normalised pixel position and
  time, a small ReLU MLP, and ``D = (x, y) + offset``; the offset layer starts at zero, so the fit
  starts from the identity map.
* Canonical content field ``C(u, v) -> RGB``: a 2D hash grid over canonical coordinates and a small
  ReLU MLP. Canonical space is the frame's normalised square ``[0, 1]²`` plus a margin of
  ``CANONICAL_MARGIN`` on every side, for content that moves out of the first frame.

Coordinates are normalised per axis: pixel centre ``(x + 0.5) / W``, ``(y + 0.5) / H``, and frame
``t / (F - 1)``. Grid resolutions are per axis, proportional to the frame's sides, so cells are
square in pixels.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

# instant-ngp's spatial hash: XOR of the integer corner coordinates times these primes, modulo T
PRIMES = (1, 2654435761, 805459861)
CANONICAL_MARGIN = 0.5  # canonical space spans [-0.5, 1.5]² in frame units: twice each side
TABLE_INIT = 1e-4  # table entries start uniform in ±1e-4 (instant-ngp)


@dataclass(frozen=True)
class FieldConfig:
    """Everything that fixes the fields' parameter shapes (saved in the atlas json).

    ``width``, ``height``: the fitted frames' size in pixels; ``frames``: their count.
    ``levels``, ``features``, ``log2_table``: hash-grid levels L, features per level F, and
    ``T = 2**log2_table`` entries per level. Canonical grid: from ``base_resolution`` cells to one
    cell per frame pixel across canonical space; deformation grid: to one cell per
    ``deform_cell`` pixels, and at most one cell per frame in time (CoDeF: 16 levels, 2 features,
    ``T = 2**19``, base resolution 16, both fields)."""

    width: int
    height: int
    frames: int
    levels: int = 16
    features: int = 2
    log2_table: int = 19
    base_resolution: int = 16
    deform_cell: int = 4  # finest deformation cell in pixels: motion is smoother than content
    hidden: int = 64  # MLP width (CoDeF: 64)
    canonical_layers: int = 2  # hidden layers of C's MLP (CoDeF: 2)
    deform_layers: int = 2  # hidden layers of D's MLP (CoDeF: 8; its offsets are smooth, 2 suffice)

    def to_dict(self) -> dict:
        return asdict(self)


def level_resolutions(levels: int, base: int, finest: tuple[float, ...]) -> torch.Tensor:
    """``(L, d)`` float cells per axis: geometric from ``base`` (scaled by each axis' share of the
    largest) to ``finest``; never below 1 cell."""
    finest_t = torch.tensor(finest, dtype=torch.float64)
    start = torch.clamp(base * finest_t / finest_t.max(), min=1.0)
    start = torch.minimum(start, finest_t)
    if levels == 1:
        return finest_t[None].float()
    growth = (finest_t / start) ** (1.0 / (levels - 1))
    steps = torch.arange(levels, dtype=torch.float64)[:, None]
    return torch.floor(start * growth**steps).clamp(min=1.0).float()


class HashGrid(nn.Module):
    """Multi-resolution hash encoding: ``(B, d)`` points in ``[0, 1]^d`` -> ``(B, L·F)`` features,
    d-linear interpolation of each level's ``2^d`` surrounding corners. A level whose
    ``(N + 1)^d`` corners fit in ``T`` entries is indexed densely (no collisions; points outside the
    unit cube clamp to its border); finer levels are hashed. ``level_weights`` ``(L,)`` scales each
    level's features (coarse-to-fine annealing).

    Per axis, the two corner coordinates (and interpolation weights) are computed once and combined
    across axes by broadcasting, so the ``2^d`` corners cost one pass of the cheapest operation."""

    def __init__(self, resolutions: torch.Tensor, features: int, log2_table: int):
        super().__init__()
        levels, dims = resolutions.shape
        corners = (resolutions + 1).prod(dim=1)  # float: fine 3D levels overflow int64
        dense = int((corners <= 2**log2_table).sum())  # levels grow, so the dense ones come first
        sizes = [int(n) for n in corners[:dense]] + [2**log2_table] * (levels - dense)
        offsets = torch.tensor([0, *sizes]).cumsum(0)
        strides = torch.cumprod(torch.cat([torch.ones(levels, 1), resolutions[:, :-1] + 1], 1), 1).long()
        self.register_buffer("resolutions", resolutions, persistent=False)
        self.register_buffer("offsets", offsets[:-1].view(levels, 1, 1), persistent=False)
        self.register_buffer("strides", strides[:dense, None, :, None], persistent=False)
        self.register_buffer("primes", torch.tensor(PRIMES[:dims]).view(1, 1, dims, 1), persistent=False)
        self.table = nn.Parameter(torch.empty(int(offsets[-1]), features).uniform_(-TABLE_INIT, TABLE_INIT))
        self.levels, self.features, self.dense, self.mask = levels, features, dense, 2**log2_table - 1

    @property
    def out_dim(self) -> int:
        return self.levels * self.features

    def forward(self, x: torch.Tensor, level_weights: torch.Tensor | None = None) -> torch.Tensor:
        pos = x[None] * self.resolutions[:, None, :]  # (L, B, d)
        cell = torch.floor(pos)
        frac = pos - cell
        cell = cell.long()
        corner = torch.stack([cell, cell + 1], -1)  # (L, B, d, 2): each axis' two corner coordinates
        dense = self.dense
        limit = self.resolutions[:dense, None, :, None].long()
        dense_index = combine(corner[:dense].clamp(min=0).minimum(limit) * self.strides, torch.add)
        hash_index = combine(corner[dense:] * self.primes, torch.bitwise_xor) & self.mask  # T is 2^k
        index = torch.cat([dense_index, hash_index]) + self.offsets  # (L, B, 2^d)
        weights = combine(torch.stack([1 - frac, frac], -1), torch.mul)  # d-linear, (L, B, 2^d)
        # index_select: its backward (index_add) is several times faster on the CPU than embedding's
        values = self.table.index_select(0, index.reshape(-1)).view(*index.shape, self.features)
        values = (values * weights[..., None]).sum(2)  # (L, B, F)
        if level_weights is not None:
            values = values * level_weights[:, None, None]
        return values.permute(1, 0, 2).reshape(x.shape[0], -1)


def combine(parts: torch.Tensor, op) -> torch.Tensor:
    """``(L, B, d, 2)`` per-axis values -> ``(L, B, 2^d)``: ``op`` over the axes for every corner
    (corner bits in axis order, last axis fastest)."""
    levels, batch, dims, _ = parts.shape
    out = parts[:, :, 0]
    for k in range(1, dims):
        out = op(out[..., :, None], parts[:, :, k, None, :]).reshape(levels, batch, 2 ** (k + 1))
    return out


def mlp(in_dim: int, hidden: int, layers: int, out_dim: int) -> nn.Sequential:
    """``layers`` hidden ReLU layers of width ``hidden``, then a linear output."""
    modules, width = [], in_dim
    for _ in range(layers):
        modules += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    modules.append(nn.Linear(width, out_dim))
    return nn.Sequential(*modules)


class DeformationField(nn.Module):
    """``D(x, y, t) = (x, y) + MLP([x, y, t, H(x, y, t)])``, all normalised; ``(B, 3) -> (B, 2)``."""

    def __init__(self, config: FieldConfig):
        super().__init__()
        sides = (config.width / config.deform_cell, config.height / config.deform_cell)
        finest = (max(sides[0], 1.0), max(sides[1], 1.0), float(max(config.frames - 1, 1)))
        resolutions = level_resolutions(config.levels, config.base_resolution, finest)
        resolutions[:, 2] = resolutions[:, 2].clamp(max=finest[2])
        self.grid = HashGrid(resolutions, config.features, config.log2_table)
        self.mlp = mlp(3 + self.grid.out_dim, config.hidden, config.deform_layers, 2)
        nn.init.zeros_(self.mlp[-1].weight)  # D starts as the identity
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, xyt: torch.Tensor, level_weights: torch.Tensor | None = None) -> torch.Tensor:
        offset = self.mlp(torch.cat([xyt, self.grid(xyt, level_weights)], -1))
        return xyt[:, :2] + offset


class CanonicalField(nn.Module):
    """``C(u, v) = MLP([p, H(p)])`` with ``p = (uv + m) / (1 + 2m)``, m the canonical margin;
    ``(B, 2) -> (B, 3)`` RGB in [0, 1] (not clamped while fitting)."""

    def __init__(self, config: FieldConfig):
        super().__init__()
        span = 1 + 2 * CANONICAL_MARGIN
        finest = (config.width * span, config.height * span)
        resolutions = level_resolutions(config.levels, config.base_resolution, finest)
        self.grid = HashGrid(resolutions, config.features, config.log2_table)
        self.mlp = mlp(2 + self.grid.out_dim, config.hidden, config.canonical_layers, 3)

    def forward(self, uv: torch.Tensor) -> torch.Tensor:
        p = (uv + CANONICAL_MARGIN) / (1 + 2 * CANONICAL_MARGIN)
        return self.mlp(torch.cat([p, self.grid(p)], -1))


class AtlasFields(nn.Module):
    """The deformation and canonical fields of one video."""

    def __init__(self, config: FieldConfig):
        super().__init__()
        self.config = config
        self.deform = DeformationField(config)
        self.canonical = CanonicalField(config)

    def normalise(self, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Pixel coordinates (centres at integers) and frame indices -> ``(B, 3)`` normalised."""
        c = self.config
        return torch.stack([(x + 0.5) / c.width, (y + 0.5) / c.height, t / max(c.frames - 1, 1)], -1)

    def forward(self, xyt: torch.Tensor, level_weights: torch.Tensor | None = None) -> torch.Tensor:
        return self.canonical(self.deform(xyt, level_weights))


def anneal_weights(levels: int, progress: float, device=None) -> torch.Tensor:
    """CoDeF's coarse-to-fine schedule for the deformation grid's levels: level l gets weight
    ``(1 - cos(π·clamp(α - l, 0, 1))) / 2`` with ``α = L·progress``; ``progress`` in [0, 1]."""
    alpha = levels * min(max(progress, 0.0), 1.0)
    index = torch.arange(levels, dtype=torch.float32, device=device)
    return (1 - torch.cos(math.pi * (alpha - index).clamp(0, 1))) / 2
