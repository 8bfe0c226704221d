"""open_clip image/text encoders, shared by ``stylize`` (CLIP sampling optimization) and ``evaluate``
(CLIP metrics).

``spec`` is ``MODEL/PRETRAINED`` as open_clip names them (``ViT-L-14/openai``) or ``tiny`` (a small
randomly initialised CLIP for tests: no download, meaningless embeddings). Pretrained weights come
from the Hugging Face cache through :func:`vidforge.models.hub.fetch_weights`, so a missing model
fails within seconds with the usual one-line message.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vidforge.errors import VidforgeError
from vidforge.models.hub import fetch_weights
from vidforge.models.registry import ModelSource, Preset
from vidforge.models.tiny import seeded

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
WEIGHT_FILE = "open_clip_model.safetensors"


@dataclass
class ClipModel:
    model: torch.nn.Module  # open_clip CLIP
    name: str
    image_size: int
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` in [0, 1] -> resized (shortest side), centre-cropped, normalised.

        Differentiable, so CLIP losses can be back-propagated to the images."""
        h, w = images.shape[-2:]
        scale = self.image_size / min(h, w)
        size = (max(self.image_size, round(h * scale)), max(self.image_size, round(w * scale)))
        x = F.interpolate(images.float(), size=size, mode="bicubic", align_corners=False, antialias=True)
        top, left = (size[0] - self.image_size) // 2, (size[1] - self.image_size) // 2
        x = x[..., top : top + self.image_size, left : left + self.image_size]
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def encode_images(self, images: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
        """L2-normalised image embeddings ``(B, D)`` of ``(B, 3, H, W)`` images in [0, 1]."""
        feats = [
            self.model.encode_image(self.preprocess(chunk.to(self.device)), normalize=True)
            for chunk in images.split(batch_size)
        ]
        return torch.cat(feats)

    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        """L2-normalised text embeddings ``(B, D)``."""
        import open_clip

        tokens = open_clip.tokenize(prompts).to(self.device)
        return self.model.encode_text(tokens, normalize=True)


def build_tiny_clip(seed: int = 0) -> torch.nn.Module:
    """A ~0.2M-parameter CLIP with the real open_clip classes and vocabulary, random weights."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    with seeded(seed):
        model = CLIP(
            embed_dim=32,
            vision_cfg=CLIPVisionCfg(layers=2, width=64, head_width=32, patch_size=8, image_size=32),
            text_cfg=CLIPTextCfg(context_length=77, vocab_size=49408, width=32, heads=2, layers=2),
        )
    return model.eval()


def load_clip(spec: str = "ViT-L-14/openai", device: torch.device | str = "cpu") -> ClipModel:
    """Load an open_clip model by ``MODEL/PRETRAINED`` (weights from the HF cache) or ``tiny``."""
    import open_clip

    if spec == "tiny":
        return ClipModel(build_tiny_clip().to(device), "tiny", image_size=32)
    model_name, _, pretrained = spec.partition("/")
    if model_name not in open_clip.list_models():
        raise VidforgeError(f"--clip-model {spec!r}: unknown open_clip model {model_name!r}")
    cfg = open_clip.get_pretrained_cfg(model_name, pretrained or "openai")
    repo_id = (cfg or {}).get("hf_hub", "").strip("/")
    if not repo_id:
        raise VidforgeError(f"--clip-model {spec!r}: open_clip has no Hugging Face weights for it")
    source = ModelSource(spec, "clip", preset=Preset(spec, "clip", repo_id, filename=WEIGHT_FILE))
    weights = fetch_weights(source, hint="")
    model = open_clip.create_model(
        model_name, pretrained=str(weights), device=device, force_quick_gelu=bool(cfg.get("quick_gelu"))
    )
    image_size = model.visual.image_size
    image_size = image_size[0] if isinstance(image_size, tuple | list) else image_size
    return ClipModel(
        model.eval(),
        spec,
        int(image_size),
        tuple(cfg.get("mean", OPENAI_MEAN)),
        tuple(cfg.get("std", OPENAI_STD)),
    )
