"""Repository-wide pytest hooks: a per-notebook timing table after nbval runs, and which
notebooks must share one worker when `make notebooks` runs them in parallel (pytest-xdist).

The smoke budget is 60 s per notebook on 2 CPU cores. The table reports it (a figure for
the closing notes and for `make bench`), it does not fail a run: timing is not a test.
"""

import functools
from collections import defaultdict

import pytest

SMOKE_BUDGET_S = 60.0
_durations: dict[str, float] = defaultdict(float)
# Notebooks that read what another one saved, and what they read: the DCGAN final project
# continues week 4's checkpoint, week 4f deploys week 3's translator and week 4's generator, the
# Transformer final project starts from week 4e's summarizer. (Each would train its own if it
# found nothing, but two notebooks writing one checkpoint at once would race, and a result must
# not depend on which finished first.) `make notebooks` runs each connected group in one worker,
# in path order; tools/determinism.py --workers runs a notebook once all it reads has run.
READS_FROM = {
    "dcgan/week5_final_project": ("dcgan/week4_training",),
    "transformer/week4f_deploy": ("transformer/week3_transformer", "dcgan/week4_training"),
    "transformer/week5_final_project": ("transformer/week4e_custom_datasets",),
}


@functools.cache
def share_a_worker() -> dict[str, frozenset[str]]:
    """Each notebook (``<track>/<name>``) of READS_FROM -> its connected group (itself included)."""
    groups: dict[str, frozenset[str]] = {}
    for reader, sources in READS_FROM.items():
        merged = frozenset().union({reader, *sources}, *(groups.get(n, ()) for n in (reader, *sources)))
        for name in merged:
            groups[name] = merged
    return groups


def notebook_group(path: str) -> str | None:
    """The xdist scope of a notebook (``notebooks/<track>/<name>.ipynb``): the first name of its
    group, else its own name; None for anything else."""
    if not path.endswith(".ipynb"):
        return None
    key = path.split("notebooks/", 1)[-1].removesuffix(".ipynb")
    return min(share_a_worker().get(key, {key}))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Under ``-n N --dist loadscope`` (``make notebooks``) a notebook's cells go to one worker in
    order, as usual, and so does each group of notebooks connected by READS_FROM. (Not pytest-xdist's ``xdist_group``
    marks: pytest-xdist 3.8 cannot rename pytest 9.2's node ids, so they are silently ignored.)"""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling  # noqa: PLC0415 - only under pytest-xdist

    class NotebookChains(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return notebook_group(nodeid.split("::")[0]) or super()._split_scope(nodeid)

    return NotebookChains(config, log)


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::")[0]
    if path.endswith(".ipynb"):
        _durations[path] += report.duration


def pytest_terminal_summary(terminalreporter):
    if not _durations:
        return
    tr = terminalreporter
    tr.section("notebook timings (smoke budget 60 s each)")
    for path, seconds in sorted(_durations.items(), key=lambda kv: -kv[1]):
        flag = "  <-- over budget" if seconds > SMOKE_BUDGET_S else ""
        tr.write_line(f"{seconds:7.1f} s  {path}{flag}")
    tr.write_line(f"{sum(_durations.values()):7.1f} s  total")
