"""``stylize --mode atlas``: CoDeF's deformation and canonical fields, one edit of the canonical
image, every frame rendered from it (see :mod:`vidforge.stylize.atlas.pipeline`)."""

from vidforge._lazy import lazy_getattr

__getattr__ = lazy_getattr(__name__, {"AtlasStylizer": "vidforge.stylize.atlas.pipeline"})

__all__ = ["AtlasStylizer"]
