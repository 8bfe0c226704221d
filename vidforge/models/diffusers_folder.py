"""Loading the parts of a diffusers pipeline folder (InstructPix2Pix, text-to-video) with
``from_pretrained``, with one-line errors for folders of the wrong layout."""

from __future__ import annotations

from pathlib import Path

from vidforge.errors import VidforgeError, first_line
from vidforge.models.hub import fetch_weights
from vidforge.models.registry import ModelSource


def load_diffusers_folder(source: ModelSource, unet_class, kind: str, subfolders: tuple[str, ...], dtype):
    """``from_pretrained`` of the UNet, VAE, CLIP text encoder and tokenizer of a diffusers pipeline
    folder (cached, downloaded or local). Returns ``(folder, unet, vae, text_encoder, tokenizer)``.

    ``kind`` names the expected layout in errors ("InstructPix2Pix", "text-to-video");
    ``subfolders`` are the ones that must exist.
    """
    from diffusers import AutoencoderKL
    from transformers import CLIPTextModel, CLIPTokenizer

    folder = Path(fetch_weights(source))
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
