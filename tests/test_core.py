"""Core units: device/dtype/seed, attention backend, model lookup and safe loading, VAE chunking,
optical flow, progress."""

import pickle
import time

import numpy as np
import pytest
import torch

from vidforge.core import attention as attn
from vidforge.core.device import make_generator, randn, select_device, select_dtype
from vidforge.core.flow import compute_flow, occlusion_mask, warp
from vidforge.core.progress import Bars
from vidforge.errors import VidforgeError
from vidforge.models.checkpoint import load_state_dict
from vidforge.models.hub import fetch_weights
from vidforge.models.registry import resolve_model

# ------------------------------------------------------------------------------------------ device


def test_cpu_defaults_to_fp32_and_rejects_fp16():
    cpu = select_device("cpu")
    assert select_dtype(cpu) == torch.float32
    assert select_dtype(cpu, "bf16") == torch.bfloat16
    with pytest.raises(VidforgeError, match="fp16"):
        select_dtype(cpu, "fp16")


def test_auto_device_without_cuda_is_cpu():
    if torch.cuda.is_available():
        pytest.skip("machine has CUDA")
    assert select_device("auto").type == "cpu"
    with pytest.raises(VidforgeError, match="CUDA is not available"):
        select_device("cuda")


def test_same_seed_same_noise_different_seed_different_noise():
    a = randn((2, 4, 8, 8), make_generator(7), "cpu")
    b = randn((2, 4, 8, 8), make_generator(7), "cpu")
    c = randn((2, 4, 8, 8), make_generator(8), "cpu")
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


# --------------------------------------------------------------------------------------- attention


def test_auto_backend_falls_back_to_sdpa_on_cpu():
    assert attn.select_backend("auto", "cpu") == "sdpa"
    assert attn.active_backend() == "sdpa"
    with pytest.raises(VidforgeError, match="xformers"):
        attn.select_backend("xformers", "cpu")
    with pytest.raises(VidforgeError, match="unknown backend"):
        attn.select_backend("flash9", "cpu")


def test_attention_matches_explicit_softmax():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 8, generator=g) for _ in range(3))
    reference = torch.softmax(q @ k.transpose(-1, -2) / 8**0.5, dim=-1) @ v
    torch.testing.assert_close(attn.attention(q, k, v), reference, atol=1e-5, rtol=1e-5)
    scaled = torch.softmax(q @ k.transpose(-1, -2) * 0.3, dim=-1) @ v
    torch.testing.assert_close(attn.attention(q, k, v, scale=0.3), scaled, atol=1e-5, rtol=1e-5)


def test_apply_backend_installs_sdpa_processors_on_a_diffusers_model():
    from diffusers import UNet2DConditionModel
    from diffusers.models.attention_processor import AttnProcessor2_0

    unet = UNet2DConditionModel(
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=4,
        norm_num_groups=8,
        sample_size=8,
    )
    assert attn.apply_attention_backend(unet, "sdpa") == "sdpa"
    assert all(isinstance(p, AttnProcessor2_0) for p in unet.attn_processors.values())


# ------------------------------------------------------------------------------------------ models


def test_resolve_model_presets_paths_and_errors(tmp_path):
    assert resolve_model("tiny", "stylize").is_tiny
    assert resolve_model(None, "stylize").repo_id == "timbrooks/instruct-pix2pix"
    assert resolve_model("org/some-model", "extend").repo_id == "org/some-model"
    assert resolve_model(str(tmp_path), "stylize").path == tmp_path
    with pytest.raises(VidforgeError, match="unknown model.*presets: tiny, instruct-pix2pix"):
        resolve_model("no-such-model", "stylize")
    with pytest.raises(VidforgeError, match="that is a animate model"):
        resolve_model("dynamicrafter-512", "stylize")


def test_missing_weights_fail_fast_offline_naming_model_and_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    start = time.perf_counter()
    with pytest.raises(VidforgeError) as info:
        fetch_weights(resolve_model("instruct-pix2pix", "stylize"))
    assert time.perf_counter() - start < 5
    message = str(info.value)
    assert "timbrooks/instruct-pix2pix" in message and str(tmp_path) in message
    assert "vidforge models download instruct-pix2pix" in message and "\n" not in message


