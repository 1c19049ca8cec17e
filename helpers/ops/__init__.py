"""Operations: ONNX export and parity (`export`), the demo bundle and server (`demo`,
`serve`), speed benchmarks (`bench`) and multi-GPU training (`distributed`, `launch`).
Week 4b and 4f use them; the paper layer does not depend on them except for `distributed`."""

from importlib import import_module as _import_module

_SUBMODULES = ("export", "demo", "serve", "bench", "distributed", "launch")


def __getattr__(name):
    if name in _SUBMODULES:
        return _import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'helpers.ops' has no attribute {name!r}")
