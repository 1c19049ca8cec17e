"""The machine a notebook runs on: folders, device, seeds, mixed precision, Colab (week 0).

Every notebook starts with::

    from helpers.runtime import env
    device = env.get_device()
    env.seed_everything(cfg.seed)
"""

from __future__ import annotations

import os
import platform
import random
import sys
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from IPython.display import Markdown, display

from helpers import __version__
from helpers.runtime.config import get_profile, profile_setting

DATA_DIR_ENV = "CURRICULUM_DATA_DIR"
CACHE_DIR_ENV = "CURRICULUM_CACHE_DIR"
RUNS_DIR_ENV = "CURRICULUM_RUNS_DIR"
DEVICE_ENV = "CURRICULUM_DEVICE"
DRIVE_ROOT = Path("/content/drive/MyDrive")


class DataDirError(FileNotFoundError):
    """``CURRICULUM_DATA_DIR`` points at a folder that does not exist."""


# --------------------------------------------------------------------------- folders
def project_root() -> Path:
    """The checkout this package lives in (editable install), else the working directory.

    On Colab `helpers` is pip-installed, so data and runs go under the current folder
    (``/content``), like any other Colab file.
    """
    here = Path(__file__).resolve().parents[2]
    if (here / "pyproject.toml").is_file() and (here / "notebooks").is_dir():
        return here
    return Path.cwd()


def data_dir(*, must_exist: bool = True) -> Path:
    """Where datasets are looked for in their official layout: ``$CURRICULUM_DATA_DIR`` or ``data/``.

    If the variable is set to a folder that does not exist, that is a mistake worth stopping
    for (a typo would otherwise silently trigger a multi-GB download).
    """
    value = os.environ.get(DATA_DIR_ENV, "").strip()
    if value:
        path = Path(value).expanduser()
        if must_exist and not path.is_dir():
            raise DataDirError(
                f"{DATA_DIR_ENV}={value!r} does not exist. Fix: create it (`mkdir -p {value}`) "
                f"and put the datasets there, point {DATA_DIR_ENV} at the folder that holds them, "
                f"or unset it to use {project_root() / 'data'}."
            )
        return path
    return project_root() / "data"


def cache_dir() -> Path:
    """Where downloads are cached: ``$CURRICULUM_CACHE_DIR`` or ``~/.cache/curriculum``."""
    value = os.environ.get(CACHE_DIR_ENV, "").strip()
    return Path(value).expanduser() if value else Path.home() / ".cache" / "curriculum"


def runs_dir() -> Path:
    """Where results go: ``$CURRICULUM_RUNS_DIR`` or ``runs/`` in the project root."""
    value = os.environ.get(RUNS_DIR_ENV, "").strip()
    return Path(value).expanduser() if value else project_root() / "runs"


# --------------------------------------------------------------------------- Colab
def in_colab() -> bool:
    """True inside a Google Colab runtime."""
    return "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ


def mount_drive() -> Path | None:
    """Mount Google Drive on Colab (asks for permission once); returns MyDrive or None elsewhere."""
    if not in_colab():
        return None
    if not DRIVE_ROOT.is_dir():
        from google.colab import drive  # type: ignore[import-not-found]  # noqa: PLC0415 - Colab only

        drive.mount(str(DRIVE_ROOT.parent))
    return DRIVE_ROOT


def keep_on_drive(folder: str = "curriculum") -> Path | None:
    """The setup cell's ``KEEP_ON_DRIVE`` switch (week 0): on Colab, mount Google Drive and keep
    ``runs/`` (results and checkpoints) and the download cache in ``MyDrive/<folder>/``, so a
    disconnect loses nothing and later notebooks find earlier ones' checkpoints. Elsewhere it
    changes nothing and says so. Returns the Drive folder, or None."""
    if not in_colab():
        print(f"KEEP_ON_DRIVE: not on Colab, nothing to mount; results stay in {runs_dir()}")
        return None
    base = mount_drive() / folder
    os.environ[RUNS_DIR_ENV] = str(base / "runs")
    os.environ[CACHE_DIR_ENV] = str(base / "cache")
    print(f"KEEP_ON_DRIVE: results and checkpoints in {base / 'runs'}, downloads in {base / 'cache'} "
          f"(Google Drive): re-running a notebook after a disconnect continues from there.")
    return base


