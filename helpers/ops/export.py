"""ONNX export and parity (week 4f, both tracks).

The translator becomes two graphs, because greedy decoding is a Python loop: the encoder
(``src`` -> ``memory`` and every decoder layer's encoder-decoder keys/values, ``cross``) and
one *cached* decoder step (``token``, ``past``, ``cross``, ``src_mask`` -> next-token ``logits``
and ``present`` = ``past`` plus this step's self-attention keys/values: week 3's key/value
cache, so each step costs the same whatever the length); the DCGAN generator is one graph
(``z`` -> images in [-1, 1]). All sizes are dynamic axes. Export uses the TorchScript-based
exporter (``dynamo=False``, offline); graphs are checked with ``onnx.checker`` and compared
with PyTorch (:func:`translator_parity`, :func:`generator_parity`).
"""

from __future__ import annotations

import copy
import io
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from helpers.runtime.files import atomic_write
from helpers.transformer import MultiHeadAttention, Transformer, greedy_decode, padding_mask
from helpers.translation import BOS, EOS, collate

OPSET = 17


class ExportError(RuntimeError):
    """A model cannot be exported or an exported file cannot be used; the message says why."""


# --------------------------------------------------------------------------- export wrappers
class TranslatorEncoder(nn.Module):
    """``src -> (memory, cross)``: the encoder stack of a :class:`~helpers.transformer.Transformer`
    (§3.1) and, for the decoding cache, every decoder layer's encoder-decoder keys and values
    ``cross [layers, 2, batch, heads, src_len, d_k]`` (computed once per sentence; week 4f)."""

    def __init__(self, model: Transformer):
        super().__init__()
        self.model = model

    def forward(self, src):
        memory = self.model.encode(src, padding_mask(src, self.model.pad_id))
        cross = [torch.stack(c["cross"]) for c in self.model.init_cache(memory)]
        return memory, torch.stack(cross)


class TranslatorDecoderStep(nn.Module):
    """``(token, past, cross, src_mask) -> (logits, present)``: one step of greedy decoding
    (§6.1) with week 3's key/value cache, as one exportable module (week 4f). ``past`` holds
    every decoder layer's self-attention keys and values so far, ``[layers, 2, batch, heads,
    steps, d_k]`` (``steps`` = 0 at the first step); ``present`` adds this step's."""

    def __init__(self, model: Transformer):
        super().__init__()
        self.model = model

    def forward(self, token, past, cross, src_mask):
        cache = [{"self": (past[i, 0], past[i, 1]), "cross": (cross[i, 0], cross[i, 1])}
                 for i in range(past.size(0))]
        logits = self.model.decode_step(token, past.size(4), cache, src_mask)
        return logits, torch.stack([torch.stack(c["self"]) for c in cache])


def _exportable(model: nn.Module) -> nn.Module:
    """A CPU, eval-mode copy; attention uses the explicit Eq. 1 path (same numbers as the fused
    kernel, and every op of it has a plain ONNX equivalent)."""
    model = copy.deepcopy(model).cpu().eval()
    for m in model.modules():
        if isinstance(m, MultiHeadAttention):
            m.fast = False
    return model


def _onnx_export(module: nn.Module, args: tuple, path: Path, input_names: Sequence[str],
                 output_names: Sequence[str], dynamic_axes: Mapping[str, Mapping[int, str]]) -> Path:
    """Export in memory, check the graph, then write it all-or-nothing (as ``atomic_save`` does)."""
    import onnx  # noqa: PLC0415 - the [deploy] extra, loaded only to export

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and "legacy exporter" notices
        with torch.no_grad():
            torch.onnx.export(module, args, buf, dynamo=False, opset_version=OPSET,
                              input_names=list(input_names), output_names=list(output_names),
                              dynamic_axes={k: dict(v) for k, v in dynamic_axes.items()},
                              do_constant_folding=True)
    try:
        onnx.checker.check_model(onnx.load_model_from_string(buf.getvalue()))
    except Exception as exc:
        raise ExportError(f"the exported graph for {Path(path).name} is not valid ONNX: {exc}") from exc
    return atomic_write(Path(path), lambda f: f.write(buf.getvalue()))


