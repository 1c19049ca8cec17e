"""Translation with the Transformer: subword vocabulary, token-count batches, the training
loop, decoding and BLEU (Transformer track, week 3; reused in week 4).

    data = prepare_translation(pairs_by_split, vocab_size=8000)
    model = Transformer(data.tokenizer.vocab_size, d_model=..., pad_id=PAD)
    history = train_translation(model, data, cfg, device=device, checkpoint_path=path)
    model.load_state_dict(average_checkpoints(snapshot_paths(path)[-5:]))  # §6.1
    hyps = translate(model, data.tokenizer, sources, device=device, beam_size=4)
    bleu = corpus_bleu(hyps, references)
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import sacrebleu
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from helpers.runtime import distributed, env
from helpers.runtime.failures import explain_out_of_memory
from helpers.runtime.files import atomic_write_text, checksum_status
from helpers.runtime.history import History
from helpers.runtime.run import ResumableRun, architecture, run_settings
from helpers.transformer import (
    Transformer,
    beam_search,
    greedy_decode,
    label_smoothed_loss,
    make_scheduler,
    paper_adam,
)

SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")
PAD, BOS, EOS, UNK = 0, 1, 2, 3
Pairs = list[tuple[str, str]]


# --------------------------------------------------------------------------- subwords
class SubwordTokenizer:
    """A byte-pair-encoding vocabulary shared by source and target (the paper: "a shared
    source-target vocabulary of about 37000 tokens", §5.1), built with HF ``tokenizers``.

    Whitespace is kept as a visible marker (Metaspace), so ``decode(encode(s)) == s`` and
    BLEU is computed on normal, detokenized text.
    """

    def __init__(self, tokenizer):
        self._tok = tokenizer
        for i, special in enumerate(SPECIALS):
            if tokenizer.token_to_id(special) != i:
                raise ValueError(f"tokenizer must have {special} at id {i}")

    @classmethod
    def train(cls, texts: Sequence[str], vocab_size: int) -> SubwordTokenizer:
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.normalizer = normalizers.NFKC()
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS),
                                      min_frequency=2, show_progress=False)
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok)

    @classmethod
    def load(cls, path: str | Path) -> SubwordTokenizer:
        return cls(Tokenizer.from_file(str(path)))

    def save(self, path: str | Path) -> Path:
        return atomic_write_text(self._tok.to_str(), path)

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text).ids

    def tokens(self, text: str) -> list[str]:
        return self._tok.encode(text).tokens

    def decode(self, ids: Sequence[int]) -> str:
        ids = list(ids)
        if EOS in ids:
            ids = ids[: ids.index(EOS)]
        return self._tok.decode([i for i in ids if i not in (PAD, BOS)])


def build_tokenizer(pairs: Pairs, vocab_size: int, name: str = "translation",
                    cache: bool = True) -> SubwordTokenizer:
    """Train the shared BPE vocabulary on the training pairs, or load it from the cache
    (keyed by the text and the vocabulary size, so a change retrains it)."""
    texts = [s for pair in pairs for s in pair]
    key = hashlib.sha256(("\n".join(texts) + f"|{vocab_size}").encode()).hexdigest()[:16]
    path = env.cache_dir() / "tokenizers" / f"{name}-{vocab_size}-{key}.json"
    if cache and path.is_file():
        return SubwordTokenizer.load(path)
    tok = SubwordTokenizer.train(texts, vocab_size)
    if cache:
        tok.save(path)
    return tok


# --------------------------------------------------------------------------- batches
def token_batches(lengths: Sequence[tuple[int, int]], max_tokens: int, *, shuffle: bool = True,
                  seed: int = 0) -> list[list[int]]:
    """Group example indices into batches of about ``max_tokens`` tokens per side (the paper:
    "approximately 25000 source tokens and 25000 target tokens", §5.1).

    Examples are sorted by length so each batch holds similar lengths (little padding);
    with ``shuffle`` the order inside equal lengths and the order of batches are random.
    """
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    if shuffle:
        rng.shuffle(order)
    order.sort(key=lambda i: (lengths[i][1], lengths[i][0]))
    batches, current, longest = [], [], 0
    for i in order:
        size = max(lengths[i])
        if current and max(longest, size) * (len(current) + 1) > max_tokens:
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, size)
    if current:
        batches.append(current)
    if shuffle:
        rng.shuffle(batches)
    return batches


def collate(examples: Sequence[tuple[list[int], list[int]]], pad_id: int = PAD):
    """``(src [B, S], tgt_in [B, T], tgt_out [B, T])``: the decoder reads ``<s> y1 .. yn`` and
    predicts ``y1 .. yn </s>`` (teacher forcing)."""
    src_len = max(len(s) for s, _ in examples)
    tgt_len = max(len(t) for _, t in examples) - 1
    src = torch.full((len(examples), src_len), pad_id, dtype=torch.long)
    tgt_in = torch.full((len(examples), tgt_len), pad_id, dtype=torch.long)
    tgt_out = torch.full((len(examples), tgt_len), pad_id, dtype=torch.long)
    for row, (s, t) in enumerate(examples):
        src[row, : len(s)] = torch.tensor(s)
        tgt_in[row, : len(t) - 1] = torch.tensor(t[:-1])
        tgt_out[row, : len(t) - 1] = torch.tensor(t[1:])
    return src, tgt_in, tgt_out


@dataclass
class TranslationData:
    """Text splits, the shared tokenizer, and the encoded examples (source ends with ``</s>``,
    target is ``<s> ... </s>``)."""

    tokenizer: SubwordTokenizer
    splits: dict[str, Pairs]
    encoded: dict[str, list[tuple[list[int], list[int]]]] = field(default_factory=dict)
    max_len: int = 256

    def batches(self, split: str, max_tokens: int, *, shuffle: bool = True, seed: int = 0):
        examples = self.encoded[split]
        index_batches = token_batches([(len(s), len(t)) for s, t in examples], max_tokens,
                                      shuffle=shuffle, seed=seed)
        return [collate([examples[i] for i in batch]) for batch in index_batches]

    def padding_fraction(self, split: str, max_tokens: int) -> float:
        """Share of padding tokens in this split's batches (lower = less wasted compute)."""
        pad = total = 0
        for src, tgt_in, _ in self.batches(split, max_tokens, shuffle=False):
            pad += int((src == PAD).sum() + (tgt_in == PAD).sum())
            total += src.numel() + tgt_in.numel()
        return pad / max(total, 1)


def prepare_translation(splits: Mapping[str, Pairs], vocab_size: int, *, max_len: int = 256,
                        name: str = "translation") -> TranslationData:
    """Tokenize every split with a vocabulary trained on ``splits["train"]``. Training pairs
    longer than ``max_len`` tokens are dropped; other splits are truncated, never dropped."""
    tok = build_tokenizer(splits["train"], vocab_size, name)
    data = TranslationData(tok, {k: list(v) for k, v in splits.items()}, max_len=max_len)
    for split, pairs in splits.items():
        encoded = []
        for src, tgt in pairs:
            s = tok.encode(src) + [EOS]
            t = [BOS] + tok.encode(tgt) + [EOS]
            if split == "train" and (len(s) > max_len or len(t) > max_len):
                continue
            encoded.append((s[:max_len - 1] + [EOS] if len(s) > max_len else s,
                            t[:max_len - 1] + [EOS] if len(t) > max_len else t))
        data.encoded[split] = encoded
    return data


# --------------------------------------------------------------------------- training
def build_model(cfg, vocab_size: int) -> Transformer:
    """The Transformer sized by a ``translation`` config (week 3)."""
    return Transformer(vocab_size, d_model=cfg.d_model, n_heads=cfg.n_heads, d_ff=cfg.d_ff,
                       n_layers=cfg.n_layers, dropout=cfg.dropout, max_len=cfg.max_len,
                       positional=cfg.positional, pad_id=PAD, fast=cfg.fast_attention)


def shard_batch(ctx: distributed.Context, src: torch.Tensor, tgt_in: torch.Tensor,
                tgt_out: torch.Tensor, pad_id: int = PAD):
    """This rank's rows of a global token batch under torchrun (week 4b), ``(src, tgt_in,
    tgt_out, share)``: every process builds the same global batch and keeps its own rows.

    Rows ``rank, rank + world_size, ...`` (sentences of similar length end up on every
    rank), padding columns no row of the shard needs are dropped, and ``share`` =
    ``local target tokens * world_size / global target tokens`` is the factor for
    ``ctx.scale_loss``, so the averaged gradient is the gradient of the global batch's mean
    token loss. Single process: the batch unchanged and ``share`` 1.0.
    """
    if not ctx.enabled:
        return src, tgt_in, tgt_out, 1.0
    if src.size(0) < ctx.world_size:
        raise ValueError(f"a batch of {src.size(0)} sentences cannot be split over "
                         f"{ctx.world_size} processes. Fix: raise max_tokens or use fewer "
                         f"processes (--nproc_per_node).")
    n_global = int((tgt_out != pad_id).sum())
    rows = slice(ctx.rank, None, ctx.world_size)
    src, tgt_in, tgt_out = src[rows], tgt_in[rows], tgt_out[rows]
    src_len = int((src != pad_id).sum(1).max())
    tgt_len = int((tgt_out != pad_id).sum(1).max())
    src, tgt_in, tgt_out = src[:, :src_len], tgt_in[:, :tgt_len], tgt_out[:, :tgt_len]
    share = int((tgt_out != pad_id).sum()) * ctx.world_size / max(n_global, 1)
    return src, tgt_in, tgt_out, share


@torch.no_grad()
def evaluate_loss(model: Transformer, batches, device, smoothing: float = 0.0) -> float:
    """Mean per-token cross-entropy over batches (no label smoothing by default)."""
    model.eval()
    total = tokens = 0.0
    for src, tgt_in, tgt_out in batches:
        src, tgt_in, tgt_out = src.to(device), tgt_in.to(device), tgt_out.to(device)
        n = int((tgt_out != PAD).sum())
        total += float(label_smoothed_loss(model(src, tgt_in), tgt_out, smoothing, PAD)) * n
        tokens += n
    return total / max(tokens, 1)


ARCHITECTURE_KEYS = ("vocab_size", "d_model", "n_heads", "d_ff", "n_layers", "positional", "max_len")


@explain_out_of_memory("max_tokens", "translation")
def train_translation(model: Transformer, data: TranslationData, cfg, *, device,
                      checkpoint_path=None, history: History | None = None, writer=None,
                      stop_after: int | None = None, amp: env.AmpSettings | None = None) -> History:
    """The training procedure of §5 (week 3): ``cfg.train_steps`` steps on token-count batches
    (§5.1), Adam(0.9, 0.98, 1e-9) with the warmup schedule of Eq. 3 (or ``cfg.schedule``, §5.3),
    label smoothing (§5.4), clipping when ``cfg.clip_norm`` > 0, mixed precision per ``amp``.
    Logs training loss, gradient norm and learning rate every ``cfg.log_every`` steps and the
    validation loss every ``cfg.eval_every`` (also to TensorBoard with a ``SummaryWriter`` as
    ``writer``); under torchrun each rank trains on :func:`shard_batch`. The shape of
    :func:`helpers.dcgan.train_dcgan`: run settings from ``cfg`` (:func:`~helpers.runtime.run.run_settings`:
    resumable with ``checkpoint_path``, keeping ``cfg.average_last`` snapshots for
    :func:`average_checkpoints`, §6.1); returns the :class:`History` (``.optimizers["model"]``).
    """
    ctx = distributed.setup(device)  # a no-op without torchrun
    device = ctx.device
    model.to(device)
    amp = amp or env.amp_settings(device)
    scaler = env.grad_scaler(amp)
    optimizer = paper_adam(model.parameters(), fused=(device.type == "cuda") or None)
    scheduler = make_scheduler(optimizer, cfg.schedule, cfg.d_model, cfg.warmup_steps,
                               cfg.train_steps, cfg.lr_factor)
    run = ResumableRun(checkpoint_path, steps=cfg.train_steps,
                       config=architecture(cfg, vocab_size=data.tokenizer.vocab_size),
                       architecture=ARCHITECTURE_KEYS, model=model, optimizer=optimizer,
                       scheduler=scheduler, scaler=scaler, history=history, stop_after=stop_after,
                       dist=ctx, lr_hint="cfg.lr_factor", amp=amp, **run_settings(cfg, checkpoint_path))
    run.history.optimizers = {"model": optimizer}
    train_model = ctx.wrap(model)  # DistributedDataParallel under torchrun, else the model
    val_batches = data.batches("val", cfg.max_tokens, shuffle=False)
    batches = run.batches(lambda epoch: data.batches("train", cfg.max_tokens, seed=cfg.seed + epoch))
    for step in run:
        src, tgt_in, tgt_out, share = shard_batch(ctx, *next(batches))  # torchrun: this rank's rows
        src, tgt_in, tgt_out = src.to(device), tgt_in.to(device), tgt_out.to(device)
        model.train()
        with env.autocast(amp):
            logits = train_model(src, tgt_in)
        loss = ctx.scale_loss(label_smoothed_loss(logits.float(), tgt_out, cfg.label_smoothing, PAD), share)
        run.check_finite(loss)  # before this step can reach the weights or a checkpoint
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm or float("inf"))
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        if step % cfg.log_every == 0 or step == 1:
            _log(run, writer, step, train_loss=loss, grad_norm=float(grad_norm), lr=scheduler.get_last_lr()[0])
        if step % cfg.eval_every == 0 or step == cfg.train_steps:
            _log(run, writer, step, val_loss=evaluate_loss(model, val_batches, device))
    return run.history


