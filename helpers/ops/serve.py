"""The week 4f demo server: both trained models behind a small FastAPI app.

    python -m helpers.ops.serve --train-smoke        # create runs/deploy if needed, then serve
    python -m helpers.ops.serve --model-dir DIR --port 7860 --backend torch

``GET /`` a page to try both models, ``GET /health``, ``POST /translate`` ``{"text": ...}``,
``POST /generate`` ``{"seed": 0, "count": 16}`` (a PNG grid). The models come from a deploy
bundle (:mod:`helpers.ops.demo`), loaded on first use (or by ``/health``) on onnxruntime
(default) or PyTorch, and reloaded when the bundle changes; a model whose parity check failed
is never served.

Limits, so that one client cannot take the machine: request bodies over ``MAX_BODY_BYTES`` are
refused before they are read; text and numbers are bounded; at most ``max_concurrent`` requests
run a model at once (the others get 503 with ``Retry-After``); a translation stops after
``time_budget_s`` (504) and after input length + 50 tokens (§6.1). Errors name the fix but
never a folder or an inner exception (those go to the server's log). With the default
loopback address only ``Host: 127.0.0.1`` or ``localhost`` is answered (DNS rebinding).

Connections (issue #24): a connection must send a complete request within
``--header-timeout`` seconds (default 10) of opening or of its first byte, or it is closed
(uvicorn's keep-alive timeout only covers the time *between* requests); at start the open-file
limit is raised to the hard limit, and when the open connections near it the oldest idle ones
are closed first, so a flood of slow or idle connections cannot take the last file descriptor
that /health needs.
"""

from __future__ import annotations

import argparse
import html
import io
import ipaddress
import json
import math
import resource
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import h11
import numpy as np
import torch
import uvicorn
from fastapi import FastAPI, HTTPException
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError, StarletteHTTPException
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image
from pydantic import BaseModel, Field
from torchvision.utils import make_grid
from uvicorn.protocols.http.h11_impl import H11Protocol

from helpers.ops import demo, export
from helpers.translation import BOS, EOS

MAX_TEXT_CHARS = 500
MAX_COUNT = 64
MAX_SEED = 2**31 - 1
MAX_BODY_BYTES = 16 * 1024     # a 500-character request is < 4 kB even with every char escaped
MAX_EXTRA_TOKENS = 50          # §6.1: "maximum output length ... input length + 50"
MAX_CONCURRENT = 2             # model calls at once; more get 503 + Retry-After
TIME_BUDGET_S = 10.0           # per translation
RETRY_AFTER_S = 1
LOOPBACK = ("127.0.0.1", "localhost")
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")   # the Host names answered on any loopback address
HEADER_TIMEOUT_S = 10.0        # a request must arrive complete this soon after its first byte
FD_RESERVE = 64                # file descriptors kept free for models, logs and /health
ACCEPT_BATCH = 128              # listen backlog, and connections asyncio accepts in one go
BACKENDS = ("onnx", "torch")
MODELS = {"translator": "translator", "generator": "image generator"}


class TranslateRequest(BaseModel):
    text: str = Field(max_length=MAX_TEXT_CHARS,
                      description=f"an English sentence, 1 to {MAX_TEXT_CHARS} characters")


class GenerateRequest(BaseModel):
    seed: int = Field(0, description=f"0 to {MAX_SEED}: the same seed gives the same images")
    count: int = Field(16, description=f"number of images, 1 to {MAX_COUNT}")


class ModelUnavailable(RuntimeError):
    """A model cannot be served; the message says why and names the command that fixes it
    (no folders, no inner exception text: it goes to clients)."""


def log(message: str) -> None:
    """The operator's log (stderr): full details, paths included."""
    print(f"[serve] {message}", file=sys.stderr, flush=True)


class _Slot:
    """One model: what was loaded (or why it failed) for which state of its files."""

    def __init__(self):
        self.lock = threading.Lock()
        self.signature: tuple | None = None
        self.value: Any = None
        self.error: str | None = None


