"""The catalogue of learner mistakes (issue #7): each bad input ends in ONE clear message that
names the fix, leaves no partial output behind and overwrites nothing.

Every case below sets up a folder (data, cache and runs all live in one tmp folder, plus a
sentinel file and, where a run is involved, an existing good checkpoint), snapshots every
file's bytes, triggers the mistake, and then checks

- the exception type and that its message contains the fix (the ``fix`` patterns);
- no file or folder appeared (no ``*.tmp``, no half-written cache folder) and no file changed.

The cases are grouped under the items of the issue's list (``CATALOGUE``) and every one of them
is run. Some are also tested next to their code (test_data.py, test_config.py, ...); this
file is the one list. The last test runs a notebook twice in one kernel.
"""

from __future__ import annotations

import hashlib
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.course.data import DataLayoutError, DataUnavailableError, load_dataset
from helpers.course.data.images import IDX_FILES, ImageFolderDataset, gan_dataset
from helpers.course.data.text import load_parallel_folder, synthetic_translation
from helpers.runtime import env
from helpers.runtime.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from helpers.runtime.config import ProfileError, get_profile, profile_config
from helpers.runtime.failures import NonFiniteLossError, TrainingOutOfMemoryError

CPU = torch.device("cpu")


# --------------------------------------------------------------------------- building blocks
def _idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _mnist_files(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 6), ("test", 3)):
        images, labels = IDX_FILES[split]
        _idx(folder / images, np.zeros((n, 28, 28)))
        _idx(folder / labels, np.arange(n) % 10)


