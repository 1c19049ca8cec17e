"""A deploy bundle of untrained, tiny models in a second or two (no training, no notebook
checkpoints): for the tests of issue #24 that need a bundle's files, not good translations."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from helpers.dcgan import Generator
from helpers.ops import demo
from helpers.transformer import Transformer
from helpers.translation import SubwordTokenizer

TEXTS = ["the dog sees the cat", "a cat sees a dog", "der Hund sieht die Katze",
         "eine Katze sieht einen Hund"] * 20
TRANSLATOR = {"vocab_size": None, "d_model": 16, "n_heads": 2, "d_ff": 32, "n_layers": 1,
              "max_len": 32, "positional": "sinusoidal"}
GENERATOR = {"nz": 8, "ngf": 4, "ndf": 4, "channels": 1, "image_size": 32}


def tiny_models(seed: int = 0):
    torch.manual_seed(seed)
    tok = SubwordTokenizer.train(TEXTS, 60)
    arch = {**TRANSLATOR, "vocab_size": tok.vocab_size}
    model = Transformer(arch["vocab_size"], d_model=arch["d_model"], n_heads=arch["n_heads"],
                        d_ff=arch["d_ff"], n_layers=arch["n_layers"], dropout=0.0,
                        max_len=arch["max_len"], positional=arch["positional"], pad_id=0).eval()
    G = Generator(GENERATOR["nz"], GENERATOR["ngf"], GENERATOR["channels"], GENERATOR["image_size"]).eval()
    return model, tok, arch, G


def tiny_bundle(folder: Path, seed: int = 0) -> Path:
    """Write a complete bundle (both models, ONNX graphs, passed parity results) into ``folder``."""
    model, tok, arch, G = tiny_models(seed)
    folder.mkdir(parents=True, exist_ok=True)
    demo.save_translator_bundle(model, tok, arch, folder, source=f"tiny (seed {seed})")
    demo.save_generator_bundle(G, GENERATOR, folder, source=f"tiny (seed {seed})")
    demo.record_parity(folder, translator={"memory_max_abs": 0.0, "logits_max_abs": 0.0,
                                           "sentences": 1, "identical": 1, "mismatches": []},
                       generator_max_abs=0.0)
    return folder


def tree(folder: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``folder`` (folders as ``"dir"``)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out
