"""The ``vidforge`` command line: parse options, build an options object, call the Python API.

No ML happens here. Every command runs inside :func:`handle_errors`, so a user sees
``error: <one line>`` and a non-zero exit code (2 for usage, 1 for runtime), never a traceback
(set ``VIDFORGE_DEBUG=1`` to get one).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

try:  # typer >= 0.20 vendors click
    from typer._click import exceptions as click_exceptions
    from typer._click.core import ParameterSource
    from typer._click.globals import get_current_context
except ImportError:  # pragma: no cover
    from click import exceptions as click_exceptions
    from click.core import ParameterSource
    from click.globals import get_current_context

from vidforge._version import __version__
from vidforge.animate.options import AnimateOptions
from vidforge.errors import OptionError, Terminated, VidforgeError, first_line
from vidforge.evaluate.options import METRICS, WEIGHT_FREE_METRICS, EvaluateOptions
from vidforge.extend.options import ExtendOptions
from vidforge.stylize.options import StylizeOptions

app = typer.Typer(
    name="vidforge",
    help="Video editing with video diffusion models: stylize, animate, extend, evaluate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# ------------------------------------------------------------------------------------ shared options

Output = Annotated[
    Path | None,
    typer.Option(
        "--output",
        "-o",
        help="Output file: .mp4, .mov, .mkv, .webm, .gif, or DIR/%05d.png for numbered PNG frames.",
    ),
]
Model = Annotated[
    str | None,
    typer.Option(
        help="Preset name, Hugging Face hub id, or local folder/file. 'tiny' = random weights, noise output."
    ),
]
Seed = Annotated[int, typer.Option(help="Random seed: same seed, same frames; -1 picks one (recorded).")]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.", rich_help_panel="Hardware")]
Dtype = Annotated[
    str, typer.Option(help="auto (fp16 on GPU, fp32 on CPU), fp32, fp16, bf16.", rich_help_panel="Hardware")
]
Attention = Annotated[
    str,
    typer.Option(help="auto (xformers when its kernels load), xformers, sdpa.", rich_help_panel="Hardware"),
]
Overwrite = Annotated[bool, typer.Option(help="Replace an existing output file.")]
Codec = Annotated[
    str | None,
    typer.Option(
        help="h264 (default), h265, vp9 (default for .webm), prores (.mov, .mkv), ffv1 (lossless, .mkv).",
        rich_help_panel="Output",
    ),
]
Crf = Annotated[
    int | None,
    typer.Option(
        help="Quality for h264/h265/vp9: lower is better and larger (defaults 18/22/31).",
        rich_help_panel="Output",
    ),
]
Quiet = Annotated[
    bool, typer.Option("--quiet", "-q", help="No progress and no summary line (--progress none).")
]
Progress = Annotated[
    str, typer.Option(help="auto (bars on a terminal, plain lines with an ETA in logs), bar, plain or none.")
]
Settings = Annotated[
    Path | None,
    typer.Option(
        help="Replay an earlier output's settings record (OUTPUT.json); flags given here override it."
    ),
]
Offload = Annotated[
    str,
    typer.Option(
        help="Keep weights in CPU memory: none, model (a network moves to the GPU while it runs) or "
        "sequential (layer by layer: least memory, slowest).",
        rich_help_panel="Memory",
    ),
]
VaeSlicing = Annotated[
    bool, typer.Option(help="Decode the VAE one frame at a time.", rich_help_panel="Memory")
]
VaeTiling = Annotated[
    bool, typer.Option(help="Tile the VAE for very large frames.", rich_help_panel="Memory")
]
Compile = Annotated[
    bool,
    typer.Option(
        help="Run the denoiser through torch.compile (slow start, faster steps).", rich_help_panel="Hardware"
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON object describing the result to stdout.")]
Resize = Annotated[str | None, typer.Option(help="Resize frames to WIDTHxHEIGHT first, e.g. 512x320.")]
OutputDir = Annotated[
    Path | None,
    typer.Option(
        help="Folder for the outputs of several inputs: DIR/NAME.mp4 for an input NAME.* (without it: "
        "NAME_stylized.mp4 etc. beside each input).",
        rich_help_panel="Many inputs",
    ),
]
SkipExisting = Annotated[
    bool,
    typer.Option(
        help="Skip an input whose output exists and whose settings record (OUTPUT.json) says it was "
        "made from the same input with the same options.",
        rich_help_panel="Many inputs",
    ),
]


# What to change when a command runs out of GPU memory.
OUT_OF_MEMORY_HINTS = {
    "stylize": "lower --batch-frames or --max-side, or pass --offload model",
    "animate": "lower --frames or --width/--height, pass --vae-slicing or --offload model",
    "extend": "lower --height/--width, pass --vae-slicing or --offload model",
    "evaluate": "pass --resize or --max-frames, or --device cpu",
}


def handle_errors(command):
    """Turn library errors into one line on stderr and an exit code."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except MemoryError:
            _fail(f"out of memory: {OUT_OF_MEMORY_HINTS.get(command.__name__, 'use smaller inputs')}", 1)
        except (typer.Exit, click_exceptions.ClickException):
            raise
        except OptionError as e:
            _fail(str(e), 2)
        except VidforgeError as e:
            _fail(str(e), 1)
        except Terminated:
            _fail("terminated", 143)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except Exception as e:
            if type(e).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError, without importing torch
                hint = OUT_OF_MEMORY_HINTS.get(command.__name__, "use smaller inputs")
                _fail(f"out of GPU memory: {hint}", 1)
            if os.environ.get("VIDFORGE_DEBUG") == "1":
                raise
            if isinstance(e, OSError) and e.filename is not None:
                # the system's own words are the clearest: disk full, name too long, permission denied
                _fail(f"{str(e.filename)!r}: {e.strerror or first_line(e)}", 1)
            _fail(
                f"internal error: {type(e).__name__}: {first_line(e)} (set VIDFORGE_DEBUG=1 for the traceback)",
                1,
            )

    return wrapper


