"""Jobs: one command, its own options, one input and one output.

A JOBS file holds one job per line, JSONL or CSV with the same keys: ``command``, ``input``,
``output``, an optional ``id``, and the command's long option names (``text-scale`` or
``text_scale``)::

    {"command": "stylize", "input": "a.mp4", "output": "out/a.mp4", "style": "ink wash", "steps": 20}

Every line is checked before any work starts, and every error is reported with its line number.
Relative inputs (and ``init``, ``image``, ``end-image``, ``source``) are taken from the JOBS file's
folder; a relative ``output`` is taken under ``--output-dir`` when given, else the JOBS file's
folder; without ``output`` the naming rule (:func:`output_for`) applies.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import hashlib
import json
import os
import typing
from dataclasses import dataclass
from pathlib import Path

from vidforge.animate.options import AnimateOptions
from vidforge.core.options import check, option, parse_size
from vidforge.errors import OptionError, VidforgeError
from vidforge.evaluate.options import EvaluateOptions
from vidforge.extend.options import ExtendOptions
from vidforge.stylize.options import StylizeOptions


@dataclass(frozen=True)
class Command:
    """What a command reads and where its output goes by default."""

    options: type
    reads: str | None  # "video" or "image" (the kind of its input); None: extend (--init/--image)
    beside: str  # output name beside the input, from its stem
    in_dir: str  # output name inside --output-dir


COMMANDS = {
    "stylize": Command(StylizeOptions, "video", "{stem}_stylized.mp4", "{stem}.mp4"),
    "animate": Command(AnimateOptions, "image", "{stem}_animated.mp4", "{stem}.mp4"),
    "extend": Command(ExtendOptions, None, "{stem}_extended.mp4", "{stem}.mp4"),
    "evaluate": Command(EvaluateOptions, "video", "{stem}.metrics.json", "{stem}.metrics.json"),
}
RESERVED = ("id", "command", "input", "output")
PATH_FIELDS = ("init", "image", "end_image", "source", "i3d")  # file options, relative to JOBS
ALIASES = {"metric": "metrics", "guidance_scale": "text_scale"}  # CLI spellings of fields
REPORT_SUFFIXES = (".json", ".csv")  # evaluate jobs write their report


class JobsError(OptionError):
    """Every problem found in a JOBS file, one line each (``jobs.jsonl:3: ...``)."""

    def __init__(self, errors: list[str]):
        super().__init__(errors[0] + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))
        self.errors = errors


@dataclass(frozen=True)
class Job:
    """One run: ``command`` on ``input`` with ``options`` (validated), writing ``output``.
    Extend's input is ``options.init`` or ``options.image``; ``line`` is where it was written."""

    id: str
    command: str
    options: typing.Any
    input: str | None
    output: str
    line: int = 0

    @property
    def sources(self) -> list[str]:
        """The files the output is made from (their content decides it)."""
        extra = (getattr(self.options, name, None) for name in ("init", "image", "end_image"))
        return [str(p) for p in (self.input, *extra) if p is not None]

    @property
    def task(self) -> str | None:
        """The model task: extend with ``--image`` runs an animate model; evaluate loads none here."""
        if self.command == "extend" and self.options.image is not None:
            return "animate"
        return None if self.command == "evaluate" else self.command

    @property
    def group(self) -> tuple[str, str, str]:
        """Jobs of one group share a loaded model."""
        return self.command, self.task or "", str(getattr(self.options, "model", None))

    @property
    def label(self) -> str:
        return self.input or (self.sources[0] if self.sources else f"job {self.id}")


# ---------------------------------------------------------------------------------- naming rule


def stem(path: str | os.PathLike) -> str:
    """An input's name without its suffix (a PNG-sequence folder or pattern: the folder's name)."""
    from vidforge.core.video_io import media_path

    target = media_path(path)
    return target.name if target.is_dir() else target.stem


def output_for(command: str, source: str | os.PathLike | None, output_dir: str | os.PathLike | None) -> Path:
    """The naming rule. With ``--output-dir DIR``: ``DIR/STEM.mp4`` (evaluate: ``DIR/STEM.metrics.json``);
    without: beside the input, ``STEM_stylized.mp4``, ``STEM_animated.mp4``, ``STEM_extended.mp4``
    (evaluate: ``STEM.metrics.json``). Extend without an input: ``extended.mp4``."""
    spec = COMMANDS[command]
    if source is None:
        return Path(output_dir or ".") / "extended.mp4"
    if output_dir is not None:
        return Path(output_dir) / spec.in_dir.format(stem=stem(source))
    from vidforge.core.video_io import media_path

    target = media_path(source)
    return target.parent / spec.beside.format(stem=stem(source))