def tensorboard_hint(log_dir: Path) -> str:
    """How to watch ``log_dir`` live, with the real folder (on Google Drive after
    ``KEEP_ON_DRIVE``): the Colab/Jupyter magic and the terminal command. Printed and returned."""
    folder = Path(log_dir).resolve()
    text = (f"Watch this run live in TensorBoard: in a notebook cell `%load_ext tensorboard` then "
            f"`%tensorboard --logdir \"{folder}\"`; or in a terminal `tensorboard --logdir \"{folder}\"`.")
    print(text)
    return text


def on_drive(path: Path) -> bool:
    try:
        Path(path).resolve().relative_to(DRIVE_ROOT.resolve())
        return True
    except ValueError:
        return False


def checkpoint_dir(track: str, notebook: str, profile: str | None = None) -> Path:
    """Folder for one notebook's checkpoints in one run profile (week 0).

    ``runs/<track>/<notebook>/checkpoints/<profile>``, so a ``smoke`` run never trips a later
    ``local`` or ``full`` run of the same notebook (each profile has its own model sizes).
    ``runs/`` is on Google Drive after ``KEEP_ON_DRIVE = True`` (:func:`keep_on_drive`); on Colab
    without it a warning says the checkpoints die with the runtime. ``profile`` defaults to the
    active one.
    """
    profile = profile or get_profile(warn=False)
    base = runs_dir() / track / notebook
    if in_colab() and not on_drive(base):
        warnings.warn(
            f"Checkpoints go to {base} on the Colab machine and are lost when it disconnects. "
            "Fix: set KEEP_ON_DRIVE = True in the first code cell and run the notebook again "
            "(or call helpers.runtime.env.keep_on_drive()), so they are kept on Google Drive.",
            stacklevel=2,
        )
    path = base / "checkpoints" / profile
    path.mkdir(parents=True, exist_ok=True)
    return path


def show_port(port: int, path: str = "/", *, height: int = 620) -> str:
    """Show a web page served by this machine on ``port`` (week 4f's demo). On Colab the
    browser cannot reach the runtime's 127.0.0.1, so the page is shown in the notebook through
    Colab's own port proxy (``google.colab.output``); elsewhere a link to
    ``http://127.0.0.1:<port><path>`` is shown. Returns how it was shown."""
    if in_colab():
        from google.colab import output  # type: ignore[import-not-found]  # noqa: PLC0415 - Colab only

        output.serve_kernel_port_as_iframe(port, path=path, height=height)
        return f"Colab port proxy (port {port}, path {path})"
    url = f"http://127.0.0.1:{port}{path}"
    display(Markdown(f"Open [{url}]({url}) in a browser on this machine."))
    return url


# --------------------------------------------------------------------------- device
def get_device(profile: str | None = None) -> torch.device:
    """CPU for the ``smoke`` profile (what CI has), else the best accelerator present.

    ``$CURRICULUM_DEVICE`` (e.g. ``cpu``, ``cuda:1``, ``mps``) overrides the choice.
    """
    forced = os.environ.get(DEVICE_ENV, "").strip()
    if forced:
        return torch.device(forced)
    if get_profile(profile, warn=False) == "smoke":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int = 0, *, deterministic: bool | None = None,
                    profile: str | None = None) -> int:
    """Seed Python, NumPy and torch (CPU and every GPU) so a run can be repeated (week 0).

    ``deterministic`` (default: the setting of ``profile``, else of the active profile,
    ``profile_setting("deterministic")``:
    on for ``smoke`` and ``local``, off for ``full``): cuDNN picks deterministic kernels and
    torch warns when an operation has no deterministic version, so results are bit-identical
    across runs on the same machine. Off, cuDNN autotunes its kernels (``benchmark=True``) and
    nothing is forced: faster on a GPU, and reruns agree only to rounding.
    """
    if deterministic is None:
        deterministic = bool(profile_setting("deterministic", profile))
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    return seed


