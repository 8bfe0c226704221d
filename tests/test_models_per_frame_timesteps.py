"""One timestep per frame (FIFO-Diffusion's diagonal denoising) in both video UNets vidforge runs:
DynamiCrafter's ``VideoUNet`` and diffusers' ``UNet3DConditionModel`` (ModelScope, zeroscope).

Two facts per UNet: a per-frame vector of equal values gives exactly the per-video output, and
with distinct values every ResNet block (the only consumers of the time embedding) receives, for
frame f, exactly the embedding the per-video path gives for frame f's timestep."""

import pytest
import torch

from vidforge.models import load_model
from vidforge.models.dynamicrafter.conditioning import conditioned_unet
from vidforge.models.dynamicrafter.unet import ResBlock
from vidforge.models.text_to_video import build_tiny, unet_model

B, F = 2, 5
T_FRAMES = torch.tensor([[981, 700, 421, 120, 1], [990, 650, 400, 99, 2]])  # (B, F), distinct per frame


@pytest.fixture(scope="module")
def t2v_unet():
    return build_tiny().unet


@pytest.fixture(scope="module")
def dc_unet():
    return load_model("tiny", "animate").network.unet


def inputs(channels, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, channels, F, 8, 8, generator=g), g


def capture(modules, index):
    """Record argument ``index`` (the time embedding) of every call of ``modules``' forward."""
    seen, handles = [], []
    for m in modules:
        handles.append(m.register_forward_pre_hook(lambda mod, args: seen.append(args[index].clone())))
    return seen, handles


# -------------------------------------------------------------------------------- diffusers UNet3D


def resnets(unet):
    from diffusers.models.resnet import ResnetBlock2D

    return [m for m in unet.modules() if isinstance(m, ResnetBlock2D)]


def test_unet3d_equal_per_frame_timesteps_give_exactly_the_per_video_output(t2v_unet):
    z, g = inputs(4)
    text = torch.randn(B, 7, 32, generator=g)
    model = unet_model(t2v_unet)
    with torch.no_grad():
        for t in (999, 421, 1):
            scalar = model(z, torch.tensor(t), text)
            assert torch.equal(model(z, torch.full((1, F), t), text), scalar)  # (1, F): broadcast over B
            assert torch.equal(model(z, torch.full((B, F), t), text), scalar)


def test_unet3d_every_resnet_sees_each_frames_own_timestep_embedding(t2v_unet):
    z, g = inputs(4, seed=1)
    text = torch.randn(B, 7, 32, generator=g)
    model = unet_model(t2v_unet)
    blocks = resnets(t2v_unet)
    assert len(blocks) >= 4
    with torch.no_grad():
        seen, handles = capture(blocks, 1)
        try:
            mixed = model(z, T_FRAMES, text)
            per_frame = list(seen)
            per_video = []
            for i in range(F):  # the per-video path, once per frame's timesteps
                seen.clear()
                model(z, T_FRAMES[:, i], text)
                per_video.append(list(seen))
        finally:
            for h in handles:
                h.remove()
    assert len(per_frame) == len(blocks)
    for r, emb in enumerate(per_frame):
        assert emb.shape[0] == B * F
        for b in range(B):
            for i in range(F):
                assert torch.equal(emb[b * F + i], per_video[i][r][b * F + i])
    assert not torch.allclose(mixed, model(z, T_FRAMES[:, :1].expand(B, F), text))


# ----------------------------------------------------------------------------- DynamiCrafter UNet


def test_videounet_equal_per_frame_timesteps_give_exactly_the_per_video_output(dc_unet):
    z, g = inputs(8)
    context = torch.randn(B, 77 + 64, 64, generator=g)
    fps = torch.tensor([24, 24])
    with torch.no_grad():
        for t in (999, 1):
            scalar = dc_unet(z, torch.full((B,), t), context, fps)
            assert torch.equal(dc_unet(z, torch.full((B, F), t), context, fps), scalar)


def test_conditioned_unet_takes_per_frame_timesteps_through_the_denoiser_contract():
    network = load_model("tiny", "animate").network
    z, g = inputs(4, seed=2)
    latents = torch.randn(1, 4, 1, 8, 8, generator=g)
    context = torch.randn(B, 77 + 64, 64, generator=g)
    model = conditioned_unet(network, latents, fps=24)
    with torch.no_grad():
        assert torch.equal(model(z, torch.full((1, F), 500), context), model(z, torch.tensor(500), context))


def test_videounet_every_resblock_sees_each_frames_own_timestep_embedding(dc_unet):
    z, g = inputs(8, seed=3)
    context = torch.randn(B, 77 + 64, 64, generator=g)
    fps = torch.tensor([24, 10])
    blocks = [m for m in dc_unet.modules() if isinstance(m, ResBlock)]
    with torch.no_grad():
        seen, handles = capture(blocks, 1)
        try:
            dc_unet(z, T_FRAMES, context, fps)
            per_frame = list(seen)
            per_video = []
            for i in range(F):
                seen.clear()
                dc_unet(z, T_FRAMES[:, i], context, fps)
                per_video.append(list(seen))
        finally:
            for h in handles:
                h.remove()
    assert len(per_frame) == len(blocks) >= 4
    for r, emb in enumerate(per_frame):
        for b in range(B):
            for i in range(F):
                assert torch.equal(emb[b * F + i], per_video[i][r][b * F + i])
    with pytest.raises(ValueError, match=r"per-frame timesteps must be \(B, F\)"):
        dc_unet(z, T_FRAMES[:, :3], context, fps)