class Models:
    """The bundle's two models, each loaded on first use under its own lock (week 4f).

    A load failure is remembered and reported at once on the next requests, until the files
    change; a model is reloaded when its files or ``deploy.json`` change (a rebuilt bundle).
    """

    def __init__(self, model_dir: Path, backend: str = "onnx"):
        if backend not in BACKENDS:
            raise ValueError(f"backend={backend!r}: use one of {', '.join(BACKENDS)}")
        self.model_dir, self.backend = Path(model_dir), backend
        self._slots = {name: _Slot() for name in MODELS}

    def _signature(self, name: str) -> tuple:
        """Identity of the files behind ``name``: a rename or rewrite of any changes it."""
        out = []
        for f in (demo.BUNDLE_MANIFEST, *demo.BUNDLE_FILES[name]):
            try:
                st = (self.model_dir / f).stat()
                out.append((f, st.st_ino, st.st_mtime_ns, st.st_size))
            except OSError:
                out.append((f, None))
        return tuple(out)

    def get(self, name: str):
        """The loaded ``name`` (``"translator"`` or ``"generator"``), or ModelUnavailable."""
        slot = self._slots[name]
        with slot.lock:
            signature = self._signature(name)
            if signature != slot.signature:  # first use, or the bundle changed: (re)load
                slot.signature, slot.value, slot.error = signature, None, None
            if slot.value is not None:
                return slot.value
            if slot.error is not None:
                raise ModelUnavailable(slot.error)
            try:
                value = self._load(name)
            except ModelUnavailable as exc:
                slot.error = str(exc)
                raise
            except demo.BundleMismatch as exc:  # names files only, never folders
                log(f"not serving the {name} of {self.model_dir}: {exc}")
                slot.error = f"the {MODELS[name]} is not available: {exc}"
                raise ModelUnavailable(slot.error) from None
            except Exception:  # a broken file: details to the log, a plain message out
                log(f"loading the {name} from {self.model_dir} failed:\n{traceback.format_exc()}")
                slot.error = (f"the {MODELS[name]} cannot be loaded (the server log says why). "
                              f"Rebuild the bundle with `{demo.DEMO_COMMAND}`.")
                raise ModelUnavailable(slot.error) from None
            if self._signature(name) != signature:  # replaced while we read it: not this one
                slot.signature = None
                raise ModelUnavailable(f"the {MODELS[name]} is being replaced; try again.")
            slot.value = value
            return value

    def _load(self, name: str):
        problem = demo.bundle_problem(self.model_dir, name)
        if problem:
            log(f"not serving the {name} of {self.model_dir}: {problem}")
            raise ModelUnavailable(f"the {MODELS[name]} is not available: {problem}. Create the "
                                   f"models with `{demo.DEMO_COMMAND}` (or run the week 4f "
                                   f"notebook); no restart needed.")
        if name == "translator":
            model, tok = demo.load_translator(self.model_dir)
            if self.backend == "onnx":
                runner = export.OnnxTranslator(
                    self.model_dir / "translator_encoder.onnx", self.model_dir / "translator_decoder.onnx",
                    pad_id=model.pad_id, max_len=model.tgt_embed.max_len)
            else:
                runner = export.TorchTranslator(model)
            return runner, tok
        if self.backend == "onnx":
            return "onnx", export.OnnxGenerator(self.model_dir / "generator.onnx")
        return "torch", demo.load_generator(self.model_dir)

    def status(self) -> dict[str, str | None]:
        """``{name: None (ready) or why not}``, loading what is not loaded yet."""
        out: dict[str, str | None] = {}
        for name in MODELS:
            try:
                self.get(name)
                out[name] = None
            except ModelUnavailable as exc:
                out[name] = str(exc)
        return out


class InputTooLong(ValueError):
    """The text has more subword tokens than the model reads."""


