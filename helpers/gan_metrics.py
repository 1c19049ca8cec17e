"""Measuring a GAN (DCGAN track, weeks 0, 4 and the final project).

- :class:`SmallClassifier` + :func:`train_classifier`: a CNN written in week 0; later it
  labels generated digits (mode coverage) and gives features for the *offline* FID stand-in.
- :func:`frechet_distance`: the FID formula on any features; :func:`pixel_features` gives
  label-free ones (small thumbnails) for data sets without labels.
- :func:`inception_fid`: the real FID (Inception-v3 features via ``torchmetrics``; needs the
  Inception weights, downloaded once).
- :func:`diversity_report`: mode-collapse diagnostics, each with what to change when it fires.
- :func:`linear_probe`: the paper's §5.1 protocol: a linear L2-SVM on frozen features.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import linalg
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from torch import nn


class SmallClassifier(nn.Module):
    """Two conv blocks and a linear layer: enough for digits and Fashion-MNIST (week 0)."""

    def __init__(self, nc: int = 1, n_classes: int = 10, image_size: int = 32):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(nc, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * (image_size // 4) ** 2, 128), nn.ReLU(),
        )
        self.head = nn.Linear(128, n_classes)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.body(x))


def train_classifier(model: nn.Module, dataset, *, epochs: int, batch_size: int = 128,
                     lr: float = 1e-3, device="cpu", seed: int = 0) -> list[float]:
    """A plain supervised training loop (week 0); returns the loss of every batch."""
    g = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=g)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.to(device).train()
    losses = []
    for _ in range(epochs):
        for x, y in loader:
            loss = F.cross_entropy(model(x.to(device)), y.to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return losses


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 512, features: bool = False):
    model.eval()
    outs = []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size]
        outs.append(model.features(x) if features else model(x).argmax(-1))
    return torch.cat(outs)


def frechet_distance(feats_a: torch.Tensor, feats_b: torch.Tensor) -> float:
    """``||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2})`` (Heusel et al., 2017): FID when
    the features are Inception-v3 pool features, a stand-in score with any other features."""
    a = feats_a.double().cpu().numpy()
    b = feats_b.double().cpu().numpy()
    mu_a, mu_b = a.mean(0), b.mean(0)
    ridge = np.eye(a.shape[1]) * 1e-6  # keeps sqrtm defined when a set has no spread
    s_a, s_b = np.cov(a, rowvar=False) + ridge, np.cov(b, rowvar=False) + ridge
    covmean = linalg.sqrtm(s_a @ s_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * covmean))


def pixel_features(images: torch.Tensor, size: int = 8) -> torch.Tensor:
    """Label-free features for :func:`frechet_distance`: each image average-pooled to a
    ``size`` x ``size`` thumbnail and flattened (week 4, for image folders without labels). It
    compares coarse layout, brightness and colour only; not comparable with any FID."""
    return F.adaptive_avg_pool2d(images.float(), size).flatten(1)


def inception_fid(real: torch.Tensor, fake: torch.Tensor, *, device="cpu", batch_size: int = 200) -> float:
    """FID with Inception-v3 features (torchmetrics). Images in [-1, 1], 1 or 3 channels.

    Needs the Inception weights (about 100 MB), downloaded on first use; offline, use
    :func:`frechet_distance` on your own classifier's features instead (and say so: those
    numbers are *not* comparable with published FIDs).
    """
    from torchmetrics.image.fid import FrechetInceptionDistance  # noqa: PLC0415 - Inception code, only for real FID

    fid = FrechetInceptionDistance(feature=2048, normalize=True).to(device)
    for images, is_real in ((real, True), (fake, False)):
        for start in range(0, len(images), batch_size):
            x = (images[start:start + batch_size].to(device) + 1) / 2
            if x.size(1) == 1:
                x = x.expand(-1, 3, -1, -1)
            fid.update(x.clamp(0, 1), real=is_real)
    return float(fid.compute())


def diversity_report(fake: torch.Tensor, real: torch.Tensor, classifier: nn.Module | None = None,
                     n_classes: int = 10) -> dict:
    """Mode-collapse diagnostics (week 4). Returns numbers and a list of ``warnings``, each
    naming what to try.

    - ``pairwise_ratio``: mean distance between generated images / the same for real ones
      (collapse drives it towards 0);
    - ``duplicates``: share of generated images nearly identical to another one;
    - ``classes_covered`` / ``class_entropy``: with a classifier, how many classes G produces.
    """
    def mean_pairwise(x):
        x = x.flatten(1)[:500]
        d = torch.cdist(x, x)
        n = len(x)
        return float(d.sum() / (n * (n - 1))), d

    fake_pair, d = mean_pairwise(fake)
    real_pair, _ = mean_pairwise(real)
    d = d + torch.eye(len(d)) * 1e9
    scale = real_pair or 1.0
    report = {
        "pairwise_ratio": fake_pair / scale,
        "duplicates": float((d.min(1).values < 0.05 * scale).float().mean()),
        "warnings": [],
    }
    if classifier is not None:
        labels = predict(classifier, fake)
        counts = torch.bincount(labels, minlength=n_classes).float()
        p = counts / counts.sum()
        report["classes_covered"] = int((counts >= max(1, 0.02 * len(labels))).sum())
        report["class_entropy"] = float(-(p[p > 0] * p[p > 0].log()).sum() / np.log(n_classes))
        report["class_histogram"] = counts.int().tolist()
        if report["classes_covered"] < n_classes * 0.7:
            report["warnings"].append(
                f"only {report['classes_covered']} of {n_classes} classes appear: mode collapse. "
                "Try: lower G's learning rate or train D more, check BatchNorm is in both nets, "
                "add noise/label smoothing to D's targets, or restart from an earlier checkpoint.")
    if report["pairwise_ratio"] < 0.5:
        report["warnings"].append(
            f"generated images are {report['pairwise_ratio']:.2f}x as varied as real ones: "
            "collapse. Try a lower learning rate, beta1=0.5, or a fresh seed.")
    if report["duplicates"] > 0.1:
        report["warnings"].append(
            f"{report['duplicates']:.0%} of samples have a near-duplicate: G is repeating itself.")
    return report


def linear_probe(train_x, train_y, test_x, test_y, *, C: float = 0.01, max_iter: int = 2000) -> float:
    """§5.1: "a regularized linear L2-SVM classifier" on frozen features; returns test accuracy."""
    clf = make_pipeline(StandardScaler(), LinearSVC(C=C, max_iter=max_iter))
    clf.fit(np.asarray(train_x, dtype=np.float32), np.asarray(train_y))
    return float((clf.predict(np.asarray(test_x, dtype=np.float32)) == np.asarray(test_y)).mean())