def export_translator(model: Transformer, out_dir: str | Path, *, example_len: int = 7) -> dict[str, Path]:
    """Export the translator as ``translator_encoder.onnx`` and ``translator_decoder.onnx``
    (one cached greedy step) into ``out_dir``; the batch size, the source length and the
    number of cached steps are dynamic (week 4f). Returns ``{"encoder": path, "decoder": path}``."""
    out_dir = Path(out_dir)
    m = _exportable(model)
    vocab = m.src_embed.tokens.num_embeddings
    gen = torch.Generator().manual_seed(0)
    src = torch.randint(4, vocab, (2, example_len), generator=gen)
    src[1, -2:] = m.pad_id  # a padded row, so the mask is really used while tracing
    enc = TranslatorEncoder(m)
    with torch.no_grad():
        _, cross = enc(src)
        past = torch.randn(cross.shape[:4] + (3, cross.size(5)), generator=gen)  # 3 steps so far
    token = torch.randint(4, vocab, (2,), generator=gen)
    src_mask = padding_mask(src, m.pad_id)
    cache_axes = {2: "batch", 4: "steps"}
    paths = {
        "encoder": _onnx_export(enc, (src,), out_dir / "translator_encoder.onnx", ["src"],
                                ["memory", "cross"],
                                {"src": {0: "batch", 1: "src_len"}, "memory": {0: "batch", 1: "src_len"},
                                 "cross": {2: "batch", 4: "src_len"}}),
        "decoder": _onnx_export(TranslatorDecoderStep(m), (token, past, cross, src_mask),
                                out_dir / "translator_decoder.onnx",
                                ["token", "past", "cross", "src_mask"], ["logits", "present"],
                                {"token": {0: "batch"}, "past": cache_axes,
                                 "cross": {2: "batch", 4: "src_len"},
                                 "src_mask": {0: "batch", 3: "src_len"},
                                 "logits": {0: "batch"}, "present": cache_axes}),
    }
    return paths


def export_generator(G: nn.Module, out_dir: str | Path) -> Path:
    """Export the DCGAN generator (eval mode: BatchNorm uses its running statistics) as
    ``generator.onnx``: ``z [batch, nz] -> images [batch, nc, size, size]`` (week 4f)."""
    g = _exportable(G)
    z = torch.randn(2, g.nz, generator=torch.Generator().manual_seed(0))
    return _onnx_export(g, (z,), Path(out_dir) / "generator.onnx", ["z"], ["images"],
                        {"z": {0: "batch"}, "images": {0: "batch"}})


# --------------------------------------------------------------------------- onnxruntime
def ort_session(path: str | Path, threads: int | None = None):
    """An ``onnxruntime.InferenceSession`` on the CPU (week 4f). ``threads`` defaults to
    PyTorch's intra-op thread count, so latency comparisons are fair."""
    import onnxruntime as ort  # noqa: PLC0415 - the [deploy] extra, loaded only to run an export

    path = Path(path)
    if not path.is_file():
        raise ExportError(f"no ONNX file at {path}. Fix: export it first "
                          f"(the week 4f notebook, or `python -m helpers.ops.serve --train-smoke`).")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