def translate_text(models: Models, text: str, deadline: float | None = None,
                   budget_s: float | None = None) -> str:
    """Greedy translation of one sentence with the cached decoder (week 4f): at most input
    length + 50 tokens (§6.1); ``TimeoutError`` once ``deadline`` (monotonic) has passed, or
    ``budget_s`` seconds after the model is ready (loading it does not count, issue #24)."""
    runner, tok = models.get("translator")
    if budget_s is not None:
        deadline = time.monotonic() + budget_s
    ids = tok.encode(text)
    if len(ids) + 1 > runner.max_len:
        raise InputTooLong(f"the text is {len(ids)} subword tokens long; this model reads at "
                           f"most {runner.max_len - 1}. Send a shorter sentence.")
    src = np.asarray([ids + [EOS]], dtype=np.int64)
    out = runner.greedy_decode(src, BOS, EOS, max_extra=MAX_EXTRA_TOKENS, deadline=deadline)
    return tok.decode(out[0].tolist())


def generate_png(models: Models, seed: int, count: int) -> bytes:
    """A PNG grid of ``count`` generated images for latent vectors drawn with ``seed`` (week 4f)."""
    kind, G = models.get("generator")
    z = torch.randn(count, G.nz, generator=torch.Generator().manual_seed(seed))
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


class BodyLimit:
    """ASGI middleware: refuse a request body over ``max_bytes`` with 413, by its
    ``Content-Length`` before reading anything, or (chunked uploads) as soon as more arrived."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await self._refuse(scope, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise HTTPException(413, self._detail())
            return message

        await self.app(scope, limited, send)

    def _detail(self) -> str:
        return f"the request body is over {self.max_bytes} bytes; send one sentence at a time."

    async def _refuse(self, scope, send):
        response = JSONResponse({"detail": self._detail()}, status_code=413,
                                headers={"Connection": "close"})
        await response(scope, None, send)


def _host_name(header: str) -> str:
    """The name in a ``Host`` header without its port: ``[::1]:8000`` -> ``::1``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and any loopback address, IPv4 or IPv6 (``127.0.0.2``, ``::1``)."""
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allowed_hosts_for(host: str, allowed: str | None) -> tuple[str, ...] | None:
    """The ``Host`` names a server listening on ``host`` answers: ``--allowed-hosts`` when
    given; on any loopback address ``127.0.0.1``, ``localhost``, ``::1`` and the address
    itself (DNS rebinding); None (any) on another address."""
    if allowed:
        return tuple(h.strip() for h in allowed.split(",") if h.strip())
    if is_loopback(host):
        return tuple(dict.fromkeys((*LOOPBACK_NAMES, host.strip("[]").lower())))
    return None


class HostCheck:
    """ASGI middleware: answer only the ``allowed`` Host names (IPv6 literals included), with
    a JSON 400 that says what to do."""

    def __init__(self, app, allowed: tuple[str, ...]):
        self.app = app
        self.allowed = {_host_name(h) for h in allowed}

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            if _host_name(host) not in self.allowed:
                response = JSONResponse(status_code=400, content={"detail": (
                    f"this server does not answer the Host name {host[:100]!r} (DNS rebinding "
                    f"protection). Use one of: {', '.join(sorted(self.allowed))}, e.g. "
                    f"http://127.0.0.1:<port>/, or start the server with --allowed-hosts <name>.")})
                return await response(scope, receive, send)
        return await self.app(scope, receive, send)


ENDPOINTS = "GET /, GET /health, POST /translate, POST /generate"


async def _http_error(_request, exc: StarletteHTTPException):
    """FastAPI's and Starlette's own errors (parse 400, 404, 405) as JSON that says what to do."""
    detail = exc.detail
    if exc.status_code == 400 and detail == "There was an error parsing the body":
        detail = ('the body cannot be parsed (not UTF-8 JSON); send JSON with Content-Type: '
                  'application/json, e.g. {"text": "The small dog sees the red car."}')
    elif exc.status_code == 404:
        detail = f"no such page; use {ENDPOINTS}"
    elif exc.status_code == 405:
        detail = f"method not allowed here; use {ENDPOINTS}"
    return JSONResponse(status_code=exc.status_code, content={"detail": detail},
                        headers=getattr(exc, "headers", None))


PAGE_FILE = Path(__file__).with_name("static") / "index.html"  # the page behind GET /


async def _unavailable(_request, exc: ModelUnavailable):
    return JSONResponse(status_code=503, content={"detail": str(exc)})


async def _invalid(_request, exc: RequestValidationError):
    """A 422 whose detail names each bad field in words (not pydantic's nested list)."""
    parts = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            parts.append('the body is not valid JSON; send e.g. {"text": "..."}')
            continue
        where = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else
                     f"{err.get('msg')}: send a JSON object with Content-Type: application/json")
    return JSONResponse(status_code=422, content={"detail": "; ".join(parts)})