def _fail(message: str, code: int):
    if os.environ.get("VIDFORGE_DEBUG") == "1" and sys.exc_info()[0] is not None:
        raise
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _default_output(command: str, source: Path | None, output_dir: Path | None = None) -> Path:
    """Where an output goes without ``-o``: the naming rule of several inputs (beside the input,
    ``STEM_stylized.mp4``; extend without an input, ``extended.mp4``)."""
    from vidforge.batch.jobs import output_for

    return output_for(command, source, output_dir)


def _report(result, as_json: bool, quiet: bool) -> None:
    from vidforge.core.progress import summary

    if as_json:
        typer.echo(result.to_json())
    if not quiet:
        timings = (result.settings or {}).get("timings")
        typer.echo(summary(result.num_frames, result.seconds, result.output, timings, result.note), err=True)


def _bars(quiet: bool, progress: str = "auto"):
    from vidforge.core.progress import PROGRESS_MODES, bars

    if progress not in PROGRESS_MODES:
        raise OptionError(f"--progress must be one of {', '.join(PROGRESS_MODES)}")
    return bars("none" if quiet else progress)


def _options(cls, params: dict, **converted):
    """The options object of a command, from its parameters: every parameter named like a field
    of ``cls`` (paths as strings), then ``converted`` values; with ``--settings``, the recorded
    options stand in for every flag not given on the command line. Validated."""
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: str(v) if isinstance(v, Path) else v for k, v in params.items() if k in names}
    values.update(converted)
    if params.get("settings") is not None:
        values.update(_recorded(params["settings"], names))
    options = cls(**values)
    options.validate()
    return options


def _recorded(path: Path, names: set[str]) -> dict:
    """The options of a settings record that the command line does not set (lists as tuples)."""
    from vidforge.core.settings import read_settings

    context = get_current_context()
    recorded = read_settings(path, context.command.name)["options"]
    given = {
        name for name in context.params if context.get_parameter_source(name) is ParameterSource.COMMANDLINE
    }
    aliases = {"fuse_window", "resize", "metric"}  # parsed parameters with the field's name
    return {
        name: tuple(value) if isinstance(value, list) else value
        for name, value in recorded.items()
        if name in names and name not in given and not (name in aliases and name in given)
    }


def _inputs(given: list[Path] | None, settings: Path | None, key: str, what: str) -> list[Path]:
    """The command's inputs: as given, or the one a ``--settings`` record names."""
    if given:
        return given
    if settings is None:
        raise OptionError(f"missing {what} (or --settings OUTPUT.json to replay a run)")
    from vidforge.core.settings import read_settings

    recorded = read_settings(settings, get_current_context().command.name)["inputs"].get(key) or {}
    if not recorded.get("path"):
        raise OptionError(f"--settings {str(settings)!r} names no {what} (it was given as frames): pass one")
    return [Path(recorded["path"])]


def _input_jobs(command, items, options, output, output_dir, kind="video", field=None):
    """The jobs of a command given several inputs (a folder, a .txt list, several paths) or
    ``--output-dir``; None for one input without ``--output-dir``, which runs as it always has."""
    from vidforge.core.inputs import expand_inputs, names_several

    if output_dir is None and not names_several(items, kind):
        return None
    from vidforge.batch.jobs import input_jobs

    paths = expand_inputs(items, field and f"--{field}" or kind, kind)
    if output is not None and (len(paths) > 1 or output_dir is not None):
        raise OptionError("-o/--output names one output; for several inputs give --output-dir DIR")
    if output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
    jobs = input_jobs(command, paths, options, output_dir, field)
    return [dataclasses.replace(jobs[0], output=str(output))] if output is not None else jobs


def _already_done(command, options, source, output, skip_existing: bool, as_json: bool) -> bool:
    """``--skip-existing`` for one input: say so and return True when there is nothing to do."""
    if not skip_existing:
        return False
    from vidforge.batch.jobs import Job, is_done

    if not is_done(Job("1", command, options, str(source) if source is not None else None, str(output))):
        return False
    if as_json:
        import json as json_module

        typer.echo(json_module.dumps({"output": str(output), "status": "skipped"}))
    else:
        typer.echo(f"skipped: {output} exists with the same settings and input", err=True)
    return True


