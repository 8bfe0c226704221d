"""DynamiCrafter checkpoint conversion: real key layout, round trip, strictness, pickle safety."""

import re
from pathlib import Path

import pytest
import torch

from vidforge.errors import VidforgeError
from vidforge.models import resolve_model
from vidforge.models.dynamicrafter import convert
from vidforge.models.dynamicrafter.load import load_network as load_model
from vidforge.models.dynamicrafter.network import build_model

REFERENCE = Path(__file__).parent / "data" / "dynamicrafter"
TINY_LEVELS = 4  # tiny VAE has 4 levels, like the real one


def reference_state_dict(release: str) -> dict:
    """The released checkpoint's UNet + Resampler names and shapes, as meta tensors (no memory)."""
    sd = {}
    for line in (REFERENCE / f"keys_{release}.txt").read_text().splitlines():
        name, shape = line.split(" ", 1)
        if release == "256":  # the 256 file really spells it framestride_embed
            name = name.replace(".fps_embedding.", ".framestride_embed.")
        sd[name] = torch.empty(tuple(int(s) for s in re.findall(r"\d+", shape)), device="meta")
    return sd


@pytest.mark.parametrize("release,unet_params", [("256", 1_438_854_996), ("512", 1_438_854_980)])
def test_reference_layout_matches_full_size_modules(release, unet_params):
    sd = reference_state_dict(release)
    assert any("temopral_conv" in k for k in sd)
    weights, schedule = convert.convert_state_dict(sd, release)
    assert schedule == {}
    model = build_model(release, device="meta")
    target = {k: v for k, v in model.state_dict().items() if k.startswith(("unet.", "image_proj."))}
    assert set(weights) == set(target)  # nothing missing, nothing left over
    for k, v in target.items():
        assert tuple(weights[k].shape) == tuple(v.shape), k
    convert.check_keys(weights, target, "reference", release)
    assert sum(p.numel() for p in model.unet.parameters()) == unet_params
    alphas = [k for k in weights if k.endswith("attn2.alpha")]
    assert len(alphas) == (16 if release == "256" else 0)


@pytest.fixture(scope="module")
def tiny():
    return build_model("tiny")


@pytest.fixture(scope="module")
def tiny_outputs(tiny):
    return outputs(tiny)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """Converted checkpoints go to a temporary vidforge cache."""
    monkeypatch.setattr(convert, "vidforge_cache_dir", lambda kind: tmp_path / "cache" / kind)
    return tmp_path / "cache"


SCHEDULE = {
    "betas": torch.linspace(0.00085, 0.012, 1000),
    "scale_arr": torch.cat([torch.linspace(1, 0.7, 400), torch.full((1000,), 0.7)]),
}
EXTRAS = {  # names a real checkpoint has that nothing uses
    "cond_stage_model.model.logit_scale": torch.tensor(4.6),
    "embedder.model.logit_scale": torch.tensor(4.6),
    "embedder.model.ln_final.weight": torch.ones(4),
    "embedder.model.token_embedding.weight": torch.zeros(3, 4),
}


def original_checkpoint(model) -> dict:
    sd = convert.original_state_dict(model.state_dict(), TINY_LEVELS)
    return {**sd, **SCHEDULE, **EXTRAS}