async def _crashed(request, exc: Exception):
    """A 500 that logs the traceback on the server and shows none to the client."""
    log(f"{request.method} {request.url.path} failed:\n" + "".join(traceback.format_exception(exc)))
    return JSONResponse(status_code=500, content={"detail": "internal error; see the server log"})


def _page(bundle_name: str, backend: str) -> str:
    """The demo page (static/index.html) with its placeholders filled, HTML-escaped."""
    values = {"__BUNDLE__": bundle_name, "__BACKEND__": "onnxruntime" if backend == "onnx" else "PyTorch",
              "__MAX_CHARS__": str(MAX_TEXT_CHARS), "__MAX_SEED__": str(MAX_SEED),
              "__MAX_COUNT__": str(MAX_COUNT)}
    text = PAGE_FILE.read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace(key, html.escape(value))
    return text


def _health_body(models, backend: str, max_concurrent: int, time_budget_s: float) -> dict[str, Any]:
    """What /health answers: each model's state, the limits, and the fix when one is missing."""
    problems = models.status()
    body: dict[str, Any] = {
        "status": "ok" if not any(problems.values()) else "unavailable", "backend": backend,
        **{name: problem is None for name, problem in problems.items()},
        "limits": {"max_text_chars": MAX_TEXT_CHARS, "max_body_bytes": MAX_BODY_BYTES,
                   "max_concurrent": max_concurrent, "time_budget_s": time_budget_s,
                   "max_extra_tokens": MAX_EXTRA_TOKENS}}
    if any(problems.values()):
        body["problems"] = {name: p for name, p in problems.items() if p}
        body["fix"] = f"run `{demo.DEMO_COMMAND}` (or the week 4f notebook)"
    return body


def create_app(model_dir: str | Path | None = None, backend: str = "onnx", *,
               max_concurrent: int = MAX_CONCURRENT, time_budget_s: float = TIME_BUDGET_S,
               allowed_hosts: tuple[str, ...] | None = LOOPBACK):
    """The FastAPI app serving the bundle in ``model_dir`` (default ``runs/deploy``; week 4f).
    ``allowed_hosts``: the ``Host`` names answered (None: any)."""
    if not (isinstance(max_concurrent, int) and max_concurrent >= 1):
        raise ValueError(f"max_concurrent={max_concurrent!r}: at least 1 model call must be allowed")
    if not (time_budget_s >= 0 and math.isfinite(time_budget_s)):  # 0: tests of the 504
        raise ValueError(f"time_budget_s={time_budget_s!r}: must be a finite number of seconds >= 0")
    models = Models(Path(model_dir) if model_dir is not None else demo.default_bundle_dir(), backend)
    busy = threading.BoundedSemaphore(max_concurrent)

    app = FastAPI(title="Transformer + DCGAN demo", version="1")
    app.state.models = models
    if allowed_hosts:
        app.add_middleware(HostCheck, allowed=tuple(allowed_hosts))
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)  # outermost: runs first

    app.add_exception_handler(ModelUnavailable, _unavailable)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _crashed)

    async def run_model(fn, *args):
        """``fn(*args)`` in a worker thread, if fewer than ``max_concurrent`` already run."""
        if not busy.acquire(blocking=False):
            raise HTTPException(503, f"busy: {max_concurrent} requests are running; try again "
                                     f"in {RETRY_AFTER_S} s.", headers={"Retry-After": str(RETRY_AFTER_S)})
        try:
            return await run_in_threadpool(fn, *args)
        finally:
            busy.release()

    page_html = _page(models.model_dir.name, backend)

    @app.get("/", response_class=HTMLResponse)
    def page():
        return page_html

    @app.get("/health")
    def health():
        return _health_body(models, backend, max_concurrent, time_budget_s)

    @app.post("/translate")
    async def translate(request: TranslateRequest):
        text = request.text.strip()
        if not text:
            raise HTTPException(422, "text is empty: send one English sentence, e.g. "
                                     '{"text": "The small dog sees the red car."}')
        start = time.perf_counter()
        try:
            translation = await run_model(translate_text, models, text, None, time_budget_s)
        except InputTooLong as exc:
            raise HTTPException(413, str(exc)) from None
        except TimeoutError:
            raise HTTPException(504, f"the translation took longer than this server's time budget "
                                     f"of {time_budget_s:g} s and was stopped. Send a shorter "
                                     f"sentence.") from None
        return {"translation": translation, "backend": backend,
                "milliseconds": round((time.perf_counter() - start) * 1000, 2)}

    @app.post("/generate")
    async def generate(request: GenerateRequest):
        if not 1 <= request.count <= MAX_COUNT:
            raise HTTPException(422, f"count={request.count} is out of range: ask for 1 to "
                                     f"{MAX_COUNT} images.")
        if not 0 <= request.seed <= MAX_SEED:
            raise HTTPException(422, f"seed={request.seed} is out of range: use 0 to {MAX_SEED}.")
        png = await run_model(generate_png, models, request.seed, request.count)
        return Response(png, media_type="image/png",
                        headers={"X-Seed": str(request.seed), "X-Count": str(request.count)})

    return app


