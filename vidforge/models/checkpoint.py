"""Reading checkpoint files without running code from them.

A ``.safetensors`` file is read as it is. A pickle checkpoint (``torch.save``'s zip format, the
default since torch 1.6, memory-mapped; or its older single-stream format) is read with
:class:`SafeUnpickler`: only the globals of :func:`allowed_globals` (what tensors and their
containers need) are resolved. Every other global becomes an inert :class:`Placeholder` class: the
real class or function is never imported, looked up or called, so a ``__reduce__`` payload
(``os.system``, ``exec``, ``subprocess``...) cannot run, and the metadata a Lightning checkpoint
pickles (callbacks, ``argparse.Namespace``, OmegaConf configs) loads as placeholders instead of
blocking the load. Only the weights are returned: ``state_dict`` (Lightning), ``module``
(DeepSpeed, ``_forward_module.`` prefix dropped) or a plain dict of tensors; a weight that is not
a plain tensor (a placeholder, a tensor whose rebuild failed) is refused in one line.
"""

from __future__ import annotations

import _compat_pickle
import functools
import os
import pickle
import sys
import types
from pathlib import Path

from vidforge.errors import VidforgeError

# torch's tensor rebuild functions a dense CPU/CUDA tensor or Parameter needs (torch._utils)
_REBUILD_FUNCTIONS = (
    "_rebuild_tensor",
    "_rebuild_tensor_v2",
    "_rebuild_tensor_v3",
    "_rebuild_parameter",
    "_rebuild_parameter_with_state",
)


class Refused(pickle.UnpicklingError):
    """The pickle asks for something a checkpoint of tensors never needs (the message says what)."""


class Placeholder:
    """Stands for a pickled global that vidforge does not resolve (``global_name``: "module.name").

    Calling the class (pickle's REDUCE/NEWOBJ/OBJ), ``__setstate__`` (BUILD) and the container
    protocol pickle uses for list/dict/set subclasses (append, extend, add, ``__setitem__``) only
    record their arguments in ``pickled``. No other method is defined: no ``__getattr__``,
    ``__call__``, ``__iter__``, ``__del__``, so nothing runs on construction, state or attribute access.
    """

    global_name = "?"

    def __new__(cls, *args, **kwargs):
        self = object.__new__(cls)
        self.pickled = {"args": args, "kwargs": kwargs, "state": None, "items": []}
        return self

    def __init__(self, *args, **kwargs):  # the arguments were recorded by __new__
        pass

    def __setstate__(self, state):
        self.pickled["state"] = state

    def append(self, item):
        self.pickled["items"].append(item)

    def extend(self, items):
        self.pickled["items"].extend(items)

    add = append

    def __setitem__(self, key, value):
        self.pickled["items"].append((key, value))

    def __repr__(self):
        return f"<placeholder for {self.global_name}>"


def placeholder_class(global_name: str) -> type:
    """A fresh :class:`Placeholder` subclass standing for ``global_name`` (a qualified name no
    source defines, so that nothing, ``inspect`` included, mistakes it for a real class)."""
    namespace = {
        "global_name": global_name,
        "__module__": __name__,
        "__qualname__": f"Placeholder[{global_name}]",
    }
    return type("Placeholder", (Placeholder,), namespace)


def _latin1_encode(text, encoding="latin1"):
    """``_codecs.encode`` as pickle protocol 2 uses it for ``bytes``: latin-1 only, no codec lookup."""
    if type(text) is not str or encoding not in ("latin1", "latin-1"):
        raise Refused(f"_codecs.encode with encoding {encoding!r}")
    return text.encode("latin-1")


def _rebuild_from_type_v2(func, new_type, args, state):
    """torch's ``_rebuild_from_type_v2`` (a tensor with Python attributes) for plain tensors and
    Parameters only: a subclass would be a placeholder here, and no other object is rebuilt."""
    import torch

    if id(func) not in _allowed_callables() or new_type not in (torch.Tensor, torch.nn.Parameter):
        raise TypeError("not a plain tensor")
    return torch._tensor._rebuild_from_type_v2(func, new_type, args, state)


