"""Data loaders on valid-but-unusual and broken files (issue #24): lines split on "\\n" only,
UTF-8 with a BOM read, every broken file refused by name with a DataError, IDX files read
header first and never decompressed beyond what the header promises."""

from __future__ import annotations

import gzip
import json
import tracemalloc

import numpy as np
import pytest

from helpers.course.data import DataError, DataLayoutError
from helpers.course.data.images import IDX_FILES, load_idx_folder, read_idx
from helpers.course.data.registry import MANIFEST, ChecksumError, get_spec, verify_manifest
from helpers.course.data.text import load_glue_sst2, load_parallel_folder, load_summarization_folder

ODD = ["a\u2028b", "c\u0085d", "e\x0cf", "g\x1ch", "i\x1dj", "k\x1el"]  # not line ends in these formats


def _sst2(folder, rows, raw=None):
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("train.tsv", "dev.tsv"):
        data = raw if raw is not None else ("sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in rows)).encode()
        (folder / name).write_bytes(data)
    return folder


def test_tsv_lines_split_on_newline_only(tmp_path):
    rows = [(s, i % 2) for i, s in enumerate(ODD)]
    out = load_glue_sst2(_sst2(tmp_path / "sst", rows))
    assert out["train"] == rows


def test_jsonl_lines_split_on_newline_only(tmp_path):
    folder = tmp_path / "cnn"
    folder.mkdir()
    rows = [{"article": s, "highlights": s[::-1]} for s in ODD]
    for split in ("train", "validation", "test"):
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        (folder / f"{split}.jsonl").write_text(text, encoding="utf-8")
    out = load_summarization_folder(folder)
    assert out["train"] == [(r["article"], r["highlights"]) for r in rows]


def test_parallel_text_lines_split_on_newline_only(tmp_path):
    folder = tmp_path / "par"
    folder.mkdir()
    for split in ("train", "val", "test"):
        (folder / f"{split}.en").write_text("".join(s + "\n" for s in ODD) + "last\r\n", encoding="utf-8")
        (folder / f"{split}.de").write_text("".join(s.upper() + "\n" for s in ODD) + "LAST\r\n", encoding="utf-8")
    out = load_parallel_folder(folder)
    assert out["train"] == [(s, s.upper()) for s in ODD] + [("last", "LAST")]


def test_a_utf8_bom_is_read(tmp_path):
    out = load_glue_sst2(_sst2(tmp_path / "sst", [], raw=b"\xef\xbb\xbfsentence\tlabel\ngood\t1\n"))
    assert out["train"] == [("good", 1)]
    folder = tmp_path / "cnn"
    folder.mkdir()
    for split in ("train", "validation", "test"):
        (folder / f"{split}.jsonl").write_bytes(b'\xef\xbb\xbf{"article": "a", "highlights": "b"}\n')
    assert load_summarization_folder(folder)["test"] == [("a", "b")]
    par = tmp_path / "par"
    par.mkdir()
    for split in ("train", "val", "test"):
        (par / f"{split}.en").write_bytes(b"\xef\xbb\xbfHello\n")
        (par / f"{split}.de").write_bytes(b"\xef\xbb\xbfHallo\n")
    assert load_parallel_folder(par)["train"] == [("Hello", "Hallo")]


def test_invalid_utf8_is_refused_by_name(tmp_path):
    folder = _sst2(tmp_path / "sst", [], raw=b"sentence\tlabel\nbad \xff byte\t1\n")
    with pytest.raises(DataLayoutError, match=r"train\.tsv.*UTF-8"):
        load_glue_sst2(folder)
    cnn = tmp_path / "cnn"
    cnn.mkdir()
    for split in ("train", "validation", "test"):
        (cnn / f"{split}.jsonl").write_bytes(b'{"article": "\xff", "highlights": "b"}\n')
    with pytest.raises(DataLayoutError, match=r"train\.jsonl.*UTF-8"):
        load_summarization_folder(cnn)


def test_deeply_nested_json_is_refused_by_name(tmp_path):
    cnn = tmp_path / "cnn"
    cnn.mkdir()
    for split in ("train", "validation", "test"):
        (cnn / f"{split}.jsonl").write_text("[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(DataLayoutError, match=r"train\.jsonl, line 1"):
        load_summarization_folder(cnn)


@pytest.mark.parametrize("content", [b"not json at all", b'{"dataset": "mnist"}', b"[" * 100_000, b"\xff\xfe"])
def test_a_corrupt_cache_manifest_is_refused_by_name(tmp_path, content):
    (tmp_path / MANIFEST).write_bytes(content)
    with pytest.raises(ChecksumError) as info:
        verify_manifest(get_spec("mnist"), tmp_path)
    assert MANIFEST in str(info.value) and "Fix:" in str(info.value)


def _idx_header(dtype_code, shape):
    return bytes([0, 0, dtype_code, len(shape)]) + b"".join(int(d).to_bytes(4, "big") for d in shape)


def test_a_small_gz_that_expands_far_beyond_its_header_is_refused_early(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(_idx_header(0x08, (10,)) + bytes(10))
        chunk = bytes(1 << 20)
        for _ in range(64):  # 64 MiB of zeros after a 10-label header: ~64 kB on disk
            f.write(chunk)
    tracemalloc.start()
    try:
        with pytest.raises(DataLayoutError, match=r"train-labels-idx1-ubyte\.gz"):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"{peak / 2**20:.0f} MiB read for a 10-byte file"


@pytest.mark.robustness
def test_a_gz_bomb_of_one_gib_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(_idx_header(0x08, (10,)) + bytes(10))
        chunk = bytes(1 << 24)
        for _ in range(64):
            f.write(chunk)
    tracemalloc.start()
    try:
        with pytest.raises(DataLayoutError):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20


def _mnist(folder, images, labels, image_code=0x08, label_code=0x08):
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        img_name, lbl_name = IDX_FILES[split]
        (folder / img_name).write_bytes(_idx_header(image_code, images.shape) + images.tobytes())
        (folder / lbl_name).write_bytes(_idx_header(label_code, labels.shape) + labels.tobytes())
    return folder


def test_labels_with_three_dimensions_are_refused_by_name(tmp_path):
    folder = _mnist(tmp_path / "m", np.zeros((4, 28, 28), np.uint8), np.zeros((4, 2, 2), np.uint8))
    with pytest.raises(DataLayoutError, match=r"train-labels-idx1-ubyte.*dimension"):
        load_idx_folder(folder)


def test_float_images_are_refused_by_name(tmp_path):
    folder = _mnist(tmp_path / "m", np.zeros((4, 28, 28), ">f4"), np.zeros(4, np.uint8), image_code=0x0D)
    with pytest.raises(DataLayoutError, match=r"train-images-idx3-ubyte.*float"):
        load_idx_folder(folder)


def test_float_labels_are_refused_by_name(tmp_path):
    folder = _mnist(tmp_path / "m", np.zeros((4, 28, 28), np.uint8), np.zeros(4, ">f4"), label_code=0x0D)
    with pytest.raises(DataLayoutError, match=r"train-labels-idx1-ubyte"):
        load_idx_folder(folder)


def test_a_valid_idx_folder_still_loads(tmp_path):
    folder = _mnist(tmp_path / "m", np.arange(4 * 28 * 28, dtype=np.uint8).reshape(4, 28, 28) % 255,
                    np.arange(4, dtype=np.uint8))
    out = load_idx_folder(folder)
    assert out["train"][0].shape == (4, 28, 28) and out["train"][1].tolist() == [0, 1, 2, 3]


def test_a_pair_with_an_empty_side_is_dropped_and_reported(tmp_path, capsys):
    folder = tmp_path / "par"
    folder.mkdir()
    for split in ("train", "val", "test"):
        (folder / f"{split}.en").write_text("Hello\n\nBye\n\nBlank\n", encoding="utf-8")
        (folder / f"{split}.de").write_text("Hallo\nNur Ziel\nTschüss\n\n   \n", encoding="utf-8")
    out = load_parallel_folder(folder)
    assert out["train"] == [("Hello", "Hallo"), ("Bye", "Tschüss")]
    said = capsys.readouterr().out
    assert "train.en" in said and "2" in said and "line" in said, said


def test_every_data_error_names_its_file(tmp_path):
    """The base class is what a notebook catches."""
    assert issubclass(DataLayoutError, DataError) and issubclass(ChecksumError, DataError)
