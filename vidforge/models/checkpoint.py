"""Reading checkpoint files safely: safetensors, or a pickle with ``weights_only=True`` only."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

from vidforge.errors import VidforgeError


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
