"""The code learners read stays short (docs/DEVELOPING.md, "Two layers"): both training loops
read like the papers' procedures, no function in helpers/ grows past one screen, and modules
use each other's public names only."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_FUNCTION_LINES = 80  # signature and docstring included
MAX_LOOP_LINES = 50
LOOPS = {("helpers/dcgan.py", "train_dcgan"), ("helpers/translation.py", "train_translation")}


def functions():
    for path in sorted((ROOT / "helpers").rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text(), filename=rel)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield rel, node.name, node.end_lineno - node.lineno + 1


def test_no_function_in_helpers_is_longer_than_one_screen():
    long = [f"{rel}:{name} ({n} lines)" for rel, name, n in functions() if n > MAX_FUNCTION_LINES]
    assert not long, (f"over {MAX_FUNCTION_LINES} lines: {long}. Fix: move a self-contained part "
                      f"(error handling, a report, a page) into a function of its own")


def test_both_training_loops_read_like_the_papers_procedures():
    sizes = {(rel, name): n for rel, name, n in functions() if (rel, name) in LOOPS}
    assert set(sizes) == LOOPS, f"missing training loops: {LOOPS - set(sizes)}"
    long = {f"{rel}:{name}": n for (rel, name), n in sizes.items() if n > MAX_LOOP_LINES}
    assert not long, (f"over {MAX_LOOP_LINES} lines: {long}. Fix: the bookkeeping (checkpoints, "
                      f"resume, time limit, logging) belongs in helpers.course.run.ResumableRun")


def test_no_module_imports_another_modules_private_names():
    private = []
    for path in sorted((ROOT / "helpers").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("helpers")):
                private += [f"{path.relative_to(ROOT)}: {node.module}.{a.name}" for a in node.names
                            if a.name.startswith("_") and not a.name.startswith("__")]
    assert not private, f"private names imported across modules: {private}. Fix: make the name public"
