"""The lowest-versions lane: every direct requirement at the lowest version requirements*.txt allows.

    python tools/lowest_lane.py              # = make lowest; CI runs it after make test
    python tools/lowest_lane.py --keep build/lowest --unit --notebooks notebooks/00_start_here.ipynb
    python tools/lowest_lane.py --keep build/lowest --reuse --unit all    # the whole unit suite

What it does, in a temporary folder under build/ (ignored by git):

1. ``venv/``: a fresh virtual environment. torch and torchvision (with the CUDA libraries and
   triton they pin) are hard-linked from the environment running this script and held at its
   versions: a torch from the index is a multi-GB download, and this machine's pip only has the
   torch on its disk. So the torch floor (``torch>=2.6`` in requirements.txt) is NOT tested here;
   Colab's torch is (the Colab lane, ``make colab``).
2. ``uv pip install --resolution lowest-direct`` of requirements.txt, requirements-deploy.txt,
   requirements-offline.txt and requirements-dev.txt, with a generated constraints file pinning
   each direct requirement at its floor (``name==floor``), so the resolver cannot lift one to
   dodge a conflict: what they require comes at the newest versions those floors accept (a
   pinned ``uv``, installed first).
   Every direct requirement must then be installed at exactly its floor: a floor that does not
   install (no wheel for this Python, a conflict) fails the lane, it is not silently lifted.
3. This checkout on the venv's path (a ``.pth`` file), then, with ``CURRICULUM_PROFILE=smoke``
   and a cache of its own, in one pytest run on ``--workers`` workers: the unit tests that
   exercise the floored packages (``UNIT_TESTS``; ``--unit all`` for the whole of ``make unit``)
   and one notebook per family top to bottom (nbval, as ``make notebooks`` runs them):
   transformer week 3, transformer week 4a (fine-tuning, the transformers/accelerate floors),
   DCGAN week 4.

Exit status 0 when every step passed. Prints the versions it installed, each step's wall time and
the total.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from colab_lane import (  # noqa: E402
    UV,
    _closure,
    _pip_env,
    _site_packages,
    installed,
    link_distributions,
    report_steps,
    uv,
)

REQUIREMENT_FILES = ["requirements.txt", "requirements-deploy.txt", "requirements-offline.txt",
                     "requirements-dev.txt"]
HELD = ["torch", "torchvision"]
# The unit tests that exercise the third-party packages whose floors this lane sets (datasets,
# tokenizers, transformers, onnx/onnxruntime, fastapi/pydantic, matplotlib, pillow, nbclient, ...);
# the rest test this repository's own logic on torch, which the lane holds at the installed
# version. --unit all runs every test (`make unit`), several times longer.
UNIT_TESTS = ["tests/test_data.py", "tests/test_translation.py", "tests/test_training.py",
              "tests/test_export.py", "tests/test_serve.py", "tests/test_new_notebooks.py",
              "tests/test_unlabelled_images.py", "tests/test_requirements.py", "tests/test_results.py"]
NOTEBOOKS = ["notebooks/transformer/week3_transformer.ipynb",
             "notebooks/transformer/week4a_finetuning.ipynb",
             "notebooks/dcgan/week4_training.ipynb"]


def parallel(workers: int, *dist: str) -> list[str]:
    """pytest-xdist's arguments for ``workers`` workers (none for one)."""
    return ["-n", str(workers), *dist] if workers > 1 else []


def direct_requirements(root: Path = ROOT) -> list:
    """Every requirement of the requirement files that applies to this Python (markers evaluated)."""
    from packaging.requirements import Requirement

    reqs = []
    for file in REQUIREMENT_FILES:
        for line in (root / file).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                req = Requirement(line)
                if req.marker is None or req.marker.evaluate():
                    reqs.append(req)
    return reqs


def floor(req) -> str:
    """The lowest version ``req`` allows: its ``>=`` (or ``==``) bound."""
    bounds = [s.version for s in req.specifier if s.operator in (">=", "==", "===")]
    if len(bounds) != 1:
        raise ValueError(f"{req}: needs exactly one floor (>=) or pin (==)")
    return bounds[0]


def off_floor(reqs, have: dict[str, str], held: set[str]) -> list[str]:
    """Direct requirements not installed at their floor (held ones excepted): what the lane did
    not test although the requirement files claim it works."""
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    have = {canonicalize_name(k): v for k, v in have.items()}
    problems = []
    for req in reqs:
        name = canonicalize_name(req.name)
        if name in held:
            continue
        got = have.get(name)
        if got is None:
            problems.append(f"{req.name}: not installed")
        elif Version(got) != Version(floor(req)):
            problems.append(f"{req.name}: installed {got}, floor {floor(req)}")
    return problems