def check_outputs_distinct(jobs: list[Job], where=lambda job: "") -> list[str]:
    """One line per job whose output is another job's output, or one of the inputs."""
    from vidforge.core.video_io import media_path

    inputs = {os.path.abspath(media_path(s)): job for job in jobs for s in job.sources}
    seen: dict[str, Job] = {}
    errors = []
    for job in jobs:
        key = os.path.abspath(media_path(job.output))
        if key in seen:
            errors.append(
                f"{where(job)}output {job.output!r} is also the output of {_name(seen[key], where)}: "
                "give each job its own output"
            )
        elif key in inputs:
            errors.append(f"{where(job)}output {job.output!r} is an input of {_name(inputs[key], where)}")
        seen.setdefault(key, job)
    return errors


def _name(job: Job, where) -> str:
    return where(job).rstrip(": ") or repr(job.label)


# ------------------------------------------------------------------------------ jobs from inputs


def input_jobs(
    command: str, inputs: list, options, output_dir: str | os.PathLike | None = None, field: str | None = None
) -> list[Job]:
    """One job per input (already expanded) for ``vidforge COMMAND INPUTS... [--output-dir DIR]``:
    the same options, outputs by the naming rule. ``field``: the option that takes the input
    (extend's ``init`` or ``image``) instead of the job's ``input``. Two inputs that would write the
    same output are refused up front."""
    jobs = []
    for number, path in enumerate(inputs, start=1):
        opts = dataclasses.replace(options, **{field: str(path)}) if field else options
        output = output_for(command, path, output_dir)
        jobs.append(Job(str(number), command, opts, None if field else str(path), str(output), 0))
    errors = check_outputs_distinct(jobs)
    if errors:
        raise VidforgeError(f"{errors[0]} (inputs with the same name: rename one, or use vidforge batch)")
    return jobs


# ------------------------------------------------------------------------------------ JOBS files


def read_jobs(path: str | os.PathLike, output_dir: str | os.PathLike | None = None) -> list[Job]:
    """Every job of a JSONL or CSV file, validated; :class:`JobsError` lists every problem."""
    path = Path(path)
    if not path.is_file():
        raise VidforgeError(f"JOBS {str(path)!r} does not exist")
    rows, errors = _read_rows(path)
    base = path.parent.absolute()
    output_dir = Path(output_dir).absolute() if output_dir is not None else None
    jobs = []
    for line, row in rows:
        try:
            jobs.append(job_from_row(row, line, base, output_dir))
        except VidforgeError as e:
            errors.append(f"{path.name}:{line}: {e}")
    ids: dict[str, int] = {}
    for job in jobs:
        if job.id in ids:
            errors.append(f"{path.name}:{job.line}: id {job.id!r} is also the id of line {ids[job.id]}")
        ids.setdefault(job.id, job.line)
    errors += check_outputs_distinct(jobs, lambda job: f"{path.name}:{job.line}: ")
    if not rows and not errors:
        errors.append(f"{path.name}: no jobs (one JSON object or CSV row per line)")
    if errors:
        raise JobsError(sorted(errors, key=_line_number))
    return jobs


def _line_number(error: str) -> int:
    parts = error.split(":", 2)
    return int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else 0


def _read_rows(path: Path) -> tuple[list[tuple[int, dict]], list[str]]:
    """``(line number, {key: value})`` per job, and the lines that could not be read."""
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    if suffix == ".csv":
        return _csv_rows(text), []
    if suffix not in (".jsonl", ".ndjson", ".json"):
        raise VidforgeError(f"JOBS {str(path)!r}: expected a .jsonl or .csv file")
    rows, errors = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            errors.append(f"{path.name}:{number}: not valid JSON ({e.msg}, column {e.colno})")
            continue
        if not isinstance(row, dict):
            errors.append(f"{path.name}:{number}: expected a JSON object, got {type(row).__name__}")
            continue
        rows.append((number, row))
    return rows, errors


def _csv_rows(text: str) -> list[tuple[int, dict]]:
    """CSV rows as dicts; an empty cell is an option left at its default."""
    reader = csv.DictReader(text.splitlines())
    rows = []
    for row in reader:
        cells = {k: v for k, v in row.items() if v not in (None, "")}
        if None in cells:  # more cells than columns
            cells[None] = "(extra cells)"
        if cells:
            rows.append((reader.line_num, cells))
    return rows


