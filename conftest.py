"""Repository-wide pytest hooks: a per-notebook timing table after nbval runs.

The smoke budget is 60 s per notebook on 2 CPU cores. The table reports it (a figure for
the closing notes and for `make bench`), it does not fail a run: timing is not a test.
"""

from collections import defaultdict

SMOKE_BUDGET_S = 60.0
_durations: dict[str, float] = defaultdict(float)


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
