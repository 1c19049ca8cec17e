"""The Colab-like lane: the notebooks' generated setup cell, run as a learner on Colab runs it.

    python tools/colab_lane.py              # = make colab; CI runs it after make test
    python tools/colab_lane.py --keep build/lane --notebooks notebooks/00_start_here.ipynb

What it builds, in a temporary folder under build/ (ignored by git):

1. ``repo/``: a git snapshot of this checkout (tracked and untracked, not ignored, files),
   tagged with the release named in pyproject.toml (``[tool.curriculum] ref``), so the setup
   cell's own ``REF`` resolves; the cell is pointed at it with ``CURRICULUM_REPO=file://...``
   (the override it honours), instead of GitHub.
2. ``venv/``: a fresh virtual environment pre-populated the way Colab is, from Colab's own
   published package list (a dated copy of ``googlecolab/backend-info``'s ``pip-freeze.gpu.txt``
   in ``tools/colab/``; ``make colab-refresh`` updates it): every package our notebooks touch
   that Colab ships (numpy, pandas, matplotlib, scipy, transformers, datasets, ipywidgets 7.7,
   ipykernel, ...) at Colab's exact version. Where this environment has that very version it is
   hard-linked from here, otherwise pip installs it from the index. torch and torchvision (and
   what they require) are always linked from this environment, never downloaded (a CUDA torch
   is gigabytes): the lane prints how they differ from Colab's. Colab's Python is used when this
   machine has it and torch can be linked for it; otherwise the running Python (the lane says
   which). A stand-in ``google.colab`` module is imported at start-up (``sys.modules`` then holds
   it, as on Colab).
3. ``content/``: the working folder of every kernel (Colab's ``/content``), outside the
   checkout, with no ``PYTHONPATH``: ``helpers`` can only come from what the cell installs.

Then, each step in a fresh kernel of that environment, with ``CURRICULUM_PROFILE=smoke``:

- the setup cell with a repository that does not exist: it must fail with the one clear message
  (the URL tried, how to set REPO, the Drive and local alternatives) and install nothing;
- the setup cell for real: ``helpers`` imports afterwards and no package that was installed
  before changed version (``importlib.metadata`` before/after, like ``pip freeze``);
- the setup cell again: it must install nothing (no install message, same packages);
- week 4f's setup cell: its ``[deploy]`` extra added, again without changing a package;
- 00_start_here and one training notebook per track, top to bottom.

Each notebook runs with a per-cell watchdog: a cell that prints nothing for ``--stall`` seconds
while the kernel is busy is reported as a stall (which cell, how long), not as a slow cell.

Exit status 0 when every step passed. Prints each step's wall time, the total, and the date of
Colab's list it tested against.

    python tools/colab_lane.py --refresh /path/to/backend-info   # = make colab-refresh SRC=...
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import nbtools  # noqa: E402

# What a Colab runtime has before the setup cell runs: the parts our notebooks touch (these, and
# every package of requirements*.txt that Colab's list holds), at the versions of Colab's list.
COLAB_PACKAGES = ["torch", "torchvision", "numpy", "pandas", "matplotlib", "scipy", "pillow",
                  "scikit-learn", "tqdm", "transformers", "tokenizers", "datasets", "accelerate",
                  "tensorboard", "pydantic", "ipython", "ipykernel", "ipywidgets", "nltk", "absl-py",
                  "six", "protobuf", "sentence-transformers", "pip"]
# Always linked from this environment with what they require, whatever Colab's version: a CUDA
# torch from the index is gigabytes (and this machine's pip caps torch at what lies on its disk).
HELD = ["torch", "torchvision"]
UV = "uv==0.13.9"  # pinned: a uv release must not change what the lanes install
REQUIREMENT_FILES = ["requirements.txt", "requirements-deploy.txt", "requirements-offline.txt"]
COLAB_DIR = ROOT / "tools" / "colab"
COLAB_SOURCE = "https://github.com/googlecolab/backend-info"
COLAB_FILES = ["pip-freeze.gpu.txt", "os-info-gpu.txt"]
NOTEBOOKS = ["notebooks/00_start_here.ipynb", "notebooks/transformer/week3_transformer.ipynb",
             "notebooks/dcgan/week4_training.ipynb"]
EXTRA_SETUP = "notebooks/transformer/week4f_deploy.ipynb"  # its setup cell adds [deploy]
INSTALL_MESSAGE = "Installing the course package from"
# What the wrong-repository message must say (item 1 of the issue).
WRONG_REPO_NEEDS = {
    "the repository it tried": "{url}",
    "how to set it": "set REPO = 'owner/name'",
    "the Drive alternative": "Google Drive",
    "the local alternative": "run the notebooks on your machine",
}


# --------------------------------------------------------------------------- checks (unit-tested)
def changed_packages(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Packages installed before whose version changed or that were removed."""
    return [f"{name}: {version} -> {after.get(name, 'removed')}" for name, version in sorted(before.items())
            if after.get(name) != version]