class StepTranslator:
    """Greedy decoding over two pieces, ``encode(src) -> (memory, cross)`` and the cached
    ``step(token, past, cross, src_mask) -> (logits, present)``, on NumPy arrays: the same
    loop, stopping rule and padding as :func:`helpers.transformer.greedy_decode` (§6.1; week 4f).
    :class:`OnnxTranslator` runs the exported graphs, :class:`TorchTranslator` the modules."""

    pad_id: int
    max_len: int

    def greedy_decode(self, src, bos_id: int, eos_id: int, max_extra: int = 50,
                      deadline: float | None = None) -> np.ndarray:
        """``[batch, length]`` token ids after BOS, like ``greedy_decode``. ``deadline``
        (a ``time.monotonic()`` value): raise ``TimeoutError`` once it has passed."""
        src = np.asarray(src, dtype=np.int64)
        src_mask = (src != self.pad_id)[:, None, None, :]
        _, cross = self.encode(src)
        past = np.zeros(cross.shape[:4] + (0, cross.shape[5]), dtype=cross.dtype)  # no steps yet
        token = np.full(src.shape[0], bos_id, dtype=np.int64)
        done = np.zeros(src.shape[0], dtype=bool)
        out = []
        for _ in range(min(src.shape[1] + max_extra, self.max_len - 1)):
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"decoding stopped after {len(out)} tokens: time budget used up")
            logits, past = self.step(token, past, cross, src_mask)
            token = np.where(done, self.pad_id, logits.argmax(-1))
            out.append(token)
            done |= token == eos_id
            if done.all():
                break
        return np.stack(out, axis=1) if out else np.zeros((src.shape[0], 0), dtype=np.int64)


