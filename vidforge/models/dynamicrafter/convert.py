"""Convert a released DynamiCrafter ``model.ckpt`` to the vidforge layout, once, and cache it.

The checkpoint is a Lightning ``{"state_dict": ...}`` (or a DeepSpeed ``{"module": ...}`` whose keys
start with ``_forward_module.``). It is read by :func:`vidforge.models.checkpoint.load_state_dict`,
whose unpickler runs nothing from the file: the metadata Lightning pickles next to the weights
(callbacks, hyper-parameters) loads as inert placeholders and is dropped. The release is inferred
from the tensors (:func:`guess_config`). The converted weights are cached as safetensors in
``<vidforge cache>/converted/<label>-<hash>.safetensors`` (hash of the resolved checkpoint
path, size and mtime), so the pickle is read once.

Key mapping (vidforge name -> checkpoint name; :func:`original_key` implements it)::

    unet.X           -> model.diffusion_model.X      with  .temporal_conv. -> .temopral_conv.
                                                     (the authors' spelling; the correct spelling is
                                                     accepted too)
    image_proj.X     -> image_proj_model.X           (Resampler; same sub-names)
    text_encoder.X   -> cond_stage_model.model.X     (open_clip text tower; same sub-names)
    image_encoder.X  -> embedder.model.visual.X      (open_clip vision tower; same sub-names)
    vae.X            -> first_stage_model.<LDM name of X>, diffusers -> LDM:
        {en,de}coder.conv_norm_out             -> {en,de}coder.norm_out
        encoder.down_blocks.i.resnets.j        -> encoder.down.i.block.j
        encoder.down_blocks.i.downsamplers.0   -> encoder.down.i.downsample
        decoder.up_blocks.i.resnets.j          -> decoder.up.(n-1-i).block.j   (LDM counts up-levels
        decoder.up_blocks.i.upsamplers.0       -> decoder.up.(n-1-i).upsample   from the bottom)
        *.mid_block.resnets.j                  -> *.mid.block_(j+1)
        *.mid_block.attentions.0.{group_norm,to_q,to_k,to_v,to_out.0}
                                               -> *.mid.attn_1.{norm,q,k,v,proj_out}
                                                  (1x1 conv weights (C,C,1,1) -> linear (C,C))
        *.conv_shortcut                        -> *.nin_shortcut
        conv_in, conv_out, quant_conv, post_quant_conv, resnet norm1/conv1/norm2/conv2: unchanged

Renamed on reading: ``model.diffusion_model.framestride_embed.*`` (the 256 release) ->
``fps_embedding``. Kept apart and returned as the *schedule* (the sampler checks them):
``betas, alphas_cumprod, alphas_cumprod_prev, sqrt_alphas_cumprod, sqrt_one_minus_alphas_cumprod,
log_one_minus_alphas_cumprod, sqrt_recip_alphas_cumprod, sqrt_recipm1_alphas_cumprod,
posterior_variance, posterior_log_variance_clipped, posterior_mean_coef1, posterior_mean_coef2,
scale_arr, scale_factor``. Dropped because nothing uses them: ``cond_stage_model.model.logit_scale``,
the text-side leftovers of the image embedder (``embedder.model.*`` outside ``visual.``), any
``*.attn_mask`` buffer and an EMA copy (``model_ema.*``). Every other name is an error.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

import torch

from vidforge.errors import VidforgeError
from vidforge.models.checkpoint import load_state_dict
from vidforge.models.dynamicrafter.config import get_config
from vidforge.models.dynamicrafter.network import build_model
from vidforge.models.hub import file_key, vidforge_cache_dir

PREFIXES = {
    "unet.": "model.diffusion_model.",
    "image_proj.": "image_proj_model.",
    "text_encoder.": "cond_stage_model.model.",
    "image_encoder.": "embedder.model.visual.",
    "vae.": "first_stage_model.",
}
SCHEDULE_KEYS = (
    "betas",
    "alphas_cumprod",
    "alphas_cumprod_prev",
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod",
    "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
    "scale_arr",
    "scale_factor",
)
IGNORED = re.compile(
    r"^cond_stage_model\.model\.logit_scale$|^embedder\.model\.(?!visual\.)|\.attn_mask$|^model_ema\."
)
FORMAT = "vidforge-dynamicrafter-1"
_VAE_ATTN_WEIGHT = re.compile(
    r"^vae\.(en|de)coder\.mid_block\.attentions\.0\.(to_q|to_k|to_v|to_out\.0)\.weight$"
)


# ---------------------------------------------------------------------------------------------
# names


def _vae_ldm_key(key: str, levels: int) -> str:
    """diffusers ``AutoencoderKL`` name -> LDM VAE name (``levels`` = len(block_out_channels))."""

    def up(m: re.Match) -> str:
        return f"decoder.up.{levels - 1 - int(m[1])}."

    rules = [
        (r"^(encoder|decoder)\.conv_norm_out\.", r"\1.norm_out."),
        (r"^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.", r"encoder.down.\1.block.\2."),
        (r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample."),
        (r"^decoder\.up_blocks\.(\d+)\.resnets\.", lambda m: up(m) + "block."),
        (r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.", lambda m: up(m) + "upsample."),
        (r"^(encoder|decoder)\.mid_block\.resnets\.(\d+)\.", lambda m: f"{m[1]}.mid.block_{int(m[2]) + 1}."),
        (r"^(encoder|decoder)\.mid_block\.attentions\.0\.group_norm\.", r"\1.mid.attn_1.norm."),
        (r"^(encoder|decoder)\.mid_block\.attentions\.0\.to_(q|k|v)\.", r"\1.mid.attn_1.\2."),
        (r"^(encoder|decoder)\.mid_block\.attentions\.0\.to_out\.0\.", r"\1.mid.attn_1.proj_out."),
        (r"\.conv_shortcut\.", ".nin_shortcut."),
    ]
    for pattern, repl in rules:
        key = re.sub(pattern, repl, key)
    return key


def original_key(key: str, vae_levels: int = 4) -> str:
    """vidforge state-dict name -> name in the released checkpoint (the table in the module doc)."""
    for ours, theirs in PREFIXES.items():
        if key.startswith(ours):
            rest = key[len(ours) :]
            if ours == "unet.":
                rest = rest.replace(".temporal_conv.", ".temopral_conv.")
            elif ours == "vae.":
                rest = _vae_ldm_key(rest, vae_levels)
            return theirs + rest
    raise KeyError(f"not a DynamiCrafter parameter name: {key}")


def _alias(key: str) -> str:
    """Spellings that name the same tensor as the canonical checkpoint name."""
    if key.startswith("model.diffusion_model."):
        key = key.replace(".framestride_embed.", ".fps_embedding.")
        key = key.replace(".temporal_conv.", ".temopral_conv.")
    return key


def to_original_tensor(key: str, tensor: torch.Tensor) -> torch.Tensor:
    """vidforge tensor -> checkpoint layout (only the VAE attention weights differ: linear -> 1x1 conv)."""
    return tensor[:, :, None, None] if _VAE_ATTN_WEIGHT.match(key) else tensor


def _to_vidforge_tensor(key: str, tensor: torch.Tensor) -> torch.Tensor:
    return tensor[:, :, 0, 0] if _VAE_ATTN_WEIGHT.match(key) and tensor.ndim == 4 else tensor


def original_state_dict(state_dict: dict, vae_levels: int = 4) -> dict:
    """A vidforge state dict written in the released checkpoint's layout (tests, documentation)."""
    return {original_key(k, vae_levels): to_original_tensor(k, v) for k, v in state_dict.items()}


