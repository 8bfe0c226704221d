"""Property tests (hypothesis) for the Reuse-and-Diffuse schedule and noise functions."""

from fractions import Fraction

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vidforge.core.device import make_generator
from vidforge.extend.reuse import (
    frame_noise_reversion,
    past_dependent_noise_sampling,
    staged_guidance_schedule,
    staged_guidance_steps,
)


@settings(max_examples=300, deadline=None)
@given(
    steps=st.integers(1, 200),
    prompt_frames=st.integers(1, 12),
    beta=st.fractions(min_value=0, max_value=1, max_denominator=20),
)
def test_dsg_counts_match_the_spec_inequality_exactly(steps, prompt_frames, beta):
    # SPEC: frame j is overwritten at step i iff i < (M - j)·(S/M)·β; counted here in exact rationals.
    expected = [
        sum(
            1 for i in range(steps) if i < Fraction(prompt_frames - j) * Fraction(steps, prompt_frames) * beta
        )
        for j in range(prompt_frames)
    ]
    assert staged_guidance_steps(steps, prompt_frames, float(beta)) == expected
    mask = staged_guidance_schedule(steps, prompt_frames, float(beta))
    assert mask.sum(0).tolist() == expected if mask.numel() else not any(expected)


@settings(max_examples=50, deadline=None)
@given(
    n=st.integers(1, 8),
    m=st.integers(0, 8),
    alpha=st.floats(0, 20),
    seed=st.integers(0, 2**16),
)
def test_pns_keeps_prompt_frames_and_fnr_is_an_involution(n, m, alpha, seed):
    previous = torch.randn(1, 2, n, 3, 3, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(frame_noise_reversion(frame_noise_reversion(previous)), previous)
    noise = past_dependent_noise_sampling(previous, m, alpha, make_generator(seed))
    assert noise.shape == previous.shape
    kept = min(m, n)
    assert torch.equal(noise[:, :, :kept], previous.flip(2)[:, :, :kept])
