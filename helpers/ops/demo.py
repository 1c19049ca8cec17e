"""The week 4f demo's models: a *deploy bundle* is one folder (default ``runs/deploy``) that
:mod:`helpers.ops.serve` loads::

    deploy.json              what is inside, where it came from, the parity numbers
    tokenizer.json           the shared BPE vocabulary (helpers.translation.SubwordTokenizer)
    translator.pt            weights + architecture (a helpers.runtime.checkpoints checkpoint)
    translator_encoder.onnx, translator_decoder.onnx
    generator.pt, generator.onnx

:func:`build_bundle` fills it from the notebooks' checkpoints (or trains small models) and
checks ONNX-vs-PyTorch parity with :mod:`helpers.ops.export`. A bundle is built in a staging
folder beside it and published with a rename only after its parity checks passed
(:func:`publish_bundle`); ``deploy.json`` records the SHA-256 of every file and the parity
results, and the server refuses a model whose check failed or whose files changed since
(:func:`bundle_problem`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from helpers.course.data import load_dataset
from helpers.course.data.images import gan_dataset
from helpers.dcgan import ARCHITECTURE_KEYS as GENERATOR_KEYS
from helpers.dcgan import Generator, build_dcgan, train_dcgan
from helpers.ops.export import (
    ExportError,
    OnnxGenerator,
    OnnxTranslator,
    export_generator,
    export_translator,
    generator_parity,
    translator_parity,
)
from helpers.runtime import env
from helpers.runtime.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from helpers.runtime.config import profile_config
from helpers.runtime.files import atomic_write_text, to_plain
from helpers.transformer import Transformer
from helpers.translation import ARCHITECTURE_KEYS as TRANSLATOR_KEYS
from helpers.translation import SubwordTokenizer, build_model, prepare_translation, train_translation


class BundleMismatch(ExportError):
    """The files of a bundle do not belong together (e.g. a tokenizer of another vocabulary
    than the translator's); the message names files, never folders."""


BUNDLE_MANIFEST = "deploy.json"
TRANSLATOR_FILES = ("tokenizer.json", "translator.pt", "translator_encoder.onnx",
                    "translator_decoder.onnx")
GENERATOR_FILES = ("generator.pt", "generator.onnx")
BUNDLE_FILES = {"translator": TRANSLATOR_FILES, "generator": GENERATOR_FILES}
DEMO_COMMAND = "python -m helpers.ops.serve --train-smoke"


def shown_path(path: str | Path) -> str:
    """``path`` as recorded in ``deploy.json``: relative to the runs folder (``runs/...``) or
    to the current folder, never the builder's absolute path (issue #24); else the name alone."""
    path = Path(path).resolve()
    runs = env.runs_dir().resolve()
    for base, prefix in ((runs, f"{runs.name}/"), (Path.cwd().resolve(), "")):
        try:
            return prefix + path.relative_to(base).as_posix()
        except ValueError:
            continue
    return path.name


def default_bundle_dir() -> Path:
    """``runs/deploy`` (or ``$CURRICULUM_RUNS_DIR/deploy``): where the week 4f notebook and
    ``python -m helpers.ops.serve --train-smoke`` write the models the demo serves (week 4f)."""
    return env.runs_dir() / "deploy"


# --------------------------------------------------------------------------- bundles
def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _file_hashes(out_dir: Path, names) -> dict[str, str]:
    return {name: _sha256(out_dir / name) for name in names}

def save_translator_bundle(model: Transformer, tokenizer, settings: Mapping[str, Any],
                           out_dir: str | Path, *, source: str) -> dict[str, Any]:
    """Write ``tokenizer.json``, ``translator.pt`` and both ONNX graphs into ``out_dir`` and
    record them in ``deploy.json`` (week 4f). ``settings`` must hold the architecture
    (``helpers.translation.ARCHITECTURE_KEYS``)."""
    out_dir = Path(out_dir)
    arch = {k: settings[k] for k in TRANSLATOR_KEYS}
    tokenizer.save(out_dir / "tokenizer.json")
    save_checkpoint(out_dir / "translator.pt", model=model, step=0, config=arch)
    export_translator(model, out_dir)
    entry = {"source": source, "architecture": arch, "pad_id": model.pad_id,
             "files": _file_hashes(out_dir, TRANSLATOR_FILES)}
    _update_manifest(out_dir, translator=entry)  # (drops the previous model's parity result)
    return entry


def save_generator_bundle(G: nn.Module, settings: Mapping[str, Any], out_dir: str | Path, *,
                          source: str) -> dict[str, Any]:
    """Write ``generator.pt`` and ``generator.onnx`` into ``out_dir`` and record them in
    ``deploy.json`` (week 4f). ``settings``: ``nz``, ``ngf``, ``channels``, ``image_size``."""
    out_dir = Path(out_dir)
    arch = {k: settings[k] for k in GENERATOR_KEYS}
    save_checkpoint(out_dir / "generator.pt", model=G, step=0, config=arch)
    export_generator(G, out_dir)
    entry = {"source": source, "architecture": arch, "files": _file_hashes(out_dir, GENERATOR_FILES)}
    _update_manifest(out_dir, generator=entry)
    return entry


def parity_limits() -> tuple[float, float]:
    """``(max_logit_error, max_pixel_error)``: the largest ONNX-vs-PyTorch differences a
    bundle may have (the ``deploy`` settings of helpers.runtime.config, the same in every
    profile)."""
    cfg = profile_config("deploy", "smoke")
    return cfg.max_logit_error, cfg.max_pixel_error


def record_parity(out_dir: str | Path, *, translator: Mapping[str, Any] | None = None,
                  generator_max_abs: float | None = None) -> dict[str, Any]:
    """Record parity results in ``deploy.json``, each with ``passed`` (week 4f): the
    translator passes with identical greedy translations on every sentence and logits within
    the limit, the generator with pixels within the limit (:func:`parity_limits`)."""
    max_logit, max_pixel = parity_limits()
    parity: dict[str, Any] = {}
    if translator is not None:
        ok = (translator["identical"] == translator["sentences"] > 0
              and translator["logits_max_abs"] <= max_logit)
        parity["translator"] = {**translator, "passed": bool(ok)}
    if generator_max_abs is not None:
        parity["generator"] = {"max_abs": generator_max_abs,
                               "passed": bool(generator_max_abs <= max_pixel)}
    _update_manifest(Path(out_dir), parity=parity)
    return parity


def bundle_problem(out_dir: str | Path, name: str) -> str | None:
    """Why the bundle's ``name`` (``"translator"`` or ``"generator"``) must not be served, or
    None: files missing, no passed parity check recorded, or files changed since (week 4f).
    The message names files, never folders."""
    out_dir = Path(out_dir)
    missing = [f for f in BUNDLE_FILES[name] if not (out_dir / f).is_file()]
    if missing:
        return f"the bundle has no {', '.join(missing)}"
    try:
        manifest = read_manifest(out_dir)
    except ValueError:
        return f"its {BUNDLE_MANIFEST} is not valid JSON"
    parity = manifest.get("parity", {}).get(name)
    if parity is None:
        return f"{BUNDLE_MANIFEST} records no parity check for the {name}"
    if not parity.get("passed"):
        return f"the {name} failed its ONNX-vs-PyTorch parity check"
    recorded = manifest.get(name, {}).get("files", {})
    changed = [f for f in BUNDLE_FILES[name] if recorded.get(f) != _sha256(out_dir / f)]
    if changed:
        return f"{', '.join(changed)} changed after the parity check"
    return None


def staging_dir(out_dir: str | Path) -> Path:
    """An empty folder beside ``out_dir`` to build a bundle in (week 4f); publish it with
    :func:`publish_bundle` once its parity checks passed."""
    out_dir = Path(out_dir)
    stage = out_dir.with_name(f".{out_dir.name}.staging-{os.getpid()}")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    return stage


def publish_bundle(stage: str | Path, out_dir: str | Path) -> Path:
    """Make the bundle built in ``stage`` the one in ``out_dir`` (week 4f). Refused unless
    every model in it passed its parity check; then files of yours in the old folder that are
    not part of a bundle are moved over, the old folder is renamed away and ``stage`` renamed
    into place. Either all of it happens or none (issue #24): a failure at any step moves
    everything done so far back, so the old bundle and your files stay exactly as they were
    (and the error is raised). A server watching ``out_dir`` reloads."""
    stage, out_dir = Path(stage), Path(out_dir)
    models = [n for n in BUNDLE_FILES if n in read_manifest(stage)]
    problems = [f"{n}: {p}" for n in models if (p := bundle_problem(stage, n))]
    if not models or problems:
        raise ExportError(f"not publishing the bundle built in {stage}: "
                          f"{'; '.join(problems) or 'it holds no model'}")
    done: list[tuple[Path, Path]] = []  # the renames made so far, to undo them on a failure

    def move(src: Path, dst: Path) -> None:
        os.replace(src, dst)
        done.append((src, dst))

    old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
    try:
        if out_dir.exists():
            ours = {BUNDLE_MANIFEST, *TRANSLATOR_FILES, *GENERATOR_FILES}
            for p in sorted(out_dir.iterdir()):
                if p.name not in ours and not (stage / p.name).exists():
                    move(p, stage / p.name)
            move(out_dir, old)
        else:
            out_dir.parent.mkdir(parents=True, exist_ok=True)
        move(stage, out_dir)
    except BaseException as exc:
        stuck = []
        for src, dst in reversed(done):
            try:
                os.replace(dst, src)
            except OSError as undo:
                stuck.append(f"{dst} -> {src} ({undo})")
        if stuck:  # say where everything is; nothing is deleted
            raise ExportError(f"publishing {stage} to {out_dir} failed ({exc}) and could not be "
                              f"undone completely; move these back by hand: {'; '.join(stuck)}") from exc
        raise
    if done and done[-1][1] == out_dir and old.exists():
        try:
            shutil.rmtree(old)
        except OSError as exc:  # the new bundle is published; the old one is only left over
            print(f"note: could not remove the previous bundle {old} ({exc}); delete it by hand",
                  flush=True)
    return out_dir


def read_manifest(out_dir: str | Path) -> dict[str, Any]:
    """A bundle's ``deploy.json`` (sources, architectures, parity numbers) or ``{}`` (week 4f)."""
    path = Path(out_dir) / BUNDLE_MANIFEST
    return json.loads(path.read_text()) if path.is_file() else {}


def _update_manifest(out_dir: Path, **entries: Any) -> None:
    manifest = read_manifest(out_dir)
    for key, value in entries.items():
        if key == "parity":
            manifest[key] = {**manifest.get(key, {}), **value}
        else:  # a new model: its old parity result no longer applies
            manifest[key] = value
            manifest.get("parity", {}).pop(key, None)
    atomic_write_text(json.dumps(to_plain(manifest), indent=2) + "\n", Path(out_dir) / BUNDLE_MANIFEST)


def load_translator(out_dir: str | Path):
    """``(model, tokenizer)`` from a bundle's ``translator.pt`` and ``tokenizer.json`` (week 4f)."""
    out_dir = Path(out_dir)
    missing = [f for f in ("tokenizer.json", "translator.pt") if not (out_dir / f).is_file()]
    if missing:
        raise ExportError(f"{out_dir} has no {', '.join(missing)}. Fix: run `{DEMO_COMMAND}` "
                          f"(or the week 4f notebook) to create them.")
    state = load_checkpoint(out_dir / "translator.pt", restore_rng=False)  # checksum checked first
    a = state["config"]
    tok = SubwordTokenizer.load(out_dir / "tokenizer.json")
    if tok.vocab_size != a["vocab_size"]:
        raise BundleMismatch(
            f"tokenizer.json has a vocabulary of {tok.vocab_size} subwords but translator.pt was "
            f"trained with {a['vocab_size']}: they come from different builds (the translations "
            f"would be garbage). Rebuild the bundle with `{DEMO_COMMAND}` (or the week 4f notebook)")
    model = Transformer(a["vocab_size"], d_model=a["d_model"], n_heads=a["n_heads"], d_ff=a["d_ff"],
                        n_layers=a["n_layers"], dropout=0.0, max_len=a["max_len"],
                        positional=a["positional"], pad_id=0)
    model.load_state_dict(state["model"])
    return model.eval(), tok


def load_generator(out_dir: str | Path):
    """The DCGAN generator from a bundle's ``generator.pt``, in eval mode (week 4f)."""
    path = Path(out_dir) / "generator.pt"
    if not path.is_file():
        raise ExportError(f"{path} does not exist. Fix: run `{DEMO_COMMAND}` (or the week 4f "
                          f"notebook) to create it.")
    return _generator_from_checkpoint(path)[0]


def _generator_from_checkpoint(path: Path):
    """``(G in eval mode, checkpoint)``: the generator rebuilt from a checkpoint's config."""
    state = load_checkpoint(path, restore_rng=False)  # checksum checked first
    a = state["config"]
    G = Generator(a["nz"], a["ngf"], a["channels"], a["image_size"])
    G.load_state_dict(state["model"])
    return G.eval(), state


# --------------------------------------------------------------------------- trained models
def notebook_translator(profile: str | None = None, *, train_steps: int | None = None,
                        log: Callable[[str], None] = print):
    """The week 3 translator for ``profile``: loaded from
    ``runs/transformer/week3_transformer/checkpoints/<profile>/translator.pt`` when that checkpoint
    matches the profile's architecture, otherwise trained here for ``train_steps`` steps
    (week 4f). Returns ``(model, tokenizer, settings, source, test_pairs)``."""
    cfg = profile_config("translation", profile)
    dataset = load_dataset("multi30k", profile=cfg.profile, n_train=cfg.dataset_size)
    data = prepare_translation(dataset.data, cfg.vocab_size, max_len=cfg.max_len,
                               name=f"multi30k-{cfg.profile}")  # the week 3 tokenizer (cached)
    settings = {**cfg, "vocab_size": data.tokenizer.vocab_size}
    env.seed_everything(cfg.seed, profile=cfg.profile)
    model = build_model(cfg, data.tokenizer.vocab_size)
    ckpt = env.checkpoint_dir("transformer", "week3_transformer", cfg.profile) / "translator.pt"
    source = None
    if ckpt.is_file():
        try:
            state = load_checkpoint(ckpt, model=model, config=settings, config_keys=TRANSLATOR_KEYS,
                                    restore_rng=False)
            source = f"{shown_path(ckpt)} (week 3, step {state['step']})"
        except CheckpointError as exc:
            log(f"not using {ckpt}: {exc}")
    if source is None:
        steps = train_steps or cfg.train_steps
        log(f"no usable week 3 checkpoint: training a {cfg.profile} translator for {steps} steps")
        train_translation(model, data, cfg.replace(train_steps=steps, eval_every=steps, log_every=max(steps, 1)),
                          device=torch.device("cpu"))
        source = f"trained by helpers.ops.demo ({cfg.profile} profile, {steps} steps)"
    return model.cpu().eval(), data.tokenizer, settings, source, data.splits["test"]


def notebook_generator(profile: str | None = None, *, train_steps: int | None = None,
                       log: Callable[[str], None] = print):
    """The week 4 DCGAN generator: loaded from ``runs/dcgan/week4_training/checkpoints/
    <profile>/dcgan.pt`` when present, otherwise trained here on the profile's dataset for
    ``train_steps`` steps (week 4f). Returns ``(G, settings, source)``."""
    cfg = profile_config("dcgan", profile)
    ckpt = env.checkpoint_dir("dcgan", "week4_training", cfg.profile) / "dcgan.pt"
    if ckpt.is_file():
        try:
            G, state = _generator_from_checkpoint(ckpt)
            return G, dict(state["config"]), f"{shown_path(ckpt)} (week 4, step {state['step']})"
        except Exception as exc:  # foreign or truncated file: say so and train instead
            log(f"not using {ckpt}: {type(exc).__name__}: {exc}")
    steps = train_steps or cfg.train_steps
    log(f"no usable week 4 DCGAN checkpoint: training a {cfg.profile} DCGAN for {steps} steps")
    dataset, _ = gan_dataset(cfg.dataset, image_size=cfg.image_size, channels=cfg.channels,
                             profile=cfg.profile)
    env.seed_everything(cfg.seed, profile=cfg.profile)
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True,
                                         drop_last=True,
                                         generator=torch.Generator().manual_seed(cfg.seed))
    G, D = build_dcgan(cfg, nc=cfg.channels)
    train_dcgan(G, D, loader, cfg.replace(train_steps=steps, log_every=max(steps, 1)),
                device=torch.device("cpu"))
    return (G.cpu().eval(), {k: cfg[k] for k in GENERATOR_KEYS},
            f"trained by helpers.ops.demo ({cfg.profile} profile, {steps} steps)")


