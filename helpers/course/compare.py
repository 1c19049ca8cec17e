"""The "Paper vs. this run" table every training notebook ends its results with (all weeks).

    paper_vs_run([
        ("BLEU EN-DE", "27.3: base model, WMT14 newstest2014 (Table 2)",
         f"{bleu:.1f}: Multi30k test 2016, {n} sentences", "data set, model size, steps"),
    ])

Each row: what is compared, the paper's figure with its setup and source, this run's figure
with its setup (fill it from the run and its config, never type a result in), and what
differs. Shown as a table in Jupyter, as text elsewhere; returned as a list of dicts so the
notebook can store it in metrics.json.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from IPython import get_ipython
from IPython.display import Markdown, display

COLUMNS = ("what", "paper", "this run", "what differs")
HEADING = "Paper vs. this run"  # the notebook section's heading (tools/nbtools.py checks it)


def _row(row: Sequence[str] | Mapping[str, str], index: int) -> dict[str, str]:
    values = [row.get(c, "") for c in COLUMNS] if isinstance(row, Mapping) else list(row)
    if not 3 <= len(values) <= 4:
        raise ValueError(f"row {index}: give 3 or 4 fields ({', '.join(COLUMNS)}), got {len(values)}")
    values += [""] * (4 - len(values))
    out = {c: str(v).strip() for c, v in zip(COLUMNS, values)}
    for column in COLUMNS[:3]:
        if not out[column]:
            raise ValueError(f"row {index} ({out['what'] or '?'}): '{column}' is empty. Fix: say "
                             f"what the figure is, or write 'not reported' with the reason.")
    return out


def markdown(rows: Iterable[Mapping[str, str]], title: str = HEADING) -> str:
    """The rows as a Markdown table under a bold title."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = [f"**{title}**", "", "| " + " | ".join(COLUMNS) + " |", "|---" * len(COLUMNS) + "|"]
    lines += ["| " + " | ".join(cell(r[c]) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def paper_vs_run(rows: Iterable[Sequence[str] | Mapping[str, str]], *, title: str = HEADING,
                 show: bool = True) -> list[dict[str, str]]:
    """Check, show and return the comparison rows (see the module docstring)."""
    checked = [_row(r, i) for i, r in enumerate(rows)]
    if not checked:
        raise ValueError("no rows to compare. Fix: add at least the headline figure.")
    if show:
        if get_ipython() is not None:
            display(Markdown(markdown(checked, title)))
        else:
            print(title)
            for r in checked:
                print(f"- {r['what']}\n    paper:    {r['paper']}\n    this run: {r['this run']}"
                      + (f"\n    differs:  {r['what differs']}" if r["what differs"] else ""))
    return checked


def paired_verdict(changes: Sequence[float], *, min_change: float, min_pairs: int = 2) -> str:
    """The verdict on "the change raises the figure" from paired seeds (week 4d's Table 3 rows).

    ``changes``: one relative change per seed pair (the changed row against the base row trained
    from the same seed and batches). One pair carries no estimate of its own noise, so with fewer
    than ``min_pairs`` the answer is ``"inconclusive"`` whatever its size. Otherwise ``"holds"``
    when every pair moved the same way (up) and the mean clears ``min_change``; ``"not shown"``
    when they did not.
    """
    if len(changes) < min_pairs:
        return "inconclusive"
    return "holds" if min(changes) > 0 and sum(changes) / len(changes) > min_change else "not shown"
