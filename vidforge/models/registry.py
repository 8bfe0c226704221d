"""Model presets, weight lookup and safe checkpoint reading.

A ``--model`` value is a preset name (``tiny``, ``instruct-pix2pix``, ...), a Hugging Face hub id
(``org/name``), or a local folder or file. Real weights come from the Hugging Face cache
(``HF_HOME``), downloaded on first use. A missing model fails within seconds: we look in the cache
first, honour ``HF_HUB_OFFLINE``, and otherwise ask the hub once with a short timeout, because
huggingface_hub's own retries on an unreachable hub take minutes.
"""

from __future__ import annotations

import contextlib
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

from vidforge.errors import VidforgeError, first_line

HUB_TIMEOUT_S = 8.0


@dataclass(frozen=True)
class Preset:
    name: str
    task: str  # "stylize" | "animate" | "extend"
    repo_id: str | None  # None: built locally (tiny)
    filename: str | None = None  # single-file checkpoint inside the repo
    revision: str | None = None
    description: str = ""


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            "tiny",
            "*",
            None,
            description="small config, seeded random weights: plumbing only, output is noise",
        ),
        Preset(
            "instruct-pix2pix", "stylize", "timbrooks/instruct-pix2pix", description="SD1.5 InstructPix2Pix"
        ),
        Preset(
            "dynamicrafter-256",
            "animate",
            "Doubiiu/DynamiCrafter",
            "model.ckpt",
            description="256x256, 16 frames",
        ),
        Preset(
            "dynamicrafter-512",
            "animate",
            "Doubiiu/DynamiCrafter_512",
            "model.ckpt",
            description="320x512, 16 frames",
        ),
        Preset(
            "dynamicrafter-1024",
            "animate",
            "Doubiiu/DynamiCrafter_1024",
            "model.ckpt",
            description="576x1024, 16 frames",
        ),
        Preset(
            "dynamicrafter-512-interp",
            "animate",
            "Doubiiu/DynamiCrafter_512_Interp",
            "model.ckpt",
            description="320x512, frame interpolation / looping",
        ),
        Preset(
            "modelscope",
            "extend",
            "damo-vilab/text-to-video-ms-1.7b",
            description="ModelScope T2V 1.7B, 256x256",
        ),
        Preset("zeroscope", "extend", "cerspense/zeroscope_v2_576w", description="zeroscope v2, 576x320"),
    ]
}

DEFAULT_MODELS = {"stylize": "instruct-pix2pix", "animate": "dynamicrafter-512", "extend": "modelscope"}


def available_models(task: str | None = None) -> list[str]:
    return [name for name, p in PRESETS.items() if task is None or p.task in ("*", task)]


@dataclass(frozen=True)
class ModelSource:
    """Where a model's weights come from: a preset, a hub id, or a local path."""

    name: str
    preset: Preset | None = None
    path: Path | None = None  # local folder or file

    @property
    def is_tiny(self) -> bool:
        return self.preset is not None and self.preset.repo_id is None

    @property
    def repo_id(self) -> str | None:
        return self.preset.repo_id if self.preset else None


def resolve_model(name_or_path: str | os.PathLike | None, task: str) -> ModelSource:
    """Turn a ``--model`` value into a :class:`ModelSource` without touching the network."""
    name = str(name_or_path) if name_or_path is not None else DEFAULT_MODELS[task]
    if name in PRESETS:
        preset = PRESETS[name]
        if preset.task not in ("*", task):
            raise VidforgeError(
                f"--model {name}: that is a {preset.task} model; {task} models are: {', '.join(available_models(task))}"
            )
        return ModelSource(name, preset=preset)
    path = Path(name).expanduser()
    if path.exists():
        if path.is_file() and path.stat().st_size == 0:
            raise VidforgeError(f"--model {name}: the file is empty")
        return ModelSource(name, path=path)
    if name.count("/") == 1 and not name.startswith((".", "/")) and not Path(name).suffix:
        return ModelSource(name, preset=Preset(name, task, name))
    raise VidforgeError(
        f"--model {name}: unknown model (not a preset, hub id or existing path); "
        f"{task} presets: {', '.join(available_models(task))}"
    )


def hub_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _offline() -> bool:
    from huggingface_hub import constants

    return os.environ.get("HF_HUB_OFFLINE", "0").upper() in ("1", "ON", "YES", "TRUE") or bool(
        constants.HF_HUB_OFFLINE
    )


def _missing(repo_id: str, why: str, hint: str) -> VidforgeError:
    return VidforgeError(
        f"model {repo_id!r} is not in the Hugging Face cache ({hub_cache_dir()}) and {why}: "
        f"download it on a connected machine with `hf download {repo_id}`{hint}"
    )