@functools.cache
def allowed_globals() -> dict[str, object]:
    """``"module.name"`` -> object: the only globals a checkpoint pickle resolves to real objects.

    A subset of what ``torch.load(weights_only=True)`` allows: containers, numbers, dtypes and the
    dense tensor / Parameter rebuild functions (sparse, quantized, meta, numpy-backed and tensor
    subclasses are left out: such a weight is refused, such metadata becomes a placeholder).
    The legacy storage classes (``torch.FloatStorage``...) are resolved by ``torch.load`` itself
    (its unpickler subclass turns any name with "Storage" in it into a dtype tag first).
    """
    import collections

    import torch

    allowed = {
        "collections.OrderedDict": collections.OrderedDict,
        "builtins.set": set,
        "builtins.complex": complex,
        "_codecs.encode": _latin1_encode,
        # the storage tag of the newer dtypes (float8, uint16...): torch.load's loader reads it
        "torch.storage.UntypedStorage": torch.UntypedStorage,
        "torch.UntypedStorage": torch.UntypedStorage,
        "torch.Size": torch.Size,
        "torch.device": torch.device,
        "torch.Tensor": torch.Tensor,
        "torch.nn.parameter.Parameter": torch.nn.Parameter,
        "torch._tensor._rebuild_from_type_v2": _rebuild_from_type_v2,
    }
    allowed.update({f"torch._utils.{name}": getattr(torch._utils, name) for name in _REBUILD_FUNCTIONS})
    # dtypes pickle as "torch.float32"...; vars() rather than dir(): no lazy submodule is imported
    allowed.update({f"torch.{k}": v for k, v in vars(torch).items() if isinstance(v, torch.dtype)})
    return allowed


@functools.cache
def _allowed_callables() -> dict[int, str]:
    """id -> name of the allowed globals pickle may call (dtypes are values, not callables)."""
    return {id(v): k for k, v in allowed_globals().items() if callable(v)}


