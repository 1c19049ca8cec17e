"""Image datasets in their official layouts (week 0 registers them; the DCGAN track uses them).

MNIST and Fashion-MNIST are read straight from the IDX files (plain or ``.gz``, also named
``train-images.idx3-ubyte``) in torchvision's layout, ``MNIST/raw/`` and ``FashionMNIST/raw/``,
so a copy from anywhere (torchvision, the original site, Kaggle, Debian's
``dataset-fashion-mnist`` package) works.
The offline stand-in is scikit-learn's bundled 8x8 handwritten digits, upscaled to 28x28.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np
import torch
import torchvision
import torchvision.transforms.functional as TF
from PIL import Image
from sklearn.datasets import load_digits

from helpers.runtime import env

from .registry import (
    DataLayoutError,
    DatasetSpec,
    get_spec,
    is_registered,
    load_dataset,
    missing_files,
    register,
)

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
MAX_IDX_BYTES = 4 << 30  # MNIST's largest file is 47 MB


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (the MNIST format: magic, dims, raw data), plain or gzipped. The
    header is read first and never more than the data it declares (+1 byte, to find extra
    data) is decompressed, so a small ``.gz`` that expands to gigabytes is refused at once."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            magic = f.read(4)
            if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _IDX_DTYPES:
                raise DataLayoutError(f"{path} is not an IDX file (bad magic number). Fix: use the "
                                      f"original *-idx?-ubyte files, not converted images.")
            ndim = magic[3]
            header = f.read(4 * ndim)
            if ndim == 0 or len(header) < 4 * ndim:
                raise DataLayoutError(f"{path} has a broken IDX header ({ndim} dimensions declared, "
                                      f"{len(header) // 4} given). Fix: download it again.")
            dims = [int.from_bytes(header[4 * i: 4 * i + 4], "big") for i in range(ndim)]
            dtype = np.dtype(_IDX_DTYPES[magic[2]])
            expected = math.prod(dims) * dtype.itemsize  # Python integers: a huge header cannot wrap
            if expected > MAX_IDX_BYTES:
                raise DataLayoutError(f"{path} is corrupt: {expected} data bytes expected for shape "
                                      f"{tuple(dims)}, more than any MNIST-like file (at most "
                                      f"{MAX_IDX_BYTES >> 30} GiB). Fix: download it again.")
            body = f.read(expected + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataLayoutError(f"{path} cannot be read ({exc}). Fix: download it again.") from exc
    if len(body) != expected:
        raise DataLayoutError(f"{path} is truncated or corrupt: "
                              f"{'more than ' if len(body) > expected else ''}{min(len(body), expected)} "
                              f"data bytes, {expected} expected for shape {tuple(dims)}. Fix: download it again.")
    return np.frombuffer(body, dtype=dtype).reshape(dims)


def _idx_names(stem: str) -> tuple[str, ...]:
    """The accepted names of one IDX file, in the order they are looked for (the registry's
    layout and manifest use the same order): plain, gzipped, and the common spelling with a
    dot before ``idx`` (Kaggle and other copies: ``train-images.idx3-ubyte``)."""
    dot = stem.replace("-idx", ".idx")
    return (stem, stem + ".gz", dot, dot + ".gz")


def _idx_file(folder: Path, stem: str) -> Path:
    for name in _idx_names(stem):
        if (folder / name).is_file():
            return folder / name
    raise DataLayoutError(f"{folder} has none of {', '.join(_idx_names(stem))}")


def load_idx_folder(folder: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{"train": (images uint8 [N, 28, 28], labels int64 [N]), "test": (...)}``."""
    out = {}
    for split, (img_stem, lbl_stem) in IDX_FILES.items():
        img_path, lbl_path = _idx_file(folder, img_stem), _idx_file(folder, lbl_stem)
        images, labels = read_idx(img_path), read_idx(lbl_path)
        if images.dtype != np.uint8:
            raise DataLayoutError(f"{img_path} holds {images.dtype.name} values "
                                  f"({'float' if images.dtype.kind == 'f' else 'not 8-bit'}); MNIST-like images "
                                  f"are 8-bit (0-255). Fix: use the original file, not a converted one.")
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            raise DataLayoutError(f"{lbl_path} holds {labels.ndim} dimension(s) of {labels.dtype.name} "
                                  f"values; a labels file holds one dimension of whole numbers. Fix: "
                                  f"use the matching *-labels-idx1-ubyte file.")
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
        cls = getattr(torchvision.datasets, cls_name)
        for train in (True, False):
            cls(root=str(root), train=train, download=True)  # torchvision checks the MD5s

    return download


def _idx_layout() -> tuple[str, ...]:
    return tuple("|".join(_idx_names(stem)) for pair in IDX_FILES.values() for stem in pair)


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