def fetch_weights(
    source: ModelSource, allow_patterns: list[str] | None = None, hint: str = " or pass --model PATH"
) -> Path:
    """Return a local folder (diffusers layout) or file (single checkpoint) for ``source``.

    Order: local path; Hugging Face cache; one quick hub check, then a normal download.
    ``hint`` ends the error message when the weights cannot be had.
    """
    if source.path is not None:
        return source.path
    if source.is_tiny:
        raise ValueError("tiny models have no weights to fetch")
    preset = source.preset
    from huggingface_hub import hf_hub_download, snapshot_download

    def download(local_only: bool) -> Path:
        if preset.filename:
            return Path(
                hf_hub_download(
                    preset.repo_id, preset.filename, revision=preset.revision, local_files_only=local_only
                )
            )
        return Path(
            snapshot_download(
                preset.repo_id,
                revision=preset.revision,
                allow_patterns=allow_patterns,
                local_files_only=local_only,
            )
        )

    with contextlib.suppress(Exception):
        return download(local_only=True)
    if _offline():
        raise _missing(preset.repo_id, "HF_HUB_OFFLINE is set", hint)
    try:
        from huggingface_hub import HfApi

        HfApi().model_info(preset.repo_id, revision=preset.revision, timeout=HUB_TIMEOUT_S)
    except Exception as e:
        reason = type(e).__name__
        if "RepositoryNotFound" in reason or "404" in str(e):
            raise VidforgeError(f"model {preset.repo_id!r} does not exist on the Hugging Face hub") from e
        raise _missing(preset.repo_id, f"the hub cannot be reached ({reason})", hint) from e
    try:
        return download(local_only=False)
    except Exception as e:
        raise _missing(preset.repo_id, f"the download failed ({type(e).__name__})", hint) from e


def load_state_dict(path: str | os.PathLike) -> dict:
    """Read a ``.safetensors`` file, or a pickle checkpoint with ``weights_only=True`` only.

    A pickle that needs arbitrary Python objects (possibly a malicious payload) is refused, never
    executed; a file that is no checkpoint at all (or is truncated) gets its own message.
    """
    import zipfile

    import torch

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:
            raise VidforgeError(f"cannot read checkpoint {str(path)!r}: not a valid safetensors file") from e
    with open(path, "rb") as f:
        is_legacy_pickle = f.read(1) == b"\x80"  # pickle protocol >= 2 opcode
    if not (zipfile.is_zipfile(path) or is_legacy_pickle):
        raise VidforgeError(f"cannot read checkpoint {str(path)!r}: not a PyTorch or safetensors file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as e:
        if "Unsupported global" in str(e) or "GLOBAL" in str(e):
            raise VidforgeError(
                f"refusing checkpoint {str(path)!r}: it needs arbitrary Python objects to unpickle, which could "
                "run code (vidforge only loads weights_only=True checkpoints; convert it with trusted tools)"
            ) from e
        raise VidforgeError(f"cannot read checkpoint {str(path)!r}: corrupt or truncated") from e
    except Exception as e:
        raise VidforgeError(
            f"cannot read checkpoint {str(path)!r}: corrupt or truncated ({type(e).__name__})"
        ) from e


@contextlib.contextmanager
def seeded(seed: int = 0):
    """Build tiny models with reproducible random weights without disturbing the global RNG."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def load_diffusers_folder(
    source: ModelSource, unet_class, kind: str, subfolders: tuple[str, ...], dtype, allow_patterns=None
):
    """``from_pretrained`` of the UNet, VAE, CLIP text encoder and tokenizer of a diffusers pipeline
    folder (cached, downloaded or local). Returns ``(folder, unet, vae, text_encoder, tokenizer)``.

    ``kind`` names the expected layout in errors ("InstructPix2Pix", "text-to-video");
    ``subfolders`` are the ones that must exist.
    """
    from diffusers import AutoencoderKL
    from transformers import CLIPTextModel, CLIPTokenizer

    folder = Path(fetch_weights(source, allow_patterns=allow_patterns))
    layout = ", ".join(s + "/" for s in subfolders)
    if not folder.is_dir():
        raise VidforgeError(
            f"--model {source.name}: expected a diffusers {kind} folder ({layout}), got a single file"
        )
    missing = [sub for sub in subfolders if not (folder / sub).is_dir()]
    if missing:
        raise VidforgeError(
            f"--model {source.name}: {folder} is not a diffusers {kind} folder (missing {', '.join(m + '/' for m in missing)})"
        )
    try:
        unet = unet_class.from_pretrained(folder, subfolder="unet", torch_dtype=dtype)
        vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", torch_dtype=dtype)
        text_encoder = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder", dtype=dtype)
        tokenizer = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer")
    except (OSError, ValueError, RuntimeError) as e:
        first = first_line(e) or type(e).__name__
        raise VidforgeError(
            f"--model {source.name}: cannot load the diffusers folder {folder}: {first}"
        ) from e
    return folder, unet.eval(), vae.eval(), text_encoder.eval(), tokenizer