# ---------------------------------------------------------------------------------------------
# conversion


def _names(items, limit: int = 5) -> str:
    items = list(items)
    shown = ", ".join(items[:limit])
    return shown + (f" … and {len(items) - limit} more" if len(items) > limit else "")


def target_state_dict(config) -> dict:
    """Names and shapes of the vidforge model for ``config`` (built on ``meta``: no memory)."""
    return build_model(config, device="meta").state_dict()


def convert_state_dict(state_dict: dict, config) -> tuple[dict, dict]:
    """Checkpoint ``{name: tensor}`` -> (vidforge weights, schedule buffers).

    Names the mapping does not know raise a one-line :class:`VidforgeError`; missing names are
    left for :func:`check_keys` (so a partial dict, e.g. UNet only, can be converted).
    """
    config = get_config(config)
    levels = len(config.vae.block_out_channels)
    names = {original_key(k, levels): k for k in target_state_dict(config)}
    weights, schedule, unknown = {}, {}, []
    for key, tensor in state_dict.items():
        key = _alias(key)
        if key in SCHEDULE_KEYS:
            schedule[key] = tensor
        elif key in names:
            weights[names[key]] = _to_vidforge_tensor(names[key], tensor)
        elif not IGNORED.search(key):
            unknown.append(key)
    if unknown:
        raise VidforgeError(
            f"checkpoint has names that DynamiCrafter-{config.name} does not have ({len(unknown)}): {_names(unknown)} "
            "(is it a DynamiCrafter model.ckpt of that release? pass the matching --model preset)"
        )
    return weights, schedule


