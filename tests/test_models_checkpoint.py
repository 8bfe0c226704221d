"""Pickle checkpoints as users have them: Lightning metadata loads as inert placeholders, payloads
never run, only plain tensors are returned; end to end through ``vidforge animate --model PATH``.

Metadata classes come from modules that do not exist here (``pytorch_lightning``, ``omegaconf``):
they are put in ``sys.modules`` only while the checkpoint is written, so the pickle names them as
the real files would. Every class that could run something does so by creating a marker file.
"""

import argparse
import collections
import copyreg
import importlib
import io
import os
import pickle
import re
import subprocess
import sys
import tarfile
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from vidforge.errors import VidforgeError
from vidforge.models.checkpoint import Placeholder, load_state_dict, read_pickle

WEIGHTS = {"encoder.weight": torch.arange(12.0).reshape(3, 4), "encoder.bias": torch.tensor([1, 2, 3])}


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "pwned"
    yield path
    assert not path.exists(), "code from the pickle ran"


def fake_module(monkeypatch, dotted: str, **classes) -> None:
    """``dotted`` (and its parents) in ``sys.modules`` until the test ends, holding ``classes``."""
    parts = dotted.split(".")
    for i in range(1, len(parts) + 1):
        name = ".".join(parts[:i])
        if name not in sys.modules or i == len(parts):
            monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    module = sys.modules[dotted]
    for name, cls in classes.items():
        cls.__module__, cls.__qualname__, cls.__name__ = dotted, name, name
        setattr(module, name, cls)


def lightning_metadata(monkeypatch, marker: Path) -> dict:
    """What a Lightning ``model.ckpt`` pickles next to ``state_dict``: callback state objects, an
    ``argparse.Namespace`` and an OmegaConf config; each real class would run code when unpickled."""

    class ModelCheckpoint:
        def __init__(self):
            self.monitor, self.best_model_score = "val/loss", torch.tensor(0.125)
            self.kth_best_model_path = "/ckpt/epoch=3.ckpt"

        def __setstate__(self, state):
            Path(marker).touch()

    class DictConfig:  # OmegaConf: __getstate__/__setstate__ and nested node objects
        def __init__(self, content):
            self._content = {k: AnyNode(v) for k, v in content.items()}
            self._metadata = ContainerMetadata()

        def __getstate__(self):
            return {"_content": self._content, "_metadata": self._metadata, "_parent": None}

        def __setstate__(self, state):
            Path(marker).touch()

    class AnyNode:
        def __init__(self, value):
            self._val = value

        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    class ContainerMetadata:
        def __init__(self):
            self.ref_type, self.object_type, self.flags = object, dict, {"readonly": True}

    fake_module(monkeypatch, "pytorch_lightning.callbacks.model_checkpoint", ModelCheckpoint=ModelCheckpoint)
    fake_module(monkeypatch, "omegaconf.dictconfig", DictConfig=DictConfig)
    fake_module(monkeypatch, "omegaconf.nodes", AnyNode=AnyNode)
    fake_module(monkeypatch, "omegaconf.base", ContainerMetadata=ContainerMetadata)
    config = DictConfig({"target": "lvdm.models.ddpm3d.LatentVisualDiffusion", "lr": 1e-5})
    return {
        "epoch": 3,
        "global_step": 1200,
        "pytorch-lightning_version": "1.9.3",
        "callbacks": {"ModelCheckpoint{'monitor': 'val/loss'}": ModelCheckpoint()},
        "hparams": argparse.Namespace(base="configs/training_512.yaml", seed=123, gpus="0,"),
        "hyper_parameters": {"config": config},
        "optimizer_states": [{"state": {0: {"exp_avg": torch.ones(3)}}, "param_groups": [{"lr": 1e-5}]}],
    }


def save_lightning(path: Path, state_dict: dict, monkeypatch, marker: Path, **save_kwargs) -> None:
    """``state_dict`` saved as a Lightning checkpoint with the metadata above; afterwards the
    metadata's modules are gone again, as on a machine without Lightning."""
    with monkeypatch.context() as m:
        torch.save({"state_dict": state_dict, **lightning_metadata(m, marker)}, path, **save_kwargs)
    assert not marker.exists()
    for name in ("pytorch_lightning", "omegaconf"):
        assert name not in sys.modules


