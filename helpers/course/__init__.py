"""The course layer: what the notebooks need around the papers. Data sets (`data`), checks
that explain failures (`checks`), exercise checks (`exercises`), attention plots (`plots`) and
the "Paper vs. this run" table (`compare`). It may import the runtime and paper layers, never
`helpers.ops` (docs/DEVELOPING.md, "Layers")."""

from importlib import import_module as _import_module

_SUBMODULES = ("data", "checks", "exercises", "plots", "compare")


def __getattr__(name):
    if name in _SUBMODULES:
        return _import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'helpers.course' has no attribute {name!r}")
