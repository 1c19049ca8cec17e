"""Every `full` configuration, built at its real sizes on the CPU, trains two steps on tiny data
(a batch of 2), so a shape, dtype or layout error in `full` cannot hide until someone has a GPU;
and its estimated peak GPU memory for the real batch (helpers.runtime.estimate, counted on the
meta device: fp32 weights, gradients, Adam's two states, and the activations autograd saves,
in fp32, so an upper bound under mixed precision) is held against a T4's 15 GB.

The Hugging Face families of `full` (week 4a, 4e, 4g) download pretrained models from the hub;
offline, the same architectures are built from their configurations with random weights, and
only their memory estimate (one counted forward + backward) runs: their training step is the
library's `Trainer`, not code of this course.
"""

import warnings

import pytest
import torch

from helpers import dcgan
from helpers.dcgan_ablations import build_ablation
from helpers.runtime import estimate
from helpers.runtime.config import FAMILIES, profile_config
from helpers.transformer import label_smoothed_loss, paper_adam
from helpers.translation import PAD, build_model


def full(family: str, **overrides):
    with warnings.catch_warnings():  # "full without a GPU is slow": known, and why it is tiny here
        warnings.simplefilter("ignore")
        return profile_config(family, "full", **overrides)


MEMORY: dict[str, float] = {}  # name -> estimated GB, printed at the end


def check_memory(name: str, gb: float):
    MEMORY[name] = gb
    print(f"{name}: estimated peak GPU memory {gb:.2f} GB (T4: {estimate.T4_MEMORY_GB:g} GB)")
    assert gb < estimate.T4_MEMORY_GB, f"{name} needs about {gb:.1f} GB, more than a T4's 15 GB"


