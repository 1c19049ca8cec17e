"""Nothing saved is silently corrupted or lost (issue #24): checkpoints carry a SHA-256 that is
checked before loading, a corrupt one is refused with a message that lists only files that
exist, a rerun keeps the weight snapshots, and read-only folders and files are refused by name.

The byte-flip sweeps flip one byte at a time (XOR 0xFF) and require each flipped file to be
either refused with a CheckpointError or to load exactly the same weights, step and config."""

from __future__ import annotations

import os
import stat
import zipfile

import pytest
import torch

from helpers.runtime import files
from helpers.runtime.checkpoints import CheckpointError, atomic_save, load_checkpoint, save_checkpoint
from helpers.runtime.run import ResumableRun, snapshot_paths


def _model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))


def _checkpoint(path):
    model = _model()
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 8)).sum().backward()
    opt.step()
    save_checkpoint(path, model=model, step=7, config={"width": 8}, optimizer=opt)
    return model


def _sweep(path, positions):
    """Flip each byte in ``positions``; return (refused, identical, silently changed) counts."""
    reference = load_checkpoint(path, restore_rng=False)
    data = path.read_bytes()
    flipped = path.with_name("flipped.pt")
    refused = identical = changed = 0
    model = _model(seed=1)
    for i in positions:
        flipped.write_bytes(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:])
        for p in model.parameters():
            p.data.fill_(0.5)
        try:
            state = load_checkpoint(flipped, model=model, restore_rng=False)
        except CheckpointError:
            refused += 1
            continue
        same = (state["step"] == reference["step"] and state["config"] == reference["config"]
                and all(torch.equal(a, reference["model"][k]) for k, a in model.state_dict().items()))
        identical += same
        changed += not same
    return refused, identical, changed


def test_checkpoint_has_a_checksum_and_a_flipped_byte_is_refused(tmp_path):
    path = tmp_path / "ckpt.pt"
    _checkpoint(path)
    assert files.checksum_status(path) == "verified"
    data = path.read_bytes()
    step = max(1, len(data) // 300)  # about 300 positions spread over the whole file
    refused, identical, changed = _sweep(path, range(0, len(data), step))
    print(f"{len(data)}-byte checkpoint, {len(range(0, len(data), step))} flips: {refused} refused, "
          f"{identical} loaded identical weights, {changed} loaded changed weights")
    assert changed == 0


@pytest.mark.robustness
def test_every_byte_flip_of_a_checkpoint_is_refused_or_harmless(tmp_path):
    path = tmp_path / "ckpt.pt"
    _checkpoint(path)
    refused, identical, changed = _sweep(path, range(path.stat().st_size))
    print(f"every byte of a {path.stat().st_size}-byte checkpoint: {refused} refused, "
          f"{identical} identical, {changed} changed")
    assert changed == 0 and refused > 0


def _unsealed(path):
    """A checkpoint as written before issue #24: plain torch.save, no checksum."""
    model = _model()
    torch.save({"format": 1, "step": 7, "model": model.state_dict(), "config": {"width": 8},
                "extra": {}}, path)
    return model


def test_an_old_checkpoint_without_checksum_loads_after_the_zip_crc_check(tmp_path):
    path = tmp_path / "old.pt"
    model = _unsealed(path)
    assert files.checksum_status(path) == "crc"
    fresh = _model(seed=1)
    load_checkpoint(path, model=fresh, restore_rng=False)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values()))
    # its tensors are covered by the zip's CRC-32s: a flip in a data record is refused
    with zipfile.ZipFile(path) as z:
        info = next(i for i in z.infolist() if "/data/" in i.filename and i.file_size >= 32)
    data = bytearray(path.read_bytes())
    data[info.header_offset + 30 + len(info.filename.encode()) + info.file_size // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="CRC|corrupt"):
        load_checkpoint(path, model=_model(), restore_rng=False)


@pytest.mark.robustness
def test_every_byte_flip_of_an_old_checkpoint_is_refused_or_harmless(tmp_path):
    path = tmp_path / "old.pt"
    _unsealed(path)
    refused, identical, changed = _sweep(path, range(path.stat().st_size))
    print(f"unsealed checkpoint, every byte: {refused} refused, {identical} identical, {changed} changed")
    assert changed == 0


def _train(path, steps, keep=2):
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    run = ResumableRun(path, steps=steps, config={"width": 8}, model=model, optimizer=opt,
                       every=2, keep=keep)
    for _ in run:
        opt.zero_grad()
        model(torch.randn(4, 8)).pow(2).mean().backward()
        opt.step()
    return run


def test_a_corrupt_checkpoint_names_only_existing_files_and_a_rerun_keeps_the_snapshots(tmp_path):
    path = tmp_path / "run.pt"
    _train(path, steps=6)
    snapshots = {p.name: p.read_bytes() for p in snapshot_paths(path)}
    assert len(snapshots) == 2
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as info:
        _train(path, steps=6)
    message = str(info.value)
    assert str(path) in message and "checksum" in message
    assert "earlier one" not in message  # there is no earlier checkpoint to resume from
    for name in snapshots:  # what exists is listed
        assert name in message
    # follow the advice: move the corrupt file away and run again
    os.replace(path, tmp_path / "run.pt.corrupt")
    _train(path, steps=6)
    kept = {p.name: p.read_bytes() for p in tmp_path.rglob("*.pt") if p.parent != tmp_path}
    assert all(data in kept.values() for data in snapshots.values()), "old snapshots were deleted"


def test_a_corrupt_checkpoint_without_snapshots_says_there_is_no_other_file(tmp_path):
    path = tmp_path / "ckpt.pt"
    _checkpoint(path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, model=_model(), restore_rng=False)
    message = str(info.value)
    assert "earlier one" not in message and "no other checkpoint" in message
    assert "Fix:" in message


def test_a_read_only_folder_is_refused_by_name(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(CheckpointError) as info:
            save_checkpoint(folder / "ckpt.pt", model=_model(), step=1)
    finally:
        folder.chmod(0o755)
    message = str(info.value)
    assert str(folder) in message and "read-only" in message and "Fix:" in message
    assert ".tmp" not in message
    assert list(folder.iterdir()) == []


def test_a_read_only_checkpoint_is_not_replaced(tmp_path):
    path = tmp_path / "ckpt.pt"
    _checkpoint(path)
    before = path.read_bytes()
    path.chmod(0o444)
    with pytest.raises(CheckpointError) as info:
        save_checkpoint(path, model=_model(seed=3), step=8)
    assert str(path) in str(info.value) and "read-only" in str(info.value)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]
    with pytest.raises(CheckpointError):
        atomic_save({"x": torch.zeros(1)}, path)
    assert path.read_bytes() == before
