"""Are the training notebooks deterministic? Run each one twice, compare its metrics.json.

    python tools/determinism.py                 # every notebook that calls write_metrics
    python tools/determinism.py notebooks/dcgan/week4_training.ipynb --threads 2

Each notebook that writes ``metrics.json`` (``helpers.runtime.metrics.write_metrics``) is executed
three times with ``CURRICULUM_PROFILE=smoke`` (nbclient):

1. in a fresh kernel with its own empty runs folder (``CURRICULUM_RUNS_DIR``);
2. in another fresh kernel with another empty runs folder, so nothing of run 1 can leak in;
3. in run 2's kernel again ("Run all" twice), see :func:`run_twice_in_one_kernel`.

CI passes ``--first-runs runs/make-test``: ``make test`` has just run every notebook once in a
fresh kernel (with the same fixed thread count), so those runs serve as run 1 (left where they were
written: a record may name its own folder). ``--second-runs DIR``: another folder of fresh-kernel
runs (e.g. a second ``make test TEST_RUNS=DIR``), compared with run 1 too.

Runs 1 and 2 must give the same metrics.json values, exactly (no tolerance); run 3 must give
run 2's values too, with no History grown and no extra output file. The notebooks run in path
order (or, with ``--workers``, after what they read), so the DCGAN final project finds week 4's
checkpoint as it does in ``make test``.

Every notebook with a time limit (:data:`RESUMED`: Transformer week 3, 4d and the final project,
DCGAN week 4 and the final project) is first run once more in run 2's folder with a time limit of
``--resume-limit`` seconds (a slow machine, at notebook level): training must stop early and say
so, leave a checkpoint mid-way, and *every cell after it must still run* (an early stop is a
normal outcome: plots show what was logged, checks of the finished result say "not judged",
metrics.json records the stop); run 2 must then say it resumes at that step, finish, pass every
check and still match run 1 exactly. The DCGAN final project (:data:`CONTINUES`) trains on
week 4's checkpoint: its early stop is forced right after week 4's, on the half-trained
checkpoint, which it continues and stops again; week 4's run 2 then resumes from that step, and
both must still match run 1 (checked without week 4, it stops and finishes in a folder of its own).

Under ``CURRICULUM_CLOCK_SHIFT_DAYS=365 PYTHONPATH=tools/clockshift`` (CI), runs 2 and 3 happen a
year ahead (every kernel inherits the shifted calendar) while run 1 is today's ``make test``: a
result that depends on the date shows up as a difference, and each record's ``written_at`` must
be the shift later than run 1's (:func:`clock_shift_problem`), proof that the kernels were shifted.

``--workers N`` (CI: 2) checks N notebooks at a time, each kernel's client in a process of its
own, a notebook only after those it reads from (``READS_FROM`` in ``conftest.py``); each
notebook's two slowest cells are printed, so a stall shows where it happened.

Held fixed, because they change floating-point results without being a bug:
``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` (``--threads`` or ``DETERMINISM_THREADS``, default 1;
torch's CPU reductions split work by thread count) and the device (the smoke profile runs on
the CPU).

Not compared (documented in README, "Determinism"): ``written_at`` and ``environment``
(timestamps, versions), and every value whose key names a measurement of the machine rather
than of the model: keys containing ``seconds``, ``ms/step``, ``_ms``, ``peak memory``,
``throughput``, ``per_second`` or ``time_s``. The report lists every excluded value it met.
Paths inside the runs folder are compared relative to it (each run has its own folder).

Exit status 0 when every notebook matched, 1 otherwise. Used by ``make determinism``.
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import os
import re
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXCLUDED_TOP = ("written_at", "environment")
EXCLUDED_KEY = re.compile(r"seconds|ms/step|_ms\b|peak memory|throughput|per_second|time_s", re.I)


def training_notebooks() -> list[Path]:
    """Notebooks whose .py side calls write_metrics, as .ipynb paths in path order."""
    found = []
    for py in sorted((ROOT / "notebooks").rglob("*.py")):
        if "write_metrics(" in py.read_text(encoding="utf-8"):
            found.append(py.with_suffix(".ipynb"))
    return found


@functools.cache
def _root_conftest():
    """The repository's conftest.py (loaded once), where READS_FROM says which notebook reads another's
    checkpoint (the one definition that ``make notebooks``'s parallel workers use too)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_root_conftest", ROOT / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rel(nb: Path) -> str:
    return str(nb.relative_to(ROOT / "notebooks").with_suffix(""))


def run_in_order(notebooks: list[Path], workers: int, work) -> None:
    """``work(nb)`` for every notebook, ``workers`` at a time, each once every notebook of the
    list that it reads from (READS_FROM) has finished; those that others wait for go first,
    then path order."""
    reads = _root_conftest().READS_FROM
    by_rel = {_rel(nb): nb for nb in notebooks}
    waits = {nb: {by_rel[d] for d in reads.get(_rel(nb), ()) if d in by_rel} for nb in notebooks}
    awaited = set().union(*waits.values())
    pending = sorted(notebooks, key=lambda nb: (nb not in awaited, notebooks.index(nb)))
    finished: set[Path] = set()
    errors: list[BaseException] = []
    cond = threading.Condition()

    def worker() -> None:
        while True:
            with cond:
                while pending and not any(waits[nb] <= finished for nb in pending):
                    cond.wait()
                if not pending:
                    return
                nb = next(nb for nb in pending if waits[nb] <= finished)
                pending.remove(nb)
            try:
                work(nb)
            except BaseException as exc:  # noqa: BLE001 - raised below, after the others finish
                errors.append(exc)
            finally:
                with cond:
                    finished.add(nb)
                    cond.notify_all()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


_POOL: ProcessPoolExecutor | None = None


def in_own_process(fn, *args):
    """``fn(*args)`` in a worker process of its own under ``--workers`` > 1 (else right here): two
    nbclient clients in threads of one process starve each other (CI: a notebook's kernel sat idle
    for ten minutes, waiting for its next cell, while the other thread's notebook ran)."""
    return fn(*args) if _POOL is None else _POOL.submit(fn, *args).result()


def _run_twice_job(nb: Path, runs: Path, threads: int, timeout: int, metrics: Path, scope: tuple[str, ...]):
    """:func:`run_twice_in_one_kernel` with what it collects returned (for another process)."""
    texts: list[str] = []
    timings: list[tuple[float, int, int]] = []
    problems, record = run_twice_in_one_kernel(nb, runs, threads, timeout, metrics=metrics, texts=texts,
                                               scope=scope, timings=timings)
    return problems, record, texts, timings


def own_folders(rel: Path) -> tuple[str, ...]:
    """The run folders (relative to the runs folder) whose files a rerun of ``rel`` is judged
    by: its own, and those of the notebooks it reads from (finished before it starts), not
    those of notebooks running beside it."""
    return (str(rel), *_root_conftest().READS_FROM.get(str(rel), ()))


def flatten(value, prefix: str = "") -> dict[str, object]:
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}/{k}" if prefix else str(k)))
        return out
    if isinstance(value, list):
        out = {}
        for i, v in enumerate(value):
            out.update(flatten(v, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


def split_excluded(record: dict) -> tuple[dict[str, object], list[str]]:
    """(compared values, names of excluded values)."""
    flat = flatten({k: v for k, v in record.items() if k not in EXCLUDED_TOP})
    kept = {k: v for k, v in flat.items() if not EXCLUDED_KEY.search(k)}
    excluded = [k for k in flat if k not in kept] + [k for k in EXCLUDED_TOP if k in record]
    return kept, excluded


def clock_shift_problem(first: dict, second: dict, days: float | None = None) -> str | None:
    """Under ``CURRICULUM_CLOCK_SHIFT_DAYS`` (CI runs runs 2 and 3 a year ahead, tools/clockshift),
    the notebook's own record proves its kernel saw the shifted calendar: run 2's ``written_at``
    must be that many days after run 1's (written today). None when fine or not shifted."""
    if days is None:
        days = float(os.environ.get("CURRICULUM_CLOCK_SHIFT_DAYS") or 0)
    if not days:
        return None
    from datetime import datetime

    try:
        gap = (datetime.fromisoformat(second["written_at"]) - datetime.fromisoformat(first["written_at"]))
    except (KeyError, TypeError, ValueError) as exc:
        return f"written_at: cannot tell whether the clock was shifted ({type(exc).__name__}: {exc})"
    if abs(gap.total_seconds() / 86400 - days) > 1:
        return (f"written_at: run 2 is {gap.total_seconds() / 86400:.2f} days after run 1, not {days:g} "
                f"(CURRICULUM_CLOCK_SHIFT_DAYS): the kernel's clock was not shifted. Fix: "
                f"PYTHONPATH=tools/clockshift, and time-machine installed (make setup-dev)")
    return None


def _relative(record: dict, runs: Path | None) -> dict:
    """The record with its runs folder written as ``<runs>`` (each run has its own folder): the
    absolute path, and the ``<folder name>/...`` form :func:`helpers.ops.demo.shown_path` records."""
    if runs is None:
        return record
    text = json.dumps(record).replace(str(runs), "<runs>")
    return json.loads(re.sub(r'(?<=["\s(])' + re.escape(runs.name) + "/", "<runs>/", text))


def compare(first: dict, second: dict, runs: tuple[Path, Path] | None = None
            ) -> tuple[list[str], list[str], int]:
    """(differences, excluded names, number of values compared)."""
    if runs is not None:
        first, second = _relative(first, runs[0]), _relative(second, runs[1])
    a, excluded = split_excluded(first)
    b, _ = split_excluded(second)
    diffs = []
    for key in sorted(set(a) | set(b)):
        if key not in a or key not in b:
            diffs.append(f"{key}: only in run {'1' if key in a else '2'}")
        elif a[key] != b[key]:
            diffs.append(f"{key}: {a[key]!r} (run 1) != {b[key]!r} (run 2)")
    return diffs, excluded, len(a)


# Printed by a cell appended after each pass: the length of every History in the kernel.
PROBE = ("import json as _json\nfrom helpers.runtime.history import History as _History\n"
         "print('HISTORIES', _json.dumps({_k: len(_v) for _k, _v in list(globals().items()) "
         "if isinstance(_v, _History)}, sort_keys=True))")


# notebook (relative to notebooks/, no suffix) -> the config families whose time limit is cut
RESUMED = {"transformer/week3_transformer": ("translation",), "dcgan/week4_training": ("dcgan",),
           "transformer/week4d_table3": ("table3",), "transformer/week5_final_project": ("summarizer",),
           "dcgan/week5_final_project": ("dcgan",)}
# notebook -> the notebook whose checkpoint its training continues (the DCGAN final project continues
# week 4's run). Its early stop is forced in run 2's folder right after that notebook's own (so it
# continues the half-trained checkpoint and stops again); that notebook's run 2 then resumes where
# it stopped and must still match run 1 exactly. Checked without that notebook, it is stopped and
# finished in a folder of its own (it then trains the whole run there, minutes more).
CONTINUES = {"dcgan/week5_final_project": "dcgan/week4_training"}
STOPPED_MARK = "STOPPED EARLY (time limit"
NOT_JUDGED_MARK = "not judged"


def interrupt(notebook: Path, runs: Path, threads: int, timeout: int, families, limit_s: float
              ) -> tuple[list[str], int | None]:
    """Run the whole of ``notebook`` with ``time_limit_s = limit_s`` for ``families`` (a cell
    inserted after the setup cell): an early stop is a normal outcome, so every cell must run
    (plots show what was logged, checks that need a finished run say "not judged"), training
    must say it stopped early, and metrics.json must record it. Returns (problems, the step its
    checkpoint holds)."""
    import nbformat

    from helpers.runtime.checkpoints import checkpoint_step

    nb, client = _client(notebook, timeout)
    first_code = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    nb.cells.insert(first_code + 1, nbformat.v4.new_code_cell(
        "from helpers.runtime import config as _config\n"
        + "".join(f"_config.FAMILIES[{f!r}]['smoke']['time_limit_s'] = {limit_s!r}\n" for f in families)))
    problems = []
    # which checkpoints exist before, by modification time: not the wall clock, which a shifted
    # calendar (CURRICULUM_CLOCK_SHIFT_DAYS) moves in this process while file times stay real
    before = {p: p.stat().st_mtime_ns for p in runs.rglob("checkpoints/smoke/*.pt")} if runs.is_dir() else {}
    with client.setup_kernel(env=_env(runs, threads)):
        for index, cell in enumerate(nb.cells):
            try:
                client.execute_cell(cell, index)
            except Exception as exc:  # noqa: BLE001 - the finding: a cell that cannot take an early stop
                lines = [ln for ln in re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip().splitlines() if ln.strip()]
                problems.append(f"cell {index} failed after the early stop: {type(exc).__name__}: "
                                f"{' | '.join(lines[-3:])[-600:]}")
                break
    text = _stream_text(nb)
    rel = notebook.relative_to(ROOT / "notebooks").with_suffix("")
    if STOPPED_MARK not in text:
        problems.append(f"the interrupted run did not print {STOPPED_MARK!r}")
    if not problems and NOT_JUDGED_MARK not in text:
        problems.append(f"no check said {NOT_JUDGED_MARK!r} after the early stop")
    metrics = runs / rel / "metrics.json"
    if not problems:
        record = json.loads(metrics.read_text()) if metrics.is_file() else {}
        if not _records_early_stop(record.get("metrics", {})):
            problems.append(f"{rel}/metrics.json does not record the early stop")
    ckpts = [p for p in (runs / rel / "checkpoints" / "smoke").glob("*.pt") if ".step" not in p.name]
    if not ckpts:  # a notebook that continues another's run (the DCGAN final project, week 4's)
        ckpts = [p for p in runs.rglob("checkpoints/smoke/*.pt") if ".step" not in p.name
                 and before.get(p) != p.stat().st_mtime_ns]
    if not ckpts:
        return problems + [f"no checkpoint written under {runs} by the interrupted run"], None
    return problems, min(checkpoint_step(p) for p in ckpts)


def interrupt_and_finish(notebook: Path, runs: Path, threads: int, timeout: int, families, limit_s: float
                         ) -> tuple[list[str], int | None]:
    """:func:`interrupt`, then the notebook again in a fresh kernel in the same folder: it must say
    it resumes at the saved step and pass every check (an exception in any cell is a problem)."""
    problems, step = interrupt(notebook, runs, threads, timeout, families, limit_s)
    nb, client = _client(notebook, timeout)
    try:
        client.execute(env=_env(runs, threads))
    except Exception as exc:  # noqa: BLE001 - the finding
        lines = [ln for ln in re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip().splitlines() if ln.strip()]
        return problems + [f"the run after the early stop failed: {' | '.join(lines[-3:])[-600:]}"], step
    if step is not None and f"Resuming from step {step} of" not in _stream_text(nb):
        problems.append(f"the run after the early stop did not say 'Resuming from step {step} of ...'")
    return problems, step


def _records_early_stop(metrics) -> bool:
    """Somewhere in metrics.json a run record says ``stopped_early`` (a reason, not null)."""
    if isinstance(metrics, dict):
        if metrics.get("stopped_early"):
            return True
        return any(_records_early_stop(v) for v in metrics.values())
    if isinstance(metrics, list):
        return any(_records_early_stop(v) for v in metrics)
    return False


def _stream_text(nb) -> str:
    return "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", [])
                   if o.get("output_type") == "stream")


