"""The lowest-versions lane's checks (the lane itself runs in CI: `make lowest`): every direct
requirement has one floor the lane can pin, a lifted floor is caught, and the lint tool is pinned."""

import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import lowest_lane  # noqa: E402


def test_floor_is_the_lowest_version_allowed():
    assert lowest_lane.floor(Requirement("torch>=2.6,<3")) == "2.6"
    assert lowest_lane.floor(Requirement("ruff==0.17.6")) == "0.17.6"
    with pytest.raises(ValueError):
        lowest_lane.floor(Requirement("numpy"))


def test_every_direct_requirement_has_one_floor():
    reqs = lowest_lane.direct_requirements()
    assert {"torch", "transformers", "ruff", "nbclient"} <= {r.name for r in reqs}
    for req in reqs:
        lowest_lane.floor(req)


def test_a_requirement_not_at_its_floor_is_caught():
    reqs = [Requirement("numpy>=2.0"), Requirement("torch>=2.6"), Requirement("ruff==0.17.6")]
    have = {"numpy": "2.0.0", "torch": "2.14.1", "ruff": "0.17.6"}
    assert lowest_lane.off_floor(reqs, have, {"torch"}) == []
    assert lowest_lane.off_floor(reqs, {**have, "numpy": "2.0.2"}, {"torch"}) == ["numpy: installed 2.0.2, floor 2.0"]
    assert lowest_lane.off_floor(reqs, {"numpy": "2.0"}, {"torch"}) == ["ruff: not installed"]


def test_lint_tool_is_pinned_exactly():
    """A ruff release cannot break `make test`: requirements-dev.txt pins the version we lint with."""
    from importlib import metadata

    ruff = next(r for r in lowest_lane.direct_requirements() if r.name == "ruff")
    assert [s.operator for s in ruff.specifier] == ["=="]
    assert metadata.version("ruff") in ruff.specifier