# --------------------------------------------------------------------------- connections
def raise_open_file_limit() -> int:
    """Raise this process's open-file limit to its hard limit (issue #24); returns the limit
    now in force (the soft one)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log(f"could not raise the open-file limit from {soft} to {target}: {exc}")
    return soft


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with two guards (issue #24):

    - a request must arrive complete (headers, and a body if any) within ``header_timeout``
      seconds of the connection opening or of the first byte after the previous response,
      otherwise the connection is closed; uvicorn's ``timeout_keep_alive`` starts only after a
      response, and a byte received cancels it, so slow partial headers were kept forever;
    - when more than ``max_connections`` are open, the oldest one not running a request is
      closed, so idle connections cannot take the file descriptors a new request needs.

    Closed connections are counted and logged at most once every 10 s (never per connection).
    """

    header_timeout: float = HEADER_TIMEOUT_S
    max_connections: int = 1024 - FD_RESERVE
    _closed = {"timeout": 0, "shed": 0}
    _last_log = 0.0

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._opened = self.loop.time()
        self._read_timer = None
        self._arm()
        if len(self.connections) > self.max_connections:
            self._shed()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self.conn.their_state in (h11.IDLE, h11.SEND_BODY):
            self._arm()   # a request has begun (or is expected): it must finish in time
        else:
            self._disarm()

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes that are not HTTP/1.1, as JSON with a fix like every other
        error (uvicorn's own is plain text)."""
        body = json.dumps({"detail": f"{msg.rstrip('.')}: this server speaks HTTP/1.1; send e.g. "
                                     f"POST /translate with Content-Type: application/json and "
                                     f'{{"text": "The small dog sees the red car."}}; use {ENDPOINTS}'}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]
        for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                      h11.Data(data=body), h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))
        self.transport.close()

    def on_response_complete(self) -> None:
        self._disarm()
        super().on_response_complete()   # the keep-alive timeout takes over

    def _idle(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        if getattr(self, "_read_timer", None) is None:
            self._read_timer = self.loop.call_later(self.header_timeout, self._timed_out)

    def _disarm(self) -> None:
        timer = getattr(self, "_read_timer", None)
        if timer is not None:
            timer.cancel()
            self._read_timer = None

    def _timed_out(self) -> None:
        self._read_timer = None
        if self.transport.is_closing() or not self._idle() or self.conn.their_state is h11.DONE:
            return
        self._close("timeout")

    def _shed(self) -> None:
        idle = [c for c in self.connections if isinstance(c, GuardedH11Protocol) and c is not self
                and c._idle() and not c.transport.is_closing()]
        excess = len(self.connections) - self.max_connections
        for c in sorted(idle, key=lambda c: c._opened)[:max(excess, 0)]:
            c._close("shed")

    def _close(self, why: str) -> None:
        self._disarm()
        self.transport.close()
        counts = GuardedH11Protocol._closed
        counts[why] += 1
        now = self.loop.time()
        if now - GuardedH11Protocol._last_log > 10:
            GuardedH11Protocol._last_log = now
            log(f"closed {counts['timeout']} connections that sent no complete request within "
                f"{self.header_timeout:g} s and {counts['shed']} idle ones to stay under "
                f"{self.max_connections} open connections (totals so far)")


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is too small: must be at least 1")
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text} must be a number of seconds greater than 0")
    return value


