"""The Transformer of "Attention Is All You Need" (Vaswani et al., 2017) in one file.

Written in the open in the Transformer track's week 2 (attention) and week 3 (the rest); this
is the tested version the later notebooks import. Section numbers refer to the paper.

Conventions: tensors are batch-first, ``[batch, length, d_model]``. Masks are boolean and
broadcast to ``[batch, heads, query_len, key_len]``; **True means "may attend"** (the same
meaning as ``torch.nn.functional.scaled_dot_product_attention``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


# --------------------------------------------------------------------------- masks (§3.2.3)
def padding_mask(tokens: torch.Tensor, pad_id: int) -> torch.Tensor:
    """``[batch, 1, 1, length]``: True at real tokens, False at padding (week 2)."""
    return (tokens != pad_id)[:, None, None, :]


def causal_mask(length: int, device=None) -> torch.Tensor:
    """``[1, 1, length, length]`` lower triangle: position i sees positions <= i (§3.2.3,
    "prevent leftward information flow in the decoder"; week 2)."""
    return torch.ones(length, length, dtype=torch.bool, device=device).tril()[None, None]


# --------------------------------------------------------------------------- attention (§3.2)
def scaled_dot_product_attention(q, k, v, mask=None, dropout_p: float = 0.0):
    """Eq. 1: ``Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V`` (§3.2.1; week 2).

    Returns ``(output, weights)``; ``mask`` is boolean, True = may attend.
    """
    d_k = q.size(-1)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ v, weights


class MultiHeadAttention(nn.Module):
    """Multi-head attention (§3.2.2; week 2):
    ``MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O`` with
    ``head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)`` and ``d_k = d_v = d_model / h``.

    ``fast=True`` computes Eq. 1 with PyTorch's fused ``scaled_dot_product_attention``
    (same result, less memory; week 4). Set ``keep_attention=True`` to keep the last
    attention weights in ``.attention`` for plots (uses the explicit path).
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, fast: bool = False):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads} "
                             f"(each head gets d_model / n_heads dimensions)")
        self.n_heads, self.d_k = n_heads, d_model // n_heads
        self.w_q = nn.Linear(d_model, d_model)
        self.w_k = nn.Linear(d_model, d_model)
        self.w_v = nn.Linear(d_model, d_model)
        self.w_o = nn.Linear(d_model, d_model)
        self.dropout = dropout
        self.fast = fast
        self.keep_attention = False
        self.attention: torch.Tensor | None = None

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, length, d_model] -> [batch, heads, length, d_k]``."""
        b, n, _ = x.shape
        return x.view(b, n, self.n_heads, self.d_k).transpose(1, 2)

    def merge_heads(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, heads, length, d_k] -> [batch, length, d_model]`` (the Concat)."""
        b, _, n, _ = x.shape
        return x.transpose(1, 2).reshape(b, n, self.n_heads * self.d_k)

    def keys_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x W^K, x W^V)`` split into heads: what the decoding cache keeps (week 3)."""
        return self.split_heads(self.w_k(x)), self.split_heads(self.w_v(x))

    def forward(self, query, key, value, mask=None, kv=None):
        """``kv=(k, v)``: keys and values already projected (the decoding cache); ``key`` and
        ``value`` are then not used."""
        q = self.split_heads(self.w_q(query))
        if kv is None:
            k, v = self.split_heads(self.w_k(key)), self.split_heads(self.w_v(value))
        else:
            k, v = kv
        p = self.dropout if self.training else 0.0
        if self.fast and not self.keep_attention:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        else:
            out, weights = scaled_dot_product_attention(q, k, v, mask, p)
            if self.keep_attention:
                self.attention = weights.detach()
        return self.w_o(self.merge_heads(out))


# --------------------------------------------------------------------------- other sublayers
class PositionwiseFeedForward(nn.Module):
    """Eq. 2: ``FFN(x) = max(0, x W_1 + b_1) W_2 + b_2`` (§3.3; week 3)."""

    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.w_1 = nn.Linear(d_model, d_ff)
        self.w_2 = nn.Linear(d_ff, d_model)

    def forward(self, x):
        return self.w_2(torch.relu(self.w_1(x)))


def sinusoidal_encoding(max_len: int, d_model: int) -> torch.Tensor:
    """§3.5: ``PE(pos, 2i) = sin(pos / 10000^(2i/d_model))``, ``PE(pos, 2i+1) = cos(...)``;
    returns ``[max_len, d_model]`` (week 3)."""
    position = torch.arange(max_len, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    pe = torch.zeros(max_len, d_model)
    pe[:, 0::2] = torch.sin(position * div)
    pe[:, 1::2] = torch.cos(position * div[: d_model // 2])
    return pe


class Embeddings(nn.Module):
    """Token embedding scaled by ``sqrt(d_model)`` (§3.4) plus positional encoding (§3.5),
    followed by dropout (§5.4). ``positional`` is ``"sinusoidal"`` (the paper) or ``"learned"``
    (the paper's Table 3 row (E): "nearly identical results"). Week 3."""

    def __init__(self, vocab_size: int, d_model: int, max_len: int = 512, dropout: float = 0.1,
                 positional: str = "sinusoidal"):
        super().__init__()
        self.d_model = d_model
        self.tokens = nn.Embedding(vocab_size, d_model)
        nn.init.normal_(self.tokens.weight, mean=0.0, std=d_model ** -0.5)
        if positional == "sinusoidal":
            self.register_buffer("pe", sinusoidal_encoding(max_len, d_model), persistent=False)
            self.learned = None
        elif positional == "learned":
            self.learned = nn.Embedding(max_len, d_model)
            nn.init.normal_(self.learned.weight, std=0.02)
        else:
            raise ValueError(f"positional={positional!r}: use 'sinusoidal' or 'learned'")
        self.max_len = max_len
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens, start: int = 0):
        """``start``: the position of the first token (incremental decoding feeds one token at
        a time)."""
        n = start + tokens.size(1)
        if n > self.max_len:
            raise ValueError(f"sequence of {n} tokens exceeds max_len={self.max_len}; raise "
                             f"max_len in the config or truncate the inputs")
        pos = (self.learned.weight if self.learned is not None else self.pe)[start:n]
        return self.dropout(self.tokens(tokens) * math.sqrt(self.d_model) + pos)