def build_bundle(out_dir: str | Path | None = None, *, profile: str | None = "smoke",
                 translator_steps: int | None = None, generator_steps: int | None = None,
                 parity_sentences: int = 20, log: Callable[[str], None] = print) -> Path:
    """Write a complete deploy bundle (both models, PyTorch + ONNX, parity results) into
    ``out_dir`` (default ``runs/deploy``): the notebooks' checkpoints when they exist, else
    models trained here (week 4f; this is what ``python -m helpers.ops.serve --train-smoke``
    runs). It is built in a staging folder and published only when the ONNX graphs agree with
    PyTorch; otherwise :class:`ExportError`, and ``out_dir`` is left as it was."""
    out_dir = Path(out_dir) if out_dir is not None else default_bundle_dir()
    start = time.perf_counter()
    model, tok, settings, source, test_pairs = notebook_translator(
        profile, train_steps=translator_steps, log=log)
    G, g_settings, g_source = notebook_generator(profile, train_steps=generator_steps, log=log)
    stage = staging_dir(out_dir)
    try:
        save_translator_bundle(model, tok, settings, stage, source=source)
        save_generator_bundle(G, g_settings, stage, source=g_source)
        runner = OnnxTranslator(stage / "translator_encoder.onnx", stage / "translator_decoder.onnx",
                                pad_id=model.pad_id, max_len=settings["max_len"])
        parity = translator_parity(model, runner, tok, [s for s, _ in test_pairs[:parity_sentences]])
        g_err = generator_parity(G, OnnxGenerator(stage / "generator.onnx"))
        results = record_parity(stage, translator=parity.to_dict(), generator_max_abs=g_err)
        if not (results["translator"]["passed"] and results["generator"]["passed"]):
            raise ExportError(f"ONNX export disagrees with PyTorch: {parity.to_dict()}, generator "
                              f"max abs error {g_err:.2e}; nothing was published")
        publish_bundle(stage, out_dir)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    log(f"deploy bundle in {out_dir} ({time.perf_counter() - start:.0f} s): greedy translations "
        f"identical on {parity.identical}/{parity.sentences} sentences, logits max abs error "
        f"{parity.logits_max_abs:.1e}, generator {g_err:.1e}")
    return out_dir
