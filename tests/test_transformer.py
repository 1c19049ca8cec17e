"""helpers.transformer: parity with PyTorch, masks, weight sharing, schedule, decoding."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import transformer as T


def _copy_into_torch(mine: T.MultiHeadAttention, d_model: int, n_heads: int) -> nn.MultiheadAttention:
    ref = nn.MultiheadAttention(d_model, n_heads, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([mine.w_q.weight, mine.w_k.weight, mine.w_v.weight]))
        ref.in_proj_bias.copy_(torch.cat([mine.w_q.bias, mine.w_k.bias, mine.w_v.bias]))
        ref.out_proj.weight.copy_(mine.w_o.weight)
        ref.out_proj.bias.copy_(mine.w_o.bias)
    return ref


@pytest.mark.parametrize("fast", [False, True])
def test_multi_head_attention_matches_torch_forward_and_backward(fast):
    torch.manual_seed(0)
    mine = T.MultiHeadAttention(32, 4, fast=fast)
    ref = _copy_into_torch(mine, 32, 4)
    tokens = torch.tensor([[3, 4, 5, 6, 7], [3, 4, 5, 0, 0]])
    mask = T.padding_mask(tokens, 0) & T.causal_mask(5)
    x = torch.randn(2, 5, 32, requires_grad=True)
    out = mine(x, x, x, mask)
    out_ref, _ = ref(x, x, x, key_padding_mask=tokens == 0,
                     attn_mask=~T.causal_mask(5)[0, 0], need_weights=False)
    assert (out - out_ref).abs().max() <= 1e-5
    g = torch.randn_like(out)
    ours = torch.autograd.grad(out, [x, mine.w_q.weight], g)
    theirs = torch.autograd.grad(out_ref, [x, ref.in_proj_weight], g)
    assert (ours[0] - theirs[0]).abs().max() <= 1e-5
    assert (ours[1] - theirs[1][:32]).abs().max() <= 1e-5


def test_scaled_dot_product_attention_matches_torch_and_masks():
    torch.manual_seed(1)
    q, k, v = torch.randn(2, 3, 4, 8), torch.randn(2, 3, 6, 8), torch.randn(2, 3, 6, 8)
    mask = torch.rand(2, 1, 4, 6) > 0.3
    mask[..., 0] = True
    out, w = T.scaled_dot_product_attention(q, k, v, mask)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert (out - ref).abs().max() <= 1e-5
    assert torch.all(w.masked_select(~mask.expand_as(w)) == 0)


def test_heads_must_divide_d_model():
    with pytest.raises(ValueError, match="divisible"):
        T.MultiHeadAttention(30, 4)


def _small(**kw):
    torch.manual_seed(0)
    args = dict(d_model=32, n_heads=4, d_ff=64, n_layers=2, dropout=0.0, max_len=40)
    args.update(kw)
    return T.Transformer(20, **args).eval()


def test_decoder_is_causal_and_padding_is_ignored():
    model = _small()
    src = torch.tensor([[5, 6, 7, 2, 0, 0]])
    tgt = torch.tensor([[1, 8, 9, 10, 11]])
    base = model(src, tgt)
    changed_future = tgt.clone()
    changed_future[0, 3:] = torch.tensor([4, 4])
    assert torch.allclose(model(src, changed_future)[0, :3], base[0, :3], atol=1e-5)
    assert not torch.allclose(model(src, changed_future)[0, 3:], base[0, 3:], atol=1e-3)
    trimmed = model(src[:, :4], tgt)
    assert torch.allclose(trimmed, base, atol=1e-5), "padding changed the output"


def test_embeddings_are_shared_and_scaled():
    model = _small()
    assert model.generator.weight is model.src_embed.tokens.weight is model.tgt_embed.tokens.weight
    tokens = torch.tensor([[3, 4]])
    emb = model.src_embed
    expected = emb.tokens(tokens) * math.sqrt(32) + emb.pe[:2]
    assert torch.allclose(emb(tokens), expected)
    with pytest.raises(ValueError, match="one shared vocabulary"):
        T.Transformer(10, 12, d_model=8, n_heads=2, d_ff=8, n_layers=1)


def test_learned_positions_and_length_limit():
    model = _small(positional="learned")
    assert model.src_embed.learned.weight.shape == (40, 32)
    with pytest.raises(ValueError, match="exceeds max_len=40"):
        model(torch.ones(1, 41, dtype=torch.long), torch.ones(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="'sinusoidal' or 'learned'"):
        _small(positional="rotary")


def test_base_model_has_the_papers_size():
    n = T.Transformer(37000).num_parameters()
    assert 60e6 < n < 66e6


def test_sinusoidal_encoding_formula():
    pe = T.sinusoidal_encoding(50, 16)
    pos, i = 7, 3
    assert math.isclose(pe[pos, 2 * i], math.sin(pos / 10000 ** (2 * i / 16)), abs_tol=1e-6)
    assert math.isclose(pe[pos, 2 * i + 1], math.cos(pos / 10000 ** (2 * i / 16)), abs_tol=1e-6)


def test_learning_rate_schedule_eq3():
    assert T.transformer_lr(4000, 512, 4000) == pytest.approx(512 ** -0.5 * 4000 ** -0.5)
    assert T.transformer_lr(100, 512, 4000) == pytest.approx(512 ** -0.5 * 100 * 4000 ** -1.5)
    assert T.transformer_lr(16000, 512, 4000) == pytest.approx(512 ** -0.5 * 16000 ** -0.5)
    opt = T.paper_adam([nn.Parameter(torch.zeros(1))])
    assert opt.defaults["betas"] == (0.9, 0.98) and opt.defaults["eps"] == 1e-9
    sched = T.noam_scheduler(opt, 512, 4000)
    assert opt.param_groups[0]["lr"] == pytest.approx(T.transformer_lr(1, 512, 4000))
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(T.transformer_lr(2, 512, 4000))


def test_label_smoothing_matches_the_formula():
    torch.manual_seed(0)
    logits, target = torch.randn(3, 7), torch.tensor([1, 2, 0])
    eps, vocab = 0.1, 7
    logp = logits.log_softmax(-1)[:2]
    q = torch.full_like(logp, eps / vocab)
    q[0, 1] += 1 - eps
    q[1, 2] += 1 - eps
    expected = -(q * logp).sum(-1).mean()
    assert torch.allclose(T.label_smoothed_loss(logits, target, eps, pad_id=0), expected, atol=1e-6)


class MarkovModel(nn.Module):
    """A stand-in 'translator' whose next-token distribution depends only on the last token,
    so the best sequence is known. Tokens: 0 pad, 1 <s>, 2 </s>, 3 "A", 4 "B"."""

    def __init__(self, table):
        super().__init__()
        self.pad_id = 0
        self.tgt_embed = type("E", (), {"max_len": 50})()
        self.log_table = torch.log(torch.tensor(table))

    def encode(self, src, mask):
        return torch.zeros(src.size(0), src.size(1), 1)

    def decode(self, tgt, memory, src_mask, tgt_mask):
        return F.one_hot(tgt, 5).float()

    def generator(self, hidden):
        return hidden @ self.log_table

    def init_cache(self, memory):  # the cached interface: nothing to cache, the last token is all
        return []

    def decode_step(self, token, position, cache, src_mask):
        return self.generator(F.one_hot(token, 5).float())


EPS = 1e-6
TABLE = [[0.2] * 5,                       # after pad (unused)
         [EPS, EPS, EPS, 0.55, 0.45],     # after <s>: "A" is likelier than "B" ...
         [0.2] * 5,                       # after </s> (unused)
         [EPS, EPS, 0.35, 0.33, 0.32],    # ... but after "A" nothing is likely
         [EPS, EPS, 0.95, 0.03, 0.02]]    # while "B" is almost surely followed by </s>


@pytest.mark.parametrize("use_cache", [True, False])
def test_beam_search_beats_greedy_where_greedy_is_short_sighted(use_cache):
    model = MarkovModel(TABLE)
    src = torch.tensor([[5, 2], [6, 2]])
    greedy = T.greedy_decode(model, src, 1, 2, max_extra=5, use_cache=use_cache)
    assert greedy[0, :2].tolist() == [3, 2], "greedy takes the likelier first word"
    assert T.beam_search(model, src, 1, 2, beam_size=1, use_cache=use_cache) == [[3], [3]], "beam 1 is greedy"
    assert T.beam_search(model, src, 1, 2, beam_size=4, alpha=0.6, use_cache=use_cache) == [[4], [4]]


@pytest.mark.parametrize("fast, positional", [(False, "sinusoidal"), (True, "sinusoidal"),
                                              (False, "learned")])
def test_decode_step_with_the_cache_equals_the_whole_decoder(fast, positional):
    """Feeding the target one token at a time through the cache gives the logits of the full,
    causally masked decoder at every position; the cache holds one entry per position."""
    model = _small(fast=fast, positional=positional)
    src = torch.tensor([[5, 6, 7, 8, 2], [9, 10, 2, 0, 0], [11, 2, 0, 0, 0]])
    tgt = torch.tensor([[1, 12, 13, 14, 15, 16, 17], [1, 3, 4, 2, 0, 0, 0], [1, 18, 19, 5, 6, 7, 8]])
    with torch.no_grad():
        src_mask = T.padding_mask(src, 0)
        memory = model.encode(src, src_mask)
        full = model.generator(model.decode(tgt, memory, src_mask, T.causal_mask(tgt.size(1))))
        cache = model.init_cache(memory)
        steps = torch.stack([model.decode_step(tgt[:, t], t, cache, src_mask)
                             for t in range(tgt.size(1))], dim=1)
    torch.testing.assert_close(steps, full, atol=1e-5, rtol=1e-5)
    for layer_cache in cache:
        assert layer_cache["self"][0].shape == (3, 4, tgt.size(1), 8)  # [batch, heads, steps, d_k]
        assert layer_cache["cross"][1].shape == (3, 4, src.size(1), 8)
    with pytest.raises(ValueError, match="exceeds max_len=40"):
        model.decode_step(tgt[:, 0], 40, model.init_cache(memory), src_mask)


def test_cached_and_uncached_decoding_agree_on_a_random_model():
    """An untrained model rarely stops early: long outputs, many beam reorderings."""
    model = _small(fast=True)
    g = torch.Generator().manual_seed(2)
    src = torch.randint(3, 20, (6, 7), generator=g)
    src[:, -1] = 2
    src[4, 3:] = 0
    for use in (True, False):
        assert T.greedy_decode(model, src, 1, 2, max_extra=12, use_cache=use).tolist() == \
            T.greedy_decode(model, src, 1, 2, max_extra=12, use_cache=not use).tolist()
    cached = T.beam_search(model, src, 1, 2, beam_size=4, max_extra=12, use_cache=True)
    assert cached == T.beam_search(model, src, 1, 2, beam_size=4, max_extra=12, use_cache=False)
    assert max(len(seq) for seq in cached) >= 10


def test_reorder_cache_keeps_the_rows_of_the_surviving_beams():
    k = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 2, 3, 5)
    cache = [{"self": (k, -k), "cross": (k, k)}]
    T.reorder_cache(cache, torch.tensor([2, 2, 0, 3]))
    assert cache[0]["self"][0][:, 0, 0, 0].tolist() == [2.0, 2.0, 0.0, 3.0]
    assert cache[0]["self"][1][:, 0, 0, 0].tolist() == [-2.0, -2.0, 0.0, -3.0]
    assert cache[0]["cross"][0] is k  # the same source for every beam of a sentence


def test_length_penalty_favours_longer_outputs():
    assert T.length_penalty(1, 0.6) == pytest.approx(1.0)
    assert T.length_penalty(10, 0.6) == pytest.approx((15 / 6) ** 0.6)
    long_table = [row[:] for row in TABLE]
    long_table[1] = [EPS, EPS, 0.5, 0.5, EPS]  # stop now (p=.5) or say "A" then stop
    long_table[3] = [EPS, EPS, 0.97, 0.03, EPS]
    model = MarkovModel(long_table)
    src = torch.tensor([[5, 2]])
    assert T.beam_search(model, src, 1, 2, beam_size=4, alpha=0.0) == [[]]
    assert T.beam_search(model, src, 1, 2, beam_size=4, alpha=1.0) == [[3]]


def test_keep_attention_records_maps():
    model = _small()
    model.keep_attention(True)
    model(torch.tensor([[5, 6, 2]]), torch.tensor([[1, 7]]))
    assert model.decoder[0].cross_attn.attention.shape == (1, 4, 2, 3)
    model.keep_attention(False)
    assert model.decoder[0].cross_attn.attention is None
