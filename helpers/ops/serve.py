"""The week 4f demo server: both trained models behind a small FastAPI app.

    python -m helpers.ops.serve --train-smoke        # create runs/deploy if missing, then serve
    python -m helpers.ops.serve --model-dir DIR --port 7860 --backend torch

``GET /`` a page to try both models, ``GET /health``, ``POST /translate`` ``{"text": ...}``,
``POST /generate`` ``{"seed": 0, "count": 16}`` (a PNG grid). The models come from a deploy
bundle (:mod:`helpers.ops.demo`), loaded on first use, on onnxruntime (default) or PyTorch.
"""

from __future__ import annotations

import argparse
import io
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from helpers.ops import demo, export

MAX_TEXT_CHARS = 500
MAX_COUNT = 64
MAX_SEED = 2**31 - 1
BACKENDS = ("onnx", "torch")


class TranslateRequest(BaseModel):
    text: str = Field(description=f"an English sentence, 1 to {MAX_TEXT_CHARS} characters")


class GenerateRequest(BaseModel):
    seed: int = Field(0, description=f"0 to {MAX_SEED}: the same seed gives the same images")
    count: int = Field(16, description=f"number of images, 1 to {MAX_COUNT}")


class ModelUnavailable(RuntimeError):
    """A model's files are missing or unreadable; the message names the command that fixes it."""


class Models:
    """Loads the translator and the generator from a bundle on first use, thread-safe (week 4f)."""

    def __init__(self, model_dir: Path, backend: str = "onnx"):
        if backend not in BACKENDS:
            raise ValueError(f"backend={backend!r}: use one of {', '.join(BACKENDS)}")
        self.model_dir, self.backend = Path(model_dir), backend
        self._lock = threading.Lock()
        self._translator: Any = None
        self._generator: Any = None

    def _missing(self, files) -> list[str]:
        return [f for f in files if not (self.model_dir / f).is_file()]

    def _unavailable(self, what: str, missing: list[str]) -> ModelUnavailable:
        return ModelUnavailable(
            f"the {what} is not available: {self.model_dir} has no {', '.join(missing)}. "
            f"Create the models with `{demo.DEMO_COMMAND}` (or run the week 4f notebook), "
            f"then try again; no restart needed.")

    def _load(self, attr: str, what: str, name: str, files, build):
        """``self.<attr>``, built by ``build()`` on first use; ModelUnavailable when ``files``
        are missing (naming ``what``) or ``build`` fails (naming ``name``)."""
        with self._lock:
            if getattr(self, attr) is None:
                missing = self._missing(files)
                if missing:
                    raise self._unavailable(what, missing)
                try:
                    setattr(self, attr, build())
                except Exception as exc:
                    raise ModelUnavailable(
                        f"the {name} in {self.model_dir} cannot be loaded ({type(exc).__name__}: "
                        f"{exc}). Recreate it: delete the folder and run `{demo.DEMO_COMMAND}`.") from exc
            return getattr(self, attr)

    def translator(self):
        def build():
            model, tok = demo.load_translator(self.model_dir)
            max_len = model.tgt_embed.max_len
            if self.backend == "onnx":
                model = export.OnnxTranslator(
                    self.model_dir / "translator_encoder.onnx", self.model_dir / "translator_decoder.onnx",
                    pad_id=model.pad_id, max_len=max_len)
            return (self.backend, model, tok, max_len)
        return self._load("_translator", "translator", "translator", demo.TRANSLATOR_FILES, build)

    def generator(self):
        def build():
            if self.backend == "onnx":
                return ("onnx", export.OnnxGenerator(self.model_dir / "generator.onnx"))
            return ("torch", demo.load_generator(self.model_dir))
        return self._load("_generator", "image generator", "generator", demo.GENERATOR_FILES, build)

    def status(self) -> dict[str, Any]:
        return {"translator": not self._missing(demo.TRANSLATOR_FILES),
                "generator": not self._missing(demo.GENERATOR_FILES)}


def translate_text(models: Models, text: str) -> str:
    """Greedy translation of one sentence (week 4f)."""
    import torch

    from helpers.transformer import greedy_decode
    from helpers.translation import BOS, EOS

    kind, runner, tok, max_len = models.translator()
    ids = tok.encode(text)
    if len(ids) + 1 > max_len:
        raise ValueError(f"the text is {len(ids)} subword tokens long; this model reads at most "
                         f"{max_len - 1}. Send a shorter sentence.")
    src = np.asarray([ids + [EOS]], dtype=np.int64)
    if kind == "onnx":
        out = runner.greedy_decode(src, BOS, EOS)[0].tolist()
    else:
        out = greedy_decode(runner, torch.from_numpy(src), BOS, EOS)[0].tolist()
    return tok.decode(out)


