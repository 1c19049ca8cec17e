"""Every branch of the data lookup: stand-in, local layout, cache, download, and each failure."""

import gzip
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.course.data import (
    ChecksumError,
    DataLayoutError,
    DatasetSpec,
    DataUnavailableError,
    load_dataset,
    register,
    registry,
)
from helpers.course.data.images import IDX_FILES, load_idx_folder, read_idx
from helpers.runtime import env

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def make_idx_layout(folder: Path, n_train=12, n_test=5, gz=False, skip=()):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        img, lbl = IDX_FILES[split]
        if img not in skip:
            write_idx(folder / img, rng.integers(0, 256, (n, 28, 28)), gz)
        if lbl not in skip:
            write_idx(folder / lbl, np.arange(n) % 10, gz)
    return folder


@pytest.fixture
def offline(monkeypatch):
    """No network at all: every name lookup fails, as on a machine without internet."""
    def no_network(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known (test: offline)")
    monkeypatch.setattr(socket, "getaddrinfo", no_network)


def test_smoke_profile_uses_the_offline_standin(clean_env, monkeypatch, offline):
    monkeypatch.setenv("CURRICULUM_PROFILE", "smoke")
    loaded = load_dataset("mnist")
    assert loaded.origin == "standin" and loaded.path is None
    images, labels = loaded.data["train"]
    assert images.shape[1:] == (28, 28) and images.dtype == torch.uint8
    assert len(images) == len(labels) == 1797 - 297
    assert set(labels.tolist()) == set(range(10))
    assert int(images.max()) > 200  # real strokes, not an empty stand-in


@pytest.mark.parametrize("gz", [False, True])
def test_local_official_layout_is_used_first(local, offline, gz):
    make_idx_layout(local / "MNIST" / "raw", gz=gz)
    loaded = load_dataset("mnist")
    assert loaded.origin == "local" and loaded.path == local / "MNIST" / "raw"
    images, labels = loaded.data["train"]
    assert images.shape == (12, 28, 28) and labels.tolist() == [i % 10 for i in range(12)]
    assert loaded.data["test"][0].shape == (5, 28, 28)


def test_incomplete_layout_names_the_missing_files(local, offline):
    make_idx_layout(local / "MNIST" / "raw", skip=("t10k-labels-idx1-ubyte",))
    with pytest.raises(DataLayoutError) as info:
        load_dataset("mnist")
    text = str(info.value)
    assert "missing t10k-labels-idx1-ubyte|t10k-labels-idx1-ubyte.gz" in text
    assert "train-images-idx3-ubyte" in text and str(local / "MNIST" / "raw") in text


def test_files_in_the_wrong_folder_are_found_and_named(local, offline):
    make_idx_layout(local / "mnist")  # one folder off: should be MNIST/raw
    with pytest.raises(DataLayoutError) as info:
        load_dataset("mnist")
    text = str(info.value)
    assert str(local / "mnist") in text and "move the files" in text
    assert str(local / "MNIST" / "raw") in text


def test_truncated_file_is_reported_by_name(local, offline):
    folder = make_idx_layout(local / "MNIST" / "raw")
    target = folder / "train-images-idx3-ubyte"
    target.write_bytes(target.read_bytes()[:-10])
    with pytest.raises(DataLayoutError, match="train-images-idx3-ubyte is truncated"):
        load_dataset("mnist")
    target.write_bytes(b"PNG not idx")
    with pytest.raises(DataLayoutError, match="not an IDX file"):
        read_idx(target)


def test_missing_data_dir_env_is_a_clear_error(clean_env, monkeypatch):
    monkeypatch.setenv("CURRICULUM_PROFILE", "local")
    monkeypatch.setenv("CURRICULUM_DATA_DIR", str(clean_env / "typo"))
    with pytest.raises(env.DataDirError, match="CURRICULUM_DATA_DIR=.*typo.* does not exist"):
        load_dataset("mnist")


def test_offline_download_says_what_to_put_where(local, offline):
    """The real torchvision download code, with the network gone."""
    with pytest.raises(DataUnavailableError) as info:
        load_dataset("mnist")
    text = str(info.value)
    assert "MNIST is not available" in text
    assert "download from torchvision.datasets.MNIST" in text and "failed" in text
    assert str(local / "MNIST" / "raw") in text and "train-images-idx3-ubyte" in text
    assert "CURRICULUM_PROFILE=smoke" in text and "CURRICULUM_DATA_DIR" in text
    cache = Path(os.environ["CURRICULUM_CACHE_DIR"])
    assert not cache.exists(), "the failed download left its (empty) cache folder behind"


def _fake_spec(name, downloads):
    """A dataset whose 'download' writes the official layout (stands for HF/torchvision)."""
    def download(root: Path):
        downloads.append(root)
        make_idx_layout(root / "Fake" / "raw", gz=True)

    return register(DatasetSpec(name=name, title=name.upper(), folder="Fake/raw",
                                files=registry.get_spec("mnist").files, source="https://example.invalid",
                                load=load_idx_folder, download=download))


def test_download_then_cache_with_checksums(local):
    downloads = []
    _fake_spec("fake_dl", downloads)
    first = load_dataset("fake_dl")
    assert first.origin == "download" and len(downloads) == 1
    cache = Path(os.environ["CURRICULUM_CACHE_DIR"]) / "fake_dl"
    assert (cache / registry.MANIFEST).is_file()
    second = load_dataset("fake_dl")
    assert second.origin == "cache" and len(downloads) == 1
    assert torch.equal(first.data["train"][0], second.data["train"][0])

    victim = cache / "Fake" / "raw" / "train-labels-idx1-ubyte.gz"
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF  # same size, different content
    victim.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="different SHA-256.*delete"):
        load_dataset("fake_dl")
    victim.write_bytes(b"short")
    with pytest.raises(ChecksumError, match="has 5 bytes"):
        load_dataset("fake_dl")


