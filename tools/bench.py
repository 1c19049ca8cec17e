"""`make bench`: the naive and the optimized training paths timed side by side in one process
(Transformer week 4b "optimization", DCGAN week 4 "training").

    python tools/bench.py                  # the best device present (CUDA, else CPU)
    python tools/bench.py --device cpu --quick --out runs/bench/quick.json

Rows: the Transformer step (week 2's attention in fp32 vs SDPA + autocast + fused Adam +
compile), the DCGAN step (fp32 eager vs channels_last + fused Adam + compile), the data
pipeline alone, and decoding (greedy and beam 4, with and without week 3's key/value cache,
plus the output length from which the cache pays off). Rounds alternate between the two sides; each side reports its fastest round.
Output: a table and ``runs/bench/bench-<device>.json``. Week 4b derives the MFU formula
(:func:`helpers.transformer.transformer_step_flops`) and explains why the CPU recipe differs from the GPU one.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from helpers.course.data.images import ImageFolderDataset
from helpers.course.data.text import synthetic_translation
from helpers.dcgan import Discriminator, Generator, dcgan_optimizers, train_step, weights_init
from helpers.ops import demo
from helpers.ops.export import source_batch
from helpers.runtime import env
from helpers.runtime.config import get_profile
from helpers.runtime.estimate import PEAK_TFLOPS, peak_tflops  # noqa: F401 - bench.peak_tflops
from helpers.transformer import (
    Transformer,
    beam_search,
    greedy_decode,
    label_smoothed_loss,
    paper_adam,
    transformer_step_flops,
    transformer_step_flops_6nd,
)
from helpers.translation import prepare_translation, translate

# The dense 16-bit peaks per GPU live in one table: helpers.runtime.estimate.PEAK_TFLOPS.


# --------------------------------------------------------------------------- sizes
@dataclass(frozen=True)
class Sizes:
    vocab: int
    d_model: int
    n_heads: int
    d_ff: int
    n_layers: int
    batch: int          # sentences per step
    src_len: int
    tgt_len: int
    gan_image: int
    gan_width: int      # ngf = ndf
    gan_batch: int
    gan_channels: int
    pairs: int          # sentences for the batcher
    max_tokens: int     # the batcher's token budget per side
    folder_images: int  # JPEG files for the image-folder loader
    warmup: int
    rounds: int
    steps_per_round: int


def sizes_for(device: torch.device, quick: bool) -> Sizes:
    """Benchmark sizes: the paper's base model (§3, Table 3) and DCGAN at 64x64 with batch 128
    (DCGAN §4) on a GPU, small models on the CPU, tiny ones for ``--quick`` (week 4b)."""
    if quick:
        return Sizes(vocab=300, d_model=32, n_heads=4, d_ff=64, n_layers=1, batch=4, src_len=8,
                     tgt_len=8, gan_image=16, gan_width=8, gan_batch=8, gan_channels=3,
                     pairs=300, max_tokens=200, folder_images=16, warmup=1, rounds=2,
                     steps_per_round=1)
    if device.type == "cuda":
        return Sizes(vocab=37000, d_model=512, n_heads=8, d_ff=2048, n_layers=6, batch=256,
                     src_len=64, tgt_len=64, gan_image=64, gan_width=64, gan_batch=128,
                     gan_channels=3, pairs=29000, max_tokens=8000, folder_images=512,
                     warmup=3, rounds=7, steps_per_round=5)
    return Sizes(vocab=4000, d_model=128, n_heads=4, d_ff=512, n_layers=2, batch=16, src_len=48,
                 tgt_len=48, gan_image=32, gan_width=32, gan_batch=32, gan_channels=3,
                 pairs=4000, max_tokens=1200, folder_images=96, warmup=1, rounds=12,
                 steps_per_round=1)


# --------------------------------------------------------------------------- timing
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_times(steps: dict[str, Callable[[], Any]], device: torch.device, *, warmup: int,
                      rounds: int, steps_per_round: int) -> dict[str, list[float]]:
    """Seconds per step for each named step function, timed in alternating rounds (the order
    flips every round) after ``warmup`` untimed calls each. Returns every round's figure
    (week 4b: warm up, synchronise, then time)."""
    for fn in steps.values():
        for _ in range(warmup):
            fn()
    _sync(device)
    names = list(steps)
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            fn = steps[name]
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(steps_per_round):
                fn()
            _sync(device)
            out[name].append((time.perf_counter() - t0) / steps_per_round)
    return out


def _state_bytes(*objs) -> int:
    """Bytes held by module parameters/buffers and optimizer state tensors."""
    total, seen = 0, set()
    for obj in objs:
        tensors = []
        if isinstance(obj, torch.nn.Module):
            tensors = list(obj.parameters()) + list(obj.buffers())
        elif isinstance(obj, torch.optim.Optimizer):
            tensors = [t for s in obj.state.values() for t in s.values() if torch.is_tensor(t)]
        for t in tensors:
            if t.data_ptr() not in seen:
                seen.add(t.data_ptr())
                total += t.numel() * t.element_size()
    return total


def step_peak_mb(step: Callable[[], Any], device: torch.device, *state) -> float | None:
    """Peak GPU memory one step of this side needs on its own: its weights and optimizer
    state plus the most the step allocates on top (``torch.cuda.max_memory_allocated``).
    None on CPU."""
    if device.type != "cuda":
        return None
    _sync(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    _sync(device)
    extra = torch.cuda.max_memory_allocated(device) - before
    return round((extra + _state_bytes(*state)) / 2**20, 1)


class _CompiledOrEager:
    """``torch.compile(module)``, falling back to the eager module (with a note in the
    report) if compiling fails on the first calls, e.g. without a C compiler or Triton."""

    def __init__(self, module, notes: list[str], **kwargs):
        self.eager, self.notes = module, notes
        self.compiled = torch.compile(module, **kwargs)

    def __call__(self, *args, **kwargs):
        if self.compiled is not None:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as exc:  # pragma: no cover - depends on the installation
                self.notes.append(f"torch.compile failed ({type(exc).__name__}: "
                                  f"{str(exc)[:200]}); ran eager")
                self.compiled = None
        return self.eager(*args, **kwargs)


def _compile(module, enabled: bool, notes: list[str], **kwargs):
    if not enabled:
        return module
    try:
        return _CompiledOrEager(module, notes, **kwargs)
    except Exception as exc:  # pragma: no cover - depends on the installation
        notes.append(f"torch.compile unavailable ({type(exc).__name__}: {exc}); ran eager")
        return module


def _amp_for(device: torch.device, amp: bool):
    """The optimized side's autocast: ``env.amp_settings`` (bf16 on CPU) when ``amp``, else fp32."""
    if not amp:
        return env.AmpSettings(device.type, torch.float32, False)
    return env.AmpSettings("cpu", torch.bfloat16, False) if device.type == "cpu" else env.amp_settings(device)


