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


@pytest.mark.parametrize("batch, src_len, tgt_len", [(1, 3, 1), (3, 11, 5), (5, 20, 9)])
def test_graphs_match_pytorch_for_any_batch_and_length(translator, batch, src_len, tgt_len):
    model, runner = translator
    src = _src(batch, src_len, seed=src_len)
    tgt = torch.randint(4, 40, (batch, tgt_len), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        mask = padding_mask(src, PAD)
        memory = model.encode(src, mask)
        logits = model.generator(model.decode(tgt, memory, mask, causal_mask(tgt_len))[:, -1])
    ort_memory = runner.encode(src.numpy())
    assert ort_memory.shape == tuple(memory.shape)
    assert np.abs(ort_memory - memory.numpy()).max() < 1e-4
    ort_logits = runner.step(tgt.numpy(), ort_memory, mask.numpy())
    assert ort_logits.shape == (batch, 40)
    assert np.abs(ort_logits - logits.numpy()).max() < 1e-4


def test_onnx_greedy_loop_equals_greedy_decode(translator):
    model, runner = translator
    src = _src(4, 9, seed=3)
    expected = greedy_decode(model, src, BOS, EOS, max_extra=6)
    got = runner.greedy_decode(src.numpy(), BOS, EOS, max_extra=6)
    assert got.tolist() == expected.tolist()


def test_parity_check_notices_a_changed_model(translator):
    model, runner = translator
    changed = Transformer(40, d_model=32, n_heads=4, d_ff=64, n_layers=2, dropout=0.0, max_len=64,
                          pad_id=PAD).eval()
    changed.load_state_dict(model.state_dict())
    with torch.no_grad():
        w = changed.decoder[-1].ffn.w_2.weight  # (a constant bias would be undone by LayerNorm)
        w.add_(0.1 * torch.randn(w.shape, generator=torch.Generator().manual_seed(0)))
    src = _src(2, 7, seed=5)
    with torch.no_grad():
        mask = padding_mask(src, PAD)
        memory = changed.encode(src, mask)
        tgt = torch.full((2, 1), BOS)
        logits = changed.generator(changed.decode(tgt, memory, mask, causal_mask(1))[:, -1])
    error = np.abs(runner.step(tgt.numpy(), runner.encode(src.numpy()), mask.numpy()) - logits.numpy()).max()
    assert error > 1e-2


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
