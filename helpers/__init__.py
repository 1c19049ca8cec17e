"""`helpers`: the tested code of the curriculum, one small module per topic.

The notebooks write each idea in the open first; the following week imports the tested
version from here. Modules (and the week that introduces each):

- `helpers.config`   run profiles (smoke / local / full) and every notebook family's settings (week 0)
- `helpers.env`      device, seeding, mixed precision, Colab and Drive, environment report (week 0)
- `helpers.data`     dataset registry: local official layout -> cache -> download (week 0; datasets per track)
- `helpers.training` progress bars, loss history, atomic checkpoints, metrics.json (week 0)
- `helpers.checks`   assertion helpers that say *what* is wrong (used in every notebook)
- `helpers.exercises` exercise checks that name the likely mistake; blanks fall back to the tested code
- `helpers.transformer`  the Transformer in one file (Transformer weeks 2-3)
- `helpers.translation`  subwords, batching, training loop, decoding, BLEU (Transformer week 3)
- `helpers.plots`    attention heatmaps and explorers (Transformer weeks 2-3)
- `helpers.dcgan`    DCGAN in one file: G, D, init, training step and loop (DCGAN weeks 3-4)
- `helpers.gan_metrics`  FID, diversity diagnostics, linear probe (DCGAN week 4, final project)
- `helpers.export`   ONNX export, onnxruntime decoding, parity checks, deploy bundles (week 4f)
- `helpers.serve`    the FastAPI demo, `python -m helpers.serve` (week 4f)
- `helpers.bench`    `make bench`: naive vs optimized training steps and the data pipeline, side by side (week 4b)
- `helpers.distributed`  multi-GPU training under torchrun (DDP); `python -m helpers.train_translation` (week 4b)

Importing `helpers` is cheap: submodules are imported on first use.
"""

from importlib import import_module as _import_module

__version__ = "0.1.0"

_SUBMODULES = ("config", "env", "data", "training", "checks", "exercises", "transformer", "translation",
               "plots", "dcgan", "gan_metrics", "export", "serve", "bench", "distributed")


def __getattr__(name):  # PEP 562: lazy submodules keep `import helpers` fast
    if name in _SUBMODULES:
        return _import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'helpers' has no attribute {name!r}")


__all__ = list(_SUBMODULES)