# --------------------------------------------------------------------------- GAN-ready images
# DCGAN week 2: every dataset, one pipeline. Images become float tensors [C, S, S] in [-1, 1]
# ("scaled to the range of the tanh activation function", DCGAN §4).
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def to_gan_tensors(images: torch.Tensor, image_size: int, channels: int | None = None) -> torch.Tensor:
    """uint8 ``[N, H, W]`` or ``[N, H, W, C]`` -> float ``[N, C, S, S]`` in [-1, 1]
    (resized with antialiasing, grayscale repeated to 3 channels when asked)."""
    x = images.float() / 255.0
    x = x[:, None] if x.dim() == 3 else x.permute(0, 3, 1, 2)
    if x.size(1) == 4:  # RGBA: drop the alpha channel
        x = x[:, :3]
    if channels is not None and channels != x.size(1):
        if x.size(1) == 1 and channels == 3:
            x = x.expand(-1, 3, -1, -1)
        elif x.size(1) == 3 and channels == 1:
            x = (0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
        else:
            raise ValueError(f"cannot turn {x.size(1)}-channel images into {channels} channels. "
                             f"Fix: pass channels=1 (grayscale) or channels=3 (RGB), and build "
                             f"the nets with the same number (nc).")
    if x.shape[-2:] != (image_size, image_size):
        x = torch.nn.functional.interpolate(x, size=(image_size, image_size), mode="bilinear",
                                            antialias=True, align_corners=False)
    return (x.clamp(0, 1) * 2 - 1).contiguous()


def _to_8bit(im):
    """16-bit and float images (``I;16``, ``I``, ``F``: scans, medical and depth images) as
    8-bit grayscale. PIL's own ``convert("L")`` clips them at 255, which turns a 16-bit image
    almost entirely white."""
    if not (im.mode.startswith("I") or im.mode == "F"):
        return im
    a = np.asarray(im, dtype=np.float64)
    if im.mode == "F":
        top = 1.0 if a.max(initial=0) <= 1.0 else 255.0
    else:  # 16-bit PNGs open as I;16 or I: scale by the 16-bit range, 8-bit values stay
        top = 65535.0 if im.mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
    return Image.fromarray((np.clip(a / top, 0, 1) * 255).round().astype(np.uint8), mode="L")


class ImageFolderDataset(torch.utils.data.Dataset):
    """Every image file under ``root`` (sub-folders included): your own dataset, or CelebA's
    ``img_align_celeba/``. Images are converted to RGB (or grayscale with ``channels=1``),
    resized so the short side is ``image_size``, center-cropped, scaled to [-1, 1].

    Unreadable files are found up front (``check="open"`` reads each header, ``"full"``
    decodes every image) and reported by name, instead of crashing later inside a worker.
    """

    def __init__(self, root: str | Path, image_size: int = 64, channels: int = 3,
                 check: str = "open", limit: int | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataLayoutError(f"image folder {self.root} does not exist. Fix: point to the "
                                  f"folder that holds your .jpg/.png files.")
        files = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if limit is not None:
            files = files[:limit]
        if not files:
            raise DataLayoutError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under "
                                  f"{self.root}. Fix: put your images there (sub-folders are fine).")
        bad = []
        if check in ("open", "full"):
            for p in files:
                try:
                    with Image.open(p) as im:
                        if check == "full":
                            im.load()
                        else:
                            im.verify()
                except Exception as exc:  # PIL raises many types for broken files
                    bad.append(f"{p.relative_to(self.root)} ({type(exc).__name__})")
        if bad:
            shown = ", ".join(bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
            raise DataLayoutError(f"{len(bad)} unreadable image(s) in {self.root}: {shown}. Fix: "
                                  f"delete or re-save them; nothing was loaded.")
        self.files, self.image_size, self.channels = files, image_size, channels
        self.mode = "RGB" if channels == 3 else "L"

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        path = self.files[index]
        try:
            with Image.open(path) as im:
                im = _to_8bit(im).convert(self.mode)  # grayscale, palette, RGBA, CMYK, 16-bit
                im = TF.resize(im, self.image_size, antialias=True)
                im = TF.center_crop(im, [self.image_size, self.image_size])
                x = TF.to_tensor(im)
        except Exception as exc:
            raise DataLayoutError(f"cannot decode {path} ({type(exc).__name__}: {exc}). Fix: "
                                  f"delete or re-save that file.") from exc
        return x * 2 - 1


def load_cifar10_folder(folder: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """CIFAR-10's python layout, read (and MD5-checked) by torchvision: uint8 [N, 32, 32, 3]."""
    out = {}
    for split, train in (("train", True), ("test", False)):
        try:
            ds = torchvision.datasets.CIFAR10(root=str(folder.parent), train=train, download=False)
        except RuntimeError as exc:
            raise DataLayoutError(f"{folder} is corrupt or incomplete ({exc}). Fix: delete it "
                                  f"and download cifar-10-python.tar.gz again.") from exc
        out[split] = (torch.from_numpy(ds.data), torch.tensor(ds.targets))
    return out


def _cifar_download(root: Path) -> None:
    torchvision.datasets.CIFAR10(root=str(root), train=True, download=True)
    (root / "cifar-10-python.tar.gz").unlink(missing_ok=True)


def _celeba_download(root: Path) -> None:
    torchvision.datasets.CelebA(root=str(root), split="all", download=True)


CIFAR10 = register(DatasetSpec(
    name="cifar10",
    title="CIFAR-10",
    folder="cifar-10-batches-py",
    files=tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta"),
    source="torchvision.datasets.CIFAR10 (https://www.cs.toronto.edu/~kriz/cifar.html)",
    load=load_cifar10_folder,
    download=_cifar_download,
    standin=lambda **kw: digits_standin(**kw),
    size_hint="cifar-10-python.tar.gz, 163 MB, extracted here",
    aliases=("cifar-10",),
))

CELEBA = register(DatasetSpec(
    name="celeba",
    title="CelebA (aligned and cropped faces)",
    folder="celeba",
    files=("img_align_celeba/",),
    source="torchvision.datasets.CelebA (Google Drive; https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html)",
    load=lambda folder: folder / "img_align_celeba",
    download=_celeba_download,
    standin=lambda **kw: digits_standin(**kw),
    note="Google Drive often refuses automated downloads: get img_align_celeba.zip from the "
         "CelebA page and unzip it into the folder above.",
    size_hint="img_align_celeba.zip, 1.4 GB, 202,599 images",
))


def dataset_labels(dataset) -> torch.Tensor | None:
    """The class labels of a :func:`gan_dataset` result, or None when it has none (an image
    folder, e.g. CelebA or your own): label-dependent evaluations then switch to label-free
    ones (DCGAN week 4, final project)."""
    if isinstance(dataset, torch.utils.data.TensorDataset):
        return dataset.tensors[1] if len(dataset.tensors) > 1 else None
    item = dataset[0]
    if isinstance(item, (tuple, list)) and len(item) > 1:
        return torch.as_tensor([dataset[i][1] for i in range(len(dataset))])
    return None


def images_of(batch) -> torch.Tensor:
    """The images of a DataLoader batch, with or without labels: ``(images, labels)`` or
    ``images`` alone (an image folder)."""
    return batch[0] if isinstance(batch, (list, tuple)) else batch


def choose_dataset(source: str | Path, *, data_root: str | Path | None = None,
                   cache_root: str | Path | None = None) -> str | Path:
    """``"celeba|cifar10"`` (the DCGAN ``full`` default): the first of these data sets whose
    official layout is complete in the data folder (or in the download cache), else the last
    one, which :func:`load_dataset` then finds or downloads. Anything else is returned as is."""
    names = source.split("|") if isinstance(source, str) else []
    if len(names) < 2 or not all(is_registered(n) for n in names):
        return source
    data = Path(data_root) if data_root is not None else env.data_dir(must_exist=False)
    cache = Path(cache_root) if cache_root is not None else env.cache_dir()
    for name in names[:-1]:
        spec = get_spec(name)
        if not missing_files(spec, data) or not missing_files(spec, cache / spec.name):
            return name
    return names[-1]


def gan_dataset(source: str | Path, *, image_size: int = 64, channels: int | None = None,
                profile: str | None = None, split: str = "train", limit: int | None = None):
    """One loader for the DCGAN track (week 2): ``"mnist"``, ``"fashion_mnist"``,
    ``"cifar10"``, ``"celeba"``, a choice like ``"celeba|cifar10"`` (:func:`choose_dataset`)
    or the path of any folder of images.

    Returns ``(dataset, description)``; every item is a float tensor ``[C, S, S]`` in [-1, 1].
    Small datasets are converted once and kept in memory; image folders are read lazily.
    """
    source = choose_dataset(source)
    path = Path(source)
    if not (isinstance(source, str) and is_registered(source)):  # anything else: a folder of images
        ds = ImageFolderDataset(path, image_size, channels or 3, limit=limit)
        return ds, f"image folder {path}: {len(ds)} images"
    loaded = load_dataset(str(source), profile=profile)
    if not isinstance(loaded.data, Path):  # tensors: MNIST-like, CIFAR-10, any stand-in
        images, labels = loaded.data[split]
        if limit is not None:
            images, labels = images[:limit], labels[:limit]
        tensors = to_gan_tensors(images, image_size, channels)
        return (torch.utils.data.TensorDataset(tensors, labels),
                f"{loaded.describe()}: {len(tensors)} images, {tuple(tensors.shape[1:])}")
    # a folder of image files (CelebA): read lazily; headers are checked on first use
    ds = ImageFolderDataset(loaded.data, image_size, channels or 3, check="none", limit=limit)
    return ds, f"{loaded.describe()}: {len(ds)} images"
