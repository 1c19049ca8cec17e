"""`helpers`: the tested code of the curriculum, in four layers; each imports only the layers
below it (docs/DEVELOPING.md, "Layers"; tests/test_layout.py enforces it):

1. `helpers.runtime`: what every training run needs: config, env, files, checkpoints, failures,
   history, metrics, the resumable run, the multi-GPU context. Imports no other layer.
2. The paper layer, what the notebooks teach (each module cites the paper's sections); it
   imports only torch, its third-party libraries, `helpers.runtime` and other paper modules:

   - `helpers.transformer`      the Transformer in one file: attention, layers, schedule, decoding, step FLOPs (Transformer weeks 2-3, 4b)
   - `helpers.translation`      subwords, token-count batches, the §5 training loop and its multi-GPU sharding, checkpoint averaging, BLEU (Transformer week 3)
   - `helpers.summarization`    seq2seq fine-tuning with the Trainer, ROUGE, the lead baseline (Transformer week 4e, final project)
   - `helpers.dcgan`            DCGAN in one file: G, D, init, the §3 guidelines, the §4 training loop (DCGAN weeks 3-4)
   - `helpers.dcgan_ablations`  the §3/§4 choices switched off one at a time (DCGAN week 4b)
   - `helpers.gan_metrics`      FID, label-free features, diversity diagnostics, the §5.1 linear probe (DCGAN week 4, final project)

3. `helpers.course`: data sets, checks, exercises, plots, the "Paper vs. this run" table.
4. `helpers.ops`: ONNX export, the demo bundle and server, the torchrun launcher.

Importing `helpers` is cheap: submodules load on first use.
"""

from importlib import import_module as _import_module

__version__ = "0.1.0"
# The mark every notebook's setup cell looks for: the `helpers` it finds is this course's package,
# not a learner's own helpers.py or another package of that name.
__curriculum__ = "paper-curriculum/attention-dcgan"

_SUBMODULES = ("runtime", "transformer", "translation", "summarization", "dcgan", "dcgan_ablations",
               "gan_metrics", "course", "ops")


def __getattr__(name):  # PEP 562: lazy submodules keep `import helpers` fast
    if name in _SUBMODULES:
        return _import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'helpers' has no attribute {name!r}")


__all__ = list(_SUBMODULES)
