"""Parallel text loading, the stand-in grammar, subwords, batching and BLEU."""

import gzip
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from helpers.course.data import DataLayoutError, load_dataset
from helpers.course.data.text import MULTI30K_SPLITS, load_parallel_folder, synthetic_translation
from helpers.translation import (
    BOS,
    EOS,
    PAD,
    build_tokenizer,
    collate,
    corpus_bleu,
    prepare_translation,
    token_batches,
)


def write_split(folder, stem, en, de, gz=False):
    for lang, lines in (("en", en), ("de", de)):
        text = "".join(line + "\n" for line in lines)
        path = folder / f"{stem}.{lang}"
        if gz:
            (folder / f"{stem}.{lang}.gz").write_bytes(gzip.compress(text.encode()))
        else:
            path.write_text(text, encoding="utf-8")


def make_multi30k(folder, gz=False):
    folder.mkdir(parents=True, exist_ok=True)
    for stem in MULTI30K_SPLITS.values():
        write_split(folder, stem, ["A dog runs.", "Two men talk."], ["Ein Hund rennt.", "Zwei Männer reden."], gz)
    return folder


@pytest.mark.parametrize("gz", [False, True])
def test_multi30k_from_the_official_raw_layout(clean_env, monkeypatch, tmp_path, gz):
    monkeypatch.setenv("CURRICULUM_PROFILE", "local")
    make_multi30k(tmp_path / "data" / "multi30k", gz)
    monkeypatch.setenv("CURRICULUM_DATA_DIR", str(tmp_path / "data"))
    loaded = load_dataset("multi30k")
    assert loaded.origin == "local"
    assert loaded.data["test"][1] == ("Two men talk.", "Zwei Männer reden.")


def test_misaligned_files_name_both_files_and_counts(tmp_path):
    write_split(tmp_path, "train", ["a", "b", "c"], ["x", "y"])
    write_split(tmp_path, "val", ["a"], ["x"])
    write_split(tmp_path, "test", ["a"], ["x"])
    with pytest.raises(DataLayoutError) as info:
        load_parallel_folder(tmp_path)
    text = str(info.value)
    assert "train.en has 3 lines" in text and "train.de has 2" in text and "line i" in text


def test_empty_split_and_bad_encoding(tmp_path):
    write_split(tmp_path, "train", ["a"], ["x"])
    write_split(tmp_path, "val", [], [])
    write_split(tmp_path, "test", ["a"], ["x"])
    with pytest.raises(DataLayoutError, match="val split .* is empty"):
        load_parallel_folder(tmp_path)
    write_split(tmp_path, "val", ["a"], ["x"])
    (tmp_path / "test.de").write_bytes(b"\xff\xfe bad")
    with pytest.raises(DataLayoutError, match="UTF-8"):
        load_parallel_folder(tmp_path)


def test_custom_language_pair_and_split_names(tmp_path):
    write_split(tmp_path, "dev", ["hello"], ["hallo"])
    (tmp_path / "dev.en").rename(tmp_path / "dev.fr")
    pairs = load_parallel_folder(tmp_path, src="fr", tgt="de", splits={"dev": "dev"})
    assert pairs == {"dev": [("hello", "hallo")]}


