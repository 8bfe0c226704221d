"""The one preset registry: every model name vidforge knows, its task, family and weights.

A ``--model`` value is a preset name (``tiny``, ``instruct-pix2pix``, ...), a Hugging Face hub id
(``org/name``), or a local folder or file; :func:`resolve_model` turns it into a
:class:`ModelSource` without touching the network or importing torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from vidforge.errors import VidforgeError

# The network family each command's models belong to (``extend --image`` uses animate's).
TASK_FAMILY = {"stylize": "instruct-pix2pix", "animate": "dynamicrafter", "extend": "text-to-video"}
# The files vidforge reads of each family's repositories (safetensors first; no fp16 variants,
# and never an InstructPix2Pix repo's 7.7 GB .ckpt).
FAMILY_FILES = {
    "instruct-pix2pix": [
        "model_index.json", "scheduler/*.json", "tokenizer/*", "text_encoder/config.json",
        "text_encoder/model.safetensors", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
        "vae/config.json", "vae/diffusion_pytorch_model.safetensors",
    ],
    # some text-to-video repos only ship .bin weights
    "text-to-video": [
        "*.json", "*.txt", "*/diffusion_pytorch_model.safetensors", "*/model.safetensors",
        "*/diffusion_pytorch_model.bin", "*/pytorch_model.bin",
    ],
    "dynamicrafter": ["model.ckpt", "*.safetensors"],
}  # fmt: skip
DEFAULT_MODELS = {"stylize": "instruct-pix2pix", "animate": "dynamicrafter-512", "extend": "modelscope"}


@dataclass(frozen=True)
class Preset:
    name: str
    task: str  # "stylize" | "animate" | "extend" | "*" (tiny: every task)
    repo_id: str | None  # None: built locally (tiny)
    filename: str | None = None  # single-file checkpoint inside the repo
    revision: str | None = None
    description: str = ""
    release: str | None = None  # DynamiCrafter release config ("256", "512", ...)
    native: tuple[int, int, int] | None = None  # text-to-video: (frames, height, width) trained at


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset("tiny", "*", None, description="small config, seeded random weights: plumbing only, output is noise"),
        Preset("instruct-pix2pix", "stylize", "timbrooks/instruct-pix2pix", description="SD1.5 InstructPix2Pix"),
        Preset("dynamicrafter-256", "animate", "Doubiiu/DynamiCrafter", "model.ckpt",
               description="256x256, 16 frames", release="256"),
        Preset("dynamicrafter-512", "animate", "Doubiiu/DynamiCrafter_512", "model.ckpt",
               description="320x512, 16 frames", release="512"),
        Preset("dynamicrafter-1024", "animate", "Doubiiu/DynamiCrafter_1024", "model.ckpt",
               description="576x1024, 16 frames", release="1024"),
        Preset("dynamicrafter-512-interp", "animate", "Doubiiu/DynamiCrafter_512_Interp", "model.ckpt",
               description="320x512, frame interpolation / looping", release="512-interp"),
        Preset("modelscope", "extend", "damo-vilab/text-to-video-ms-1.7b",
               description="ModelScope T2V 1.7B, 256x256", native=(16, 256, 256)),
        Preset("zeroscope", "extend", "cerspense/zeroscope_v2_576w",
               description="zeroscope v2, 576x320", native=(24, 320, 576)),
    ]
}  # fmt: skip


def available_models(task: str | None = None) -> list[str]:
    """Preset names, all or those of one task."""
    return [name for name, p in PRESETS.items() if task is None or p.task in ("*", task)]


@dataclass(frozen=True)
class ModelSource:
    """Where a model's weights come from: a preset, a hub id, or a local path; and for which task."""

    name: str
    task: str
    preset: Preset | None = None
    path: Path | None = None  # local folder or file

    @property
    def family(self) -> str:
        return TASK_FAMILY[self.task]

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
        return ModelSource(name, task, preset=preset)
    path = Path(name).expanduser()
    if path.exists():
        if path.is_file() and path.stat().st_size == 0:
            raise VidforgeError(f"--model {name}: the file is empty")
        return ModelSource(name, task, path=path)
    if name.count("/") == 1 and not name.startswith((".", "/")) and not Path(name).suffix:
        return ModelSource(name, task, preset=Preset(name, task, name))
    raise VidforgeError(
        f"--model {name}: unknown model (not a preset, hub id or existing path); "
        f"{task} presets: {', '.join(available_models(task))}"
    )