# --------------------------------------------------------------------------- transformer
def bench_transformer(device: torch.device, s: Sizes, *, compile_model: bool, amp: bool,
                      peak: tuple[float, str] | None) -> dict:
    """Naive fp32 (week 2 attention, plain Adam) vs optimized training step, side by side
    (Transformer week 4b; §3.2.1 Eq. 1 computed two ways)."""
    notes: list[str] = []
    gen = torch.Generator().manual_seed(0)
    src = torch.randint(4, s.vocab, (s.batch, s.src_len), generator=gen).to(device)
    tgt = torch.randint(4, s.vocab, (s.batch, s.tgt_len + 1), generator=gen).to(device)
    tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]
    kw = dict(d_model=s.d_model, n_heads=s.n_heads, d_ff=s.d_ff, n_layers=s.n_layers,
              dropout=0.1, max_len=max(s.src_len, s.tgt_len) + 1)

    torch.manual_seed(0)
    naive = Transformer(s.vocab, fast=False, **kw).to(device)
    naive_opt = paper_adam(naive.parameters())  # torch's default implementation

    def naive_step():
        naive.train()
        loss = label_smoothed_loss(naive(src, tgt_in), tgt_out, 0.1, 0)
        loss.backward()
        naive_opt.step()
        naive_opt.zero_grad(set_to_none=True)
        return loss

    torch.manual_seed(0)
    fast = Transformer(s.vocab, fast=True, **kw).to(device)
    settings = _amp_for(device, amp)
    scaler = env.grad_scaler(settings)
    fused = device.type in ("cuda", "cpu")
    try:
        fast_opt = paper_adam(fast.parameters(), fused=fused)
    except (RuntimeError, TypeError) as exc:  # pragma: no cover - old torch
        notes.append(f"fused Adam unavailable ({exc})")
        fast_opt, fused = paper_adam(fast.parameters()), False
    fast_fwd = _compile(fast, compile_model, notes)

    def fast_step():
        fast.train()
        with env.autocast(settings):
            logits = fast_fwd(src, tgt_in)
        loss = label_smoothed_loss(logits.float(), tgt_out, 0.1, 0)
        scaler.scale(loss).backward()
        scaler.step(fast_opt)
        scaler.update()
        fast_opt.zero_grad(set_to_none=True)
        return loss  # stays on the device: no .item() in the step

    warmup = s.warmup + (2 if compile_model else 0)
    times = interleaved_times({"naive": naive_step, "optimized": fast_step}, device,
                              warmup=warmup, rounds=s.rounds, steps_per_round=s.steps_per_round)
    tokens = s.batch * (s.src_len + s.tgt_len)
    flops = transformer_step_flops(naive, s.batch, s.src_len, s.tgt_len)
    flops_6nd = transformer_step_flops_6nd(naive, s.batch, s.src_len, s.tgt_len)
    out = {"size": {"vocab": s.vocab, "d_model": s.d_model, "n_heads": s.n_heads,
                    "d_ff": s.d_ff, "layers": f"{s.n_layers}+{s.n_layers}", "batch": s.batch,
                    "src_len": s.src_len, "tgt_len": s.tgt_len,
                    "parameters": naive.num_parameters()},
           "tokens_per_step": tokens, "flops_per_step": flops, "flops_per_step_6nd": flops_6nd,
           "recipe": {"attention": "sdpa", "amp": str(settings.dtype).replace("torch.", ""),
                      "grad_scaler": settings.use_grad_scaler, "fused_adam": fused,
                      "compile": compile_model and not any("compile" in n for n in notes),
                      "host_syncs_in_step": 0},
           "notes": notes}
    for name, step, state in (("naive", naive_step, (naive, naive_opt)),
                              ("optimized", fast_step, (fast, fast_opt))):
        sec = min(times[name])
        out[name] = {"step_ms": round(1000 * sec, 3), "tokens_per_s": round(tokens / sec, 1),
                     "median_step_ms": round(1000 * statistics.median(times[name]), 3),
                     "tflops": round(flops / sec / 1e12, 4),
                     "mfu": None if peak is None else round(flops / sec / (peak[0] * 1e12), 4),
                     "mfu_6nd": None if peak is None else round(flops_6nd / sec / (peak[0] * 1e12), 4),
                     "peak_mem_mb": step_peak_mb(step, device, *state),
                     "rounds_ms": [round(1000 * t, 3) for t in times[name]]}
    out["ratio"] = round(out["optimized"]["tokens_per_s"] / out["naive"]["tokens_per_s"], 3)
    return out


