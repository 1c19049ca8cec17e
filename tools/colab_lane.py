"""The Colab-like lane: the notebooks' generated setup cell, run as a learner on Colab runs it.

    python tools/colab_lane.py              # = make colab; CI runs it after make test
    python tools/colab_lane.py --keep build/lane --notebooks notebooks/00_start_here.ipynb

What it builds, in a temporary folder under build/ (ignored by git):

1. ``repo/``: a git snapshot of this checkout (tracked and untracked, not ignored, files),
   tagged with the release named in pyproject.toml (``[tool.curriculum] ref``), so the setup
   cell's own ``REF`` resolves; the cell is pointed at it with ``CURRICULUM_REPO=file://...``
   (the override it honours), instead of GitHub.
2. ``venv/``: a fresh virtual environment pre-populated the way Colab is: torch, torchvision,
   numpy, pandas, matplotlib, scipy, scikit-learn, transformers, datasets, ... (hard links to
   the packages of the environment running this script, so nothing large is downloaded; pip
   sees them as installed), ``ipywidgets==7.7.*`` from the package index, and a stand-in
   ``google.colab`` module imported at start-up (``sys.modules`` then holds it, as on Colab).
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

Exit status 0 when every step passed. Prints each step's wall time and the total.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import nbtools  # noqa: E402

# What a Colab runtime has before the setup cell runs (the parts our notebooks touch), linked
# from this environment with everything they require. ipywidgets comes from the index at
# Colab's 7.7, with its own front-end packages.
COLAB_PACKAGES = ["torch", "torchvision", "numpy", "pandas", "matplotlib", "scipy", "pillow",
                  "scikit-learn", "tqdm", "transformers", "tokenizers", "datasets", "accelerate",
                  "tensorboard", "pydantic", "ipython", "ipykernel", "nltk", "absl-py", "six",
                  "protobuf", "sentence-transformers"]
FROM_INDEX = ["ipywidgets==7.7.*", "pip>=24.1"]  # Colab's pip is recent too
NOT_LINKED = {"ipywidgets", "widgetsnbextension", "jupyterlab-widgets"}
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


# --------------------------------------------------------------------------- environment
def _closure(names: list[str]) -> dict[str, metadata.Distribution]:
    """These distributions of this environment and everything they require (with extras)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    found: dict[str, metadata.Distribution] = {}
    todo = [(n, frozenset()) for n in names]
    seen = set()
    while todo:
        name, extras = todo.pop()
        key = (canonicalize_name(name), extras)
        if key in seen or key[0] in NOT_LINKED:
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


def build_environment(work: Path, log) -> Path:
    """The Colab-like venv; returns its python."""
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = _site_packages(python)
    dists = _closure(COLAB_PACKAGES)
    own = installed(python)  # pip and setuptools of the new venv: Colab's are newer
    dists.pop("pip", None)
    stale = [name for name in own if name in dists and name != "pip"]
    if stale:
        subprocess.run([str(python), "-m", "pip", "uninstall", "-q", "-y", *stale], check=True, env=_pip_env())
    n = link_distributions(dists.values(), site)
    log(f"linked {len(dists)} preinstalled distributions ({n} files) from {sys.prefix}")
    constraints = work / "preinstalled.txt"  # as the setup cell does: pip may add, not change
    constraints.write_text("".join(f"{d.metadata['Name']}=={d.version}\n" for d in dists.values()))
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--progress-bar", "off", "-c", str(constraints),
                    *FROM_INDEX], check=True, env=_pip_env())
    (site / "google" / "colab").mkdir(parents=True)
    (site / "google" / "colab" / "__init__.py").write_text(STUB)
    (site / "colab_stub.pth").write_text("import google.colab\n")  # Colab imports it at start-up
    return python


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
class Lane:
    def __init__(self, work: Path, python: Path, repo_url: str, timeout: int):
        self.work, self.python, self.repo_url, self.timeout = work, python, repo_url, timeout
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
        from nbclient import NotebookClient

        client = NotebookClient(nb, timeout=self.timeout, kernel_name="colab-lane",
                                resources={"metadata": {"path": str(self.content)}})
        error = None
        try:
            client.execute(env=self.env(**env))
        except Exception as exc:  # noqa: BLE001 - the caller decides
            error = exc
        return _text(nb), error


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
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, help="build in this folder and keep it (default: a temp folder)")
    parser.add_argument("--notebooks", nargs="*", default=NOTEBOOKS, help="notebooks to run top to bottom")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = parser.parse_args(argv)
    import nbformat

    start = time.perf_counter()
    failures: list[str] = []
    times: list[tuple[str, float]] = []

    def step(name):
        times.append((name, time.perf_counter()))
        print(f"\n== {name}", flush=True)

    if args.keep:
        if args.keep.exists():
            shutil.rmtree(args.keep)
        args.keep.mkdir(parents=True)
        work = args.keep
    else:
        (ROOT / "build").mkdir(exist_ok=True)  # beside .venv: hard links need the same file system
        work = Path(tempfile.mkdtemp(prefix="colab-lane-", dir=ROOT / "build"))
    try:
        step("snapshot of this checkout, tagged with pyproject's ref")
        ref = nbtools.repo_settings()["ref"]
        repo = snapshot(work, ref)
        print(f"{repo} @ {ref}")
        step("Colab-like environment")
        python = build_environment(work, print)
        lane = Lane(work, python, f"file://{repo}", args.timeout)
        before = installed(python)
        print(f"{len(before)} packages preinstalled, e.g. ipywidgets {before.get('ipywidgets')}, "
              f"torch {before.get('torch')}, transformers {before.get('transformers')}")

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

        for rel in args.notebooks:
            step(f"{rel} (smoke), top to bottom")
            nb = nbformat.read(ROOT / rel, as_version=4)
            text, error = lane.run(nb)
            if error is not None:
                failures.append(f"{rel} failed: {str(error).strip()[-3000:]}")
                print(str(error)[-3000:])
            else:
                print("passed")
        now = installed(python)
        failures += [f"a notebook changed {c}" for c in changed_packages(extra, now)]
    finally:
        times.append(("end", time.perf_counter()))
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print("\nColab-like lane, wall time per step:")
    for (name, t0), (_, t1) in zip(times, times[1:]):
        print(f"  {t1 - t0:7.1f} s  {name}")
    print(f"  {time.perf_counter() - start:7.1f} s  total")
    for failure in failures:
        print("FAILED:", failure)
    print(f"Colab-like lane: {'FAILED' if failures else 'passed'} ({len(failures)} problem(s))")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