def _run_jobs(jobs, overwrite: bool, skip_existing: bool, quiet: bool, progress: str, as_json: bool) -> None:
    """Several inputs in this process, the model loaded once; exit 1 if any failed."""
    from vidforge.batch import executor

    with _bars(quiet, progress) as bars:
        outcomes = executor.execute(jobs, overwrite=overwrite, skip_existing=skip_existing, bars=bars)
    _report_jobs(outcomes, None, as_json, quiet, table=False)


def _report_jobs(outcomes, results, as_json: bool, quiet: bool, table: bool) -> None:
    """One JSON object (``--json``) or a table and a summary line; one ``error:`` line per failed
    job; exit code 1 if any failed."""
    from vidforge.batch import executor

    counts = executor.counts(outcomes)
    if as_json:
        import json as json_module

        payload = {"results": str(results) if results else None, **counts, "jobs": outcomes}
        typer.echo(json_module.dumps(payload))
    elif not quiet:
        if table:
            executor.print_table(outcomes)
        typer.echo(executor.summary(outcomes, results), err=True)
    for line in executor.error_lines(outcomes):
        typer.echo(line, err=True)
    if counts["failed"]:
        raise typer.Exit(1)


# ------------------------------------------------------------------------------------------ commands


@app.command(
    epilog='Example: vidforge stylize examples/clip.mp4 --style "ink wash painting" -o clip_ink.mp4\n\n'
    "Style-A-Video: zero-shot, text-driven, on an InstructPix2Pix backbone."
)
@handle_errors
def stylize(
    inputs: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Input video(s): files, folders (every video in them) or .txt lists.",
            show_default=False,
            metavar="INPUT",
        ),
    ] = None,
    style: Annotated[
        str, typer.Option(help="Style prompt, e.g. 'ink wash painting'.", show_default=False)
    ] = "",
    mode: Annotated[
        str,
        typer.Option(
            help="frames: the diffusion model on every frame (Style-A-Video); keyframes: edit keyframes, "
            "optical flow between (StableVideo); atlas: fit a canonical image and a deformation per video "
            "(CoDeF), stylize it once, render every frame from it."
        ),
    ] = StylizeOptions.mode,
    output: Output = None,
    output_dir: OutputDir = None,
    skip_existing: SkipExisting = False,
    model: Model = None,
    steps: Annotated[int, typer.Option(help="Denoising steps.")] = StylizeOptions.steps,
    seed: Seed = StylizeOptions.seed,
    image_scale: Annotated[
        float, typer.Option(help="sI: image (content) guidance.", rich_help_panel="Guidance")
    ] = StylizeOptions.image_scale,
    text_scale: Annotated[
        float, typer.Option(help="sT: text (style) guidance.", rich_help_panel="Guidance")
    ] = StylizeOptions.text_scale,
    attn_scale: Annotated[
        float, typer.Option(help="sM: self-attention-map guidance.", rich_help_panel="Guidance")
    ] = StylizeOptions.attn_scale,
    text_branch: Annotated[
        str,
        typer.Option(
            help="paper: eps(z,∅,c_T); image: eps(z,c_I,c_T) keeps more structure at high sT.",
            rich_help_panel="Guidance",
        ),
    ] = StylizeOptions.text_branch,
    clip_guidance: Annotated[
        float, typer.Option(help="λ of the CLIP sampling optimization; 0 = off.", rich_help_panel="Guidance")
    ] = StylizeOptions.clip_guidance,
    clip_steps: Annotated[
        int, typer.Option(help="Apply CLIP optimization on the first N steps.", rich_help_panel="Guidance")
    ] = StylizeOptions.clip_steps,
    clip_model: Annotated[
        str,
        typer.Option(
            help="open_clip MODEL/PRETRAINED for the CLIP loss (loaded only when λ > 0).",
            rich_help_panel="Guidance",
        ),
    ] = StylizeOptions.clip_model,
    scheduler: Annotated[
        str, typer.Option(help="ddim, euler or euler-a (samplers whose step needs no history).")
    ] = StylizeOptions.scheduler,
    fuse_window: Annotated[
        str,
        typer.Option(
            help="START:END fraction of the schedule with latent flow fusion; 0:0 = off.",
            rich_help_panel="Temporal",
        ),
    ] = "{}:{}".format(*StylizeOptions.fuse_window),
    fuse_strength: Annotated[
        float, typer.Option(help="Latent fusion strength.", rich_help_panel="Temporal")
    ] = StylizeOptions.fuse_strength,
    deflicker: Annotated[
        float, typer.Option(help="Pixel fusion strength after decoding; 0 = off.", rich_help_panel="Temporal")
    ] = StylizeOptions.deflicker,
    batch_frames: Annotated[
        int, typer.Option(help="Frames per UNet call (x4 branches): faster on GPU, more memory.")
    ] = StylizeOptions.batch_frames,
    keyframe_interval: Annotated[
        str,
        typer.Option(
            help="--mode keyframes: every K-th frame and the last; auto: a new keyframe when motion or "
            "occlusion since the last one passes a threshold.",
            rich_help_panel="Keyframes",
        ),
    ] = str(StylizeOptions.keyframe_interval),
    propagation_strength: Annotated[
        float,
        typer.Option(
            help="--mode keyframes: how far each keyframe is re-noised from the previous edit carried "
            "to it (SDEdit); 1 = independent keyframes, 0 = pure carry-over.",
            rich_help_panel="Keyframes",
        ),
    ] = StylizeOptions.propagation_strength,
    max_frames: Annotated[int | None, typer.Option(help="Only the first N frames.")] = None,
    resize: Resize = None,
    max_side: Annotated[
        int,
        typer.Option(
            help="Process frames whose longer side is larger at this size, then resize back; 0 = full size."
        ),
    ] = StylizeOptions.max_side,
    device: Device = StylizeOptions.device,
    dtype: Dtype = StylizeOptions.dtype,
    attention: Attention = StylizeOptions.attention,
    atlas_iterations: Annotated[
        int, typer.Option(help="Fit iterations.", rich_help_panel="Atlas mode")
    ] = StylizeOptions.atlas_iterations,
    atlas_batch: Annotated[
        int, typer.Option(help="Pixels per fit iteration.", rich_help_panel="Atlas mode")
    ] = StylizeOptions.atlas_batch,
    atlas_levels: Annotated[
        int, typer.Option(help="Hash-grid levels of both fields.", rich_help_panel="Atlas mode")
    ] = StylizeOptions.atlas_levels,
    atlas_table: Annotated[
        int, typer.Option(help="log2 hash-table entries per level.", rich_help_panel="Atlas mode")
    ] = StylizeOptions.atlas_table,
    atlas_blend: Annotated[
        float,
        typer.Option(
            help="Use the per-frame result where the atlas's reconstruction error exceeds this; 0 = off.",
            rich_help_panel="Atlas mode",
        ),
    ] = StylizeOptions.atlas_blend,
    refit: Annotated[
        bool, typer.Option(help="Fit again, ignoring a saved fit.", rich_help_panel="Atlas mode")
    ] = StylizeOptions.refit,
    offload: Offload = "none",
    vae_slicing: VaeSlicing = False,
    vae_tiling: VaeTiling = False,
    compile: Compile = False,
    overwrite: Overwrite = False,
    codec: Codec = None,
    crf: Crf = None,
    settings: Settings = None,
    progress: Progress = "auto",
    quiet: Quiet = False,
    json: Json = False,
):
    """Restyle a video from a text prompt (Style-A-Video)."""
    from vidforge import stylize as api
    from vidforge.core.options import parse_size
    from vidforge.stylize.options import parse_keyframe_interval

    try:
        lo, hi = (float(v) for v in fuse_window.split(":"))
    except ValueError:
        raise OptionError(f"--fuse-window {fuse_window!r}: expected START:END, e.g. 0:0.5") from None
    options = _options(
        StylizeOptions, locals(), fuse_window=(lo, hi), resize=parse_size(resize),
        keyframe_interval=parse_keyframe_interval(keyframe_interval),
    )  # fmt: skip
    inputs = _inputs(inputs, settings, "input", "INPUT video")
    jobs = _input_jobs("stylize", inputs, options, output, output_dir)
    if jobs is not None:
        return _run_jobs(jobs, overwrite, skip_existing, quiet, progress, json)
    output = output or _default_output("stylize", inputs[0])
    if _already_done("stylize", options, inputs[0], output, skip_existing, json):
        return
    with _bars(quiet, progress) as bars:
        result = api.run(inputs[0], options, output=output, bars=bars, overwrite=overwrite)
    _report(result, json, quiet)