def added_packages(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return [f"{name} {version}" for name, version in sorted(after.items()) if name not in before]


def wrong_repo_problems(text: str, url: str) -> list[str]:
    """What the failed install's message lacks (empty: it says everything it must)."""
    missing = [what for what, needle in WRONG_REPO_NEEDS.items() if needle.format(url=url) not in text]
    if "RuntimeError" not in text:
        missing.append("the RuntimeError the cell raises")
    return missing


def reinstall_problems(text: str, before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Why a second run of the setup cell did install something (empty: it did nothing)."""
    problems = [f"it printed {INSTALL_MESSAGE!r}"] if INSTALL_MESSAGE in text else []
    problems += [f"changed {c}" for c in changed_packages(before, after)]
    problems += [f"added {a}" for a in added_packages(before, after)]
    return problems


# --------------------------------------------------------------------------- Colab's list
def parse_freeze(text: str) -> dict[str, str]:
    """``pip freeze`` text -> {canonical name: version}; ``name @ url`` lines and comments skipped."""
    from packaging.utils import canonicalize_name

    found = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or " @ " in line or "==" not in line:
            continue
        name, version = line.split("==", 1)
        found[canonicalize_name(name)] = version.strip()
    return found


def parse_python(os_info: str) -> str:
    """The Python version of an ``os-info-*.txt`` (``Python 3.13.15`` line)."""
    match = re.search(r"^Python (\d+\.\d+(?:\.\d+)?)\s*$", os_info, re.M)
    if not match:
        raise ValueError("no 'Python X.Y.Z' line in the OS info")
    return match.group(1)


def load_colab(folder: Path = COLAB_DIR) -> dict:
    """The stored copy of Colab's list: colab.json's record plus ``packages`` and ``python``."""
    info = json.loads((folder / "colab.json").read_text())
    info["packages"] = parse_freeze((folder / "pip-freeze.gpu.txt").read_text())
    python = parse_python((folder / "os-info-gpu.txt").read_text())
    if python != info.get("python"):
        raise ValueError(f"{folder}/colab.json says Python {info.get('python')}, os-info-gpu.txt says {python}")
    info["python"] = python
    return info


def refresh(source: Path, folder: Path = COLAB_DIR, today: str | None = None) -> dict:
    """Copy Colab's list from a clone (or bare mirror) of googlecolab/backend-info at its HEAD."""
    import datetime

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(source), *args], capture_output=True, text=True,
                              check=True).stdout

    commit, date = git("log", "-1", "--format=%H %cs", "HEAD").split()
    texts = {name: git("show", f"HEAD:{name}") for name in COLAB_FILES}
    parse_freeze(texts["pip-freeze.gpu.txt"])
    info = {"source": COLAB_SOURCE, "commit": commit, "date": date,
            "fetched": today or datetime.date.today().isoformat(),
            "python": parse_python(texts["os-info-gpu.txt"]), "files": COLAB_FILES,
            "note": "Copies of Colab's GPU runtime package list and OS info (data only). "
                    "Refresh: make colab-refresh SRC=<clone of the source>."}
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (folder / name).write_text(text)
    (folder / "colab.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def colab_label(colab: dict) -> str:
    return f"Colab's list of {colab['date']} (googlecolab/backend-info {colab['commit'][:7]}, Python {colab['python']})"


def touched_packages(colab: dict) -> list[str]:
    """What the lane pre-installs at Colab's versions: COLAB_PACKAGES and every package of our
    requirement files that Colab's list holds."""
    from packaging.utils import canonicalize_name

    names = {canonicalize_name(n) for n in COLAB_PACKAGES}
    for file in REQUIREMENT_FILES:
        for line in (ROOT / file).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                from packaging.requirements import Requirement
                names.add(canonicalize_name(Requirement(line).name))
    return sorted(n for n in names if n in colab["packages"])


def version_differences(colab_packages: dict[str, str], have: dict[str, str], names) -> list[str]:
    """``name version (Colab: version)`` for each of ``names`` whose version here is not Colab's."""
    from packaging.utils import canonicalize_name

    have = {canonicalize_name(k): v for k, v in have.items()}
    return [f"{n} {have.get(n, 'absent')} (Colab: {colab_packages[n]})" for n in sorted(names)
            if n in colab_packages and have.get(n) != colab_packages[n]]


def choose_python(colab_python: str) -> tuple[str, str]:
    """(interpreter, why). Colab's Python only where torch can be linked for it: the linked torch
    is this environment's, built for the running Python."""
    want = ".".join(colab_python.split(".")[:2])
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if want == here:
        return sys.executable, f"Python {platform_version()} (Colab's {colab_python}: same minor version)"
    found = shutil.which(f"python{want}")
    where = f"python{want} is at {found}, but" if found else f"this machine has no python{want}, and"
    return sys.executable, (f"Python {platform_version()}, not Colab's {colab_python}: {where} torch is "
                            f"linked from this environment, which is built for Python {here}")


def platform_version() -> str:
    import platform

    return platform.python_version()


# --------------------------------------------------------------------------- environment
def _closure(names, skip=frozenset()) -> dict[str, metadata.Distribution]:
    """These distributions of this environment and everything they require (with extras),
    leaving out ``skip`` (canonical names) and what only they require."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    found: dict[str, metadata.Distribution] = {}
    todo = [(n, frozenset()) for n in names]
    seen = set()
    while todo:
        name, extras = todo.pop()
        key = (canonicalize_name(name), extras)
        if key in seen or key[0] in skip:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # pip installs it from the index below, if it is needed at all
        found[key[0]] = dist
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in (extras or {""})):
                todo.append((req.name, frozenset(req.extras)))
    return found


def _site_packages(python: Path) -> Path:
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def link_distributions(dists, site: Path) -> int:
    """Hard-link (copy across file systems) each distribution's files into ``site``."""
    count = 0
    for dist in dists:
        for rel in dist.files or []:
            if str(rel).startswith(".."):  # console scripts in bin/: not needed
                continue
            src = Path(dist.locate_file(rel))
            dest = site / rel
            if not src.is_file() or dest.exists():
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, dest)
            except OSError:
                shutil.copy2(src, dest)
            count += 1
    return count