# --------------------------------------------------------------------------- DCGAN
def optimized_dcgan_step(G, D, opt_g, opt_d, real, *, nz: int, rng=None, amp=None,
                         scaler=None, ones=None, zeros=None):
    """``helpers.dcgan.train_step`` without host synchronisation (DCGAN week 4, speed): the
    same D update then G update, under ``amp`` autocast if given, returning the two losses as
    device tensors instead of floats. ``G``/``D`` may be channels_last or compiled."""
    b, device = real.size(0), real.device
    amp = amp or env.AmpSettings(device.type, torch.float32, False)
    scaler = scaler or env.grad_scaler(amp)
    ones = torch.ones(b, device=device) if ones is None else ones
    zeros = torch.zeros(b, device=device) if zeros is None else zeros
    z = torch.randn(b, nz, device=device, generator=rng)
    with env.autocast(amp):
        fake = G(z)
        logits_real, logits_fake = D(real), D(fake.detach())
    loss_d = (F.binary_cross_entropy_with_logits(logits_real.float(), ones)
              + F.binary_cross_entropy_with_logits(logits_fake.float(), zeros))
    opt_d.zero_grad(set_to_none=True)
    scaler.scale(loss_d).backward()
    scaler.step(opt_d)
    with env.autocast(amp):
        logits_g = D(fake)
    loss_g = F.binary_cross_entropy_with_logits(logits_g.float(), ones)
    opt_g.zero_grad(set_to_none=True)
    scaler.scale(loss_g).backward()
    scaler.step(opt_g)
    scaler.update()
    return loss_d.detach(), loss_g.detach()  # no .item(): the host never waits


