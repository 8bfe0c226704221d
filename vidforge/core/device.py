"""Device, dtype and seed selection shared by every pipeline."""

from __future__ import annotations

import torch

from vidforge.errors import OptionError, VidforgeError

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def select_device(name: str | None = None) -> torch.device:
    """``None``/``"auto"``: CUDA when present, else CPU. Otherwise the named device, checked."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise OptionError(f"--device: unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise VidforgeError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
    return device


def select_dtype(device: torch.device, name: str | None = None) -> torch.dtype:
    """``None``/``"auto"``: fp16 on CUDA (bf16 where supported is opt-in), fp32 on CPU."""
    if name in (None, "auto"):
        return torch.float16 if device.type == "cuda" else torch.float32
    if name not in DTYPES:
        raise VidforgeError(f"--dtype: unknown dtype {name!r} (choose from auto, {', '.join(DTYPES)})")
    dtype = DTYPES[name]
    if device.type == "cpu" and dtype == torch.float16:
        raise VidforgeError("--dtype fp16 is not supported on CPU (use fp32 or bf16)")
    return dtype


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """The one seeded generator a run passes down, so the same seed gives the same frames."""
    return torch.Generator(device=device).manual_seed(int(seed))


def randn(shape, generator: torch.Generator, device, dtype=torch.float32) -> torch.Tensor:
    """Gaussian noise drawn on the generator's device, then moved: identical on CPU and CUDA runs
    that share a CPU generator."""
    noise = torch.randn(shape, generator=generator, device=generator.device, dtype=torch.float32)
    return noise.to(device=device, dtype=dtype)


def execution_device(module: torch.nn.Module) -> torch.device:
    """Where a module computes: its accelerate hook's execution device under CPU offload (its
    weights are then on the CPU or ``meta``), else its parameters' device."""
    for sub in module.modules():
        hook = getattr(sub, "_hf_hook", None)
        device = getattr(hook, "execution_device", None)
        if device is not None:
            return torch.device(device)
    return next(module.parameters()).device


def available_memory(device: torch.device) -> int | None:
    """Bytes free for a run on ``device``: free GPU memory, or the system's available RAM
    (``MemAvailable``); None when it cannot tell."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