def _log(run: ResumableRun, writer, step: int, **values) -> None:
    """Into the run's history and, on the main process, to TensorBoard (``translation/<name>``)."""
    run.log(step, **values)
    if writer is not None and run.dist.is_main:
        for name in values:
            writer.add_scalar(f"translation/{name}", run.history[name][-1], step)


def average_checkpoints(paths: Sequence[str | Path]) -> dict[str, torch.Tensor]:
    """§6.1: "For the base models, we used a single model obtained by averaging the last 5
    checkpoints, which were written at 10-minute intervals" (week 3).

    ``paths``: weight snapshots (``train_translation(..., keep_last=5)`` keeps them, listed by
    :func:`helpers.runtime.run.snapshot_paths`) or full checkpoints. Returns the element-wise
    mean of their weights, for ``model.load_state_dict``; integer buffers come from the last.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("no checkpoints to average. Fix: train with checkpoint_path= and "
                         "keep_last=5, then pass snapshot_paths(checkpoint_path)[-5:].")
    total: dict[str, torch.Tensor] = {}
    dtypes: dict[str, torch.dtype] = {}
    for path in paths:
        checksum_status(path)  # a flipped byte is refused (CorruptFileError names the file), not averaged in
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state["model"] if isinstance(state.get("model"), Mapping) else state
        if dtypes and set(state) != set(dtypes):
            raise ValueError(f"{path} holds other weights than {paths[0]} (another model). "
                             f"Fix: average checkpoints of one run only.")
        for name, tensor in state.items():
            if name in total and tensor.shape != total[name].shape:
                raise ValueError(f"{path}: {name} has shape {tuple(tensor.shape)}, {paths[0]} "
                                 f"{tuple(total[name].shape)}. Fix: average checkpoints of one run only.")
            dtypes[name] = tensor.dtype
            floating = tensor.is_floating_point()
            total[name] = (total.get(name, 0) + tensor.double()) if floating else tensor.clone()
    return {name: (t / len(paths)).to(dtypes[name]) if dtypes[name].is_floating_point else t
            for name, t in total.items()}


# --------------------------------------------------------------------------- inference
def translate(model: Transformer, tokenizer: SubwordTokenizer, sentences: Sequence[str], *,
              device, beam_size: int = 4, alpha: float = 0.6, batch_size: int = 64,
              max_len: int = 256, use_cache: bool = True) -> list[str]:
    """Translate sentences with beam search (``beam_size > 1``, §6.1) or greedily (1).
    ``use_cache=False`` decodes without the key/value cache (same output, slower)."""
    model.to(device).eval()
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    out: list[str] = [""] * len(sentences)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        encoded = [(tokenizer.encode(sentences[i])[: max_len - 1] + [EOS], [BOS, EOS]) for i in idx]
        src = collate(encoded)[0].to(device)
        if beam_size > 1:
            ids = beam_search(model, src, BOS, EOS, beam_size, alpha, use_cache=use_cache)
        else:
            ids = greedy_decode(model, src, BOS, EOS, use_cache=use_cache).tolist()
        for i, seq in zip(idx, ids):
            out[i] = tokenizer.decode(seq)
    return out


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU with sacreBLEU's defaults: cased, detokenized text, 13a tokenization, so two
    runs scored this way compare. Not the paper's measure: its BLEU was computed on tokenized
    text, as was usual then, and Post (2018, "A Call for Clarity in Reporting BLEU Scores")
    shows that tokenization and reference processing alone move BLEU by up to 1.8 points;
    the paper's test set is also WMT14, not Multi30k."""
    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score)