def _parallel(folder: Path, **splits: tuple[list[str], list[str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for stem, (en, de) in splits.items():
        (folder / f"{stem}.en").write_text("".join(s + "\n" for s in en), encoding="utf-8")
        (folder / f"{stem}.de").write_text("".join(s + "\n" for s in de), encoding="utf-8")
    return folder


def _images(folder: Path, modes=("RGB",), size=(20, 24), broken=()) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, mode in enumerate(modes):
        depth = {"RGB": 3, "RGBA": 4}.get(mode)
        shape = size + ((depth,) if depth else ())
        array = rng.integers(0, 255, shape, dtype=np.uint8)
        if mode == "I;16":
            array = array.astype(np.uint16) * 257
        image = Image.fromarray(array)  # RGB, RGBA, L or I;16 from the array's shape and dtype
        if mode in ("P", "CMYK"):
            image = image.convert(mode)
        image.save(folder / f"img{i}.{'jpg' if mode == 'CMYK' else 'png'}")
    for name in broken:
        (folder / name).write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return folder


def _dcgan_cfg(**overrides):
    values = dict(image_size=16, ngf=4, ndf=4, nz=8, batch_size=8, train_steps=6, log_every=1,
                  channels=1)
    return profile_config("dcgan", "smoke", **{**values, **overrides})


def _gan_loader(n=24, channels=1, size=16, batch_size=8):
    images = torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, torch.zeros(n)),
                                       batch_size=batch_size, shuffle=True, drop_last=True,
                                       generator=torch.Generator().manual_seed(0))


def _good_dcgan_run(root: Path, **cfg):
    """A finished short run: its checkpoint is the learner's work that must survive."""
    from helpers.dcgan import build_dcgan, train_dcgan

    cfg = _dcgan_cfg(**cfg)
    env.seed_everything(0)
    G, D = build_dcgan(cfg, nc=cfg.channels)
    ckpt = root / "runs" / "dcgan" / "ckpt.pt"
    train_dcgan(G, D, _gan_loader(channels=cfg.channels), cfg.replace(checkpoint_every=2), device=CPU,
                checkpoint_path=ckpt, stop_after=4)
    return ckpt


def _resume_dcgan(ckpt, **cfg):
    from helpers.dcgan import build_dcgan, train_dcgan

    cfg = _dcgan_cfg(**cfg)
    G, D = build_dcgan(cfg, nc=cfg.channels)
    return lambda: train_dcgan(G, D, _gan_loader(channels=cfg.channels), cfg.replace(checkpoint_every=1),
                               device=CPU, checkpoint_path=ckpt)


def _translation_setup(root: Path, **overrides):
    from helpers.translation import prepare_translation

    cfg = profile_config("translation", "smoke", **{**dict(train_steps=8, eval_every=4, max_tokens=300,
                                                            d_model=32, d_ff=64), **overrides})
    data = prepare_translation(synthetic_translation(120, 10, 10), 200, name="bad-inputs")
    return cfg, data


def _train_translation(cfg, data, ckpt, every=2, **kw):
    from helpers.translation import build_model, train_translation

    env.seed_everything(0)
    model = build_model(cfg, data.tokenizer.vocab_size)
    return lambda: train_translation(model, data, cfg.replace(log_every=1, checkpoint_every=every), device=CPU,
                                     checkpoint_path=ckpt, **kw)


# --------------------------------------------------------------------------- the cases
def data_dir_missing(root, mp):
    mp.setenv("CURRICULUM_PROFILE", "local")
    mp.setenv("CURRICULUM_DATA_DIR", str(root / "dta"))  # a typo
    return lambda: load_dataset("mnist")


def wrong_layout(root, mp):
    mp.setenv("CURRICULUM_PROFILE", "local")
    mp.setenv("CURRICULUM_DATA_DIR", str(root / "data"))
    _mnist_files(root / "data" / "mnist")  # should be MNIST/raw
    return lambda: load_dataset("mnist", allow_download=False)


def misaligned_lines(root, mp):
    folder = _parallel(root / "corpus", train=(["a", "b", "c"], ["x", "y"]), val=(["a"], ["x"]),
                       test=(["a"], ["x"]))
    return lambda: load_parallel_folder(folder)


def empty_text_split(root, mp):
    folder = _parallel(root / "corpus", train=(["a"], ["x"]), val=([], []), test=(["a"], ["x"]))
    return lambda: load_parallel_folder(folder)


def empty_image_folder(root, mp):
    (root / "faces").mkdir()
    (root / "faces" / "notes.txt").write_text("no images here")
    return lambda: gan_dataset(str(root / "faces"), image_size=16)


def fewer_images_than_a_batch(root, mp):
    from helpers.dcgan import build_dcgan, train_dcgan

    cfg = _dcgan_cfg()
    G, D = build_dcgan(cfg, nc=1)
    loader = _gan_loader(n=5, batch_size=8)  # drop_last: zero batches, an endless loop before
    return lambda: train_dcgan(G, D, loader, cfg, device=CPU, checkpoint_path=root / "runs" / "c.pt")


def corrupt_image(root, mp):
    folder = _images(root / "faces", modes=("RGB", "RGB"), broken=("broken.png",))
    return lambda: ImageFolderDataset(folder, 16)


def grayscale_rgb_mix(root, mp):
    """A folder mixing RGB, RGBA, palette, grayscale and 16-bit grayscale loads as one mode;
    data whose channels do not match the nets stops with the fix."""
    from helpers.dcgan import build_dcgan, train_dcgan

    folder = _images(root / "mix", modes=("RGB", "RGBA", "P", "L", "I;16", "CMYK"))
    rgb, gray = ImageFolderDataset(folder, 16), ImageFolderDataset(folder, 16, channels=1)
    assert {tuple(rgb[i].shape) for i in range(len(rgb))} == {(3, 16, 16)}
    assert {tuple(gray[i].shape) for i in range(len(gray))} == {(1, 16, 16)}
    assert all(-0.9 < float(gray[i].mean()) < 0.9 for i in range(len(gray)))  # 16-bit not washed out
    cfg = _dcgan_cfg(batch_size=3, channels=1)  # nets for grayscale, data in RGB
    G, D = build_dcgan(cfg, nc=1)
    loader = torch.utils.data.DataLoader(rgb, batch_size=3, drop_last=True)
    return lambda: train_dcgan(G, D, loader, cfg, device=CPU, checkpoint_path=root / "runs" / "c.pt")


def image_size_not_a_power_of_two(root, mp):
    from helpers.dcgan import build_dcgan

    return lambda: build_dcgan(_dcgan_cfg(image_size=48), nc=1)


def images_not_resized_for_the_nets(root, mp):
    from helpers.dcgan import build_dcgan, train_dcgan

    cfg = _dcgan_cfg()
    G, D = build_dcgan(cfg, nc=1)  # 16x16 nets, 28x28 images (raw MNIST size)
    return lambda: train_dcgan(G, D, _gan_loader(size=28), cfg, device=CPU,
                               checkpoint_path=root / "runs" / "c.pt")


def checkpoint_nz_differs(root, mp):
    return _resume_dcgan(_good_dcgan_run(root), nz=16)


def checkpoint_d_model_differs(root, mp):
    from helpers.translation import ARCHITECTURE_KEYS, build_model

    cfg, data = _translation_setup(root)
    ckpt = root / "runs" / "translation.pt"
    save_checkpoint(ckpt, model=build_model(cfg, data.tokenizer.vocab_size), step=1,
                    config={**cfg, "vocab_size": data.tokenizer.vocab_size})
    wider = cfg.replace(d_model=64, d_ff=128)
    model = build_model(wider, data.tokenizer.vocab_size)
    return lambda: load_checkpoint(ckpt, model=model, config={**wider, "vocab_size": data.tokenizer.vocab_size},
                                   config_keys=ARCHITECTURE_KEYS)


def checkpoint_loaded_into_another_model(root, mp):
    from helpers.dcgan import Generator

    ckpt = _good_dcgan_run(root)
    return lambda: load_checkpoint(ckpt, model=Generator(nz=16, ngf=4, nc=1, image_size=16))


def checkpoint_without_resume_state(root, mp):
    from helpers.dcgan import build_dcgan

    G, D = build_dcgan(_dcgan_cfg(), nc=1)  # saved the way week 4 saves its final nets
    ckpt = save_checkpoint(root / "runs" / "dcgan.pt", model=G, step=6, config=_dcgan_cfg(),
                           extra={"D": D.state_dict()})
    return _resume_dcgan(ckpt)


def corrupt_checkpoint(root, mp):
    ckpt = root / "runs" / "half.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"PK\x03\x04 half a zip file")
    return lambda: load_checkpoint(ckpt)


def full_profile_without_gpu(root, mp):
    mp.setattr(torch.cuda, "is_available", lambda: False)
    mp.setenv("CURRICULUM_PROFILE", "full")
    return lambda: get_profile()


def offline_download(root, mp):
    mp.setenv("CURRICULUM_PROFILE", "local")
    mp.setenv("CURRICULUM_DATA_DIR", str(root / "data"))
    (root / "data").mkdir()

    def no_network(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known (test: offline)")

    mp.setattr(socket, "getaddrinfo", no_network)
    return lambda: load_dataset("mnist")


def unknown_profile(root, mp):
    mp.setenv("CURRICULUM_PROFILE", "fulll")
    return lambda: profile_config("dcgan")


def nan_loss_translation_huge_lr(root, mp):
    cfg, data = _translation_setup(root)
    ckpt = root / "runs" / "translation.pt"
    _train_translation(cfg, data, ckpt, stop_after=4)()  # the good part of the run
    # resume with a silly LR; the loss turns NaN a few steps later, before the next checkpoint
    return _train_translation(cfg.replace(lr_factor=1e30), data, ckpt, every=100)


def inf_loss_dcgan_injected(root, mp):
    from helpers import dcgan

    ckpt = _good_dcgan_run(root)
    real_step = dcgan.train_step

    def exploding(*args, **kwargs):
        stats = real_step(*args, **kwargs)
        return {**stats, "loss_d": float("inf")}

    mp.setattr(dcgan, "train_step", exploding)
    return _resume_dcgan(ckpt)


def _oom(*args, **kwargs):
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (test)")


def oom_dcgan(root, mp):
    from helpers import dcgan

    ckpt = _good_dcgan_run(root)
    mp.setattr(dcgan, "train_step", _oom)
    return _resume_dcgan(ckpt)


def oom_translation(root, mp):
    from helpers import translation

    cfg, data = _translation_setup(root)
    ckpt = root / "runs" / "translation.pt"
    _train_translation(cfg, data, ckpt, stop_after=4)()
    mp.setattr(translation, "label_smoothed_loss", _oom)
    return _train_translation(cfg, data, ckpt)


def disk_full_while_saving(root, mp):
    ckpt = _good_dcgan_run(root)

    def full(obj, f):
        f.write(b"partial checkpoint")
        raise OSError(28, "No space left on device")

    mp.setattr(torch, "save", full)
    return _resume_dcgan(ckpt)


@dataclass
class Case:
    name: str
    setup: Callable  # (root, monkeypatch) -> the action that makes the mistake
    error: type
    fix: tuple[str, ...]  # regexes the message must contain (the fix, and what went wrong)


# The list of learner mistakes in issue #7, each item with the cases that show it ("a notebook
# run twice in one kernel" is the last test of this file). Every case is run by the test below.
CATALOGUE: dict[str, list[Case]] = {
    "data dir missing": [
        Case("data dir missing", data_dir_missing, env.DataDirError,
             (r"CURRICULUM_DATA_DIR=.*dta.* does not exist", r"Fix: create it", "unset it")),
    ],
    "dataset present in a wrong layout": [
        Case("dataset in a wrong layout", wrong_layout, DataLayoutError,
             (r"outside the expected folder", r"Fix: move the files", r"MNIST/raw")),
    ],
    "misaligned source/target line counts": [
        Case("misaligned source/target lines", misaligned_lines, DataLayoutError,
             (r"train.en has 3 lines but .*train.de has 2", r"Fix: line i of one file")),
    ],
    "empty split": [
        Case("empty split (text)", empty_text_split, DataLayoutError,
             (r"val split .* is empty", r"Fix: put one sentence per line")),
        Case("empty split (image folder)", empty_image_folder, DataLayoutError,
             (r"no images", r"Fix: put your images there")),
        Case("empty split (fewer images than a batch)", fewer_images_than_a_batch, ValueError,
             (r"yields no batches \(5 images, batch_size=8", r"Fix: add images, or lower batch_size")),
    ],
    "corrupt image file": [
        Case("corrupt image file", corrupt_image, DataLayoutError,
             (r"1 unreadable image\(s\).*broken\.png", r"Fix: delete or re-save", "nothing was loaded")),
    ],
    "non-RGB/grayscale mix": [
        Case("grayscale/RGB mix, channels differ from the nets", grayscale_rgb_mix, ValueError,
             (r"expects images of shape \[batch, 1, 16, 16\], got \(3, 3, 16, 16\)", r"Fix: .*1 channel")),
    ],
    "image size not divisible as the nets need": [
        Case("image size not a power of two", image_size_not_a_power_of_two, ValueError,
             (r"image_size=48", r"power of two", r"Fix: resize your images")),
        Case("images not resized for the nets", images_not_resized_for_the_nets, ValueError,
             (r"got \(8, 1, 28, 28\)", r"Fix: resize the data to 16x16")),
    ],
    "nz/d_model of a checkpoint not matching the config": [
        Case("checkpoint nz differs from the config", checkpoint_nz_differs, CheckpointError,
             (r"nz: checkpoint 8, config 16", r"Fix: use the settings it was trained with",
              "nothing was overwritten")),
        Case("checkpoint d_model differs from the config", checkpoint_d_model_differs, CheckpointError,
             (r"d_model: checkpoint 32, config 64", r"d_ff: checkpoint 64, config 128", r"Fix:")),
        Case("checkpoint weights do not fit the model", checkpoint_loaded_into_another_model,
             CheckpointError, (r"another architecture", r"size mismatch", r"nz=8", r"Fix: build the model")),
    ],
    "full profile requested without a GPU": [
        Case("full profile without a GPU", full_profile_without_gpu, UserWarning,
             (r"no CUDA GPU is visible", r"export CURRICULUM_PROFILE=local", r"Change runtime type")),
    ],
    "offline download": [
        Case("offline download", offline_download, DataUnavailableError,
             (r"MNIST is not available", r"download from .* failed", r"Fix, either",
              r"CURRICULUM_PROFILE=smoke")),
    ],
    "unknown profile": [
        Case("unknown profile", unknown_profile, ProfileError,
             (r"'fulll' is not a run profile", r"Valid profiles: smoke, local, full", r"Fix: `export")),
    ],
    "NaN/inf loss": [
        Case("NaN loss (translation, huge learning rate)", nan_loss_translation_huge_lr, NonFiniteLossError,
             (r"(nan|inf)", r"at step [5-8]", r"learning rate too high: lower cfg.lr_factor",
              r"fp16 overflow", r"last good checkpoint .*translation.pt \(step 4\) is kept")),
        Case("inf loss (DCGAN, injected)", inf_loss_dcgan_injected, NonFiniteLossError,
             (r"loss_d=inf at step 5", r"lower cfg.lr", r"bf16", r"ckpt.pt \(step 4\) is kept")),
    ],
    "out-of-memory on GPU": [
        Case("GPU out of memory (DCGAN)", oom_dcgan, TrainingOutOfMemoryError,
             (r"out of memory", r"batch_size=4 \(now 8\)", r"cfg.replace\(batch_size=4\)",
              r"profile_config\('dcgan', batch_size=4\)", r"\(step 4\) is kept")),
        Case("GPU out of memory (translation)", oom_translation, TrainingOutOfMemoryError,
             (r"max_tokens=150 \(now 300\)", r"cfg.replace\(max_tokens=150\)", r"\(step 4\) is kept")),
    ],
    "disk full while saving": [
        Case("disk full while saving", disk_full_while_saving, CheckpointError,
             (r"disk is full", r"previous version is untouched", r"Fix: free space")),
    ],
    "(beyond the list) checkpoints that cannot be resumed": [
        Case("resume from a checkpoint without resume state", checkpoint_without_resume_state,
             CheckpointError, (r"not the state to resume training \(no optimizer, opt_d, noise_rng", r"Fix: pass another "
                               r"checkpoint_path")),
        Case("corrupt checkpoint", corrupt_checkpoint, CheckpointError,
             (r"not a readable checkpoint", r"no other checkpoint beside it", r"Fix: restore it from a copy")),
    ],
}
# (item, case) pairs; an item without a case becomes a failing (item, None) entry.
CASES = [(item, case) for item, cases in CATALOGUE.items() for case in (cases or [None])]


def _snapshot(root: Path) -> dict[str, str]:
    """Every file (its SHA-256) and every folder under ``root``."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "<folder>"
            for p in sorted(root.rglob("*")) if "__pycache__" not in p.parts}


@pytest.mark.parametrize("item, case", CASES, ids=[f"{i}: {c.name if c else 'NO CASE'}" for i, c in CASES])
def test_bad_input_gives_one_clear_message_and_leaves_everything_as_it_was(item, case, clean_env,
                                                                           monkeypatch):
    assert case is not None, f"no case covers {item!r}"
    root = clean_env
    action = case.setup(root, monkeypatch)
    sentinel = root / "runs" / "my_work" / "model.pt"  # something the learner saved earlier
    sentinel.parent.mkdir(parents=True, exist_ok=True)
    sentinel.write_bytes(b"the learner's own checkpoint")
    before = _snapshot(root)

    if issubclass(case.error, Warning):
        with pytest.warns(case.error) as caught:
            action()
        message = str(caught[0].message)
    else:
        with pytest.raises(case.error) as info:
            action()
        message = str(info.value)

    for pattern in case.fix:
        assert re.search(pattern, message, re.S), f"{pattern!r} not in: {message}"
    after = _snapshot(root)
    new = sorted(set(after) - set(before))
    assert not new, f"partial output left behind: {new}"
    changed = [p for p in before if after.get(p) != before[p]]
    assert not changed, f"overwritten or removed: {changed}"
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp") or ".partial" in p.name]


# --------------------------------------------------------------------------- run twice
SETUP = ("import torch\nfrom helpers.runtime import env\nfrom helpers.runtime.history import History\n"
         "from helpers.runtime.metrics import write_metrics\n"
         "from torch.utils.tensorboard import SummaryWriter\n"
         "run_dir = env.runs_dir() / 'test' / 'twice'\n")
CLEAN = [
    SETUP + "env.seed_everything(0)",
    "history = History()\nfor f in (run_dir / 'tb').glob('events.out.tfevents.*'):\n    f.unlink()\n"
    "writer = SummaryWriter(str(run_dir / 'tb'))",
    "w = torch.zeros(3, requires_grad=True)\nopt = torch.optim.SGD([w], lr=0.1)\n"
    "for step in range(5):\n    loss = ((w - torch.randn(3)) ** 2).sum()\n"
    "    opt.zero_grad(); loss.backward(); opt.step()\n"
    "    history.log(step, loss=loss); writer.add_scalar('loss', loss.item(), step)\nwriter.close()",
    "write_metrics('test', 'twice', {'loss': history.last('loss'), 'steps': len(history), "
    "'seconds': 1.0})",
]
# The same notebook with three classic mistakes: state created once per kernel, a seed set
# only once, and a TensorBoard folder that piles up event files.
LEAKY = [
    SETUP + "if 'seeded' not in globals():\n    env.seed_everything(0); seeded = True",
    "if 'history' not in globals():\n    history = History()\nwriter = SummaryWriter(str(run_dir / 'tb'))",
    *CLEAN[2:],
]


@pytest.mark.parametrize("cells, expected", [(CLEAN, []), (LEAKY, ["History 'history' has 10",
                                                                      "the second run added test/twice/tb/events",
                                                                      "metrics/loss", "metrics/steps"])],
                         ids=["clean notebook", "leaky notebook"])
def test_a_notebook_run_twice_in_one_kernel(cells, expected, tmp_path):
    """tools/determinism.py runs every training notebook twice in one kernel (`make
    determinism`); here its checker proves it tells a clean notebook from a leaky one."""
    import importlib.util

    import nbformat

    spec = importlib.util.spec_from_file_location("determinism", Path(__file__).parent.parent / "tools" / "determinism.py")
    determinism = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(determinism)
    nb_path = tmp_path / "twice.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells]), nb_path)
    runs = tmp_path / "runs"
    problems, first = determinism.run_twice_in_one_kernel(nb_path, runs, metrics=runs / "test" / "twice" / "metrics.json")
    assert first is not None and first["metrics"]["steps"] == 5
    for fragment in expected:
        assert any(fragment in p for p in problems), (fragment, problems)
    assert len(problems) == len(expected), problems


def test_determinism_compares_records_that_name_their_own_runs_folder(tmp_path):
    """Two runs in different folders (CI: runs/make-test and runs/make-test-again) are the same run
    when a record names its own folder, absolute or as `<folder>/...` (week 4f's bundle and
    checkpoint sources); a real difference in such a path is still reported."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("determinism", Path(__file__).parent.parent / "tools" / "determinism.py")
    determinism = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(determinism)
    first, second = tmp_path / "runs" / "make-test", tmp_path / "runs" / "make-test-again"

    def record(runs, step=600):
        return {"metrics": {"x": 1.0}, "extra": {
            "bundle": f"{runs.name}/deploy", "bundle_abs": str(runs / "deploy"),
            "source": f"{runs.name}/dcgan/week4_training/checkpoints/smoke/dcgan.pt (week 4, step {step})"}}

    diffs, _, n = determinism.compare(record(first), record(second), runs=(first, second))
    assert diffs == [] and n == 4
    diffs, _, _ = determinism.compare(record(first), record(second, step=599), runs=(first, second))
    assert len(diffs) == 1 and "extra/source" in diffs[0] and "step 599" in diffs[0]
    # a year-ahead rerun (CI) must show the shift in the notebook's own written_at
    today, ahead = {"written_at": "2026-12-03T10:00:00+00:00"}, {"written_at": "2027-12-03T10:20:00+00:00"}
    assert determinism.clock_shift_problem(today, ahead, days=365) is None
    assert determinism.clock_shift_problem(today, ahead, days=0) is None
    assert "not shifted" in determinism.clock_shift_problem(today, dict(today), days=365)
    assert "cannot tell" in determinism.clock_shift_problem(today, {}, days=365)


def test_parallel_notebook_runs_keep_what_a_notebook_reads_before_it(tmp_path):
    """`make notebooks` (pytest-xdist) and `tools/determinism.py --workers` run notebooks side by
    side, except that a notebook reading another's checkpoint runs after it: both read READS_FROM
    in conftest.py, and every notebook that names another's checkpoint folder is in it."""
    import importlib.util
    import threading
    import time

    spec = importlib.util.spec_from_file_location("determinism", Path(__file__).parent.parent / "tools" / "determinism.py")
    determinism = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(determinism)
    root = Path(__file__).parent.parent
    conftest = determinism._root_conftest()
    # make notebooks: a reader shares its sources' worker and comes after them in path order
    for reader, sources in conftest.READS_FROM.items():
        for source in sources:
            assert conftest.notebook_group(f"notebooks/{reader}.ipynb") == conftest.notebook_group(
                f"notebooks/{source}.ipynb") and source < reader, (reader, source)
    assert conftest.notebook_group("notebooks/dcgan/week0_prerequisites.ipynb") == "dcgan/week0_prerequisites"
    assert conftest.notebook_group("tests/test_x.py") is None
    for py in sorted((root / "notebooks").rglob("*.py")):
        name = str(py.relative_to(root / "notebooks").with_suffix(""))
        for track, other in re.findall(r'checkpoint_dir\("(\w+)", "(\w+)"\)', py.read_text(encoding="utf-8")):
            if f"{track}/{other}" != name:
                assert f"{track}/{other}" in conftest.READS_FROM.get(name, ()), (
                    f"{name} reads {track}/{other}'s checkpoint: add it to READS_FROM in conftest.py")
    # determinism --workers 2: every notebook once, two at a time, each after what it reads
    notebooks = determinism.training_notebooks()
    log, lock, running = [], threading.Lock(), [0]

    def work(nb):
        with lock:
            running[0] += 1
            log.append(("start", determinism._rel(nb), running[0]))
        time.sleep(0.02)
        with lock:
            running[0] -= 1
            log.append(("end", determinism._rel(nb), running[0]))

    determinism.run_in_order(notebooks, 2, work)
    starts = [name for kind, name, _ in log if kind == "start"]
    assert sorted(starts) == sorted(determinism._rel(nb) for nb in notebooks)
    assert max(n for kind, _, n in log if kind == "start") == 2
    for reader, sources in conftest.READS_FROM.items():
        for source in sources:
            if source in starts and reader in starts:
                assert log.index(("end", source, next(n for k, s, n in log if k == "end" and s == source))) < \
                    next(i for i, (k, s, _) in enumerate(log) if k == "start" and s == reader), (reader, source)
    # a file written by a notebook running beside this one is not this one's
    for folder in ("dcgan/week4_training", "dcgan/week5_final_project", "transformer/week4b_optimization"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "a.pt").write_text("x")
    assert determinism._files(tmp_path, determinism.own_folders(Path("dcgan/week5_final_project"))) == {
        "dcgan/week4_training/a.pt", "dcgan/week5_final_project/a.pt"}
    assert len(determinism._files(tmp_path)) == 3