class SafeUnpickler(pickle._Unpickler):
    """The pure-Python unpickler with every opcode that resolves or calls something replaced.

    * GLOBAL / STACK_GLOBAL / INST: :meth:`find_class`, allow-list or placeholder, never an import;
    * REDUCE / OBJ / INST call only placeholder classes (which record) or allowed callables (whose
      failure yields a placeholder: a tensor that cannot be rebuilt is refused only if it is a weight);
    * NEWOBJ / NEWOBJ_EX only on placeholder classes; BUILD only on placeholders (recorded) and
      ``OrderedDict`` (its ``_metadata`` attribute); APPEND(S) / SETITEM(S) / ADDITEMS only on
      list / dict / set and placeholders;
    * EXT1/2/4 (the copyreg extension registry, whose cache would bypass ``find_class``) refused.

    The pure-Python class is used (not the C one) because its opcode table can be replaced.
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file, **kwargs):
        super().__init__(file, **kwargs)
        self._placeholders: dict[str, type] = {}

    def find_class(self, module, name):
        sys.audit("pickle.find_class", module, name)
        if self.proto < 3 and self.fix_imports:  # Python 2 names, mapped as pickle itself does
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        global_name = f"{module}.{name}"
        found = allowed_globals().get(global_name)
        return found if found is not None else self._placeholder(global_name)

    def _placeholder(self, global_name: str) -> type:
        if global_name not in self._placeholders:
            self._placeholders[global_name] = placeholder_class(global_name)
        return self._placeholders[global_name]

    def _call(self, func, args):
        if type(args) is not tuple:
            raise Refused(f"a call with {type(args).__name__} arguments")
        if isinstance(func, type) and issubclass(func, Placeholder):
            return func(*args)
        if isinstance(func, Placeholder):  # e.g. a pickled functools.partial called: record it
            return self._placeholder(f"{type(func).global_name}(...)")(*args)
        name = _allowed_callables().get(id(func))
        if name is None:
            raise Refused(f"a call of a {type(func).__name__} object, which is no allowed global")
        try:
            return func(*args)
        except Refused:
            raise
        except Exception as e:  # metadata may hold tensors we do not rebuild; weights are checked later
            return self._placeholder(f"{name} that failed ({type(e).__name__})")()

    def load_reduce(self):
        args = self.stack.pop()
        self.stack[-1] = self._call(self.stack[-1], args)

    def _instantiate(self, klass, args):
        self.append(self._call(klass, tuple(args)))

    def load_newobj(self):
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._new(cls, args, {}))

    def load_newobj_ex(self):
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._new(cls, args, kwargs))

    def _new(self, cls, args, kwargs):
        if not (isinstance(cls, type) and issubclass(cls, Placeholder)):
            raise Refused(f"NEWOBJ on {getattr(cls, '__name__', type(cls).__name__)}")
        if type(args) is not tuple or type(kwargs) is not dict:
            raise Refused("NEWOBJ with malformed arguments")
        return cls.__new__(cls, *args, **kwargs)

    def load_build(self):
        import collections

        state = self.stack.pop()
        inst = self.stack[-1]
        if isinstance(inst, Placeholder):
            Placeholder.__setstate__(inst, state)
        elif type(inst) is collections.OrderedDict and type(state) is dict:
            inst.__dict__.update(state)  # a state dict's ``_metadata``
        else:
            raise Refused(f"BUILD on a {type(inst).__name__}")

    def load_append(self):
        value = self.stack.pop()
        self._extend(self.stack[-1], [value])

    def load_appends(self):
        items = self.pop_mark()
        self._extend(self.stack[-1], items)

    def _extend(self, target, items):
        if type(target) is list:
            target.extend(items)
        elif isinstance(target, Placeholder):
            Placeholder.extend(target, items)
        else:
            raise Refused(f"APPENDS on a {type(target).__name__}")

    def load_setitem(self):
        value = self.stack.pop()
        key = self.stack.pop()
        self._set_items(self.stack[-1], [key, value])

    def load_setitems(self):
        items = self.pop_mark()
        self._set_items(self.stack[-1], items)

    def _set_items(self, target, items):
        import collections

        if type(target) not in (dict, collections.OrderedDict) and not isinstance(target, Placeholder):
            raise Refused(f"SETITEMS on a {type(target).__name__}")
        for i in range(0, len(items), 2):
            if isinstance(target, Placeholder):
                Placeholder.__setitem__(target, items[i], items[i + 1])
            else:
                target[items[i]] = items[i + 1]

    def load_additems(self):
        items = self.pop_mark()
        target = self.stack[-1]
        if type(target) is set:
            target.update(items)
        elif isinstance(target, Placeholder):
            Placeholder.extend(target, items)
        else:
            raise Refused(f"ADDITEMS on a {type(target).__name__}")

    def load_extension(self):
        raise Refused("a copyreg extension code (EXT1/2/4)")

    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex
    dispatch[pickle.BUILD[0]] = load_build
    dispatch[pickle.APPEND[0]] = load_append
    dispatch[pickle.APPENDS[0]] = load_appends
    dispatch[pickle.SETITEM[0]] = load_setitem
    dispatch[pickle.SETITEMS[0]] = load_setitems
    dispatch[pickle.ADDITEMS[0]] = load_additems
    for _opcode in (pickle.EXT1, pickle.EXT2, pickle.EXT4):
        dispatch[_opcode[0]] = load_extension
    del _opcode
    # INST and OBJ go through _instantiate; GLOBAL, STACK_GLOBAL and INST through find_class


def _safe_load(file, **kwargs):
    return SafeUnpickler(file, **kwargs).load()


# what torch.load(pickle_module=...) uses: .Unpickler for the main pickle (torch subclasses it to
# add its storage loader), .load for the legacy format's small header pickles
PICKLE_MODULE = types.SimpleNamespace(__name__=__name__, Unpickler=SafeUnpickler, load=_safe_load)


def _is_torchscript(path: Path) -> bool:
    """Whether ``torch.load`` would hand the zip to ``torch.jit.load`` (which runs TorchScript):
    torch's own test on torch's own reader, and a ``constants.pkl`` anywhere in Python's reading."""
    import zipfile

    import torch

    with torch.serialization._open_zipfile_reader(str(path)) as reader:
        if torch.serialization._is_torchscript_zip(reader):
            return True
    with zipfile.ZipFile(path) as archive:
        return any(name.rsplit("/", 1)[-1] == "constants.pkl" for name in archive.namelist())


