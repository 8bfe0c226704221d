"""Loading a real (diffusers-layout) InstructPix2Pix folder through ``--model PATH``, offline.

The folder is written from the tiny models with ``save_pretrained`` and a CLIP tokenizer built
from open_clip's bundled BPE vocabulary, so ``from_pretrained`` runs exactly as for the real model.
"""

import gzip
import json

import numpy as np
import pytest
import torch
from conftest import textured_frames

from vidforge.core.video_io import Video
from vidforge.errors import VidforgeError
from vidforge.models import load_model
from vidforge.models.instruct_pix2pix import build_tiny
from vidforge.sampling.schedules import SD_SCHEDULE
from vidforge.stylize import StylizeOptions, run


def load_components(name, device, dtype):
    return load_model(name, "stylize", device, dtype)


def write_clip_tokenizer(folder):
    """vocab.json + merges.txt of the CLIP BPE, from open_clip's copy (same vocabulary)."""
    from open_clip.tokenizer import bytes_to_unicode, default_bpe

    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    vocab = list(bytes_to_unicode().values())
    vocab += [v + "</w>" for v in vocab] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True)
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
    config = {**special, "pad_token": "<|endoftext|>", "model_max_length": 77}  # as SD1.5's tokenizer
    (folder / "tokenizer_config.json").write_text(json.dumps(config))


def write_folder(folder, vae=None):
    """A diffusers InstructPix2Pix folder of the tiny parts (``vae`` replaces the tiny VAE)."""
    from diffusers import DDIMScheduler

    parts = build_tiny(seed=1)
    parts.unet.save_pretrained(folder / "unet")
    (vae or parts.vae).save_pretrained(folder / "vae")
    parts.text_encoder.save_pretrained(folder / "text_encoder")
    DDIMScheduler(**SD_SCHEDULE).save_pretrained(folder / "scheduler")
    write_clip_tokenizer(folder / "tokenizer")
    return folder


@pytest.fixture(scope="module")
def ip2p_folder(tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp("ip2p"))


def vae_with_levels(levels: int):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * levels, up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=(8,) + (16,) * (levels - 1), layers_per_block=1, latent_channels=4, norm_num_groups=8,
    )  # fmt: skip


@pytest.mark.parametrize("levels, factor", [(2, 2), (3, 4), (4, 8)])
def test_the_vae_scale_factor_comes_from_the_vae(tmp_path, levels, factor):
    """diffusers derives 2 ** (levels - 1); so must stylize (sizes, latent shapes), or a folder
    whose VAE has another number of levels fails on tensor sizes."""
    folder = write_folder(tmp_path / f"vae{levels}", vae_with_levels(levels))
    assert load_components(str(folder), "cpu", torch.float32).vae_scale_factor == factor
    frames = textured_frames(2, 21, 27)  # odd sizes: processed at multiples of the factor, resized back
    options = StylizeOptions(style="ink", model=str(folder), steps=1, device="cpu")
    result = run(Video(frames, 8.0), options)
    assert result.frames.shape == frames.shape
    w, h = (int(v) for v in result.info["size"].split("x"))
    assert w % factor == 0 and h % factor == 0 and abs(w - 27) <= factor / 2 and abs(h - 21) <= factor / 2


def test_local_diffusers_folder_loads_with_from_pretrained(ip2p_folder):
    parts = load_components(str(ip2p_folder), torch.device("cpu"), torch.float32)
    assert not parts.is_tiny and parts.unet.config.in_channels == 8
    reference = build_tiny(seed=1)
    name, weight = next(iter(reference.unet.state_dict().items()))
    assert torch.equal(parts.unet.state_dict()[name], weight)  # the saved weights, not fresh ones
    from vidforge.models.text import OpenClipTokenizer, tokenize

    ids = tokenize(parts.tokenizer, ["ink wash painting"])[0]
    expected = OpenClipTokenizer()(["ink wash painting"])[0]  # same CLIP vocabulary; pads with 0
    assert ids.shape == (77,) and ids[0] == 49406
    assert torch.equal(ids[:5], expected[:5]) and ids[4] == 49407  # <sot> ink wash painting <eot>
    assert parts.noise_schedule.diffusers_config["beta_schedule"] == "scaled_linear"


def test_run_with_model_path(ip2p_folder):
    frames = textured_frames(2, 16, 16)
    result = run(
        Video(frames, 8.0), StylizeOptions(style="ink", model=str(ip2p_folder), steps=1, device="cpu")
    )
    assert result.frames.shape == frames.shape and result.frames.dtype == np.uint8
    assert result.info["model"] == str(ip2p_folder)


def test_incomplete_folder_and_single_file_are_refused(tmp_path, ip2p_folder):
    (tmp_path / "half" / "unet").mkdir(parents=True)
    with pytest.raises(VidforgeError, match="missing vae/, text_encoder/, tokenizer/, scheduler/"):
        load_components(str(tmp_path / "half"), torch.device("cpu"), torch.float32)
    single = tmp_path / "model.safetensors"
    single.write_bytes(b"not really")
    with pytest.raises(VidforgeError, match="single file"):
        load_components(str(single), torch.device("cpu"), torch.float32)


def test_text_to_image_unet_is_refused(tmp_path, ip2p_folder):
    import shutil

    from diffusers import UNet2DConditionModel

    folder = tmp_path / "sd"
    shutil.copytree(ip2p_folder, folder)
    config = dict(UNet2DConditionModel.load_config(folder / "unet"))
    config["in_channels"] = 4
    UNet2DConditionModel.from_config(config).save_pretrained(folder / "unet")
    with pytest.raises(VidforgeError, match="4 input channels"):
        load_components(str(folder), torch.device("cpu"), torch.float32)