def generate_png(models: Models, seed: int, count: int) -> bytes:
    """A PNG grid of ``count`` generated images for latent vectors drawn with ``seed`` (week 4f)."""
    import torch
    from PIL import Image
    from torchvision.utils import make_grid

    kind, G = models.generator()
    nz = G.nz
    z = torch.randn(count, nz, generator=torch.Generator().manual_seed(seed))
    if kind == "onnx":
        images = torch.from_numpy(G(z))
    else:
        with torch.no_grad():
            images = G(z)
    nrow = max(1, int(np.ceil(np.sqrt(count))))
    grid = make_grid(images, nrow=nrow, normalize=True, value_range=(-1, 1), pad_value=1.0)
    array = (grid.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    image = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
    if image.width < 256:  # tiny 32x32 digits: scale up so the page shows them clearly
        factor = int(np.ceil(256 / image.width))
        image = image.resize((image.width * factor, image.height * factor), Image.NEAREST)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


PAGE_FILE = Path(__file__).with_name("static") / "index.html"  # the page behind GET /


def create_app(model_dir: str | Path | None = None, backend: str = "onnx"):
    """The FastAPI app serving the bundle in ``model_dir`` (default ``runs/deploy``; week 4f)."""
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import HTMLResponse, JSONResponse, Response

    models = Models(Path(model_dir) if model_dir is not None else demo.default_bundle_dir(), backend)

    app = FastAPI(title="Transformer + DCGAN demo", version="1")
    app.state.models = models

    @app.exception_handler(ModelUnavailable)
    async def unavailable(_request, exc: ModelUnavailable):
        return JSONResponse(status_code=503, content={"detail": str(exc)})

    template = PAGE_FILE.read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse)
    def page():
        return (template.replace("__MODEL_DIR__", str(models.model_dir))
                .replace("__BACKEND__", "onnxruntime" if backend == "onnx" else "PyTorch")
                .replace("__MAX_CHARS__", str(MAX_TEXT_CHARS))
                .replace("__MAX_SEED__", str(MAX_SEED)).replace("__MAX_COUNT__", str(MAX_COUNT)))

    @app.get("/health")
    def health():
        status = models.status()
        ready = all(status.values())
        body = {"status": "ok" if ready else "models missing", "backend": backend,
                "model_dir": str(models.model_dir), **status}
        if not ready:
            body["fix"] = f"run `{demo.DEMO_COMMAND}` (or the week 4f notebook)"
        return body

    @app.post("/translate")
    def translate(request: TranslateRequest):
        text = request.text.strip()
        if not text:
            raise HTTPException(422, "text is empty: send one English sentence, e.g. "
                                     '{"text": "The small dog sees the red car."}')
        if len(text) > MAX_TEXT_CHARS:
            raise HTTPException(413, f"text is {len(text)} characters long; the limit is "
                                     f"{MAX_TEXT_CHARS}. Send one sentence at a time.")
        start = time.perf_counter()
        try:
            translation = translate_text(models, text)
        except ValueError as exc:
            raise HTTPException(413, str(exc)) from None
        return {"translation": translation, "backend": backend,
                "milliseconds": round((time.perf_counter() - start) * 1000, 2)}

    @app.post("/generate")
    def generate(request: GenerateRequest):
        if not 1 <= request.count <= MAX_COUNT:
            raise HTTPException(422, f"count={request.count} is out of range: ask for 1 to "
                                     f"{MAX_COUNT} images.")
        if not 0 <= request.seed <= MAX_SEED:
            raise HTTPException(422, f"seed={request.seed} is out of range: use 0 to {MAX_SEED}.")
        png = generate_png(models, request.seed, request.count)
        return Response(png, media_type="image/png",
                        headers={"X-Seed": str(request.seed), "X-Count": str(request.count)})

    return app


def main(argv: list[str] | None = None) -> int:
    """``python -m helpers.ops.serve``: optionally create the models, then serve with uvicorn (week 4f)."""
    parser = argparse.ArgumentParser(prog="python -m helpers.ops.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="deploy bundle folder (default: runs/deploy)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface to listen on (default 127.0.0.1; 0.0.0.0 in a container)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--backend", choices=BACKENDS, default="onnx")
    parser.add_argument("--train-smoke", action="store_true",
                        help="if the bundle is incomplete, build it first: the notebooks' "
                             "checkpoints when present, else smoke-size models trained on the CPU "
                             "(one to two minutes)")
    parser.add_argument("--translator-steps", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--generator-steps", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--no-serve", action="store_true", help="build the bundle and exit")
    args = parser.parse_args(argv)
    model_dir = args.model_dir or demo.default_bundle_dir()

    missing = [f for f in demo.TRANSLATOR_FILES + demo.GENERATOR_FILES
               if not (model_dir / f).is_file()]
    if missing and args.train_smoke:
        print(f"{model_dir} lacks {', '.join(missing)}: building the demo models", flush=True)
        demo.build_bundle(model_dir, profile="smoke", translator_steps=args.translator_steps,
                            generator_steps=args.generator_steps)
    elif missing:
        print(f"warning: {model_dir} lacks {', '.join(missing)}; those endpoints answer 503 "
              f"until you run `{demo.DEMO_COMMAND}`", file=sys.stderr, flush=True)
    if args.no_serve:
        return 0

    import uvicorn

    print(f"serving {model_dir} on http://{args.host}:{args.port}/ (Ctrl+C stops)", flush=True)
    uvicorn.run(create_app(model_dir, args.backend), host=args.host, port=args.port,
                log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