STUB = '''"""Stand-in for Colab's google.colab (tools/colab_lane.py): the parts the notebooks call."""
import os
from types import SimpleNamespace

calls = []


def _mount(mountpoint, force_remount=False):
    os.makedirs(os.path.join(mountpoint, "MyDrive"), exist_ok=True)
    calls.append(("drive.mount", mountpoint))


def _serve_kernel_port_as_iframe(port, path="/", height=400, cache_in_notebook=False):
    calls.append(("output.serve_kernel_port_as_iframe", port, path))


drive = SimpleNamespace(mount=_mount)
output = SimpleNamespace(serve_kernel_port_as_iframe=_serve_kernel_port_as_iframe)
'''


def held_distributions(pins: dict[str, str]) -> dict[str, metadata.Distribution]:
    """torch, torchvision, and those of their requirements that Colab's list lacks or whose Colab
    version the linked torch does not accept (its CUDA libraries, triton): this environment's."""
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet
    from packaging.utils import canonicalize_name

    closure = _closure(HELD)
    specs: dict[str, SpecifierSet] = {}
    for dist in closure.values():
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                name = canonicalize_name(req.name)
                specs[name] = specs.get(name, SpecifierSet()) & req.specifier
    held_names = {canonicalize_name(n) for n in HELD}
    return {name: dist for name, dist in closure.items()
            if name in held_names or name not in pins
            or not specs.get(name, SpecifierSet()).contains(pins[name], prereleases=True)}


