"""Course support: run profiles (`config`), the machine (`env`), data sets (`data`), checks
that explain failures (`checks`), exercise checks (`exercises`), plots, training records
(`training`), the resumable run (`run`) and the "Paper vs. this run" table (`compare`). Used by
every notebook; not part of the papers."""

from importlib import import_module as _import_module

_SUBMODULES = ("config", "env", "data", "checks", "exercises", "plots", "training", "files", "run",
               "compare", "summarization")


def __getattr__(name):
    if name in _SUBMODULES:
        return _import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'helpers.course' has no attribute {name!r}")