def main(argv: list[str] | None = None) -> int:
    """``python -m helpers.ops.serve``: optionally create the models, then serve with uvicorn (week 4f)."""
    parser = argparse.ArgumentParser(prog="python -m helpers.ops.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="deploy bundle folder (default: runs/deploy)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface to listen on (default 127.0.0.1; 0.0.0.0 in a container)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--backend", choices=BACKENDS, default="onnx")
    parser.add_argument("--max-concurrent", type=_at_least_one, default=MAX_CONCURRENT,
                        help=f"model calls at once; more get 503 + Retry-After (default {MAX_CONCURRENT})")
    parser.add_argument("--time-budget", type=_positive_seconds, default=TIME_BUDGET_S,
                        help=f"seconds per translation before it is stopped (default {TIME_BUDGET_S:g})")
    parser.add_argument("--header-timeout", type=_positive_seconds, default=HEADER_TIMEOUT_S,
                        help=f"seconds a connection may take to send a complete request before it "
                             f"is closed (default {HEADER_TIMEOUT_S:g})")
    parser.add_argument("--allowed-hosts", default=None,
                        help="comma-separated Host names to answer (default: 127.0.0.1,localhost "
                             "on a loopback address, any otherwise)")
    parser.add_argument("--train-smoke", action="store_true",
                        help="if the bundle is incomplete or fails its checks, build it first: "
                             "the notebooks' checkpoints when present, else smoke-size models "
                             "trained on the CPU (one to two minutes)")
    parser.add_argument("--translator-steps", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--generator-steps", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--no-serve", action="store_true", help="build the bundle and exit")
    args = parser.parse_args(argv)
    model_dir = args.model_dir or demo.default_bundle_dir()

    problems = {n: p for n in demo.BUNDLE_FILES if (p := demo.bundle_problem(model_dir, n))}
    if problems and args.train_smoke:
        print(f"{model_dir}: {'; '.join(problems.values())}: building the demo models", flush=True)
        demo.build_bundle(model_dir, profile="smoke", translator_steps=args.translator_steps,
                          generator_steps=args.generator_steps)
    elif problems:
        print(f"warning: {model_dir}: {'; '.join(problems.values())}; those endpoints answer "
              f"503 until you run `{demo.DEMO_COMMAND}`", file=sys.stderr, flush=True)
    if args.no_serve:
        return 0

    allowed = allowed_hosts_for(args.host, args.allowed_hosts)
    if allowed is None:
        print(f"note: listening on {args.host} answers any Host header; pass --allowed-hosts "
              f"with your domain to refuse others", file=sys.stderr, flush=True)
    app = create_app(model_dir, args.backend, max_concurrent=args.max_concurrent,
                     time_budget_s=args.time_budget, allowed_hosts=allowed)
    start = time.perf_counter()
    ready = app.state.models.status()  # load now, so no request's time budget pays for it
    print(f"models loaded in {time.perf_counter() - start:.1f} s: "
          + ", ".join(f"{n} {'ready' if p is None else 'unavailable'}" for n, p in ready.items()),
          flush=True)
    limit = raise_open_file_limit()
    GuardedH11Protocol.header_timeout = args.header_timeout
    # asyncio accepts up to `backlog` connections in one go before any of them is counted:
    # keep room for a whole batch under the limit
    GuardedH11Protocol.max_connections = max(16, limit - FD_RESERVE - ACCEPT_BATCH)
    url_host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"serving {model_dir} on http://{url_host}:{args.port}/ (Ctrl+C stops)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", http=GuardedH11Protocol,
                timeout_keep_alive=5, backlog=ACCEPT_BATCH)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