def build_environment(work: Path, log, colab: dict) -> Path:
    """The Colab-like venv; returns its python."""
    from packaging.utils import canonicalize_name

    interpreter, why = choose_python(colab["python"])
    log(f"Python: {why}")
    venv = work / "venv"
    subprocess.run([interpreter, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = _site_packages(python)
    pins = colab["packages"]
    touched = touched_packages(colab)
    held = held_distributions(pins)
    # The rest at Colab's versions: linked where this environment has the very version (nothing
    # to download), the others from the index below.
    roots = (set(touched) | set(_closure(HELD))) - set(held)
    same = {name: dist for name, dist in _closure(roots, skip=set(held)).items()
            if pins.get(name) == dist.version}
    dists = {**held, **same}
    dists.pop("pip", None)
    own = installed(python)  # pip and setuptools of the new venv
    stale = [name for name in own if canonicalize_name(name) in dists]
    if stale:
        subprocess.run([str(python), "-m", "pip", "uninstall", "-q", "-y", *stale], check=True, env=_pip_env())
    n = link_distributions(dists.values(), site)
    log(f"linked {len(held)} distributions of torch/torchvision and their requirements, and {len(same)} "
        f"at Colab's very version ({n} files) from {sys.prefix}")
    constraints = work / "colab-constraints.txt"  # Colab's versions, except what is held at ours
    constraints.write_text("".join(f"{name}=={version}\n" for name, version in sorted(pins.items())
                                   if name not in held)
                           + "".join(f"{name}=={d.version}\n" for name, d in sorted(held.items())))
    wanted = [name for name in touched if name not in dists]
    log(f"from the index at Colab's versions: {', '.join(f'{n}=={pins[n]}' for n in wanted) or 'nothing'}")
    t0 = time.perf_counter()
    subprocess.run([str(uv(work)), "pip", "install", "-q", "--python", str(python), "-c", str(constraints),
                    *wanted], check=True, env=_pip_env())
    log(f"installed with {UV} in {time.perf_counter() - t0:.0f} s")
    (site / "google" / "colab").mkdir(parents=True)
    (site / "google" / "colab" / "__init__.py").write_text(STUB)
    (site / "colab_stub.pth").write_text("import google.colab\n")  # Colab imports it at start-up
    return python


def uv(work: Path) -> Path:
    """A pinned uv in ``work/uv`` (pip installs it from the index, a few MB): it installs the
    lanes' packages in parallel, several times faster than pip. It does not read pip's
    configuration, so each lane passes its constraints (torch held at this environment's)."""
    target = work / "uv"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--progress-bar", "off", "--target", str(target),
                    UV], check=True, env=_pip_env())
    return target / "bin" / "uv"


def _pip_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV")}


def installed(python: Path) -> dict[str, str]:
    """name -> version of every distribution ``python`` sees (what pip freeze lists)."""
    code = ("import importlib.metadata as m, json; print(json.dumps({d.metadata['Name'].lower(): d.version "
            "for d in m.distributions() if d.metadata['Name']}))")
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True, env=_pip_env())
    return json.loads(out.stdout)


def snapshot(work: Path, ref: str) -> Path:
    """A git repository holding this checkout's files (committed or not), tagged ``ref``."""
    repo = work / "repo"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, repo / rel)
    git = ["git", "-c", "user.name=colab-lane", "-c", "user.email=lane@localhost", "-c", "commit.gpgsign=false"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "snapshot"], ["tag", ref]):
        subprocess.run(git + args, cwd=repo, check=True, capture_output=True)
    return repo


# --------------------------------------------------------------------------- kernels
class Watchdog:
    """Per-cell watchdog: a cell that receives no message from the kernel (output, status,
    widget traffic) for ``stall`` seconds is a stall. It is recorded (which cell, how long) and
    the kernel interrupted, then killed if the cell still does not end, so a stall costs
    ``stall`` seconds, not the cell timeout, and is reported as a stall, not as a failure of
    the notebook's code."""

    def __init__(self, stall: float, grace: float = 20.0):
        self.stall, self.grace = stall, grace
        self.cell: tuple[int, str] | None = None
        self.last = time.monotonic()
        self.stalls: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def busy(self, index: int, source: str) -> None:
        with self._lock:
            self.cell, self.last = (index, source.strip().splitlines()[0][:80] if source.strip() else ""), time.monotonic()

    def alive(self) -> None:
        self.last = time.monotonic()

    def idle(self) -> None:
        with self._lock:
            self.cell = None

    def stalled_for(self, now: float | None = None) -> float:
        """Seconds the current cell has gone without a message beyond ``stall`` (0: not stalled)."""
        with self._lock:
            if self.cell is None:
                return 0.0
            quiet = (now if now is not None else time.monotonic()) - self.last
        return quiet if quiet >= self.stall else 0.0

    def watch(self, pid_of) -> None:
        """Thread body: interrupt (SIGINT), then kill (SIGKILL) a stalled kernel."""
        import signal

        while not self._stop.wait(1.0):
            quiet = self.stalled_for()
            if not quiet:
                continue
            index, first = self.cell or (-1, "")
            self.stalls.append(f"cell {index} ({first!r}) stalled: no message from the kernel for {quiet:.0f} s")
            pid = pid_of()
            for sig in (signal.SIGINT, signal.SIGKILL):
                if pid:
                    try:
                        os.kill(pid, sig)
                    except ProcessLookupError:
                        break
                if self._stop.wait(self.grace) or self.cell is None:
                    break
            self.idle()

    def stop(self) -> None:
        self._stop.set()