def read_pickle(path: Path):
    """Unpickle a ``torch.save`` file with :data:`PICKLE_MODULE` (tensors on the CPU; zip files
    memory-mapped). Raises :class:`VidforgeError` for what is no pickle checkpoint, :class:`Refused`
    for a forbidden construct, anything else for a corrupt file."""
    import tarfile
    import warnings
    import zipfile

    import torch

    name = str(path)
    is_zip = zipfile.is_zipfile(path)
    with open(path, "rb") as f:
        is_legacy_pickle = f.read(1) == b"\x80"  # pickle protocol >= 2 opcode
    if not (is_zip or is_legacy_pickle):
        raise VidforgeError(f"cannot read checkpoint {name!r}: not a PyTorch or safetensors file")
    if is_zip and _is_torchscript(path):
        raise VidforgeError(f"refusing checkpoint {name!r}: it is a TorchScript archive (code, not weights)")
    if not is_zip and tarfile.is_tarfile(path):
        raise VidforgeError(
            f"refusing checkpoint {name!r}: torch's pre-0.4 tar format is not read (re-save it with a current torch)"
        )
    if os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "0").lower() in ("1", "y", "yes", "true"):
        raise VidforgeError(
            f"cannot read checkpoint {name!r}: TORCH_FORCE_WEIGHTS_ONLY_LOAD is set, which turns off "
            "vidforge's own safe unpickler; unset it"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's notes on legacy files must not reach the terminal
        return torch.load(
            path, map_location="cpu", pickle_module=PICKLE_MODULE, weights_only=False, mmap=is_zip
        )


def weights_of(obj, name: str) -> dict:
    """Lightning ``{"state_dict": sd}``, DeepSpeed ``{"module": sd}`` (``_forward_module.`` dropped)
    or a plain ``{name: tensor}`` -> ``{name: tensor}`` (plain tensors, detached from anything the
    pickle attached to them). Everything else in ``obj`` is ignored; a weight that is not a tensor
    is refused."""
    import torch

    # dict's own methods throughout: a pickle can set instance attributes (``get``, ``items``) on an
    # OrderedDict, never on the dict type
    if not isinstance(obj, dict):
        what = type(obj).global_name if isinstance(obj, Placeholder) else type(obj).__name__
        raise VidforgeError(f"checkpoint {name!r} holds no state dict (it holds a {what})")
    if isinstance(dict.get(obj, "state_dict"), dict):
        state_dict, prefix = dict.get(obj, "state_dict"), ""
    elif isinstance(dict.get(obj, "module"), dict):
        state_dict, prefix = dict.get(obj, "module"), "_forward_module."
    else:
        state_dict, prefix = obj, ""
    weights = {}
    for key, value in dict.items(state_dict):
        if type(key) is not str:
            raise VidforgeError(f"checkpoint {name!r} holds no state dict (a {type(key).__name__} key)")
        if type(value) not in (torch.Tensor, torch.nn.Parameter):
            what = type(value).global_name if isinstance(value, Placeholder) else type(value).__name__
            raise VidforgeError(
                f"refusing checkpoint {name!r}: its weight {key!r} is not a plain tensor ({what}); vidforge "
                "rebuilds only plain tensors from a pickle and ran nothing from it"
            )
        # the type's method (an instance attribute cannot stand in): a plain tensor, no hooks, no attributes
        weights[key.removeprefix(prefix)] = torch.Tensor.detach(value)
    return weights


def load_state_dict(path: str | os.PathLike) -> dict:
    """``{name: tensor}`` from a ``.safetensors`` file or a pickle checkpoint (read with
    :class:`SafeUnpickler`: no code from the file runs; see the module doc).

    Errors are one line naming the file: no checkpoint at all, corrupt or truncated, a construct no
    checkpoint of tensors needs, a weight that is not a plain tensor.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:
            raise VidforgeError(f"cannot read checkpoint {str(path)!r}: not a valid safetensors file") from e
    try:
        obj = read_pickle(path)
    except VidforgeError:
        raise
    except Refused as e:
        raise VidforgeError(
            f"refusing checkpoint {str(path)!r}: its pickle uses {e}, which vidforge does not run"
        ) from e
    except Exception as e:
        raise VidforgeError(
            f"cannot read checkpoint {str(path)!r}: corrupt or truncated ({type(e).__name__})"
        ) from e
    return weights_of(obj, str(path))