class SublayerConnection(nn.Module):
    """``LayerNorm(x + Dropout(Sublayer(x)))``: the residual connection and layer norm around
    every sublayer (§3.1, dropout per §5.4; "post-LN", as in the paper). Week 3."""

    def __init__(self, d_model: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, sublayer):
        return self.norm(x + self.dropout(sublayer(x)))


class EncoderLayer(nn.Module):
    """Self-attention then feed-forward, each wrapped in a SublayerConnection (§3.1; week 3)."""

    def __init__(self, d_model, n_heads, d_ff, dropout=0.1, attn_dropout=0.0, fast=False):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, n_heads, attn_dropout, fast)
        self.ffn = PositionwiseFeedForward(d_model, d_ff)
        self.sub1 = SublayerConnection(d_model, dropout)
        self.sub2 = SublayerConnection(d_model, dropout)

    def forward(self, x, mask):
        x = self.sub1(x, lambda y: self.self_attn(y, y, y, mask))
        return self.sub2(x, self.ffn)


class DecoderLayer(nn.Module):
    """Masked self-attention, encoder-decoder attention over the encoder output ("memory"),
    then feed-forward (§3.1, §3.2.3; week 3)."""

    def __init__(self, d_model, n_heads, d_ff, dropout=0.1, attn_dropout=0.0, fast=False):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, n_heads, attn_dropout, fast)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, attn_dropout, fast)
        self.ffn = PositionwiseFeedForward(d_model, d_ff)
        self.sub1 = SublayerConnection(d_model, dropout)
        self.sub2 = SublayerConnection(d_model, dropout)
        self.sub3 = SublayerConnection(d_model, dropout)

    def forward(self, x, memory, src_mask, tgt_mask):
        x = self.sub1(x, lambda y: self.self_attn(y, y, y, tgt_mask))
        x = self.sub2(x, lambda y: self.cross_attn(y, memory, memory, src_mask))
        return self.sub3(x, self.ffn)

    def step(self, x, cache: dict, src_mask):
        """Incremental decoding (week 3): ``x [batch, 1, d_model]`` is the newest position only.
        Its self-attention keys and values are appended to ``cache["self"]``; those of earlier
        positions are reused, since with the causal mask nothing later can change them. The
        encoder-decoder attention reads ``cache["cross"]``, computed once from the memory."""
        def self_attention(y):
            k, v = self.self_attn.keys_values(y)
            if cache["self"] is not None:
                k = torch.cat([cache["self"][0], k], dim=2)
                v = torch.cat([cache["self"][1], v], dim=2)
            cache["self"] = (k, v)
            return self.self_attn(y, None, None, kv=(k, v))  # every cached position is in the past

        x = self.sub1(x, self_attention)
        x = self.sub2(x, lambda y: self.cross_attn(y, None, None, src_mask, kv=cache["cross"]))
        return self.sub3(x, self.ffn)