def bench_dcgan(device: torch.device, s: Sizes, *, compile_model: bool, amp: bool,
                compile_mode: str | None = None) -> dict:
    """Plain fp32 eager DCGAN update (``helpers.dcgan.train_step``) vs the optimized one
    (DCGAN week 4, §4 training setup)."""
    notes: list[str] = []
    nz, b = 100, s.gan_batch
    gen = torch.Generator().manual_seed(0)
    real = (torch.rand(b, s.gan_channels, s.gan_image, s.gan_image, generator=gen) * 2 - 1).to(device)

    def nets():
        torch.manual_seed(0)
        G = Generator(nz, s.gan_width, s.gan_channels, s.gan_image).to(device)
        D = Discriminator(s.gan_channels, s.gan_width, s.gan_image).to(device)
        G.apply(weights_init)
        D.apply(weights_init)
        return G, D

    G0, D0 = nets()
    opt_g0, opt_d0 = dcgan_optimizers(G0, D0)
    plain_gen = torch.Generator(device=device).manual_seed(1)

    def plain_step():
        return train_step(G0, D0, opt_g0, opt_d0, real, nz=nz, rng=plain_gen)

    G1, D1 = nets()
    G1, D1 = G1.to(memory_format=torch.channels_last), D1.to(memory_format=torch.channels_last)
    real_cl = real.contiguous(memory_format=torch.channels_last)
    fused = True
    try:
        opt_g1 = torch.optim.Adam(G1.parameters(), lr=2e-4, betas=(0.5, 0.999), fused=True)
        opt_d1 = torch.optim.Adam(D1.parameters(), lr=2e-4, betas=(0.5, 0.999), fused=True)
    except (RuntimeError, TypeError) as exc:  # pragma: no cover - old torch
        notes.append(f"fused Adam unavailable ({exc})")
        fused = False
        opt_g1, opt_d1 = dcgan_optimizers(G1, D1)
    kwargs = {"mode": compile_mode} if compile_mode else {}
    G1c, D1c = _compile(G1, compile_model, notes, **kwargs), _compile(D1, compile_model, notes, **kwargs)
    settings = _amp_for(device, amp)
    scaler = env.grad_scaler(settings)
    ones, zeros = torch.ones(b, device=device), torch.zeros(b, device=device)
    fast_gen = torch.Generator(device=device).manual_seed(1)

    on_gpu = device.type == "cuda"

    def fast_step():
        previous = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = on_gpu or previous  # cuDNN picks the fastest conv kernels
        try:
            return optimized_dcgan_step(G1c, D1c, opt_g1, opt_d1, real_cl, nz=nz,
                                        rng=fast_gen, amp=settings, scaler=scaler,
                                        ones=ones, zeros=zeros)
        finally:
            torch.backends.cudnn.benchmark = previous

    warmup = s.warmup + (2 if compile_model else 0)
    times = interleaved_times({"plain": plain_step, "optimized": fast_step}, device,
                              warmup=warmup, rounds=s.rounds, steps_per_round=s.steps_per_round)
    out = {"size": {"image": s.gan_image, "channels": s.gan_channels, "ngf_ndf": s.gan_width,
                    "nz": nz, "batch": b},
           "recipe": {"channels_last": True, "fused_adam": fused, "cudnn_benchmark": on_gpu,
                      "amp": str(settings.dtype).replace("torch.", ""),
                      "compile": compile_model and not any("compile" in n for n in notes),
                      "compile_mode": compile_mode or "default", "host_syncs_in_step": 0},
           "notes": notes}
    for name, step, state in (("plain", plain_step, (G0, D0, opt_g0, opt_d0)),
                              ("optimized", fast_step, (G1, D1, opt_g1, opt_d1))):
        sec = min(times[name])
        out[name] = {"step_ms": round(1000 * sec, 3), "images_per_s": round(b / sec, 1),
                     "median_step_ms": round(1000 * statistics.median(times[name]), 3),
                     "peak_mem_mb": step_peak_mb(step, device, *state),
                     "rounds_ms": [round(1000 * t, 3) for t in times[name]]}
    out["ratio"] = round(out["optimized"]["images_per_s"] / out["plain"]["images_per_s"], 3)
    return out


