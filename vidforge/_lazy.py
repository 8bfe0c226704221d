"""Lazy re-exports (PEP 562): a package names its public API up front, and the modules that import
torch load on first use, so ``vidforge --help`` and importing an options class stay fast."""

from __future__ import annotations

import importlib


def lazy_getattr(package: str, names: dict[str, str]):
    """A module ``__getattr__`` that imports ``names[attr]`` (a module path) when ``attr`` is asked
    for, and returns that module's ``attr``, or the module itself when its name ends in ``.attr``."""

    def __getattr__(attr: str):
        if attr not in names:
            raise AttributeError(f"module {package!r} has no attribute {attr!r}")
        module = importlib.import_module(names[attr])
        return module if names[attr].endswith("." + attr) else getattr(module, attr)

    return __getattr__