def _key(name) -> str:
    if name is None:
        raise OptionError("more cells than columns in the header")
    key = str(name).strip().lstrip("-").replace("-", "_")
    return ALIASES.get(key, key)


def job_from_row(row: dict, line: int, base: Path, output_dir: Path | None = None) -> Job:
    """A job from one line's keys (validated; paths made absolute): inputs relative to ``base``,
    a relative output under ``output_dir`` (else ``base``), no output: the naming rule."""
    row = {_key(k): v for k, v in row.items()}
    command = row.pop("command", None)
    check(command in COMMANDS, f"'command' must be one of {', '.join(COMMANDS)} (got {command!r})")
    job_id = str(row.pop("id", "") or line)
    given_input, given_output = row.pop("input", None), row.pop("output", None)
    if command == "extend" and given_input is not None:  # extend's input is its --init or --image
        field = "image" if _is_image_name(given_input) else "init"
        check(field not in row, f"give either 'input' or '{field}', not both")
        row[field], given_input = given_input, None
    options = build_options(COMMANDS[command].options, row, base)
    source = _input_path(command, given_input, base)
    if given_output is not None:
        check(isinstance(given_output, str) and bool(given_output.strip()), "'output' must be a path")
        output = (output_dir or base) / given_output
    else:
        first = source if command != "extend" else (options.init or options.image)
        output = output_for(command, first, output_dir or (base if first is None else None))
    _check_output_name(command, output, options)
    return Job(job_id, command, options, source, str(output), line)


def _is_image_name(path) -> bool:
    from vidforge.core.video_io import IMAGE_SUFFIXES

    return Path(str(path)).suffix.lower() in IMAGE_SUFFIXES


def _input_path(command: str, value, base: Path) -> str | None:
    if command == "extend":
        return None
    check(isinstance(value, str) and bool(value.strip()), f"'input' is missing: the {command} input file")
    return _existing(value, base, "input")


def _existing(value: str, base: Path, key: str) -> str:
    from vidforge.core.video_io import media_path

    path = base / value
    if not media_path(path).exists():
        raise VidforgeError(
            f"{key} {value!r} does not exist (relative paths start at the JOBS file's folder)"
        )
    return str(path)


def _check_output_name(command: str, output: Path, options) -> None:
    """The output's format (and codec, CRF) before any work; existence is the run's business."""
    if command == "evaluate":
        check(
            output.suffix.lower() in REPORT_SUFFIXES,
            f"evaluate writes a .json or .csv report, not {output.name!r}",
        )
        return
    from vidforge.core.writers import check_codec, check_crf, output_kind

    kind = output_kind(output)
    if options.codec is not None:
        check_codec(output, kind, options.codec)
    check_crf(options.codec, options.crf, output.suffix.lower())


# ----------------------------------------------------------------------------------- option values


def build_options(cls, row: dict, base: Path):
    """``cls`` from a line's option keys (JSON values or CSV strings), validated."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    values = {}
    for key, value in row.items():
        if key not in hints:
            close = difflib.get_close_matches(key, names + list(RESERVED), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise OptionError(f"unknown key {key!r}{hint}")
        values[key] = coerce(key, hints[key], value)
        if key in PATH_FIELDS and values[key] is not None:
            values[key] = _existing(values[key], base, key)
    options = cls(**values)
    options.validate()
    return options


TRUE, FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


def coerce(name: str, hint, value):
    """A JSON value or CSV string as the field's type, or a one-line error naming the option."""
    if name in SPECIAL:
        try:
            return SPECIAL[name](value)
        except OptionError as e:
            raise (e if str(e).startswith("--") else OptionError(f"{option(name)}: {e}")) from None
    args = typing.get_args(hint)
    if type(None) in args:
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null")):
            return None
        hint = next(a for a in args if a is not type(None))
    if hint is bool and isinstance(value, bool):
        return value
    if hint is bool and isinstance(value, str) and value.strip().lower() in TRUE + FALSE:
        return value.strip().lower() in TRUE
    if hint is int and not isinstance(value, bool):
        number = _number(value)
        if number is not None and float(number).is_integer():
            return int(number)
    if hint is float and not isinstance(value, bool) and _number(value) is not None:
        return float(_number(value))
    if hint is str and isinstance(value, str):
        return value
    kind = getattr(hint, "__name__", str(hint))
    raise OptionError(f"{option(name)}: expected {kind}, got {value!r}")


