"""Dependencies fit Colab: every package imported directly is declared (core, or the extra of
the notebook that imports it), core requirements are ranges with safe floors, and the versions
Colab ships (ipywidgets 7.7) are allowed."""

import ast
import functools
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import nbtools  # noqa: E402

# Imported, but not ours to declare: provided by Colab itself, or this repository's own modules.
NOT_DECLARED = {"helpers", "google", "curriculum_setup"} | {p.stem for p in [*ROOT.glob("tools/*.py"), *ROOT.glob("tests/*.py")]}
# Modules of the optional deploy layer (helpers.ops); everything else in helpers is core.
DEPLOY_MODULES = {"helpers/ops/export.py", "helpers/ops/serve.py", "helpers/ops/demo.py"}
# modules that load the offline MiniLM package on first use (only notebooks with [offline] call them)
OFFLINE_MODULES = {"helpers/summarization.py"}


def requirements(file: str) -> list[Requirement]:
    lines = [ln.split("#", 1)[0].strip() for ln in (ROOT / file).read_text().splitlines()]
    return [Requirement(ln) for ln in lines if ln]


CORE = requirements("requirements.txt")
EXTRAS = {"deploy": requirements("requirements-deploy.txt"),
          "offline": requirements("requirements-offline.txt")}
DEV = requirements("requirements-dev.txt")


def names(reqs) -> set[str]:
    return {canonicalize_name(r.name) for r in reqs}


@functools.lru_cache(maxsize=1)
def _distributions() -> dict[str, list[str]]:
    return metadata.packages_distributions()


def imported_distributions(path: Path) -> dict[str, str]:
    """distribution name -> the module imported for it, for each third-party import in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module.split(".")[0])
    dists = _distributions()
    found = {}
    for module in modules - set(sys.stdlib_module_names) - NOT_DECLARED - {"__future__"}:
        if module not in dists and any(canonicalize_name(module) == canonicalize_name(r.name)
                                       and r.marker and not r.marker.evaluate() for r in DEV):
            continue  # e.g. tomli, declared for Python < 3.11 only
        assert module in dists, f"{path.relative_to(ROOT)} imports {module!r}, which no installed package provides"
        for dist in dists[module]:
            found[canonicalize_name(dist)] = module
    return found


def test_helpers_imports_only_declared_packages():
    for path in sorted((ROOT / "helpers").rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        allowed = (names(CORE) | (names(EXTRAS["deploy"]) if rel in DEPLOY_MODULES else set())
                   | (names(EXTRAS["offline"]) if rel in OFFLINE_MODULES else set()))
        for dist, module in imported_distributions(path).items():
            assert dist in allowed, (f"{rel} imports {module!r} ({dist}), which is not in "
                                     f"requirements.txt{' or the [deploy] extra' if rel in DEPLOY_MODULES else ''}")


def test_each_notebook_imports_only_core_packages_and_its_own_extras():
    for stem in nbtools.pairs():
        rel = str(stem.relative_to(ROOT))
        extras = nbtools.notebook_extras(rel + ".ipynb")
        allowed = names(CORE).union(*(names(EXTRAS[e]) for e in extras))
        for dist, module in imported_distributions(stem.with_suffix(".py")).items():
            assert dist in allowed, (f"{rel} imports {module!r} ({dist}): declare it in requirements.txt, or "
                                     f"in an extra listed for this notebook in pyproject.toml [tool.curriculum.extras]")


def test_tests_and_tools_import_only_declared_packages():
    declared = names(CORE) | names(DEV) | names(EXTRAS["deploy"]) | names(EXTRAS["offline"])
    for path in [*sorted((ROOT / "tests").glob("*.py")), *sorted((ROOT / "tools").glob("*.py"))]:
        for dist, module in imported_distributions(path).items():
            assert dist in declared, f"{path.relative_to(ROOT)} imports {module!r} ({dist}), declared nowhere"


def test_core_requirements_are_ranges_with_safe_floors():
    for req in CORE + EXTRAS["deploy"] + EXTRAS["offline"]:
        assert not any(s.operator in ("==", "===") for s in req.specifier), f"{req}: a pin, Colab would reinstall it"
        assert any(s.operator == ">=" for s in req.specifier), f"{req}: no floor"
    torch = next(r for r in CORE if r.name == "torch")
    assert "2.5.1" not in torch.specifier and "2.6.0" in torch.specifier  # weights_only loading is safe from 2.6


@pytest.mark.parametrize("colab_version", ["7.7.1", "7.7.5", "8.1.5"])
def test_ipywidgets_range_allows_colabs_7_7_and_8(colab_version):
    widgets = next(r for r in CORE if r.name == "ipywidgets")
    assert colab_version in widgets.specifier


def test_installed_versions_satisfy_the_requirements():
    """The environment the tests run in is one the requirements allow (floors are not above
    what we test with)."""
    for req in CORE + EXTRAS["deploy"] + EXTRAS["offline"]:
        assert metadata.version(req.name) in req.specifier, f"{req.name} {metadata.version(req.name)} does not satisfy {req}"


def test_pyproject_declares_each_extra_and_make_setup_installs_all():
    optional = nbtools._pyproject()["tool"]["setuptools"]["dynamic"]["optional-dependencies"]
    assert optional["deploy"]["file"] == ["requirements-deploy.txt"]
    assert optional["offline"]["file"] == ["requirements-offline.txt"]
    makefile = (ROOT / "Makefile").read_text()
    setup = makefile[makefile.index("\nsetup:"):makefile.index("--no-deps -e .")]
    for file in ("requirements.txt", "requirements-deploy.txt", "requirements-offline.txt", "requirements-lab.txt"):
        assert f"-r {file}" in setup, f"make setup does not install {file}"
    assert "requirements-dev.txt" not in setup, "the test tools belong to make setup-dev, not a learner's make setup"
    dev = makefile[makefile.index("\nsetup-dev:"):]
    dev = dev[:dev.index("\n\n")]
    assert "setup-dev: setup" in dev and "-r requirements-dev.txt" in dev
    # `make test` on a fresh clone installs the test tools itself
    assert "$(BIN)/pytest:\n" in makefile and "$(MAKE) --no-print-directory setup-dev" in makefile


def test_the_lock_file_pins_every_requirement_inside_its_range():
    """requirements-lock.txt (issue #23): `make setup` installs its versions (pip -c), so each
    direct requirement must be pinned there at a version its range allows, exactly once."""
    from packaging.version import Version

    pins = {}
    for line in (ROOT / "requirements-lock.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version and ";" not in line and "@" not in line, f"not a plain pin: {line!r}"
            assert canonicalize_name(name) not in pins, f"{name} pinned twice"
            pins[canonicalize_name(name)] = Version(version)
    assert "curriculum-helpers" not in pins, "the course package itself is installed editable, not locked"
    files = ["requirements.txt", "requirements-deploy.txt", "requirements-offline.txt", "requirements-lab.txt",
             "requirements-dev.txt"]
    for req in (r for f in files for r in requirements(f)):
        if req.marker is not None and not req.marker.evaluate():
            continue
        assert canonicalize_name(req.name) in pins, f"{req.name} is not in requirements-lock.txt. Fix: make lock"
        assert pins[canonicalize_name(req.name)] in req.specifier, (
            f"{req.name}=={pins[canonicalize_name(req.name)]} in the lock is outside {req}. Fix: make lock")
    makefile = (ROOT / "Makefile").read_text()
    assert "LOCK = $(if $(UNLOCKED),,-c requirements-lock.txt)" in makefile
    assert makefile.count("$(LOCK) -r requirements") == 2  # make setup and make setup-dev