# --------------------------------------------------------------------------- data pipeline
def _best_of(fn: Callable[[], int], repeats: int) -> tuple[float, int]:
    """Fastest of ``repeats`` runs of ``fn`` (returns how many items it produced)."""
    best, items = math.inf, 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        items = fn()
        best = min(best, time.perf_counter() - t0)
    return best, items


def bench_data(s: Sizes, *, workers: int = 0, repeats: int = 3) -> dict:
    """Batches/s of the translation batcher (§5.1 token batches) and the image loaders alone."""
    splits = synthetic_translation(s.pairs, 20, 20, seed=0)
    data = prepare_translation(splits, min(500, s.vocab), name="bench")
    epoch = [0]

    def batcher():
        epoch[0] += 1
        batches = data.batches("train", s.max_tokens, seed=epoch[0])
        return len(batches)

    sec, n_batches = _best_of(batcher, repeats)
    real_tokens = sum(len(a) + len(b) - 1 for a, b in data.encoded["train"])
    translation = {"pairs": len(data.encoded["train"]), "max_tokens": s.max_tokens,
                   "batches": n_batches, "seconds_per_epoch": round(sec, 4),
                   "batches_per_s": round(n_batches / sec, 1),
                   "tokens_per_s": round(real_tokens / sec, 1),
                   "padding_fraction": round(data.padding_fraction("train", s.max_tokens), 4)}

    # in-memory tensors: the MNIST / Fashion-MNIST / CIFAR-10 path of helpers.course.data.images
    b = s.gan_batch
    images = torch.rand(max(4 * b, 256), s.gan_channels, s.gan_image, s.gan_image) * 2 - 1
    tensor_loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images),
                                                batch_size=b, shuffle=True, drop_last=True)

    def tensors():
        return sum(batch[0].size(0) for batch in tensor_loader)

    sec_t, n_t = _best_of(tensors, repeats)
    # a folder of JPEG files, decoded and resized on the fly: the CelebA / own-images path
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        for i in range(s.folder_images):  # CelebA-aligned size, 178x218
            pixels = rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(Path(tmp) / f"{i:05d}.jpg", quality=90)
        folder = ImageFolderDataset(tmp, s.gan_image, s.gan_channels, check="none")
        folder_batch = min(b, len(folder))
        folder_loader = torch.utils.data.DataLoader(folder, batch_size=folder_batch,
                                                    shuffle=True, num_workers=workers)

        def files():
            return sum(batch.size(0) for batch in folder_loader)

        files()  # warm: imports and the first file opens are not the loader's speed
        sec_f, n_f = _best_of(files, max(1, repeats - 1))
    return {"translation": translation,
            "images_in_memory": {"batch": b, "images_per_s": round(n_t / sec_t, 1),
                                 "batches_per_s": round(n_t / b / sec_t, 1)},
            "images_from_jpeg_folder": {"batch": folder_batch, "workers": workers,
                                        "source_size": "178x218 JPEG",
                                        "images_per_s": round(n_f / sec_f, 1),
                                        "batches_per_s": round(n_f / folder_batch / sec_f, 2)}}


# --------------------------------------------------------------------------- decoding
def decoding_model(quick: bool, log: Callable[[str], None] = print):
    """``(model, tokenizer, sentences, description)`` for the decoding rows: week 3's translator
    for the active profile when its checkpoint exists, else the smoke translator (trained here
    for 250 steps, about a minute on a CPU) and its test sentences; ``quick``: a tiny untrained
    model (checks the code path only)."""
    if quick:
        splits = synthetic_translation(300, 8, 8)
        tok = prepare_translation(splits, 200, name="bench-decoding").tokenizer
        torch.manual_seed(0)
        model = Transformer(tok.vocab_size, d_model=32, n_heads=4, d_ff=64, n_layers=1, dropout=0.0,
                            max_len=64)
        return model.eval(), tok, [s for s, _ in splits["test"]], "untrained tiny translator (--quick)"
    profile = get_profile(warn=False)
    if not (env.checkpoint_dir("transformer", "week3_transformer", profile) / "translator.pt").is_file():
        profile = "smoke"
    model, tok, _, source, test_pairs = demo.notebook_translator(profile, log=log)
    return model, tok, [s for s, _ in test_pairs[:256]], f"{profile} translator, {source}"


