"""One denoiser contract for every sampler, in the spirit of k-diffusion's ``external.py``.

A network predicts ε, v (Salimans & Ho 2022) or x0 depending on how it was trained. Samplers never
branch on that: they call a :class:`Denoiser`, which runs the network (``model(x_in, t)``, already
guided) and converts its output with :func:`to_prediction` into a :class:`Prediction` ``(eps, x0)``
at the sample's noise level, ``x = a·x0 + b·ε`` (:class:`~vidforge.sampling.schedules.Step`).

Anything that changes a prediction mid-loop (stylize's latent fusion) wraps a denoiser; anything
that changes the latents before a step (Reuse-and-Diffuse's staged guidance, stylize's CLIP step)
is a sampler's ``before_step`` hook.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from vidforge.sampling.schedules import Step

# (x_in, t) -> network output. ``t``: the step's timestep, a scalar or ``(B,)``; video models also take
# one timestep per frame, ``(1 or B, F)`` for ``x_in (B, C, F, h, w)`` (FIFO-Diffusion), with a Step
# whose ``a``, ``b`` are per-frame ``(1, 1, F, 1, 1)`` tensors.
Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Prediction(NamedTuple):
    eps: torch.Tensor  # the noise in x
    x0: torch.Tensor  # the clean sample


def to_prediction(
    x: torch.Tensor, output: torch.Tensor, a: torch.Tensor, b: torch.Tensor, prediction_type: str
) -> Prediction:
    """A network output at ``x = a·x0 + b·ε`` as ``(ε, x0)``.

    * ``epsilon``: ``x0 = (x - b·ε) / a``;
    * ``v_prediction`` (``v = a·ε - b·x0``, variance-preserving ``a² + b² = 1``):
      ``ε = a·v + b·x``, ``x0 = a·x - b·v``;
    * ``sample``: ``ε = (x - a·x0) / b``.
    """
    if prediction_type == "epsilon":
        return Prediction(output, (x - b * output) / a)
    if prediction_type == "v_prediction":
        return Prediction(a * output + b * x, a * x - b * output)
    if prediction_type == "sample":
        return Prediction((x - a * output) / b, output)
    raise ValueError(f"unknown prediction type {prediction_type!r}")


class Denoiser:
    """``denoiser(x, step) -> Prediction``: a network with any prediction type behind one contract.

    ``model(x_in, t)`` returns the (guided) network output; ``precision`` converts in another dtype
    (DDIM inversion works in float64) while the network still sees ``x``'s dtype.
    """

    def __init__(self, model: Model, prediction_type: str):
        self.model = model
        self.prediction_type = prediction_type

    def __call__(self, x: torch.Tensor, step: Step, precision: torch.dtype | None = None) -> Prediction:
        x_in = x if step.input_scale is None else x / step.input_scale
        output = self.model(x_in, step.t)
        dtype = precision or x.dtype
        return to_prediction(x.to(dtype), output.to(dtype), step.a, step.b, self.prediction_type)


def eps_from_x0(x: torch.Tensor, x0: torch.Tensor, step: Step) -> torch.Tensor:
    """The ε that goes with a changed x0 at the same ``x``: ``(x - a·x0) / b``."""
    return (x - step.a * x0) / step.b