def test_multi30k_offline_download_gives_the_fix(tmp_path):
    """The real Hugging Face download path, with the hub in offline mode and no network."""
    code = textwrap.dedent(f"""
        import socket
        def offline(*a, **k):
            raise socket.gaierror(-2, "offline")
        socket.getaddrinfo = offline
        from helpers.course.data import load_dataset, DataUnavailableError
        try:
            load_dataset("multi30k", profile="local", data_root={str(tmp_path)!r})
        except DataUnavailableError as e:
            print(e)
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf"), "CURRICULUM_CACHE_DIR": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120).stdout
    assert "Multi30k (task 1, English-German) is not available" in out
    assert "bentrevett/multi30k" in out and "failed" in out
    assert f"{tmp_path}/multi30k/" in out and "test_2016_flickr.de" in out
    assert "CURRICULUM_PROFILE=smoke" in out


def test_synthetic_grammar_is_deterministic_and_disjoint():
    a, b = synthetic_translation(300, 50, 50, seed=1), synthetic_translation(300, 50, 50, seed=1)
    assert a == b
    train = {s for s, _ in a["train"]}
    assert not train & {s for s, _ in a["test"]}
    assert all(s[0].isupper() and s.endswith(".") and t.endswith(".") for s, t in a["train"])
    assert any(t.startswith("Heute") for _, t in a["train"])  # the reordering case exists


def test_tokenizer_round_trips_and_is_cached(clean_env):
    pairs = synthetic_translation(500, 10, 10)["train"]
    tok = build_tokenizer(pairs, 300, name="t")
    for s, t in pairs[:20]:
        assert tok.decode(tok.encode(s)) == s and tok.decode(tok.encode(t)) == t
    assert tok.decode(tok.encode("Der Hund.") + [EOS, 7, 8]) == "Der Hund."
    files = list((clean_env / "cache" / "tokenizers").glob("t-300-*.json"))
    assert len(files) == 1
    again = build_tokenizer(pairs, 300, name="t")
    assert again.encode(pairs[0][0]) == tok.encode(pairs[0][0])


def test_token_batches_cover_everything_once_within_budget():
    lengths = [(n % 17 + 1, n % 13 + 2) for n in range(300)]
    batches = token_batches(lengths, max_tokens=60, seed=3)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(300))
    for b in batches:
        longest = max(max(lengths[i]) for i in b)
        assert len(b) == 1 or longest * len(b) <= 60
    assert batches == token_batches(lengths, max_tokens=60, seed=3)
    assert batches != token_batches(lengths, max_tokens=60, seed=4)


def test_collate_shifts_the_target():
    src, tgt_in, tgt_out = collate([([5, 6, EOS], [BOS, 7, 8, EOS]), ([5, EOS], [BOS, 9, EOS])])
    assert src.tolist() == [[5, 6, EOS], [5, EOS, PAD]]
    assert tgt_in.tolist() == [[BOS, 7, 8], [BOS, 9, PAD]]
    assert tgt_out.tolist() == [[7, 8, EOS], [9, EOS, PAD]]


def test_prepare_translation_padding_is_small(clean_env):
    data = prepare_translation(synthetic_translation(600, 20, 20), 300, name="p")
    assert len(data.encoded["train"]) == 600
    assert data.padding_fraction("train", 400) < 0.1
    src, tgt_in, tgt_out = data.batches("val", 400, shuffle=False)[0]
    assert src.dtype == torch.long and tgt_in.shape == tgt_out.shape


def test_bleu():
    refs = ["Der Hund sieht die Katze.", "Ein Mann malt ein Haus."]
    assert corpus_bleu(refs, refs) == pytest.approx(100.0)
    assert corpus_bleu(["Katze.", "Haus."], refs) < 20


def test_sst2_glue_layout_and_bad_header(clean_env, monkeypatch, tmp_path):
    from helpers.course.data.text import synthetic_reviews

    monkeypatch.setenv("CURRICULUM_PROFILE", "local")
    folder = tmp_path / "data" / "SST-2"
    folder.mkdir(parents=True)
    (folder / "train.tsv").write_text("sentence\tlabel\na fine film \t1\nawful\t0\n")
    (folder / "dev.tsv").write_text("sentence\tlabel\ngood\t1\n")
    monkeypatch.setenv("CURRICULUM_DATA_DIR", str(tmp_path / "data"))
    loaded = load_dataset("sst2")
    assert loaded.origin == "local" and loaded.data["train"] == [("a fine film", 1), ("awful", 0)]
    (folder / "dev.tsv").write_text("text,label\ngood,1\n")
    with pytest.raises(DataLayoutError, match="GLUE header"):
        load_dataset("sst2")
    (folder / "dev.tsv").write_text("sentence\tlabel\ngood\tyes\n")
    with pytest.raises(DataLayoutError, match="line 2"):
        load_dataset("sst2")
    reviews = synthetic_reviews(200, seed=3)
    assert reviews == synthetic_reviews(200, seed=3) and {label for _, label in reviews} == {0, 1}


def _tiny_run(data, cfg, **kw):
    from helpers.runtime import env
    from helpers.translation import build_model, train_translation

    env.seed_everything(0)
    model = build_model(cfg, data.tokenizer.vocab_size)
    history = train_translation(model, data, cfg.replace(log_every=5), device=torch.device("cpu"), **kw)
    torch.use_deterministic_algorithms(False)
    return model, history


def test_interrupted_training_resumes_bit_identically(clean_env, tmp_path):
    from helpers.runtime.config import profile_config

    cfg = profile_config("translation", "smoke", train_steps=24, eval_every=12, dropout=0.1,
                         max_tokens=300, d_model=32, d_ff=64)
    data = prepare_translation(synthetic_translation(120, 10, 10), 200, name="resume")
    reference, ref_hist = _tiny_run(data, cfg)
    ckpt = tmp_path / "run.pt"
    _, first = _tiny_run(data, cfg, checkpoint_path=ckpt, stop_after=11)  # "disconnect" at step 11
    assert first.steps("train_loss")[-1] == 10 and ckpt.exists()
    torch.manual_seed(123)  # a fresh process would start from other random states
    resumed, hist = _tiny_run(data, cfg, checkpoint_path=ckpt)
    for p, q in zip(reference.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(p, q)
    assert hist["train_loss"] == ref_hist["train_loss"]


class _Writer:
    """A stand-in for TensorBoard's SummaryWriter that remembers what it was given."""

    def __init__(self):
        self.scalars = []

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))


