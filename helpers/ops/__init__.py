"""The ops layer: ONNX export and parity (`export`), the demo bundle and server (`demo`,
`serve`) and the torchrun entry point (`launch`). Week 4b and 4f use them. It may import every
layer below; nothing below imports it (docs/DEVELOPING.md, "Layers"). The speed benchmark is
not part of the package: `tools/bench.py` (`make bench`)."""

from importlib import import_module as _import_module

_SUBMODULES = ("export", "demo", "serve", "launch")


def __getattr__(name):
    if name in _SUBMODULES:
        return _import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'helpers.ops' has no attribute {name!r}")
