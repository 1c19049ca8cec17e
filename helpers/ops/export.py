"""ONNX export and parity (week 4f, both tracks).

The translator becomes two graphs, because greedy decoding is a Python loop: the encoder
(``src`` -> ``memory``) and one decoder step (``tgt``, ``memory``, ``src_mask`` -> next-token
``logits``); the DCGAN generator is one graph (``z`` -> images in [-1, 1]). All sizes are
dynamic axes. Export uses the TorchScript-based exporter (``dynamo=False``, offline);
graphs are checked with ``onnx.checker`` and compared with PyTorch
(:func:`translator_parity`, :func:`generator_parity`).
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from helpers.course.files import atomic_write
from helpers.transformer import MultiHeadAttention, Transformer, causal_mask, greedy_decode, padding_mask

OPSET = 17


class ExportError(RuntimeError):
    """A model cannot be exported or an exported file cannot be used; the message says why."""


# --------------------------------------------------------------------------- export wrappers
class TranslatorEncoder(nn.Module):
    """``src -> memory``: the encoder stack of a :class:`~helpers.transformer.Transformer`
    (§3.1) as one exportable module (week 4f)."""

    def __init__(self, model: Transformer):
        super().__init__()
        self.model = model

    def forward(self, src):
        return self.model.encode(src, padding_mask(src, self.model.pad_id))


class TranslatorDecoderStep(nn.Module):
    """``(tgt, memory, src_mask) -> logits`` of the next token after the prefix ``tgt``: one
    step of greedy decoding (§6.1) as one exportable module (week 4f)."""

    def __init__(self, model: Transformer):
        super().__init__()
        self.model = model

    def forward(self, tgt, memory, src_mask):
        tgt_mask = causal_mask(tgt.size(1), tgt.device)
        hidden = self.model.decode(tgt, memory, src_mask, tgt_mask)[:, -1]
        return self.model.generator(hidden)


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
    import io

    import onnx


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
    (one greedy step) into ``out_dir``; every length and the batch size are dynamic (week 4f).
    Returns ``{"encoder": path, "decoder": path}``."""
    out_dir = Path(out_dir)
    m = _exportable(model)
    vocab = m.src_embed.tokens.num_embeddings
    gen = torch.Generator().manual_seed(0)
    src = torch.randint(4, vocab, (2, example_len), generator=gen)
    src[1, -2:] = m.pad_id  # a padded row, so the mask is really used while tracing
    tgt = torch.randint(4, vocab, (2, 3), generator=gen)
    enc = TranslatorEncoder(m)
    with torch.no_grad():
        memory = enc(src)
    src_mask = padding_mask(src, m.pad_id)
    paths = {
        "encoder": _onnx_export(enc, (src,), out_dir / "translator_encoder.onnx", ["src"], ["memory"],
                                {"src": {0: "batch", 1: "src_len"},
                                 "memory": {0: "batch", 1: "src_len"}}),
        "decoder": _onnx_export(TranslatorDecoderStep(m), (tgt, memory, src_mask),
                                out_dir / "translator_decoder.onnx", ["tgt", "memory", "src_mask"],
                                ["logits"], {"tgt": {0: "batch", 1: "tgt_len"},
                                             "memory": {0: "batch", 1: "src_len"},
                                             "src_mask": {0: "batch", 3: "src_len"},
                                             "logits": {0: "batch"}}),
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
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise ExportError(f"no ONNX file at {path}. Fix: export it first "
                          f"(the week 4f notebook, or `python -m helpers.ops.serve --train-smoke`).")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


class OnnxTranslator:
    """Greedy decoding with the two exported graphs on onnxruntime: the same loop, stopping rule
    and padding as :func:`helpers.transformer.greedy_decode` (§6.1; week 4f)."""

    def __init__(self, encoder_path: str | Path, decoder_path: str | Path, *, pad_id: int,
                 max_len: int, threads: int | None = None):
        self.encoder = ort_session(encoder_path, threads)
        self.decoder = ort_session(decoder_path, threads)
        self.pad_id, self.max_len = pad_id, max_len

    def encode(self, src: np.ndarray) -> np.ndarray:
        return self.encoder.run(["memory"], {"src": np.asarray(src, dtype=np.int64)})[0]

    def step(self, tgt: np.ndarray, memory: np.ndarray, src_mask: np.ndarray) -> np.ndarray:
        return self.decoder.run(["logits"], {"tgt": np.asarray(tgt, dtype=np.int64),
                                             "memory": memory, "src_mask": src_mask})[0]

    def greedy_decode(self, src, bos_id: int, eos_id: int, max_extra: int = 50) -> np.ndarray:
        """``[batch, length]`` token ids after BOS, like ``greedy_decode``."""
        src = np.asarray(src, dtype=np.int64)
        src_mask = (src != self.pad_id)[:, None, None, :]
        memory = self.encode(src)
        out = np.full((src.shape[0], 1), bos_id, dtype=np.int64)
        done = np.zeros(src.shape[0], dtype=bool)
        for _ in range(min(src.shape[1] + max_extra, self.max_len - 1)):
            nxt = self.step(out, memory, src_mask).argmax(-1)
            nxt = np.where(done, self.pad_id, nxt)
            out = np.concatenate([out, nxt[:, None]], axis=1)
            done |= nxt == eos_id
            if done.all():
                break
        return out[:, 1:]


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
    from helpers.translation import BOS, EOS, collate

    return collate([(tokenizer.encode(s)[: max_len - 1] + [EOS], [BOS, EOS]) for s in sentences])[0]


def translate_onnx(runner: OnnxTranslator, tokenizer, sentences: Sequence[str], *,
                   batch_size: int = 64) -> list[str]:
    """Greedy translations with onnxruntime, batched like ``helpers.translation.translate``
    with ``beam_size=1`` (week 4f)."""
    from helpers.translation import BOS, EOS

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
    logits_max_abs: float       # decoder-step logits, largest |torch - onnx|
    sentences: int              # sentences decoded greedily by both
    identical: int              # of which the token ids are identical
    mismatches: list[tuple[str, str, str]]  # (source, torch, onnx) for the ones that differ

    def to_dict(self) -> dict[str, Any]:
        return {"memory_max_abs": self.memory_max_abs, "logits_max_abs": self.logits_max_abs,
                "sentences": self.sentences, "identical": self.identical,
                "mismatches": [list(m) for m in self.mismatches[:5]]}


@torch.no_grad()
def translator_parity(model: Transformer, runner: OnnxTranslator, tokenizer,
                      sentences: Sequence[str], *, batch_size: int = 32) -> TranslatorParity:
    """Compare the PyTorch translator with its ONNX export on ``sentences``: the largest
    absolute difference of the encoder output and of the decoder's next-token logits (with
    teacher-forced prefixes), and whether greedy decoding gives identical ids (week 4f)."""
    from helpers.translation import BOS, EOS

    model = model.cpu().eval()
    mem_err = logit_err = 0.0
    identical, mismatches = 0, []
    for start in range(0, len(sentences), batch_size):
        chunk = list(sentences[start:start + batch_size])
        src = source_batch(tokenizer, chunk, runner.max_len)
        src_mask = padding_mask(src, model.pad_id)
        memory = model.encode(src, src_mask)
        ort_memory = runner.encode(src.numpy())
        mem_err = max(mem_err, float(np.abs(memory.numpy() - ort_memory).max()))
        ids = greedy_decode(model, src, BOS, EOS)
        prefix = torch.cat([torch.full((src.size(0), 1), BOS), ids[:, :-1]], 1) if ids.size(1) > 1 \
            else torch.full((src.size(0), 1), BOS)
        logits = model.generator(model.decode(prefix, memory, src_mask,
                                              causal_mask(prefix.size(1)))[:, -1])
        ort_logits = runner.step(prefix.numpy(), ort_memory, src_mask.numpy())
        logit_err = max(logit_err, float(np.abs(logits.numpy() - ort_logits).max()))
        ort_ids = runner.greedy_decode(src.numpy(), BOS, EOS)
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