def check_keys(weights: dict, target: dict, name: str, release: str) -> None:
    """Strict comparison of names and shapes; one-line error naming what is missing/extra/wrong."""
    missing = [k for k in target if k not in weights]
    unexpected = [k for k in weights if k not in target]
    wrong = [
        f"{k} {tuple(weights[k].shape)} vs {tuple(target[k].shape)}"
        for k in target
        if k in weights and tuple(weights[k].shape) != tuple(target[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing ({_names(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected ({_names(unexpected)})")
    if wrong:
        problems.append(f"{len(wrong)} with the wrong shape ({_names(wrong)})")
    if problems:
        raise VidforgeError(
            f"checkpoint {name} does not fit DynamiCrafter-{release}: keys "
            + "; ".join(problems)
            + " (pass the --model preset that matches the checkpoint)"
        )


def load_strict(model: torch.nn.Module, weights: dict, name: str) -> None:
    """Check names and shapes, then load (``assign=True``: a ``meta`` model takes the tensors as they are)."""
    target = model.state_dict()
    check_keys(weights, target, name, model.config.name)
    model.load_state_dict(weights, strict=True, assign=True)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise VidforgeError(f"checkpoint {name}: tensors left without values: {_names(left)}")


_UNET_CONV_IN = "model.diffusion_model.input_blocks.0.0.weight"
_RESAMPLER_LATENTS = "image_proj_model.latents"


def architecture_shapes(config) -> dict:
    """Checkpoint names and shapes that tell the architectures apart: the UNet's first convolution
    ``(model_channels, in_channels, 3, 3)`` and the Resampler's queries ``(1, tokens, dim)``."""
    config = get_config(config)
    unet, resampler = config.unet, config.resampler
    return {
        _UNET_CONV_IN: (unet.model_channels, unet.in_channels, 3, 3),
        _RESAMPLER_LATENTS: (1, resampler.num_tokens, resampler.dim),
    }


def has_architecture(state_dict: dict, config) -> bool:
    """Whether the tensors of :func:`architecture_shapes` are in ``state_dict`` (checkpoint or
    vidforge names) with ``config``'s shapes."""
    found = 0
    for key, shape in architecture_shapes(config).items():
        tensor = state_dict.get(key, state_dict.get(_vidforge_name(key)))
        if tensor is not None:
            found += 1
            if tuple(tensor.shape) != shape:
                return False
    return found > 0


def _vidforge_name(key: str) -> str:
    for ours, theirs in PREFIXES.items():
        if key.startswith(theirs):
            return ours + key[len(theirs) :]
    return key


def guess_config(state_dict: dict, schedule: dict, label: str = "") -> str:
    """Which config a checkpoint is, from its tensors: ``tiny`` when its shapes are tiny's
    (:func:`has_architecture`); else a release, which all share one architecture: ``attn2.alpha``
    -> 256; else ``scale_arr``'s base (0.3 -> 1024); else 512, or 512-interp when the name says
    "interp" (the two have the same weights layout)."""
    if has_architecture(state_dict, "tiny"):
        return "tiny"
    if any(k.endswith("attn2.alpha") for k in state_dict):
        return "256"
    scale_arr = schedule.get("scale_arr")
    if scale_arr is not None and not scale_arr.is_meta and abs(float(scale_arr[-1]) - 0.3) < 1e-3:
        return "1024"
    return "512-interp" if "interp" in label.lower() else "512"


# ---------------------------------------------------------------------------------------------
# files and cache


def cache_path(checkpoint: Path, label: str) -> Path:
    """``<vidforge cache>/converted/<label>-<hash>.safetensors`` for ``checkpoint``: vidforge's own
    folder (``$HF_HOME/assets/vidforge``), never inside the hub cache, whose tools would flag a
    folder that is no repository and could not remove it."""
    digest = file_key(checkpoint)[:16]
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "--", label).strip("-") or "model"
    return vidforge_cache_dir("converted") / f"{safe}-{digest}.safetensors"


def save_converted(path: Path, weights: dict, schedule: dict, release: str) -> None:
    """Write the cache atomically (temporary file, then rename)."""
    from safetensors.torch import save_file

    tensors = {k: v.contiguous() for k, v in weights.items()}
    tensors.update({f"schedule.{k}": v.contiguous() for k, v in schedule.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        save_file(tensors, str(tmp), metadata={"format": FORMAT, "config": release})
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def read_converted(path: Path) -> tuple[dict, dict, str | None]:
    """A vidforge-layout safetensors file -> (weights, schedule, release name from its metadata)."""
    from safetensors import safe_open

    tensors = load_state_dict(path)
    with safe_open(str(path), "pt") as f:
        release = (f.metadata() or {}).get("config")
    schedule = {k.removeprefix("schedule."): v for k, v in tensors.items() if k.startswith("schedule.")}
    weights = {k: v for k, v in tensors.items() if not k.startswith("schedule.")}
    return weights, schedule, release


def checkpoint_file(path: Path) -> Path:
    """A file, or the checkpoint inside a downloaded folder."""
    if path.is_file():
        return path
    for pattern in ("model.ckpt", "*.safetensors", "*.ckpt"):
        found = sorted(path.glob(pattern))
        if found:
            return found[0]
    raise VidforgeError(f"--model {path}: no model.ckpt or .safetensors file in that folder")


def is_vidforge_layout(keys) -> bool:
    return any(k.startswith(tuple(PREFIXES)) for k in keys)


def convert_checkpoint(checkpoint: Path, label: str, config=None) -> tuple[dict, dict, str]:
    """Read a checkpoint file (its tensors only) and convert it -> (weights, schedule, release)."""
    if checkpoint.suffix == ".safetensors":
        weights, schedule, release = read_converted(checkpoint)
        if is_vidforge_layout(weights):
            return weights, schedule, config or release or guess_config(weights, schedule, label)
        state_dict = {**weights, **schedule}
    else:
        state_dict = load_state_dict(checkpoint)
    schedule_only = {k: v for k, v in state_dict.items() if k in SCHEDULE_KEYS}
    release = config or guess_config(state_dict, schedule_only, label)
    weights, schedule = convert_state_dict(state_dict, release)
    return weights, schedule, release