@app.command(
    epilog='Example: vidforge animate examples/still.png --prompt "the waves crash" -o waves.mp4\n\n'
    "DynamiCrafter; 16 frames is native, other lengths work but quality may drop."
)
@handle_errors
def animate(
    images: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Input image(s) (PNG, JPEG, WebP): files, folders (every image in them) or .txt lists.",
            show_default=False,
            metavar="IMAGE",
        ),
    ] = None,
    prompt: Annotated[str, typer.Option(help="What should move and how.")] = "",
    output: Output = None,
    output_dir: OutputDir = None,
    skip_existing: SkipExisting = False,
    model: Model = None,
    steps: Annotated[int, typer.Option(help="DDIM steps.")] = AnimateOptions.steps,
    seed: Seed = AnimateOptions.seed,
    frames: Annotated[
        int, typer.Option(help="Frames to generate (16 native; other lengths may lose quality).")
    ] = AnimateOptions.frames,
    text_scale: Annotated[
        float, typer.Option(help="Text CFG scale.", rich_help_panel="Guidance")
    ] = AnimateOptions.text_scale,
    image_scale: Annotated[
        float | None,
        typer.Option(
            help="Image CFG scale s_img: e_u + s_img(e_img - e_u) + s_txt(e_c - e_img); unset: plain text CFG.",
            rich_help_panel="Guidance",
        ),
    ] = None,
    guidance_rescale: Annotated[
        float | None,
        typer.Option(help="Guidance rescale (default 0.7 for 512/1024).", rich_help_panel="Guidance"),
    ] = None,
    eta: Annotated[float, typer.Option(help="DDIM eta.")] = AnimateOptions.eta,
    fps: Annotated[
        int | None,
        typer.Option(
            help="fps conditioning, 512/1024 models (default 24/10; lower = more motion); also the output fps."
        ),
    ] = None,
    frame_stride: Annotated[
        int | None,
        typer.Option(help="Frame-stride conditioning, 256 model (default 3; higher = more motion)."),
    ] = None,
    end_image: Annotated[Path | None, typer.Option(help="Interp model: the last frame.")] = None,
    loop: Annotated[
        bool,
        typer.Option(
            help="Interp model: loop back to the input image; writes --frames minus 1 frames (the last, a repeat of the first, is dropped)."
        ),
    ] = False,
    height: Annotated[int | None, typer.Option(help="Output height (multiple of 64).")] = None,
    width: Annotated[int | None, typer.Option(help="Output width (multiple of 64).")] = None,
    output_fps: Annotated[
        float, typer.Option(help="Frame rate of the video file (the fps conditioning is --fps).")
    ] = AnimateOptions.output_fps,
    decode_per_frame: Annotated[bool, typer.Option(hidden=True, help="Old name of --vae-slicing.")] = False,
    vae_fp32: Annotated[
        bool, typer.Option(help="Decode the VAE in fp32 (avoids fp16 NaNs).")
    ] = AnimateOptions.vae_fp32,
    device: Device = AnimateOptions.device,
    dtype: Dtype = AnimateOptions.dtype,
    attention: Attention = AnimateOptions.attention,
    offload: Offload = "none",
    vae_slicing: VaeSlicing = False,
    vae_tiling: VaeTiling = False,
    compile: Compile = False,
    overwrite: Overwrite = False,
    codec: Codec = None,
    crf: Crf = None,
    settings: Settings = None,
    progress: Progress = "auto",
    quiet: Quiet = False,
    json: Json = False,
):
    """Turn a still image into a short video (DynamiCrafter)."""
    from vidforge import animate as api

    vae_slicing = vae_slicing or decode_per_frame
    options = _options(AnimateOptions, locals())
    images = _inputs(images, settings, "image", "IMAGE")
    jobs = _input_jobs("animate", images, options, output, output_dir, "image")
    if jobs is not None:
        return _run_jobs(jobs, overwrite, skip_existing, quiet, progress, json)
    output = output or _default_output("animate", images[0])
    if _already_done("animate", options, images[0], output, skip_existing, json):
        return
    with _bars(quiet, progress) as bars:
        result = api.run(images[0], options, output=output, bars=bars, overwrite=overwrite)
    _report(result, json, quiet)