# --------------------------------------------------------------------------- the model
class Transformer(nn.Module):
    """The encoder-decoder of Figure 1 (§3; week 3). Defaults are the paper's base model:
    N=6, d_model=512, d_ff=2048, h=8, P_drop=0.1.

    With ``share_embeddings=True`` (one shared source/target vocabulary) the source embedding,
    the target embedding and the pre-softmax projection share one weight matrix (§3.4).
    """

    def __init__(self, vocab_size: int, tgt_vocab_size: int | None = None, *, d_model: int = 512,
                 n_heads: int = 8, d_ff: int = 2048, n_layers: int = 6,
                 n_decoder_layers: int | None = None, dropout: float = 0.1,
                 attn_dropout: float = 0.0, max_len: int = 512, positional: str = "sinusoidal",
                 share_embeddings: bool = True, pad_id: int = 0, fast: bool = False):
        super().__init__()
        tgt_vocab_size = tgt_vocab_size or vocab_size
        if share_embeddings and tgt_vocab_size != vocab_size:
            raise ValueError("share_embeddings=True needs one shared vocabulary "
                             f"(got {vocab_size} source vs {tgt_vocab_size} target tokens)")
        self.pad_id = pad_id
        self.d_model = d_model
        self.src_embed = Embeddings(vocab_size, d_model, max_len, dropout, positional)
        self.tgt_embed = Embeddings(tgt_vocab_size, d_model, max_len, dropout, positional)
        self.encoder = nn.ModuleList(EncoderLayer(d_model, n_heads, d_ff, dropout, attn_dropout, fast)
                                     for _ in range(n_layers))
        self.decoder = nn.ModuleList(DecoderLayer(d_model, n_heads, d_ff, dropout, attn_dropout, fast)
                                     for _ in range(n_decoder_layers or n_layers))
        self.generator = nn.Linear(d_model, tgt_vocab_size, bias=False)
        for name, p in self.named_parameters():  # Glorot init for the projections
            if p.dim() > 1 and "embed" not in name:
                nn.init.xavier_uniform_(p)
        if share_embeddings:
            self.tgt_embed.tokens.weight = self.src_embed.tokens.weight
            self.generator.weight = self.src_embed.tokens.weight

    def encode(self, src, src_mask):
        x = self.src_embed(src)
        for layer in self.encoder:
            x = layer(x, src_mask)
        return x

    def decode(self, tgt, memory, src_mask, tgt_mask):
        x = self.tgt_embed(tgt)
        for layer in self.decoder:
            x = layer(x, memory, src_mask, tgt_mask)
        return x

    def init_cache(self, memory) -> list[dict]:
        """The key/value cache for incremental decoding, one dict per decoder layer (week 3):
        ``"self"`` (empty until the first step) and ``"cross"``, the encoder-decoder
        attention's keys and values, the same at every step, so computed once here."""
        return [{"self": None, "cross": layer.cross_attn.keys_values(memory)} for layer in self.decoder]

    def decode_step(self, token, position: int, cache: list[dict], src_mask):
        """Logits ``[batch, vocab]`` for the token after ``token [batch]``, which sits at
        ``position``; the decoder runs on this one position and updates ``cache`` (week 3)."""
        x = self.tgt_embed(token[:, None], start=position)
        for layer, layer_cache in zip(self.decoder, cache):
            x = layer.step(x, layer_cache, src_mask)
        return self.generator(x[:, -1])

    def masks(self, src, tgt):
        src_mask = padding_mask(src, self.pad_id)
        tgt_mask = padding_mask(tgt, self.pad_id) & causal_mask(tgt.size(1), tgt.device)
        return src_mask, tgt_mask

    def forward(self, src, tgt):
        """Logits ``[batch, tgt_len, vocab]`` for the next token at every target position."""
        src_mask, tgt_mask = self.masks(src, tgt)
        memory = self.encode(src, src_mask)
        return self.generator(self.decode(tgt, memory, src_mask, tgt_mask))

    def keep_attention(self, on: bool = True) -> None:
        """Keep every layer's attention weights (``layer.self_attn.attention`` ...) for plots."""
        for m in self.modules():
            if isinstance(m, MultiHeadAttention):
                m.keep_attention = on
                if not on:
                    m.attention = None

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