def assert_same_model(loaded, reference, reference_outputs):
    """Identical weights, name for name, and the same outputs (kernels may differ in the last bit
    with the memory layout of the loaded tensors)."""
    ref = reference.state_dict()
    got = loaded.state_dict()
    assert set(got) == set(ref)
    for k, v in ref.items():
        assert torch.equal(got[k], v), k
    for a, b in zip(outputs(loaded), reference_outputs, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def outputs(model):
    """Everything the sampler calls, on fixed inputs."""
    gen = torch.Generator().manual_seed(1)
    cfg = model.config
    with torch.no_grad():
        image = torch.rand(1, 3, 64, 64, generator=gen) * 2 - 1
        tokens = model.encode_image_tokens(image)
        text = model.encode_text(["a boat"])
        context = torch.cat([text, tokens], 1)
        x = torch.randn(1, 8, 16, 8, 8, generator=gen)
        eps = model.denoise(x, torch.tensor([500]), context, torch.tensor([24]))
        latent = model.vae.encode(image).latent_dist.mode()
        decoded = model.vae.decode(latent).sample
    assert context.shape == (1, 77 + cfg.num_image_tokens, cfg.context_dim)
    return [tokens, text, eps, latent, decoded]


def test_original_names_use_checkpoint_spellings(tiny):
    names = set(convert.original_state_dict(tiny.state_dict(), TINY_LEVELS))
    assert any(".temopral_conv." in k for k in names) and not any(".temporal_conv." in k for k in names)
    assert "first_stage_model.decoder.up.3.block.0.conv1.weight" in names  # diffusers up_blocks.0
    assert "first_stage_model.decoder.up.0.block.1.conv1.weight" in names  # diffusers up_blocks.3
    assert "first_stage_model.encoder.down.2.block.0.nin_shortcut.weight" in names
    assert "first_stage_model.encoder.mid.attn_1.proj_out.weight" in names
    assert "first_stage_model.decoder.mid.block_2.norm1.weight" in names
    assert "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight" in names
    assert "embedder.model.visual.transformer.resblocks.0.attn.in_proj_weight" in names
    assert "embedder.model.visual.class_embedding" in names
    assert "image_proj_model.layers.0.1.3.weight" in names
    assert "model.diffusion_model.init_attn.0.proj_in.weight" in names
    assert all(k.startswith(tuple(convert.PREFIXES.values())) for k in names)
    ldm_attn = convert.original_state_dict(tiny.state_dict(), TINY_LEVELS)[
        "first_stage_model.encoder.mid.attn_1.q.weight"
    ]
    assert ldm_attn.ndim == 4 and ldm_attn.shape[2:] == (1, 1)  # LDM 1x1 conv


@pytest.mark.parametrize("wrapper", ["lightning", "deepspeed"])
def test_round_trip_ckpt_loads_strictly_with_identical_outputs(
    tiny, tiny_outputs, tmp_path, cache_dir, wrapper, monkeypatch
):
    sd = original_checkpoint(tiny)
    if wrapper == "lightning":
        # the 256 release spells fps_embedding as framestride_embed
        sd = {k.replace(".fps_embedding.", ".framestride_embed."): v for k, v in sd.items()}
        obj = {"state_dict": sd, "epoch": 3}
    else:
        obj = {"module": {"_forward_module." + k: v for k, v in sd.items()}}
    path = tmp_path / "model.ckpt"
    torch.save(obj, path)

    config = "tiny" if wrapper == "deepspeed" else None  # None: the config is inferred from the shapes
    loaded = load_model(resolve_model(str(path), "animate"), "cpu", torch.float32, config=config)
    assert loaded.config.name == "tiny"
    assert set(loaded.schedule) == {"betas", "scale_arr"}
    torch.testing.assert_close(loaded.schedule["scale_arr"], SCHEDULE["scale_arr"])
    assert_same_model(loaded, tiny, tiny_outputs)

    # converted once: the cache is a safetensors file, and the pickle is not read again
    cached = list(cache_dir.glob("converted/*.safetensors"))
    assert len(cached) == 1

    def no_pickle(p):
        assert Path(p).suffix == ".safetensors", f"pickle read again: {p}"
        return original_load(p)

    original_load = convert.load_state_dict
    monkeypatch.setattr(convert, "load_state_dict", no_pickle)
    again = load_model(resolve_model(str(path), "animate"), "cpu", torch.float32, config="tiny")
    torch.testing.assert_close(again.schedule["betas"], SCHEDULE["betas"])
    assert_same_model(again, tiny, tiny_outputs)


def test_converted_safetensors_loads_directly(tiny, tiny_outputs, tmp_path, cache_dir):
    from safetensors.torch import save_file

    path = tmp_path / "dc.safetensors"
    save_file({k: v.contiguous() for k, v in original_checkpoint(tiny).items()}, str(path))
    loaded = load_model(resolve_model(str(path), "animate"), config="tiny")
    assert_same_model(loaded, tiny, tiny_outputs)


def test_missing_and_unknown_keys_are_named_in_one_line(tiny, tmp_path, cache_dir):
    sd = original_checkpoint(tiny)
    dropped = sorted(k for k in sd if k.startswith("model.diffusion_model.output_blocks."))[:12]
    for k in dropped:
        del sd[k]
    torch.save({"state_dict": sd}, tmp_path / "missing.ckpt")
    with pytest.raises(VidforgeError) as err:
        load_model(resolve_model(str(tmp_path / "missing.ckpt"), "animate"), config="tiny")
    msg = str(err.value)
    assert "\n" not in msg and "12 missing" in msg and "… and 7 more" in msg
    named = re.findall(r"unet\.[\w.]+\w", msg)
    expected = {
        "unet." + k.removeprefix("model.diffusion_model.").replace("temopral", "temporal") for k in dropped
    }
    assert len(named) == 5 and set(named) <= expected

    sd = original_checkpoint(tiny)
    sd["model.diffusion_model.extra_block.weight"] = torch.zeros(2)
    torch.save({"state_dict": sd}, tmp_path / "extra.ckpt")
    with pytest.raises(
        VidforgeError, match=r"does not have \(1\): model\.diffusion_model\.extra_block\.weight"
    ):
        load_model(resolve_model(str(tmp_path / "extra.ckpt"), "animate"), config="tiny")

    sd = original_checkpoint(tiny)
    sd["image_proj_model.latents"] = torch.zeros(1, 3, 64)
    torch.save({"state_dict": sd}, tmp_path / "shape.ckpt")
    with pytest.raises(
        VidforgeError, match=r"wrong shape \(image_proj.latents \(1, 3, 64\) vs \(1, 64, 64\)"
    ):
        load_model(resolve_model(str(tmp_path / "shape.ckpt"), "animate"), config="tiny")
    assert not list(cache_dir.glob("converted/*.safetensors"))  # nothing bad was cached


class Payload:
    """Unpickling this with a normal unpickler would create the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_pickle_loads_the_model_and_never_runs(tiny, tiny_outputs, tmp_path, cache_dir):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": original_checkpoint(tiny), "payload": Payload(marker)}, path)
    assert not marker.exists()
    loaded = load_model(resolve_model(str(path), "animate"))  # no config: tiny, from the shapes
    assert_same_model(loaded, tiny, tiny_outputs)
    assert not marker.exists()

    sd = original_checkpoint(tiny)
    sd["image_proj_model.latents"] = Payload(marker)  # a payload where a weight should be
    torch.save({"state_dict": sd}, tmp_path / "bad.ckpt")
    with pytest.raises(VidforgeError, match=r"refusing checkpoint .*bad\.ckpt.*'image_proj_model\.latents'"):
        load_model(resolve_model(str(tmp_path / "bad.ckpt"), "animate"))
    assert not marker.exists()


def test_corrupt_checkpoint_is_one_line_error(tmp_path, cache_dir):
    path = tmp_path / "model.ckpt"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(VidforgeError, match="checkpoint .*model.ckpt") as err:
        load_model(resolve_model(str(path), "animate"))
    assert "\n" not in str(err.value)
    torch.save(torch.zeros(3), tmp_path / "tensor.ckpt")
    with pytest.raises(VidforgeError, match="holds no state dict"):
        load_model(resolve_model(str(tmp_path / "tensor.ckpt"), "animate"))


def test_guess_config():
    alpha = {"model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.alpha": torch.tensor(0.0)}
    assert convert.guess_config(alpha, {}) == "256"
    arr = lambda base: {"scale_arr": torch.cat([torch.linspace(1, base, 400), torch.full((1000,), base)])}  # noqa: E731
    assert convert.guess_config({}, arr(0.3)) == "1024"
    assert convert.guess_config({}, arr(0.7)) == "512"
    assert convert.guess_config({}, arr(0.7), "DynamiCrafter_512_Interp model.ckpt") == "512-interp"
    # the architecture from the shapes: tiny's in either naming; a release's shapes are no tiny
    tiny_shapes = {k: torch.empty(s, device="meta") for k, s in convert.architecture_shapes("tiny").items()}
    assert convert.guess_config(tiny_shapes, arr(0.7)) == "tiny"
    renamed = {"unet.input_blocks.0.0.weight": tiny_shapes["model.diffusion_model.input_blocks.0.0.weight"]}
    assert convert.guess_config(renamed, {}) == "tiny"
    release = {k: torch.empty(s, device="meta") for k, s in convert.architecture_shapes("512").items()}
    assert convert.guess_config({**release, **alpha}, {}) == "256"
    assert convert.guess_config(release, arr(0.3)) == "1024"
    mixed = {**release, "image_proj_model.latents": tiny_shapes["image_proj_model.latents"]}
    assert convert.guess_config(mixed, {}) == "512"  # one shape of tiny's is not tiny


def test_missing_preset_fails_fast_offline(cache_dir):
    import time

    start = time.monotonic()
    with pytest.raises(
        VidforgeError, match=r"Doubiiu/DynamiCrafter_512.*vidforge models download dynamicrafter-512"
    ):
        load_model(resolve_model("dynamicrafter-512", "animate"))
    assert time.monotonic() - start < 10