def bench_decoding(device: torch.device, *, quick: bool, log: Callable[[str], None] = print) -> dict:
    """Seconds to translate a fixed set of sentences greedily and with beam 4, with and without
    the key/value cache (same model, same process, alternating rounds, fastest round), whether
    the outputs are identical, and the output length from which the cache is faster (decoding
    exactly n tokens, EOS ignored). Transformer week 3."""
    model, tok, sentences, source = decoding_model(quick, log)
    model.to(device).eval()
    rounds = 2 if quick else 3
    out: dict[str, Any] = {"model": source, "sentences": len(sentences),
                           "size": {"d_model": model.d_model, "layers": len(model.decoder),
                                    "vocab": model.generator.out_features}}
    for name, beam in (("greedy", 1), ("beam4", 4)):
        outputs: dict[bool, list[str]] = {}

        def run(cache: bool, beam=beam, outputs=outputs):
            outputs[cache] = translate(model, tok, sentences, device=device, beam_size=beam,
                                       use_cache=cache)

        t = interleaved_times({"uncached": lambda: run(False), "cached": lambda: run(True)}, device,
                              warmup=0, rounds=rounds, steps_per_round=1)
        out[name] = {"uncached_s": round(min(t["uncached"]), 5), "cached_s": round(min(t["cached"]), 5),
                     "ratio": round(min(t["uncached"]) / min(t["cached"]), 2),
                     "identical": outputs[True] == outputs[False],
                     "mean_output_tokens": round(sum(len(tok.encode(x)) + 1 for x in outputs[True])
                                                 / len(sentences), 1)}
    # cost against output length: exactly n steps for a batch of sentences (EOS never matches)
    src = source_batch(tok, sentences[:4 if quick else 32], model.tgt_embed.max_len).to(device)
    sweep: dict[str, list[dict]] = {"greedy": [], "beam4": []}

    def decode(kind: str, cache: bool, extra: int):
        if kind == "greedy":
            return greedy_decode(model, src, 1, -1, max_extra=extra, use_cache=cache)
        return beam_search(model, src, 1, -1, beam_size=4, max_extra=extra, use_cache=cache)

    for n in ((1, 4) if quick else (1, 2, 4, 8, 16, 32, 64)):
        steps = {f"{kind} {c}": functools.partial(decode, kind, c == "cached", n - src.size(1))
                 for kind in sweep for c in ("uncached", "cached")}
        t = interleaved_times(steps, device, warmup=0, rounds=rounds, steps_per_round=1)
        for name in sweep:
            sweep[name].append({"tokens": n, "uncached_s": round(min(t[f"{name} uncached"]), 5),
                                "cached_s": round(min(t[f"{name} cached"]), 5)})
    out["by_length"] = {"sentences": src.size(0), **sweep}
    out["pays_off_from_tokens"] = {
        name: next((row["tokens"] for i, row in enumerate(rows)
                    if all(r["cached_s"] < r["uncached_s"] for r in rows[i:])), None)
        for name, rows in sweep.items()}
    return out


# --------------------------------------------------------------------------- report
def _fmt(x, spec="{:,.0f}"):
    return "n/a" if x is None else spec.format(x)


def format_table(result: dict) -> str:
    """The benchmark as a Markdown table (the README's "Speed" section)."""
    dev = result["device_name"]
    head = (f"{dev}, torch {result['torch']}, {result['threads']} threads, "
            f"bench wall time {result['wall_s']:.0f} s")
    rows = ["| benchmark | naive / plain | optimized | ratio | notes |", "|---|---|---|---|---|"]
    if "transformer" in result:
        rows += _training_rows(result)
    if "decoding" in result:
        k = result["decoding"]
        pays = k["pays_off_from_tokens"]
        for name, label in (("greedy", "greedy"), ("beam4", "beam 4")):
            r = k[name]
            rows.append(
                f"| Decoding {k['sentences']} sentences, {label}, s (uncached / key-value cache; "
                f"d_model {k['size']['d_model']}, {k['size']['layers']} decoder layers) | "
                f"{r['uncached_s']:.2f} | {r['cached_s']:.2f} | {r['ratio']:.2f}x | identical "
                f"outputs: {'yes' if r['identical'] else 'NO'}; {r['mean_output_tokens']} tokens per "
                f"output; the cache pays off from {pays[name] if pays[name] else 'no tested'} "
                f"output tokens |")
    return head + "\n\n" + "\n".join(rows)


