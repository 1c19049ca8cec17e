"""The code learners read stays short (docs/DEVELOPING.md, "Layers"): both training loops
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
                      f"resume, time limit, logging) belongs in helpers.runtime.run.ResumableRun")


def test_both_training_loops_have_one_shape():
    """(models..., data, cfg, *, device, where the run is kept, loop extras) -> History, every run
    setting read from cfg: no caller passes cfg and then cfg.time_limit_s beside it."""
    import inspect

    from helpers.dcgan import train_dcgan
    from helpers.translation import train_translation

    shared = ["device", "checkpoint_path", "history", "writer", "stop_after"]
    for loop, models in ((train_translation, ["model"]), (train_dcgan, ["G", "D"])):
        params = inspect.signature(loop).parameters
        positional = [n for n, p in params.items() if p.kind is p.POSITIONAL_OR_KEYWORD]
        keyword = [n for n, p in params.items() if p.kind is p.KEYWORD_ONLY]
        assert positional[:len(models)] == models and positional[len(models):] in (["data", "cfg"], ["loader", "cfg"])
        assert keyword[:len(shared)] == shared, (loop.__name__, keyword)
        assert not {"time_limit_s", "checkpoint_every", "log_every", "keep_last"} & set(keyword)
        assert inspect.signature(loop).return_annotation in ("History", "History | None")
    for path in sorted((ROOT / "notebooks").rglob("*.py")) + sorted((ROOT / "helpers").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for call in ("train_translation(", "train_dcgan("):
            for chunk in text.split(call)[1:]:
                args = chunk[:chunk.find(")\n") if ")\n" in chunk else 400]
                assert "=cfg." not in args.replace(" ", ""), f"{path.name}: {call}...{args[:120]}"


def test_no_module_imports_another_modules_private_names():
    private = []
    for path in sorted((ROOT / "helpers").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("helpers")):
                private += [f"{path.relative_to(ROOT)}: {node.module}.{a.name}" for a in node.names
                            if a.name.startswith("_") and not a.name.startswith("__")]
    assert not private, f"private names imported across modules: {private}. Fix: make the name public"


# --------------------------------------------------------------------------- layers
# docs/DEVELOPING.md, "Layers": runtime < paper < course < ops. A module imports only its own
# layer and the ones below, never a higher one, and no two modules import each other (directly
# or round a loop), so each layer works without the ones above it.
LAYERS = ("runtime", "paper", "course", "ops")
PAPER = ("transformer", "translation", "dcgan", "dcgan_ablations", "gan_metrics", "summarization")


def module_names() -> dict[str, Path]:
    """Every module of helpers/ by dotted name (a package by its own name)."""
    out = {}
    for path in sorted((ROOT / "helpers").rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def layer_of(module: str) -> int:
    """0 runtime, 1 paper, 2 course, 3 ops; the bare package `helpers` (its version) counts as runtime."""
    parts = module.split(".")
    if parts == ["helpers"] or parts[1] == "runtime":
        return 0
    if len(parts) == 2 and parts[1] in PAPER:
        return 1
    if parts[1] in ("course", "ops"):
        return LAYERS.index(parts[1])
    raise AssertionError(f"{module} belongs to no layer. Fix: put it in helpers/runtime, helpers/course "
                         f"or helpers/ops, or name it in PAPER (tests/test_layout.py) if it is a paper module")


def imports_of(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The helpers modules ``module`` imports anywhere in its file (inside functions too);
    ``from package import name`` counts as the submodule ``package.name`` when that is one."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # helpers.x.y.Name -> the module that holds it
                target = target.rpartition(".")[0]
            if target.startswith("helpers") and target != module:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    known = module_names()
    return {m: imports_of(m, p, known) for m, p in known.items()}


def test_imports_point_down_the_layers_only():
    upward = [f"{m} ({LAYERS[layer_of(m)]}) imports {t} ({LAYERS[layer_of(t)]})"
              for m, targets in import_graph().items() for t in sorted(targets)
              if layer_of(t) > layer_of(m)]
    assert not upward, ("imports from a lower layer into a higher one (docs/DEVELOPING.md, \"Layers\"): "
                        + "; ".join(upward) + ". Fix: move the code the lower module needs down a layer, "
                        "or the importing code up")


def test_no_import_cycles_between_modules():
    graph = import_graph()
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, f"import cycles: {cycles}. Fix: move the shared code into a module both can import"


def test_paper_modules_import_without_course_and_ops(tmp_path):
    """The paper layer stands on runtime alone: a copy of helpers/ without course/ and ops/
    imports every runtime and paper module."""
    import shutil
    import subprocess
    import sys

    shutil.copytree(ROOT / "helpers", tmp_path / "helpers",
                    ignore=shutil.ignore_patterns("course", "ops", "__pycache__"))
    modules = [m for m in module_names() if layer_of(m) <= 1]
    code = (f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n"
            # an editable install's finder would serve helpers.course from the checkout
            "sys.meta_path[:] = [f for f in sys.meta_path if not str(getattr(f, '__module__', '')).startswith('__editable__')]\n"
            "import importlib, helpers\n"
            f"assert helpers.__file__.startswith({str(tmp_path)!r}), helpers.__file__\n"
            f"for name in {modules!r}:\n"
            "    importlib.import_module(name)\n"
            "assert not [m for m in sys.modules if m.startswith(('helpers.course', 'helpers.ops'))]\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"a paper or runtime module needs course/ or ops/:\n{proc.stderr[-3000:]}"