def test_checkpoint_averaging_is_the_mean_of_the_kept_snapshots(clean_env, tmp_path):
    """§6.1: the averaged model's weights are exactly the mean of the last 5 saved ones."""
    from helpers.runtime.config import profile_config
    from helpers.runtime.run import snapshot_paths
    from helpers.translation import average_checkpoints

    cfg = profile_config("translation", "smoke", train_steps=14, eval_every=7, max_tokens=300,
                         d_model=32, d_ff=64)
    data = prepare_translation(synthetic_translation(120, 10, 10), 200, name="average")
    ckpt = tmp_path / "run.pt"
    writer = _Writer()
    model, history = _tiny_run(data, cfg.replace(checkpoint_every=2, average_last=5), checkpoint_path=ckpt,
                               writer=writer)
    kept = snapshot_paths(ckpt)
    assert [p.name for p in kept] == [f"run.step{s:07d}.pt" for s in (6, 8, 10, 12, 14)]
    saved = [torch.load(p, weights_only=True) for p in kept]
    assert torch.equal(saved[-1]["encoder.0.ffn.w_1.weight"], model.state_dict()["encoder.0.ffn.w_1.weight"])
    averaged = average_checkpoints(kept)
    for name, value in averaged.items():
        expected = torch.stack([s[name].double() for s in saved]).mean(0).to(value.dtype)
        assert torch.allclose(value, expected, atol=1e-7, rtol=0), name
    assert not torch.equal(averaged["encoder.0.ffn.w_1.weight"], saved[-1]["encoder.0.ffn.w_1.weight"])
    model.load_state_dict(averaged)  # loads into the same architecture
    # TensorBoard got what the history got
    assert ("translation/val_loss", history["val_loss"][-1], 14) in writer.scalars
    assert {tag for tag, *_ in writer.scalars} >= {"translation/train_loss", "translation/lr"}


def test_checkpoint_averaging_refuses_other_models_and_nothing(tmp_path):
    from helpers.translation import average_checkpoints

    torch.save({"w": torch.ones(2)}, tmp_path / "a.pt")
    torch.save({"w": torch.ones(3)}, tmp_path / "b.pt")
    torch.save({"v": torch.ones(2)}, tmp_path / "c.pt")
    torch.save({"model": {"w": torch.zeros(2)}, "step": 3}, tmp_path / "full.pt")
    with pytest.raises(ValueError, match="no checkpoints to average"):
        average_checkpoints([])
    with pytest.raises(ValueError, match="has shape"):
        average_checkpoints([tmp_path / "a.pt", tmp_path / "b.pt"])
    with pytest.raises(ValueError, match="other weights"):
        average_checkpoints([tmp_path / "a.pt", tmp_path / "c.pt"])
    mean = average_checkpoints([tmp_path / "a.pt", tmp_path / "full.pt"])  # a full checkpoint works too
    assert torch.equal(mean["w"], torch.full((2,), 0.5))


def test_schedules():
    from torch import nn

    from helpers.transformer import make_scheduler, transformer_lr

    def lrs(kind):
        opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
        sched = make_scheduler(opt, kind, 64, 10, 100)
        out = []
        for _ in range(100):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out

    peak = transformer_lr(10, 64, 10)
    assert lrs("none") == [pytest.approx(peak)] * 100
    cos = lrs("cosine")
    assert cos[9] == pytest.approx(peak) and cos[-1] < 0.01 * peak and cos[0] == pytest.approx(peak / 10)
    assert max(lrs("noam")) == pytest.approx(peak)
    with pytest.raises(ValueError, match="schedule"):
        make_scheduler(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0), "step", 64, 10, 100)


def test_summarization_layout_and_standin(clean_env, monkeypatch, tmp_path):
    import json

    from helpers.course.data.text import synthetic_summaries

    monkeypatch.setenv("CURRICULUM_PROFILE", "local")
    folder = tmp_path / "data" / "cnn_dailymail"
    folder.mkdir(parents=True)
    for split in ("train", "validation", "test"):
        (folder / f"{split}.jsonl").write_text(json.dumps({"article": "A long text.", "highlights": "Short."}) + "\n")
    monkeypatch.setenv("CURRICULUM_DATA_DIR", str(tmp_path / "data"))
    assert load_dataset("cnn_dailymail").data["test"] == [("A long text.", "Short.")]
    (folder / "test.jsonl").write_text('{"article": "x"}\n')
    with pytest.raises(DataLayoutError, match="test.jsonl, line 1"):
        load_dataset("cnn_dailymail")
    article, summary = synthetic_summaries(1, seed=4)[0]
    assert article.count(".") == 3 and summary.split()[0] in article
