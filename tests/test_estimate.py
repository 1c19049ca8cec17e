"""helpers.runtime.estimate: counted step FLOPs, GPU detection by name, fits / reruns."""

import pytest
import torch
from torch import nn

from helpers.runtime import estimate as E


def test_linear_step_is_6_flops_per_weight_and_row_with_input_grad_and_4_without():
    fin, fout, batch = 10, 20, 7
    layer = nn.Linear(fin, fout)
    hidden = torch.randn(batch, fin, requires_grad=True)  # a hidden layer: its input needs a gradient
    assert E.count_step(layer, hidden).flops == 6 * fin * fout * batch
    first = torch.randn(batch, fin)  # the first layer: no input gradient, forward + weight grad
    count = E.count_step(layer, first)
    assert count.flops == 4 * fin * fout * batch and count.method == "meta"


def test_meta_count_touches_no_weights_and_matches_a_real_count():
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    before = [p.detach().clone() for p in model.parameters()]
    x = torch.randn(5, 8)
    meta = E.count_step(model, x)
    real = E.count_step(model, x, meta=False)
    assert meta.flops == real.flops
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


class NoMeta(nn.Module):
    """Reads a value (like some library code does), which the meta device cannot give."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 3)

    def forward(self, x):
        if bool((x > 100).any()):
            x = x * 0
        return self.lin(x)


def test_fallback_counts_two_rows_on_the_cpu_and_scales_by_the_batch():
    count = E.count_step(NoMeta(), torch.randn(64, 6))
    assert count.method.startswith("cpu, first 2 of 64 rows")
    assert count.flops == 4 * 6 * 3 * 64


def test_keyword_inputs_and_a_loss_attribute():
    class WithLoss(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 2)

        def forward(self, input_ids, labels):
            out = self.lin(input_ids)
            return type("Out", (), {"loss": ((out - labels) ** 2).mean(), "logits": out})()

    count = E.count_step(WithLoss(), {"input_ids": torch.randn(3, 4), "labels": torch.randn(3, 2)})
    assert count.flops == 4 * 4 * 2 * 3


@pytest.mark.parametrize("name, kind", [
    ("Tesla T4", (65.0, "fp16")), ("NVIDIA L4", (121.0, "bf16")), ("NVIDIA L40S", (362.0, "bf16")),
    ("NVIDIA A100-SXM4-40GB", (312.0, "bf16")), ("NVIDIA H100 80GB HBM3", (989.0, "bf16")),
    ("NVIDIA H100 PCIe", (756.0, "bf16")), ("T4", (65.0, "fp16")), ("Some Future GPU", None)])
def test_gpu_names_map_to_their_data_sheet_peak(name, kind):
    assert E.peak_tflops(name) == kind


def test_every_named_kind_has_a_peak():
    assert all(E.peak_tflops(kind) for kind in E.GPU_KINDS)


def test_seconds_fits_and_reruns():
    flops = 65e12 * E.ASSUMED_UTILIZATION  # one second per step on a T4 by the estimate
    p = E.predict(flops, 600, gpu="Tesla T4", time_limit_s=900)
    assert p.seconds == pytest.approx(600) and p.fits and p.runs_needed == 1
    assert "Fits the time limit" in str(p) and "estimate" in str(p) and "65 TFLOPS dense fp16" in str(p)
    p = E.predict(flops, 880, gpu="T4", time_limit_s=900)
    assert p.fits and "little to spare (98% of it" in str(p) and "next run" in str(p)
    p = E.predict(flops, 2000, gpu="T4", time_limit_s=900)
    assert not p.fits and p.runs_needed == 3 and "about 3 runs" in str(p)
    p = E.predict(flops, 2000, gpu="T4", time_limit_s=None)
    assert p.fits and p.runs_needed == 1 and "no time limit" in str(p)
    p = E.predict(flops, 10, gpu="Some Future GPU", time_limit_s=900)
    assert p.seconds is None and p.fits is None and "unknown" in str(p)


def test_without_a_gpu_the_prediction_is_for_a_t4_and_says_so(monkeypatch):
    monkeypatch.setattr(E, "detect_gpu", lambda: None)
    p = E.predict(1e12, 100, time_limit_s=900)
    assert p.gpu == "T4" and p.stand_in and not p.detected and "NOT for this machine" in str(p)
    monkeypatch.setattr(E, "detect_gpu", lambda: "NVIDIA A100-SXM4-40GB")
    p = E.predict(1e12, 100, time_limit_s=900)
    assert p.detected and "this GPU (NVIDIA A100-SXM4-40GB)" in str(p)


def test_gan_step_counts_d_twice_forward_and_g_once_forward_and_backward():
    G = nn.Sequential(nn.ConvTranspose2d(4, 2, 4, 1, 0))          # z [B,4,1,1] -> [B,2,4,4]
    D = nn.Sequential(nn.Conv2d(2, 1, 4, 1, 0), nn.Flatten())    # [B,2,4,4] -> [B,1]
    batch = 3
    count = E.count_gan_step(G, D, batch, 4, (2, 4, 4))
    d_fwd = 2 * (2 * 16) * 1 * batch          # 2 * in*k*k * out per output pixel (1 pixel)
    g_fwd = 2 * 4 * 2 * 16 * batch            # every output pixel: 4 inputs x 2 channels
    # D phase: D fwd+wgrad on real, D fwd+wgrad on fake (no input grads); G forward once.
    # G phase: D fwd + wgrad + input grad, G wgrad (z needs no grad).
    expected = (2 * d_fwd) * 2 + g_fwd + 3 * d_fwd + g_fwd
    assert count.flops == expected


def test_memory_estimate_counts_weights_grads_adam_and_activations():
    layer = nn.Linear(100, 100)
    count = E.count_step(layer, torch.randn(8, 100))
    n = 100 * 100 + 100
    assert E.training_memory_gb(layer, count) == pytest.approx((16 * n + count.activation_bytes) / 1e9)
    assert count.activation_bytes >= 8 * 100 * 4  # at least the saved input