def _training_rows(result: dict) -> list[str]:
    t, g, d = result["transformer"], result["dcgan"], result["data"]
    mfu = lambda r: ("n/a" if r["mfu"] is None  # noqa: E731
                     else f"{100 * r['mfu']:.1f} % (6ND: {100 * r['mfu_6nd']:.1f} %)")
    mem = lambda r: _fmt(r["peak_mem_mb"], "{:,.0f} MB")  # noqa: E731
    ts = t["size"]
    rows = [
        f"| Transformer step, tokens/s (d_model {ts['d_model']}, {ts['layers']} layers, vocab "
        f"{ts['vocab']:,}, {ts['batch']}x{ts['src_len']}+{ts['tgt_len']} tokens) | "
        f"{_fmt(t['naive']['tokens_per_s'])} | {_fmt(t['optimized']['tokens_per_s'])} | "
        f"{t['ratio']:.2f}x | optimized: SDPA, {t['recipe']['amp']}, fused Adam "
        f"{t['recipe']['fused_adam']}, compile {t['recipe']['compile']} |",
        f"| Transformer MFU | {mfu(t['naive'])} | {mfu(t['optimized'])} | | "
        + (f"against {result['peak_tflops']} TFLOPS dense {result['peak_dtype']} |"
         if result["peak_tflops"] else "no peak figure for this device |"),
        f"| Transformer peak memory | {mem(t['naive'])} | {mem(t['optimized'])} | | |",
        f"| DCGAN step, images/s ({g['size']['image']}x{g['size']['image']}, ngf=ndf="
        f"{g['size']['ngf_ndf']}, batch {g['size']['batch']}) | {_fmt(g['plain']['images_per_s'])} | "
        f"{_fmt(g['optimized']['images_per_s'])} | {g['ratio']:.2f}x | optimized: channels_last, "
        f"{g['recipe']['amp']}, fused Adam {g['recipe']['fused_adam']}, compile "
        f"{g['recipe']['compile']} |",
        f"| DCGAN peak memory | {mem(g['plain'])} | {mem(g['optimized'])} | | |",
        f"| Translation batcher alone | {_fmt(d['translation']['batches_per_s'], '{:,.1f}')} "
        f"batches/s | {_fmt(d['translation']['tokens_per_s'])} tokens/s | | padding "
        f"{100 * d['translation']['padding_fraction']:.1f} % at {d['translation']['max_tokens']} "
        f"tokens/batch |",
        f"| Image loader alone, in memory | {_fmt(d['images_in_memory']['images_per_s'])} "
        f"images/s | | | batch {d['images_in_memory']['batch']} |",
        f"| Image loader alone, JPEG folder | "
        f"{_fmt(d['images_from_jpeg_folder']['images_per_s'])} images/s | | | "
        f"{d['images_from_jpeg_folder']['workers']} workers, 178x218 -> "
        f"{g['size']['image']}x{g['size']['image']} |",
    ]
    if result["device"] != "cuda":
        rows += ["| Transformer base step on a GPU (d_model 512, 6+6 layers, vocab 37,000) | "
                 "not measured | not measured | | no GPU in this run |",
                 "| DCGAN 64x64 step on a GPU, batch 128 | not measured | not measured | | "
                 "no GPU in this run |"]
    return rows