@app.command(
    epilog='Example: vidforge extend --prompt "a river through a forest" --frames 128 -o river.mp4\n\n'
    "--method reuse: Reuse-and-Diffuse, clip by clip. --method fifo: FIFO-Diffusion, a queue of frames "
    "at increasing noise, one frame per step. Both in constant memory."
)
@handle_errors
def extend(
    prompt: Annotated[str, typer.Option(help="Text prompt.", show_default=False)] = "",
    method: Annotated[
        str,
        typer.Option(
            help="reuse: Reuse-and-Diffuse (Gu et al. 2023), clip by clip. fifo: FIFO-Diffusion (Kim et al. "
            "2024), diagonal denoising of a frame queue."
        ),
    ] = ExtendOptions.method,
    frames: Annotated[int, typer.Option(help="Total frames to write.")] = ExtendOptions.frames,
    output: Output = None,
    output_dir: OutputDir = None,
    skip_existing: SkipExisting = False,
    model: Annotated[
        str | None,
        typer.Option(
            help="modelscope (default, 16 frames 256x256), zeroscope (24 frames 576x320), a hub id or a "
            "diffusers folder; with --image: dynamicrafter-256/512 (default)/1024 or a DynamiCrafter "
            "checkpoint; 'tiny' = random weights, noise output."
        ),
    ] = None,
    steps: Annotated[
        int, typer.Option(help="DDIM steps per clip (reuse; fifo runs --partitions x N).")
    ] = ExtendOptions.steps,
    seed: Seed = ExtendOptions.seed,
    negative_prompt: Annotated[
        str | None,
        typer.Option(help="Negative prompt (default: reuse 'watermark', fifo empty, as the authors')."),
    ] = ExtendOptions.negative_prompt,
    text_scale: Annotated[
        float | None,
        typer.Option(
            help="CFG scale; <= 1 turns CFG off (the prompt branch alone; default: reuse 10, fifo 12)."
        ),
    ] = ExtendOptions.text_scale,
    guidance_scale: Annotated[
        float | None, typer.Option(hidden=True, help="Old name of --text-scale.")
    ] = None,
    eta: Annotated[
        float | None, typer.Option(help="DDIM eta (default: reuse 0, fifo 1).")
    ] = ExtendOptions.eta,
    prompt_frames: Annotated[
        int,
        typer.Option(
            help="M: frames of the previous clip reused as prompt.", rich_help_panel="Reuse-and-Diffuse"
        ),
    ] = ExtendOptions.prompt_frames,
    noise_recycle: Annotated[
        float,
        typer.Option(help="α: past-dependent noise sampling strength.", rich_help_panel="Reuse-and-Diffuse"),
    ] = ExtendOptions.noise_recycle,
    staged_guidance: Annotated[
        float, typer.Option(help="β: denoising with staged guidance.", rich_help_panel="Reuse-and-Diffuse")
    ] = ExtendOptions.staged_guidance,
    keep_prompt_frames: Annotated[  # accepted for old scripts: the layout it asked for is the default now
        bool, typer.Option("--keep-prompt-frames", hidden=True, help="No-op: now the default layout.")
    ] = False,
    partitions: Annotated[
        int,
        typer.Option(
            help="n: latent partitions; the queue holds n·N frames (n·N DDIM levels).",
            rich_help_panel="FIFO-Diffusion",
        ),
    ] = ExtendOptions.partitions,
    lookahead: Annotated[
        bool,
        typer.Option(help="Lookahead denoising (twice the UNet calls).", rich_help_panel="FIFO-Diffusion"),
    ] = ExtendOptions.lookahead,
    clip_frames: Annotated[
        int | None,
        typer.Option(help="N: frames per clip (default: the model's).", rich_help_panel="Reuse-and-Diffuse"),
    ] = None,
    height: Annotated[int | None, typer.Option(help="Frame height.")] = None,
    width: Annotated[int | None, typer.Option(help="Frame width.")] = None,
    fps: Annotated[
        float | None,
        typer.Option(
            help="Output fps (default: the --init video's, else 8; with --image: the model's fps "
            "conditioning, which --fps sets for dynamicrafter-512/1024)."
        ),
    ] = None,
    init: Annotated[
        list[Path] | None,
        typer.Option(
            help="Extend this video (DDIM-inverted; reuse only); --frames counts it too. Several "
            "(repeated, a folder or a .txt list): one output each.",
            rich_help_panel="Reuse-and-Diffuse",
        ),
    ] = None,
    image: Annotated[
        list[Path] | None,
        typer.Option(
            help="Extend an animation of this image (DynamiCrafter, the animate model). Several "
            "(repeated, a folder or a .txt list): one output each."
        ),
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run from its checkpoints.")] = False,
    device: Device = ExtendOptions.device,
    dtype: Dtype = ExtendOptions.dtype,
    attention: Attention = ExtendOptions.attention,
    offload: Offload = "none",
    vae_slicing: VaeSlicing = False,
    vae_tiling: VaeTiling = False,
    compile: Compile = False,
    overwrite: Overwrite = False,
    codec: Codec = None,
    crf: Crf = None,
    settings: Settings = None,
    progress: Progress = "auto",
    quiet: Quiet = False,
    json: Json = False,
):
    """Generate a long video in constant memory (Reuse-and-Diffuse or FIFO-Diffusion)."""
    from vidforge import extend as api

    if guidance_scale is not None:  # the old name of --text-scale
        text_scale = guidance_scale
    inits, images = init or [], image or []
    field, items = _extend_inputs(inits, images)
    # the first of each (several: replaced per job by input_jobs)
    first = {"init": str(inits[0]) if inits else None, "image": str(images[0]) if images else None}
    options = _options(ExtendOptions, locals(), **first)
    kind = "image" if field == "image" else "video"
    jobs = _input_jobs("extend", items, options, output, output_dir, kind, field) if items else None
    if jobs is not None:
        return _run_jobs(jobs, overwrite, skip_existing, quiet, progress, json)
    if output is None and output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
    output = output or _default_output("extend", None, output_dir)
    if _already_done("extend", options, None, output, skip_existing, json):
        return
    try:
        with _bars(quiet, progress) as bars:
            result = api.run(options, output=output, bars=bars, overwrite=overwrite)
    except KeyboardInterrupt as e:  # the partial video and checkpoint are kept: say where
        if str(e):
            typer.echo(str(e), err=True)
        raise
    _report(result, json, quiet)


def _extend_inputs(inits: list[Path], images: list[Path]) -> tuple[str | None, list[Path]]:
    """Which of --init / --image names the inputs of several runs (the other is one file or none)."""
    from vidforge.core.inputs import names_several

    several = [
        name
        for name, v, kind in (("init", inits, "video"), ("image", images, "image"))
        if names_several(v, kind)
    ]
    if len(several) == 2:
        raise OptionError("--init and --image cannot both name several inputs; give several of one only")
    if several:
        return several[0], inits if several[0] == "init" else images
    if inits:
        return "init", inits
    return ("image", images) if images else (None, [])


@app.command(
    epilog="Examples:\n\n  vidforge evaluate out.mp4 --source examples/clip.mp4 --metric warp-error\n\n"
    "  vidforge evaluate outputs/ --json > scores.json\n\n"
    f"Metrics: {', '.join(METRICS)}. Default: the weight-free set ({', '.join(WEIGHT_FREE_METRICS)})."
)
@handle_errors
def evaluate(
    videos: Annotated[
        list[Path],
        typer.Argument(help="Videos, folders of videos, or .txt lists.", show_default=False, metavar="VIDEO"),
    ],
    source: Annotated[
        Path | None,
        typer.Option(
            help="Source video (warp-error flow, clip-content), image or video (pic), or a folder/.txt of "
            "videos (paired with the inputs in order; the fvd/kvd reference set)."
        ),
    ] = None,
    prompt: Annotated[str | None, typer.Option(help="Prompt for clip-text (every video).")] = None,
    prompts: Annotated[
        Path | None,
        typer.Option(
            help='Per-video prompts for clip-text: JSON {"out.mp4": "prompt", ...}; --prompt is the fallback.'
        ),
    ] = None,
    metric: Annotated[
        list[str] | None, typer.Option("--metric", "-m", help="Metric to compute (repeatable).")
    ] = None,
    flow: Annotated[
        str, typer.Option(help="dis (OpenCV, no weights) or raft (torchvision RAFT-large).")
    ] = EvaluateOptions.flow,
    max_frames: Annotated[int | None, typer.Option(help="Only the first N frames.")] = None,
    resize: Resize = None,
    clip_model: Annotated[
        str, typer.Option(help="open_clip MODEL/PRETRAINED for CLIP metrics.")
    ] = EvaluateOptions.clip_model,
    warp_variant: Annotated[
        str, typer.Option(help="lai (MSE) or dvp (L1, short + long term).")
    ] = EvaluateOptions.warp_variant,
    clip_frame_variant: Annotated[
        str, typer.Option(help="consecutive or all-pairs.")
    ] = EvaluateOptions.clip_frame_variant,
    pic_distance: Annotated[
        str, typer.Option(help="pic distance: dreamsim (paper) or lpips (fallback); optional extras.")
    ] = EvaluateOptions.pic_distance,
    i3d: Annotated[
        Path | None,
        typer.Option(help="StyleGAN-V i3d_torchscript.pt for fvd/kvd (default: torch hub cache)."),
    ] = None,
    seam_threshold: Annotated[
        float,
        typer.Option(help="seams: flag a frame pair changing more than this times its neighbours' median."),
    ] = EvaluateOptions.seam_threshold,
    fvd_frames: Annotated[
        int, typer.Option(help="Frames per video for fvd/kvd.")
    ] = EvaluateOptions.fvd_frames,
    json: Json = False,
    format: Annotated[
        str,
        typer.Option(
            "--format",
            help="table (stderr), json (stdout; same as --json) or vbench (VBench's results JSON).",
        ),
    ] = "table",
    csv: Annotated[
        Path | None,
        typer.Option(help="Also write the scores to this CSV file (numbers; variants in NAME.variants.csv)."),
    ] = None,
    plot: Annotated[Path | None, typer.Option(help="Draw per-frame curves to this PNG.")] = None,
    device: Device = EvaluateOptions.device,
    seed: Seed = EvaluateOptions.seed,
    progress: Progress = "auto",
    quiet: Quiet = False,
):
    """Score videos: warp error, flicker, motion, repetition, CLIP metrics, PIC, FVD."""
    from vidforge import evaluate as api
    from vidforge.core.options import parse_size

    metrics = tuple(metric) if metric else WEIGHT_FREE_METRICS
    options = _options(EvaluateOptions, locals(), metrics=metrics, resize=parse_size(resize))
    format = "json" if json else format
    api.check_format(format, options.metrics)
    api.check_outputs(csv, plot)
    with _bars(quiet, progress) as bars:
        report = api.run([str(v) for v in videos], options, bars=bars)
    api.write_report(report, format=format, csv=csv, plot=plot, quiet=quiet)
    if report.failed:
        raise typer.Exit(1)


@app.command(
    epilog="Example: vidforge batch jobs.jsonl --output-dir out/ --engine ray\n\n"
    'A JSONL line: {"command": "stylize", "input": "a.mp4", "output": "a.mp4", "style": "ink wash", '
    '"model": "tiny", "steps": 20}; CSV: the same keys as columns. See README "Running at scale".'
)
@handle_errors
def batch(
    jobs: Annotated[
        Path,
        typer.Argument(
            help="JOBS file: .jsonl or .csv, one job per line: command, input, output and the command's "
            "options (long names).",
            show_default=False,
            metavar="JOBS",
        ),
    ],
    output_dir: Annotated[
        Path | None,
        typer.Option(help="Relative outputs go here, and results.jsonl (default: the JOBS file's folder)."),
    ] = None,
    engine: Annotated[
        str,
        typer.Option(
            help="local (this machine, nothing to start) or ray (a Ray cluster; pip install 'vidforge\\[ray]')."
        ),
    ] = "local",
    devices: Annotated[
        str | None,
        typer.Option(
            help="local: one worker process per device, e.g. cuda:0,cuda:1, or all (every GPU); "
            "default: this process.",
            rich_help_panel="local engine",
        ),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(
            help="Ray cluster: auto, HOST:PORT or ray://HOST:PORT; default: start a local Ray instance.",
            rich_help_panel="ray engine",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Ray actors (default: one per GPU; one per 2 CPUs on a cluster without GPUs).",
            rich_help_panel="ray engine",
        ),
    ] = None,
    max_retries: Annotated[
        int, typer.Option(help="Times a job runs again when its worker dies.", rich_help_panel="ray engine")
    ] = 2,
    overwrite: Annotated[
        bool, typer.Option(help="Replace existing outputs of jobs that are not finished.")
    ] = False,
    progress: Progress = "auto",
    quiet: Quiet = False,
    json: Json = False,
):
    """Run a JOBS file (JSONL or CSV) on this machine or on a Ray cluster; finished jobs are skipped."""
    from vidforge.batch import executor
    from vidforge.batch.jobs import JobsError, read_jobs
    from vidforge.batch.local import parse_devices

    executor.check_engine(engine)
    if engine == "ray" and devices is not None:
        raise OptionError("--devices is for --engine local; Ray gives each worker one GPU (see --workers)")
    if engine == "local" and (address is not None or workers is not None):
        raise OptionError("--address and --workers are for --engine ray")
    if max_retries < 0 or (workers is not None and workers < 1):
        raise OptionError("--max-retries must be >= 0 and --workers >= 1")
    device_list = parse_devices(devices)
    try:
        parsed = read_jobs(jobs, output_dir)
    except JobsError as e:  # every problem, each with its line number, before any work
        for line in e.errors:
            typer.echo(f"error: {line}", err=True)
        raise typer.Exit(2) from None
    folder = output_dir if output_dir is not None else jobs.parent
    folder.mkdir(parents=True, exist_ok=True)
    results = folder / "results.jsonl"
    with _bars(quiet, progress) as bars:
        outcomes = executor.execute(
            parsed, engine, devices=device_list, address=address, workers=workers,
            max_retries=max_retries, results=results, overwrite=overwrite, bars=bars,
        )  # fmt: skip
    _report_jobs(outcomes, results, json, quiet, table=True)


models_app = typer.Typer(
    help="List the model presets, download exactly the files vidforge reads, show where they are.",
    no_args_is_help=True,
)
app.add_typer(models_app, name="models")


@models_app.command("list")
@handle_errors
def models_list(
    task: Annotated[str | None, typer.Option(help="Only stylize, animate or extend models.")] = None,
    json: Json = False,
):
    """Presets, their task, size on disk, whether they are cached and where (offline)."""
    import json as json_module

    from vidforge.models import cache

    found = cache.list_models(task)
    if json:
        typer.echo(json_module.dumps([m.to_dict() for m in found]))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("model", "task", "size", "cached", "where / source", title_justify="left")
    for m in found:
        where = m.path or (m.repo_id or "built locally (seeded random weights)")
        table.add_row(m.name, m.task, cache.human_size(m.size_bytes), "yes" if m.cached else "no", where)
    Console(highlight=False).print(table)


@models_app.command("download")
@handle_errors
def models_download(
    name: Annotated[str, typer.Argument(help="A preset, or a hub id with --task.", show_default=False)],
    task: Annotated[str | None, typer.Option(help="For a hub id: stylize, animate or extend.")] = None,
):
    """Download exactly the files vidforge reads of a model into the Hugging Face cache."""
    from vidforge.models import cache

    typer.echo(str(cache.download(name, task)))


@models_app.command("path")
@handle_errors
def models_path(name: Annotated[str, typer.Argument(help="A preset.", show_default=False)]):
    """Print where a cached preset's weights are."""
    from vidforge.models import cache

    typer.echo(str(cache.local_path(name)))


def _version(value: bool):
    if value:
        typer.echo(f"vidforge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
):
    """vidforge: stylize, animate, extend and evaluate videos with diffusion models."""


def _terminate(signum, frame):
    raise Terminated()


def main(argv: list[str] | None = None) -> None:
    """Console entry point: usage errors become one line on stderr and exit code 2; SIGTERM is
    handled like Ctrl-C (exit 143)."""
    import signal

    signal.signal(signal.SIGTERM, _terminate)
    try:
        code = app(args=argv, standalone_mode=False)
    except click_exceptions.UsageError as e:
        typer.echo(f"error: {e.format_message()}", err=True)
        sys.exit(2)
    except Terminated:
        typer.echo("error: terminated", err=True)
        sys.exit(143)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("error: interrupted", err=True)
        sys.exit(130)
    except click_exceptions.ClickException as e:
        typer.echo(f"error: {e.format_message()}", err=True)
        sys.exit(e.exit_code)
    except BrokenPipeError:
        # `vidforge ... | head` closed the pipe: stop quietly, as shell tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
    sys.exit(code if isinstance(code, int) else 0)