def watched_client(nb, watchdog: Watchdog, **kwargs):
    """An nbclient NotebookClient whose cells report to ``watchdog``."""
    from nbclient import NotebookClient

    class Client(NotebookClient):
        def process_message(self, msg, cell, cell_index):
            watchdog.alive()
            return super().process_message(msg, cell, cell_index)

    client = Client(nb, **kwargs)
    client.on_cell_execute = lambda cell, cell_index: watchdog.busy(cell_index, cell.source)
    client.on_cell_executed = lambda **_: watchdog.idle()
    return client


class Lane:
    def __init__(self, work: Path, python: Path, repo_url: str, timeout: int, stall: int = 120):
        self.work, self.python, self.repo_url, self.timeout = work, python, repo_url, timeout
        self.stall = stall
        self.stalls: list[str] = []
        self.content = work / "content"
        self.content.mkdir(exist_ok=True)
        spec = work / "jupyter" / "kernels" / "colab-lane"
        spec.mkdir(parents=True, exist_ok=True)
        (spec / "kernel.json").write_text(json.dumps({
            "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Colab-like lane", "language": "python"}))
        os.environ["JUPYTER_PATH"] = str(work / "jupyter")

    def env(self, **extra: str) -> dict[str, str]:
        env = _pip_env()
        for key in [k for k in env if k.startswith("CURRICULUM_")]:
            del env[key]
        env.update({"CURRICULUM_PROFILE": "smoke", "CURRICULUM_REPO": self.repo_url,
                    "COLAB_RELEASE_TAG": "colab-lane", "CURRICULUM_CACHE_DIR": str(self.work / "cache"),
                    # one thread: on a busy machine two spinning OpenMP threads slow a step tenfold
                    "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
        env.update(extra)
        return env

    def run(self, nb, **env: str) -> tuple[str, Exception | None]:
        """Execute ``nb`` in a fresh kernel; returns (all text output, the error or None)."""
        watchdog = Watchdog(self.stall)
        client = watched_client(nb, watchdog, timeout=self.timeout, kernel_name="colab-lane",
                                resources={"metadata": {"path": str(self.content)}})

        def pid():
            process = getattr(getattr(client.km, "provisioner", None), "process", None)
            return getattr(process, "pid", None)

        thread = threading.Thread(target=watchdog.watch, args=(pid,), daemon=True)
        thread.start()
        error = None
        try:
            client.execute(env=self.env(**env))
        except Exception as exc:  # noqa: BLE001 - the caller decides
            error = exc
        finally:
            watchdog.stop()
            thread.join()
        self.stalls.extend(watchdog.stalls)
        if watchdog.stalls:
            error = RuntimeError("STALLED: " + "; ".join(watchdog.stalls) + (f" (then: {error})" if error else ""))
        return _text(nb), error


def _run_notebook(work: Path, python: Path, repo_url: str, timeout: int, stall: int,
                  rel: str) -> tuple[str, float, str | None, str | None]:
    """Run the notebook ``rel`` top to bottom in the lane (a pool's job): (rel, seconds, the error as
    text, a note: a stall that passed on the second try)."""
    import nbformat

    t0 = time.perf_counter()
    lane = Lane(work, python, repo_url, timeout, stall)
    _, error = lane.run(nbformat.read(ROOT / rel, as_version=4))
    if error is not None and str(error).startswith("STALLED"):
        # a kernel that stops sending messages mid-cell (nbclient and widget cells, seen under load)
        # is not the notebook's failure: reported, then the notebook once more in a fresh kernel
        print(f"{rel}: {str(error)[:300]}; running it once more in a fresh kernel", flush=True)
        first = str(error)
        _, error = lane.run(nbformat.read(ROOT / rel, as_version=4))
        if error is not None:
            error = RuntimeError(f"{error} (and before that: {first})")
        else:
            return rel, time.perf_counter() - t0, None, f"stalled once, passed in a fresh kernel: {first[:300]}"
    return rel, time.perf_counter() - t0, None if error is None else str(error), None


def _text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append(out.get("text", ""))
            elif out.get("output_type") == "error":
                parts.append(f"{out.get('ename')}: {out.get('evalue')}")
            elif "data" in out:
                parts.append(out["data"].get("text/plain", ""))
    return "\n".join(parts)


def setup_cell_notebook(rel_ipynb: str):
    """A notebook holding only the generated setup cell of ``rel_ipynb`` (as committed)."""
    import nbformat

    nb = nbformat.read(ROOT / rel_ipynb, as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code")
    assert cell.source.startswith(nbtools.SETUP_MARK), f"{rel_ipynb}: first code cell is not the setup cell"
    nb.cells = [cell]
    return nb


# --------------------------------------------------------------------------- main
def report_steps(lane: str, times: list[tuple[str, float]], start: float, failures: list[str]) -> None:
    """Each step's wall time (``times``: (name, start) pairs, the last one "end"), the total, the failures."""
    print(f"\n{lane}, wall time per step:")
    for (name, t0), (_, t1) in zip(times, times[1:]):
        print(f"  {t1 - t0:7.1f} s  {name}")
    print(f"  {time.perf_counter() - start:7.1f} s  total")
    for failure in failures:
        print("FAILED:", failure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, help="build in this folder and keep it (default: a temp folder)")
    parser.add_argument("--notebooks", nargs="*", default=NOTEBOOKS, help="notebooks to run top to bottom")
    # side by side, each notebook's kernel client in a process of its own: two nbclient clients in
    # threads of one process can starve each other (tools/determinism.py saw a kernel wait 10
    # minutes for its next cell), which the watchdog would report as a stall
    # one at a time by default: a widget cell stalled (no kernel message for 120 s) with two at a
    # time while the lowest-versions lane ran beside this one (CI, 2 cores)
    parser.add_argument("--workers", type=int, default=1,
                        help="notebooks run side by side, each client in a process of its own (1: one after another)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    parser.add_argument("--stall", type=int, default=120,
                        help="seconds a busy cell may go without output before it is reported as stalled")
    parser.add_argument("--refresh", type=Path, metavar="BACKEND_INFO",
                        help=f"copy Colab's list from a clone of {COLAB_SOURCE} into tools/colab/ and exit")
    args = parser.parse_args(argv)
    if args.refresh:
        info = refresh(args.refresh)
        print(f"tools/colab/ now holds {colab_label(info)}; run make colab, then commit tools/colab/")
        return 0

    colab = load_colab()

    start = time.perf_counter()
    failures: list[str] = []
    stalls: list[str] = []  # notebooks that stalled once and passed in a fresh kernel
    times: list[tuple[str, float]] = []

    def step(name):
        times.append((name, time.perf_counter()))
        print(f"\n== {name}", flush=True)

    if args.keep:
        if args.keep.exists():
            shutil.rmtree(args.keep)
        args.keep.mkdir(parents=True)
        work = args.keep.resolve()  # the kernels start in content/: every path absolute
    else:
        (ROOT / "build").mkdir(exist_ok=True)  # beside .venv: hard links need the same file system
        work = Path(tempfile.mkdtemp(prefix="colab-lane-", dir=ROOT / "build"))
    try:
        step("snapshot of this checkout, tagged with pyproject's ref")
        ref = nbtools.repo_settings()["ref"]
        repo = snapshot(work, ref)
        print(f"{repo} @ {ref}")
        step(f"Colab-like environment from {colab_label(colab)}")
        python = build_environment(work, print, colab)
        lane = Lane(work, python, f"file://{repo}", args.timeout, args.stall)
        before = installed(python)
        print(f"{len(before)} packages preinstalled, e.g. ipywidgets {before.get('ipywidgets')}, "
              f"torch {before.get('torch')}, transformers {before.get('transformers')}")
        differs = version_differences(colab["packages"], before, touched_packages(colab))
        print(f"not at Colab's version (held: torch is linked, never downloaded): {', '.join(differs) or 'none'}")
        failures += [f"pre-installed {d}, which is not held" for d in differs
                     if d.split()[0] not in {"torch", "torchvision"}]
        print(f"kernels: Colab's ipykernel {before.get('ipykernel')} / jupyter_client {before.get('jupyter_client')} "
              f"in the venv, driven by this environment's nbclient {metadata.version('nbclient')} / jupyter_client "
              f"{metadata.version('jupyter_client')} (Colab's own nbclient {colab['packages'].get('nbclient')} / "
              f"jupyter_client {colab['packages'].get('jupyter-client')} can stall on week 3's widget cell), with a "
              f"watchdog: a cell silent for {args.stall} s is reported as a stall")

        step("setup cell, wrong repository: the clear message, nothing installed")
        wrong = f"file://{work}/no-such-repo"
        text, error = lane.run(setup_cell_notebook(NOTEBOOKS[0]), CURRICULUM_REPO=wrong)
        problems = (["the cell did not fail"] if error is None else []) + wrong_repo_problems(text, wrong)
        problems += [f"changed {c}" for c in changed_packages(before, installed(python))]
        print(text[-1500:])
        failures += [f"wrong repository: {p}" for p in problems]

        step("setup cell: install from the snapshot")
        text, error = lane.run(setup_cell_notebook(NOTEBOOKS[0]))
        after = installed(python)
        if error is not None:
            failures.append(f"setup cell failed: {text[-3000:]}")
        changed = changed_packages(before, after)
        failures += [f"setup cell changed a preinstalled package: {c}" for c in changed]
        print(f"added: {', '.join(added_packages(before, after)) or 'nothing'}")
        print(f"changed: {', '.join(changed) or 'nothing'}")
        if "curriculum-helpers" not in after:
            failures.append("curriculum-helpers is not installed after the setup cell")

        step("setup cell again: installs nothing")
        text, error = lane.run(setup_cell_notebook(NOTEBOOKS[0]))
        again = installed(python)
        problems = (["it failed: " + text[-1000:]] if error is not None else []) + reinstall_problems(text, after, again)
        failures += [f"second run of the setup cell: {p}" for p in problems]
        print("nothing installed" if not problems else "\n".join(problems))

        step(f"setup cell of {EXTRA_SETUP}: adds its extras only")
        text, error = lane.run(setup_cell_notebook(EXTRA_SETUP))
        extra = installed(python)
        if error is not None:
            failures.append(f"{EXTRA_SETUP} setup cell failed: {text[-3000:]}")
        failures += [f"{EXTRA_SETUP} setup cell changed {c}" for c in changed_packages(again, extra)]
        print(f"added: {', '.join(added_packages(again, extra)) or 'nothing'}")

        step(f"{', '.join(args.notebooks)} (smoke), top to bottom, {args.workers} at a time")

        jobs = [(work, python, f"file://{repo}", args.timeout, args.stall, rel) for rel in args.notebooks]
        if args.workers > 1:  # independent notebooks; spawn: no copy of this process's threads
            with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                done = list(pool.map(_run_notebook, *zip(*jobs)))
        else:
            done = [_run_notebook(*job) for job in jobs]
        for rel, seconds, error, note in done:
            if error is not None:
                failures.append(f"{rel} failed: {error.strip()[-3000:]}")
                print(f"{rel}: FAILED ({seconds:.0f} s)\n{error[-3000:]}")
            else:
                print(f"{rel}: passed ({seconds:.0f} s){'; ' + note if note else ''}")
                if note:
                    stalls.append(f"{rel}: {note}")
        now = installed(python)
        failures += [f"a notebook changed {c}" for c in changed_packages(extra, now)]
    finally:
        times.append(("end", time.perf_counter()))
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report_steps("Colab-like lane", times, start, failures)
    for line in stalls:
        print(f"STALL (not a failure: it passed in a fresh kernel): {line}")
    print(f"Colab-like lane: {'FAILED' if failures else 'passed'} ({len(failures)} problem(s)); tested against "
          f"{colab_label(colab)}, on Python {platform_version()}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