def _client(notebook: Path, timeout: int):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(notebook.parent)}})
    return nb, client


def _env(runs: Path, threads: int) -> dict[str, str]:
    return {**os.environ, "CURRICULUM_PROFILE": "smoke", "CURRICULUM_RUNS_DIR": str(runs),
            "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def execute(notebook: Path, runs: Path, threads: int, timeout: int) -> float:
    """Run the notebook once in a fresh kernel; returns seconds."""
    _, client = _client(notebook, timeout)
    start = time.perf_counter()
    client.execute(env=_env(runs, threads))
    return time.perf_counter() - start


def _files(folder: Path, scope: tuple[str, ...] | None = None) -> set[str]:
    """The files under ``folder`` (only those under its sub-folders ``scope``, when given)."""
    roots = [folder / part for part in scope] if scope else [folder]
    return {str(p.relative_to(folder)) for root in roots if root.is_dir() for p in root.rglob("*") if p.is_file()}


def run_twice_in_one_kernel(notebook: Path, runs: Path, threads: int = 1,
                            timeout: int = 600, metrics: Path | None = None,
                            texts: list[str] | None = None, scope: tuple[str, ...] | None = None,
                            timings: list[tuple[float, int, int]] | None = None) -> tuple[list[str], dict | None]:
    """Execute every cell of ``notebook``, then every cell again, in ONE kernel (what a learner
    does with "Run all" twice). Returns the problems found (empty list: none) and the first pass's metrics.json:

    - a ``History`` in the kernel that is longer after the second pass (state carried over);
    - more files in the runs folder after the second pass than after the first (e.g. a second
      TensorBoard event file beside the first, so every curve shows up twice);
    - metrics.json values that differ between the passes (``metrics``: where the notebook
      writes it; timings excluded as in :func:`compare`).

    ``scope``: the sub-folders of ``runs`` to count files in (others may be written by notebooks
    running at the same time). ``timings`` collects (seconds, run 2 or 3, cell index) per cell.
    """
    import nbformat

    nb, client = _client(notebook, timeout)
    probe = nbformat.v4.new_code_cell(PROBE)
    nb.cells.append(probe)
    passes = []
    with client.setup_kernel(env=_env(runs, threads)):
        for run in (2, 3):
            client.reset_execution_trackers()
            for index, cell in enumerate(nb.cells):
                t0 = time.perf_counter()
                client.execute_cell(cell, index)
                if timings is not None:
                    timings.append((time.perf_counter() - t0, run, index))
            if texts is not None:
                texts.append(_stream_text(nb))
            text = "".join(o.get("text", "") for o in probe.outputs if o.get("output_type") == "stream")
            line = next(ln for ln in text.splitlines() if ln.startswith("HISTORIES "))
            record = json.loads(metrics.read_text()) if metrics is not None and metrics.is_file() else None
            passes.append((json.loads(line[len("HISTORIES "):]), _files(runs, scope), record))
    (hist1, files1, rec1), (hist2, files2, rec2) = passes
    problems = [f"History {name!r} has {hist2[name]} entries after the second run, {hist1.get(name)} "
                f"after the first" for name in sorted(hist2) if hist2[name] != hist1.get(name)]
    if len(files2) > len(files1):  # replaced files are fine, piled-up ones are not
        problems += [f"the second run added {name}; the runs folder now holds {len(files2)} files, "
                     f"{len(files1)} after the first run" for name in sorted(files2 - files1)]
    if (rec1 is None) != (rec2 is None):
        problems.append("metrics.json written by only one of the runs")
    elif rec1 is not None:
        problems += [f"metrics.json {d}" for d in compare(rec1, rec2)[0]]
    return problems, rec1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks to check (default: every one that writes metrics.json)")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("DETERMINISM_THREADS", 1)))
    parser.add_argument("--workers", type=int, default=int(os.environ.get("DETERMINISM_WORKERS", 1)),
                        help="notebooks checked at a time (each with --threads threads); a notebook that "
                             "reads another's checkpoint waits for it (READS_FROM in conftest.py)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    parser.add_argument("--resume-limit", type=float, default=1.0,
                        help="time limit (s) of the interrupted run of each notebook in RESUMED")
    parser.add_argument("--first-runs", type=Path, default=None,
                        help="a runs folder where every notebook already ran once in a fresh kernel "
                             "with the same threads (e.g. runs/make-test after `make test` with "
                             "OMP_NUM_THREADS fixed): used as run 1 instead of running them again (CI)")
    parser.add_argument("--second-runs", type=Path, default=None,
                        help="another runs folder where every notebook ran in a fresh kernel with the same "
                             "threads (e.g. a second `make test TEST_RUNS=DIR`): compared with run 1 too")
    args = parser.parse_args(argv)
    notebooks = [p.resolve() for p in args.notebooks] or training_notebooks()
    start = time.perf_counter()
    results: dict[Path, tuple[list[str], list[str], int]] = {}
    same_kernel: dict[Path, list[str]] = {}
    resumed: dict[Path, tuple[list[str], int | None]] = {}
    resume_at: dict[Path, int | None] = {}  # the step run 2 must say it resumes from
    checked = {_rel(nb) for nb in notebooks}
    with tempfile.TemporaryDirectory(prefix="determinism-") as tmp:
        first, second = Path(tmp) / "run1", Path(tmp) / "run2"
        if args.first_runs is not None:
            first = args.first_runs.resolve()
            missing = [str(nb.relative_to(ROOT)) for nb in notebooks
                       if not (first / nb.relative_to(ROOT / "notebooks").with_suffix("") / "metrics.json").is_file()]
            if missing:
                print(f"--first-runs {first}: no metrics.json for {', '.join(missing)}. Fix: run `make test` "
                      f"(it writes runs/make-test) first, or leave --first-runs out.", file=sys.stderr)
                return 2
            print(f"run 1: the runs in {first} (fresh kernels, {args.threads} thread(s) assumed)", flush=True)
        for nb in notebooks if args.first_runs is None else []:  # run 1: a fresh kernel per notebook
            try:
                seconds = execute(nb, first, args.threads, args.timeout)
            except Exception as exc:  # noqa: BLE001 - report it, check the others
                print(f"run 1: {nb.relative_to(ROOT)} FAILED: {type(exc).__name__}: "
                      f"{str(exc).strip().splitlines()[-1:]}", flush=True)
                continue
            print(f"run 1: {nb.relative_to(ROOT)} ({seconds:.0f} s)", flush=True)

        def check(nb: Path) -> None:  # runs 2 and 3 of one notebook: a fresh kernel that runs it twice
            rel = nb.relative_to(ROOT / "notebooks").with_suffix("")
            t0 = time.perf_counter()
            if str(rel) in CONTINUES and CONTINUES[str(rel)] in checked:
                pass  # stopped early in the job of the notebook it continues (below), before that one resumed
            elif str(rel) in CONTINUES:  # stopped early and resumed in a folder of its own
                resumed[nb] = in_own_process(interrupt_and_finish, nb, Path(tmp) / "isolated", args.threads,
                                             args.timeout, RESUMED[str(rel)], args.resume_limit)
                print(f"interrupted: {nb.relative_to(ROOT)} stopped at step {resumed[nb][1]}, then finished "
                      f"in a folder of its own ({time.perf_counter() - t0:.0f} s)", flush=True)
                t0 = time.perf_counter()
            elif str(rel) in RESUMED:  # a run stopped by the time limit first; run 2 resumes it
                resumed[nb] = in_own_process(interrupt, nb, second, args.threads, args.timeout, RESUMED[str(rel)],
                                             args.resume_limit)
                print(f"interrupted: {nb.relative_to(ROOT)} stopped at step {resumed[nb][1]} "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)
                resume_at[nb] = resumed[nb][1]
                for other in (n for n in notebooks if CONTINUES.get(_rel(n)) == str(rel)):
                    t1 = time.perf_counter()
                    problems, step = in_own_process(interrupt, other, second, args.threads, args.timeout,
                                                    RESUMED[_rel(other)], args.resume_limit)
                    if step is not None and resume_at[nb] is not None and not step > resume_at[nb]:
                        problems.append(f"it did not continue {rel}'s checkpoint (step {resume_at[nb]}): "
                                        f"its checkpoint is at step {step}")
                    resumed[other] = (problems, step)
                    resume_at[nb] = step if step is not None else resume_at[nb]
                    print(f"interrupted: {other.relative_to(ROOT)} continued {rel}'s checkpoint and stopped at step "
                          f"{step} ({time.perf_counter() - t1:.0f} s)", flush=True)
            texts: list[str] = []
            timings: list[tuple[float, int, int]] = []
            try:
                same_kernel[nb], record, texts, timings = in_own_process(
                    _run_twice_job, nb, second, args.threads, args.timeout, second / rel / "metrics.json",
                    own_folders(rel))
            except Exception as exc:  # noqa: BLE001
                same_kernel[nb], record = [f"the notebook failed: {type(exc).__name__}: "
                                           f"{str(exc).strip().splitlines()[-1:]}"], None
            if nb in resume_at:
                problems, step = resumed[nb][0], resume_at[nb]
                if step is not None and f"Resuming from step {step} of" not in "".join(texts[:1]):
                    problems.append(f"run 2 did not say 'Resuming from step {step} of ...'")
                if step is not None and record is not None and not 0 < step < record["metrics"]["run"]["steps_planned"]:
                    problems.append(f"the time limit stopped it at step {step}, not mid-training")
            slow = ", ".join(f"run {r} cell {i} {s:.0f} s" for s, r, i in sorted(timings, reverse=True)[:2])
            print(f"runs 2+3 (one kernel): {nb.relative_to(ROOT)} ({time.perf_counter() - t0:.0f} s; "
                  f"slowest: {slow or 'none'})", flush=True)
            path = first / rel / "metrics.json"
            if record is None or not path.is_file():
                results[nb] = ([f"no metrics.json at {rel} (did the notebook change its name?)"], [], 0)
                return
            results[nb] = compare(json.loads(path.read_text()), record, runs=(first, second))
            if any(CONTINUES.get(_rel(n)) == str(rel) for n in notebooks):
                # Steps of this run were trained by the notebook that continues it (CONTINUES), which
                # saves no sample grids of this one: its figures may show other steps. Numbers only.
                diffs, excluded, n = results[nb]
                figures = [d for d in diffs if d.startswith("figures/")]
                results[nb] = ([d for d in diffs if not d.startswith("figures/")],
                               excluded + [f"{d.split(':')[0]} (part of run 2 was trained by "
                                           f"{', '.join(k for k, v in CONTINUES.items() if v == str(rel))}, "
                                           f"which saves no sample grids of {rel})" for d in figures], n)
            shift = clock_shift_problem(json.loads(path.read_text()), record)
            if shift:
                results[nb] = (results[nb][0] + [shift], results[nb][1], results[nb][2])
            if args.second_runs is not None:  # the second make test's run of it, too
                other = args.second_runs.resolve() / rel / "metrics.json"
                diffs = ([f"(second make test) {d}" for d in compare(
                    json.loads(path.read_text()), json.loads(other.read_text()),
                    runs=(first, args.second_runs.resolve()))[0]] if other.is_file()
                    else [f"(second make test) no metrics.json at {other}"])
                results[nb] = (results[nb][0] + diffs, results[nb][1], results[nb][2])

        global _POOL
        if args.workers > 1:  # each notebook's kernel client in a process of its own (in_own_process)
            _POOL = ProcessPoolExecutor(max_workers=args.workers, mp_context=multiprocessing.get_context("spawn"))
        try:
            run_in_order(notebooks, args.workers, check)  # --workers at a time, each after what it reads
        finally:
            if _POOL is not None:
                _POOL.shutdown()
                _POOL = None
        results = {nb: results[nb] for nb in notebooks if nb in results}  # the report in path order
    print(f"\nDeterminism report (smoke profile, CPU, {args.threads} thread(s)). Run 1 and run 2: "
          f"each in a fresh kernel with an empty runs folder; run 3: run 2's kernel again.")
    failed = 0
    for nb, (diffs, excluded, n) in results.items():
        problems = same_kernel[nb]
        status = "identical" if not diffs else f"DIFFERENT ({len(diffs)} value(s))"
        status += ", rerun clean" if not problems else f", RERUN: {len(problems)} problem(s)"
        failed += bool(diffs or problems)
        print(f"  {status:<40} {n:3d} values compared  {nb.relative_to(ROOT)}")
        for line in diffs:
            print(f"      run 1 vs 2: {line}")
        for line in problems:
            print(f"      run 2 vs 3 (same kernel): {line}")
        if nb in resumed:
            problems, step = resumed[nb]
            failed += bool(problems) and not (diffs or same_kernel[nb])
            rel = _rel(nb)
            if rel in CONTINUES and CONTINUES[rel] in checked:
                then = (f"{CONTINUES[rel]}'s run 2 resumed there and finished; run 2 passed and "
                        f"{'matches run 1' if not diffs else 'DIFFERS from run 1'}")
            elif rel in CONTINUES:
                then = "then resumed and finished with every check passing in a folder of its own"
            else:
                where = ("there" if resume_at.get(nb) == step else
                         f"at step {resume_at.get(nb)}, where the notebook continuing its checkpoint stopped,")
                then = f"run 2 resumed {where} and {'matches run 1' if not diffs else 'DIFFERS from run 1'}"
            print(f"      resume: stopped by the time limit at step {step}, every cell ran ('not judged'), {then}"
                  if not problems else f"      RESUME: {'; '.join(problems)}")
        shown = [e for e in excluded if e not in EXCLUDED_TOP]
        if shown:
            print(f"      not compared (timings): {', '.join(shown)}")
    print(f"  not compared anywhere: {', '.join(EXCLUDED_TOP)} (timestamps, versions)")
    print(f"{len(results) - failed} of {len(results)} notebooks identical and clean on a rerun; "
          f"wall time {time.perf_counter() - start:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
