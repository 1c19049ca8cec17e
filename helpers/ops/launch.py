"""Train the week-3 translator from the command line, on one device or several (Transformer
week 3 loop; week 4b "multi-GPU"; §5 of the paper).

    python -m helpers.ops.launch --profile local
    torchrun --nproc_per_node=4 -m helpers.ops.launch --profile full

The data, vocabulary and model are those of notebooks/transformer/week3_transformer (the
``translation`` settings of the chosen profile; ``--set key=value`` overrides any of them).
Under torchrun every process trains on its share of each global token batch with
DistributedDataParallel (see :mod:`helpers.runtime.distributed`); rank 0 alone prints and writes
``<out>/model.pt`` (the weights), ``<out>/checkpoint.pt`` (resumable) and
``<out>/history.json``.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

import torch

from helpers.course.data import load_dataset
from helpers.runtime import distributed, env
from helpers.runtime.checkpoints import atomic_save
from helpers.runtime.config import profile_config
from helpers.runtime.files import atomic_write_text
from helpers.translation import build_model, prepare_translation, train_translation


def _value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m helpers.ops.launch",
                                description=__doc__.split("\n")[0])
    p.add_argument("--profile", default=None, help="smoke, local or full (default: $CURRICULUM_PROFILE)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a 'translation' setting, e.g. --set train_steps=100")
    p.add_argument("--out", default=None, help="output folder (default runs/transformer/train_translation)")
    p.add_argument("--checkpoint-every", type=int, default=0)
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--device", default=None, help="default: helpers.runtime.env.get_device()")
    args = p.parse_args(argv)

    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            p.error(f"--set {item!r}: use KEY=VALUE")
        overrides[key] = _value(value)
    cfg = profile_config("translation", args.profile, **overrides)
    ctx = distributed.setup(args.device or env.get_device(cfg.profile))
    try:
        env.seed_everything(cfg.seed, profile=cfg.profile)
        dataset = load_dataset("multi30k", profile=cfg.profile, n_train=cfg.dataset_size)
        data = prepare_translation(dataset.data, cfg.vocab_size, max_len=cfg.max_len,
                                   name=f"multi30k-{cfg.profile}")
        env.seed_everything(cfg.seed, profile=cfg.profile)
        model = build_model(cfg, data.tokenizer.vocab_size)
        out = Path(args.out) if args.out else env.runs_dir() / "transformer" / "train_translation"
        if ctx.is_main:
            out.mkdir(parents=True, exist_ok=True)
            print(f"{cfg.profile} profile, {ctx.world_size} process(es) on {ctx.device}, "
                  f"{model.num_parameters():,} parameters", flush=True)
        # no snapshots for averaging here (average_last=0): the model is the last weights
        run_cfg = cfg.replace(log_every=args.log_every, checkpoint_every=args.checkpoint_every, average_last=0)
        history = train_translation(model, data, run_cfg, device=ctx.device, checkpoint_path=out / "checkpoint.pt")
        torch.use_deterministic_algorithms(False)
        if ctx.is_main:
            atomic_save(model.state_dict(), out / "model.pt")
            atomic_write_text(json.dumps(history.state_dict()) + "\n", out / "history.json")
            losses = history["train_loss"]
            print(f"done: {len(losses)} logged steps, last training loss {losses[-1]:.4f}; "
                  f"wrote {out}", flush=True)
    finally:
        distributed.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