class OnnxTranslator(StepTranslator):
    """The two exported translator graphs on onnxruntime (week 4f)."""

    def __init__(self, encoder_path: str | Path, decoder_path: str | Path, *, pad_id: int,
                 max_len: int, threads: int | None = None):
        self.encoder = ort_session(encoder_path, threads)
        self.decoder = ort_session(decoder_path, threads)
        self.pad_id, self.max_len = pad_id, max_len

    def encode(self, src: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        memory, cross = self.encoder.run(["memory", "cross"], {"src": np.asarray(src, dtype=np.int64)})
        return memory, cross

    def step(self, token, past, cross, src_mask) -> tuple[np.ndarray, np.ndarray]:
        logits, present = self.decoder.run(["logits", "present"], {
            "token": np.asarray(token, dtype=np.int64), "past": past, "cross": cross,
            "src_mask": src_mask})
        return logits, present


class TorchTranslator(StepTranslator):
    """The same two pieces in PyTorch (the modules that :func:`export_translator` exports),
    so both backends of the demo server share one decoding loop (week 4f)."""

    def __init__(self, model: Transformer):
        self.model = model.cpu().eval()
        self.encoder, self.decoder = TranslatorEncoder(self.model), TranslatorDecoderStep(self.model)
        self.pad_id, self.max_len = model.pad_id, model.tgt_embed.max_len

    @torch.no_grad()
    def encode(self, src):
        memory, cross = self.encoder(torch.as_tensor(np.asarray(src, dtype=np.int64)))
        return memory.numpy(), cross.numpy()

    @torch.no_grad()
    def step(self, token, past, cross, src_mask):
        logits, present = self.decoder(*(torch.from_numpy(np.asarray(a)) for a in (token, past, cross, src_mask)))
        return logits.numpy(), present.numpy()


class OnnxGenerator:
    """The exported DCGAN generator on onnxruntime: ``z -> images`` in [-1, 1] (week 4f)."""

    def __init__(self, path: str | Path, threads: int | None = None):
        self.session = ort_session(path, threads)
        self.nz = int(self.session.get_inputs()[0].shape[1])

    def __call__(self, z) -> np.ndarray:
        z = z.numpy() if isinstance(z, torch.Tensor) else z
        return self.session.run(["images"], {"z": np.asarray(z, dtype=np.float32)})[0]


# --------------------------------------------------------------------------- parity
def source_batch(tokenizer, sentences: Sequence[str], max_len: int) -> torch.Tensor:
    """``[batch, src_len]`` source ids (``... </s>``, padded), as the translator reads them
    (week 4f; the same encoding as ``helpers.translation.translate``)."""
    return collate([(tokenizer.encode(s)[: max_len - 1] + [EOS], [BOS, EOS]) for s in sentences])[0]


def translate_onnx(runner: StepTranslator, tokenizer, sentences: Sequence[str], *,
                   batch_size: int = 64) -> list[str]:
    """Greedy translations with onnxruntime, batched like ``helpers.translation.translate``
    with ``beam_size=1`` (week 4f)."""
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    out = [""] * len(sentences)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        src = source_batch(tokenizer, [sentences[i] for i in idx], runner.max_len).numpy()
        for i, seq in zip(idx, runner.greedy_decode(src, BOS, EOS).tolist()):
            out[i] = tokenizer.decode(seq)
    return out


@dataclass
class TranslatorParity:
    """How closely the ONNX translator reproduces PyTorch (week 4f)."""

    memory_max_abs: float       # encoder output, largest |torch - onnx|
    logits_max_abs: float       # cached decoder-step logits, largest |torch - onnx|
    sentences: int              # sentences decoded greedily by both
    identical: int              # of which the token ids are identical
    mismatches: list[tuple[str, str, str]]  # (source, torch, onnx) for the ones that differ

    def to_dict(self) -> dict[str, Any]:
        return {"memory_max_abs": self.memory_max_abs, "logits_max_abs": self.logits_max_abs,
                "sentences": self.sentences, "identical": self.identical,
                "mismatches": [list(m) for m in self.mismatches[:5]]}


@torch.no_grad()
def translator_parity(model: Transformer, runner: StepTranslator, tokenizer,
                      sentences: Sequence[str], *, batch_size: int = 32) -> TranslatorParity:
    """Compare the PyTorch translator with its ONNX export on ``sentences``: the largest
    absolute difference of the encoder output and of the next-token logits at every step of
    PyTorch's greedy translation (both runtimes fed the same tokens and their own caches), and
    whether greedy decoding gives identical ids (week 4f)."""
    model = model.cpu().eval()
    reference = TorchTranslator(model)
    mem_err = logit_err = 0.0
    identical, mismatches = 0, []
    for start in range(0, len(sentences), batch_size):
        chunk = list(sentences[start:start + batch_size])
        src = source_batch(tokenizer, chunk, runner.max_len).numpy()
        src_mask = (src != model.pad_id)[:, None, None, :]
        (memory, cross), (ort_memory, ort_cross) = reference.encode(src), runner.encode(src)
        mem_err = max(mem_err, float(np.abs(memory - ort_memory).max()))
        ids = greedy_decode(model, torch.from_numpy(src), BOS, EOS).numpy()
        past = ort_past = np.zeros(cross.shape[:4] + (0, cross.shape[5]), dtype=np.float32)
        token = np.full(src.shape[0], BOS, dtype=np.int64)
        for t in range(ids.shape[1]):  # teacher-forced along PyTorch's translation
            logits, past = reference.step(token, past, cross, src_mask)
            ort_logits, ort_past = runner.step(token, ort_past, ort_cross, src_mask)
            logit_err = max(logit_err, float(np.abs(logits - ort_logits).max()))
            token = ids[:, t]
        ort_ids = runner.greedy_decode(src, BOS, EOS)
        for s, a, b in zip(chunk, ids.tolist(), ort_ids.tolist()):
            a, b = _strip(a, model.pad_id), _strip(b, model.pad_id)
            if a == b:
                identical += 1
            else:
                mismatches.append((s, tokenizer.decode(a), tokenizer.decode(b)))
    return TranslatorParity(mem_err, logit_err, len(sentences), identical, mismatches)


def _strip(ids: list[int], pad_id: int) -> list[int]:
    while ids and ids[-1] == pad_id:
        ids = ids[:-1]
    return ids


@torch.no_grad()
def generator_parity(G: nn.Module, runner: OnnxGenerator, *, n: int = 16, seed: int = 0) -> float:
    """Largest absolute pixel difference between PyTorch's and onnxruntime's images for ``n``
    random latent vectors (images in [-1, 1]; week 4f)."""
    z = torch.randn(n, runner.nz, generator=torch.Generator().manual_seed(seed))
    return float(np.abs(G.cpu().eval()(z).numpy() - runner(z)).max())


# --------------------------------------------------------------------------- latency
def median_ms(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in milliseconds after ``warmup`` untimed calls (week 4f)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))
