"""`helpers`: the tested code of the curriculum.

The paper layer, what the notebooks teach (each module cites the paper's sections):

- `helpers.transformer`  the Transformer in one file: attention, layers, schedule, decoding (Transformer weeks 2-3)
- `helpers.translation`  subwords, token-count batches, the §5 training loop, checkpoint averaging, BLEU (Transformer week 3)
- `helpers.dcgan`        DCGAN in one file: G, D, init, the §3 guidelines, the §4 training loop (DCGAN weeks 3-4)
- `helpers.gan_metrics`  FID, label-free features, diversity diagnostics, the §5.1 linear probe (DCGAN week 4, final project)

Course support in `helpers.course` (config, env, data, checks, exercises, plots, training
records, the resumable run) and operations in `helpers.ops` (export, serve, bench,
distributed training) stay out of the way. Importing `helpers` is cheap: submodules load on
first use.
"""

from importlib import import_module as _import_module

__version__ = "0.1.0"

_SUBMODULES = ("transformer", "translation", "dcgan", "gan_metrics", "course", "ops")


def __getattr__(name):  # PEP 562: lazy submodules keep `import helpers` fast
    if name in _SUBMODULES:
        return _import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'helpers' has no attribute {name!r}")


__all__ = list(_SUBMODULES)