def _number(value) -> int | float | None:
    if isinstance(value, int | float):
        return value
    try:
        return float(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _pair(separator: str, kind: type, parse=None):
    """A two-value option: ``"0:0.5"`` (``"512x320"``) or a list of two numbers."""

    def convert(value):
        if value is None:
            return None
        if isinstance(value, str) and parse is not None:
            return parse(value)
        items = value.split(separator) if isinstance(value, str) else value
        numbers = [_number(v) for v in items] if isinstance(items, list | tuple) else []
        if len(numbers) != 2 or any(n is None for n in numbers):
            raise OptionError(f"expected two numbers as 'A{separator}B' or a list of two, got {value!r}")
        return tuple(kind(n) for n in numbers)

    return convert


def _metrics(value) -> tuple[str, ...]:
    items = value.replace(",", " ").split() if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(v, str) for v in items):
        raise OptionError(f"--metric: expected names (a list, or 'flicker,motion'), got {value!r}")
    return tuple(items)


SPECIAL = {
    "fuse_window": _pair(":", float),
    "resize": _pair("x", int, parse_size),
    "metrics": _metrics,
}


# ---------------------------------------------------------------------------------- finished jobs


def settings_hash(job: Job) -> str:
    """What decides a job's output besides its inputs' content: command, input paths, options."""
    from vidforge.core.settings import options_dict

    text = json.dumps(
        {"command": job.command, "input": job.input, "options": options_dict(job.options)}, sort_keys=True
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def inputs_digest(job: Job) -> str | None:
    """One hash over the content of every file the job reads (None if one is missing)."""
    hashes = [_sha256(s) for s in job.sources]
    if any(h is None for h in hashes):
        return None
    return hashlib.sha256("".join(hashes).encode()).hexdigest()


_hashed: dict[tuple, str | None] = {}  # (path, size, mtime) -> sha256: a re-run hashes each input once


def _sha256(path: str) -> str | None:
    from vidforge.core.settings import sha256_input
    from vidforge.core.video_io import media_path

    try:
        stat = media_path(path).stat()
    except OSError:
        return None
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
    if key not in _hashed:
        _hashed[key] = sha256_input(media_path(path))
    return _hashed[key]


def is_done(job: Job, previous: dict | None = None) -> bool:
    """Whether ``job`` needs no work: its output exists and either

    * its settings record (``OUTPUT.json``, written by the command) names the same command, the
      same options after defaults (the seed ignored when the job's seed is -1, "any seed") and
      inputs with the same sha256 as the job's; or
    * ``previous`` (the lines of an earlier ``results.jsonl``, by output) says it finished with the
      same settings hash and the same input content (evaluate reports have no record)."""
    from vidforge.core.video_io import media_path

    if not media_path(job.output).exists():
        return False
    if _record_matches(job):
        return True
    earlier = (previous or {}).get(os.path.abspath(job.output))
    return (
        earlier is not None
        and earlier.get("settings_hash") == settings_hash(job)
        and earlier.get("input_sha256") == inputs_digest(job)
    )


def _record_matches(job: Job) -> bool:
    from vidforge.core.settings import options_dict, settings_path

    try:
        record = json.loads(settings_path(job.output).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict) or record.get("command") != job.command:
        return False
    # the record keeps the options a run used: extend's method defaults filled in
    resolved = job.options.resolved() if hasattr(job.options, "resolved") else job.options
    mine, theirs = options_dict(resolved), dict(record.get("options") or {})
    if job.options.seed == -1:  # "any seed": the record holds the one that was drawn
        mine.pop("seed", None)
        theirs.pop("seed", None)
    if mine != theirs:
        return False
    recorded = {v.get("sha256") for v in (record.get("inputs") or {}).values() if isinstance(v, dict)}
    return all(_sha256(s) in recorded for s in job.sources)


def read_results(path: str | os.PathLike) -> dict[str, dict]:
    """The finished jobs of an earlier ``results.jsonl``, by absolute output path (the last line
    about an output wins; a failed line forgets it). Unreadable lines are ignored."""
    path = Path(path)
    finished: dict[str, dict] = {}
    if not path.is_file():
        return finished
    for text in path.read_text(errors="replace").splitlines():
        try:
            line = json.loads(text)
            key = os.path.abspath(line["output"])
        except (ValueError, KeyError, TypeError):
            continue
        if line.get("status") in ("ok", "skipped"):
            finished[key] = line
        else:
            finished.pop(key, None)
    return finished
