"""Per-clip checkpoints beside the output, so an interrupted long run can ``--resume``.

Folder ``<output>.extend-state/``: ``state.safetensors`` (the sampler state's tensors, i.e. the
:class:`ReuseState` or the FIFO queue of :class:`FifoState`, and the RNG state),
``frames_NNNNN.npz`` (uint8 frames each clip or chunk added to the video) and ``meta.json``
(options fingerprint, the state's index: next clip or next frame, frame chunks). ``meta.json`` is replaced last and
atomically: it is the commit point, so a crash mid-save leaves the previous checkpoint valid.
Nothing is pickled.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from vidforge.core.video_io import media_path
from vidforge.errors import VidforgeError
from vidforge.extend.fifo import FifoState
from vidforge.extend.sampler import ReuseState

# 2: every clip contributes all N frames (1 dropped clip k's first M); FIFO queues; meta 'index'
FORMAT_VERSION = 2
# Options that do not change the frames of a given clip: free to differ on --resume.
# what may change on --resume: the length, and how the frames are computed rather than what they are
# (memory options: a run that ran out of memory resumes with --offload or --vae-slicing)
NOT_FINGERPRINTED = {"frames", "resume", "device", "attention", "offload", "vae_slicing", "compile"}


def state_dir_for(output: str | os.PathLike) -> Path:
    """``OUTPUT.extend-state/`` beside the output file (beside the folder of numbered frames)."""
    output = media_path(output)
    return output.with_name(output.name + ".extend-state")


def fingerprint(options) -> dict:
    """The options a checkpoint was made with (those that decide the frames)."""
    return {k: v for k, v in dataclasses.asdict(options).items() if k not in NOT_FINGERPRINTED}


class Checkpoint:
    """Read and write one run's checkpoint folder."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.meta: dict = {}

    # ------------------------------------------------------------------------------------ writing

    def start(self, options) -> None:
        """A fresh run: remove any stale state and record the options."""
        if self.folder.exists():
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True)
        self.meta = {
            "version": FORMAT_VERSION,
            "options": fingerprint(options),
            "index": 0,
            "chunks": [],
        }
        self._write_meta()

    def add_frames(self, frames: np.ndarray) -> None:
        """Save a chunk of frames already part of the video (committed by the next :meth:`commit`)."""
        name = f"frames_{len(self.meta['chunks']):05d}.npz"
        tmp = self.folder / f".{name}.tmp.npz"
        np.savez(tmp, frames=np.ascontiguousarray(frames, dtype=np.uint8))
        os.replace(tmp, self.folder / name)
        self.meta.setdefault("pending", []).append([name, int(frames.shape[0])])

    def commit(self, state: ReuseState | FifoState, generator: torch.Generator) -> None:
        """Record ``state`` (its ``index``: the next clip, or the next FIFO frame) and the frames
        added since."""
        from safetensors.torch import save_file

        tensors = {k: v.detach().to("cpu", torch.float32) for k, v in state.tensors().items()}
        tensors["rng_state"] = generator.get_state().cpu()
        tmp = self.folder / ".state.tmp.safetensors"
        save_file(tensors, str(tmp))
        os.replace(tmp, self.folder / "state.safetensors")
        self.meta["chunks"] += self.meta.pop("pending", [])
        self.meta["index"] = state.index
        self._write_meta()

    def _write_meta(self) -> None:
        tmp = self.folder / ".meta.tmp.json"
        tmp.write_text(json.dumps(self.meta, indent=1))
        os.replace(tmp, self.folder / "meta.json")

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    # ------------------------------------------------------------------------------------ reading

    @classmethod
    def load(cls, folder: Path, options) -> Checkpoint:
        """Open a checkpoint for ``--resume``; one-line errors when absent, corrupt or made with
        other options."""
        checkpoint = cls(folder)
        meta_path = checkpoint.folder / "meta.json"
        if not meta_path.exists():
            raise VidforgeError(
                f"--resume: no checkpoint in {str(checkpoint.folder)!r} (run without --resume to start over)"
            )
        try:
            checkpoint.meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise VidforgeError(f"--resume: the checkpoint {str(meta_path)!r} is unreadable") from e
        checkpoint.meta.pop("pending", None)
        if checkpoint.meta.get("version") != FORMAT_VERSION:
            raise VidforgeError(f"--resume: {str(checkpoint.folder)!r} is from another vidforge version")
        saved = checkpoint.meta.get("options", {})
        current = json.loads(json.dumps(fingerprint(options)))  # same normalisation as the saved copy
        if options.seed == -1:  # "any seed": the interrupted run's
            current["seed"] = saved.get("seed")
        changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        if changed:
            names = ", ".join(f"--{k.replace('_', '-')} (was {saved.get(k)!r})" for k in changed)
            raise VidforgeError(
                f"--resume: options differ from the interrupted run: {names}; use the same options"
            )
        return checkpoint

    def seeded(self, options):
        """``options`` with the interrupted run's seed in place of ``-1``."""
        if options.seed != -1:
            return options
        return dataclasses.replace(options, seed=int(self.meta["options"]["seed"]))

    @property
    def index(self) -> int:
        return int(self.meta["index"])

    def state(self, device, dtype, state_type=ReuseState):
        """``(state, generator state)``: the saved ``state_type`` (:class:`ReuseState` or
        :class:`FifoState`) on ``device``, and the generator state (None before the first commit)."""
        path = self.folder / "state.safetensors"
        if not path.exists():
            return state_type.from_tensors(self.index, {}), None
        from safetensors.torch import load_file

        try:
            tensors = load_file(str(path))
        except Exception as e:
            raise VidforgeError(f"--resume: the checkpoint {str(path)!r} is unreadable") from e
        move = {k: v.to(device=device, dtype=dtype) for k, v in tensors.items() if k != "rng_state"}
        return state_type.from_tensors(self.index, move), tensors.get("rng_state")

    def frame_chunks(self):
        """Yield the saved frame chunks in order, one at a time (constant memory)."""
        for name, _ in self.meta["chunks"]:
            try:
                with np.load(self.folder / name, allow_pickle=False) as data:
                    yield data["frames"]
            except (OSError, ValueError, KeyError) as e:
                raise VidforgeError(
                    f"--resume: the checkpoint frames {str(self.folder / name)!r} are unreadable"
                ) from e

    @property
    def num_frames(self) -> int:
        """Frames committed to the video so far."""
        return sum(count for _, count in self.meta["chunks"])
