"""`make bench` (tools/bench.py, not part of the package) in its tiny --quick mode: the JSON has every figure and the figures are sane.
No timing thresholds: speed is what the bench reports, not what a test asserts."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers.transformer import Transformer, transformer_step_flops, transformer_step_flops_6nd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import bench  # noqa: E402


def test_peak_table():
    assert bench.peak_tflops("NVIDIA H100 80GB HBM3") == (989.0, "bf16")
    assert bench.peak_tflops("NVIDIA H100 PCIe") == (756.0, "bf16")
    assert bench.peak_tflops("NVIDIA L40S") == (362.0, "bf16")
    assert bench.peak_tflops("NVIDIA L4") == (121.0, "bf16")
    assert bench.peak_tflops("Tesla T4") == (65.0, "fp16")
    assert bench.peak_tflops("Some Future GPU") is None


def test_flops_formula_counts_weights_and_attention():
    m = Transformer(100, d_model=16, n_heads=2, d_ff=32, n_layers=1)
    n_enc = sum(p.numel() for p in m.encoder.parameters())
    n_dec = sum(p.numel() for p in m.decoder.parameters())
    b, s, t = 3, 5, 7
    expected = 6 * (n_enc * b * s + (n_dec + 16 * 100) * b * t) + 12 * 16 * b * (s * s + t * t + t * s)
    assert transformer_step_flops(m, b, s, t) == expected
    attention = 12 * 16 * b * (s * s + t * t + t * s)
    assert transformer_step_flops_6nd(m, b, s, t) == 6 * m.num_parameters() * b * (s + t) + attention
    assert transformer_step_flops_6nd(m, b, s, t) > transformer_step_flops(m, b, s, t)


def _finite_positive(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_quick_bench_writes_a_sane_json(clean_env, tmp_path):
    out = tmp_path / "bench" / "quick.json"
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "bench.py"), "--device", "cpu", "--quick",
                           "--out", str(out)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| Transformer step, tokens/s" in proc.stdout and "not measured" in proc.stdout
    r = json.loads(out.read_text())
    assert r["device"] == "cpu" and r["quick"] is True and r["gpu_rows"].startswith("not measured")
    assert r["peak_tflops"] is None and r["json"] == str(out)
    t = r["transformer"]
    assert t["tokens_per_step"] == t["size"]["batch"] * (t["size"]["src_len"] + t["size"]["tgt_len"])
    for side in ("naive", "optimized"):
        row = t[side]
        assert _finite_positive(row["tokens_per_s"]) and _finite_positive(row["step_ms"])
        assert row["tokens_per_s"] == pytest.approx(t["tokens_per_step"] / (row["step_ms"] / 1000), rel=1e-2)
        assert row["mfu"] is None and row["mfu_6nd"] is None and row["peak_mem_mb"] is None  # CPU: "n/a"
        assert len(row["rounds_ms"]) >= 2 and row["step_ms"] == min(row["rounds_ms"])
        assert row["step_ms"] <= row["median_step_ms"]
    assert t["ratio"] == pytest.approx(t["optimized"]["tokens_per_s"] / t["naive"]["tokens_per_s"], rel=1e-2)
    assert t["recipe"]["attention"] == "sdpa" and t["recipe"]["host_syncs_in_step"] == 0
    g = r["dcgan"]
    for side in ("plain", "optimized"):
        assert _finite_positive(g[side]["images_per_s"])
    assert g["ratio"] == pytest.approx(g["optimized"]["images_per_s"] / g["plain"]["images_per_s"], rel=1e-2)
    d = r["data"]
    assert 0.0 <= d["translation"]["padding_fraction"] < 0.5
    assert d["translation"]["batches"] >= 2 and _finite_positive(d["translation"]["batches_per_s"])
    assert _finite_positive(d["images_in_memory"]["images_per_s"])
    assert _finite_positive(d["images_from_jpeg_folder"]["images_per_s"])
    assert _finite_positive(r["wall_s"])
    k = r["decoding"]  # week 3's key/value cache against the uncached decoder, same model
    assert "| Decoding 8 sentences, beam 4" in proc.stdout
    for name in ("greedy", "beam4"):
        row = k[name]
        assert row["identical"] is True
        assert _finite_positive(row["uncached_s"]) and _finite_positive(row["cached_s"])
        assert row["ratio"] == pytest.approx(row["uncached_s"] / row["cached_s"], rel=0.02)
        assert [p["tokens"] for p in k["by_length"][name]] == [1, 4]
        assert k["pays_off_from_tokens"][name] in (1, 4, None)


def test_optimized_dcgan_step_is_the_plain_update():
    """Both sides of the DCGAN row do the same work: from the same weights, noise and batch,
    one optimized step (channels_last, fused Adam, no host syncs) gives the losses and the
    weights of ``helpers.dcgan.train_step`` (fp32 on the CPU, up to float reordering)."""
    from helpers.dcgan import Discriminator, Generator, dcgan_optimizers, train_step, weights_init

    def nets(channels_last):
        torch.manual_seed(0)
        G, D = Generator(8, 4, 1, 16), Discriminator(1, 4, 16)
        G.apply(weights_init)
        D.apply(weights_init)
        if channels_last:
            G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
        return G, D

    real = torch.rand(6, 1, 16, 16) * 2 - 1
    G0, D0 = nets(False)
    stats = train_step(G0, D0, *dcgan_optimizers(G0, D0), real, nz=8,
                       rng=torch.Generator().manual_seed(1))
    G1, D1 = nets(True)
    opts = [torch.optim.Adam(n.parameters(), lr=2e-4, betas=(0.5, 0.999), fused=True) for n in (G1, D1)]
    loss_d, loss_g = bench.optimized_dcgan_step(
        G1, D1, *opts, real.contiguous(memory_format=torch.channels_last), nz=8,
        rng=torch.Generator().manual_seed(1))
    assert float(loss_d) == pytest.approx(stats["loss_d"], rel=1e-5)
    assert float(loss_g) == pytest.approx(stats["loss_g"], rel=1e-5)
    for a, b in zip(list(G0.parameters()) + list(D0.parameters()),
                    list(G1.parameters()) + list(D1.parameters())):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