def test_local_copy_wins_over_cache_and_download(local):
    downloads = []
    _fake_spec("fake_local", downloads)
    make_idx_layout(local / "Fake" / "raw", n_train=3)
    loaded = load_dataset("fake_local")
    assert loaded.origin == "local" and not downloads and len(loaded.data["train"][1]) == 3


def test_download_switched_off(local):
    _fake_spec("fake_off", [])
    with pytest.raises(DataUnavailableError, match="downloads are switched off"):
        load_dataset("fake_off", allow_download=False)


def test_unknown_dataset_lists_the_registered_ones():
    with pytest.raises(registry.DataError, match="registered datasets: .*mnist"):
        load_dataset("imagenet-22k", profile="local")


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(),
                    reason="Debian package dataset-fashion-mnist not installed (CI installs it)")
def test_real_fashion_mnist_from_the_debian_package(local, offline):
    """The real loader on the real files, as a learner would copy them into data/."""
    target = local / "FashionMNIST" / "raw"
    target.mkdir(parents=True)
    for f in DEBIAN_FASHION.glob("*-ubyte.gz"):
        (target / f.name).symlink_to(f)
    loaded = load_dataset("fashion_mnist")
    assert loaded.origin == "local"
    images, labels = loaded.data["train"]
    assert images.shape == (60000, 28, 28) and loaded.data["test"][0].shape == (10000, 28, 28)
    assert torch.bincount(labels).tolist() == [6000] * 10


# --------------------------------------------------------------------------- issue #16
def test_a_plain_file_added_beside_a_downloaded_gz_is_refused(local):
    """The manifest covers the files the loader reads: the download wrote x.gz, the loader
    would prefer a plain x added later, so that x must not be read unchecked."""
    _fake_spec("fake_plain", [])
    assert load_dataset("fake_plain").origin == "download"
    cache = Path(os.environ["CURRICULUM_CACHE_DIR"]) / "fake_plain" / "Fake" / "raw"
    write_idx(cache / "train-labels-idx1-ubyte", np.full(12, 7))  # not from the download
    with pytest.raises(ChecksumError, match="train-labels-idx1-ubyte was not part of the download"):
        load_dataset("fake_plain")


def test_a_file_added_to_a_cached_folder_dataset_is_refused(local):
    from PIL import Image

    def download(root: Path):
        folder = root / "faces" / "images"
        folder.mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (i, 0, 0)).save(folder / f"{i}.png")

    register(DatasetSpec(name="fake_folder", title="FAKE", folder="faces", files=("images/",),
                         source="https://example.invalid", load=lambda folder: folder / "images",
                         download=download))
    assert load_dataset("fake_folder").origin == "download"
    cache = Path(os.environ["CURRICULUM_CACHE_DIR"]) / "fake_folder"
    assert load_dataset("fake_folder").origin == "cache"
    Image.new("RGB", (8, 8)).save(cache / "faces" / "images" / "added.png")
    with pytest.raises(ChecksumError, match="added.png was not part of the download"):
        load_dataset("fake_folder")


@pytest.fixture
def stalled_mirror():
    """A server on loopback that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield f"http://127.0.0.1:{server.getsockname()[1]}/"
    server.close()


def test_a_stalled_download_times_out_with_the_offline_message(local, monkeypatch, stalled_mirror):
    """The real torchvision download code against a mirror that never answers: without a
    timeout it would wait forever."""
    import threading

    import torchvision

    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", [stalled_mirror])
    monkeypatch.setattr(registry, "DOWNLOAD_TIMEOUT_S", 1.0, raising=False)
    outcome = []

    def load():
        try:
            load_dataset("mnist")
        except Exception as exc:  # noqa: BLE001 - checked below
            outcome.append(exc)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "load_dataset hung on a stalled mirror"
    assert isinstance(outcome[0], DataUnavailableError), outcome
    text = str(outcome[0])
    assert "MNIST is not available" in text and "timed out" in text
    assert "train-images-idx3-ubyte" in text and "CURRICULUM_PROFILE=smoke" in text


@pytest.mark.parametrize("header, why", [
    (bytes([0, 0, 0x08, 3]) + b"".join(d.to_bytes(4, "big") for d in (2**31, 2**31, 4)),
     "expected for shape"),  # 2^64 bytes: an int64 product wraps to 0 = the empty body
    (bytes([0, 0, 0x08, 3]) + (5).to_bytes(4, "big"), "header"),  # 3 dimensions, 1 given
])
def test_malformed_idx_headers_are_layout_errors(tmp_path, header, why):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(header)
    with pytest.raises(DataLayoutError, match=why):
        read_idx(path)


def test_mnist_files_named_with_a_dot_load(local, offline):
    """Kaggle and other copies name them train-images.idx3-ubyte (dot before idx)."""
    folder = make_idx_layout(local / "MNIST" / "raw")
    for p in folder.iterdir():
        p.rename(p.with_name(p.name.replace("-idx", ".idx")))
    loaded = load_dataset("mnist")
    assert loaded.origin == "local" and loaded.data["train"][0].shape == (12, 28, 28)