def reproducibility_note(profile: str | None = None) -> str:
    """One line for a notebook to print: does this profile trade bit-identical reruns for speed?"""
    name = get_profile(profile, warn=False)
    if profile_setting("deterministic", name):
        return (f"reproducibility: deterministic kernels, no cuDNN autotuning ({name} profile): "
                f"the same seed gives the same numbers on this machine")
    return (f"speed: cuDNN autotuning on, deterministic algorithms not forced ({name} profile): "
            f"reruns agree only to rounding; env.seed_everything(seed, deterministic=True) "
            f"makes them repeat exactly, at some cost in speed")


@dataclass(frozen=True)
class AmpSettings:
    """How to run mixed precision on one device (week 4 teaches why)."""

    device_type: str
    dtype: torch.dtype
    use_grad_scaler: bool

    @property
    def enabled(self) -> bool:
        return self.dtype != torch.float32


def amp_dtype(device: torch.device | str) -> torch.dtype:
    """The 16-bit type a device computes fast, or fp32 (week 4, "mixed precision").

    By CUDA compute capability: bf16 from 8.0 (A100, L4, RTX 30xx, H100), fp16 on 7.x (T4,
    V100: tensor cores for fp16 only), fp32 below (no tensor cores) and on CPU and MPS.
    ``torch.cuda.is_bf16_supported()`` is not the test: it answers True on a T4, which only
    *emulates* bf16, several times slower than fp16.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return torch.float32
    major, _ = torch.cuda.get_device_capability(device)
    if major >= 8:
        return torch.bfloat16
    return torch.float16 if major == 7 else torch.float32


def amp_settings(device: torch.device | str | None = None) -> AmpSettings:
    """Mixed precision for a device (week 4): bf16 on compute capability >= 8.0, fp16 with a
    GradScaler on 7.x (Colab's T4, V100), fp32 on the CPU and older GPUs (:func:`amp_dtype`)."""
    device = torch.device(device) if device is not None else get_device()
    dtype = amp_dtype(device)
    return AmpSettings(device.type, dtype, dtype == torch.float16)


def autocast(amp: AmpSettings):
    """``torch.autocast`` for these settings; a no-op context in fp32."""
    if not amp.enabled:
        return nullcontext()
    return torch.autocast(device_type=amp.device_type, dtype=amp.dtype)


def grad_scaler(amp: AmpSettings) -> torch.amp.GradScaler:
    """A GradScaler that is active only for fp16 (bf16 and fp32 need none)."""
    return torch.amp.GradScaler(amp.device_type if amp.device_type == "cuda" else "cpu",
                                enabled=amp.use_grad_scaler)


# --------------------------------------------------------------------------- report
def _total_ram_gb() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return None


def environment_report() -> dict[str, Any]:
    """Versions, hardware and the active profile, as a dict a notebook prints (week 0)."""
    ram = _total_ram_gb()
    report: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "profile": get_profile(warn=False),
        "device": str(get_device()),
        "amp_dtype": str(amp_dtype(get_device())).replace("torch.", ""),
        "deterministic": bool(profile_setting("deterministic")),
        "cpu_count": os.cpu_count(),
        "ram_gb": None if ram is None else round(ram, 1),
        "colab": in_colab(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "gpus": [],
    }
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        report["gpus"].append(
            {
                "name": props.name,
                "memory_gb": round(props.total_memory / 2**30, 1),
                "capability": f"{props.major}.{props.minor}",
            }
        )
    report["torchvision"] = torchvision.__version__
    report["helpers"] = __version__
    return report
