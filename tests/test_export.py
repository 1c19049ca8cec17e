"""helpers.ops.export (week 4f): ONNX graphs with dynamic axes reproduce PyTorch, the onnxruntime
greedy loop reproduces helpers.transformer.greedy_decode, and the parity checks notice a change."""

import numpy as np
import pytest
import torch

from helpers.dcgan import Generator, weights_init
from helpers.ops import demo, export
from helpers.transformer import Transformer, causal_mask, greedy_decode, padding_mask

BOS, EOS, PAD = 1, 2, 0


@pytest.fixture(scope="module")
def translator(tmp_path_factory):
    torch.manual_seed(0)
    model = Transformer(40, d_model=32, n_heads=4, d_ff=64, n_layers=2, dropout=0.0, max_len=64,
                        pad_id=PAD, fast=True).eval()
    out = tmp_path_factory.mktemp("onnx")
    paths = export.export_translator(model, out)
    runner = export.OnnxTranslator(paths["encoder"], paths["decoder"], pad_id=PAD, max_len=64)
    return model, runner


def _src(batch, length, seed):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, 40, (batch, length), generator=g)
    src[0, -1] = EOS
    if batch > 1:
        src[1, length // 2:] = PAD  # a shorter, padded sentence
    return src


def _feed(step, tokens, past, cross, mask):
    """Run ``step`` over ``tokens [batch, n]`` one position at a time; logits of each step."""
    out = []
    for t in range(tokens.shape[1]):
        logits, past = step(tokens[:, t], past, cross, mask)
        out.append(logits)
    return np.stack(out, 1), past


@pytest.mark.parametrize("batch, src_len, tgt_len", [(1, 3, 1), (3, 11, 5), (5, 20, 9)])
def test_graphs_match_pytorch_for_any_batch_and_length(translator, batch, src_len, tgt_len):
    """The encoder graph gives the memory and the cross-attention keys/values; the cached
    decoder step, fed a prefix one token at a time, gives PyTorch's logits at every position
    (teacher forcing, no cache) and a cache that grows by one step each time."""
    model, runner = translator
    src = _src(batch, src_len, seed=src_len)
    tgt = torch.randint(4, 40, (batch, tgt_len), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        mask = padding_mask(src, PAD)
        memory = model.encode(src, mask)
        logits = model.generator(model.decode(tgt, memory, mask, causal_mask(tgt_len)))
    ort_memory, cross = runner.encode(src.numpy())
    assert ort_memory.shape == tuple(memory.shape)
    assert cross.shape == (2, 2, batch, 4, src_len, 8)  # layers, k/v, batch, heads, src_len, d_k
    assert np.abs(ort_memory - memory.numpy()).max() < 1e-4
    empty = np.zeros((2, 2, batch, 4, 0, 8), dtype=np.float32)
    ort_logits, past = _feed(runner.step, tgt.numpy(), empty, cross, mask.numpy())
    assert ort_logits.shape == (batch, tgt_len, 40) and past.shape == (2, 2, batch, 4, tgt_len, 8)
    assert np.abs(ort_logits - logits.numpy()).max() < 1e-4
    torch_logits, torch_past = _feed(export.TorchTranslator(model).step, tgt.numpy(), empty, cross,
                                     mask.numpy())
    assert np.abs(torch_logits - logits.numpy()).max() < 1e-4
    assert np.abs(torch_past - past).max() < 1e-4


@pytest.mark.parametrize("use_cache", [True, False])
def test_onnx_greedy_loop_equals_greedy_decode(translator, use_cache):
    model, runner = translator
    src = _src(4, 9, seed=3)
    expected = greedy_decode(model, src, BOS, EOS, max_extra=6, use_cache=use_cache)
    got = runner.greedy_decode(src.numpy(), BOS, EOS, max_extra=6)
    assert got.tolist() == expected.tolist()
    assert export.TorchTranslator(model).greedy_decode(src.numpy(), BOS, EOS, max_extra=6).tolist() \
        == expected.tolist()


def test_the_decoding_loop_stops_at_its_deadline(translator):
    import time

    _, runner = translator
    with pytest.raises(TimeoutError, match="time budget"):
        runner.greedy_decode(_src(2, 9, seed=3).numpy(), BOS, EOS, deadline=time.monotonic() - 1)


def test_parity_check_notices_a_changed_model(translator):
    model, runner = translator
    changed = Transformer(40, d_model=32, n_heads=4, d_ff=64, n_layers=2, dropout=0.0, max_len=64,
                          pad_id=PAD).eval()
    changed.load_state_dict(model.state_dict())
    with torch.no_grad():
        w = changed.decoder[-1].ffn.w_2.weight  # (a constant bias would be undone by LayerNorm)
        w.add_(0.1 * torch.randn(w.shape, generator=torch.Generator().manual_seed(0)))
    src = _src(2, 7, seed=5)
    mask = padding_mask(src, PAD).numpy()
    tokens = np.full((2, 3), BOS)
    _, cross = runner.encode(src.numpy())
    empty = np.zeros((2, 2, 2, 4, 0, 8), dtype=np.float32)
    ort_logits, _ = _feed(runner.step, tokens, empty, cross, mask)
    _, changed_cross = export.TorchTranslator(changed).encode(src.numpy())
    torch_logits, _ = _feed(export.TorchTranslator(changed).step, tokens, empty, changed_cross, mask)
    assert np.abs(ort_logits - torch_logits).max() > 1e-2


def test_generator_export_and_parity(tmp_path):
    torch.manual_seed(0)
    G = Generator(nz=8, ngf=4, nc=1, image_size=16)
    G.apply(weights_init)
    G.train()
    G(torch.randn(32, 8))  # move BatchNorm's running statistics away from their defaults
    G.eval()
    runner = export.OnnxGenerator(export.export_generator(G, tmp_path))
    assert runner.nz == 8
    for n in (1, 7):
        images = runner(torch.randn(n, 8))
        assert images.shape == (n, 1, 16, 16)
    assert export.generator_parity(G, runner, n=5) < 1e-5
    with torch.no_grad():
        G.net[1].running_mean.add_(1.0)
    assert export.generator_parity(G, runner, n=5) > 1e-3


def test_missing_onnx_file_names_the_command(tmp_path):
    with pytest.raises(export.ExportError, match="helpers.ops.serve --train-smoke"):
        export.OnnxGenerator(tmp_path / "generator.onnx")
    with pytest.raises(export.ExportError, match="helpers.ops.serve --train-smoke"):
        demo.load_translator(tmp_path)


@pytest.fixture
def tiny_sources(monkeypatch):
    """build_bundle's two models replaced by tiny untrained ones (seconds, not minutes)."""
    from helpers.course.data.text import synthetic_translation
    from helpers.translation import ARCHITECTURE_KEYS, SubwordTokenizer

    pairs = synthetic_translation(60, 5, 5)
    tok = SubwordTokenizer.train([s for p in pairs["train"] for s in p], 120)
    torch.manual_seed(0)
    model = Transformer(tok.vocab_size, d_model=16, n_heads=2, d_ff=32, n_layers=1, dropout=0.0,
                        max_len=32, pad_id=PAD).eval()
    settings = {"vocab_size": tok.vocab_size, "d_model": 16, "n_heads": 2, "d_ff": 32,
                "n_layers": 1, "positional": "sinusoidal", "max_len": 32}
    assert set(settings) == set(ARCHITECTURE_KEYS)
    G = Generator(nz=8, ngf=4, nc=1, image_size=16).eval()
    g_settings = {"nz": 8, "ngf": 4, "ndf": 4, "channels": 1, "image_size": 16}
    monkeypatch.setattr(demo, "notebook_translator",
                        lambda *a, **k: (model, tok, settings, "tiny", pairs["test"]))
    monkeypatch.setattr(demo, "notebook_generator", lambda *a, **k: (G, g_settings, "tiny"))


def _files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_build_bundle_publishes_only_after_parity_passes(tmp_path, monkeypatch, tiny_sources):
    out = tmp_path / "deploy"
    demo.build_bundle(out, parity_sentences=3, log=lambda m: None)
    assert demo.bundle_problem(out, "translator") is None and demo.bundle_problem(out, "generator") is None
    (out / "notes.txt").write_text("mine")
    before = _files(out)

    real = export.translator_parity

    def failing(*args, **kwargs):
        result = real(*args, **kwargs)
        result.identical -= 1  # one greedy translation differs
        return result

    monkeypatch.setattr(demo, "translator_parity", failing)
    with pytest.raises(export.ExportError, match="disagrees with PyTorch.*nothing was published"):
        demo.build_bundle(out, parity_sentences=3, log=lambda m: None)
    assert _files(out) == before, "a failed build touched the published bundle"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deploy"], "staging folder left behind"

    monkeypatch.setattr(demo, "translator_parity", real)
    demo.build_bundle(out, parity_sentences=3, log=lambda m: None)
    assert (out / "notes.txt").read_text() == "mine", "the learner's file was lost"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deploy"]


def test_publish_refuses_a_stage_without_passed_parity(tmp_path, tiny_sources):
    model, tok, settings, _, _ = demo.notebook_translator()
    stage = demo.staging_dir(tmp_path / "deploy")
    demo.save_translator_bundle(model, tok, settings, stage, source="tiny")
    with pytest.raises(export.ExportError, match="records no parity check"):
        demo.publish_bundle(stage, tmp_path / "deploy")
    demo.record_parity(stage, translator={"memory_max_abs": 0.0, "logits_max_abs": 1.0,
                                          "sentences": 2, "identical": 2, "mismatches": []})
    with pytest.raises(export.ExportError, match="failed its ONNX-vs-PyTorch parity check"):
        demo.publish_bundle(stage, tmp_path / "deploy")
    assert not (tmp_path / "deploy").exists()