def two_transformer_steps(cfg, vocab_size: int):
    torch.manual_seed(0)
    model = build_model(cfg, vocab_size)
    optimizer = paper_adam(model.parameters(), lr=1e-4)
    src = torch.randint(4, vocab_size, (2, 7))
    tgt = torch.randint(4, vocab_size, (2, 6))
    before = model.generator.weight.detach().clone()
    for _ in range(2):
        logits = model(src, tgt[:, :-1])
        assert logits.shape == (2, 5, vocab_size) and logits.dtype == torch.float32
        loss = label_smoothed_loss(logits.float(), tgt[:, 1:], cfg.label_smoothing, PAD)
        assert torch.isfinite(loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    assert not torch.equal(before, model.generator.weight)
    return model


def transformer_memory_gb(model, tokens: int, src_len: int, tgt_len: int) -> float:
    """Peak memory for a token-count batch of ``tokens`` per side at these lengths."""
    rows = max(1, tokens // max(src_len, tgt_len))
    src = torch.zeros(rows, src_len, dtype=torch.long, device="meta")
    tgt = torch.zeros(rows, tgt_len, dtype=torch.long, device="meta")
    return estimate.training_memory_gb(model, estimate.count_step(model, (src, tgt)))


def test_translation_full_base_model():
    cfg = full("translation")
    model = two_transformer_steps(cfg, cfg.vocab_size)
    # Multi30k sentences: about 15-40 subwords; 40 is the long end (more attention memory)
    check_memory("translation", transformer_memory_gb(model, cfg.max_tokens, 40, 40))


# Week 4d's rows that change the architecture (the others change training settings only); the
# notebook's ROWS table is the source, mirrored here so a new row must be added on purpose.
TABLE3_ARCHITECTURE = {
    "A: 1 head": {"n_heads": 1}, "A: 4 heads": {"n_heads": 4}, "A: 16 heads": {"n_heads": 16},
    "A: 32 heads": {"n_heads": 32}, "C: N=1": {"n_layers": 1}, "C: N=2": {"n_layers": 2},
    "C: N=4": {"n_layers": 4}, "C: d_ff/2": {"d_ff": 1024}, "C: d_ff*2": {"d_ff": 4096},
    "E: learned positions": {"positional": "learned"},
}
TABLE3_TRAINING_ONLY = {"base", "base, seed 1", "A: 1 head, seed 1", "D: no dropout", "D: dropout 0.2",
                        "D: no label smoothing", "D: label smoothing 0.2"}


def test_every_table3_full_row_is_covered():
    rows = set(FAMILIES["table3"]["full"]["rows"])
    assert rows <= set(TABLE3_ARCHITECTURE) | TABLE3_TRAINING_ONLY, \
        f"add {rows - set(TABLE3_ARCHITECTURE) - TABLE3_TRAINING_ONLY} to this test"


@pytest.mark.parametrize("row", [r for r in FAMILIES["table3"]["full"]["rows"] if r in TABLE3_ARCHITECTURE])
def test_table3_full_rows(row):
    t3 = full("table3")
    cfg = full("translation").replace(**t3.translation_overrides, **TABLE3_ARCHITECTURE[row])
    model = two_transformer_steps(cfg, cfg.vocab_size)
    if row in ("C: d_ff*2", "A: 32 heads"):  # the largest model and the most attention maps
        check_memory(f"table3 {row}", transformer_memory_gb(model, cfg.max_tokens, 40, 40))


def test_summarizer_full():
    cfg = full("summarizer")
    model = two_transformer_steps(cfg, cfg.vocab_size)
    # the longest batches: articles cut to max_source_words (~1.3 subwords a word, up to max_len)
    # and summaries of up to ~120 subwords, as many rows as max_tokens allows
    check_memory("summarizer", transformer_memory_gb(model, cfg.max_tokens, cfg.max_len, 120))


def two_gan_steps(G, D, cfg, nc: int):
    opt_g, opt_d = dcgan.dcgan_optimizers(G, D, cfg.lr, cfg.beta1)
    real = torch.rand(2, nc, cfg.image_size, cfg.image_size) * 2 - 1
    for _ in range(2):
        out = dcgan.train_step(G, D, opt_g, opt_d, real, nz=cfg.nz, rng=torch.Generator().manual_seed(0))
        assert all(torch.isfinite(torch.tensor(v)) for v in out.values())
    with torch.no_grad():
        fake = G.eval()(torch.randn(2, cfg.nz))
    assert fake.shape == (2, nc, cfg.image_size, cfg.image_size)
    count = estimate.count_gan_step(G, D, cfg.batch_size, cfg.nz, (nc, cfg.image_size, cfg.image_size))
    return estimate.training_memory_gb(sum(p.numel() for p in [*G.parameters(), *D.parameters()]), count)


def test_dcgan_full():
    cfg = full("dcgan")
    torch.manual_seed(0)
    G, D = dcgan.build_dcgan(cfg, nc=cfg.channels)
    check_memory("dcgan", two_gan_steps(G, D, cfg, cfg.channels))


@pytest.mark.parametrize("row", FAMILIES["dcgan_ablations"]["common"]["rows"])
def test_dcgan_ablation_full_rows(row):
    cfg = full("dcgan_ablations")
    torch.manual_seed(0)
    G, D, row_cfg = build_ablation(row, cfg, cfg.channels)
    gb = two_gan_steps(G, D, row_cfg, cfg.channels)
    if row in ("base", "FC hidden layer"):
        check_memory(f"dcgan_ablations {row}", gb)


def test_hugging_face_full_architectures():
    """distilbert-base-uncased (4a), t5-small (4e, final project), distilgpt2 (4g): their
    architectures from the configs' documented sizes, random weights (offline)."""
    transformers = pytest.importorskip("transformers")
    for family, expected in (("finetune", "distilbert-base-uncased"), ("summarization", "t5-small"),
                             ("gpt2", "distilgpt2")):
        assert full(family).model == expected, f"{family} full changed model: update this test"
    ft, s2s, lm = full("finetune"), full("summarization"), full("gpt2")
    torch.manual_seed(0)
    cases = {
        # DistilBertConfig's defaults are distilbert-base-uncased's sizes
        "finetune": (transformers.DistilBertForSequenceClassification(transformers.DistilBertConfig(num_labels=2)),
                     lambda rows: {"input_ids": torch.randint(1000, 2000, (rows, ft.max_length)),
                                   "attention_mask": torch.ones(rows, ft.max_length, dtype=torch.long),
                                   "labels": torch.randint(0, 2, (rows,))}, ft.batch_size),
        # T5Config's defaults are t5-small's sizes
        "summarization": (transformers.T5ForConditionalGeneration(transformers.T5Config(decoder_start_token_id=0)),
                          lambda rows: {"input_ids": torch.randint(5, 1000, (rows, s2s.max_source_length)),
                                        "attention_mask": torch.ones(rows, s2s.max_source_length, dtype=torch.long),
                                        "labels": torch.randint(5, 1000, (rows, s2s.max_target_length))},
                          s2s.batch_size),
        # distilgpt2: GPT-2's configuration with 6 layers
        "gpt2": (transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=6)),
                 lambda rows: {"input_ids": (ids := torch.randint(0, 50000, (rows, lm.block_size))),
                               "labels": ids}, lm.batch_size),
    }
    for family, (model, batch, rows) in cases.items():
        # the library's code, not ours: one forward + backward (the count below: these models read
        # tensor values, so it runs on the CPU with 2 rows) instead of two optimizer steps
        count = estimate.count_step(model, batch(rows))
        assert count.method.startswith(("meta", "cpu, first 2")), count.method
        check_memory(family, estimate.training_memory_gb(model, count))
