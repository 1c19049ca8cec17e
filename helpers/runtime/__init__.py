"""The runtime layer: what every training run needs, whatever it trains. Run profiles and
settings (`config`), the machine (`env`: device, seeding, mixed precision, Colab/Drive),
all-or-nothing files (`files`), checkpoints and RNG states (`checkpoints`), training failures
that say what to do (`failures`: NaN/inf loss, GPU out of memory), the curves and the progress
bar (`history`), metrics.json (`metrics`), the resumable run (`run`), the multi-GPU context
(`distributed`) and the predicted training time per GPU (`estimate`). It imports no paper, course or ops code (docs/DEVELOPING.md, "Layers")."""

from importlib import import_module as _import_module

_SUBMODULES = ("config", "env", "files", "checkpoints", "failures", "history", "metrics", "run",
               "distributed", "estimate")


def __getattr__(name):
    if name in _SUBMODULES:
        return _import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'helpers.runtime' has no attribute {name!r}")