def run(device: str | torch.device | None = None, *, quick: bool = False,
        compile_model: bool | None = None, amp: bool | None = None, dcgan_amp: bool = False,
        dcgan_compile_mode: str | None = None, workers: int = 0,
        out: str | os.PathLike | None = None, decoding_only: bool = False) -> dict:
    """Run the benchmarks and write the JSON (Transformer week 4b); ``decoding_only``: just the
    decoding rows.

    Defaults per device: on CUDA autocast and ``torch.compile`` are on; on CPU both are off
    (bf16 autocast is usually slower on CPUs without bf16 matrix units, and compiling costs
    minutes on two cores). Returns the result dict; the JSON path is ``result["json"]``.
    """
    start = time.perf_counter()
    device = torch.device(device) if device is not None else (
        torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
    on_gpu = device.type == "cuda"
    compile_model = on_gpu if compile_model is None else compile_model
    amp = on_gpu if amp is None else amp
    name = torch.cuda.get_device_name(device) if on_gpu else (platform.processor() or platform.machine())
    peak = peak_tflops(name) if on_gpu else None
    s = sizes_for(device, quick)
    result: dict[str, Any] = {
        "schema": 1, "device": device.type, "device_name": name,
        "gpu_rows": "measured" if on_gpu else "not measured (no GPU in this run)",
        "torch": torch.__version__, "python": platform.python_version(),
        "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "quick": quick,
        "peak_tflops": None if peak is None else peak[0],
        "peak_dtype": None if peak is None else peak[1],
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    sections = {}
    if not decoding_only:
        _training_benches(result, sections, device, s, compile_model=compile_model, amp=amp, peak=peak,
                          dcgan_amp=dcgan_amp, dcgan_compile_mode=dcgan_compile_mode,
                          workers=workers, quick=quick)
    t0 = time.perf_counter()
    result["decoding"] = bench_decoding(device, quick=quick)
    sections["decoding"] = round(time.perf_counter() - t0, 1)
    result["section_s"] = sections
    result["wall_s"] = round(time.perf_counter() - start, 1)
    path = Path(out) if out is not None else env.runs_dir() / "bench" / (
        f"bench-{device.type}{'-decoding' if decoding_only else ''}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    result["json"] = str(path)
    result["table"] = format_table(result)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _training_benches(result, sections, device, s, *, compile_model, amp, peak, dcgan_amp,
                      dcgan_compile_mode, workers, quick) -> None:
    on_gpu = device.type == "cuda"
    t0 = time.perf_counter()
    result["transformer"] = bench_transformer(device, s, compile_model=compile_model, amp=amp,
                                              peak=peak)
    sections["transformer"], t0 = round(time.perf_counter() - t0, 1), time.perf_counter()
    gc.collect()
    if on_gpu:
        torch.cuda.empty_cache()
    result["dcgan"] = bench_dcgan(device, s, compile_model=compile_model, amp=dcgan_amp,
                                  compile_mode=dcgan_compile_mode)
    sections["dcgan"], t0 = round(time.perf_counter() - t0, 1), time.perf_counter()
    result["data"] = bench_data(s, workers=workers, repeats=2 if quick else 3)
    sections["data"] = round(time.perf_counter() - t0, 1)


def main(argv: list[str] | None = None) -> int:
    """``python tools/bench.py`` / ``make bench`` (week 4b)."""
    p = argparse.ArgumentParser(prog="python tools/bench.py", description=__doc__.split("\n")[0])
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if present)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks the bench runs (tests)")
    p.add_argument("--compile", dest="compile_model", action="store_true", default=None,
                   help="torch.compile the optimized paths (default: on for CUDA, off for CPU)")
    p.add_argument("--no-compile", dest="compile_model", action="store_false")
    p.add_argument("--amp", dest="amp", action="store_true", default=None,
                   help="autocast the optimized Transformer (default: on for CUDA, off for CPU)")
    p.add_argument("--no-amp", dest="amp", action="store_false")
    p.add_argument("--dcgan-amp", action="store_true", help="autocast the optimized DCGAN step")
    p.add_argument("--dcgan-compile-mode", default=None,
                   help="torch.compile mode for DCGAN, e.g. reduce-overhead (CUDA graphs)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers for the JPEG folder")
    p.add_argument("--out", default=None, help="JSON path (default runs/bench/bench-<device>.json)")
    p.add_argument("--decoding-only", action="store_true",
                   help="only the decoding rows (key/value cache vs none)")
    args = p.parse_args(argv)
    result = run(args.device, quick=args.quick, compile_model=args.compile_model, amp=args.amp,
                 dcgan_amp=args.dcgan_amp, dcgan_compile_mode=args.dcgan_compile_mode,
                 workers=args.workers, out=args.out, decoding_only=args.decoding_only)
    print(result["table"])
    if result["device"] != "cuda" and "transformer" in result:
        print("\nGPU rows: not measured (no GPU in this run).")
    print(f"\nwrote {result['json']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
