"""Image datasets in their official layouts (week 0 registers them; the DCGAN track uses them).

MNIST and Fashion-MNIST are read straight from the IDX files (plain or ``.gz``) in
torchvision's layout, ``MNIST/raw/`` and ``FashionMNIST/raw/``, so a copy from anywhere
(torchvision, the original site, Debian's ``dataset-fashion-mnist`` package) works.
The offline stand-in is scikit-learn's bundled 8x8 handwritten digits, upscaled to 28x28.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from .registry import DataLayoutError, DatasetSpec, register

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (the MNIST format: magic, dims, raw data), plain or gzipped."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise DataLayoutError(f"{path} cannot be read ({exc}). Fix: download it again.") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataLayoutError(f"{path} is not an IDX file (bad magic number). Fix: use the "
                              f"original *-idx?-ubyte files, not converted images.")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    body = raw[4 + 4 * ndim:]
    if len(body) != expected:
        raise DataLayoutError(f"{path} is truncated or corrupt: {len(body)} data bytes, "
                              f"{expected} expected for shape {tuple(dims)}. Fix: download it again.")
    return np.frombuffer(body, dtype=dtype).reshape(dims)


def _idx_file(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise DataLayoutError(f"{folder} has neither {stem} nor {stem}.gz")


def load_idx_folder(folder: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{"train": (images uint8 [N, 28, 28], labels int64 [N]), "test": (...)}``."""
    out = {}
    for split, (img_stem, lbl_stem) in IDX_FILES.items():
        images = read_idx(_idx_file(folder, img_stem))
        labels = read_idx(_idx_file(folder, lbl_stem))
        if images.ndim != 3 or len(images) != len(labels):
            raise DataLayoutError(
                f"{folder}: {split} images have shape {images.shape} but {len(labels)} labels; "
                f"the image and label files must come from the same release."
            )
        out[split] = (torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64)))
    return out


def digits_standin(size: int = 28, n_test: int = 297) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """scikit-learn's 1,797 bundled 8x8 digits, upscaled to ``size`` x ``size`` uint8 images
    (offline, no download: the smoke profile's stand-in for MNIST-like data)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.from_numpy(digits.images).float().unsqueeze(1) / 16.0  # [N, 1, 8, 8] in [0, 1]
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    images = (x.squeeze(1).clamp(0, 1) * 255).round().to(torch.uint8)
    labels = torch.from_numpy(digits.target.astype(np.int64))
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(labels), generator=g)
    test, train = order[:n_test], order[n_test:]
    return {"train": (images[train], labels[train]), "test": (images[test], labels[test])}


def _torchvision_download(cls_name: str):
    def download(root: Path) -> None:
        import torchvision

        cls = getattr(torchvision.datasets, cls_name)
        for train in (True, False):
            cls(root=str(root), train=train, download=True)  # torchvision checks the MD5s

    return download


def _idx_layout() -> tuple[str, ...]:
    return tuple(f"{stem}|{stem}.gz" for pair in IDX_FILES.values() for stem in pair)


MNIST = register(DatasetSpec(
    name="mnist",
    title="MNIST",
    folder="MNIST/raw",
    files=_idx_layout(),
    source="torchvision.datasets.MNIST (http://yann.lecun.com/exdb/mnist/ and mirrors)",
    load=lambda folder: load_idx_folder(folder),
    download=_torchvision_download("MNIST"),
    standin=lambda **kw: digits_standin(**kw),
    size_hint="4 files, 11 MB",
))

FASHION_MNIST = register(DatasetSpec(
    name="fashion_mnist",
    title="Fashion-MNIST",
    folder="FashionMNIST/raw",
    files=_idx_layout(),
    source="torchvision.datasets.FashionMNIST (https://github.com/zalandoresearch/fashion-mnist)",
    load=lambda folder: load_idx_folder(folder),
    download=_torchvision_download("FashionMNIST"),
    standin=lambda **kw: digits_standin(**kw),
    note="Debian's package dataset-fashion-mnist installs the same files in "
         "/usr/share/datasets/fashion-mnist/; copy them into the folder above.",
    size_hint="4 files, 30 MB",
    aliases=("fashion-mnist", "fashionmnist"),
))