@pytest.mark.parametrize(
    "save_kwargs",
    [{}, {"pickle_protocol": 4}, {"_use_new_zipfile_serialization": False}],
    ids=["zip", "zip-protocol4", "legacy"],
)
def test_lightning_metadata_loads_as_placeholders_with_weights_intact(
    tmp_path, monkeypatch, marker, save_kwargs
):
    path = tmp_path / "model.ckpt"
    save_lightning(path, WEIGHTS, monkeypatch, marker, **save_kwargs)

    weights = load_state_dict(path)
    assert set(weights) == set(WEIGHTS)
    for key, tensor in WEIGHTS.items():
        assert torch.equal(weights[key], tensor) and weights[key].dtype == tensor.dtype
    for name in ("pytorch_lightning", "omegaconf"):
        assert name not in sys.modules  # nothing was imported to unpickle

    # the metadata itself was read, inertly: the placeholders recorded what the pickle said
    everything = read_pickle(path)
    callback = everything["callbacks"]["ModelCheckpoint{'monitor': 'val/loss'}"]
    assert isinstance(callback, Placeholder)
    assert callback.global_name == "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"
    assert callback.pickled["state"]["monitor"] == "val/loss"
    assert torch.equal(callback.pickled["state"]["best_model_score"], torch.tensor(0.125))
    hparams = everything["hparams"]
    assert hparams.global_name == "argparse.Namespace" and hparams.pickled["state"]["seed"] == 123
    config = everything["hyper_parameters"]["config"]
    assert config.global_name == "omegaconf.dictconfig.DictConfig"
    node = config.pickled["state"]["_content"]["lr"]
    assert node.global_name == f"{os.system.__module__}.system"  # the call was recorded, not made
    assert node.pickled["args"] == (f"touch {marker}",)
    assert everything["epoch"] == 3
    assert torch.equal(everything["optimizer_states"][0]["state"][0]["exp_avg"], torch.ones(3))


class Touch:
    """Unpickled by a normal unpickler, this class (importable: it is in this module) runs code in
    ``__new__``, ``__init__`` and ``__setstate__``."""

    def __new__(cls, *args):
        Path(os.environ["VIDFORGE_TEST_MARKER"]).touch()
        return super().__new__(cls)

    def __init__(self, *args):
        Path(os.environ["VIDFORGE_TEST_MARKER"]).touch()
        self.tag = "state for BUILD"

    def __setstate__(self, state):
        Path(os.environ["VIDFORGE_TEST_MARKER"]).touch()