# --------------------------------------------------------------------------- training pieces
def transformer_lr(step: int, d_model: int, warmup: int, factor: float = 1.0) -> float:
    """Eq. 3 (§5.3): ``lrate = d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)`` (week 3).

    ``step`` counts from 1; use with ``LambdaLR`` and a base learning rate of 1.0.
    """
    step = max(step, 1)
    return factor * d_model ** -0.5 * min(step ** -0.5, step * warmup ** -1.5)


def noam_scheduler(optimizer, d_model: int, warmup: int, factor: float = 1.0):
    """``LambdaLR`` for Eq. 3; the optimizer's lr must be 1.0 (week 3)."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: transformer_lr(i + 1, d_model, warmup, factor))


def make_scheduler(optimizer, kind: str, d_model: int, warmup: int, total_steps: int,
                   factor: float = 1.0):
    """Learning-rate schedules compared in week 4b; the optimizer's lr must be 1.0.

    ``"noam"``: Eq. 3 (the paper). ``"none"``: constant at Eq. 3's peak, no warmup.
    ``"cosine"``: linear warmup to the same peak, then cosine decay to 0 at ``total_steps``.
    """
    peak = transformer_lr(warmup, d_model, warmup, factor)
    if kind == "noam":
        return noam_scheduler(optimizer, d_model, warmup, factor)
    if kind == "none":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: peak)
    if kind == "cosine":
        def cosine(i):
            s = i + 1
            if s <= warmup:
                return peak * s / warmup
            progress = min(1.0, (s - warmup) / max(1, total_steps - warmup))
            return peak * 0.5 * (1 + math.cos(math.pi * progress))
        return torch.optim.lr_scheduler.LambdaLR(optimizer, cosine)
    raise ValueError(f"schedule {kind!r}: use 'noam', 'none' or 'cosine'")


def paper_adam(params, lr: float = 1.0, fused: bool | None = None):
    """Adam with beta1=0.9, beta2=0.98, eps=1e-9 (§5.3; week 3)."""
    kwargs = {"fused": fused} if fused is not None else {}
    return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.98), eps=1e-9, **kwargs)


def label_smoothed_loss(logits, target, smoothing: float = 0.1, pad_id: int = 0):
    """Cross-entropy with label smoothing eps_ls=0.1 (§5.4), ignoring padding (week 3).

    PyTorch spreads ``smoothing`` uniformly over all classes; week 3 writes it by hand and
    checks it against this.
    """
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1),
                           ignore_index=pad_id, label_smoothing=smoothing)


def smoothed_loss_floor(smoothing: float, vocab_size: int) -> float:
    """The lowest value :func:`label_smoothed_loss` can take (week 3): the entropy of the
    smoothed target, reached only when the model predicts it exactly. With eps_ls=0.1 and a
    6,000-token vocabulary it is about 1.2 nats, so a training loss of 3 is far from "stuck"."""
    if not 0.0 <= smoothing < 1.0 or vocab_size < 2:
        raise ValueError(f"need 0 <= smoothing < 1 and vocab_size >= 2, got {smoothing}, {vocab_size}")
    if smoothing == 0.0:
        return 0.0
    true, other = 1.0 - smoothing + smoothing / vocab_size, smoothing / vocab_size
    return -(true * math.log(true) + (vocab_size - 1) * other * math.log(other))


# --------------------------------------------------------------------------- decoding (§6.1)
def reorder_cache(cache: list[dict], index: torch.Tensor) -> None:
    """Beam search: keep the cached rows of the beams that were extended (``index`` into the
    batch). The ``"cross"`` entries stay: all beams of a sentence read the same source."""
    for layer_cache in cache:
        k, v = layer_cache["self"]
        layer_cache["self"] = (k.index_select(0, index), v.index_select(0, index))


def next_token_logits(model: Transformer, tokens, memory, src_mask, cache=None):
    """Logits ``[batch, vocab]`` for the token after ``tokens [batch, length]``: with a
    ``cache`` (:meth:`Transformer.init_cache`) the decoder runs on the newest token only,
    without one it runs on the whole prefix again (week 3; the same numbers either way)."""
    if cache is not None:
        return model.decode_step(tokens[:, -1], tokens.size(1) - 1, cache, src_mask)
    tgt_mask = causal_mask(tokens.size(1), tokens.device)
    return model.generator(model.decode(tokens, memory, src_mask, tgt_mask)[:, -1])


@torch.no_grad()
def greedy_decode(model: Transformer, src, bos_id: int, eos_id: int, max_extra: int = 50,
                  use_cache: bool = True):
    """Pick the most likely token at each step until every sentence has emitted EOS or
    ``src_len + max_extra`` tokens (§6.1's maximum output length; week 3).
    Returns ``[batch, length]`` token ids after BOS (padded with ``pad_id`` after EOS).
    ``use_cache=False`` recomputes the whole prefix at every step (same output, slower)."""
    model.eval()
    src_mask = padding_mask(src, model.pad_id)
    memory = model.encode(src, src_mask)
    cache = model.init_cache(memory) if use_cache else None
    out = torch.full((src.size(0), 1), bos_id, dtype=torch.long, device=src.device)
    done = torch.zeros(src.size(0), dtype=torch.bool, device=src.device)
    limit = min(src.size(1) + max_extra, model.tgt_embed.max_len - 1)
    for _ in range(limit):
        nxt = next_token_logits(model, out, memory, src_mask, cache).argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, model.pad_id), nxt)
        out = torch.cat([out, nxt[:, None]], dim=1)
        done |= nxt == eos_id
        if bool(done.all()):
            break
    return out[:, 1:]


def length_penalty(length: int, alpha: float) -> float:
    """Wu et al. (2016): ``((5 + |Y|) / 6) ** alpha``; the paper uses alpha=0.6 (§6.1)."""
    return ((5.0 + length) / 6.0) ** alpha


@torch.no_grad()
def beam_search(model: Transformer, src, bos_id: int, eos_id: int, beam_size: int = 4,
                alpha: float = 0.6, max_extra: int = 50, use_cache: bool = True):
    """Beam search with beam size 4 and length penalty alpha=0.6 (§6.1; week 3).

    All sentences and beams run as one batch. A sentence stops when it has ``beam_size``
    finished hypotheses. Returns a list of token-id lists (without BOS/EOS), one per sentence.
    With the cache, the rows of the surviving beams are kept at every step (:func:`reorder_cache`).
    """
    model.eval()
    batch, k = src.size(0), beam_size
    src_mask = padding_mask(src, model.pad_id)
    memory = model.encode(src, src_mask)
    memory = memory.repeat_interleave(k, dim=0)
    src_mask = src_mask.repeat_interleave(k, dim=0)
    cache = model.init_cache(memory) if use_cache else None
    tokens = torch.full((batch * k, 1), bos_id, dtype=torch.long, device=src.device)
    scores = torch.zeros(batch, k, device=src.device)
    scores[:, 1:] = float("-inf")  # all beams start identical: keep one alive at first
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
    active = [True] * batch
    limit = min(src.size(1) + max_extra, model.tgt_embed.max_len - 1)
    for _ in range(limit):
        logits = next_token_logits(model, tokens, memory, src_mask, cache)
        vocab = logits.size(-1)
        cand = (scores.view(-1, 1) + logits.float().log_softmax(-1)).view(batch, k * vocab)
        top_scores, top_idx = cand.topk(2 * k, dim=-1)
        top_scores, top_idx = top_scores.tolist(), top_idx.tolist()
        new_src, new_tok, new_scores = [], [], []
        for b in range(batch):
            chosen = []
            for s, idx in zip(top_scores[b], top_idx[b]):
                beam, tok = divmod(idx, vocab)
                if not active[b] or s == float("-inf"):
                    break
                if tok == eos_id:
                    if len(finished[b]) < k:
                        seq = tokens[b * k + beam, 1:].tolist()
                        finished[b].append((s / length_penalty(len(seq) + 1, alpha), seq))
                else:
                    chosen.append((s, beam, tok))
                if len(chosen) == k:
                    break
            if len(finished[b]) >= k:
                active[b] = False
            while len(chosen) < k:  # inactive sentence, or too few candidates: dead beams
                chosen.append((float("-inf"), 0, model.pad_id))
            for s, beam, tok in chosen:
                new_src.append(b * k + beam)
                new_tok.append(tok)
                new_scores.append(s)
        if not any(active):
            break
        index = torch.tensor(new_src, device=src.device)
        tokens = torch.cat([tokens.index_select(0, index), torch.tensor(new_tok, device=src.device)[:, None]], 1)
        if cache is not None:
            reorder_cache(cache, index)
        scores = torch.tensor(new_scores, device=src.device).view(batch, k)
    results = []
    for b in range(batch):
        if not finished[b]:  # ran out of length: take the best unfinished beam
            best = int(scores[b].argmax())
            seq = tokens[b * k + best, 1:].tolist()
            finished[b].append((float(scores[b, best]) / length_penalty(len(seq), alpha), seq))
        results.append(max(finished[b], key=lambda t: t[0])[1])
    return results


# --------------------------------------------------------------------------- cost (week 4b)
def _attention_flops(model, batch: int, src_len: int, tgt_len: int) -> int:
    """``Q K^T`` and ``A V``, forward and backward (derived in week 4b, "MFU")."""
    return 12 * model.d_model * batch * (len(model.encoder) * src_len ** 2
                                         + len(model.decoder) * (tgt_len ** 2 + tgt_len * src_len))


def transformer_step_flops_6nd(model, batch: int, src_len: int, tgt_len: int) -> float:
    """The common shortcut ``6 * all parameters * all tokens`` (+ the same attention term),
    as in decoder-only LM reports. It over-counts an encoder-decoder (a source token never
    passes the decoder), so it gives a higher MFU than :func:`transformer_step_flops`; both
    are reported so figures quoted either way can be compared."""
    return float(6 * model.num_parameters() * batch * (src_len + tgt_len)
                 + _attention_flops(model, batch, src_len, tgt_len))


def transformer_step_flops(model, batch: int, src_len: int, tgt_len: int) -> float:
    """Model FLOPs of one training step of a :class:`Transformer`: 6 per weight
    and token through the stacks it passes, plus attention (derived in week 4b, "MFU")."""
    n_enc = sum(p.numel() for p in model.encoder.parameters())
    n_dec = sum(p.numel() for p in model.decoder.parameters())
    d, vocab = model.d_model, model.generator.out_features
    dense = 6 * (n_enc * batch * src_len + (n_dec + d * vocab) * batch * tgt_len)
    return float(dense + _attention_flops(model, batch, src_len, tgt_len))