def exact_pins(dists) -> set[str]:
    """torch, torchvision, and what any of ``dists`` requires at one exact version (==)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    names = {canonicalize_name(n) for n in HELD}
    for dist in dists:
        for line in dist.requires or []:
            req = Requirement(line)
            if any(s.operator in ("==", "===") for s in req.specifier):
                names.add(canonicalize_name(req.name))
    return names


def build_environment(work: Path, log) -> tuple[Path, dict[str, str]]:
    """The venv with the floors installed; returns its python and the held versions."""
    from packaging.utils import canonicalize_name

    reqs = direct_requirements()
    direct = {canonicalize_name(r.name) for r in reqs}
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = _site_packages(python)
    # torch, torchvision and what they require that is not itself a direct requirement
    held = _closure(HELD, skip=direct - {canonicalize_name(n) for n in HELD})
    n = link_distributions(held.values(), site)
    log(f"linked {len(held)} distributions ({n} files) from {sys.prefix}: "
        + ", ".join(f"{name} {d.version}" for name, d in sorted(held.items()) if name in HELD))
    # pinned: torch, torchvision and what they pin exactly (CUDA libraries, triton: gigabytes); the
    # rest of what is linked (fsspec, sympy, ...) the resolver may change to suit the floors
    pins = work / "held.txt"
    pins.write_text("".join(f"{name}=={d.version}\n" for name, d in sorted(held.items())
                            if name in exact_pins(held.values())))
    # Each direct requirement pinned at its floor: the resolver cannot lift one to dodge a conflict
    # (lowest-direct alone does); a floor that cannot be installed with the others fails here.
    floors = work / "floors.txt"
    floors.write_text("".join(f"{r.name}=={floor(r)}\n" for r in reqs
                              if canonicalize_name(r.name) not in {canonicalize_name(n) for n in HELD}))
    cmd = [str(uv(work)), "pip", "install", "--python", str(python), "--resolution", "lowest-direct",
           "-c", str(pins), "-c", str(floors)]
    for file in REQUIREMENT_FILES:
        cmd += ["-r", str(ROOT / file)]
    log(f"$ uv pip install ... ({UV})  " + " ".join(cmd[3:]))
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=_pip_env())
    log(f"installed in {time.perf_counter() - t0:.0f} s")
    (site / "curriculum_checkout.pth").write_text(f"{ROOT}\n{ROOT / 'tools' / 'setup'}\n")  # helpers, its installer
    return python, {name: d.version for name, d in held.items() if name in HELD}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, help="build in this folder and keep it (default: a temp folder)")
    parser.add_argument("--notebooks", nargs="*", default=NOTEBOOKS, help="notebooks to run top to bottom")
    parser.add_argument("--workers", type=int, default=int(os.environ.get("TEST_WORKERS") or 2),
                        help="pytest-xdist workers for the unit tests and the notebooks (1: one after another)")
    parser.add_argument("--unit", nargs="*", default=UNIT_TESTS,
                        help="unit test files to run ('all': every test, as make unit; none: skip)")
    parser.add_argument("--reuse", action="store_true", help="with --keep: reuse the venv built there")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per notebook cell (as make colab)")
    args = parser.parse_args(argv)
    from packaging.utils import canonicalize_name

    start = time.perf_counter()
    failures: list[str] = []
    times: list[tuple[str, float]] = []

    def step(name):
        times.append((name, time.perf_counter()))
        print(f"\n== {name}", flush=True)

    if args.keep and args.reuse and (args.keep / "venv").is_dir():
        work = args.keep.resolve()
    elif args.keep:
        if args.keep.exists():
            shutil.rmtree(args.keep)
        args.keep.mkdir(parents=True)
        work = args.keep.resolve()
    else:
        (ROOT / "build").mkdir(exist_ok=True)  # beside .venv: hard links need the same file system
        work = Path(tempfile.mkdtemp(prefix="lowest-lane-", dir=ROOT / "build"))
    held: dict[str, str] = {}
    try:
        step("fresh venv: torch held at this environment's, every other direct requirement at its floor")
        try:
            if args.reuse and (work / "venv").is_dir():
                python = work / "venv" / "bin" / "python"
                held = {n: v for n, v in installed(python).items() if n in HELD}
                print(f"reusing {work / 'venv'}")
            else:
                python, held = build_environment(work, print)
        except subprocess.CalledProcessError as exc:
            failures.append(f"the floors do not install together: {exc}")
            raise SystemExit from None  # to the summary below
        have = installed(python)
        reqs = direct_requirements()
        print("installed (floor -> version):")
        for req in reqs:
            name = canonicalize_name(req.name)
            version = {canonicalize_name(k): v for k, v in have.items()}.get(name)
            print(f"  {req.name:<22} {floor(req):<10} -> {version}{'  (held: not the floor)' if name in held else ''}")
        failures += [f"not at its floor: {p}" for p in off_floor(reqs, have, set(held))]
        env = {**_pip_env(), "CURRICULUM_PROFILE": "smoke", "CURRICULUM_REQUIRE_SOLUTIONS": "1",
               "CURRICULUM_RUNS_DIR": str(work / "runs"),
               # its own download/tokenizer cache: a tokenizer.json written by a newer tokenizers
               # (this environment's) does not load in tokenizers 0.19
               "CURRICULUM_CACHE_DIR": str(work / "cache"), "PATH": f"{python.parent}:{os.environ['PATH']}",
               "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
               "MKL_NUM_THREADS": os.environ.get("MKL_NUM_THREADS", "1")}
        env = {k: v for k, v in env.items() if k != "CURRICULUM_SWITCH_RUNS"}
        tests = (["tests"] if args.unit == ["all"] else list(args.unit or [])) + list(args.notebooks or [])
        if tests:  # one pytest run: the notebooks fill the workers while the unit tests run (nbval)
            step(f"unit tests and notebooks (smoke) at the floors: {' '.join(tests)}")
            run = subprocess.run([str(python), "-m", "pytest", "-q", "-m", "not robustness", "-p", "no:cacheprovider",
                                  "--nbval-lax", "--nbval-current-env", f"--nbval-cell-timeout={args.timeout}",
                                  *parallel(args.workers, "--dist", "loadscope"), *tests], cwd=ROOT, env=env)
            if run.returncode:
                failures.append(f"unit tests or notebooks failed at the floors (exit {run.returncode})")
    except SystemExit:
        pass
    finally:
        times.append(("end", time.perf_counter()))
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report_steps("Lowest-versions lane", times, start, failures)
    held_text = ", ".join(f"{k} {v}" for k, v in held.items()) or "torch, torchvision"
    print(f"Lowest-versions lane: {'FAILED' if failures else 'passed'} ({len(failures)} problem(s)); "
          f"held, not at their floors (untested offline here; Colab's come from make colab): {held_text}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