class _Payload:
    """A pickle that would create a file when unpickled by a normal unpickler."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_malicious_pickle_loads_its_weights_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "model.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "evil": _Payload(marker)}, ckpt, pickle_protocol=2)
    assert torch.equal(load_state_dict(ckpt)["w"], torch.ones(2))  # the payload is an inert placeholder
    assert not marker.exists()
    torch.save({"state_dict": {"w": _Payload(marker)}}, ckpt)  # where a weight should be: refused
    with pytest.raises(VidforgeError, match="refusing checkpoint .*'w' is not a plain tensor"):
        load_state_dict(ckpt)
    assert not marker.exists()


def test_plain_pickle_and_safetensors_load(tmp_path):
    from safetensors.torch import save_file

    weights = {"w": torch.arange(4.0)}
    torch.save({"state_dict": weights}, tmp_path / "ok.ckpt")
    assert torch.equal(load_state_dict(tmp_path / "ok.ckpt")["w"], weights["w"])
    save_file(weights, tmp_path / "ok.safetensors")
    assert torch.equal(load_state_dict(tmp_path / "ok.safetensors")["w"], weights["w"])
    (tmp_path / "junk.safetensors").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(VidforgeError, match="not a valid safetensors"):
        load_state_dict(tmp_path / "junk.safetensors")


# --------------------------------------------------------------------------------------------- vae


def test_chunked_vae_matches_one_batch():
    from diffusers import AutoencoderKL

    from vidforge.core.vae import decode_latents, encode_frames

    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=8, sample_size=16,
    ).eval()  # fmt: skip
    frames = torch.rand(5, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        whole = encode_frames(vae, frames, chunk_size=5)
        chunked = encode_frames(vae, frames, chunk_size=2)
        assert whole.shape == (5, 4, 8, 8)
        torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(
            decode_latents(vae, whole, 2), decode_latents(vae, whole, 5), atol=1e-5, rtol=1e-4
        )


# -------------------------------------------------------------------------------------------- flow


def test_warp_with_exact_integer_flow(frames):
    a, b = frames[0], frames[1]  # b is a shifted right by 2 px (wrapping)
    flow = np.zeros((*a.shape[:2], 2), np.float32)
    flow[..., 0] = 2.0  # pixel x of a sits at x + 2 in b
    warped = warp(b, flow)
    np.testing.assert_array_equal(warped[:, :-2], a[:, :-2])  # away from the replicated border


def test_dis_recovers_a_translation(frames):
    flow = compute_flow(frames[0], frames[1])
    inner = flow[8:-8, 8:-8]
    assert np.median(inner[..., 0]) == pytest.approx(2.0, abs=0.25)
    assert np.median(inner[..., 1]) == pytest.approx(0.0, abs=0.25)


def test_occlusion_mask_consistent_vs_inconsistent():
    h, w = 16, 16
    fw = np.zeros((h, w, 2), np.float32)
    fw[..., 0] = 3.0
    assert not occlusion_mask(fw, -fw).any()  # forward and backward agree everywhere
    assert occlusion_mask(fw, np.zeros_like(fw)).all()  # backward says nothing moved: |3|² > 0.01·9 + 0.5


def test_motion_boundary_marks_flow_edges():
    fw = np.zeros((16, 16, 2), np.float32)
    fw[:, 8:, 0] = 4.0  # right half moves
    mask = occlusion_mask(fw, -fw, motion_boundary=True)
    assert mask[:, 7].all() and not mask[:, :6].any() and not mask[:, 9:].any()


def test_disabled_bars_pass_items_through():
    with Bars(disable=True) as bars:
        assert list(bars.track(range(4), "x")) == [0, 1, 2, 3]
    with Bars(disable=False) as bars:
        assert [list(bars.track(range(2), "inner")) for _ in bars.track(range(3), "outer")] == [[0, 1]] * 3


def test_garbage_and_truncated_checkpoints_are_not_called_malicious(tmp_path):
    (tmp_path / "garbage.ckpt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(VidforgeError, match="not a PyTorch or safetensors file"):
        load_state_dict(tmp_path / "garbage.ckpt")
    torch.save({"w": torch.zeros(1000)}, tmp_path / "full.ckpt")
    data = (tmp_path / "full.ckpt").read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(VidforgeError, match="cannot read checkpoint"):
        load_state_dict(tmp_path / "cut.ckpt")