class Reduce:
    """Pickles as ``func(*args)``; a callable stand-in so that it may be the callable of another reduce."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)

    def __call__(self, *args):
        pass


def payloads(marker: Path) -> dict:
    touch = f"touch {marker}"
    import_os = Reduce(importlib.import_module, "os")
    return {
        "open": Reduce(open, str(marker), "w"),
        "os.system": Reduce(os.system, touch),
        "exec": Reduce(exec, f"open({str(marker)!r}, 'w')"),
        "eval": Reduce(eval, f"open({str(marker)!r}, 'w')"),
        "subprocess": Reduce(subprocess.call, ["touch", str(marker)]),
        "getattr-chain": Reduce(Reduce(getattr, import_os, "system"), touch),
        "importable-class": Touch(),
    }


PAYLOADS = ["open", "os.system", "exec", "eval", "subprocess", "getattr-chain", "importable-class"]


@pytest.mark.parametrize("name", PAYLOADS)
@pytest.mark.parametrize("where", ["metadata", "weight"])
def test_payloads_never_run(tmp_path, monkeypatch, marker, name, where):
    monkeypatch.setenv("VIDFORGE_TEST_MARKER", str(marker))
    payload = payloads(marker)[name]
    marker.unlink()  # constructing Touch() here ran its code; loading must not
    path = tmp_path / "model.ckpt"
    if where == "metadata":
        torch.save({"state_dict": WEIGHTS, "evil": payload, "nested": [{"x": payload}]}, path)
        weights = load_state_dict(path)
        assert torch.equal(weights["encoder.weight"], WEIGHTS["encoder.weight"])
    else:
        torch.save({"state_dict": {**WEIGHTS, "encoder.evil": payload}}, path)
        with pytest.raises(
            VidforgeError, match=r"refusing checkpoint .*model\.ckpt.*'encoder\.evil' is not a plain tensor"
        ) as err:
            load_state_dict(path)
        assert "\n" not in str(err.value)


def test_a_module_named_by_the_pickle_is_never_imported(tmp_path, monkeypatch, marker):
    """Even an importable module is not imported (importing runs its top level)."""
    (tmp_path / "vidforge_test_sideeffect.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).touch()\nclass Config:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import vidforge_test_sideeffect

    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": WEIGHTS, "config": vidforge_test_sideeffect.Config()}, path)
    marker.unlink()
    del sys.modules["vidforge_test_sideeffect"]
    assert torch.equal(load_state_dict(path)["encoder.bias"], WEIGHTS["encoder.bias"])
    assert "vidforge_test_sideeffect" not in sys.modules


def test_extension_codes_are_refused(tmp_path, marker):
    """copyreg's extension registry names a global by number; pickle caches what it resolves,
    bypassing find_class, so vidforge refuses the opcode even while the code is registered."""
    code, key = 0x7A, (os.system.__module__, "system")
    copyreg.add_extension(*key, code)
    try:
        path = tmp_path / "model.ckpt"
        torch.save({"state_dict": WEIGHTS, "evil": Reduce(os.system, f"touch {marker}")}, path)
        with pytest.raises(VidforgeError, match=r"refusing checkpoint .*extension code"):
            load_state_dict(path)
    finally:
        copyreg.remove_extension(*key, code)
    assert code not in pickle._extension_cache


def legacy_file(path: Path, main_pickle: bytes) -> Path:
    """A torch legacy-format file (header pickles, then ``main_pickle``, then no storages)."""
    from torch.serialization import MAGIC_NUMBER, PROTOCOL_VERSION

    head = b"".join(pickle.dumps(x, protocol=2) for x in (MAGIC_NUMBER, PROTOCOL_VERSION, {}))
    path.write_bytes(head + main_pickle + pickle.dumps([], protocol=2))
    return path


@pytest.mark.parametrize(
    "raw,message",
    [
        (b"\x80\x02]}b.", "BUILD on a list"),  # state set on a list
        (b"\x80\x02})R.", "call of a dict"),  # a dict called
        (b"\x80\x02\x82\x01.", "extension code"),
        (b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x05\x00\x00\x00rot13\x86R.", "_codecs.encode"),
        (b"\x80\x02ctorch\nSize\n)R(K\x01K\x02u.", "SETITEMS on a Size"),
    ],
)
def test_constructs_no_checkpoint_needs_are_refused_in_one_line(tmp_path, raw, message):
    path = legacy_file(tmp_path / "odd.ckpt", raw)
    with pytest.raises(VidforgeError, match="refusing checkpoint") as err:
        load_state_dict(path)
    assert message in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_bare_payload_is_no_state_dict(tmp_path, marker):
    path = legacy_file(tmp_path / "bare.ckpt", pickle.dumps(Reduce(os.system, f"touch {marker}"), protocol=2))
    system = re.escape(f"{os.system.__module__}.system")
    with pytest.raises(VidforgeError, match=rf"bare\.ckpt' holds no state dict \(it holds a {system}\)"):
        load_state_dict(path)


class Tagged(torch.Tensor):
    """A tensor subclass (rebuilt through _rebuild_from_type_v2 with this class)."""


@pytest.mark.parametrize(
    "weight,what",
    [
        (torch.eye(3).to_sparse(), "torch._utils._rebuild_sparse_tensor"),
        (torch.zeros(2).as_subclass(Tagged), "_rebuild_from_type_v2 that failed"),
        (argparse.Namespace(w=1), "argparse.Namespace"),
        (3, "int"),
    ],
    ids=["sparse", "subclass", "object", "number"],
)
def test_weights_that_are_not_plain_tensors_are_refused(tmp_path, weight, what):
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {"w": weight}, "meta": torch.zeros(2).as_subclass(Tagged)}, path)
    with pytest.raises(
        VidforgeError, match=r"refusing checkpoint .*model\.ckpt.*'w' is not a plain tensor"
    ) as err:
        load_state_dict(path)
    assert what in str(err.value) and "\n" not in str(err.value)


def test_parameters_deepspeed_and_plain_dicts(tmp_path):
    params = {k: torch.nn.Parameter(v.float()) for k, v in WEIGHTS.items()}
    layouts = {
        "lightning": {
            "state_dict": collections.OrderedDict(params),
            "tagged": torch.zeros(2).as_subclass(Tagged),
        },
        "deepspeed": {"module": {f"_forward_module.{k}": v for k, v in params.items()}, "dp_world_size": 8},
        "plain": dict(params),
    }
    for name, obj in layouts.items():
        torch.save(obj, tmp_path / f"{name}.ckpt")
        weights = load_state_dict(tmp_path / f"{name}.ckpt")
        assert set(weights) == set(WEIGHTS), name
        for key, tensor in weights.items():
            assert type(tensor) is torch.Tensor and not tensor.requires_grad
            assert torch.equal(tensor, WEIGHTS[key].float())


def test_every_dtype_and_shared_storage(tmp_path):
    """Newer dtypes pickle their storage as UntypedStorage (``_rebuild_tensor_v3``); views and tied
    weights keep sharing one storage."""
    base = torch.arange(12.0).reshape(3, 4)
    dtypes = (torch.float16, torch.bfloat16, torch.int8, torch.bool, torch.uint16, torch.float8_e4m3fn)
    weights = {str(t): torch.arange(6.0).to(t) for t in dtypes}
    weights |= {
        "complex": torch.randn(2, dtype=torch.complex64),
        "base": base,
        "view": base[1:].t(),
        "tied": base,
    }
    torch.save({"state_dict": weights}, tmp_path / "model.ckpt")
    loaded = load_state_dict(tmp_path / "model.ckpt")
    for key, tensor in weights.items():
        assert loaded[key].dtype == tensor.dtype and loaded[key].shape == tensor.shape, key
        bits = loaded[key].contiguous().view(torch.uint8)  # bitwise: float8 has no equality kernel
        assert torch.equal(bits, tensor.contiguous().view(torch.uint8)), key
    assert loaded["view"].untyped_storage().data_ptr() == loaded["base"].untyped_storage().data_ptr()
    assert loaded["tied"].data_ptr() == loaded["base"].data_ptr()


class Shadowed:
    """Pickles as an OrderedDict of ``entries`` whose instance attributes are ``attributes``."""

    def __init__(self, entries, **attributes):
        self.entries, self.attributes = entries, attributes

    def __reduce__(self):
        return (collections.OrderedDict, (), self.attributes, None, iter(self.entries.items()))


def test_attributes_set_by_the_pickle_cannot_stand_in_for_methods(tmp_path):
    """A pickle may give an OrderedDict or a Parameter instance attributes named like their methods
    (``get``, ``items``, ``detach``); the loader calls the types' methods, so they change nothing."""
    param = torch.nn.Parameter(torch.ones(2))
    param.detach = argparse.Namespace  # saved as the Parameter's state: set again when loaded
    state_dict = Shadowed({"w": param}, items=argparse.Namespace)
    torch.save(
        Shadowed({"state_dict": state_dict}, get=argparse.Namespace, items=argparse.Namespace),
        tmp_path / "m.ckpt",
    )
    everything = read_pickle(tmp_path / "m.ckpt")
    assert isinstance(everything.get, type) and isinstance(everything["state_dict"]["w"].detach, type)
    weights = load_state_dict(tmp_path / "m.ckpt")  # the attributes are there, and unused
    assert list(weights) == ["w"] and type(weights["w"]) is torch.Tensor
    assert torch.equal(weights["w"], torch.ones(2))


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit is deprecated, and still read by torch.load
def test_torchscript_and_tar_archives_are_refused(tmp_path):
    scripted = torch.jit.script(torch.nn.Linear(2, 2))
    torch.jit.save(scripted, tmp_path / "scripted.ckpt")
    with pytest.raises(VidforgeError, match="refusing checkpoint .*TorchScript"):
        load_state_dict(tmp_path / "scripted.ckpt")

    tar_path = tmp_path / "old.ckpt"  # torch < 0.4 wrote tar files; a member name can start with 0x80
    with tarfile.open(tar_path, "w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("\udc80pickle")
        tar.addfile(info, io.BytesIO(b""))
    assert tar_path.read_bytes()[:1] == b"\x80"
    with pytest.raises(VidforgeError, match="refusing checkpoint .*tar format"):
        load_state_dict(tar_path)


# ------------------------------------------------------------------------------------ end to end


def test_cli_animate_runs_a_lightning_checkpoint_without_running_its_pickle(tmp_path, monkeypatch, marker):
    """``vidforge animate IMG --model model.ckpt`` on the tiny DynamiCrafter saved in the authors'
    Lightning layout with metadata and a payload: exit 0, 4 frames, nothing run, and the weights
    converted (once, to the cache) are tiny's, found by their shapes alone."""
    from PIL import Image

    from vidforge.core.video_io import read_video
    from vidforge.models.dynamicrafter import convert
    from vidforge.models.dynamicrafter.config import TINY, noise_schedule
    from vidforge.models.dynamicrafter.network import build_model
    from vidforge.sampling.schedules import dynamic_rescale_arr

    tiny = build_model("tiny").state_dict()
    state_dict = convert.original_state_dict(tiny)
    state_dict["alphas_cumprod"] = noise_schedule(TINY).alphas_cumprod  # checked against the config
    state_dict["scale_arr"] = dynamic_rescale_arr(TINY.dynamic_rescale_base, TINY.num_train_timesteps)
    ckpt = tmp_path / "model.ckpt"
    with monkeypatch.context() as m:
        metadata = lightning_metadata(m, marker)
        metadata["evil"] = Reduce(os.system, f"touch {marker}")
        torch.save({"state_dict": state_dict, **metadata}, ckpt)
    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)).save(image)

    out = tmp_path / "out.mp4"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    proc = subprocess.run(
        [sys.executable, "-m", "vidforge", "animate", str(image), "--model", str(ckpt), "-o", str(out),
         "--steps", "2", "--frames", "4", "--device", "cpu"],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "warn" not in proc.stderr.lower()
    assert read_video(out).frames.shape[0] == 4

    (cached,) = (tmp_path / "hf" / "assets" / "vidforge" / "converted").glob("model-*.safetensors")
    weights, _, release = convert.read_converted(cached)
    assert release == "tiny" and set(weights) == set(tiny)
    assert all(torch.equal(weights[k], v) for k, v in tiny.items())
